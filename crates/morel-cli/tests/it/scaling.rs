//! Scaling per resource (issue #4): scale to zero and back through a cold start, scale-up under
//! bounded concurrent load and idle scale-down; boot-time reconcile after a crash mid-deploy;
//! Node resources configured in morel.toml; seed 002's bare `GET /manifest`.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use morel_test_support::{MorelServer, wait_for};
use serde_json::Value;

use crate::bin;

fn write(dir: &Path, files: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

/// Instances of `resource` of `app` as the API shows them: (state, pid) per instance.
async fn instances(s: &MorelServer, app: &str, resource: &str) -> Vec<(String, Option<i64>)> {
    let (status, body) = s.get(&format!("/api/apps/{app}")).await;
    assert_eq!(status, 200, "{body}");
    body["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["resource"] == resource)
        .map(|i| (i["state"].as_str().unwrap().to_owned(), i["pid"].as_i64()))
        .collect()
}

/// Instances that run or are starting (not `stopped`).
async fn running(s: &MorelServer, app: &str, resource: &str) -> usize {
    instances(s, app, resource)
        .await
        .iter()
        .filter(|(state, _)| state == "ready" || state == "launching")
        .count()
}

/// The resource has instance rows and every one is `stopped` (none ready, starting or draining).
async fn scaled_to_zero(s: &MorelServer, app: &str, resource: &str) -> bool {
    let all = instances(s, app, resource).await;
    !all.is_empty() && all.iter().all(|(state, _)| state == "stopped")
}

const LAZY_APP: &str = r#"
import os
import morel

lazy = morel.Endpoint("lazy", workers=(0, 1), idle_timeout_s=1)

@lazy.function
def hello(name):
    return {"hi": name, "pid": int(os.environ.get("MOREL_PID") or os.getpid())}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn scale_to_zero_and_back_with_a_cold_start() {
    let s = MorelServer::start(&bin());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("lazy");
    write(&dir, &[("app.py", LAZY_APP)]);
    s.deploy(&dir);

    // The deploy started one instance to prove the code loads; it is the only one.
    let (status, first) = s.call("lazy", "hello", r#"["a"]"#).await;
    assert_eq!(status, 200, "{first}");
    let first_pid = first["pid"].as_i64().unwrap();

    // After the idle timeout the pool goes to zero; the row stays, as stopped, without a pid.
    wait_for(
        Duration::from_secs(20),
        "the lazy pool to scale to zero",
        || async { scaled_to_zero(&s, "lazy", "lazy").await.then_some(()) },
    )
    .await;
    let all = instances(&s, "lazy", "lazy").await;
    assert!(
        all.iter()
            .all(|(state, pid)| state == "stopped" && pid.is_none()),
        "{all:?}"
    );
    assert!(
        std::fs::metadata(format!("/proc/{first_pid}")).is_err()
            || std::fs::read_to_string(format!("/proc/{first_pid}/stat"))
                .is_ok_and(|st| st.contains(") Z ")),
        "the idle worker {first_pid} still runs"
    );
    let inspect = s.cli_ok(&["inspect", "lazy"]);
    assert!(inspect.contains("stopped"), "{inspect}");

    // The next call cold-starts an instance and waits for it.
    let (status, again) = s.call("lazy", "hello", r#"["b"]"#).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["hi"], "b");
    assert_ne!(again["pid"].as_i64().unwrap(), first_pid);
    // And it idles down again.
    wait_for(
        Duration::from_secs(20),
        "the second scale to zero",
        || async { scaled_to_zero(&s, "lazy", "lazy").await.then_some(()) },
    )
    .await;
}

const SLEEPY_APP: &str = r#"
import time
import morel

sleepy = morel.Endpoint("sleepy", workers=(0, 1), idle_timeout_s=1, timeout_s=1)

time.sleep(2.5)  # a slow import: every cold start takes longer than a call's deadline

@sleepy.function
def ping():
    return "pong"
"#;

/// A cold start that outlasts the call's deadline answers 504, and the instance it started
/// serves the calls after it.
#[tokio::test(flavor = "multi_thread")]
async fn cold_start_past_the_deadline_is_a_504() {
    let s = MorelServer::start(&bin());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sleepy");
    write(&dir, &[("app.py", SLEEPY_APP)]);
    s.deploy(&dir);
    wait_for(
        Duration::from_secs(20),
        "the sleepy pool to scale to zero",
        || async { scaled_to_zero(&s, "sleepy", "sleepy").await.then_some(()) },
    )
    .await;
    let (status, body) = s.call("sleepy", "ping", "").await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["type"], "Timeout", "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("1 starting"),
        "{body}"
    );
    // The cold start the call triggered goes on; once ready, calls succeed.
    wait_for(
        Duration::from_secs(20),
        "the cold-started instance",
        || async {
            let (status, body) = s.call("sleepy", "ping", "").await;
            (status == 200).then_some(body)
        },
    )
    .await;
}

const BUSY_APP: &str = r#"
import os
import time
import morel

busy = morel.Endpoint("busy", workers=(1, 3), concurrency=1, idle_timeout_s=2, timeout_s=60)

def gate_open():
    # The worker cannot see the test's files: the gate is a loopback port that opens.
    import socket
    try:
        socket.create_connection(("127.0.0.1", int(os.environ["GATE_PORT"])), timeout=0.2).close()
        return True
    except OSError:
        return False

@busy.function
def slow(i):
    # Hold the call until the test opens the gate (bounded), so calls pile up.
    deadline = time.monotonic() + 30
    while not gate_open() and time.monotonic() < deadline:
        time.sleep(0.02)
    return {"i": i, "pid": int(os.environ.get("MOREL_PID") or os.getpid())}
"#;

/// Ready instances of a resource.
async fn ready_count(s: &MorelServer, app: &str, resource: &str) -> usize {
    instances(s, app, resource)
        .await
        .iter()
        .filter(|(state, _)| state == "ready")
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn scales_up_under_load_and_idles_back_down() {
    let s = MorelServer::start(&bin());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("busy");
    let mut gate = morel_test_support::Gate::new();
    write(&dir, &[("app.py", BUSY_APP)]);
    let set_gate = format!("GATE_PORT={}", gate.port());
    s.cli_ok(&["deploy", dir.to_str().unwrap(), "--set", &set_gate]);
    assert_eq!(running(&s, "busy", "busy").await, 1);

    // Six calls at once on one instance that runs one call at a time: calls wait, so the
    // pool grows to workers_max = 3, and the new instances take waiting calls.
    let calls: Vec<_> = (0..6)
        .map(|i| {
            let url = format!("{}/default/busy/latest/call/slow", s.url);
            let http = s.http();
            tokio::spawn(async move {
                let r = http.post(url).body(format!("[{i}]")).send().await.unwrap();
                (r.status().as_u16(), r.json::<Value>().await.unwrap())
            })
        })
        .collect();
    wait_for(
        Duration::from_secs(60),
        "3 ready busy instances",
        || async {
            let n = running(&s, "busy", "busy").await;
            assert!(n <= 3, "{n} instances, above workers_max");
            (ready_count(&s, "busy", "busy").await == 3).then_some(())
        },
    )
    .await;
    gate.open();
    let mut pids = BTreeSet::new();
    for (i, c) in calls.into_iter().enumerate() {
        let (status, body) = c.await.unwrap();
        assert_eq!(status, 200, "call {i}: {body}");
        assert_eq!(body["i"], i);
        pids.insert(body["pid"].as_i64().unwrap());
    }
    assert_eq!(
        pids.len(),
        3,
        "the calls did not spread over the 3 instances: {pids:?}"
    );
    assert_eq!(instances(&s, "busy", "busy").await.len(), 3);

    // Idle: back down to workers_min = 1, never below.
    wait_for(
        Duration::from_secs(30),
        "the busy pool to idle down to 1",
        || async {
            let n = running(&s, "busy", "busy").await;
            assert!(n >= 1, "the pool went below workers_min");
            (n == 1).then_some(())
        },
    )
    .await;
    let (status, body) = s.call("busy", "slow", "[9]").await;
    assert_eq!(status, 200, "{body}");
}

const NODE_TOML: &str = r#"
[app]
name = "store"
[resources.api]
functions = ["checkout", "status"]
workers = [1, 2]
concurrency = 16
routes = { "POST /checkout" = "checkout", "GET /status" = "status" }
[resources.jobs]
functions = ["resize"]
workers = [0, 1]
idle_timeout_s = 1
"#;

const NODE_INDEX: &str = r#"
function checkout(items) {
  const total = items.reduce((s, i) => s + i.price * i.qty, 0);
  return { total, served_by: process.env.MOREL_RESOURCE };
}
function status() { return { ok: true }; }
function resize(w, h) { return { w, h, served_by: process.env.MOREL_RESOURCE }; }
module.exports = { checkout, status, resize };
"#;

/// A Node app split into resources by morel.toml (functions, workers, concurrency, idle
/// timeout, routes), and seed 002's bare `GET /manifest` over it.
#[tokio::test(flavor = "multi_thread")]
async fn node_resources_from_morel_toml_and_bare_manifest() {
    let s = MorelServer::start(&bin());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    write(
        &dir,
        &[
            ("package.json", r#"{"name":"store","main":"index.js"}"#),
            ("index.js", NODE_INDEX),
            ("morel.toml", NODE_TOML),
        ],
    );
    let printed = s.cli_ok(&["build", "--print", dir.to_str().unwrap()]);
    assert!(
        printed.contains(r#""POST /checkout": "checkout""#),
        "{printed}"
    );
    s.deploy(&dir);
    let http = s.http();

    let r = http
        .post(format!("{}/store/checkout", s.url))
        .body(r#"{"items": [{"price": 3, "qty": 2}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["total"], 6);
    assert_eq!(body["served_by"], "api");
    let r = http
        .get(format!("{}/store/status", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["ok"], true);
    let r = http
        .get(format!("{}/store/checkout", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);

    // Only one app: the bare route serves it, with the persisted reconcile state.
    let (status, m) = s.get("/manifest").await;
    assert_eq!(status, 200, "{m}");
    assert_eq!(m["project_name"], "store");
    assert_eq!(m["resources"]["api"]["workers_max"], 2);
    assert_eq!(m["resources"]["api"]["concurrency"], 16);
    assert_eq!(m["resources"]["api"]["status"], "deployed");
    assert_eq!(m["resources"]["jobs"]["workers_min"], 0);
    assert_eq!(m["resources"]["jobs"]["runtime"], "node");
    assert_eq!(m["function_registry"]["resize"], "jobs");
    assert_eq!(m["routes"]["api"]["POST /checkout"], "checkout");
    assert!(
        m["resources"]["jobs"]["endpoint_url"]
            .as_str()
            .unwrap()
            .starts_with("http")
    );

    // The jobs resource (workers = [0, 1]) idles to zero and cold-starts on the next call.
    wait_for(
        Duration::from_secs(20),
        "the node jobs pool to scale to zero",
        || async { scaled_to_zero(&s, "store", "jobs").await.then_some(()) },
    )
    .await;
    assert_eq!(running(&s, "store", "api").await, 1);
    let (status, body) = s.call("store", "resize", "[4, 3]").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["served_by"], "jobs");

    // With two apps, `?app=` chooses; without it the error names the choices.
    let lazy = tmp.path().join("lazy");
    write(&lazy, &[("app.py", LAZY_APP)]);
    s.deploy(&lazy);
    let (status, e) = s.get("/manifest").await;
    assert_eq!(status, 400, "{e}");
    let msg = e["error"].as_str().unwrap();
    assert!(
        msg.contains("?app=") && msg.contains("lazy") && msg.contains("store"),
        "{e}"
    );
    let (status, m) = s.get("/manifest?app=lazy").await;
    assert_eq!(status, 200, "{m}");
    assert_eq!(m["project_name"], "lazy");
    assert_eq!(
        s.get("/api/apps/store/manifest").await.1,
        s.get("/manifest?app=store").await.1
    );
    let (status, e) = s.get("/manifest?app=nope").await;
    assert_eq!(status, 404, "{e}");
    assert!(e["error"].as_str().unwrap().contains("nope"), "{e}");
    let (status, e) = s.get("/manifest?app=Not%20A%20Name").await;
    assert_eq!(status, 400, "{e}");
    assert!(e["error"].is_string(), "{e}");
    let (status, e) = s.get("/manifest?application=store").await;
    assert_eq!(status, 400, "{e}");
    assert!(e["error"].as_str().unwrap().contains("?app=NAME"), "{e}");
    let r = http
        .get(format!("{}/manifest", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

const CRASHY_V1: &str = r#"
import morel

api = morel.Endpoint("api", workers=(1, 1))
jobs = morel.Endpoint("jobs", workers=(1, 2))

@api.function
def version():
    return 1

@jobs.function
def work():
    return "v1"
"#;

/// v2 changes `api` (its import is slow: it records its pid, then sleeps), removes `jobs`
/// and adds `extra`.
const CRASHY_V2_SLOW: &str = r#"
import os
import time
import morel

if os.environ.get("MOREL_RESOURCE") == "api":
    # A contained worker cannot write outside its scratch directory: it says its pid in its log.
    print("api loading pid=%d" % int(os.environ.get("MOREL_PID") or os.getpid()), flush=True)
    if os.environ.get("SLOW") == "1":
        time.sleep(120)

api = morel.Endpoint("api", workers=(1, 1), concurrency=2)
extra = morel.Endpoint("extra", workers=(1, 1))

@api.function
def version():
    return 2

@extra.function
def more():
    return "extra"
"#;

fn alive(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|st| {
        !st.rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z'))
    })
}

/// The pids the crashy app's api workers logged while loading.
async fn loading_pids(s: &MorelServer) -> Vec<i64> {
    let (_, logs) = s.get("/api/apps/crashy/logs").await;
    logs.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|l| l["line"].as_str()?.strip_prefix("api loading pid="))
                .filter_map(|p| p.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The server is SIGKILLed while v2 is starting (its api worker is still importing). After a
/// restart the app is exactly v1 again: v2 is failed, resources and their state are v1's,
/// only v1 instances exist, and the interrupted worker is gone.
#[tokio::test(flavor = "multi_thread")]
async fn a_crash_mid_deploy_comes_back_consistent() {
    let mut s = MorelServer::start(&bin());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("crashy");
    write(&dir, &[("app.py", CRASHY_V1)]);
    s.deploy(&dir);
    let (_, manifest_v1) = s.get("/api/apps/crashy/manifest").await;
    let (_, app_v1) = s.get("/api/apps/crashy").await;
    let v1_pids: Vec<i64> = app_v1["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["pid"].as_i64())
        .collect();
    assert_eq!(v1_pids.len(), 2, "{app_v1}");

    write(&dir, &[("app.py", CRASHY_V2_SLOW)]);
    let d = dir.to_str().unwrap();
    s.cli_ok(&["deploy", d, "--detach", "--set", "SLOW=1"]);
    // The exact window: v2 is `starting` and its api worker is inside its import.
    let loading_pid = wait_for(Duration::from_secs(60), "v2 to be starting", || async {
        let (_, r) = s.get("/api/apps/crashy/releases/v2").await;
        let pids = loading_pids(&s).await;
        (r["status"] == "starting" && pids.len() == 1).then(|| pids[0])
    })
    .await;
    let launching = instances(&s, "crashy", "api").await;
    assert!(
        launching.iter().any(|(state, _)| state == "launching"),
        "{launching:?}"
    );
    s.kill9();

    // Nothing half-running: the loading worker and v1's workers exit once their host is gone.
    wait_for(
        Duration::from_secs(15),
        "the orphaned workers to exit",
        || async { (!alive(loading_pid) && v1_pids.iter().all(|p| !alive(*p))).then_some(()) },
    )
    .await;

    // A crash can also fall later in a rollout: after the new release wrote some resource
    // state, before it became active. Write what that leaves behind, as v2's rollout would.
    simulate_late_crash_state(&s.state_dir.join("morel.db")).await;

    let s = MorelServer::start_with(&bin(), s.dirs.clone());
    let (status, v) = wait_for(Duration::from_secs(60), "v1 to serve again", || async {
        let (status, v) = s.call("crashy", "version", "").await;
        (status == 200).then_some((status, v))
    })
    .await;
    assert_eq!((status, v), (200, Value::from(1)));
    let (_, r2) = s.get("/api/apps/crashy/releases/v2").await;
    assert_eq!(r2["status"], "failed", "{r2}");
    assert!(
        r2["error"]
            .as_str()
            .unwrap()
            .contains("interrupted by a server restart while starting"),
        "{r2}"
    );
    let app = wait_for(Duration::from_secs(30), "v1 to be ready again", || async {
        let (_, app) = s.get("/api/apps/crashy").await;
        let ready = app["releases"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["version"] == "v1" && r["status"] == "ready");
        let instances = app["instances"].as_array().unwrap();
        (ready && instances.iter().filter(|i| i["state"] == "ready").count() == 2).then_some(app)
    })
    .await;
    assert_eq!(app["active_release"], "v1", "{app}");
    // Resources and their persisted state are v1's.
    let resources: Vec<(String, String, String)> = app["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_owned(),
                r["release"].as_str().unwrap().to_owned(),
                r["config_hash"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String, String)> = ["api", "jobs"]
        .iter()
        .map(|n| {
            (
                n.to_string(),
                "v1".to_owned(),
                manifest_v1["resources"][n]["config_hash"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(resources, expected, "{app}");
    // The same manifest and reconcile state (the endpoint URL names the new server's port).
    let without_urls = |mut m: Value| {
        for r in m["resources"].as_object_mut().unwrap().values_mut() {
            r.as_object_mut().unwrap().remove("endpoint_url");
        }
        m
    };
    let (_, manifest_now) = s.get("/api/apps/crashy/manifest").await;
    assert_eq!(
        without_urls(manifest_now),
        without_urls(manifest_v1.clone())
    );
    let functions: BTreeSet<&str> = app["functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(functions, BTreeSet::from(["version", "work"]));
    // Only v1 instances, and v2's worker was not started again.
    let all = app["instances"].as_array().unwrap();
    assert!(all.iter().all(|i| i["release"] == "v1"), "{app}");
    assert_eq!(loading_pids(&s).await, vec![loading_pid]);
    let (status, w) = s.call("crashy", "work", "").await;
    assert_eq!((status, w), (200, Value::from("v1")));

    // The plan is computed against v1, and v2 deploys once its import is quick.
    let plan = s.cli_ok(&["deploy", d, "--dry-run", "--set", "SLOW=0"]);
    assert_eq!(
        plan.lines().collect::<Vec<_>>(),
        vec![
            "+ extra (new)",
            "~ api (changed: restart)",
            "- jobs (removed: stop and delete)"
        ],
        "{plan}"
    );
    s.cli_ok(&["deploy", d, "--set", "SLOW=0"]);
    assert_eq!(s.call("crashy", "version", "").await, (200, Value::from(2)));
    assert_eq!(
        s.call("crashy", "more", "").await,
        (200, Value::from("extra"))
    );
    assert_eq!(s.call("crashy", "work", "").await.0, 404);
}

/// The store as a rollout of v2 leaves it when killed between its resource writes and the
/// switch of the active release: `api` and `extra` rewritten by v2, `jobs` deleted.
async fn simulate_late_crash_state(db: &Path) {
    use morel_store::{AppKey, FunctionRow, ResourceRow, SqlStore, Store};
    let store = SqlStore::open_sqlite(db).await.unwrap();
    let app = AppKey::in_default("crashy".parse().unwrap());
    for (name, status) in [
        ("api", morel_core::ResourceStatus::Updated),
        ("extra", morel_core::ResourceStatus::Deployed),
    ] {
        store
            .upsert_resource(&ResourceRow {
                app: app.clone(),
                name: name.into(),
                runtime: morel_core::Runtime::Python,
                config_hash: "0123456789abcdef".into(),
                digest: morel_core::Digest::from_sha256([7; 32]),
                release: 2,
                status,
                error: None,
                endpoint_url: "http://127.0.0.1:1/default/crashy/latest/call".into(),
                updated_at: 0,
            })
            .await
            .unwrap();
    }
    let f = |name: &str, resource: &str| FunctionRow {
        name: name.into(),
        resource: resource.into(),
        params: Vec::new(),
        is_async: false,
        http_method: None,
        http_path: None,
    };
    store
        .replace_functions(&app, "api", &[f("version", "api")])
        .await
        .unwrap();
    store
        .replace_functions(&app, "extra", &[f("more", "extra")])
        .await
        .unwrap();
    store.delete_resource(&app, "jobs").await.unwrap();
    let v2 = store.get_release(&app, 2).await.unwrap().unwrap();
    assert_eq!(v2.status, morel_core::ReleaseStatus::Starting);
}
