//! Morel on PostgreSQL, end to end: the real `morel up --database-url postgres://…` deploying,
//! serving and restarting with its state in PostgreSQL, and an embedded (SQLite) installation
//! moved there with `morel export` / `morel import`. Each test has a scratch database.

use std::sync::Arc;
use std::time::Duration;

use morel_test_support::postgres::ScratchDb;
use morel_test_support::{MorelServer, example, wait_for};
use serde_json::json;

use crate::bin;

async fn greets(s: &MorelServer, what: &str) {
    wait_for(Duration::from_secs(60), what, || async {
        (s.call("hello-python", "greet", r#"{"name": "pg"}"#).await
            == (200, json!({"message": "Hello, pg!"})))
            .then_some(())
    })
    .await;
}

async fn reads_secret(s: &MorelServer, what: &str) {
    wait_for(Duration::from_secs(60), what, || async {
        (s.call("hello-python", "env", r#"{"name": "API_KEY"}"#)
            .await
            == (200, json!("s3cret")))
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn up_on_postgres_deploys_serves_and_survives_a_restart() {
    let db = ScratchDb::create().await;
    let dirs = Arc::new(tempfile::tempdir().unwrap());
    let mut s = MorelServer::start_with_args(&bin(), dirs.clone(), &["--database-url", &db.url]);
    s.deploy(&example("hello-python"));
    assert_eq!(
        s.call("hello-python", "add", "[2, 3]").await,
        (200, json!(5))
    );
    greets(&s, "the first call").await;
    assert!(
        !s.state_dir.join("morel.db").exists(),
        "the store is PostgreSQL, not the embedded file"
    );

    s.stop();
    let s = MorelServer::start_with_args(&bin(), dirs, &["--database-url", &db.url]);
    greets(&s, "hello-python to come back after the restart").await;
    let (status, app) = s.get("/api/apps/hello-python").await;
    assert_eq!(status, 200, "{app}");
    let releases = app["releases"].as_array().unwrap();
    assert_eq!(releases.len(), 1, "{app}");

    // A second deploy of the same name is v2, numbered by the PostgreSQL store.
    s.deploy(&example("hello-python"));
    let (_, app) = s.get("/api/apps/hello-python").await;
    assert_eq!(app["releases"].as_array().unwrap().len(), 2, "{app}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_embedded_installation_moves_to_postgres_with_its_bundles() {
    // An installation on SQLite, with one app deployed and a secret set (sealed in the store
    // with the state directory's key).
    let mut old = MorelServer::start(&bin());
    old.deploy(&example("hello-python"));
    greets(&old, "the app on SQLite").await;
    old.cli_ok(&[
        "secrets",
        "set",
        "hello-python",
        "API_KEY",
        "--value",
        "s3cret",
    ]);
    reads_secret(&old, "the secret on SQLite").await;
    old.stop();

    let out = tempfile::tempdir().unwrap();
    let export_dir = out.path().join("export");
    let old_state = old.state_dir.to_str().unwrap().to_owned();
    let printed = old.cli_ok(&[
        "export",
        "--state-dir",
        &old_state,
        export_dir.to_str().unwrap(),
    ]);
    assert!(printed.contains("1 bundles"), "{printed}");
    assert!(
        export_dir.join("keys/kek.key").is_file(),
        "the key that opens the secrets key travels with the export"
    );

    // Import into a new database and a new state directory, then start there: the app serves
    // from the imported bundle, with no deploy.
    let db = ScratchDb::create().await;
    let dirs = Arc::new(tempfile::tempdir().unwrap());
    let new_state = dirs.path().join("state");
    old.cli_ok(&[
        "import",
        export_dir.to_str().unwrap(),
        "--database-url",
        &db.url,
        "--state-dir",
        new_state.to_str().unwrap(),
    ]);
    let s = MorelServer::start_with_args(&bin(), dirs, &["--database-url", &db.url]);
    greets(&s, "the imported app").await;
    // The imported secret opens with the imported key: the instances see its value.
    reads_secret(&s, "the imported secret in the app's environment").await;
    let (_, app) = s.get("/api/apps/hello-python").await;
    // The deploy's release and the one its secret change made.
    assert_eq!(app["releases"].as_array().unwrap().len(), 2, "{app}");

    // Importing again into the same (no longer empty) database is refused, naming why.
    let again = old.cli(&[
        "import",
        export_dir.to_str().unwrap(),
        "--database-url",
        &db.url,
        "--state-dir",
        new_state.to_str().unwrap(),
    ]);
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("already has 1 app"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn nodes_join_heartbeat_and_are_lost_after_the_ttl() {
    use reqwest::Method;
    let db = ScratchDb::create().await;
    let dirs = Arc::new(tempfile::tempdir().unwrap());
    let s = MorelServer::start_with_args(&bin(), dirs, &["--database-url", &db.url]);
    let join = json!({"id": "node-1", "address": "http://127.0.0.1:9", "capacity": 2});

    // The registry is behind the token; bad input is refused, naming the field.
    let anon = s
        .http()
        .post(format!("{}/api/nodes", s.url))
        .json(&join)
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status().as_u16(), 401);
    let (status, body) = s
        .api(
            Method::POST,
            "/api/nodes",
            Some(json!({"id": "node-1", "address": "http://127.0.0.1:9", "capacity": 0})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("capacity"), "{body}");

    let (status, node) = s.api(Method::POST, "/api/nodes", Some(join)).await;
    assert_eq!(status, 200, "{node}");
    assert_eq!(
        (node["state"].as_str(), node["capacity"].as_i64()),
        (Some("ready"), Some(2))
    );
    let (status, _) = s
        .api(Method::POST, "/api/nodes/node-1/heartbeat", None)
        .await;
    assert_eq!(status, 204);
    let (status, body) = s
        .api(Method::POST, "/api/nodes/ghost/heartbeat", None)
        .await;
    assert_eq!(status, 404, "{body}");

    // Silent for the TTL (10 s): lost.
    wait_for(
        Duration::from_secs(30),
        "node-1 to be marked lost",
        || async {
            let (_, nodes) = s.get("/api/nodes").await;
            (nodes[0]["state"] == "lost").then_some(())
        },
    )
    .await;
    // It comes back: a heartbeat makes it ready again.
    let (status, _) = s
        .api(Method::POST, "/api/nodes/node-1/heartbeat", None)
        .await;
    assert_eq!(status, 204);
    let (_, nodes) = s.get("/api/nodes").await;
    assert_eq!(nodes[0]["state"], "ready", "{nodes}");
}

/// A `morel agent` process joined to a server.
/// An agent process with a state directory of its own (never the working directory's default).
struct AgentProc(std::process::Child, #[allow(dead_code)] tempfile::TempDir);

impl AgentProc {
    fn start(s: &MorelServer, node: &str) -> AgentProc {
        let state = tempfile::tempdir().unwrap();
        let child = s
            .command(&[
                "agent",
                "--state-dir",
                state.path().to_str().unwrap(),
                "--join",
                &s.url,
                "--token",
                &s.token,
                "--node",
                node,
                "--capacity",
                "3",
                "--heartbeat-ms",
                "300",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        AgentProc(child, state)
    }

    fn kill9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

async fn node_state(s: &MorelServer, id: &str) -> Option<serde_json::Value> {
    let (_, nodes) = s.get("/api/nodes").await;
    nodes.as_array()?.iter().find(|n| n["id"] == id).cloned()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_joins_heartbeats_is_lost_when_killed_and_comes_back() {
    let db = ScratchDb::create().await;
    let dirs = Arc::new(tempfile::tempdir().unwrap());
    let s = MorelServer::start_with_args(&bin(), dirs, &["--database-url", &db.url]);

    let mut agent = AgentProc::start(&s, "agent-a");
    let node = wait_for(Duration::from_secs(30), "agent-a to join", || async {
        node_state(&s, "agent-a")
            .await
            .filter(|n| n["state"] == "ready")
    })
    .await;
    assert_eq!(node["capacity"], 3, "{node}");
    // The address it announced is its own, and answers.
    let health: serde_json::Value = s
        .http()
        .get(format!("{}/healthz", node["address"].as_str().unwrap()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["node"], "agent-a");
    // Heartbeats keep it ready past the TTL.
    let first = node["heartbeat_at"].as_i64().unwrap();
    wait_for(Duration::from_secs(10), "a later heartbeat", || async {
        let n = node_state(&s, "agent-a").await?;
        (n["heartbeat_at"].as_i64()? > first).then_some(())
    })
    .await;

    // kill -9: no more heartbeats, so the leader marks it lost after the 10 s TTL.
    agent.kill9();
    wait_for(
        Duration::from_secs(30),
        "agent-a to be marked lost",
        || async {
            node_state(&s, "agent-a")
                .await
                .filter(|n| n["state"] == "lost")
        },
    )
    .await;
    // It comes back.
    let _agent = AgentProc::start(&s, "agent-a");
    wait_for(
        Duration::from_secs(30),
        "agent-a to be ready again",
        || async {
            node_state(&s, "agent-a")
                .await
                .filter(|n| n["state"] == "ready")
        },
    )
    .await;
}

/// The queue-driven paths on pgmq: a compiled function goes PENDING → READY through the
/// compilation queues and runs; an async job goes through the jobs queue and completes.
#[tokio::test(flavor = "multi_thread")]
async fn compiles_and_async_jobs_run_through_pgmq() {
    use reqwest::Method;
    let db = ScratchDb::create().await;
    let dirs = Arc::new(tempfile::tempdir().unwrap());
    let s = MorelServer::start_with_args(&bin(), dirs, &["--database-url", &db.url]);

    let echo = std::fs::read_to_string(example("wasm-wat").join("echo.wat")).unwrap();
    let (status, f) = s
        .api(
            Method::POST,
            "/functions",
            Some(json!({"name": "echo", "language": "wat", "source": echo})),
        )
        .await;
    assert_eq!(status, 201, "{f}");
    let id = f["id"].as_str().unwrap().to_owned();
    let f = wait_for(Duration::from_secs(60), "the compile to finish", || async {
        let (_, f) = s.get(&format!("/functions/{id}")).await;
        matches!(f["status"].as_str(), Some("READY" | "FAILED")).then_some(f)
    })
    .await;
    assert_eq!(f["status"], "READY", "{f}");
    let (status, e) = s
        .api(
            Method::POST,
            &format!("/functions/{id}/execute"),
            Some(json!({"input": {"via": "pgmq"}})),
        )
        .await;
    assert_eq!(status, 200, "{e}");
    assert_eq!(e["status"], "COMPLETED", "{e}");

    s.deploy(&example("hello-python"));
    let r = s
        .http()
        .post(format!("{}/default/hello-python/latest/run/add", s.url))
        .body("[20, 22]")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let job = r.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let e = wait_for(
        Duration::from_secs(60),
        "the async job to complete",
        || async {
            let (_, e) = s.get(&format!("/api/executions/{job}")).await;
            (e["status"] == "COMPLETED").then_some(e)
        },
    )
    .await;
    assert_eq!(e["output"], json!(42), "{e}");
    // The queues are pgmq's tables in PostgreSQL, and every message gets consumed.
    let conn = morel_store::SqlStore::connect_postgres(&db.url)
        .await
        .unwrap();
    for table in [
        "pgmq.q_compilation_jobs",
        "pgmq.q_compilation_results",
        "pgmq.q_jobs",
    ] {
        wait_for(
            Duration::from_secs(30),
            &format!("{table} to drain"),
            || async {
                let waiting: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
                    .fetch_one(conn.pool())
                    .await
                    .unwrap();
                (waiting == 0).then_some(())
            },
        )
        .await;
    }
    conn.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_morel_up_on_the_same_database_is_refused() {
    let db = ScratchDb::create().await;
    let dirs = Arc::new(tempfile::tempdir().unwrap());
    let first = MorelServer::start_with_args(&bin(), dirs, &["--database-url", &db.url]);
    let other = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(bin())
        .args([
            "up",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &db.url,
            "--state-dir",
        ])
        .arg(other.path().join("state"))
        .env("MOREL_CONFIG_DIR", other.path().join("config"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("another `morel up` is already running on this database"),
        "{err}"
    );
    // The first one is unaffected.
    let (status, _) = first.get("/api/apps").await;
    assert_eq!(status, 200);
}
