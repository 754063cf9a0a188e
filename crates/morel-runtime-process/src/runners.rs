//! The runner scripts and the Python and Node SDKs, shipped inside the binary and written to
//! disk once per content hash so every worker starts from a file.

use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

const RUNNER_PY: &str = include_str!("../runners/runner.py");
const RUNNER_JS: &str = include_str!("../runners/runner.js");
const SDK_PY: &str = include_str!("../../../sdk/python/morel/__init__.py");
const SDK_JS: &str = include_str!("../../../sdk/node/index.js");
const SDK_JS_PACKAGE: &str = include_str!("../../../sdk/node/package.json");

/// Where the runners and the SDKs were written.
#[derive(Clone, Debug)]
pub struct RunnerFiles {
    pub runner_py: PathBuf,
    pub runner_js: PathBuf,
    /// Directory to put on `PYTHONPATH` so `import morel` finds the SDK.
    pub python_path: PathBuf,
    /// The `node_modules` beside `runner.js` holding `morel-sdk`: the runner adds it to
    /// `NODE_PATH` itself (and resolves `import 'morel-sdk'` to it), so an app needs no
    /// install of the SDK.
    pub node_path: PathBuf,
}

impl RunnerFiles {
    /// Writes the files under `dir/<hash>/` unless they are already there.
    pub fn install(dir: &Path) -> std::io::Result<Self> {
        let mut h = Sha256::new();
        for part in [RUNNER_PY, RUNNER_JS, SDK_PY, SDK_JS, SDK_JS_PACKAGE] {
            h.update(part.as_bytes());
        }
        let root = dir.join(hex::encode(&h.finalize()[..6]));
        let files = RunnerFiles {
            runner_py: root.join("runner.py"),
            runner_js: root.join("runner.js"),
            python_path: root.join("sdk"),
            node_path: root.join("node_modules"),
        };
        if !root.join(".complete").exists() {
            std::fs::create_dir_all(files.python_path.join("morel"))?;
            let node_sdk = files.node_path.join("morel-sdk");
            std::fs::create_dir_all(&node_sdk)?;
            std::fs::write(&files.runner_py, RUNNER_PY)?;
            std::fs::write(&files.runner_js, RUNNER_JS)?;
            std::fs::write(files.python_path.join("morel/__init__.py"), SDK_PY)?;
            std::fs::write(node_sdk.join("index.js"), SDK_JS)?;
            std::fs::write(node_sdk.join("package.json"), SDK_JS_PACKAGE)?;
            std::fs::write(root.join(".complete"), b"")?;
        }
        Ok(files)
    }

    /// The directory holding the runners and the SDKs.
    pub fn dir(&self) -> &Path {
        self.runner_py.parent().unwrap_or(Path::new("/"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_node_sdk_is_written_where_the_runner_looks_for_it() {
        let tmp = tempfile::tempdir().unwrap();
        let files = RunnerFiles::install(tmp.path()).unwrap();
        // runner.js appends `<its dir>/node_modules` to NODE_PATH.
        assert_eq!(files.node_path, files.dir().join("node_modules"));
        let sdk = files.node_path.join("morel-sdk");
        assert_eq!(
            std::fs::read_to_string(sdk.join("index.js")).unwrap(),
            SDK_JS
        );
        let package: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(sdk.join("package.json")).unwrap())
                .unwrap();
        assert_eq!(package["name"], "morel-sdk");
        assert_eq!(package["main"], "index.js");
    }
}
