//! The `morel` binary: parse arguments, start tracing, run.

fn main() -> std::process::ExitCode {
    morel_cli::main()
}
