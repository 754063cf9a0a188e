//! One compile: a fresh scratch directory, the language's compiler, the checks on its output.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Instant;

use tracing::Instrument;

use crate::run::{RunError, ToolOutput, run_tool};
use crate::toolchains::{
    ASC_INSTALL_HINT, C_INSTALL_HINT, RUST_INSTALL_HINT, find_program, sysroot_libc,
};
use crate::{CompileError, CompileLimits, Language, Toolchains, assemblyscript};

/// The first bytes of every WebAssembly binary.
const WASM_MAGIC: &[u8; 4] = b"\0asm";
/// Longest compiler diagnostics kept in [`CompileError::Failed`].
const MAX_DIAGNOSTICS: usize = 16 * 1024;
/// What the scratch directory's path becomes in diagnostics.
const SCRATCH_NAME: &str = "<build>";
/// The module every external compiler writes, inside the scratch directory.
const OUTPUT_FILE: &str = "out.wasm";

impl Toolchains {
    /// Compiles `source` in `lang` to a WebAssembly module (the binary, starting `\0asm`).
    ///
    /// External compilers run in a fresh scratch directory that is removed afterwards, with
    /// an argument array (no shell), in their own process group, killed with the whole group
    /// at `limits.timeout` or when this future is dropped.
    pub async fn compile(
        &self,
        lang: Language,
        source: &str,
        limits: &CompileLimits,
    ) -> Result<Vec<u8>, CompileError> {
        if source.len() > limits.max_source_bytes {
            return Err(CompileError::TooLarge {
                size: source.len(),
                limit: limits.max_source_bytes,
            });
        }
        let span = tracing::info_span!("compile", language = %lang, source_bytes = source.len());
        async {
            let started = Instant::now();
            let result = match lang {
                Language::Wat => compile_wat(source, limits).await,
                Language::C => self.compile_c(source, limits).await,
                Language::Rust => self.compile_rust(source, limits).await,
                Language::Assemblyscript => self.compile_assemblyscript(source, limits).await,
            };
            let elapsed_ms = started.elapsed().as_millis() as u64;
            match &result {
                Ok(module) => tracing::debug!(module_bytes = module.len(), elapsed_ms, "compiled"),
                Err(e) => tracing::debug!(elapsed_ms, error = %e, "compile failed"),
            }
            result
        }
        .instrument(span)
        .await
    }

    async fn compile_c(
        &self,
        source: &str,
        limits: &CompileLimits,
    ) -> Result<Vec<u8>, CompileError> {
        let sysroot = &self.paths.wasi_sysroot;
        if !sysroot_libc(sysroot).is_file() {
            return Err(CompileError::Unavailable {
                language: Language::C,
                reason: format!(
                    "WASI sysroot incomplete: {} is missing ({C_INSTALL_HINT}, or set {})",
                    sysroot_libc(sysroot).display(),
                    crate::env_vars::MOREL_WASI_SYSROOT
                ),
            });
        }
        let mut sysroot_arg = OsString::from("--sysroot=");
        sysroot_arg.push(sysroot);
        let args = vec![
            // A WASI command: crt1-command.o calls `main`, stdin/stdout are the JSON channels.
            OsString::from("--target=wasm32-wasi"),
            sysroot_arg,
            "-O2".into(),
            "-fno-color-diagnostics".into(),
            "-o".into(),
            OUTPUT_FILE.into(),
            "main.c".into(),
        ];
        let tool = Tool {
            language: Language::C,
            name: "clang",
            program: &self.paths.clang,
            hint: C_INSTALL_HINT,
        };
        self.run_compiler(tool, args, &[("main.c", source)], limits)
            .await
    }

    async fn compile_rust(
        &self,
        source: &str,
        limits: &CompileLimits,
    ) -> Result<Vec<u8>, CompileError> {
        let tool = Tool {
            language: Language::Rust,
            name: "rustc",
            program: &self.paths.rustc_wasm,
            hint: RUST_INSTALL_HINT,
        };
        if find_program(tool.program).is_none() {
            return Err(tool.not_found());
        }
        let target = self.rust_target().await?;
        let args = [
            "--edition",
            "2021",
            "--crate-type",
            "bin",
            "--crate-name",
            "main",
            "--target",
            target,
            "-C",
            "opt-level=2",
            // Keep function names (readable traps), drop DWARF (most of std's size).
            "-C",
            "strip=debuginfo",
            "--color",
            "never",
            "-o",
            OUTPUT_FILE,
            "main.rs",
        ];
        let args = args.iter().map(OsString::from).collect();
        self.run_compiler(tool, args, &[("main.rs", source)], limits)
            .await
    }

    async fn compile_assemblyscript(
        &self,
        source: &str,
        limits: &CompileLimits,
    ) -> Result<Vec<u8>, CompileError> {
        let tool = Tool {
            language: Language::Assemblyscript,
            name: "asc",
            program: &self.paths.asc,
            hint: ASC_INSTALL_HINT,
        };
        let args = assemblyscript::ASC_ARGS
            .iter()
            .map(OsString::from)
            .chain([OsString::from("--outFile"), OUTPUT_FILE.into()])
            .collect();
        let files = [
            (assemblyscript::USER_FILE, source),
            (assemblyscript::ENTRY_FILE, assemblyscript::ENTRY_SOURCE),
        ];
        match self.run_compiler(tool, args, &files, limits).await {
            Err(CompileError::Failed(text)) => {
                Err(CompileError::Failed(assemblyscript::explain_failure(text)))
            }
            other => other,
        }
    }

    /// Writes `files` to a fresh scratch directory, runs the compiler there, and returns the
    /// checked module it wrote to [`OUTPUT_FILE`].
    async fn run_compiler(
        &self,
        tool: Tool<'_>,
        args: Vec<OsString>,
        files: &[(&str, &str)],
        limits: &CompileLimits,
    ) -> Result<Vec<u8>, CompileError> {
        let mut builder = tempfile::Builder::new();
        builder.prefix("morel-compile-");
        let scratch = match &self.scratch_root {
            Some(root) => builder.tempdir_in(root),
            None => builder.tempdir(),
        }
        .map_err(|e| CompileError::io("cannot create a scratch directory", e))?;

        let result = compile_in(&tool, &args, files, scratch.path(), limits).await;

        let path = scratch.path().to_path_buf();
        if let Err(e) = scratch.close() {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove scratch directory");
        }
        result
    }
}

/// An external compiler, with what to say when it is missing.
struct Tool<'a> {
    language: Language,
    name: &'static str,
    program: &'a Path,
    hint: &'static str,
}

impl Tool<'_> {
    fn not_found(&self) -> CompileError {
        CompileError::Unavailable {
            language: self.language,
            reason: format!(
                "{} not found at `{}` ({})",
                self.name,
                self.program.display(),
                self.hint
            ),
        }
    }
}

async fn compile_in(
    tool: &Tool<'_>,
    args: &[OsString],
    files: &[(&str, &str)],
    dir: &Path,
    limits: &CompileLimits,
) -> Result<Vec<u8>, CompileError> {
    for (name, text) in files {
        tokio::fs::write(dir.join(name), text).await.map_err(|e| {
            CompileError::io(format!("cannot write {name} to the scratch directory"), e)
        })?;
    }

    let output = match run_tool(tool.program, args, dir, limits.timeout).await {
        Ok(output) => output,
        Err(RunError::TimedOut) => return Err(CompileError::TimedOut(limits.timeout)),
        Err(RunError::NotFound(e)) => {
            // The program exists but exec says ENOENT: its `#!` interpreter is missing.
            if find_program(tool.program).is_some() {
                return Err(CompileError::Unavailable {
                    language: tool.language,
                    reason: format!(
                        "{} at `{}` cannot start, its interpreter is missing ({e}; {} needs node on PATH)",
                        tool.name,
                        tool.program.display(),
                        tool.name
                    ),
                });
            }
            return Err(tool.not_found());
        }
        Err(RunError::Io(e)) => {
            return Err(CompileError::io(
                format!("cannot run {} at `{}`", tool.name, tool.program.display()),
                e,
            ));
        }
    };

    let scratch_names = scratch_names(dir);
    if !output.status.success() {
        let text = diagnostics(&output, &scratch_names);
        if let Some(reason) = toolchain_fault(tool.language, &text) {
            return Err(CompileError::Unavailable {
                language: tool.language,
                reason: format!(
                    "{} at `{}`: {reason} ({})",
                    tool.name,
                    tool.program.display(),
                    tool.hint
                ),
            });
        }
        return Err(CompileError::Failed(text));
    }
    if !output.stderr.bytes.is_empty() {
        tracing::debug!(
            warnings = %diagnostics(&output, &scratch_names),
            "compiler warnings"
        );
    }

    let out_path = dir.join(OUTPUT_FILE);
    let size = match tokio::fs::metadata(&out_path).await {
        Ok(meta) => meta.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(CompileError::Failed(format!(
                "{} succeeded but wrote no module",
                tool.name
            )));
        }
        Err(e) => return Err(CompileError::io("cannot read the compiled module", e)),
    };
    check_size(size, limits)?;
    let module = tokio::fs::read(&out_path)
        .await
        .map_err(|e| CompileError::io("cannot read the compiled module", e))?;
    check_module(module, limits)
}

async fn compile_wat(source: &str, limits: &CompileLimits) -> Result<Vec<u8>, CompileError> {
    let source = source.to_owned();
    let parsed = tokio::task::spawn_blocking(move || {
        wat::Parser::new().parse_str(Some(Path::new("main.wat")), &source)
    })
    .await
    .map_err(|e| CompileError::io("the wat assembler task failed", std::io::Error::other(e)))?;
    let module = parsed.map_err(|e| CompileError::Failed(bound(e.to_string().trim())))?;
    check_module(module, limits)
}

fn check_size(size: u64, limits: &CompileLimits) -> Result<(), CompileError> {
    if size > limits.max_output_bytes {
        return Err(CompileError::OutputTooLarge {
            size,
            limit: limits.max_output_bytes,
        });
    }
    Ok(())
}

fn check_module(module: Vec<u8>, limits: &CompileLimits) -> Result<Vec<u8>, CompileError> {
    check_size(module.len() as u64, limits)?;
    if !module.starts_with(WASM_MAGIC) {
        return Err(CompileError::Failed(
            "the compiler's output is not a WebAssembly module (no \\0asm header)".to_owned(),
        ));
    }
    Ok(module)
}

/// Recognises failures that are the machine's, not the source's, from the diagnostics.
fn toolchain_fault(language: Language, text: &str) -> Option<String> {
    match language {
        Language::C if text.contains("libclang_rt.builtins") => {
            Some("clang's wasm32 builtins (libclang_rt.builtins-wasm32.a) are missing".to_owned())
        }
        Language::C if text.contains("\"wasm-ld\" doesn't exist") => {
            Some("wasm-ld (lld) is missing".to_owned())
        }
        Language::Rust
            if text.contains("can't find crate for `std`")
                || text.contains("can't find crate for `core`")
                || text.contains("Error loading target specification")
                || text.contains("could not find specification for target") =>
        {
            Some("no wasm32 WASI standard library".to_owned())
        }
        _ => None,
    }
}

/// The spellings of the scratch directory's path a compiler may print.
fn scratch_names(dir: &Path) -> Vec<String> {
    let mut names = vec![dir.to_string_lossy().into_owned()];
    if let Ok(canonical) = dir.canonicalize().map(PathBuf::into_os_string) {
        let canonical = canonical.to_string_lossy().into_owned();
        if !names.contains(&canonical) {
            names.push(canonical);
        }
    }
    // Longest first, so a prefix never hides a longer spelling.
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    names
}

/// The compiler's messages for the user: stderr then stdout, scratch paths neutralised,
/// trimmed and bounded.
fn diagnostics(output: &ToolOutput, scratch_names: &[String]) -> String {
    let mut text = String::new();
    for stream in [&output.stderr, &output.stdout] {
        let part = String::from_utf8_lossy(&stream.bytes);
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(part);
        if stream.truncated {
            text.push_str("\n… (output truncated)");
        }
    }
    for name in scratch_names {
        text = text
            .replace(&format!("{name}/"), "")
            .replace(name.as_str(), SCRATCH_NAME);
    }
    if text.trim().is_empty() {
        return format!(
            "the compiler exited with {} and printed nothing",
            output.status
        );
    }
    bound(text.trim())
}

/// At most [`MAX_DIAGNOSTICS`] bytes, cut on a character boundary.
fn bound(text: &str) -> String {
    if text.len() <= MAX_DIAGNOSTICS {
        return text.to_owned();
    }
    let mut end = MAX_DIAGNOSTICS;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n… (output truncated)", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::Captured;
    use std::os::unix::process::ExitStatusExt;

    fn output(stderr: &str, stdout: &str) -> ToolOutput {
        ToolOutput {
            status: std::process::ExitStatus::from_raw(1 << 8),
            stdout: Captured {
                bytes: stdout.as_bytes().to_vec(),
                truncated: false,
            },
            stderr: Captured {
                bytes: stderr.as_bytes().to_vec(),
                truncated: false,
            },
        }
    }

    #[test]
    fn diagnostics_hide_the_scratch_dir() {
        let names = vec!["/tmp/morel-compile-abc".to_owned()];
        let text = diagnostics(
            &output(
                "/tmp/morel-compile-abc/main.c:3:5: error: boom\nin /tmp/morel-compile-abc\n",
                "",
            ),
            &names,
        );
        assert_eq!(text, "main.c:3:5: error: boom\nin <build>");
    }

    #[test]
    fn diagnostics_join_streams_and_report_silence() {
        let text = diagnostics(&output("  err  ", "out\n"), &[]);
        assert_eq!(text, "err\nout");
        let text = diagnostics(&output("", ""), &[]);
        assert!(text.contains("printed nothing"), "{text}");
    }

    #[test]
    fn bound_cuts_on_a_char_boundary() {
        let long = "é".repeat(MAX_DIAGNOSTICS);
        let cut = bound(&long);
        assert!(cut.len() < MAX_DIAGNOSTICS + 40);
        assert!(cut.ends_with("(output truncated)"));
    }

    #[test]
    fn module_checks() {
        let limits = CompileLimits::default();
        assert!(check_module(b"\0asm\x01\0\0\0".to_vec(), &limits).is_ok());
        assert!(matches!(
            check_module(b"ELF".to_vec(), &limits),
            Err(CompileError::Failed(_))
        ));
        let small = CompileLimits {
            max_output_bytes: 4,
            ..CompileLimits::default()
        };
        assert!(matches!(
            check_module(b"\0asm\x01\0\0\0".to_vec(), &small),
            Err(CompileError::OutputTooLarge { size: 8, limit: 4 })
        ));
    }

    #[test]
    fn toolchain_faults_are_not_user_errors() {
        assert!(
            toolchain_fault(Language::Rust, "error[E0463]: can't find crate for `std`").is_some()
        );
        assert!(toolchain_fault(Language::Rust, "error[E0308]: mismatched types").is_none());
        assert!(
            toolchain_fault(
                Language::C,
                "wasm-ld: error: cannot open /usr/lib/llvm-14/lib/clang/14.0.6/lib/wasi/libclang_rt.builtins-wasm32.a"
            )
            .is_some()
        );
        assert!(toolchain_fault(Language::C, "main.c:1:1: error: expected ';'").is_none());
    }
}
