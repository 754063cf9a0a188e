//! Bad sources, missing tools, limits and deadlines.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use morel_compiler::{CompileError, CompileLimits, Language, ToolPaths, Toolchains};

use crate::support::{fake_tool, ready_toolchains};

/// Compiles and expects `Failed`, whose text must contain each of `needles` and no scratch path.
async fn expect_failed(toolchains: &Toolchains, lang: Language, source: &str, needles: &[&str]) {
    let err = toolchains
        .compile(lang, source, &CompileLimits::default())
        .await
        .expect_err("the source must not compile");
    let CompileError::Failed(text) = &err else {
        panic!("expected Failed for {lang}, got {err:?}");
    };
    for needle in needles {
        assert!(text.contains(needle), "{lang}: {needle:?} not in:\n{text}");
    }
    assert!(
        !text.contains("morel-compile-"),
        "scratch path leaked:\n{text}"
    );
    assert_eq!(err.to_string(), *text, "Display is the compiler's text");
}

#[tokio::test]
async fn wat_syntax_error_reports_line_and_column() {
    let toolchains = ready_toolchains().await;
    let source = "(module\n  (func (export \"f\") (result i32)\n    i32.const))\n";
    expect_failed(
        &toolchains,
        Language::Wat,
        source,
        &["main.wat:3:", "expected"],
    )
    .await;
}

#[tokio::test]
async fn c_syntax_error_is_clangs_message() {
    let toolchains = ready_toolchains().await;
    let source = "int main(void) {\n  return 0\n}\n";
    expect_failed(
        &toolchains,
        Language::C,
        source,
        &["main.c:2:11", "expected ';'"],
    )
    .await;
}

#[tokio::test]
async fn rust_syntax_and_type_errors_are_rustcs_message() {
    let toolchains = ready_toolchains().await;
    expect_failed(
        &toolchains,
        Language::Rust,
        "fn main() {\n    let = 1;\n}\n",
        &["main.rs:2:", "expected"],
    )
    .await;
    expect_failed(
        &toolchains,
        Language::Rust,
        "fn main() {\n    let x: u32 = \"a\";\n}\n",
        &["main.rs:2:", "mismatched types"],
    )
    .await;
}

#[tokio::test]
async fn assemblyscript_syntax_error_is_ascs_message() {
    let toolchains = ready_toolchains().await;
    expect_failed(
        &toolchains,
        Language::Assemblyscript,
        "export function handle(input: string): string {\n  return input\n",
        &["main.ts(", "TS1126"],
    )
    .await;
}

#[tokio::test]
async fn assemblyscript_without_handle_says_what_to_export() {
    let toolchains = ready_toolchains().await;
    expect_failed(
        &toolchains,
        Language::Assemblyscript,
        "export function greet(input: string): string { return input; }\n",
        &["export function handle(input: string): string"],
    )
    .await;
}

#[test]
fn unknown_language_lists_the_supported_ones() {
    let err = "fortran".parse::<Language>().unwrap_err();
    let text = err.to_string();
    for name in ["fortran", "wat", "c", "rust", "assemblyscript"] {
        assert!(text.contains(name), "{name} not in {text}");
    }
    assert_eq!("as".parse::<Language>().unwrap(), Language::Assemblyscript);
}

fn missing_tools() -> ToolPaths {
    ToolPaths {
        clang: PathBuf::from("/nonexistent/clang"),
        wasi_sysroot: PathBuf::from("/nonexistent/sysroot"),
        rustc_wasm: PathBuf::from("/nonexistent/rustc"),
        asc: PathBuf::from("/nonexistent/asc"),
    }
}

#[tokio::test]
async fn oversized_source_is_rejected_before_any_tool_runs() {
    // No tool exists, so only the size check can answer.
    let toolchains = Toolchains::with_paths(missing_tools());
    let limits = CompileLimits {
        max_source_bytes: 100,
        ..CompileLimits::default()
    };
    for lang in Language::ALL {
        let err = toolchains
            .compile(lang, &"x".repeat(101), &limits)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                CompileError::TooLarge {
                    size: 101,
                    limit: 100
                }
            ),
            "{lang}: {err:?}"
        );
    }
    // Exactly at the limit is fine (and reaches the tool, which is missing).
    let err = toolchains
        .compile(Language::Rust, &"x".repeat(100), &limits)
        .await
        .unwrap_err();
    assert!(matches!(err, CompileError::Unavailable { .. }), "{err:?}");
}

#[tokio::test]
async fn missing_tools_are_unavailable_not_failed() {
    let mut paths = ToolPaths::from_env();
    paths.clang = PathBuf::from("/nonexistent/clang");
    paths.rustc_wasm = PathBuf::from("/nonexistent/rustc");
    paths.asc = PathBuf::from("/nonexistent/asc");
    let toolchains = Toolchains::with_paths(paths);
    for (lang, tool) in [
        (Language::C, "/nonexistent/clang"),
        (Language::Rust, "/nonexistent/rustc"),
        (Language::Assemblyscript, "/nonexistent/asc"),
    ] {
        let err = toolchains
            .compile(lang, "source", &CompileLimits::default())
            .await
            .unwrap_err();
        match &err {
            CompileError::Unavailable { language, reason } => {
                assert_eq!(*language, lang);
                assert!(reason.contains(tool), "{reason}");
                assert!(reason.contains("scripts/setup-toolchains"), "{reason}");
            }
            other => panic!("{lang}: expected Unavailable, got {other:?}"),
        }
    }

    let toolchains = Toolchains::with_paths(missing_tools());
    let err = toolchains
        .compile(
            Language::C,
            "int main(void) { return 0; }",
            &CompileLimits::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CompileError::Unavailable { reason, .. } if reason.contains("libc.a")),
        "{err:?}"
    );
}

/// Toolchains whose clang is a fake script, with scratch directories under `root`.
fn with_fake_clang(dir: &Path, body: &str) -> (Toolchains, PathBuf) {
    let mut paths = ToolPaths::from_env();
    paths.clang = fake_tool(dir, "clang", body);
    // The C path checks the sysroot before running clang; give it a minimal one.
    let sysroot = dir.join("sysroot");
    std::fs::create_dir_all(sysroot.join("lib/wasm32-wasi")).unwrap();
    std::fs::write(sysroot.join("lib/wasm32-wasi/libc.a"), b"").unwrap();
    paths.wasi_sysroot = sysroot;
    let scratch = dir.join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    (
        Toolchains::with_paths(paths).with_scratch_root(&scratch),
        scratch,
    )
}

fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).unwrap().next().is_none()
}

/// Whether a process is gone (or a zombie waiting for its reaper).
fn is_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

#[tokio::test]
async fn a_hanging_compiler_times_out_and_its_whole_group_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("helper.pid");
    // The "compiler" starts a helper (as clang starts wasm-ld) and both hang.
    let body = format!("sleep 600 &\necho $! > '{}'\nwait\n", pid_file.display());
    let (toolchains, scratch) = with_fake_clang(dir.path(), &body);
    let limits = CompileLimits {
        timeout: Duration::from_millis(500),
        ..CompileLimits::default()
    };

    let started = Instant::now();
    let err = toolchains
        .compile(Language::C, "int main(void) { return 0; }", &limits)
        .await
        .unwrap_err();
    assert!(
        matches!(err, CompileError::TimedOut(d) if d == Duration::from_millis(500)),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "compile timed out after 500ms");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );

    let helper: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !is_dead(helper) {
        assert!(
            Instant::now() < deadline,
            "helper {helper} outlived the timeout"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(is_empty_dir(&scratch), "scratch directory left behind");
}

#[tokio::test]
async fn diagnostics_hide_the_scratch_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (toolchains, scratch) = with_fake_clang(
        dir.path(),
        "echo \"$PWD/main.c:1:1: error: boom (tmp $TMPDIR)\" >&2\nexit 1",
    );
    let err = toolchains
        .compile(
            Language::C,
            "int main(void) { return 0; }",
            &CompileLimits::default(),
        )
        .await
        .unwrap_err();
    let CompileError::Failed(text) = err else {
        panic!("expected Failed, got {err:?}");
    };
    assert_eq!(text, "main.c:1:1: error: boom (tmp <build>)");
    assert!(is_empty_dir(&scratch), "scratch directory left behind");
}

#[tokio::test]
async fn output_is_checked_for_the_magic_and_the_size_limit() {
    let dir = tempfile::tempdir().unwrap();
    let not_wasm = dir.path().join("not-wasm");
    std::fs::create_dir(&not_wasm).unwrap();
    let (toolchains, _) = with_fake_clang(&not_wasm, "echo 'ELF' > out.wasm");
    let err = toolchains
        .compile(
            Language::C,
            "int main(void) { return 0; }",
            &CompileLimits::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CompileError::Failed(t) if t.contains("not a WebAssembly module")),
        "{err:?}"
    );

    let big = dir.path().join("big");
    std::fs::create_dir(&big).unwrap();
    let (toolchains, _) = with_fake_clang(
        &big,
        "printf '\\000asm\\001\\000\\000\\000' > out.wasm\nhead -c 4096 /dev/zero >> out.wasm",
    );
    let limits = CompileLimits {
        max_output_bytes: 1024,
        ..CompileLimits::default()
    };
    let err = toolchains
        .compile(Language::C, "int main(void) { return 0; }", &limits)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            CompileError::OutputTooLarge {
                size: 4104,
                limit: 1024
            }
        ),
        "{err:?}"
    );

    let silent = dir.path().join("silent");
    std::fs::create_dir(&silent).unwrap();
    let (toolchains, _) = with_fake_clang(&silent, "exit 0");
    let err = toolchains
        .compile(
            Language::C,
            "int main(void) { return 0; }",
            &CompileLimits::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CompileError::Failed(t) if t.contains("wrote no module")),
        "{err:?}"
    );
}

#[tokio::test]
async fn real_compiles_leave_no_scratch_behind() {
    let root = tempfile::tempdir().unwrap();
    let toolchains = ready_toolchains().await.with_scratch_root(root.path());
    let ok = toolchains
        .compile(
            Language::C,
            "int main(void) { return 0; }",
            &CompileLimits::default(),
        )
        .await;
    assert!(ok.is_ok(), "{ok:?}");
    let bad = toolchains
        .compile(
            Language::C,
            "int main(void) { return }",
            &CompileLimits::default(),
        )
        .await;
    assert!(matches!(bad, Err(CompileError::Failed(_))), "{bad:?}");
    assert!(is_empty_dir(root.path()));
}
