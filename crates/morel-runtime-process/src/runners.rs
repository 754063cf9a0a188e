//! The runner scripts and the Python SDK, shipped inside the binary and written to disk once
//! per content hash so every worker starts from a file.

use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

const RUNNER_PY: &str = include_str!("../runners/runner.py");
const RUNNER_JS: &str = include_str!("../runners/runner.js");
const SDK_PY: &str = include_str!("../../../sdk/python/morel/__init__.py");

/// Where the runners and the SDK were written.
#[derive(Clone, Debug)]
pub struct RunnerFiles {
    pub runner_py: PathBuf,
    pub runner_js: PathBuf,
    /// Directory to put on `PYTHONPATH` so `import morel` finds the SDK.
    pub python_path: PathBuf,
}

impl RunnerFiles {
    /// Writes the files under `dir/<hash>/` unless they are already there.
    pub fn install(dir: &Path) -> std::io::Result<Self> {
        let mut h = Sha256::new();
        for part in [RUNNER_PY, RUNNER_JS, SDK_PY] {
            h.update(part.as_bytes());
        }
        let root = dir.join(hex::encode(&h.finalize()[..6]));
        let files = RunnerFiles {
            runner_py: root.join("runner.py"),
            runner_js: root.join("runner.js"),
            python_path: root.join("sdk"),
        };
        if !root.join(".complete").exists() {
            std::fs::create_dir_all(files.python_path.join("morel"))?;
            std::fs::write(&files.runner_py, RUNNER_PY)?;
            std::fs::write(&files.runner_js, RUNNER_JS)?;
            std::fs::write(files.python_path.join("morel/__init__.py"), SDK_PY)?;
            std::fs::write(root.join(".complete"), b"")?;
        }
        Ok(files)
    }

    /// The directory holding the runners and the SDK.
    pub fn dir(&self) -> &Path {
        self.runner_py.parent().unwrap_or(Path::new("/"))
    }
}
