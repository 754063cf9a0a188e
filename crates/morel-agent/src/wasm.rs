//! WebAssembly resources: an app's wasm functions, compiled when the release is prepared and
//! run in this process (the gateway's) on a fresh instance per call.

use std::collections::HashMap;
use std::time::Duration;

use morel_runtime_process::protocol::FunctionMeta;
use morel_runtime_wasm::{WasmEngine, WasmError, WasmModule};

pub struct WasmResource {
    pub resource: String,
    pub timeout: Duration,
    engine: WasmEngine,
    modules: HashMap<String, WasmModule>,
}

impl WasmResource {
    pub(crate) fn new(
        resource: String,
        timeout: Duration,
        engine: WasmEngine,
        modules: HashMap<String, WasmModule>,
    ) -> Self {
        WasmResource {
            resource,
            timeout,
            engine,
            modules,
        }
    }

    pub fn functions(&self) -> Vec<FunctionMeta> {
        let mut names: Vec<&String> = self.modules.keys().collect();
        names.sort();
        names
            .into_iter()
            .map(|n| FunctionMeta {
                name: n.clone(),
                params: vec!["input".into()],
                is_async: false,
                // The body is the input as it is: nothing to check it against.
                signature: None,
            })
            .collect()
    }

    /// The module of function `name`; a route resolves it once, when it is installed.
    pub fn module(&self, name: &str) -> Option<&WasmModule> {
        self.modules.get(name)
    }

    /// Calls `module` (one of this resource's, from [`Self::module`]) with `input` (JSON text)
    /// on a fresh instance.
    pub async fn call(&self, module: &WasmModule, input: &[u8]) -> Result<Vec<u8>, WasmError> {
        self.engine.call(module, input, self.timeout).await
    }
}
