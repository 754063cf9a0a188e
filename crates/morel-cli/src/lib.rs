//! The `morel` command line: every subcommand, and the glue that wires the library crates
//! into `morel up`. Output for humans goes to stdout, progress and logs to stderr; listing
//! commands take `--json`.

#![allow(clippy::print_stdout)] // printing results is what a CLI is for

mod args;
mod client;
mod commands;
mod containment;
mod settings;

use std::io::IsTerminal;

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

/// Rust starts every program with SIGPIPE ignored, so a write to a closed pipe fails with EPIPE
/// and `println!` panics ("Broken pipe") in `morel ls | head`. A client command gets the default
/// disposition back: a closed stdout ends it quietly, as it does any Unix tool. Servers keep
/// ignoring SIGPIPE: one peer closing a socket or pipe must never kill them.
#[allow(unsafe_code)] // nix's `signal` is unsafe because of handlers; SIG_DFL is none
fn restore_default_sigpipe() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: SIG_DFL installs no handler code, and no other thread is running yet.
    if let Err(e) = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) } {
        eprintln!("warning: cannot restore the default SIGPIPE disposition: {e}");
    }
}

/// Whether output to a stream may carry ANSI colors: only on a terminal, and only when
/// `NO_COLOR` is unset or empty. Logs redirected to a file or piped stay plain text.
fn use_color(is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    is_terminal && no_color.is_none_or(|v| v.is_empty())
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
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and usage errors are client output too (`morel --help | head`).
            restore_default_sigpipe();
            let _ = e.print();
            return if e.use_stderr() {
                std::process::ExitCode::from(client::exit_code::USAGE)
            } else {
                std::process::ExitCode::SUCCESS // --help, --version
            };
        }
    };
    if !cli.command.is_long_running() {
        restore_default_sigpipe();
    }
    let filter = std::env::var(morel_core::env_vars::MOREL_LOG).ok();
    let ansi = use_color(
        std::io::stderr().is_terminal(),
        std::env::var_os(morel_core::env_vars::NO_COLOR).as_deref(),
    );
    tracing_subscriber::fmt()
        .with_env_filter(log_filter(filter.as_deref()))
        .with_ansi(ansi)
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
            std::process::ExitCode::from(client::exit_code_of(&e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{log_filter, use_color};
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
    fn colors_only_on_a_terminal_without_no_color() {
        let set = Some(std::ffi::OsStr::new("1"));
        let empty = Some(std::ffi::OsStr::new(""));
        assert!(use_color(true, None));
        assert!(use_color(true, empty));
        assert!(!use_color(true, set));
        assert!(!use_color(false, None));
        assert!(!use_color(false, set));
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
