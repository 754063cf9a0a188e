//! Worker crashes, server restarts, redeploys: the platform keeps things running.

use std::time::Duration;

use morel_test_support::{MorelServer, example, signal, wait_for};
use serde_json::{Value, json};

use crate::bin;

async fn ready_pid(s: &MorelServer, app: &str) -> i64 {
    ready_pid_except(s, app, -1).await
}

/// The pid of a ready instance other than `old` (a respawned worker).
async fn ready_pid_except(s: &MorelServer, app: &str, old: i64) -> i64 {
    wait_for(Duration::from_secs(30), "a ready instance", || async {
        let (_, detail) = s.get(&format!("/api/apps/{app}")).await;
        detail["instances"]
            .as_array()?
            .iter()
            .find(|i| i["state"] == "ready" && i["pid"].as_i64() != Some(old))
            .and_then(|i| i["pid"].as_i64())
    })
    .await
}

fn alive(pid: i64) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_worker_fails_in_flight_calls_and_is_respawned() {
    let s = MorelServer::start(&bin());
    s.deploy(&example("hello-python"));
    let pid = ready_pid(&s, "hello-python").await;

    // A call that would take 20 s is in flight when the worker is killed: it fails at once with 502.
    let url = format!("{}/default/hello-python/latest/call/slow_echo", s.url);
    let http = s.http();
    let slow = tokio::spawn(async move {
        http.post(url)
            .body(r#"{"value": 1, "delay": 20}"#)
            .send()
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(pid as u32, libc::SIGKILL);
    let resp = tokio::time::timeout(Duration::from_secs(10), slow)
        .await
        .expect("in-flight call was not failed at once")
        .unwrap();
    assert_eq!(resp.status(), 502);
    let body: Value = resp.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("died"), "{body}");

    // The worker comes back and the next call succeeds.
    let new_pid = ready_pid_except(&s, "hello-python", pid).await;
    assert!(alive(new_pid) && !alive(pid));
    assert_eq!(
        s.call("hello-python", "add", "[2, 2]").await,
        (200, json!(4))
    );
    let (_, detail) = s.get("/api/apps/hello-python").await;
    assert!(
        detail["instances"][0]["restarts"].as_i64().unwrap() >= 1,
        "{detail}"
    );

    // A function that exits the process: 502 for that call, then service resumes.
    assert_eq!(s.call("hello-python", "crash", "").await.0, 502);
    wait_for(
        Duration::from_secs(30),
        "the worker to be respawned",
        || async {
            (s.call("hello-python", "add", "[1, 2]").await == (200, json!(3))).then_some(())
        },
    )
    .await;
    let (_, logs) = s.get("/api/apps/hello-python/logs?stream=event").await;
    assert!(
        logs.as_array()
            .unwrap()
            .iter()
            .any(|l| l["line"].as_str().unwrap().contains("crashed: exit code 3")),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_brings_every_app_back_without_reinstalling() {
    let mut s = MorelServer::start(&bin());
    s.deploy(&example("python-with-deps"));
    s.deploy(&example("hello-node"));
    let old_pid = ready_pid(&s, "python-with-deps").await;
    let dirs = s.dirs.clone();

    // A clean stop stops the workers too.
    s.stop();
    wait_for(
        Duration::from_secs(10),
        "workers to exit with the server",
        || async { (!alive(old_pid)).then_some(()) },
    )
    .await;
    let s2 = MorelServer::start_with(&bin(), dirs.clone());
    wait_for(
        Duration::from_secs(60),
        "python-with-deps after restart",
        || async {
            (s2.call("python-with-deps", "natural_size", "[2000]").await == (200, json!("2.0 kB")))
                .then_some(())
        },
    )
    .await;
    wait_for(
        Duration::from_secs(60),
        "hello-node after restart",
        || async {
            (s2.call("hello-node", "add", "[1, 2]").await == (200, json!(3))).then_some(())
        },
    )
    .await;
    let (_, logs) = s2.get("/api/apps/python-with-deps/logs?stream=event").await;
    let installs = logs
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| {
            l["line"]
                .as_str()
                .unwrap()
                .contains("dependencies of default installed")
        })
        .count();
    assert_eq!(
        installs, 1,
        "dependencies were installed again after the restart: {logs}"
    );
    let (_, app) = s2.get("/api/apps/python-with-deps").await;
    assert_eq!(app["active_release"], "v1");
    assert_eq!(
        app["releases"].as_array().unwrap().len(),
        1,
        "a restart must not create releases"
    );

    // A crash (SIGKILL) of the server: its workers notice their pipe closed and exit; a new server restores everything.
    let pid = ready_pid(&s2, "hello-node").await;
    let mut s2 = s2;
    s2.kill9();
    wait_for(
        Duration::from_secs(10),
        "orphaned workers to exit",
        || async { (!alive(pid)).then_some(()) },
    )
    .await;
    let s3 = MorelServer::start_with(&bin(), dirs);
    wait_for(
        Duration::from_secs(60),
        "hello-node after a crash",
        || async {
            (s3.call("hello-node", "greet", r#"{"name":"again"}"#).await
                == (200, json!({"message": "Hello, again!"})))
                .then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rollback_reactivates_an_older_release() {
    let s = MorelServer::start(&bin());
    s.deploy(&example("hello-python"));
    let dir = tempfile::tempdir().unwrap();
    morel_test_support::copy_dir(&example("hello-python"), dir.path());
    std::fs::write(
        dir.path().join("hello.py"),
        "def greet(name='world'):\n    return {'message': f'Howdy, {name}!'}\n",
    )
    .unwrap();
    s.cli_ok(&[
        "deploy",
        dir.path().to_str().unwrap(),
        "--name",
        "hello-python",
    ]);
    assert_eq!(
        s.call("hello-python", "greet", r#"{"name":"Ada"}"#).await,
        (200, json!({"message": "Howdy, Ada!"}))
    );

    let out = s.cli_ok(&["rollback", "hello-python"]);
    assert!(out.contains("back on v1"), "{out}");
    assert_eq!(
        s.call("hello-python", "greet", r#"{"name":"Ada"}"#).await,
        (200, json!({"message": "Hello, Ada!"}))
    );
    let (_, app) = s.get("/api/apps/hello-python").await;
    assert_eq!(app["active_release"], "v1");
    assert_eq!(app["releases"][1]["status"], "superseded");
    // And forward again, by number.
    s.cli_ok(&["rollback", "hello-python", "--to", "v2"]);
    assert_eq!(
        s.call("hello-python", "greet", "").await,
        (200, json!({"message": "Howdy, world!"}))
    );
    // Bad targets are clear errors.
    let out = s.cli(&["rollback", "hello-python", "--to", "v9"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no release v9"));
    let (status, body) = s
        .api(
            reqwest::Method::POST,
            "/api/apps/hello-python/rollback",
            Some(json!({"release": 2})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    // A malformed body is a JSON error too.
    let r = s
        .http()
        .post(format!("{}/api/apps/hello-python/releases", s.url))
        .bearer_auth(&s.token)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(
        r.json::<Value>().await.unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("invalid request body")
    );
}
