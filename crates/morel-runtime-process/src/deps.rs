//! Dependency installs, cached by the hash of the dependency file: a redeploy whose
//! `requirements.txt` or `package.json` did not change installs nothing.
//!
//! Python: a virtualenv per hash (`python3 -m venv --without-pip`, then the host pip with
//! `--python`). Node: `npm install` in a directory per hash, linked into the app as
//! `node_modules`. A failed install is an error carrying the tool's own output.
//!
//! Local dependencies (a requirement line naming a path, or `--find-links ./dir`; an npm
//! `file:` or `link:` dependency) resolve against the dependency file's directory, as pip and
//! npm run in the app's own directory; they must stay inside it, and their contents join the
//! cache key, so changing a vendored package installs again.

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
        let text = tokio::fs::read_to_string(requirements)
            .await
            .map_err(io(requirements))?;
        let app = requirements.parent().unwrap_or(Path::new("."));
        let key = with_local(hash, app, &pip_local_paths(&text), "requirements.txt")?;
        let dir = self.cache.join("python").join(key);
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
                .arg(requirements)
                .current_dir(app),
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
        let text = tokio::fs::read_to_string(package_json)
            .await
            .map_err(io(package_json))?;
        let app = package_json.parent().unwrap_or(Path::new("."));
        let local = npm_local_paths(&text);
        let key = with_local(hash, app, &local, "package.json")?;
        let dir = self.cache.join("node").join(key);
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
        let lockfile = app.join("package-lock.json");
        if lockfile.exists() {
            tokio::fs::copy(&lockfile, tmp.join("package-lock.json"))
                .await
                .map_err(io(&lockfile))?;
        }
        // npm installs in the cache's directory: local packages go there too, at the same
        // relative paths (npm links `file:` directories, so they stay with the install).
        for rel in &local {
            copy_tree(&app.join(rel), &tmp.join(rel))?;
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

/// The paths a `requirements.txt` names as local packages or package directories.
fn pip_local_paths(text: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split(" #").next().unwrap_or("").trim();
        if line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        while let Some(w) = words.next() {
            let w = match w {
                "-e" | "--editable" | "-f" | "--find-links" => match words.next() {
                    Some(next) => next,
                    None => break,
                },
                w => w.strip_prefix("--find-links=").unwrap_or(w),
            };
            let w = w.strip_prefix("file:").unwrap_or(w);
            if w.starts_with("./") || w.starts_with("../") || w.starts_with('/') || w == "." {
                out.push(PathBuf::from(w));
            }
        }
    }
    out
}

/// The paths a `package.json` names as `file:` or `link:` dependencies.
fn npm_local_paths(text: &str) -> Vec<PathBuf> {
    let Ok(pj) = serde_json::from_str::<serde_json::Value>(text) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for field in ["dependencies", "optionalDependencies"] {
        for spec in pj[field].as_object().into_iter().flat_map(|m| m.values()) {
            if let Some(path) = spec
                .as_str()
                .and_then(|s| s.strip_prefix("file:").or_else(|| s.strip_prefix("link:")))
            {
                out.push(PathBuf::from(path));
            }
        }
    }
    out
}

/// The cache key of a dependency file of hash `hash` whose local packages are `local`
/// (relative to `app`): `hash` alone without any, else with a digest of their contents. A
/// local path outside the app, or missing, is refused.
fn with_local(hash: &str, app: &Path, local: &[PathBuf], file: &str) -> Result<String, DepsError> {
    use sha2::Digest;
    if local.is_empty() {
        return Ok(hash.to_owned());
    }
    let refused = |rel: &Path, why: &str| DepsError::Failed {
        tool: "morel",
        file: file.to_owned(),
        output: format!("the local dependency {} {why}", rel.display()),
    };
    let root = app.canonicalize().map_err(io(app))?;
    let mut h = sha2::Sha256::new();
    for rel in local {
        let path = root
            .join(rel)
            .canonicalize()
            .map_err(|_| refused(rel, "does not exist"))?;
        if !path.starts_with(&root) {
            return Err(refused(rel, "is not inside the app"));
        }
        h.update(rel.as_os_str().as_encoded_bytes());
        hash_tree(&path, &mut h)?;
    }
    Ok(format!("{hash}-{}", &hex::encode(h.finalize())[..16]))
}

/// Feeds a file's, or a directory tree's, names and contents to `h` (in name order).
fn hash_tree(path: &Path, h: &mut sha2::Sha256) -> Result<(), DepsError> {
    use sha2::Digest;
    let meta = std::fs::symlink_metadata(path).map_err(io(path))?;
    if meta.is_dir() {
        let mut names: Vec<_> = std::fs::read_dir(path)
            .map_err(io(path))?
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        names.sort();
        for name in names {
            if name == "node_modules" || name == "__pycache__" {
                continue;
            }
            h.update(name.as_encoded_bytes());
            hash_tree(&path.join(&name), h)?;
        }
    } else if meta.is_file() {
        h.update(std::fs::read(path).map_err(io(path))?);
    }
    Ok(())
}

/// Copies a file or a directory tree (symlinks are not followed; `node_modules` is left out).
fn copy_tree(from: &Path, to: &Path) -> Result<(), DepsError> {
    let meta = std::fs::symlink_metadata(from).map_err(io(from))?;
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    if meta.is_dir() {
        std::fs::create_dir_all(to).map_err(io(to))?;
        for entry in std::fs::read_dir(from).map_err(io(from))? {
            let entry = entry.map_err(io(from))?;
            if entry.file_name() == "node_modules" {
                continue;
            }
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
    } else if meta.is_file() {
        std::fs::copy(from, to).map_err(io(from))?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod local_tests {
    use super::*;

    #[test]
    fn local_packages_are_found_in_requirements_and_package_json() {
        let req = "requests==2.0\n./vendor/pkg.whl\n-e ../lib  # editable\n--find-links ./wheels\nfile:./x\n# ./commented\n";
        assert_eq!(
            pip_local_paths(req),
            ["./vendor/pkg.whl", "../lib", "./wheels", "./x"]
                .map(PathBuf::from)
                .to_vec()
        );
        let pj = r#"{"dependencies": {"a": "^1", "b": "file:./vendor/b", "c": "link:../c"}}"#;
        assert_eq!(
            npm_local_paths(pj),
            ["./vendor/b", "../c"].map(PathBuf::from).to_vec()
        );
    }

    #[test]
    fn local_packages_join_the_key_and_stay_inside_the_app() {
        let tmp = tempfile::tempdir().unwrap();
        let app = tmp.path().join("app");
        std::fs::create_dir_all(app.join("vendor/b")).unwrap();
        std::fs::write(app.join("vendor/b/index.js"), "one").unwrap();
        let local = [PathBuf::from("./vendor/b")];
        assert_eq!(with_local("h", &app, &[], "package.json").unwrap(), "h");
        let first = with_local("h", &app, &local, "package.json").unwrap();
        assert!(first.starts_with("h-"), "{first}");
        std::fs::write(app.join("vendor/b/index.js"), "two").unwrap();
        assert_ne!(
            with_local("h", &app, &local, "package.json").unwrap(),
            first
        );
        std::fs::write(tmp.path().join("secret"), "x").unwrap();
        let err = with_local("h", &app, &[PathBuf::from("../secret")], "package.json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not inside the app"), "{err}");
        let err = with_local("h", &app, &[PathBuf::from("./missing")], "package.json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not exist"), "{err}");
    }
}
