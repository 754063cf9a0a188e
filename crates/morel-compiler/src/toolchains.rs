//! Where the compilers are, and whether they work.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use crate::Language;
use crate::env_vars;
use crate::run::{RunError, run_tool};

/// Install hint for the C toolchain (Debian package names).
pub(crate) const C_INSTALL_HINT: &str =
    "run scripts/setup-toolchains, or apt-get install clang lld wasi-libc libclang-rt-dev-wasm32";
/// Install hint for the Rust toolchain.
pub(crate) const RUST_INSTALL_HINT: &str = "run scripts/setup-toolchains, or apt-get install rustc libstd-rust-dev-wasm32, or set MOREL_RUSTC_WASM to a rustc with a wasm32 WASI target";
/// Install hint for the AssemblyScript toolchain.
pub(crate) const ASC_INSTALL_HINT: &str = "run scripts/setup-toolchains, or set MOREL_ASC to an `asc` from the assemblyscript npm package";

/// How long a `doctor` probe (`--version` and the like) may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// The paths of the external tools, as configured. A bare name (no `/`) is looked up on
/// `PATH` when run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolPaths {
    /// clang with the WebAssembly backend (and wasm-ld beside it).
    pub clang: PathBuf,
    /// The WASI sysroot: has `lib/wasm32-wasi/libc.a` and the wasi-libc headers.
    pub wasi_sysroot: PathBuf,
    /// A rustc that has a wasm32 WASI standard library.
    pub rustc_wasm: PathBuf,
    /// AssemblyScript's `asc`.
    pub asc: PathBuf,
}

impl ToolPaths {
    /// The paths from the `MOREL_*` variables (see [`env_vars`]), else the defaults: `clang`
    /// on `PATH`; the first of `/usr/share/wasi-sysroot`, `/opt/wasi-sdk/share/wasi-sysroot`
    /// and `/usr` (Debian's `wasi-libc`) that holds a wasm32-wasi libc; Debian's
    /// `/usr/bin/rustc` if present (a rustup rustc usually has no wasm target), else `rustc`;
    /// the `asc` that `scripts/setup-toolchains` installs under the repository's
    /// `toolchains/`, else `asc` on `PATH`.
    pub fn from_env() -> Self {
        let var = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        ToolPaths {
            clang: var(env_vars::MOREL_CLANG).unwrap_or_else(|| PathBuf::from("clang")),
            wasi_sysroot: var(env_vars::MOREL_WASI_SYSROOT).unwrap_or_else(default_sysroot),
            rustc_wasm: var(env_vars::MOREL_RUSTC_WASM).unwrap_or_else(default_rustc),
            asc: var(env_vars::MOREL_ASC).unwrap_or_else(default_asc),
        }
    }
}

fn default_sysroot() -> PathBuf {
    let candidates = [
        "/usr/share/wasi-sysroot",
        "/opt/wasi-sdk/share/wasi-sysroot",
    ];
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| sysroot_libc(p).is_file())
        .unwrap_or_else(|| PathBuf::from("/usr"))
}

fn default_rustc() -> PathBuf {
    let debian = PathBuf::from("/usr/bin/rustc");
    if debian.is_file() {
        debian
    } else {
        PathBuf::from("rustc")
    }
}

/// Where `scripts/setup-toolchains` installs `asc`: `<repo>/toolchains/`.
fn repo_asc() -> PathBuf {
    // CARGO_MANIFEST_DIR is crates/morel-compiler; drop those two components.
    let mut repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    repo.pop();
    repo.pop();
    repo.join("toolchains/node_modules/.bin/asc")
}

fn default_asc() -> PathBuf {
    let repo = repo_asc();
    if repo.is_file() {
        return repo;
    }
    if find_program(Path::new("asc")).is_some() {
        return PathBuf::from("asc");
    }
    repo
}

pub(crate) fn sysroot_libc(sysroot: &Path) -> PathBuf {
    sysroot.join("lib/wasm32-wasi/libc.a")
}

/// Resolves a program the way `exec` would: a path with a `/` as is, a bare name on `PATH`.
pub(crate) fn find_program(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 || program.is_absolute() {
        return program.is_file().then(|| program.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Whether one language can be compiled on this machine, and why (not).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LanguageStatus {
    pub language: Language,
    pub available: bool,
    /// The tool's path and version when available, else what is missing and how to install it.
    pub detail: String,
}

/// The resolved compilers, and the entry point for compiling.
///
/// Cheap to clone; clones share the probe cache.
#[derive(Clone, Debug)]
pub struct Toolchains {
    pub(crate) paths: ToolPaths,
    /// Parent of the per-compile scratch directories; `None` is the system temp directory.
    pub(crate) scratch_root: Option<PathBuf>,
    /// The rustc target name (`wasm32-wasip1` on new rustc, `wasm32-wasi` on old), probed once.
    pub(crate) rust_target: Arc<OnceCell<&'static str>>,
}

impl Toolchains {
    /// Toolchains from the environment (see [`ToolPaths::from_env`]).
    pub fn detect() -> Self {
        Self::with_paths(ToolPaths::from_env())
    }

    /// Toolchains at explicit paths (tests, or a service config file).
    pub fn with_paths(paths: ToolPaths) -> Self {
        Toolchains {
            paths,
            scratch_root: None,
            rust_target: Arc::new(OnceCell::new()),
        }
    }

    /// Creates per-compile scratch directories under `dir` instead of the system temp dir.
    pub fn with_scratch_root(mut self, dir: impl Into<PathBuf>) -> Self {
        self.scratch_root = Some(dir.into());
        self
    }

    /// The configured tool paths.
    pub fn paths(&self) -> &ToolPaths {
        &self.paths
    }

    /// Checks every language's toolchain, in [`Language::ALL`] order.
    pub async fn doctor(&self) -> Vec<LanguageStatus> {
        let (c, rust, asc) = tokio::join!(self.doctor_c(), self.doctor_rust(), self.doctor_asc());
        let status = |language, result: Result<String, String>| LanguageStatus {
            language,
            available: result.is_ok(),
            detail: result.unwrap_or_else(|e| e),
        };
        vec![
            status(
                Language::Wat,
                Ok("built in (the `wat` crate, in process)".to_owned()),
            ),
            status(Language::C, c),
            status(Language::Rust, rust),
            status(Language::Assemblyscript, asc),
        ]
    }

    async fn doctor_c(&self) -> Result<String, String> {
        let clang = &self.paths.clang;
        let resolved = find_program(clang).ok_or_else(|| {
            format!(
                "clang not found at `{}` ({C_INSTALL_HINT})",
                clang.display()
            )
        })?;
        let version = probe(clang, &["--version"])
            .await
            .map_err(|e| format!("clang at {} does not run: {e}", resolved.display()))?;
        let version = version.lines().next().unwrap_or("").trim().to_owned();

        let libc = sysroot_libc(&self.paths.wasi_sysroot);
        if !libc.is_file() {
            return Err(format!(
                "WASI sysroot incomplete: {} is missing (apt-get install wasi-libc, or set {} to a wasi-sysroot)",
                libc.display(),
                env_vars::MOREL_WASI_SYSROOT
            ));
        }
        let builtins = probe(clang, &["--target=wasm32-wasi", "-print-libgcc-file-name"])
            .await
            .map_err(|e| {
                format!(
                    "clang at {} cannot target wasm32-wasi: {e}",
                    resolved.display()
                )
            })?;
        let builtins = PathBuf::from(builtins.trim());
        if !builtins.is_file() {
            return Err(format!(
                "clang's wasm32 builtins are missing: {} (apt-get install libclang-rt-dev-wasm32, matching clang's version)",
                builtins.display()
            ));
        }
        let linker = probe(clang, &["--target=wasm32-wasi", "-print-prog-name=wasm-ld"])
            .await
            .map_err(|e| {
                format!(
                    "clang at {} cannot name its linker: {e}",
                    resolved.display()
                )
            })?;
        if find_program(Path::new(linker.trim())).is_none() {
            return Err("wasm-ld not found (apt-get install lld)".to_owned());
        }
        Ok(format!(
            "{} ({version}), sysroot {}",
            resolved.display(),
            self.paths.wasi_sysroot.display()
        ))
    }

    async fn doctor_rust(&self) -> Result<String, String> {
        let rustc = &self.paths.rustc_wasm;
        let resolved = find_program(rustc).ok_or_else(|| {
            format!(
                "rustc not found at `{}` ({RUST_INSTALL_HINT})",
                rustc.display()
            )
        })?;
        let version = probe(rustc, &["--version"])
            .await
            .map_err(|e| format!("rustc at {} does not run: {e}", resolved.display()))?;
        let target = self.rust_target().await.map_err(|e| e.to_string())?;
        let libdir = probe(rustc, &["--print", "target-libdir", "--target", target])
            .await
            .map_err(|e| {
                format!(
                    "rustc at {} has no {target} target: {e} ({RUST_INSTALL_HINT})",
                    resolved.display()
                )
            })?;
        let libdir = PathBuf::from(libdir.trim());
        if !has_libstd(&libdir) {
            return Err(format!(
                "rustc at {} has no {target} standard library (no libstd in {}) ({RUST_INSTALL_HINT})",
                resolved.display(),
                libdir.display()
            ));
        }
        Ok(format!(
            "{} ({}), target {target}",
            resolved.display(),
            version.trim()
        ))
    }

    async fn doctor_asc(&self) -> Result<String, String> {
        let asc = &self.paths.asc;
        let resolved = find_program(asc)
            .ok_or_else(|| format!("asc not found at `{}` ({ASC_INSTALL_HINT})", asc.display()))?;
        let version = probe(asc, &["--version"]).await.map_err(|e| {
            format!(
                "asc at {} does not run (it needs node on PATH): {e}",
                resolved.display()
            )
        })?;
        Ok(format!("{} ({})", resolved.display(), version.trim()))
    }

    /// The wasm32 WASI target name the configured rustc knows.
    pub(crate) async fn rust_target(&self) -> Result<&'static str, crate::CompileError> {
        self.rust_target
            .get_or_try_init(|| async {
                let list = probe(&self.paths.rustc_wasm, &["--print", "target-list"])
                    .await
                    .map_err(|reason| crate::CompileError::Unavailable {
                        language: Language::Rust,
                        reason: format!(
                            "rustc at `{}` does not run: {reason} ({RUST_INSTALL_HINT})",
                            self.paths.rustc_wasm.display()
                        ),
                    })?;
                let target = if list.lines().any(|t| t.trim() == "wasm32-wasip1") {
                    "wasm32-wasip1"
                } else if list.lines().any(|t| t.trim() == "wasm32-wasi") {
                    "wasm32-wasi"
                } else {
                    return Err(crate::CompileError::Unavailable {
                        language: Language::Rust,
                        reason: format!(
                            "rustc at `{}` knows no wasm32 WASI target ({RUST_INSTALL_HINT})",
                            self.paths.rustc_wasm.display()
                        ),
                    });
                };
                Ok(target)
            })
            .await
            .copied()
    }
}

fn has_libstd(libdir: &Path) -> bool {
    std::fs::read_dir(libdir)
        .map(|entries| {
            entries.filter_map(Result::ok).any(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.starts_with("libstd-") && name.ends_with(".rlib")
            })
        })
        .unwrap_or(false)
}

/// Runs a quick query (`--version` and the like) in a throwaway directory and returns its
/// stdout, or a one-line reason.
async fn probe(program: &Path, args: &[&str]) -> Result<String, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("cannot create a temp dir: {e}"))?;
    let args: Vec<OsString> = args.iter().map(OsString::from).collect();
    match run_tool(program, &args, dir.path(), PROBE_TIMEOUT).await {
        Ok(out) if out.status.success() => {
            Ok(String::from_utf8_lossy(&out.stdout.bytes).into_owned())
        }
        Ok(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr.bytes);
            let first = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            Err(format!("exited with {}: {}", out.status, first.trim()))
        }
        Err(RunError::NotFound(e)) => Err(format!("not found ({e})")),
        Err(RunError::Io(e)) => Err(e.to_string()),
        Err(RunError::TimedOut) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_program_handles_paths_and_names() {
        assert!(find_program(Path::new("sh")).is_some());
        assert!(find_program(Path::new("/nonexistent/clang")).is_none());
        assert!(find_program(Path::new("morel-no-such-tool")).is_none());
    }

    #[test]
    fn repo_asc_points_into_toolchains() {
        let p = repo_asc();
        assert!(
            p.ends_with("toolchains/node_modules/.bin/asc"),
            "{}",
            p.display()
        );
        assert!(!p.to_string_lossy().contains(".."), "{}", p.display());
    }
}
