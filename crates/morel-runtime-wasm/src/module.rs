//! Loaded modules: which guest ABI they speak and what they may import.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use wasmtime::{ExternType, FuncType, InstancePre, Module, ModuleExport};

use crate::WasmError;
use crate::run::{CoreState, WasiState};

/// The import module name of WASI preview 1.
pub(crate) const WASI_MODULE: &str = "wasi_snapshot_preview1";

/// How a module takes input and gives output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Abi {
    /// Exports `memory`, `alloc: (i32) -> i32` and `handle: (i32, i32) -> i64`; imports nothing.
    /// The host calls `ptr = alloc(len)`, writes the input there, calls `handle(ptr, len)` and
    /// reads the output from the packed result: pointer in the high 32 bits, length in the low
    /// 32 bits (`(ptr as u64) << 32 | len as u64`).
    Core,
    /// Exports `_start: () -> ()`; may import WASI preview 1 functions. Input on stdin, output on
    /// stdout, stderr captured; no files, environment, network or sleeping.
    WasiCommand,
}

impl fmt::Display for Abi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Abi::Core => "core",
            Abi::WasiCommand => "wasi_command",
        })
    }
}

/// A validated, compiled module ready to instantiate: cheap to clone and share across tasks.
/// Holds its `InstancePre`, so each call only allocates a pooled slot and maps the
/// copy-on-write memory image. Only usable with the [`WasmEngine`](crate::WasmEngine) that
/// loaded it.
#[derive(Clone)]
pub struct WasmModule {
    pub(crate) inner: Arc<ModuleInner>,
}

pub(crate) struct ModuleInner {
    /// The id of the [`WasmEngine`](crate::WasmEngine) that loaded it.
    pub(crate) engine_id: u64,
    pub(crate) digest: String,
    pub(crate) abi: Abi,
    pub(crate) prepared: Prepared,
}

/// The `InstancePre` for the module's ABI (each ABI has its own store data and linker).
pub(crate) enum Prepared {
    Core(CorePre),
    Wasi(InstancePre<WasiState>),
}

/// A core ABI module ready to instantiate, with its three exports looked up once: a call
/// fetches them by index instead of hashing their names on every instance.
pub(crate) struct CorePre {
    pub(crate) pre: InstancePre<CoreState>,
    pub(crate) memory: ModuleExport,
    pub(crate) alloc: ModuleExport,
    pub(crate) handle: ModuleExport,
}

impl CorePre {
    /// `detect_abi` has checked that the exports exist with the core ABI's types.
    pub(crate) fn new(pre: InstancePre<CoreState>) -> Result<Self, WasmError> {
        let module = pre.module();
        let export = |name: &str| {
            module.get_export_index(name).ok_or_else(|| {
                WasmError::Invalid(format!("core ABI module has no `{name}` export"))
            })
        };
        Ok(CorePre {
            memory: export("memory")?,
            alloc: export("alloc")?,
            handle: export("handle")?,
            pre,
        })
    }
}

impl WasmModule {
    /// The guest ABI detected from the module's exports.
    pub fn abi(&self) -> Abi {
        self.inner.abi
    }

    /// Hex sha256 of the binary wasm (after converting wat text, if that was given).
    pub fn digest(&self) -> &str {
        &self.inner.digest
    }
}

impl fmt::Debug for WasmModule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WasmModule")
            .field("digest", &self.inner.digest)
            .field("abi", &self.inner.abi)
            .finish_non_exhaustive()
    }
}

/// Decides the ABI from the exports: the core ABI when all of its exports are present with
/// the right types, else a WASI command when `_start` is, else an error naming what is missing
/// or mistyped for each ABI.
pub(crate) fn detect_abi(module: &Module) -> Result<Abi, WasmError> {
    let mut core_problems = Vec::new();
    match module.get_export("memory") {
        Some(ExternType::Memory(memory)) if !memory.is_64() => {}
        Some(_) => core_problems.push("`memory` is not a 32-bit linear memory".to_owned()),
        None => core_problems.push("missing export `memory`".to_owned()),
    }
    core_problems.extend(func_problem(module, "alloc", "(i32) -> i32"));
    core_problems.extend(func_problem(module, "handle", "(i32, i32) -> i64"));
    if core_problems.is_empty() {
        return Ok(Abi::Core);
    }
    match func_problem(module, "_start", "() -> ()") {
        None => Ok(Abi::WasiCommand),
        Some(start_problem) => Err(WasmError::BadExport(format!(
            "exports fit neither guest ABI; core ABI: {}; WASI command: {start_problem}",
            core_problems.join(", ")
        ))),
    }
}

/// What is wrong with the function export `name`, if anything.
fn func_problem(module: &Module, name: &str, expected: &str) -> Option<String> {
    match module.get_export(name) {
        Some(ExternType::Func(ty)) => {
            let actual = signature(&ty);
            (actual != expected).then(|| format!("`{name}` has type {actual}, expected {expected}"))
        }
        Some(_) => Some(format!("`{name}` is not a function")),
        None => Some(format!("missing export `{name}`")),
    }
}

/// A function type as text, e.g. `(i32, i32) -> i64`.
fn signature(ty: &FuncType) -> String {
    let params: Vec<String> = ty.params().map(|p| p.to_string()).collect();
    let results: Vec<String> = ty.results().map(|r| r.to_string()).collect();
    let results = match results.as_slice() {
        [one] => one.clone(),
        many => format!("({})", many.join(", ")),
    };
    format!("({}) -> {results}", params.join(", "))
}

/// Rejects imports the host does not provide: everything for the core ABI; anything but the
/// WASI preview 1 functions in `wasi_functions` for a WASI command.
pub(crate) fn check_imports(
    module: &Module,
    abi: Abi,
    wasi_functions: &HashSet<String>,
) -> Result<(), WasmError> {
    for import in module.imports() {
        let provided = abi == Abi::WasiCommand
            && import.module() == WASI_MODULE
            && matches!(import.ty(), ExternType::Func(_))
            && wasi_functions.contains(import.name());
        if !provided {
            return Err(WasmError::UnsupportedImport {
                module: import.module().to_owned(),
                name: import.name().to_owned(),
            });
        }
    }
    Ok(())
}
