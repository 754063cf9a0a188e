//! Skipping pyenv's shim when it is what `python3` finds on `PATH`.
//!
//! pyenv's `shims/python3` is a shell script that runs `pyenv exec`, which starts dozens of
//! processes to pick the version before the interpreter itself starts: 123 ms against 43 ms for
//! `python3 -c pass` on the bench machine, paid by every `morel deploy` for discovery. This
//! module picks the same interpreter the shim would, by pyenv's documented rules, and answers
//! `None` (run the shim) whenever anything is not plain:
//!
//! 1. `PYENV_VERSION`, else the first `.python-version` file found from `PYENV_DIR` (default: the
//!    current directory) upwards, else `$PYENV_ROOT/version`;
//! 2. the first name of that version list, which must be an installed version
//!    (`$PYENV_ROOT/versions/NAME/bin/PROGRAM`): `system`, prefixes such as `3.11` and
//!    anything else pyenv resolves further are left to the shim.

use std::path::{Path, PathBuf};

/// The interpreter pyenv's shim for `program` would run, when `program` is found on `path` as
/// a pyenv shim and the version is a plain installed one. `env` reads the environment.
pub(crate) fn resolve(
    program: &str,
    path: Option<&std::ffi::OsStr>,
    cwd: &Path,
    env: impl Fn(&str) -> Option<String>,
) -> Option<PathBuf> {
    if program.contains('/') {
        return None;
    }
    let found = std::env::split_paths(path?)
        .map(|dir| dir.join(program))
        .find(|p| is_executable(p))?;
    let shims = found.parent()?;
    if shims.file_name()? != "shims" {
        return None;
    }
    let root = shims.parent()?;
    if let Some(declared) = env("PYENV_ROOT").filter(|r| !r.is_empty())
        && Path::new(&declared) != root
    {
        return None;
    }
    let name = match env("PYENV_VERSION") {
        Some(v) if !v.trim().is_empty() => first_name(&v)?.to_owned(),
        _ => {
            let start = env("PYENV_DIR")
                .filter(|d| !d.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| cwd.to_path_buf());
            version_file(&start).or_else(|| read_version(&root.join("version")))?
        }
    };
    let name = name.as_str();
    if name == "system" || name.contains('/') || name == "." || name == ".." {
        return None;
    }
    let interpreter = root.join("versions").join(name).join("bin").join(program);
    is_executable(&interpreter).then_some(interpreter)
}

/// The first version named by the nearest `.python-version` from `dir` upwards.
fn version_file(dir: &Path) -> Option<String> {
    dir.ancestors()
        .map(|d| d.join(".python-version"))
        .find(|f| f.is_file())
        .and_then(|f| read_version(&f))
}

/// The first version a version file names (one per line; comments and blank lines skipped).
fn read_version(file: &Path) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))?;
    first_name(line).map(str::to_owned)
}

/// The first name of a version list (`3.12.1:3.11.7`, or names separated by spaces).
fn first_name(list: &str) -> Option<&str> {
    list.split([':', ' ', '\t']).find(|v| !v.is_empty())
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::os::unix::fs::PermissionsExt as _;

    fn executable(p: &Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    struct Fixture {
        _tmp: tempfile::TempDir,
        root: PathBuf,
        project: PathBuf,
        path: std::ffi::OsString,
    }

    /// A pyenv root with a shim and versions 3.11.7 and 3.12.1 (global: 3.11.7), a project
    /// directory, and a PATH of an empty directory, then the shims, then a "system" python.
    fn fixture() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("pyenv");
        executable(&root.join("shims/python3"));
        executable(&root.join("versions/3.11.7/bin/python3"));
        executable(&root.join("versions/3.12.1/bin/python3"));
        std::fs::write(root.join("version"), "3.11.7\n").unwrap();
        executable(&tmp.path().join("usr/bin/python3"));
        let project = tmp.path().join("work/app");
        std::fs::create_dir_all(&project).unwrap();
        std::fs::create_dir_all(tmp.path().join("empty")).unwrap();
        let path = std::env::join_paths([
            tmp.path().join("empty"),
            root.join("shims"),
            tmp.path().join("usr/bin"),
        ])
        .unwrap();
        Fixture {
            _tmp: tmp,
            root,
            project,
            path,
        }
    }

    fn run(f: &Fixture, vars: &[(&str, &str)]) -> Option<PathBuf> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        resolve("python3", Some(&f.path), &f.project, |k| {
            vars.get(k).cloned()
        })
    }

    #[test]
    fn the_global_version_file_names_the_interpreter() {
        let f = fixture();
        assert_eq!(
            run(&f, &[]),
            Some(f.root.join("versions/3.11.7/bin/python3"))
        );
    }

    #[test]
    fn pyenv_version_then_the_nearest_local_file_win_over_the_global_one() {
        let f = fixture();
        std::fs::write(
            f.project.parent().unwrap().join(".python-version"),
            "# pinned\n3.12.1\n",
        )
        .unwrap();
        assert_eq!(
            run(&f, &[]),
            Some(f.root.join("versions/3.12.1/bin/python3"))
        );
        assert_eq!(
            run(&f, &[("PYENV_VERSION", "3.11.7:3.12.1")]),
            Some(f.root.join("versions/3.11.7/bin/python3"))
        );
        // PYENV_DIR moves where the search starts: from the root's parent, no local file.
        let elsewhere = f.root.parent().unwrap().to_str().unwrap().to_owned();
        assert_eq!(
            run(&f, &[("PYENV_DIR", &elsewhere)]),
            Some(f.root.join("versions/3.11.7/bin/python3"))
        );
    }

    #[test]
    fn anything_pyenv_would_resolve_further_is_left_to_the_shim() {
        let f = fixture();
        for version in ["system", "3.11", "3.9.1", "../3.11.7", ""] {
            assert_eq!(
                run(&f, &[("PYENV_VERSION", version)]).is_some(),
                version.is_empty()
            );
        }
        std::fs::write(f.root.join("version"), "system\n").unwrap();
        assert_eq!(run(&f, &[]), None);
        // Another PYENV_ROOT than the shim's, a path, or a python3 that is no shim.
        std::fs::write(f.root.join("version"), "3.11.7\n").unwrap();
        assert_eq!(run(&f, &[("PYENV_ROOT", "/elsewhere")]), None);
        let root = f.root.to_str().unwrap().to_owned();
        assert!(run(&f, &[("PYENV_ROOT", &root)]).is_some());
        assert_eq!(
            resolve("/usr/bin/python3", Some(&f.path), &f.project, |_| None),
            None
        );
        let no_shims = std::env::join_paths([f.root.parent().unwrap().join("usr/bin")]).unwrap();
        assert_eq!(
            resolve("python3", Some(&no_shims), &f.project, |_| None),
            None
        );
    }
}
