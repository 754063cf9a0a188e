//! Integration tests of morel-runtime-wasm: real engines, real wasmtime, guests written in WAT.

#![allow(clippy::unwrap_used)] // panicking is how a test fails

mod abi;
mod cache;
mod limits;
mod wasi;

use std::path::Path;
use std::time::Duration;

use morel_runtime_wasm::{EngineConfig, WasmEngine, WasmError, WasmModule};

/// A deadline no passing test comes near.
pub const GENEROUS: Duration = Duration::from_secs(20);

/// An engine with a small pool (tests run in parallel; each engine reserves its slots).
pub fn engine(cache_dir: &Path) -> WasmEngine {
    engine_with(cache_dir, |_| {})
}

pub fn engine_with(cache_dir: &Path, adjust: impl FnOnce(&mut EngineConfig)) -> WasmEngine {
    let mut config = EngineConfig::new(cache_dir);
    config.max_instances = 16;
    adjust(&mut config);
    WasmEngine::new(config).expect("engine starts")
}

/// A core ABI module whose `alloc` bumps a pointer from 1024 and whose `handle` has `body`
/// (params `$ptr`, `$len`; returns the packed i64). `extra` adds module fields.
pub fn core_guest(body: &str, extra: &str) -> String {
    format!(
        r#"(module
  (memory (export "memory") 1)
  (global $next (mut i32) (i32.const 1024))
  (func (export "alloc") (param $len i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $next))
    (global.set $next (i32.add (global.get $next) (local.get $len)))
    (local.get $p))
  (func (export "handle") (param $ptr i32) (param $len i32) (result i64)
    {body})
  {extra})"#
    )
}

/// `handle` body returning the input unchanged.
pub const ECHO: &str = "(i64.or (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32)) (i64.extend_i32_u (local.get $len)))";

pub async fn call(
    engine: &WasmEngine,
    module: &WasmModule,
    input: &str,
) -> Result<String, WasmError> {
    let output = engine.call(module, input.as_bytes(), GENEROUS).await?;
    Ok(String::from_utf8(output).expect("utf-8 output"))
}

pub fn load(engine: &WasmEngine, wat: &str) -> WasmModule {
    engine.load(wat.as_bytes()).expect("module loads")
}
