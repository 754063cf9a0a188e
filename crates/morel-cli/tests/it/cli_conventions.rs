//! The CLI's conventions as a Unix tool: a closed stdout ends a client quietly; destructive
//! commands ask first, or need --yes without a terminal; no ANSI escapes off a terminal; exit
//! codes by kind of failure; shell completions; `--json` on every command that prints data.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

use morel_test_support::MorelServer;

use crate::bin;

/// Runs `cmd` with stdout a pipe whose reading end is already closed (as in `morel … | head`
/// after head has exited); returns its stderr after checking that it did not panic.
fn with_closed_stdout(mut cmd: Command, what: &str) -> String {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = cmd.stdout(writer).stderr(Stdio::piped()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{what} panicked on a closed stdout ({:?}):\n{stderr}",
        out.status
    );
    // Ended by SIGPIPE, the default for a process writing to a pipe nobody reads.
    assert_eq!(
        out.status.signal(),
        Some(13),
        "{what}: {:?}\n{stderr}",
        out.status
    );
    stderr
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_conventions_closed_stdout_ends_quietly() {
    let mut help = Command::new(bin());
    help.arg("--help");
    with_closed_stdout(help, "morel --help");

    let s = MorelServer::start(&bin());
    with_closed_stdout(s.command(&["ls"]), "morel ls");
    with_closed_stdout(s.command(&["ls", "--json"]), "morel ls --json");
    // The server ignores SIGPIPE and is still serving.
    s.cli_ok(&["ls"]);
}

/// `delete` and `env rm` without a terminal: refused, naming --yes, and nothing is removed;
/// with --yes they go ahead.
#[tokio::test(flavor = "multi_thread")]
async fn cli_conventions_destructive_commands_need_yes_without_a_terminal() {
    let s = MorelServer::start(&bin());
    let dir = morel_test_support::example("hello-python");
    let dir = dir.to_str().unwrap();
    s.cli_ok(&["deploy", dir]);
    s.cli_ok(&["deploy", dir, "--env", "preview"]);

    for args in [
        &["delete", "hello-python"][..],
        &["env", "rm", "hello-python", "preview"][..],
    ] {
        let out = s.cli(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "morel {args:?}: {stderr}");
        assert!(
            stderr.contains("--yes") && stderr.contains("not a terminal"),
            "morel {args:?}: {stderr}"
        );
    }
    assert_eq!(s.call("hello-python", "greet", "").await.0, 200);
    let envs = s.cli_ok(&["env", "ls", "hello-python", "--json"]);
    assert!(envs.contains("\"preview\""), "{envs}");

    s.cli_ok(&["env", "rm", "hello-python", "preview", "--yes"]);
    let envs = s.cli_ok(&["env", "ls", "hello-python", "--json"]);
    assert!(!envs.contains("\"preview\""), "{envs}");
    s.cli_ok(&["delete", "hello-python", "--yes"]);
    assert_eq!(s.call("hello-python", "greet", "").await.0, 404);
}

/// Runs `morel ARGS…` against `s` with a terminal for stdin (util-linux `script` makes one)
/// and `answer` typed into it; returns whether it succeeded, and what it printed.
fn on_a_terminal(s: &MorelServer, args: &[&str], answer: &str) -> (bool, String) {
    use std::io::Write;
    let line = std::iter::once(bin().to_str().unwrap())
        .chain(args.iter().copied())
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let cmd = s.command(&[]);
    let mut child = Command::new("script")
        .args(["--quiet", "--return", "--command", &line, "/dev/null"])
        .envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn script (util-linux)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(answer.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// On a terminal, `delete` asks first: anything but yes keeps the app.
#[tokio::test(flavor = "multi_thread")]
async fn cli_conventions_delete_asks_on_a_terminal() {
    let s = MorelServer::start(&bin());
    s.deploy(&morel_test_support::example("hello-python"));

    let (ok, out) = on_a_terminal(&s, &["delete", "hello-python"], "n\n");
    assert!(
        !ok && out.contains("[y/N]") && out.contains("cancelled"),
        "{out}"
    );
    assert_eq!(s.call("hello-python", "greet", "").await.0, 200);

    let (ok, out) = on_a_terminal(&s, &["delete", "hello-python"], "y\n");
    assert!(ok && out.contains("deleted hello-python"), "{out}");
    assert_eq!(s.call("hello-python", "greet", "").await.0, 404);
}

/// Logs written to a file (stderr not a terminal) are plain text: no ANSI escapes.
#[tokio::test(flavor = "multi_thread")]
async fn cli_conventions_no_ansi_escapes_when_not_a_terminal() {
    let s = MorelServer::start(&bin());
    s.deploy(&morel_test_support::example("hello-python"));
    let deploy = s
        .command(&[
            "deploy",
            morel_test_support::example("hello-python")
                .to_str()
                .unwrap(),
        ])
        .env("MOREL_LOG", "info")
        .output()
        .unwrap();
    let log = s.log();
    assert!(log.contains("INFO"), "no log lines to check:\n{log}");
    assert!(
        !log.contains("\x1b["),
        "ANSI escapes in the server log:\n{log}"
    );
    let stderr = String::from_utf8_lossy(&deploy.stderr);
    assert!(
        !stderr.contains("\x1b["),
        "ANSI escapes in deploy's stderr:\n{stderr}"
    );
}

/// Exit codes follow the server's answer: 3 not found, 4 unauthorized; 2 for usage errors;
/// `morel --help` lists them.
#[tokio::test(flavor = "multi_thread")]
async fn cli_conventions_exit_codes() {
    let s = MorelServer::start(&bin());
    let code = |cmd: &mut Command| {
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (c, err) = code(&mut s.command(&["inspect", "no-such-app"]));
    assert_eq!(c, Some(3), "{err}");
    assert!(err.contains("HTTP 404"), "{err}");
    let (c, err) = code(&mut s.command(&["call", "no-such-app", "f"]));
    assert_eq!(c, Some(3), "{err}");

    let (c, err) = code(s.command(&["ls"]).env("MOREL_TOKEN", "wrong"));
    assert_eq!(c, Some(4), "{err}");
    assert!(err.contains("morel login"), "{err}");

    let (c, err) = code(&mut s.command(&["no-such-command"]));
    assert_eq!(c, Some(2), "{err}");

    let help = s.cli_ok(&["--help"]);
    assert!(
        help.contains("Exit codes:")
            && help.contains("3 not found")
            && help.contains("4 unauthorized"),
        "{help}"
    );
}

/// `morel completions SHELL` prints a script that completes `morel`.
#[test]
fn cli_conventions_completions() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(bin())
            .args(["completions", shell])
            .output()
            .unwrap();
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{shell}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            script.contains("morel") && script.contains("deploy") && script.lines().count() > 10,
            "{shell}:\n{script}"
        );
    }
    let out = Command::new(bin())
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// Every command that changes something and prints what it did has `--json`: its output is
/// one JSON document with the fields a script needs.
#[tokio::test(flavor = "multi_thread")]
async fn cli_conventions_json_on_commands_that_print_data() {
    let s = MorelServer::start(&bin());
    s.deploy(&morel_test_support::example("hello-python"));
    let json = |args: &[&str]| -> serde_json::Value {
        let out = s.cli_ok(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    };
    let set = json(&["env", "set", "hello-python", "A=1", "--json"]);
    assert_eq!(set["status"], "ready", "{set}");
    let v2 = set["number"].clone();
    let secret = json(&[
        "secrets",
        "set",
        "hello-python",
        "K",
        "--value",
        "v",
        "--json",
    ]);
    assert_eq!(secret["status"], "ready", "{secret}");
    assert_ne!(secret["number"], v2, "a new release: {secret}");
    let detached = json(&["env", "unset", "hello-python", "A", "--detach", "--json"]);
    assert!(detached["release"].is_string(), "{detached}");
    let removed = json(&["secrets", "rm", "hello-python", "K", "--json"]);
    assert_eq!(removed["status"], "ready", "{removed}");
    let back = json(&["rollback", "hello-python", "--to", "v1", "--json"]);
    assert_eq!(
        (back["number"].as_i64(), &back["status"]),
        (Some(1), &serde_json::json!("ready")),
        "{back}"
    );
    let budget = json(&[
        "budget",
        "set",
        "hello-python",
        "--max-instances",
        "9",
        "--json",
    ]);
    assert_eq!(budget["max_instances"], 9, "{budget}");
    let scale = json(&["scale", "hello-python", "--min", "1", "--json"]);
    assert_eq!(
        (&scale["min"], &scale["max"]),
        (&serde_json::json!(1), &serde_json::json!(1)),
        "{scale}"
    );
    // The deploy made this CLI's signing key.
    let key = json(&["keys", "show", "--json"]);
    assert!(
        key["key_id"].as_str().is_some_and(|k| k.len() == 16)
            && key["public_key"]
                .as_str()
                .is_some_and(|k| k.starts_with("morel-public-key-v1 ")),
        "{key}"
    );
}
