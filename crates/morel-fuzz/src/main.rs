//! `morel-fuzz`: runs Morel's fuzz targets on the stable toolchain (see docs/fuzzing.md).
//!
//! ```text
//! morel-fuzz TARGET --seconds N [--corpus DIR] [--seed S] [--crashes DIR] [--save-corpus DIR]
//!                               [--timeout-ms MS] [--slow-ms MS]
//! morel-fuzz all --seconds N [same options; --corpus DIR then holds one folder per target]
//! morel-fuzz run TARGET FILE...      run files once and say how each did
//! morel-fuzz list                    the targets
//! morel-fuzz seeds [--out DIR]       (re)write the generated seed corpora
//! ```
#![allow(clippy::print_stdout)] // a command-line tool: its report is its output

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use morel_fuzz::driver::{self, Options, Report};
use morel_fuzz::{Target, check, crate_dir, escaped, target, targets};

const USAGE: &str = "usage:
  morel-fuzz TARGET --seconds N [--corpus DIR] [--seed S] [--crashes DIR] [--save-corpus DIR]
                                [--timeout-ms MS] [--slow-ms MS]
  morel-fuzz all --seconds N [the same options; --corpus DIR holds one folder per target]
  morel-fuzz run TARGET FILE...
  morel-fuzz list
  morel-fuzz seeds [--out DIR]";

#[derive(Default)]
struct Args {
    seconds: Option<f64>,
    corpus: Option<PathBuf>,
    seed: Option<u64>,
    crashes: Option<PathBuf>,
    save_corpus: Option<PathBuf>,
    timeout_ms: Option<u64>,
    slow_ms: Option<u64>,
    out: Option<PathBuf>,
    rest: Vec<String>,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut a = Args::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "--seconds" => {
                let v = value(arg)?;
                let s: f64 = v.parse().map_err(|_| format!("--seconds {v:?}"))?;
                if !(s.is_finite() && s >= 0.0) {
                    return Err(format!("--seconds {v:?}"));
                }
                a.seconds = Some(s);
            }
            "--corpus" => a.corpus = Some(value(arg)?.into()),
            "--crashes" => a.crashes = Some(value(arg)?.into()),
            "--save-corpus" => a.save_corpus = Some(value(arg)?.into()),
            "--out" => a.out = Some(value(arg)?.into()),
            "--seed" => {
                let v = value(arg)?;
                a.seed = Some(v.parse().map_err(|_| format!("--seed {v:?}"))?);
            }
            "--timeout-ms" => {
                let v = value(arg)?;
                a.timeout_ms = Some(v.parse().map_err(|_| format!("--timeout-ms {v:?}"))?);
            }
            "--slow-ms" => {
                let v = value(arg)?;
                a.slow_ms = Some(v.parse().map_err(|_| format!("--slow-ms {v:?}"))?);
            }
            "-h" | "--help" => return Err(String::new()),
            other if other.starts_with("--") => return Err(format!("unknown option {other}")),
            other => a.rest.push(other.to_owned()),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse(&argv) {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("morel-fuzz: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let Some(command) = args.rest.first().cloned() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    match command.as_str() {
        "list" => {
            for t in targets() {
                println!("{:<18} {}", t.name, t.about);
            }
            ExitCode::SUCCESS
        }
        "seeds" => seeds(&args),
        "run" => replay(&args),
        "all" => fuzz(targets().iter().collect(), &args, true),
        name => match target(name) {
            Some(t) => fuzz(vec![t], &args, false),
            None => {
                eprintln!("morel-fuzz: no target {name:?}; `morel-fuzz list` shows them");
                ExitCode::from(2)
            }
        },
    }
}

fn seeds(args: &Args) -> ExitCode {
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| crate_dir().join("corpus"));
    let examples = crate_dir().join("../../examples");
    match morel_fuzz::seeds::write_seeds(&out, &examples) {
        Ok(files) => {
            println!("wrote {} seed files under {}", files.len(), out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("morel-fuzz seeds: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs files through a target once each; fails when one of them fails.
fn replay(args: &Args) -> ExitCode {
    let (Some(name), files) = (args.rest.get(1), args.rest.get(2..).unwrap_or_default()) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let Some(t) = target(name) else {
        eprintln!("morel-fuzz: no target {name:?}");
        return ExitCode::from(2);
    };
    let slow = Duration::from_millis(args.slow_ms.unwrap_or(2000));
    let mut failed = 0;
    for file in files {
        let data = match std::fs::read(file) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("{file}: {e}");
                failed += 1;
                continue;
            }
        };
        match check(t, &data, slow) {
            Ok(outcome) => println!("{file}: ok (outcome {outcome:016x})"),
            Err(f) => {
                failed += 1;
                println!("{file}: FAILED: {f}\n    input: {}", escaped(&data, 600));
            }
        }
    }
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn fuzz(chosen: Vec<&'static Target>, args: &Args, all: bool) -> ExitCode {
    let Some(seconds) = args.seconds else {
        eprintln!("morel-fuzz: --seconds is required\n{USAGE}");
        return ExitCode::from(2);
    };
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let mut reports: Vec<Report> = Vec::new();
    for (i, t) in chosen.iter().enumerate() {
        let mut opts = Options::for_target(t, Duration::from_secs_f64(seconds), seed + i as u64);
        if let Some(c) = &args.corpus {
            opts.corpus = if all { c.join(t.name) } else { c.clone() };
            opts.regressions = None;
        }
        if let Some(c) = &args.crashes {
            opts.crashes = c.clone();
        }
        opts.save_corpus = args.save_corpus.clone();
        if let Some(ms) = args.timeout_ms {
            opts.timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = args.slow_ms {
            opts.slow = Duration::from_millis(ms);
        }
        eprintln!(
            "{}: fuzzing for {seconds} s (seed {}), corpus {}",
            t.name,
            opts.seed,
            opts.corpus.display()
        );
        let report = driver::fuzz(t, &opts);
        eprintln!(
            "{}: {} execs, {:.0}/s, corpus {} -> {}, {} finding(s)",
            t.name,
            report.execs,
            report.execs_per_sec(),
            report.corpus_start,
            report.corpus_end,
            report.findings.len()
        );
        reports.push(report);
    }
    println!(
        "\n{:<18} {:>10} {:>9} {:>16} {:>9} {:>9}",
        "target", "execs", "execs/s", "corpus", "outcomes", "findings"
    );
    for r in &reports {
        println!(
            "{:<18} {:>10} {:>9.0} {:>16} {:>9} {:>9}",
            r.target,
            r.execs,
            r.execs_per_sec(),
            format!("{} -> {}", r.corpus_start, r.corpus_end),
            r.outcomes,
            r.findings.len()
        );
    }
    let findings: Vec<_> = reports
        .iter()
        .flat_map(|r| r.findings.iter().map(move |f| (r.target, f)))
        .collect();
    for (target, f) in &findings {
        println!(
            "\n{target}: {} ({} hit(s)): {}\n    input ({} bytes): {}\n    file: {}",
            f.kind,
            f.hits,
            f.detail,
            f.input.len(),
            escaped(&f.input, 300),
            f.file
                .as_deref()
                .map_or_else(|| "not written".to_owned(), |p| p.display().to_string())
        );
    }
    if findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
