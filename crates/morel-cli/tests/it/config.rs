//! The user's flow (issue "The user's flow is right"), parts 1 and 4: config values
//! set with `morel env set` stay across deploys, `env unset` removes one, config and secret
//! changes made at once all land, and each command waits for its release; `morel deploy`
//! shows its own release's steps once, then the URLs.

use std::path::Path;
use std::time::Duration;

use morel_test_support::{MorelServer, wait_for};
use serde_json::Value;

use crate::bin;

const APP: &str = r#"
import os

def env(names):
    return {n: os.environ.get(n) for n in names}
"#;

fn project(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("app.py"), APP).unwrap();
    std::fs::write(dir.join("morel.toml"), "[app]\nname = \"configured\"\n").unwrap();
}

/// The values the app's instances see now.
async fn seen(s: &MorelServer, names: &[&str]) -> Value {
    let (status, body) = s
        .call("configured", "env", &serde_json::json!([names]).to_string())
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

fn values(pairs: &[(&str, Option<&str>)]) -> Value {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.map_or(Value::Null, Value::from)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

#[tokio::test(flavor = "multi_thread")]
async fn config_stays_across_deploys_unsets_and_concurrent_secret_changes() {
    let s = MorelServer::start(&bin());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("configured");
    project(&dir);
    let d = dir.to_str().unwrap();
    s.deploy(&dir);

    // `env set` waits for its release: the values are there when it returns.
    let out = s.cli_ok(&["env", "set", "configured", "A=1", "B=2"]);
    assert!(out.contains("is ready"), "{out}");
    assert_eq!(
        seen(&s, &["A", "B"]).await,
        values(&[("A", Some("1")), ("B", Some("2"))])
    );

    // A deploy keeps them; `--set` merges over them.
    s.deploy(&dir);
    assert_eq!(
        seen(&s, &["A", "B"]).await,
        values(&[("A", Some("1")), ("B", Some("2"))])
    );
    s.cli_ok(&["deploy", d, "--set", "B=20", "--set", "C=3"]);
    assert_eq!(
        seen(&s, &["A", "B", "C"]).await,
        values(&[("A", Some("1")), ("B", Some("20")), ("C", Some("3"))])
    );

    // `env unset` removes one value; the others stay. A value that is not set is named.
    s.cli_ok(&["env", "unset", "configured", "B"]);
    assert_eq!(
        seen(&s, &["A", "B", "C"]).await,
        values(&[("A", Some("1")), ("B", None), ("C", Some("3"))])
    );
    let out = s.cli(&["env", "unset", "configured", "NOPE"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("\"NOPE\""), "{err}");

    // A config change and a secret change sent at once, without waiting: both land,
    // whatever order they are handled in.
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| s.cli(&["env", "set", "configured", "D=4", "--detach"]));
        let b = scope.spawn(|| {
            s.cli(&[
                "secrets",
                "set",
                "configured",
                "S",
                "--value",
                "hidden",
                "--detach",
            ])
        });
        (a.join().unwrap(), b.join().unwrap())
    });
    assert!(a.status.success() && b.status.success(), "{a:?} {b:?}");
    let want = values(&[
        ("A", Some("1")),
        ("C", Some("3")),
        ("D", Some("4")),
        ("S", Some("hidden")),
    ]);
    // Let every release they made finish, then look.
    wait_for(
        Duration::from_secs(60),
        "the releases to settle",
        || async {
            let (_, releases) = s.get("/api/apps/configured/releases").await;
            releases
                .as_array()?
                .iter()
                .all(|r| {
                    ["ready", "superseded", "failed"].contains(&r["status"].as_str().unwrap_or(""))
                })
                .then_some(())
        },
    )
    .await;
    assert_eq!(seen(&s, &["A", "C", "D", "S"]).await, want);

    // `secrets rm` waits for the restart too.
    let out = s.cli_ok(&["secrets", "rm", "configured", "S"]);
    assert!(out.contains("is ready"), "{out}");
    assert_eq!(
        seen(&s, &["S", "D"]).await,
        values(&[("S", None), ("D", Some("4"))])
    );
}

/// `morel deploy` shows this release's steps, each once, then its URLs: not the app's
/// history of earlier releases.
#[tokio::test(flavor = "multi_thread")]
async fn deploy_shows_only_this_releases_steps_then_its_urls() {
    let s = MorelServer::start(&bin());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("configured");
    project(&dir);
    for _ in 0..2 {
        s.deploy(&dir);
    }
    let out = s.cli(&["deploy", dir.to_str().unwrap()]);
    assert!(out.status.success());
    let steps = String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = steps.lines().map(str::trim).collect();
    assert_eq!(
        lines.iter().filter(|l| **l == "release v3 created").count(),
        1,
        "{steps}"
    );
    for l in &lines {
        assert!(
            !l.contains("v1") && !l.contains("v2"),
            "an earlier release's event: {l:?} in\n{steps}"
        );
        assert_eq!(
            lines.iter().filter(|m| *m == l).count(),
            1,
            "{l:?} twice in\n{steps}"
        );
    }
    for step in [
        "verifying bundle",
        "starting instances",
        "ready; routing to v3",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(step)),
            "no {step:?} in\n{steps}"
        );
    }
    assert!(stdout.contains("configured v3 is ready"), "{stdout}");
    assert!(
        stdout.contains(&format!("{}/default/configured/latest/call/env", s.url)),
        "{stdout}"
    );
}
