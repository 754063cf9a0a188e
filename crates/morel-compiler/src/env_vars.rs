//! The environment variables this crate reads (all in [`ToolPaths::from_env`](crate::ToolPaths::from_env)).
//! An empty value counts as unset.

/// clang used for C. Default `clang` on `PATH` (Debian: `apt-get install clang lld`).
pub const MOREL_CLANG: &str = "MOREL_CLANG";
/// WASI sysroot for C: the directory holding `lib/wasm32-wasi/libc.a` and the wasi-libc
/// headers. Default: `/usr/share/wasi-sysroot` or `/opt/wasi-sdk/share/wasi-sysroot` if
/// present, else `/usr` (Debian's `wasi-libc` package).
pub const MOREL_WASI_SYSROOT: &str = "MOREL_WASI_SYSROOT";
/// rustc used for Rust; it must have a wasm32 WASI standard library. Default
/// `/usr/bin/rustc` (Debian's `rustc` + `libstd-rust-dev-wasm32`) if present, else `rustc`.
pub const MOREL_RUSTC_WASM: &str = "MOREL_RUSTC_WASM";
/// AssemblyScript's `asc`. Default: `toolchains/node_modules/.bin/asc` in the repository
/// (installed by `scripts/setup-toolchains`), else `asc` on `PATH`.
pub const MOREL_ASC: &str = "MOREL_ASC";
