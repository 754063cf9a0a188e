//! Integration tests for morel-compiler: real toolchains compile the repository's examples,
//! and Node runs the modules (`node:wasi` for WASI commands, plain WebAssembly for the core
//! ABI). A missing toolchain fails the tests with a pointer to `scripts/setup-toolchains`.

#![allow(clippy::unwrap_used)] // panicking is how a test fails

mod doctor;
mod errors;
mod examples;
mod support;
