//! Dependency installs, cached by the hash of the dependency file: a redeploy whose
//! `requirements.txt` or `package.json` did not change installs nothing.
//!
//! Python: a virtualenv per hash (`python3 -m venv --without-pip`, then the host pip with
//! `--python`). Node: `npm install` in a directory per hash, linked into the app as
//! `node_modules`. A failed install is an error carrying the tool's own output.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum DepsError {
    #[error("{tool} failed installing {file}:\n{output}")]
    Failed {
        tool: &'static str,
        file: String,
        output: String,
    },
    #[error("{tool} did not finish within {limit:?}")]
    TimedOut { tool: &'static str, limit: Duration },
    #[error("could not run {tool}: {source}")]
    Spawn {
        tool: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DepsError + '_ {
    move |source| DepsError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Installs and caches dependencies under one directory.
#[derive(Clone)]
pub struct Installer {
    cache: PathBuf,
    python: String,
    npm: String,
    timeout: Duration,
    /// One lock per cache entry so two deploys of the same hash install once.
    locks: Arc<Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>>,
}

/// What an install produced.
#[derive(Clone, Debug)]
pub struct Installed {
    pub path: PathBuf,
    /// False when the cache already had it.
    pub fresh: bool,
}

impl Installer {
    pub fn new(cache: PathBuf, python: String, npm: String) -> Self {
        Installer {
            cache,
            python,
            npm,
            timeout: Duration::from_secs(600),
            locks: Default::default(),
        }
    }

    fn lock_for(&self, dir: &Path) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(dir.to_owned()).or_default().clone()
    }

    /// A virtualenv with `requirements` installed; returns the venv's directory.
    pub async fn python(&self, hash: &str, requirements: &Path) -> Result<Installed, DepsError> {
        let dir = self.cache.join("python").join(hash);
        let lock = self.lock_for(&dir);
        let _guard = lock.lock().await;
        if dir.join(".complete").exists() {
            return Ok(Installed {
                path: dir,
                fresh: false,
            });
        }
        let tmp = self.fresh_tmp(&dir).await?;
        self.run(
            "python",
            Command::new(&self.python)
                .args(["-m", "venv", "--without-pip"])
                .arg(&tmp),
            "requirements.txt",
        )
        .await?;
        let venv_python = tmp.join("bin/python");
        self.run(
            "pip",
            Command::new(&self.python)
                .args([
                    "-m",
                    "pip",
                    "--disable-pip-version-check",
                    "--no-input",
                    "--python",
                ])
                .arg(&venv_python)
                .args(["install", "--quiet", "-r"])
                .arg(requirements),
            "requirements.txt",
        )
        .await?;
        self.finish(&tmp, &dir).await?;
        Ok(Installed {
            path: dir,
            fresh: true,
        })
    }

    /// `npm install` of `package_json` (and its lock file, if beside it); returns the
    /// `node_modules` directory to link into the app.
    pub async fn node(&self, hash: &str, package_json: &Path) -> Result<Installed, DepsError> {
        let dir = self.cache.join("node").join(hash);
        let lock = self.lock_for(&dir);
        let _guard = lock.lock().await;
        if dir.join(".complete").exists() {
            return Ok(Installed {
                path: dir.join("node_modules"),
                fresh: false,
            });
        }
        let tmp = self.fresh_tmp(&dir).await?;
        tokio::fs::copy(package_json, tmp.join("package.json"))
            .await
            .map_err(io(package_json))?;
        if let Some(parent) = package_json.parent() {
            let lockfile = parent.join("package-lock.json");
            if lockfile.exists() {
                tokio::fs::copy(&lockfile, tmp.join("package-lock.json"))
                    .await
                    .map_err(io(&lockfile))?;
            }
        }
        self.run(
            "npm",
            Command::new(&self.npm)
                .args([
                    "install",
                    "--omit=dev",
                    "--no-audit",
                    "--no-fund",
                    "--ignore-scripts",
                    "--loglevel=error",
                ])
                .current_dir(&tmp),
            "package.json",
        )
        .await?;
        self.finish(&tmp, &dir).await?;
        Ok(Installed {
            path: dir.join("node_modules"),
            fresh: true,
        })
    }

    async fn fresh_tmp(&self, dir: &Path) -> Result<PathBuf, DepsError> {
        let parent = dir.parent().unwrap_or(&self.cache);
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(io(parent))?;
        let tmp = parent.join(format!(
            ".tmp-{}-{}",
            dir.file_name()
                .map(|f| f.to_string_lossy())
                .unwrap_or_default(),
            std::process::id()
        ));
        let _ = tokio::fs::remove_dir_all(&tmp).await;
        tokio::fs::create_dir_all(&tmp).await.map_err(io(&tmp))?;
        Ok(tmp)
    }

    async fn finish(&self, tmp: &Path, dir: &Path) -> Result<(), DepsError> {
        let _ = tokio::fs::remove_dir_all(dir).await;
        tokio::fs::rename(tmp, dir).await.map_err(io(dir))?;
        tokio::fs::write(dir.join(".complete"), b"")
            .await
            .map_err(io(dir))?;
        Ok(())
    }

    async fn run(
        &self,
        tool: &'static str,
        cmd: &mut Command,
        file: &str,
    ) -> Result<(), DepsError> {
        cmd.stdin(std::process::Stdio::null()).kill_on_drop(true);
        let out = tokio::time::timeout(self.timeout, cmd.output())
            .await
            .map_err(|_| DepsError::TimedOut {
                tool,
                limit: self.timeout,
            })?
            .map_err(|source| DepsError::Spawn {
                tool: tool.to_owned(),
                source,
            })?;
        if !out.status.success() {
            let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
            text.push_str(&String::from_utf8_lossy(&out.stdout));
            // Keep the end, where pip and npm put the reason.
            let lines: Vec<&str> = text.trim().lines().collect();
            let tail = lines[lines.len().saturating_sub(30)..].join("\n");
            return Err(DepsError::Failed {
                tool,
                file: file.to_owned(),
                output: tail,
            });
        }
        Ok(())
    }
}
