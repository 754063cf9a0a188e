//! Turns a compiled function's source (DESIGN §3 "Compiled functions", §6) into a
//! WebAssembly module: `wat` in process, `c` with clang + wasi-libc, `rust` with a rustc
//! that has a wasm32 WASI target, `assemblyscript` with `asc` and a generated entry that
//! gives the user's `handle(input: string): string` Morel's core ABI.
//!
//! C and Rust sources are WASI command programs (`main` reads JSON on stdin and writes JSON
//! on stdout); AssemblyScript modules export the core ABI (`memory`, `alloc`, `handle`, see
//! the `assemblyscript` module); a WAT source exports whichever of the two its author wrote.
//!
//! Every external compiler runs in a fresh scratch directory, from an argument array (never
//! a shell), in its own process group that is killed at the deadline; its diagnostics come
//! back in [`CompileError::Failed`] with the scratch path hidden. Nothing is downloaded at
//! compile time: [`Toolchains::doctor`] says what is installed, and
//! `scripts/setup-toolchains` installs the rest. Tool locations come from the variables in
//! [`env_vars`].
//!
//! This crate deliberately does not run modules (morel-runtime-wasm owns wasmtime), read
//! queues or store results (the compiler service does), nor limit how many compiles run at
//! once (its caller does).

mod assemblyscript;
mod compile;
pub mod env_vars;
mod error;
mod language;
mod run;
mod toolchains;

use std::time::Duration;

pub use error::CompileError;
pub use language::{Language, UnknownLanguage};
pub use toolchains::{LanguageStatus, ToolPaths, Toolchains};

/// Bounds on one compile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileLimits {
    /// Wall-clock time the compiler may take; then its whole process group is killed.
    /// Default 60 s.
    pub timeout: Duration,
    /// Largest module accepted. Default 16 MiB.
    pub max_output_bytes: u64,
    /// Largest source accepted (checked before anything runs). Default 1 MiB.
    pub max_source_bytes: usize,
}

impl Default for CompileLimits {
    fn default() -> Self {
        CompileLimits {
            timeout: Duration::from_secs(60),
            max_output_bytes: 16 * 1024 * 1024,
            max_source_bytes: 1024 * 1024,
        }
    }
}
