//! The `morel` command line: every subcommand, and the glue that wires the library crates
//! into `morel up`. Output for humans goes to stdout, progress and logs to stderr; listing
//! commands take `--json`.

#![allow(clippy::print_stdout)] // printing results is what a CLI is for

mod args;
mod client;
mod commands;
mod containment;
mod settings;

use clap::Parser;

pub use args::Cli;

/// Log filter when `MOREL_LOG` is unset.
const DEFAULT_LOG: &str = "info,sqlx=warn,tower_http=warn";

/// wasmtime-wasi opens an INFO span for every WASI call a guest makes (`fd_read`, `fd_write`,
/// `proc_exit`, …), and the fmt layer formats a span's fields when it opens, logged or not: at
/// `info` that cost a WASI command call about a fifth of its throughput (bench/NOTES.md, ninth
/// session). Its spans stay off unless `MOREL_LOG` names the crate.
const WASI_SPANS: &str = "wasmtime_wasi";

fn log_filter(spec: Option<&str>) -> tracing_subscriber::EnvFilter {
    let spec = spec.unwrap_or(DEFAULT_LOG);
    let filter = tracing_subscriber::EnvFilter::new(spec);
    if spec.contains(WASI_SPANS) {
        return filter;
    }
    match format!("{WASI_SPANS}=warn").parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    }
}

pub fn main() -> std::process::ExitCode {
    // A workload's init: the sandbox confines this process and runs the workload in it.
    let mut argv = std::env::args_os();
    if argv.nth(1).as_deref()
        == Some(std::ffi::OsStr::new(
            morel_runtime_process::sandbox::INIT_ARG,
        ))
    {
        morel_runtime_process::sandbox::run_init(argv.collect());
    }
    let cli = Cli::parse();
    let filter = std::env::var(morel_core::env_vars::MOREL_LOG).ok();
    tracing_subscriber::fmt()
        .with_env_filter(log_filter(filter.as_deref()))
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(commands::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::log_filter;
    use tracing_subscriber::layer::SubscriberExt;

    /// Whether an INFO span of wasmtime-wasi, and one of Morel, open under the filter made
    /// from `spec`.
    fn info_spans_open(spec: Option<&str>) -> (bool, bool) {
        let subscriber = tracing_subscriber::registry().with(log_filter(spec));
        tracing::subscriber::with_default(subscriber, || {
            let wasi = tracing::info_span!(target: "wasmtime_wasi::p1", "fd_read");
            let morel = tracing::info_span!(target: "morel_agent", "deploy");
            (!wasi.is_disabled(), !morel.is_disabled())
        })
    }

    #[test]
    fn wasi_spans_are_off_unless_morel_log_names_them() {
        for spec in [None, Some("info"), Some("debug,sqlx=warn")] {
            assert_eq!(info_spans_open(spec), (false, true), "MOREL_LOG={spec:?}");
        }
        assert_eq!(
            info_spans_open(Some("info,wasmtime_wasi=info")),
            (true, true)
        );
        assert_eq!(info_spans_open(Some("warn")), (false, false));
    }
}
