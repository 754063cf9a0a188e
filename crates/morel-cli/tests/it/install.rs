//! The install files in `deploy/`: the systemd units and the container image definition.
//!
//! Every command they run is parsed by the real `morel` (its arguments, with `--help`
//! appended: clap reads every flag and value before it, so an unknown flag or a bad address
//! fails). The units go through `systemd-analyze verify` where it exists (any warning about
//! them fails the test), else their required keys are checked by parsing. The Containerfile's
//! `COPY` sources must exist and cover every file the build embeds from outside `crates/`; the
//! image is built only where docker or podman has a daemon to build with.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::bin;

/// Where the units expect the binary.
const INSTALLED_BIN: &str = "/usr/local/bin/morel";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// A unit file: section → (key, value) in order (a key may repeat, like `Environment`).
type Unit = BTreeMap<String, Vec<(String, String)>>;

fn parse_unit(text: &str) -> Unit {
    let mut unit = Unit::new();
    let mut section = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            unit.entry(section.clone()).or_default();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not a key=value line: {line:?}"));
        assert!(!section.is_empty(), "{line:?} before any section");
        unit.get_mut(&section)
            .unwrap()
            .push((key.trim().to_owned(), value.trim().to_owned()));
    }
    unit
}

fn values<'a>(unit: &'a Unit, section: &str, key: &str) -> Vec<&'a str> {
    unit.get(section)
        .map(|kvs| {
            kvs.iter()
                .filter(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
                .collect()
        })
        .unwrap_or_default()
}

/// `ExecStart`'s words with each `${VAR}` replaced by the unit's own `Environment=` default
/// (an environment file may override it; the default must parse too).
fn exec_start_argv(name: &str, unit: &Unit) -> Vec<String> {
    let mut env = BTreeMap::new();
    for assignment in values(unit, "Service", "Environment") {
        for word in assignment.split_whitespace() {
            let (k, v) = word
                .split_once('=')
                .unwrap_or_else(|| panic!("{name}: Environment={assignment:?}"));
            env.insert(k.to_owned(), v.to_owned());
        }
    }
    let exec = values(unit, "Service", "ExecStart");
    assert_eq!(exec.len(), 1, "{name}: one ExecStart, got {exec:?}");
    exec[0]
        .split_whitespace()
        .map(
            |word| match word.strip_prefix("${").and_then(|w| w.strip_suffix('}')) {
                Some(var) => env
                    .get(var)
                    .unwrap_or_else(|| {
                        panic!(
                            "{name}: ExecStart uses ${{{var}}}, which has no Environment= default"
                        )
                    })
                    .clone(),
                None => {
                    assert!(
                        !word.contains('$'),
                        "{name}: write variables as ${{NAME}} (one word each): {word}"
                    );
                    word.to_owned()
                }
            },
        )
        .collect()
}

/// Runs `morel ARGS --help`: succeeds only when every flag and value in ARGS parses.
fn assert_morel_parses(what: &str, args: &[String]) {
    let out = Command::new(bin())
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{what}: `morel {}` does not parse:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn systemd_units_run_real_morel_commands() {
    let dir = repo_root().join("deploy/systemd");
    for (file, subcommand) in [
        ("morel-up.service", "up"),
        ("morel-server.service", "server"),
        ("morel-agent.service", "agent"),
    ] {
        let text = std::fs::read_to_string(dir.join(file))
            .unwrap_or_else(|e| panic!("deploy/systemd/{file}: {e}"));
        let unit = parse_unit(&text);
        for (section, key) in [
            ("Unit", "Description"),
            ("Service", "ExecStart"),
            ("Install", "WantedBy"),
        ] {
            assert!(
                !values(&unit, section, key).is_empty(),
                "{file}: no {key}= in [{section}]"
            );
        }
        assert_eq!(
            values(&unit, "Install", "WantedBy"),
            ["multi-user.target"],
            "{file}"
        );
        let argv = exec_start_argv(file, &unit);
        assert_eq!(argv[0], INSTALLED_BIN, "{file}: ExecStart runs {}", argv[0]);
        assert_eq!(
            argv[1], subcommand,
            "{file}: ExecStart runs `morel {}`",
            argv[1]
        );
        assert_morel_parses(file, &argv[1..]);
        // The state directory on the command line is the one systemd makes.
        let state = argv
            .iter()
            .position(|a| a == "--state-dir")
            .map(|i| argv[i + 1].clone())
            .unwrap_or_else(|| panic!("{file}: ExecStart names no --state-dir"));
        let made = values(&unit, "Service", "StateDirectory");
        assert_eq!(
            made.iter()
                .map(|d| format!("/var/lib/{d}"))
                .collect::<Vec<_>>(),
            [state],
            "{file}: StateDirectory= and --state-dir differ"
        );
    }
}

#[test]
fn systemd_analyze_verifies_the_units() {
    if !have("systemd-analyze") {
        eprintln!(
            "SKIP systemd-analyze verify: systemd-analyze is not installed \
             (the units' keys and commands are still checked by systemd_units_run_real_morel_commands)"
        );
        return;
    }
    // verify checks that ExecStart's binary exists: point the copies at the one under test.
    let tmp = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for entry in std::fs::read_dir(repo_root().join("deploy/systemd")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        let copy = tmp.path().join(&name);
        std::fs::write(&copy, text.replace(INSTALLED_BIN, bin().to_str().unwrap())).unwrap();
        files.push((name, copy));
    }
    assert_eq!(files.len(), 3, "deploy/systemd holds {files:?}");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(files.iter().map(|(_, copy)| copy))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // verify exits 0 on unknown keys and bad values, so read what it says about our files
    // (other lines are about the host's own units).
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| files.iter().any(|(name, _)| l.contains(name.as_str())))
        .collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify ({}):\n{stderr}",
        out.status
    );
}

/// The Containerfile's instructions, continuation lines joined.
fn containerfile() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo_root().join("deploy/Containerfile")).unwrap();
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                let (op, rest) = current.split_once(' ').unwrap_or((current.as_str(), ""));
                out.push((op.to_uppercase(), rest.trim().to_owned()));
                current.clear();
            }
        }
    }
    out
}

/// Files the build embeds (`include_str!`/`include_bytes!` with a literal path) that lie
/// outside `crates/`.
fn embedded_outside_crates(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.join("crates")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap();
            if path.is_dir() {
                if !matches!(name, "target" | "node_modules" | "tests" | "corpus") {
                    stack.push(path);
                }
                continue;
            }
            if !name.ends_with(".rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for marker in ["include_str!(\"", "include_bytes!(\""] {
                for piece in text.split(marker).skip(1) {
                    let literal = piece.split('"').next().unwrap();
                    let target = path.parent().unwrap().join(literal);
                    if let Ok(target) = target.canonicalize()
                        && !target.starts_with(root.join("crates"))
                    {
                        found.push(target);
                    }
                }
            }
        }
    }
    found
}

#[test]
fn containerfile_copies_what_the_build_needs_and_runs_real_commands() {
    let root = repo_root();
    let instructions = containerfile();
    let mut sources = Vec::new();
    for (op, args) in &instructions {
        if op != "COPY" || args.starts_with("--from") {
            continue;
        }
        let words: Vec<&str> = args.split_whitespace().collect();
        assert!(words.len() >= 2, "COPY {args}");
        for source in &words[..words.len() - 1] {
            let path = root.join(source);
            assert!(
                path.exists(),
                "COPY {source}: no such path in the repository"
            );
            sources.push(path.canonicalize().unwrap());
        }
    }
    for needed in ["Cargo.toml", "Cargo.lock", "crates"] {
        assert!(
            sources.contains(&root.join(needed)),
            "the Containerfile does not COPY {needed}"
        );
    }
    let embedded = embedded_outside_crates(&root);
    assert!(
        !embedded.is_empty(),
        "found no embedded file outside crates/ (the Python SDK is one): the scan is broken"
    );
    for file in embedded {
        assert!(
            sources.iter().any(|s| file.starts_with(s)),
            "the build embeds {}, which the Containerfile does not COPY",
            file.display()
        );
    }

    let json_words = |op: &str| -> Vec<String> {
        let (_, args) = instructions
            .iter()
            .rev()
            .find(|(o, _)| o == op)
            .unwrap_or_else(|| panic!("no {op} in the Containerfile"));
        serde_json::from_str(args)
            .unwrap_or_else(|e| panic!("{op} {args}: not the JSON (exec) form: {e}"))
    };
    assert_eq!(json_words("ENTRYPOINT"), [INSTALLED_BIN]);
    let cmd = json_words("CMD");
    assert_eq!(cmd[0], "up", "the image runs `morel up` by default");
    assert_morel_parses("Containerfile CMD", &cmd);

    let ignore = std::fs::read_to_string(root.join("deploy/Containerfile.dockerignore")).unwrap();
    assert!(
        ignore.lines().any(|l| l.trim() == "target"),
        "deploy/Containerfile.dockerignore must keep target/ out of the build context"
    );
}

#[test]
fn container_image_builds_where_a_container_engine_runs() {
    let engine = ["docker", "podman"].into_iter().find(|tool| {
        Command::new(tool)
            .arg("info")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let Some(engine) = engine else {
        eprintln!(
            "SKIP container build: neither `docker info` nor `podman info` answers here \
             (no engine or no daemon); the Containerfile's sources and commands are still \
             checked by containerfile_copies_what_the_build_needs_and_runs_real_commands"
        );
        return;
    };
    let root = repo_root();
    let tag = format!("morel-install-test:{}", std::process::id());
    let mut build = Command::new(engine);
    build.current_dir(&root).arg("build");
    if engine == "podman" {
        build.args(["--ignorefile", "deploy/Containerfile.dockerignore"]);
    }
    let status = build
        .args(["-f", "deploy/Containerfile", "-t", &tag, "."])
        .status()
        .unwrap();
    assert!(status.success(), "{engine} build failed ({status})");
    let out = Command::new(engine)
        .args(["run", "--rm", &tag, "up", "--help"])
        .output()
        .unwrap();
    let _ = Command::new(engine).args(["rmi", "-f", &tag]).output();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("--state-dir"),
        "the image's morel does not run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
