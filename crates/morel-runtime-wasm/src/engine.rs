//! The engine: wasmtime configuration, the epoch ticker, loading and calling.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tracing::Instrument;
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, Linker, Module, OptLevel,
    PoolingAllocationConfig, Store,
};

use crate::cache::DiskCache;
use crate::config::{EPOCH_TICK, EngineConfig, MEMORY_GUARD_BYTES, WASM_PAGE_BYTES};
use crate::module::{self, Abi, CorePre, ModuleInner, Prepared, WASI_MODULE, WasmModule};
use crate::run::{self, Budget, CoreState, WasiState};
use crate::{Invocation, WasmError};

/// How long past its deadline a call may take to come back before the caller stops waiting.
/// The guest itself is interrupted at the deadline (plus one epoch tick); this only covers the
/// host being slow to schedule or tear down, and is a backstop, never the normal path.
const HOST_GRACE: Duration = Duration::from_secs(1);

/// Deadlines longer than this (a year, i.e. "none") are treated as this.
const LONGEST_DEADLINE: Duration = Duration::from_secs(365 * 24 * 3600);

/// WASI's `ENOTSUP` errno, returned by the `poll_oneoff` the host installs instead of
/// wasmtime-wasi's.
const ERRNO_NOTSUP: i32 = 58;

/// The wasm runtime of one process. Cheap to clone; clones share everything. The epoch ticker
/// thread stops when the last clone is dropped.
#[derive(Clone)]
pub struct WasmEngine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    /// Unique among the engines of this process; a module records the one that loaded it.
    id: u64,
    engine: Engine,
    config: EngineConfig,
    /// `max_memory_bytes` as the `usize` wasmtime's limiter takes.
    memory_cap: usize,
    cache: DiskCache,
    core_linker: Linker<CoreState>,
    wasi_linker: Linker<WasiState>,
    /// Names of the `wasi_snapshot_preview1` functions `wasi_linker` defines.
    wasi_functions: HashSet<String>,
    /// Real compilations done by this engine (cache hits do not count). Written by `load`,
    /// read by tests and metrics.
    compiled: AtomicU64,
    /// One permit per pooling slot: a call holds one from before instantiation until its
    /// instance is dropped, so calls wait for a slot instead of failing on a full pool.
    slots: Semaphore,
    _ticker: EpochTicker,
}

impl WasmEngine {
    /// Builds the engine and starts its epoch ticker. Creates `cache_dir` if missing.
    pub fn new(cfg: EngineConfig) -> Result<Self, WasmError> {
        if cfg.max_instances == 0 {
            return Err(WasmError::Engine("max_instances must be at least 1".into()));
        }
        if !(WASM_PAGE_BYTES..=4 << 30).contains(&cfg.max_memory_bytes) {
            return Err(WasmError::Engine(format!(
                "max_memory_bytes must be between 64 KiB and 4 GiB, not {}",
                cfg.max_memory_bytes
            )));
        }
        let memory_cap = usize::try_from(cfg.max_memory_bytes)
            .map_err(|_| WasmError::Engine("max_memory_bytes does not fit in usize".into()))?;
        let engine = Engine::new(&wasmtime_config(&cfg))
            .map_err(|err| WasmError::Engine(format!("cannot create the engine: {err:#}")))?;
        let cache = DiskCache::open(&cfg.cache_dir, &engine)?;

        let core_linker = Linker::new(&engine);
        let wasi_linker = wasi_linker(&engine)?;
        let mut store = Store::new(&engine, WasiState::empty(memory_cap));
        let wasi_functions = wasi_linker
            .iter(&mut store)
            .filter(|(module, _, _)| *module == WASI_MODULE)
            .map(|(_, name, _)| name.to_owned())
            .collect();
        drop(store);

        let ticker = EpochTicker::start(engine.clone())?;
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        Ok(Self {
            inner: Arc::new(EngineInner {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                engine,
                memory_cap,
                cache,
                core_linker,
                wasi_linker,
                wasi_functions,
                compiled: AtomicU64::new(0),
                slots: Semaphore::new(cfg.max_instances as usize),
                config: cfg,
                _ticker: ticker,
            }),
        })
    }

    /// The configuration this engine was built with.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// The deadline to use for calls that specify none.
    pub fn default_deadline(&self) -> Duration {
        self.inner.config.default_deadline
    }

    /// Real compilations this engine has done; loads served from the disk cache do not count.
    pub fn compiled_count(&self) -> u64 {
        self.inner.compiled.load(Ordering::Relaxed)
    }

    /// Validates and prepares a module from binary wasm or wat text.
    ///
    /// The precompiled artifact is cached in `cache_dir` under the wasm's sha256 and the engine's
    /// compatibility hash, so a later load (also by a new process) deserializes it instead of
    /// compiling. The ABI is detected from the exports ([`Abi`]); imports are checked against
    /// what that ABI allows. Compiling can take seconds of CPU: call this from a blocking
    /// context (e.g. `tokio::task::spawn_blocking`), not on an async worker.
    pub fn load(&self, wasm: &[u8]) -> Result<WasmModule, WasmError> {
        let inner = &self.inner;
        let binary = to_binary(wasm)?;
        let digest = hex::encode(Sha256::digest(&binary));
        let module = match inner.cache.get(&inner.engine, &digest) {
            Some(module) => module,
            None => self.compile(&binary, &digest)?,
        };

        let abi = module::detect_abi(&module)?;
        module::check_imports(&module, abi, &inner.wasi_functions)?;
        let invalid = |err: wasmtime::Error| WasmError::Invalid(format!("{err:#}"));
        let prepared = match abi {
            Abi::Core => Prepared::Core(CorePre::new(
                inner
                    .core_linker
                    .instantiate_pre(&module)
                    .map_err(invalid)?,
            )?),
            Abi::WasiCommand => Prepared::Wasi(
                inner
                    .wasi_linker
                    .instantiate_pre(&module)
                    .map_err(invalid)?,
            ),
        };
        tracing::debug!(%digest, %abi, "loaded wasm module");
        Ok(WasmModule {
            inner: Arc::new(ModuleInner {
                engine_id: inner.id,
                digest,
                abi,
                prepared,
            }),
        })
    }

    /// Compiles and caches; a failure to write the cache is logged, not fatal (the module is
    /// fine, only the next process will compile again).
    fn compile(&self, binary: &[u8], digest: &str) -> Result<Module, WasmError> {
        let module = Module::from_binary(&self.inner.engine, binary)
            .map_err(|err| WasmError::Invalid(format!("{err:#}")))?;
        self.inner.compiled.fetch_add(1, Ordering::Relaxed);
        let stored = module
            .serialize()
            .map_err(|err| format!("{err:#}"))
            .and_then(|artifact| {
                self.inner
                    .cache
                    .put(digest, &artifact)
                    .map_err(|err| err.to_string())
            });
        if let Err(error) = stored {
            let path = self.inner.cache.path(digest);
            tracing::warn!(path = %path.display(), %error, "cannot cache compiled module");
        }
        Ok(module)
    }

    /// Runs one call on a fresh instance and returns its JSON output (see [`Abi`] for how input
    /// and output travel). Fails with [`WasmError::Timeout`] once `deadline` has passed,
    /// counting any wait for a free slot.
    pub async fn call(
        &self,
        module: &WasmModule,
        input: &[u8],
        deadline: Duration,
    ) -> Result<Vec<u8>, WasmError> {
        self.invoke(module, input, deadline)
            .await
            .map(|done| done.output)
    }

    /// Like [`WasmEngine::call`], also returning the tail of a WASI guest's stderr (for logs).
    pub async fn invoke(
        &self,
        module: &WasmModule,
        input: &[u8],
        deadline: Duration,
    ) -> Result<Invocation, WasmError> {
        let span =
            tracing::debug_span!("wasm_call", digest = %module.digest(), abi = %module.abi());
        self.invoke_inner(module, input, deadline)
            .instrument(span)
            .await
    }

    async fn invoke_inner(
        &self,
        module: &WasmModule,
        input: &[u8],
        deadline: Duration,
    ) -> Result<Invocation, WasmError> {
        // An id compare, not `Engine::same` on the module: that reaches the engine through
        // three pointers, cold when many modules are called in turn (bench/NOTES.md).
        if module.inner.engine_id != self.inner.id {
            return Err(WasmError::Engine(
                "module was loaded by a different engine".into(),
            ));
        }
        // Clamped so that instant arithmetic cannot overflow; the error still reports `deadline`.
        let give_up_at = tokio::time::Instant::now() + deadline.min(LONGEST_DEADLINE);
        let permit = match tokio::time::timeout_at(give_up_at, self.inner.slots.acquire()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(WasmError::Engine("the instance pool is closed".into())),
            Err(_) => return Err(WasmError::Timeout(deadline)),
        };
        let budget = Budget {
            memory: self.inner.memory_cap,
            time: give_up_at.saturating_duration_since(tokio::time::Instant::now()),
            deadline,
        };
        let time = budget.time;

        // The guest runs on this task, on a fiber (`call_async`), and yields at every epoch
        // tick, so a long guest shares the async worker instead of holding it, and a short one
        // (the common case) costs no hand-off to another thread. Handing every call to
        // `spawn_blocking` was a fifth of a small call's CPU (bench/NOTES.md). The deadline is
        // enforced inside by the epoch callback; the timeout here is only a backstop, and
        // dropping the future abandons the guest where it stands.
        let run = run::run(&self.inner.engine, &module.inner, input.to_vec(), &budget);
        let result = match tokio::time::timeout(time + HOST_GRACE, run).await {
            Ok(result) => result,
            Err(_) => Err(WasmError::Timeout(deadline)),
        };
        drop(permit);
        match &result {
            Ok(done) => tracing::debug!(output_bytes = done.output.len(), "wasm call completed"),
            Err(err) => tracing::debug!(error = %err, status = err.status(), "wasm call failed"),
        }
        result
    }
}

impl fmt::Debug for WasmEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WasmEngine")
            .field("config", &self.inner.config)
            .field("compiled", &self.compiled_count())
            .finish_non_exhaustive()
    }
}

/// The wasmtime configuration: pooling, copy-on-write images, epochs, modest reservations.
fn wasmtime_config(cfg: &EngineConfig) -> Config {
    // Reserve exactly the cap per memory (rounded to whole pages) instead of wasmtime's 4 GiB
    // default, so `max_instances` slots need `max_instances × (cap + guard)` of address space
    // (1000 × 66 MiB ≈ 66 GiB by default) rather than terabytes. Memories then never move.
    let reservation = cfg.max_memory_bytes.div_ceil(WASM_PAGE_BYTES) * WASM_PAGE_BYTES;
    let mut pool = PoolingAllocationConfig::new();
    pool.total_core_instances(cfg.max_instances)
        .total_memories(cfg.max_instances)
        .total_tables(cfg.max_instances)
        .max_memories_per_module(1)
        .max_tables_per_module(1)
        // Components are never used; every call runs on a pooled fiber stack (`call_async`).
        .total_component_instances(0)
        .total_stacks(cfg.max_instances)
        // Stacks are reused without zeroing (the default); nothing to decommit per call.
        .async_stack_keep_resident(0)
        .max_memory_size(reservation as usize)
        // Reset the first pages of a slot with memset instead of madvise: most guests touch
        // little memory, and an madvise per call (plus the TLB shootdowns it causes) was the
        // largest cost of a small call (bench/NOTES.md).
        .linear_memory_keep_resident(1 << 20)
        .table_keep_resident(64 << 10)
        // Where the kernel has PAGEMAP_SCAN (Linux 6.7+), reset only the pages a call dirtied
        // rather than the slot's first pages whole.
        .pagemap_scan(Enabled::Auto);

    let mut config = Config::new();
    config
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .memory_reservation(reservation)
        .memory_guard_size(MEMORY_GUARD_BYTES)
        .memory_reservation_for_growth(0)
        .memory_init_cow(true)
        .epoch_interruption(true)
        .parallel_compilation(true)
        .cranelift_opt_level(OptLevel::Speed);
    config
}

/// The WASI preview 1 linker (async host calls, as every call runs with `call_async`), with
/// `poll_oneoff` replaced: a sleeping guest runs no wasm, so the epoch cannot interrupt it, and
/// it would hold a pool slot past its deadline until the host's backstop timeout. Guests get
/// `ENOTSUP` instead and cannot sleep.
fn wasi_linker(engine: &Engine) -> Result<Linker<WasiState>, WasmError> {
    let engine_error =
        |err: wasmtime::Error| WasmError::Engine(format!("cannot link WASI: {err:#}"));
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |state: &mut WasiState| &mut state.wasi)
        .map_err(engine_error)?;
    linker.allow_shadowing(true);
    linker
        .func_wrap(
            WASI_MODULE,
            "poll_oneoff",
            |_subscriptions: i32, _events: i32, _count: i32, _events_written: i32| ERRNO_NOTSUP,
        )
        .map_err(engine_error)?;
    linker.allow_shadowing(false);
    Ok(linker)
}

/// Binary wasm as is; wat text converted.
fn to_binary(wasm: &[u8]) -> Result<Cow<'_, [u8]>, WasmError> {
    if wasm.starts_with(b"\0asm") {
        return Ok(Cow::Borrowed(wasm));
    }
    match std::str::from_utf8(wasm) {
        Ok(text) => wat::parse_str(text)
            .map(Cow::Owned)
            .map_err(|err| WasmError::Invalid(format!("not valid wat text: {err}"))),
        Err(_) => Err(WasmError::Invalid(
            "neither a wasm binary (no \\0asm header) nor wat text".into(),
        )),
    }
}

/// The thread that advances the engine's epoch every [`EPOCH_TICK`], which is what makes
/// deadlines fire. Stops when dropped (with the last engine clone).
struct EpochTicker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine) -> Result<Self, WasmError> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = thread::Builder::new()
            .name("morel-wasm-epoch".into())
            .spawn(move || {
                // Disconnected (the sender dropped) means stop; nothing is ever sent.
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(EPOCH_TICK) {
                    engine.increment_epoch();
                }
            })
            .map_err(|source| {
                WasmError::Engine(format!("cannot start the epoch ticker: {source}"))
            })?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            // The ticker wakes within one tick; it cannot panic, but never propagate if it did.
            let _ = thread.join();
        }
    }
}
