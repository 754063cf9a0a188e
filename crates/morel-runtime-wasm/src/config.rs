//! The engine's typed configuration and the fixed limits every call obeys.

use std::path::PathBuf;
use std::time::Duration;

/// Default total of instances alive at once across all modules (pooling slots).
pub const DEFAULT_MAX_INSTANCES: u32 = 1000;
/// Default cap on one instance's linear memory: 64 MiB.
pub const DEFAULT_MAX_MEMORY_BYTES: u64 = 64 << 20;
/// Default deadline offered to callers that have none of their own.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);

/// Largest output a call may return (core ABI region or WASI stdout): 6 MiB.
pub const MAX_OUTPUT_BYTES: usize = 6 << 20;
/// How much of a WASI guest's stderr is kept: the last 64 KiB.
pub const MAX_STDERR_BYTES: usize = 64 << 10;
/// How often the ticker thread advances the engine epoch. A deadline fires at most one tick late.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Guard region after each pooled linear memory. Memories are reserved at exactly their cap (not
/// the 4 GiB wasmtime defaults to), so bounds are checked explicitly and the guard only lets
/// Cranelift skip checks for small constant offsets; 2 MiB is plenty for that.
pub(crate) const MEMORY_GUARD_BYTES: u64 = 2 << 20;
/// WebAssembly page size.
pub(crate) const WASM_PAGE_BYTES: u64 = 64 << 10;

/// Configuration of the one [`WasmEngine`](crate::WasmEngine) a process owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// Where precompiled modules are kept (`<sha256 of wasm>-<engine hash>.cwasm`). Created if
    /// missing. Trusted: its files are loaded as native code, so it must not be writable by guests
    /// or users.
    pub cache_dir: PathBuf,
    /// Instances alive at once, over all modules: the pooling allocator's slot count and the
    /// number of calls that run concurrently (further calls wait, within their deadline).
    pub max_instances: u32,
    /// Cap on one instance's linear memory in bytes; `memory.grow` past it traps with
    /// [`WasmError::MemoryLimit`](crate::WasmError::MemoryLimit). At least one wasm page (64 KiB),
    /// at most 4 GiB.
    pub max_memory_bytes: u64,
    /// The deadline callers use when they have none (see [`WasmEngine::default_deadline`](crate::WasmEngine::default_deadline)).
    pub default_deadline: Duration,
}

impl EngineConfig {
    /// The defaults with the given cache directory.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        Self {
            cache_dir: cache_dir.into(),
            max_instances: DEFAULT_MAX_INSTANCES,
            max_memory_bytes: DEFAULT_MAX_MEMORY_BYTES,
            default_deadline: DEFAULT_DEADLINE,
        }
    }
}
