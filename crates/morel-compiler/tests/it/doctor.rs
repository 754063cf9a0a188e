//! `doctor`: what is installed, and clear reasons for what is not.

use std::path::PathBuf;

use morel_compiler::{Language, LanguageStatus, ToolPaths, Toolchains};

use crate::support::fake_tool;

fn status(report: &[LanguageStatus], lang: Language) -> &LanguageStatus {
    report.iter().find(|s| s.language == lang).unwrap()
}

#[tokio::test]
async fn all_four_languages_are_available_after_setup() {
    let report = Toolchains::detect().doctor().await;
    assert_eq!(
        report.iter().map(|s| s.language).collect::<Vec<_>>(),
        Language::ALL
    );
    for s in &report {
        assert!(
            s.available,
            "{} unavailable: {} (run scripts/setup-toolchains)",
            s.language, s.detail
        );
    }
    assert!(
        status(&report, Language::C)
            .detail
            .contains("clang version")
    );
    assert!(status(&report, Language::Rust).detail.contains("rustc "));
    assert!(
        status(&report, Language::Rust)
            .detail
            .contains("wasm32-wasi")
    );
    assert!(
        status(&report, Language::Assemblyscript)
            .detail
            .contains("0.28.20"),
        "{:?}",
        status(&report, Language::Assemblyscript)
    );
}

#[tokio::test]
async fn missing_tools_are_reported_with_their_path_and_a_hint() {
    let toolchains = Toolchains::with_paths(ToolPaths {
        clang: PathBuf::from("/nonexistent/clang"),
        wasi_sysroot: PathBuf::from("/nonexistent/sysroot"),
        rustc_wasm: PathBuf::from("/nonexistent/rustc"),
        asc: PathBuf::from("/nonexistent/asc"),
    });
    let report = toolchains.doctor().await;
    assert!(status(&report, Language::Wat).available, "wat is built in");
    for (lang, what) in [
        (Language::C, "clang not found at `/nonexistent/clang`"),
        (Language::Rust, "rustc not found at `/nonexistent/rustc`"),
        (
            Language::Assemblyscript,
            "asc not found at `/nonexistent/asc`",
        ),
    ] {
        let s = status(&report, lang);
        assert!(!s.available, "{s:?}");
        assert!(s.detail.contains(what), "{s:?}");
        assert!(s.detail.contains("scripts/setup-toolchains"), "{s:?}");
    }
    assert!(
        status(&report, Language::C)
            .detail
            .contains("apt-get install clang lld wasi-libc")
    );
}

#[tokio::test]
async fn missing_sysroot_and_missing_wasm_target_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut paths = ToolPaths::from_env();
    paths.wasi_sysroot = dir.path().join("no-sysroot");
    // A rustc without any wasm target, like rustup's default install.
    paths.rustc_wasm = fake_tool(
        dir.path(),
        "rustc",
        "case \"$*\" in\n  *target-list*) echo x86_64-unknown-linux-gnu ;;\n  *) echo 'rustc 1.99.0' ;;\nesac",
    );
    let report = Toolchains::with_paths(paths).doctor().await;

    let c = status(&report, Language::C);
    assert!(!c.available);
    assert!(
        c.detail.contains("no-sysroot/lib/wasm32-wasi/libc.a"),
        "{c:?}"
    );

    let rust = status(&report, Language::Rust);
    assert!(!rust.available);
    assert!(rust.detail.contains("no wasm32 WASI target"), "{rust:?}");
}
