//! Runs the static discovery scripts shipped in the binary and parses what they report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

use crate::ManifestError;

const DISCOVER_PY: &str = include_str!("../scripts/discover.py");
const DISCOVER_JS: &str = include_str!("../scripts/discover.js");

#[derive(Debug, Deserialize)]
pub struct Report {
    #[serde(default)]
    pub files: Vec<FileReport>,
    #[serde(default)]
    pub endpoints: BTreeMap<String, EndpointReport>,
    #[serde(default)]
    pub errors: Vec<ErrorReport>,
}

#[derive(Debug, Deserialize)]
pub struct FileReport {
    pub file: String,
    #[serde(default)]
    pub functions: Vec<FunctionReport>,
}

#[derive(Debug, Deserialize)]
pub struct FunctionReport {
    pub name: String,
    #[serde(default)]
    pub params: Vec<String>,
    #[serde(default)]
    pub is_async: bool,
    #[serde(default)]
    pub is_class: bool,
    pub endpoint: Option<String>,
    pub http_method: Option<String>,
    pub http_path: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct EndpointReport {
    #[serde(default)]
    pub options: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Deserialize)]
pub struct ErrorReport {
    pub file: String,
    #[serde(default)]
    pub line: u64,
    pub message: String,
}

#[derive(Clone, Copy)]
pub enum Language {
    Python,
    Node,
}

/// Writes the script once per content into the temp dir and returns its path.
fn script_path(lang: Language) -> Result<PathBuf, ManifestError> {
    let (name, body) = match lang {
        Language::Python => ("discover.py", DISCOVER_PY),
        Language::Node => ("discover.js", DISCOVER_JS),
    };
    use sha2::Digest as _;
    let hash = hex::encode(&sha2::Sha256::digest(body.as_bytes())[..6]);
    let dir = std::env::temp_dir().join(format!("morel-scripts-{hash}"));
    let path = dir.join(name);
    if !path.exists() {
        std::fs::create_dir_all(&dir).map_err(|source| ManifestError::Io {
            path: dir.clone(),
            source,
        })?;
        // Write then rename so concurrent builds never see a half-written script.
        let tmp = dir.join(format!("{name}.{}", std::process::id()));
        std::fs::write(&tmp, body).map_err(|source| ManifestError::Io {
            path: tmp.clone(),
            source,
        })?;
        std::fs::rename(&tmp, &path).map_err(|source| ManifestError::Io {
            path: path.clone(),
            source,
        })?;
    }
    Ok(path)
}

/// Runs discovery for `lang` over `files` (relative to `root`; empty = the script's defaults).
pub fn run(
    lang: Language,
    program: &str,
    root: &Path,
    files: &[String],
) -> Result<Report, ManifestError> {
    let script = script_path(lang)?;
    // pyenv's shim picks the interpreter in a shell script that costs twice the interpreter's
    // own start; go straight to the one it would pick (`pyenv.rs`), else run what was named.
    let direct = match lang {
        Language::Python => std::env::current_dir().ok().and_then(|cwd| {
            crate::pyenv::resolve(program, std::env::var_os("PATH").as_deref(), &cwd, |k| {
                std::env::var(k).ok()
            })
        }),
        Language::Node => None,
    };
    let out = Command::new(direct.as_deref().map_or(program.as_ref(), Path::as_os_str))
        .arg(&script)
        .arg(root)
        .args(files)
        .output()
        .map_err(|e| ManifestError::Tool {
            program: program.to_owned(),
            message: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(ManifestError::Tool {
            program: program.to_owned(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    let report: Report = serde_json::from_slice(&out.stdout).map_err(|e| ManifestError::Tool {
        program: program.to_owned(),
        message: format!("unreadable discovery output: {e}"),
    })?;
    if let Some(err) = report.errors.first() {
        return Err(ManifestError::Syntax {
            file: err.file.clone(),
            line: err.line,
            message: err.message.clone(),
        });
    }
    Ok(report)
}
