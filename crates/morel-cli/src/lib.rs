//! The `morel` command line: every subcommand, and the glue that wires the library crates
//! into `morel up`. Output for humans goes to stdout, progress and logs to stderr; listing
//! commands take `--json`.

#![allow(clippy::print_stdout)] // printing results is what a CLI is for

mod args;
mod client;
mod commands;
mod settings;

use clap::Parser;

pub use args::Cli;

pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let filter = std::env::var(morel_core::env_vars::MOREL_LOG)
        .unwrap_or_else(|_| "info,sqlx=warn,tower_http=warn".into());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
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
