//! `morel-bench`: the measuring half of `bench/run` (load, process start times, generated apps,
//! the report). See `bench/README.md`.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use morel_bench::{BenchError, jobs, load, report, spawn, wasmgen};

#[derive(Parser)]
#[command(
    name = "morel-bench",
    about = "Load generator and report writer of bench/run"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Closed-loop HTTP/1.1 load: requests/s and latency percentiles, as JSON.
    Load {
        /// Target URL(s), `http://127.0.0.1:PORT/path`; all on one host. Connections go round them.
        #[arg(long = "url", required = true)]
        urls: Vec<String>,
        /// More paths on the first URL's host, one per line.
        #[arg(long)]
        paths_file: Option<PathBuf>,
        #[arg(long, default_value = "POST")]
        method: String,
        /// Request body (JSON text).
        #[arg(long, default_value = "")]
        body: String,
        #[arg(long, default_value_t = 16)]
        conns: usize,
        /// Seconds of load before measuring starts.
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
        /// Seconds measured (an upper bound when --requests is given).
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
        /// Stop after this many measured requests.
        #[arg(long)]
        requests: Option<u64>,
        /// Stop early once this file exists.
        #[arg(long)]
        stop_file: Option<PathBuf>,
        /// Write the result here (JSON) instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also append the p50 latency (µs) as one line to this samples file.
        #[arg(long)]
        append_p50: Option<PathBuf>,
        /// Worker threads of the client (the client shares the machine with the server).
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
    /// Loads a reference and a Morel URL in alternating slices (ref, Morel, ref, Morel, …) so
    /// both see the same background; writes one result for each.
    Compare {
        #[arg(long)]
        ref_url: String,
        #[arg(long, default_value = "")]
        ref_body: String,
        #[arg(long)]
        morel_url: String,
        #[arg(long, default_value = "")]
        morel_body: String,
        /// More paths for the Morel side (on the Morel URL's host), one per line.
        #[arg(long)]
        morel_paths_file: Option<PathBuf>,
        #[arg(long, default_value_t = 16)]
        conns: usize,
        /// Warm-up seconds before the first slice of each side.
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
        /// Warm-up seconds before every later slice.
        #[arg(long, default_value_t = 0.2)]
        slice_warmup: f64,
        /// Measured seconds per slice.
        #[arg(long, default_value_t = 1.0)]
        slice: f64,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// At most this many measured requests per slice.
        #[arg(long)]
        requests: Option<u64>,
        #[arg(long)]
        out_ref: PathBuf,
        #[arg(long)]
        out_morel: PathBuf,
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
    /// Times `runs` sequential runs of a command; appends each (µs) to --out, one per line.
    Spawn {
        #[arg(long, default_value_t = 10)]
        runs: usize,
        #[arg(long)]
        out: PathBuf,
        #[arg(trailing_var_arg = true, required = true)]
        command: Vec<String>,
    },
    /// Async jobs end to end (enqueue → completed) against raw queue operations on a store of
    /// the same kind, in alternating batches of COUNT.
    Jobs {
        /// `http://ADDR/{prefix}/{app}/{version}/run/{func}`.
        #[arg(long)]
        url: String,
        #[arg(long, default_value = "")]
        body: String,
        /// The admin token (for `GET /api/executions/{id}`).
        #[arg(long)]
        token: String,
        /// The reference's store: `sqlite:PATH` or a `postgres://` URL (the database the server uses).
        #[arg(long)]
        store: String,
        #[arg(long, default_value_t = 200)]
        count: u64,
        #[arg(long, default_value_t = 8)]
        conns: usize,
        #[arg(long, default_value_t = 3)]
        rounds: u32,
        #[arg(long)]
        out_ref: PathBuf,
        #[arg(long)]
        out_morel: PathBuf,
    },
    /// Writes an app of COUNT distinct core-ABI wasm functions (one .wat file each).
    GenWasmApp {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        count: usize,
    },
    /// Builds latest.json and latest.md from a directory of raw measurements.
    Report {
        #[arg(long)]
        raw: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse().cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            eprintln!("morel-bench: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// `http://127.0.0.1:8080/a/b` → (127.0.0.1:8080, "/a/b").
fn split_url(url: &str) -> Result<(SocketAddr, String), BenchError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| BenchError::Usage(format!("{url}: only http:// URLs")))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = host
        .parse::<SocketAddr>()
        .map_err(|e| BenchError::Usage(format!("{url}: the host must be IP:PORT ({e})")))?;
    Ok((addr, path.to_owned()))
}

fn runtime(threads: usize) -> Result<tokio::runtime::Runtime, BenchError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .map_err(BenchError::io("cannot start the runtime", "tokio"))
}

fn report_load(label: &str, result: &load::LoadResult) {
    eprintln!(
        "  {label}{} conns: {:.0} req/s, p50 {} µs, p99 {} µs, {} requests, {} failed",
        result.conns,
        result.rps,
        result.p50_us.unwrap_or(0),
        result.p99_us.unwrap_or(0),
        result.requests,
        result.errors
    );
}

fn write_json(path: &std::path::Path, result: &load::LoadResult) -> Result<(), BenchError> {
    let json = serde_json::to_string_pretty(result).map_err(|source| BenchError::Json {
        path: path.to_owned(),
        source,
    })?;
    std::fs::write(path, json + "\n").map_err(BenchError::io("cannot write", path))
}

fn run(cmd: Cmd) -> Result<(), BenchError> {
    match cmd {
        Cmd::Load {
            urls,
            paths_file,
            method,
            body,
            conns,
            warmup,
            duration,
            requests,
            stop_file,
            out,
            append_p50,
            threads,
        } => {
            let mut addr = None;
            let mut paths = Vec::new();
            for url in &urls {
                let (a, p) = split_url(url)?;
                if addr.is_some_and(|x| x != a) {
                    return Err(BenchError::Usage("all URLs must be on one host".into()));
                }
                addr = Some(a);
                paths.push(p);
            }
            if let Some(f) = &paths_file {
                paths.extend(read_paths(f)?);
            }
            let addr = addr.ok_or_else(|| BenchError::Usage("no --url".into()))?;
            let spec = load::LoadSpec {
                addr,
                paths,
                method,
                body: body.into_bytes(),
                conns,
                warmup: Duration::from_secs_f64(warmup),
                duration: Duration::from_secs_f64(duration),
                max_requests: requests,
                stop_file,
            };
            let result = runtime(threads)?.block_on(load::run(spec))?;
            report_load("", &result);
            match &out {
                Some(p) => write_json(p, &result)?,
                None => println!(
                    "{}",
                    serde_json::to_string_pretty(&result).map_err(|source| BenchError::Json {
                        path: PathBuf::new(),
                        source,
                    })?
                ),
            }
            if let (Some(p), Some(v)) = (&append_p50, result.p50_us) {
                append_line(p, &v.to_string())?;
            }
            Ok(())
        }
        Cmd::Compare {
            ref_url,
            ref_body,
            morel_url,
            morel_body,
            morel_paths_file,
            conns,
            warmup,
            slice_warmup,
            slice,
            rounds,
            requests,
            out_ref,
            out_morel,
            threads,
        } => {
            let spec = |url: &str, body: String| -> Result<load::LoadSpec, BenchError> {
                let (addr, path) = split_url(url)?;
                Ok(load::LoadSpec {
                    addr,
                    paths: vec![path],
                    method: "POST".into(),
                    body: body.into_bytes(),
                    conns,
                    warmup: Duration::from_secs_f64(slice_warmup),
                    duration: Duration::from_secs_f64(slice),
                    max_requests: requests,
                    stop_file: None,
                })
            };
            let a = spec(&ref_url, ref_body)?;
            let mut b = spec(&morel_url, morel_body)?;
            if let Some(f) = &morel_paths_file {
                b.paths.extend(read_paths(f)?);
            }
            let (ra, rb) = runtime(threads)?.block_on(load::alternate(
                a,
                b,
                rounds,
                Duration::from_secs_f64(warmup),
            ))?;
            report_load("reference: ", &ra);
            report_load("Morel:     ", &rb);
            write_json(&out_ref, &ra)?;
            write_json(&out_morel, &rb)
        }
        Cmd::Spawn { runs, out, command } => {
            let (program, args) = command
                .split_first()
                .ok_or_else(|| BenchError::Usage("no command".into()))?;
            let times = spawn::time_runs(program, args, runs)?;
            for t in &times {
                append_line(&out, &t.to_string())?;
            }
            let median = morel_bench::stats::median(&times).unwrap_or(0);
            eprintln!(
                "  {program}: median {:.1} ms over {runs} runs",
                median as f64 / 1000.0
            );
            Ok(())
        }
        Cmd::Jobs {
            url,
            body,
            token,
            store,
            count,
            conns,
            rounds,
            out_ref,
            out_morel,
        } => {
            let (addr, run_path) = split_url(&url)?;
            let spec = jobs::JobsSpec {
                addr,
                run_path,
                body: body.into_bytes(),
                token,
                store: jobs::QueueStore::parse(&store)?,
                count,
                conns,
                rounds,
            };
            let (ra, rb) = runtime(2)?.block_on(jobs::run(spec))?;
            report_load("reference: ", &ra);
            report_load("Morel:     ", &rb);
            write_json(&out_ref, &ra)?;
            write_json(&out_morel, &rb)
        }
        Cmd::GenWasmApp { dir, count } => wasmgen::write_app(&dir, count),
        Cmd::Report { raw, out } => {
            let meta_path = raw.join("meta.json");
            let meta: report::Meta = match std::fs::read(&meta_path) {
                Ok(b) => serde_json::from_slice(&b).map_err(|source| BenchError::Json {
                    path: meta_path.clone(),
                    source,
                })?,
                Err(_) => report::Meta::default(),
            };
            let rows = report::build_rows(&raw, &meta.date)?;
            report::write(&out, &rows, &meta)?;
            print!("{}", report::markdown(&rows, &meta));
            Ok(())
        }
    }
}

fn read_paths(f: &std::path::Path) -> Result<Vec<String>, BenchError> {
    let text = std::fs::read_to_string(f).map_err(BenchError::io("cannot read", f))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

fn append_line(path: &std::path::Path, line: &str) -> Result<(), BenchError> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(BenchError::io("cannot open", path))?;
    writeln!(f, "{line}").map_err(BenchError::io("cannot write", path))
}
