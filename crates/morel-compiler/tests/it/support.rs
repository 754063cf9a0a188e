//! Shared helpers: ready toolchains, example sources, running modules under Node, fake tools.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use morel_compiler::{CompileLimits, Language, Toolchains};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn example(relative: &str) -> String {
    let path = repo_root().join("examples").join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The machine's toolchains, all four checked: a missing one fails the test (never skips it).
pub async fn ready_toolchains() -> Toolchains {
    let toolchains = Toolchains::detect();
    let missing: Vec<String> = toolchains
        .doctor()
        .await
        .into_iter()
        .filter(|s| !s.available)
        .map(|s| format!("  {}: {}", s.language, s.detail))
        .collect();
    assert!(
        missing.is_empty(),
        "toolchains missing; run scripts/setup-toolchains first:\n{}",
        missing.join("\n")
    );
    toolchains
}

pub async fn compile(toolchains: &Toolchains, lang: Language, source: &str) -> Vec<u8> {
    match toolchains
        .compile(lang, source, &CompileLimits::default())
        .await
    {
        Ok(module) => module,
        Err(e) => panic!("compiling {lang} failed: {e}"),
    }
}

fn node() -> Command {
    let mut cmd = Command::new("node");
    cmd.arg("--no-warnings");
    cmd
}

fn node_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/node")
        .join(name)
}

/// What a WASI command did with `stdin`.
#[derive(Debug)]
pub struct WasiRun {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs a WASI command module under Node with `stdin` as its input.
pub fn run_wasi(module: &[u8], stdin: &str) -> WasiRun {
    let dir = tempfile::tempdir().unwrap();
    let module_path = dir.path().join("module.wasm");
    let stdin_path = dir.path().join("stdin");
    let stdout_path = dir.path().join("stdout");
    std::fs::write(&module_path, module).unwrap();
    std::fs::write(&stdin_path, stdin).unwrap();
    let out = node()
        .arg(node_script("run_wasi.mjs"))
        .args([&module_path, &stdin_path, &stdout_path])
        .output()
        .expect("run node (is it installed? scripts/test installs it)");
    WasiRun {
        code: out.status.code(),
        stdout: std::fs::read_to_string(&stdout_path).unwrap_or_default(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// What a core-ABI module returned for each input, called in order in one instance.
#[derive(Debug)]
pub struct CoreRun {
    /// `kind:name`, sorted.
    pub exports: Vec<String>,
    pub outputs: Vec<String>,
}

pub fn run_core(module: &[u8], inputs: &[&str]) -> CoreRun {
    let dir = tempfile::tempdir().unwrap();
    let module_path = dir.path().join("module.wasm");
    std::fs::write(&module_path, module).unwrap();
    let mut cmd = node();
    cmd.arg(node_script("run_core.mjs")).arg(&module_path);
    for (i, input) in inputs.iter().enumerate() {
        let path = dir.path().join(format!("input-{i}"));
        std::fs::write(&path, input).unwrap();
        cmd.arg(path);
    }
    let out = cmd.output().expect("run node");
    assert!(
        out.status.success(),
        "core-ABI run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let strings = |key: &str| -> Vec<String> {
        report[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    CoreRun {
        exports: strings("exports"),
        outputs: strings("outputs"),
    }
}

pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"))
}

/// Writes an executable shell script standing in for a compiler.
pub fn fake_tool(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}
