//! One call on a fresh instance, start to finish. The guest runs on a fiber of the calling
//! task (`call_async`) and yields to the executor at every epoch tick, so it never holds an
//! async worker for longer than one tick.

use std::time::Duration;

use wasmtime::{Engine, InstancePre, Store, Trap, UpdateDeadline, WasmBacktrace};
use wasmtime_wasi::I32Exit;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;

use crate::config::{MAX_OUTPUT_BYTES, MAX_STDERR_BYTES};
use crate::limits::GuestLimits;
use crate::module::{CorePre, ModuleInner, Prepared};
use crate::stdio::Capture;
use crate::{Invocation, WasmError};

/// `argv[0]` of every WASI guest; no further arguments are passed.
const PROGRAM_NAME: &str = "main";

/// Store data of a core ABI call.
pub(crate) struct CoreState {
    limits: GuestLimits,
}

/// Store data of a WASI command call.
pub(crate) struct WasiState {
    limits: GuestLimits,
    pub(crate) wasi: WasiP1Ctx,
}

impl WasiState {
    /// A context with no stdio, files, environment or network; used to list what the WASI
    /// linker provides.
    pub(crate) fn empty(cap: usize) -> Self {
        Self {
            limits: GuestLimits::new(cap),
            wasi: WasiCtxBuilder::new().build_p1(),
        }
    }
}

/// What a call may use, fixed before it starts.
pub(crate) struct Budget {
    /// Cap on linear memory, bytes.
    pub(crate) memory: usize,
    /// Time left for the guest (the caller's deadline minus any wait for a slot).
    pub(crate) time: Duration,
    /// The caller's deadline, as reported in [`WasmError::Timeout`].
    pub(crate) deadline: Duration,
}

/// Runs one call of `module` on a new instance.
pub(crate) async fn run(
    engine: &Engine,
    module: &ModuleInner,
    input: Vec<u8>,
    budget: &Budget,
) -> Result<Invocation, WasmError> {
    if input.len() > budget.memory {
        return Err(memory_limit(budget));
    }
    match &module.prepared {
        Prepared::Core(core) => run_core(engine, core, &input, budget).await,
        Prepared::Wasi(pre) => run_wasi(engine, pre, input, budget).await,
    }
}

async fn run_core(
    engine: &Engine,
    core: &CorePre,
    input: &[u8],
    budget: &Budget,
) -> Result<Invocation, WasmError> {
    let mut store = Store::new(
        engine,
        CoreState {
            limits: GuestLimits::new(budget.memory),
        },
    );
    store.limiter(|state| &mut state.limits);
    arm_deadline(&mut store, budget.time);

    let instance = core
        .pre
        .instantiate_async(&mut store)
        .await
        .map_err(|err| instantiate_error(err, store.data().limits.exceeded(), budget))?;
    // `load` checked these exports and their types, so failures here are engine faults.
    let lost = |name: &str| WasmError::Engine(format!("core module lost its `{name}` export"));
    let engine_fault = |err: wasmtime::Error| WasmError::Engine(format!("{err:#}"));
    let memory = instance
        .get_module_export(&mut store, &core.memory)
        .and_then(|e| e.into_memory())
        .ok_or_else(|| lost("memory"))?;
    let alloc = instance
        .get_module_export(&mut store, &core.alloc)
        .and_then(|e| e.into_func())
        .ok_or_else(|| lost("alloc"))?
        .typed::<i32, i32>(&store)
        .map_err(engine_fault)?;
    let handle = instance
        .get_module_export(&mut store, &core.handle)
        .and_then(|e| e.into_func())
        .ok_or_else(|| lost("handle"))?
        .typed::<(i32, i32), i64>(&store)
        .map_err(engine_fault)?;

    let len = i32::try_from(input.len()).map_err(|_| memory_limit(budget))?;
    let guest_failed = |store: &Store<CoreState>, err| {
        guest_error(err, store.data().limits.exceeded(), budget, None)
    };
    let ptr = alloc
        .call_async(&mut store, len)
        .await
        .map_err(|err| guest_failed(&store, err))?;
    // Pointers are unsigned offsets; `as u32` reinterprets the i32's bits.
    let at = ptr as u32 as usize;
    memory.write(&mut store, at, input).map_err(|_| {
        WasmError::Abi(format!(
            "alloc({len}) returned {at}, but {len} bytes there fall outside the {}-byte memory",
            memory.data_size(&store)
        ))
    })?;
    let packed = handle
        .call_async(&mut store, (ptr, len))
        .await
        .map_err(|err| guest_failed(&store, err))? as u64;

    // Output location: pointer in the high 32 bits, length in the low 32 bits.
    let out_at = (packed >> 32) as usize;
    let out_len = (packed & 0xffff_ffff) as usize;
    if out_len > MAX_OUTPUT_BYTES {
        return Err(too_large());
    }
    let data = memory.data(&store);
    let output = data
        .get(out_at..out_at + out_len)
        .ok_or_else(|| {
            WasmError::Abi(format!(
                "handle returned output at {out_at} of length {out_len}, outside the {}-byte memory",
                data.len()
            ))
        })?
        .to_vec();
    check_json(&output)?;
    Ok(Invocation {
        output,
        stderr: String::new(),
    })
}

async fn run_wasi(
    engine: &Engine,
    pre: &InstancePre<WasiState>,
    input: Vec<u8>,
    budget: &Budget,
) -> Result<Invocation, WasmError> {
    let stdout = Capture::head(MAX_OUTPUT_BYTES);
    let stderr = Capture::tail(MAX_STDERR_BYTES);
    // Nothing inherited: no preopened directories, no environment, no network, one argument.
    let wasi = WasiCtxBuilder::new()
        .stdin(MemoryInputPipe::new(input))
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .arg(PROGRAM_NAME)
        .build_p1();
    let mut store = Store::new(
        engine,
        WasiState {
            limits: GuestLimits::new(budget.memory),
            wasi,
        },
    );
    store.limiter(|state| &mut state.limits);
    arm_deadline(&mut store, budget.time);

    let instance = pre
        .instantiate_async(&mut store)
        .await
        .map_err(|err| instantiate_error(err, store.data().limits.exceeded(), budget))?;
    let start = instance
        .get_typed_func::<(), ()>(&mut store, "_start")
        .map_err(|err| WasmError::Engine(format!("{err:#}")))?;
    let result = start.call_async(&mut store, ()).await;

    if stdout.overflowed() {
        return Err(too_large());
    }
    if let Err(err) = result {
        // `proc_exit(0)` surfaces as an error but is a normal end.
        if !matches!(err.downcast_ref::<I32Exit>(), Some(I32Exit(0))) {
            let exceeded = store.data().limits.exceeded();
            return Err(guest_error(err, exceeded, budget, Some(&stderr)));
        }
    }
    let output = stdout.contents();
    check_json(&output)?;
    Ok(Invocation {
        output,
        stderr: stderr.text(),
    })
}

/// At every epoch tick the guest yields to the executor (other tasks on this worker run), and
/// traps with [`Trap::Interrupt`] at the first tick past `time`: at most one [`crate::config::EPOCH_TICK`] late.
fn arm_deadline<T>(store: &mut Store<T>, time: Duration) {
    let end = std::time::Instant::now() + time;
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        Ok(if std::time::Instant::now() >= end {
            UpdateDeadline::Interrupt
        } else {
            UpdateDeadline::Yield(1)
        })
    });
}

/// Classifies an error raised while the guest ran.
fn guest_error(
    err: wasmtime::Error,
    memory_exceeded: bool,
    budget: &Budget,
    stderr: Option<&Capture>,
) -> WasmError {
    let stderr_text = stderr.map(Capture::text).unwrap_or_default();
    if let Some(I32Exit(code)) = err.downcast_ref::<I32Exit>() {
        return WasmError::Exit {
            code: *code,
            stderr: stderr_text,
        };
    }
    if memory_exceeded {
        return memory_limit(budget);
    }
    if err.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        return WasmError::Timeout(budget.deadline);
    }
    // Traps and errors from host functions (e.g. a WASI call with a bad pointer) alike.
    let message = describe(&err);
    let stderr_text = stderr_text.trim_end();
    if stderr_text.is_empty() {
        WasmError::Trap(message)
    } else {
        WasmError::Trap(format!("{message}; stderr: {stderr_text}"))
    }
}

/// How many wasm frames a trap message names.
const FRAMES_IN_MESSAGE: usize = 5;

/// One line for the function's author: the trap (or the host error's cause) first, then where
/// in the guest it happened, innermost frame first, e.g. "wasm trap: wasm `unreachable`
/// instruction executed (in handle ← func[3])".
fn describe(err: &wasmtime::Error) -> String {
    let what = match err.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => err.root_cause().to_string(),
    };
    let Some(backtrace) = err.downcast_ref::<WasmBacktrace>() else {
        return what;
    };
    let frames: Vec<String> = backtrace
        .frames()
        .iter()
        .take(FRAMES_IN_MESSAGE)
        .map(|frame| match frame.func_name() {
            Some(name) => name.to_owned(),
            None => format!("func[{}]", frame.func_index()),
        })
        .collect();
    if frames.is_empty() {
        what
    } else {
        format!("{what} (in {})", frames.join(" ← "))
    }
}

/// Classifies an instantiation failure: the start function's traps are the guest's, anything
/// else (an exhausted pool) is the engine's.
fn instantiate_error(err: wasmtime::Error, memory_exceeded: bool, budget: &Budget) -> WasmError {
    if memory_exceeded || err.downcast_ref::<Trap>().is_some() {
        guest_error(err, memory_exceeded, budget, None)
    } else {
        WasmError::Engine(format!("cannot instantiate: {err:#}"))
    }
}

fn memory_limit(budget: &Budget) -> WasmError {
    WasmError::MemoryLimit {
        limit: budget.memory as u64,
    }
}

fn too_large() -> WasmError {
    WasmError::BadOutput(format!(
        "output is larger than the limit of {MAX_OUTPUT_BYTES} bytes"
    ))
}

/// The output must be one JSON value (surrounding whitespace allowed).
fn check_json(output: &[u8]) -> Result<(), WasmError> {
    serde_json::from_slice::<serde::de::IgnoredAny>(output)
        .map(drop)
        .map_err(|err| WasmError::BadOutput(format!("output is not JSON: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_values_pass_and_other_bytes_fail() {
        assert!(check_json(b"{\"a\": [1, 2]}\n").is_ok());
        assert!(check_json(b"42").is_ok());
        for bad in [&b""[..], b"hello", b"{\"a\":", b"1 2"] {
            let err = check_json(bad).expect_err("not JSON");
            assert!(err.to_string().starts_with("output is not JSON: "), "{err}");
        }
    }
}
