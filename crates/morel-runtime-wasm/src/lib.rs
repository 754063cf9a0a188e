//! Runs untrusted WebAssembly functions in process. This is the only crate in Morel that touches
//! wasmtime, and it owns every decision about how guests run: one [`WasmEngine`] per process
//! with a pooling allocator (a fixed number of pre-reserved instance slots), copy-on-write
//! memory images so an instance starts without copying its data segments, precompiled modules
//! cached on disk so a restart does not recompile, a fresh instance for every call (no state
//! leaks between calls), deadlines enforced by epoch interruption, and a cap on each instance's
//! memory. Guests speak one of two ABIs ([`Abi`]): the core ABI (`alloc`/`handle` over linear
//! memory) or a WASI preview 1 command (stdin in, stdout out); either way the output must be
//! JSON. WASI guests get no files, environment, arguments beyond a program name, network or
//! sleep.
//!
//! It deliberately does not compile source languages to wasm (the compiler crate does), speak
//! HTTP, store functions or record executions: callers hand it wasm bytes and input bytes and
//! get output bytes or a [`WasmError`] whose [`status`](WasmError::status) is the execution
//! status to record.
//!
//! ```no_run
//! # async fn demo() -> Result<(), morel_runtime_wasm::WasmError> {
//! use morel_runtime_wasm::{EngineConfig, WasmEngine};
//! let engine = WasmEngine::new(EngineConfig::new("/var/lib/morel/wasm-cache"))?;
//! let module = engine.load(b"(module (memory (export \"memory\") 1) ...)")?;
//! let output = engine.call(&module, br#"{"name":"x"}"#, engine.default_deadline()).await?;
//! # Ok(()) }
//! ```

mod cache;
mod config;
mod engine;
mod error;
mod limits;
mod module;
mod run;
mod stdio;

pub use config::{
    DEFAULT_DEADLINE, DEFAULT_MAX_INSTANCES, DEFAULT_MAX_MEMORY_BYTES, EPOCH_TICK, EngineConfig,
    MAX_OUTPUT_BYTES, MAX_STDERR_BYTES,
};
pub use engine::WasmEngine;
pub use error::WasmError;
pub use module::{Abi, WasmModule};

/// The result of a successful call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invocation {
    /// The guest's output; always one JSON value, at most [`MAX_OUTPUT_BYTES`].
    pub output: Vec<u8>,
    /// The last [`MAX_STDERR_BYTES`] a WASI guest wrote to stderr (invalid UTF-8 replaced);
    /// empty for core ABI guests.
    pub stderr: String,
}
