//! Memory and CPU limits of every runtime, enforced through a cgroup per instance (v2 where
//! delegated, else v1 as root): a function or an http service with `cpu = 0.25` that burns
//! CPU gets about a quarter of a core, and a function allocating past `memory_mb` is stopped
//! by the cgroup and reported with the limit.
//!
//! These tests need a cgroup backend. On a machine where Morel falls back to rlimits (CPU not
//! enforced) they fail, naming why, rather than pass without checking anything: CI runs as
//! root on Linux with cgroups, where they hold.

use std::path::{Path, PathBuf};
use std::time::Duration;

use morel_test_support::{MorelServer, wait_for};
use serde_json::{Value, json};

use crate::bin;

/// How long each burn lasts (the function and the server cap it at 5 s).
const BURN_S: f64 = 2.0;
/// The quota asked for, and the share of one core a burn may show at most (scheduling
/// granularity and the runtime's own work make it a little above the quota).
const CPU: f64 = 0.25;
const MAX_SHARE: f64 = 0.4;

/// Burns CPU for `seconds` (at most 5) and says how much CPU time it got in that wall time.
const BURN_PY: &str = r#"
import time

def burn(seconds):
    seconds = min(float(seconds), 5.0)
    wall0, cpu0 = time.monotonic(), time.process_time()
    n = 0
    while time.monotonic() - wall0 < seconds:
        n += sum(range(1000))
    return {"cpu": time.process_time() - cpu0, "wall": time.monotonic() - wall0}

def hog(mb):
    # 16 MiB at a time, each page touched, up to `mb` (bounded: at most 1 GiB).
    chunks = []
    for _ in range(min(int(mb), 1024) // 16):
        chunks.append(bytearray(16 << 20))
    return {"survived_mb": 16 * len(chunks)}

def ping():
    return "pong"
"#;

/// The same burn as an http service: `GET /burn?s=N`, plus its health path.
const SERVER_PY: &str = r#"
import json, os, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/burn":
            seconds = min(float(parse_qs(url.query).get("s", ["1"])[0]), 5.0)
            wall0, cpu0 = time.monotonic(), time.process_time()
            n = 0
            while time.monotonic() - wall0 < seconds:
                n += sum(range(1000))
            body = {"cpu": time.process_time() - cpu0, "wall": time.monotonic() - wall0}
        else:
            body = "ok"
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"#;

fn app_dir(root: &Path, name: &str, toml: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("morel.toml"), toml).unwrap();
    for (file, text) in files {
        std::fs::write(dir.join(file), text).unwrap();
    }
    dir
}

/// The server's own account of how memory and cpu are limited; panics, saying why, when no
/// cgroup backend is in force (cpu limits would not be enforced, and these tests would prove
/// nothing).
async fn cgroup_backend(s: &MorelServer) -> String {
    let (status, system) = s.get("/api/system").await;
    assert_eq!(status, 200, "{system}");
    let layer = system["containment"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["layer"] == "memory and cpu limits")
        .cloned()
        .unwrap_or_else(|| panic!("GET /api/system names no memory and cpu limits: {system}"));
    let detail = layer["detail"].as_str().unwrap_or_default().to_owned();
    assert!(
        layer["enabled"] == true && detail.starts_with("cgroup v"),
        "memory and cpu limits need a cgroup here (cgroup v2 with memory and cpu delegated, or \
         cgroup v1 cpu and memory hierarchies writable by root); this machine has none, so cpu \
         is not enforced: {detail}"
    );
    detail
}

/// The share of one core a burn got: its CPU time over its wall time.
fn share(burn: &Value) -> f64 {
    let (cpu, wall) = (
        burn["cpu"].as_f64().unwrap(),
        burn["wall"].as_f64().unwrap(),
    );
    assert!(wall >= BURN_S * 0.9, "the burn was cut short: {burn}");
    cpu / wall
}

#[tokio::test(flavor = "multi_thread")]
async fn a_function_with_a_quarter_cpu_gets_a_quarter_of_a_core() {
    let s = MorelServer::start(&bin());
    let backend = cgroup_backend(&s).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = app_dir(
        tmp.path(),
        "cpu-fn",
        &format!("[app]\nname = \"cpu-fn\"\n[resources.default]\ncpu = {CPU}\n"),
        &[("burn.py", BURN_PY)],
    );
    s.deploy(&dir);
    let (status, burn) = s.call("cpu-fn", "burn", &json!([BURN_S]).to_string()).await;
    assert_eq!(status, 200, "{burn}");
    let got = share(&burn);
    eprintln!("function with cpu = {CPU}: {got:.3} of a core ({burn}; {backend})");
    assert!(
        got <= MAX_SHARE,
        "a function with cpu = {CPU} used {got:.3} of a core ({burn}); limits: {backend}"
    );
    assert!(got > 0.05, "the burn hardly ran: {burn}");
    // The worker (its init, as Morel shows it) is in an instance cgroup of the server's.
    let (_, detail) = s.get("/api/apps/cpu-fn").await;
    let pid = detail["instances"][0]["pid"].as_i64().unwrap();
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(
        cgroups.contains("/morel."),
        "worker {pid} is in no instance cgroup: {cgroups}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http_service_with_a_quarter_cpu_gets_a_quarter_of_a_core() {
    let s = MorelServer::start(&bin());
    let backend = cgroup_backend(&s).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = app_dir(
        tmp.path(),
        "cpu-web",
        &format!(
            "[app]\nname = \"cpu-web\"\n[resources.web]\nruntime = \"http\"\n\
             command = [\"python3\", \"server.py\"]\nhealth = \"/health\"\nworkers = [1, 1]\n\
             timeout_s = 10\ncpu = {CPU}\n"
        ),
        &[("server.py", SERVER_PY)],
    );
    s.deploy(&dir);
    let (status, v) = s.get("/api/apps/cpu-web/instances").await;
    assert_eq!(status, 200, "{v}");
    let note = v[0]["limits"].as_str().unwrap_or_default().to_owned();
    assert!(
        note.starts_with("cgroup") && note.contains(&format!("cpu {CPU} cpu")),
        "{note}"
    );
    let r = s
        .http()
        .get(format!("{}/cpu-web/burn?s={BURN_S}", s.url))
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let burn: Value = r.json().await.unwrap();
    let got = share(&burn);
    eprintln!("http service with cpu = {CPU}: {got:.3} of a core ({burn}; {note})");
    assert!(
        got <= MAX_SHARE,
        "an http service with cpu = {CPU} used {got:.3} of a core ({burn}); limits: {backend}"
    );
    assert!(got > 0.05, "the burn hardly ran: {burn}");
}

/// Past `memory_mb`, the cgroup's OOM killer stops the worker (an `RLIMIT_DATA` would only
/// have raised `MemoryError` and left it running): the call fails with 502, the instance and
/// the log say which limit, and the worker comes back.
#[tokio::test(flavor = "multi_thread")]
async fn a_function_past_its_memory_limit_is_stopped_by_the_cgroup_and_reported() {
    let s = MorelServer::start(&bin());
    cgroup_backend(&s).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = app_dir(
        tmp.path(),
        "mem-fn",
        "[app]\nname = \"mem-fn\"\n[resources.default]\nmemory_mb = 96\n",
        &[("burn.py", BURN_PY)],
    );
    s.deploy(&dir);
    assert_eq!(s.call("mem-fn", "ping", "").await, (200, json!("pong")));
    let (status, body) = s.call("mem-fn", "hog", "[512]").await;
    assert_eq!(status, 502, "the worker was not stopped: {body}");
    let limit = "stopped by its memory limit of 96 MiB";
    wait_for(
        Duration::from_secs(20),
        "the limit in the status",
        || async {
            let (_, detail) = s.get("/api/apps/mem-fn").await;
            detail["instances"]
                .to_string()
                .contains(limit)
                .then_some(())
        },
    )
    .await;
    wait_for(Duration::from_secs(10), "the limit in the log", || async {
        let (_, logs) = s.get("/api/apps/mem-fn/logs?since=1h").await;
        logs.to_string().contains(limit).then_some(())
    })
    .await;
    wait_for(Duration::from_secs(30), "the worker back", || async {
        (s.call("mem-fn", "ping", "").await == (200, json!("pong"))).then_some(())
    })
    .await;
}
