//! Morel on many machines, on loopback: one PostgreSQL database, two `morel server` processes
//! and three `morel agent` processes (each with its own state directory and port). An app with
//! two instances is placed on two agents and answers through either server; when an agent
//! holding an instance is killed, the instance is placed elsewhere after the heartbeat TTL;
//! when the leading server is killed, the other one takes over scheduling.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use morel_test_support::postgres::ScratchDb;
use morel_test_support::{MorelServer, copy_dir, example, wait_for};
use serde_json::{Value, json};

use crate::bin;

const APP: &str = "hello-multi";

/// A `morel agent` joined to both servers.
struct AgentProc {
    node: String,
    child: std::process::Child,
}

impl AgentProc {
    fn start(s: &MorelServer, joins: &str, node: &str, state: &Path) -> AgentProc {
        Self::start_with_env(s, joins, node, state, &[])
    }

    fn start_with_env(
        s: &MorelServer,
        joins: &str,
        node: &str,
        state: &Path,
        envs: &[(&str, &str)],
    ) -> AgentProc {
        let log = std::fs::File::create(state.with_extension("log")).unwrap();
        let child = s
            .command(&[
                "agent",
                "--join",
                joins,
                "--token",
                &s.token,
                "--node",
                node,
                "--capacity",
                "4",
                "--heartbeat-ms",
                "300",
                "--state-dir",
                state.to_str().unwrap(),
            ])
            .env("MOREL_LOG", "info")
            .envs(envs.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        AgentProc {
            node: node.into(),
            child,
        }
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Ready placements of the app: (node, release).
/// A `morel server` on `db` with a state directory in `state` and the key-encryption key's
/// file in `dirs` (created by the first server, shared by every other), as on its own machine.
fn kek_server(db: &ScratchDb, dirs: &Path, state: Arc<tempfile::TempDir>) -> MorelServer {
    let kek = dirs.join("kek.key");
    MorelServer::start_role_with_env(
        &bin(),
        state,
        "server",
        &["--database-url", db.url.as_str(), "--no-compiler"],
        &[("MOREL_KEK_FILE", kek.to_str().unwrap())],
    )
}

/// Two servers as on two machines, sharing only the database and the KEK file; the second
/// keeps no token of its own and is given the one the first printed.
fn two_servers(db: &ScratchDb, dirs: &Arc<tempfile::TempDir>) -> (MorelServer, MorelServer) {
    let s1 = kek_server(db, dirs.path(), dirs.clone());
    let mut s2 = kek_server(db, dirs.path(), Arc::new(tempfile::tempdir().unwrap()));
    assert!(
        !s2.state_dir.join("admin.token").exists(),
        "the second server keeps no token of its own"
    );
    s2.token = s1.token.clone();
    (s1, s2)
}

async fn ready_placements(s: &MorelServer) -> Vec<(String, i64)> {
    let (_, rows) = s.get("/api/placements").await;
    rows.as_array()
        .map(|rows| {
            rows.iter()
                .filter(|p| p["app"] == APP && p["state"] == "ready")
                .map(|p| {
                    (
                        p["node"].as_str().unwrap_or_default().to_owned(),
                        p["release"].as_i64().unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn answers(s: &MorelServer) -> bool {
    s.call(APP, "add", "[20, 22]").await == (200, json!(42))
}

fn leads(s: &MorelServer) -> bool {
    s.log()
        .lines()
        .any(|l| l.contains("this server now leads") && l.contains("scheduler"))
}

#[tokio::test(flavor = "multi_thread")]
async fn two_servers_three_agents_survive_an_agent_and_a_server_dying() {
    let db = ScratchDb::create().await;
    let dirs = Arc::new(tempfile::tempdir().unwrap());
    let server_args = ["--database-url", db.url.as_str(), "--no-compiler"];
    // Two machines: each server has a state directory of its own.
    let (s1, s2) = two_servers(&db, &dirs);
    let joins = format!("{},{}", s1.url, s2.url);
    let mut agents: Vec<AgentProc> = ["node-a", "node-b", "node-c"]
        .iter()
        .map(|n| AgentProc::start(&s1, &joins, n, &dirs.path().join(n)))
        .collect();
    wait_for(Duration::from_secs(30), "three ready nodes", || async {
        let (_, nodes) = s2.get("/api/nodes").await;
        let ready = nodes
            .as_array()?
            .iter()
            .filter(|n| n["state"] == "ready")
            .count();
        (ready == 3).then_some(())
    })
    .await;

    // An app whose resource wants two instances.
    let project = dirs.path().join("project");
    copy_dir(&example("hello-python"), &project);
    std::fs::write(
        project.join("morel.toml"),
        format!("[app]\nname = \"{APP}\"\n[resources.default]\nworkers = [2, 2]\n"),
    )
    .unwrap();
    s1.deploy(&project);

    let placed = wait_for(Duration::from_secs(120), "two ready instances", || async {
        let p = ready_placements(&s1).await;
        (p.len() == 2).then_some(p)
    })
    .await;
    let nodes: HashSet<&str> = placed.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(nodes.len(), 2, "spread across two nodes: {placed:?}");
    for s in [&s1, &s2] {
        wait_for(
            Duration::from_secs(10),
            "a call through each server",
            || async { answers(s).await.then_some(()) },
        )
        .await;
    }
    let (status, body) = s2.call(APP, "greet", r#"{"name": "cluster"}"#).await;
    assert_eq!((status, body), (200, json!({"message": "Hello, cluster!"})));
    // A stateless `morel gateway` on the same database forwards calls too.
    let edge = MorelServer::start_role(&bin(), dirs.clone(), "gateway", &server_args[..2]);
    wait_for(
        Duration::from_secs(10),
        "a call through the gateway",
        || async { answers(&edge).await.then_some(()) },
    )
    .await;
    let (status, body) = edge.get("/api/apps").await;
    assert_eq!(status, 404, "the gateway serves no API: {body}");

    // kill -9 an agent holding an instance: after the TTL its instance is placed elsewhere.
    let victim = placed[0].0.clone();
    let idx = agents.iter().position(|a| a.node == victim).unwrap();
    agents[idx].kill9();
    let spare = ["node-a", "node-b", "node-c"]
        .into_iter()
        .find(|n| !nodes.contains(n))
        .unwrap();
    let placed = wait_for(
        Duration::from_secs(60),
        "the lost node's instance to be ready elsewhere",
        || async {
            let p = ready_placements(&s2).await;
            (p.len() == 2 && p.iter().all(|(n, _)| *n != victim)).then_some(p)
        },
    )
    .await;
    assert!(placed.iter().any(|(n, _)| n == spare), "{placed:?}");
    let (_, nodes_now) = s2.get("/api/nodes").await;
    let lost: Vec<&Value> = nodes_now
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["state"] == "lost")
        .collect();
    assert_eq!(lost.len(), 1, "{nodes_now}");
    assert_eq!(lost[0]["id"], victim.as_str());
    for s in [&s1, &s2] {
        wait_for(
            Duration::from_secs(10),
            "calls after the node loss",
            || async { answers(s).await.then_some(()) },
        )
        .await;
    }

    // Kill the leading server: the other takes over and schedules a new release.
    let (mut leader, follower) = if leads(&s1) { (s1, s2) } else { (s2, s1) };
    assert!(leads(&leader), "one server leads the scheduler");
    assert!(!leads(&follower));
    leader.kill9();
    wait_for(
        Duration::from_secs(30),
        "the other server to lead",
        || async { leads(&follower).then_some(()) },
    )
    .await;
    follower.cli_ok(&["deploy", project.to_str().unwrap(), "--set", "ROUND=2"]);
    let placed = wait_for(
        Duration::from_secs(120),
        "two ready instances of the new release",
        || async {
            let p = ready_placements(&follower).await;
            (p.len() == 2 && p.iter().all(|(_, r)| *r == 2)).then_some(p)
        },
    )
    .await;
    assert!(placed.iter().all(|(n, _)| *n != victim), "{placed:?}");
    wait_for(
        Duration::from_secs(10),
        "calls to the new release",
        || async { (follower.call(APP, "add", "[1, 2]").await == (200, json!(3))).then_some(()) },
    )
    .await;
    // Rolling back re-places the previous release, which then serves.
    follower.cli_ok(&["rollback", APP]);
    wait_for(
        Duration::from_secs(120),
        "two ready instances of v1 again",
        || async {
            let p = ready_placements(&follower).await;
            (p.len() == 2 && p.iter().all(|(_, r)| *r == 1)).then_some(())
        },
    )
    .await;
    let (_, app) = follower.get(&format!("/api/apps/{APP}")).await;
    assert_eq!(app["active_release"], "v1", "{app}");
    wait_for(
        Duration::from_secs(10),
        "calls after the rollback",
        || async { answers(&follower).await.then_some(()) },
    )
    .await;
    drop(leader);
}

/// An agent that was cut off (SIGSTOP: no heartbeats, nothing answered) past the TTL comes
/// back to find its instance placed elsewhere, and stops it: it no longer serves the app.
/// Then: bad reports are refused with named errors, and a release whose instance cannot start
/// fails with the reason while the previous release keeps serving.
#[tokio::test(flavor = "multi_thread")]
async fn an_agent_that_comes_back_stops_its_stale_instance() {
    let db = ScratchDb::create().await;
    let dirs = Arc::new(tempfile::tempdir().unwrap());
    let s = MorelServer::start_role(
        &bin(),
        dirs.clone(),
        "server",
        &["--database-url", db.url.as_str(), "--no-compiler"],
    );
    let agents: Vec<AgentProc> = ["node-a", "node-b"]
        .iter()
        .map(|n| AgentProc::start(&s, &s.url, n, &dirs.path().join(n)))
        .collect();
    wait_for(Duration::from_secs(30), "two ready nodes", || async {
        let (_, nodes) = s.get("/api/nodes").await;
        let ready = nodes
            .as_array()?
            .iter()
            .filter(|n| n["state"] == "ready")
            .count();
        (ready == 2).then_some(())
    })
    .await;
    let project = dirs.path().join("project");
    copy_dir(&example("hello-python"), &project);
    std::fs::write(
        project.join("morel.toml"),
        format!("[app]\nname = \"{APP}\"\n"),
    )
    .unwrap();
    s.deploy(&project);
    let first = wait_for(Duration::from_secs(120), "one ready instance", || async {
        ready_placements(&s).await.pop()
    })
    .await;
    let (_, nodes) = s.get("/api/nodes").await;
    let address = nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == first.0.as_str())
        .unwrap()["address"]
        .as_str()
        .unwrap()
        .to_owned();
    // The agent itself serves the instance's calls.
    let direct = format!("{address}/default/{APP}/v{}/call/add", first.1);
    let http = s.http();
    let status = |url: String| {
        let http = http.clone();
        async move {
            http.post(url)
                .body("[1, 1]")
                .send()
                .await
                .map(|r| r.status().as_u16())
                .ok()
        }
    };
    assert_eq!(status(direct.clone()).await, Some(200));

    let frozen = agents.iter().find(|a| a.node == first.0).unwrap();
    morel_test_support::signal(frozen.child.id(), libc::SIGSTOP);
    wait_for(
        Duration::from_secs(60),
        "the instance placed elsewhere",
        || async {
            let p = ready_placements(&s).await;
            (p.len() == 1 && p[0].0 != first.0).then_some(())
        },
    )
    .await;
    wait_for(Duration::from_secs(10), "calls after the move", || async {
        answers(&s).await.then_some(())
    })
    .await;
    morel_test_support::signal(frozen.child.id(), libc::SIGCONT);
    // Back: it is ready again, but its instance is stale and gets stopped.
    wait_for(
        Duration::from_secs(30),
        "the stale instance to stop",
        || async { (status(direct.clone()).await == Some(404)).then_some(()) },
    )
    .await;
    wait_for(Duration::from_secs(10), "the node ready again", || async {
        let (_, nodes) = s.get("/api/nodes").await;
        nodes
            .as_array()?
            .iter()
            .all(|n| n["state"] == "ready")
            .then_some(())
    })
    .await;
    let p = ready_placements(&s).await;
    assert_eq!(p.len(), 1, "{p:?}");
    assert_ne!(p[0].0, first.0);

    // Reports name what is wrong: a placement not on that node, a state that does not exist.
    let (status, body) = s
        .api(
            reqwest::Method::POST,
            "/api/nodes/node-a/placements/nope",
            Some(json!({"state": "ready", "endpoint": "http://127.0.0.1:1"})),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].as_str().unwrap().contains("nope"), "{body}");
    let (status, body) = s
        .api(
            reqwest::Method::POST,
            "/api/nodes/node-a/placements/nope",
            Some(json!({"state": "dancing"})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("dancing"),
        "{body}"
    );
    let (status, _) = s.get("/api/bundles/not-a-digest/content").await;
    assert_eq!(status, 400);

    // A release whose instance cannot start fails with the reason, and v1 keeps serving.
    let hello = project.join("hello.py");
    let code = std::fs::read_to_string(&hello).unwrap();
    std::fs::write(
        &hello,
        format!("{code}\nraise RuntimeError('broken on import')\n"),
    )
    .unwrap();
    let out = s.cli(&["deploy", project.to_str().unwrap()]);
    assert!(!out.status.success());
    let (_, releases) = s.get(&format!("/api/apps/{APP}/releases")).await;
    let v2 = releases
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["number"] == 2)
        .cloned()
        .unwrap_or_else(|| panic!("no v2 in {releases}"));
    assert_eq!(v2["status"], "failed", "{v2}");
    assert!(
        v2["error"]
            .as_str()
            .unwrap_or_default()
            .contains("broken on import"),
        "{v2}"
    );
    assert!(answers(&s).await, "v1 still serves");
}

/// Resumes a stopped process (even when the test fails).
struct Resume(u32);

impl Drop for Resume {
    fn drop(&mut self) {
        morel_test_support::signal(self.0, libc::SIGCONT);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hung_agent_costs_a_call_its_deadline_then_leaves_routing() {
    let db = ScratchDb::create().await;
    let dirs = Arc::new(tempfile::tempdir().unwrap());
    let server_args = ["--database-url", db.url.as_str(), "--no-compiler"];
    let s = MorelServer::start_role(&bin(), dirs.clone(), "server", &server_args);
    let agents: Vec<AgentProc> = ["hung-a", "hung-b"]
        .iter()
        .map(|n| AgentProc::start(&s, &s.url, n, &dirs.path().join(n)))
        .collect();
    let project = dirs.path().join("project");
    copy_dir(&example("hello-python"), &project);
    std::fs::write(
        project.join("morel.toml"),
        format!("[app]\nname = \"{APP}\"\n[resources.default]\nworkers = [2, 2]\ntimeout_s = 2\n"),
    )
    .unwrap();
    s.deploy(&project);
    wait_for(Duration::from_secs(120), "two ready instances", || async {
        let p = ready_placements(&s).await;
        let nodes: HashSet<String> = p.iter().map(|(n, _)| n.clone()).collect();
        (p.len() == 2 && nodes.len() == 2).then_some(())
    })
    .await;
    wait_for(Duration::from_secs(10), "a call", || async {
        answers(&s).await.then_some(())
    })
    .await;

    // One agent hangs (it still accepts connections: the kernel does).
    let hung = agents[0].child.id();
    morel_test_support::signal(hung, libc::SIGSTOP);
    let _resume = Resume(hung);
    let started = std::time::Instant::now();
    let (mut timed_out, mut ok) = (0, 0);
    // Each call ends within its deadline (2 s) plus the forward's grace; once the hung
    // node's heartbeat is stale, calls only go to the live agent.
    while started.elapsed() < Duration::from_secs(40) {
        let t = std::time::Instant::now();
        let (status, body) =
            tokio::time::timeout(Duration::from_secs(8), s.call(APP, "add", "[20, 22]"))
                .await
                .expect("a forwarded call waited for the hung agent");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        match status {
            200 => {
                assert_eq!(body, json!(42));
                ok += 1;
            }
            504 => {
                assert!(
                    body["error"].as_str().unwrap().contains("deadline"),
                    "{body}"
                );
                timed_out += 1;
                ok = 0;
            }
            other => panic!("{other}: {body}"),
        }
        if ok >= 10 {
            break;
        }
    }
    assert!(
        ok >= 10,
        "calls kept reaching the hung agent ({timed_out} timeouts)"
    );
}

/// Servers and agents hold the same connection limits as `morel up`: stalled heads and bodies
/// and idle connections are closed on each listener.
#[tokio::test(flavor = "multi_thread")]
async fn servers_and_agents_close_stalled_and_idle_connections() {
    use crate::hostile::{LIMITS_FOR_TESTS, Listener};
    let db = ScratchDb::create().await;
    let dirs = Arc::new(tempfile::tempdir().unwrap());
    let server_args = ["--database-url", db.url.as_str(), "--no-compiler"];
    let s = MorelServer::start_role_with_env(
        &bin(),
        dirs.clone(),
        "server",
        &server_args,
        &LIMITS_FOR_TESTS,
    );
    let _agent = AgentProc::start_with_env(
        &s,
        &s.url,
        "limits-a",
        &dirs.path().join("limits-a"),
        &LIMITS_FOR_TESTS,
    );
    s.deploy(&example("hello-python"));
    let call = "/default/hello-python/latest/call/greet";
    wait_for(
        Duration::from_secs(120),
        "a call through the server",
        || async {
            let (status, body) = s.call("hello-python", "greet", r#"{"name": "Ada"}"#).await;
            (status == 200 && body.to_string().contains("Hello, Ada!")).then_some(())
        },
    )
    .await;
    let (_, nodes) = s.get("/api/nodes").await;
    let agent = nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "limits-a")
        .unwrap_or_else(|| panic!("no agent in {nodes}"))["address"]
        .as_str()
        .unwrap()
        .trim_start_matches("http://")
        .to_owned();
    let listeners = [
        Listener {
            addr: s.url.trim_start_matches("http://").to_owned(),
            label: "morel server".into(),
            call,
            other: "/api/readiness",
        },
        Listener {
            addr: agent,
            label: "morel agent".into(),
            call,
            other: "/healthz",
        },
    ];
    for l in &listeners {
        l.limits_hold().await;
    }
}

/// An agent fails over between servers on a refusal, not only on a connection error: joined
/// to a server that refuses its token (a second server with a state directory of its own),
/// it moves to the next one, registers there and runs what is placed on it; its bundles come
/// from the server that has them.
#[tokio::test(flavor = "multi_thread")]
async fn an_agent_refused_by_one_server_joins_the_next() {
    let db = ScratchDb::create().await;
    let server_args = ["--database-url", db.url.as_str(), "--no-compiler"];
    let dirs = Arc::new(tempfile::tempdir().unwrap());
    let other = Arc::new(tempfile::tempdir().unwrap());
    // A server of another installation (its own database) refuses this one's token.
    let other_db = ScratchDb::create().await;
    let s = MorelServer::start_role(&bin(), dirs.clone(), "server", &server_args);
    let refusing = MorelServer::start_role(
        &bin(),
        other,
        "server",
        &["--database-url", other_db.url.as_str(), "--no-compiler"],
    );
    assert_ne!(s.token, refusing.token);
    let joins = format!("{},{}", refusing.url, s.url);
    let _agent = AgentProc::start(&s, &joins, "failover-a", &dirs.path().join("failover-a"));
    wait_for(Duration::from_secs(30), "the agent to join", || async {
        let (_, nodes) = s.get("/api/nodes").await;
        nodes
            .as_array()?
            .iter()
            .any(|n| n["id"] == "failover-a" && n["state"] == "ready")
            .then_some(())
    })
    .await;
    s.deploy(&example("hello-python"));
    wait_for(
        Duration::from_secs(120),
        "a call through the server",
        || async {
            let (status, body) = s.call("hello-python", "greet", r#"{"name": "Ada"}"#).await;
            (status == 200 && body.to_string().contains("Hello, Ada!")).then_some(())
        },
    )
    .await;
}

/// Servers share only the database: the admin token the first one recorded is every server's,
/// a server with another key-encryption key refuses to start (the store's secrets key would
/// not open), and a bundle uploaded to one server is served by the other from the store.
#[tokio::test(flavor = "multi_thread")]
async fn servers_share_the_token_the_secrets_key_and_bundles_through_the_store() {
    let db = ScratchDb::create().await;
    let server_args = ["--database-url", db.url.as_str(), "--no-compiler"];
    let dirs = Arc::new(tempfile::tempdir().unwrap());
    let s1 = kek_server(&db, dirs.path(), dirs.clone());

    // Another KEK: refused at startup, with the reason and what to do.
    let stray = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(bin())
        .args(["server", "--listen", "127.0.0.1:0", "--state-dir"])
        .arg(stray.path().join("state"))
        .args(server_args)
        .env("MOREL_CONFIG_DIR", stray.path().join("config"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let exited = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a server with another KEK kept running"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!exited.success(), "{stderr}");
    assert!(
        stderr.contains("key-encryption key") && stderr.contains("MOREL_KEK_FILE"),
        "{stderr}"
    );

    // The same KEK, its own state directory: a full server.
    let mut s2 = kek_server(&db, dirs.path(), Arc::new(tempfile::tempdir().unwrap()));
    s2.token = "morel_not-the-token".into();
    assert_eq!(s2.get("/api/apps").await.0, 401, "a wrong token");
    s2.token = s1.token.clone();
    assert_eq!(s2.get("/api/apps").await.0, 200, "the first server's token");
    // Deployed through s1; the only agent joins s2, which never received the bundle.
    let agent_dir = dirs.path().join("agent-b");
    let _agent = AgentProc::start(&s2, &s2.url, "only-b", &agent_dir);
    s1.deploy(&example("hello-python"));
    wait_for(Duration::from_secs(120), "a call through s2", || async {
        let (status, body) = s2.call("hello-python", "greet", r#"{"name": "Ada"}"#).await;
        (status == 200 && body.to_string().contains("Hello, Ada!")).then_some(())
    })
    .await;
    assert!(
        s2.log().contains("bundle restored from the store"),
        "s2 served the bundle from the store"
    );
    // The worker's output on the agent reaches the store: any server's `morel logs` shows it.
    wait_for(
        Duration::from_secs(30),
        "the agent's output in morel logs",
        || async {
            let out = s1.cli(&["logs", "hello-python"]);
            String::from_utf8_lossy(&out.stdout)
                .contains("greeting Ada")
                .then_some(())
        },
    )
    .await;
    // Secrets set on either server are sealed with the one shared key.
    s1.cli_ok(&[
        "secrets",
        "set",
        "hello-python",
        "API_KEY",
        "--value",
        "s3cret",
    ]);
    s2.cli_ok(&["secrets", "set", "hello-python", "OTHER", "--value", "x"]);
    let listed = s1.cli_ok(&["secrets", "ls", "hello-python"]);
    assert!(
        listed.contains("API_KEY") && listed.contains("OTHER"),
        "{listed}"
    );
    // The agent running the app gets them (secrets make a release, placed anew).
    for (name, value) in [("API_KEY", "s3cret"), ("OTHER", "x")] {
        let body = json!({ "name": name }).to_string();
        wait_for(
            Duration::from_secs(120),
            "the secret on the agent",
            || async {
                (s1.call("hello-python", "env", &body).await == (200, json!(value))).then_some(())
            },
        )
        .await;
    }
}

/// The manifest-routed app on many machines: its HTTP routes answer on every server and on a
/// gateway, a route's cross-resource calls reach the other resources' agents, and errors keep
/// their status and type, as on `morel up` (`manifest_apps::routes_and_cross_resource_calls`).
#[tokio::test(flavor = "multi_thread")]
async fn shop_routes_and_cross_resource_calls_on_servers_and_a_gateway() {
    let db = ScratchDb::create().await;
    let server_args = ["--database-url", db.url.as_str(), "--no-compiler"];
    let dirs = Arc::new(tempfile::tempdir().unwrap());
    let (s1, s2) = two_servers(&db, &dirs);
    let joins = format!("{},{}", s1.url, s2.url);
    let _agents: Vec<AgentProc> = ["shop-a", "shop-b"]
        .iter()
        .map(|n| AgentProc::start(&s1, &joins, n, &dirs.path().join(n)))
        .collect();
    s1.deploy(&example("shop"));
    wait_for(
        Duration::from_secs(120),
        "the shop's three resources",
        || async {
            let (_, rows) = s1.get("/api/placements").await;
            let ready = rows
                .as_array()?
                .iter()
                .filter(|p| p["app"] == "shop" && p["state"] == "ready")
                .count();
            (ready == 3).then_some(())
        },
    )
    .await;
    let edge = MorelServer::start_role(&bin(), dirs.clone(), "gateway", &server_args[..2]);
    let http = s1.http();
    for base in [&s1.url, &s2.url, &edge.url] {
        let body: Value = wait_for(Duration::from_secs(20), "a routed checkout", || async {
            let r = http
                .post(format!("{base}/shop/checkout"))
                .body(r#"{"items": [{"price": 10, "qty": 2}, {"price": 5, "qty": 1}]}"#)
                .send()
                .await
                .ok()?;
            if r.status() != 200 {
                return None;
            }
            r.json().await.ok()
        })
        .await;
        assert_eq!(body["total"], 25, "{base}: {body}");
        assert_eq!(body["served_by"], "api");
        assert_eq!(
            body["thumbnail"],
            json!({"w": 64, "h": 48, "served_by": "jobs"})
        );
        assert_eq!(body["score"]["served_by"], "models");
        let r = http
            .get(format!("{base}/shop/status"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.json::<Value>().await.unwrap(), json!({"ok": true}));
        let status = |path: &'static str| {
            let http = http.clone();
            let url = format!("{base}{path}");
            async move { http.get(url).send().await.unwrap().status().as_u16() }
        };
        assert_eq!(status("/shop/checkout").await, 405, "{base}");
        assert_eq!(status("/shop/nope").await, 404, "{base}");
        let r = http.post(format!("{base}/shop/fail")).send().await.unwrap();
        assert_eq!(r.status(), 500, "{base}");
        let err: Value = r.json().await.unwrap();
        assert_eq!(err["type"], "ValueError", "{base}: {err}");
    }
    // The servers' own paths stay theirs.
    assert_eq!(s2.get("/api/apps").await.0, 200);
    assert_eq!(edge.get("/api/apps").await.0, 404);

    // Async runs: queued on one server, run on an agent by whichever server reads the job,
    // recorded in the store; a failure keeps its type.
    let mut outcomes = Vec::new();
    for (func, body) in [("resize", "[3, 4]"), ("explode", r#"["later"]"#)] {
        let r = http
            .post(format!("{}/default/shop/latest/run/{func}", s2.url))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "{func}");
        let id = r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let e = wait_for(
            Duration::from_secs(60),
            "the async run to finish",
            || async {
                let (_, e) = s1.get(&format!("/api/executions/{id}")).await;
                (e["status"] == "COMPLETED" || e["status"] == "FAILED").then_some(e)
            },
        )
        .await;
        outcomes.push(e);
    }
    assert_eq!(outcomes[0]["status"], "COMPLETED", "{}", outcomes[0]);
    assert_eq!(
        outcomes[0]["output"],
        json!({"w": 3, "h": 4, "served_by": "jobs"})
    );
    assert_eq!(outcomes[1]["status"], "FAILED", "{}", outcomes[1]);
    assert!(
        outcomes[1]["errorMessage"]
            .as_str()
            .is_some_and(|e| e.contains("ValueError") && e.contains("exploded later")),
        "{}",
        outcomes[1]
    );
    let r = http
        .post(format!("{}/default/shop/latest/run/nope", s1.url))
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // morel scale: every resource keeps at least that many instances, spread over the agents.
    s2.cli_ok(&["scale", "shop", "--min", "2"]);
    wait_for(
        Duration::from_secs(120),
        "two instances of each resource",
        || async {
            let (_, rows) = s1.get("/api/placements").await;
            let ready: Vec<&Value> = rows
                .as_array()?
                .iter()
                .filter(|p| p["app"] == "shop" && p["state"] == "ready")
                .collect();
            let per_resource = |r: &str| ready.iter().filter(|p| p["resource"] == r).count();
            (["api", "jobs", "models"]
                .iter()
                .all(|r| per_resource(r) == 2))
            .then_some(())
        },
    )
    .await;
}

/// A redeploy under load on many machines fails no request: the new release's instances are
/// ready on agents before it is activated, servers route by `latest` (an agent already
/// serving the new release answers), and an instance whose placement is gone keeps serving
/// for a drain period longer than the servers' routing refresh. One sequential client per
/// server, for the redeploy and three seconds after it (bounded in time).
#[tokio::test(flavor = "multi_thread")]
async fn a_redeploy_under_load_fails_no_request_on_many_machines() {
    let db = ScratchDb::create().await;
    let dirs = Arc::new(tempfile::tempdir().unwrap());
    let (s1, s2) = two_servers(&db, &dirs);
    let joins = format!("{},{}", s1.url, s2.url);
    let _agents: Vec<AgentProc> = ["load-a", "load-b"]
        .iter()
        .map(|n| AgentProc::start(&s1, &joins, n, &dirs.path().join(n)))
        .collect();
    let project = dirs.path().join("project");
    copy_dir(&example("hello-python"), &project);
    std::fs::write(
        project.join("morel.toml"),
        format!("[app]\nname = \"{APP}\"\n[resources.default]\nworkers = [2, 2]\n"),
    )
    .unwrap();
    s1.deploy(&project);
    for s in [&s1, &s2] {
        wait_for(
            Duration::from_secs(120),
            "calls through each server",
            || async { answers(s).await.then_some(()) },
        )
        .await;
    }

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = |base: String| {
        let stop = stop.clone();
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = http
                    .post(format!("{base}/default/{APP}/latest/call/add"))
                    .body("[20, 22]")
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 200 => ok += 1,
                    Ok(r) => failed.push(format!(
                        "{}: {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    )),
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed)
        })
    };
    let clients = [load(s1.url.clone()), load(s2.url.clone())];
    tokio::time::sleep(Duration::from_millis(500)).await;
    s2.cli_ok(&["deploy", project.to_str().unwrap(), "--set", "ROUND=2"]);
    wait_for(
        Duration::from_secs(60),
        "the old release's placements to go",
        || async {
            let p = ready_placements(&s1).await;
            (p.len() == 2 && p.iter().all(|(_, r)| *r == 2)).then_some(())
        },
    )
    .await;
    // Past the agents' drain of the old instances.
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    let mut failures = Vec::new();
    for c in clients {
        let (ok, failed) = c.await.unwrap();
        total += ok as usize + failed.len();
        failures.extend(failed);
    }
    eprintln!(
        "{total} requests during the redeploy, {} failed",
        failures.len()
    );
    assert!(total > 50, "the load ran: {total} requests");
    assert!(
        failures.is_empty(),
        "{} of {total} requests failed, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
}
