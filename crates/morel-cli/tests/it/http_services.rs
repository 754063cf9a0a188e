//! Seed 004: programs that serve HTTP, packed as signed bundles, placed within a budget, run
//! by the agent, routed by the edge, updated blue/green and kept alive.
//!
//! Every test runs the real `morel up`, real Python servers from `examples/http-service`, and
//! real HTTP over loopback.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use morel_test_support::{MorelServer, copy_dir, example, wait_for};
use serde_json::{Value, json};

use crate::bin;

/// A copy of examples/http-service with its own morel.toml.
fn service_dir(root: &Path, dir_name: &str, toml: &str) -> PathBuf {
    let dir = root.join(dir_name);
    copy_dir(&example("http-service"), &dir);
    std::fs::write(dir.join("morel.toml"), toml).unwrap();
    dir
}

fn toml(app: &str, workers: u32, extra: &str, env: &str) -> String {
    format!(
        "[app]\nname = \"{app}\"\n\n[resources.web]\nruntime = \"http\"\ncommand = [\"./server\"]\n\
         health = \"/health\"\nworkers = [{workers}, {workers}]\ntimeout_s = 10\n{extra}\n\
         [resources.web.env]\n{env}\n"
    )
}

async fn instances(s: &MorelServer, app: &str) -> Vec<Value> {
    let (status, v) = s.get(&format!("/api/apps/{app}/instances")).await;
    assert_eq!(status, 200, "{v}");
    v.as_array().unwrap().clone()
}

fn ready(rows: &[Value]) -> Vec<&Value> {
    rows.iter().filter(|r| r["state"] == "ready").collect()
}

/// GET `{url}/{app}{path}`: status, the serving pid (header), and the JSON body.
async fn get(http: &reqwest::Client, url: &str) -> (u16, Option<u32>, Value) {
    let r = http.get(url).send().await.unwrap();
    let status = r.status().as_u16();
    let pid = r
        .headers()
        .get("x-instance-pid")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let text = r.text().await.unwrap();
    (
        status,
        pid,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Whether a process runs (a zombie does not count).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread")]
async fn http_service_push_verify_and_tampered_bundles_refused() {
    let s = MorelServer::start(&bin());
    let tmp = tempfile::tempdir().unwrap();
    let dir = service_dir(tmp.path(), "pushed", &toml("pushed", 1, "", ""));

    // Flow A: push prints the digest alone on stdout, and the server has the bundle.
    let out = s.cli_ok(&["push", dir.to_str().unwrap()]);
    let digest = out.trim().to_owned();
    assert!(
        digest.len() == 64 && digest.chars().all(|c| c.is_ascii_hexdigit()),
        "{out}"
    );
    let (status, _) = s.get(&format!("/api/bundles/{digest}")).await;
    assert_eq!(status, 200);

    // Flow B: publishing that digest runs it; the edge routes to it.
    let out = s.cli_ok(&["publish", "pushed", &digest]);
    assert!(out.contains("pushed v1 is ready"), "{out}");
    let http = s.http();
    let hello = format!("{}/pushed/hello", s.url);
    let (status, _, _) = get(&http, &hello).await;
    assert_eq!(status, 200);
    let rows = instances(&s, "pushed").await;
    assert_eq!(rows[0]["digest"], digest.as_str(), "{rows:?}");

    // An unsigned upload is refused, saying why.
    let bytes = std::fs::read(s.state_dir.join("blobs").join(format!("{digest}.bundle"))).unwrap();
    let mut other = bytes.clone();
    other.extend_from_slice(b"tampered");
    let fake_digest = "0".repeat(64);
    let r = http
        .put(format!("{}/api/bundles/{fake_digest}", s.url))
        .bearer_auth(&s.token)
        .body(other.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("must be signed"),
        "{body}"
    );
    // A signed bundle whose bytes were changed after signing is refused at upload.
    let sig =
        std::fs::read_to_string(s.state_dir.join("blobs").join(format!("{digest}.sig"))).unwrap();
    let r = http
        .put(format!("{}/api/bundles/{digest}", s.url))
        .bearer_auth(&s.token)
        .header("x-morel-signature", sig.trim())
        .body(other)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("digest"), "{body}");

    // A bundle tampered with after upload (on the agent's disk) is refused by the agent's
    // verification before anything is extracted, and the release says why.
    std::fs::write(dir.join("extra.txt"), "v2").unwrap();
    let out = s.cli_ok(&["push", dir.to_str().unwrap()]);
    let digest2 = out.trim().to_owned();
    assert_ne!(digest2, digest);
    let path = s.state_dir.join("blobs").join(format!("{digest2}.bundle"));
    let mut b = std::fs::read(&path).unwrap();
    b.extend_from_slice(b"\0tampered");
    std::fs::write(&path, b).unwrap();
    let out = s.cli(&["publish", "pushed", &digest2]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("release v2 of pushed failed"), "{stderr}");
    let (_, release) = s.get("/api/apps/pushed/releases/v2").await;
    assert_eq!(release["status"], "failed", "{release}");
    let err = release["error"].as_str().unwrap();
    assert!(err.contains("refused") && err.contains("digest"), "{err}");
    // The first release keeps serving.
    let (status, _, body) = get(&http, &hello).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn http_service_round_robin_across_three_instances() {
    let s = MorelServer::start_with_args(
        &bin(),
        Arc::new(tempfile::tempdir().unwrap()),
        &["--edge-domain", "apps.test"],
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = service_dir(
        tmp.path(),
        "rr",
        &toml("rr", 3, "", "").replace("timeout_s = 10", "timeout_s = 2"),
    );
    s.deploy(&dir);
    let http = s.http();

    let rows = instances(&s, "rr").await;
    assert_eq!(ready(&rows).len(), 3, "{rows:?}");
    let ps_pids: std::collections::BTreeSet<u32> = rows
        .iter()
        .map(|r| r["pid"].as_u64().unwrap() as u32)
        .collect();

    let mut by_pid: BTreeMap<u32, usize> = BTreeMap::new();
    let mut by_instance: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..30 {
        let r = http
            .get(format!("{}/rr/hello", s.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-morel-edge"], "1");
        let pid: u32 = r.headers()["x-instance-pid"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        *by_pid.entry(pid).or_default() += 1;
        let inst = r.headers()["x-morel-instance"].to_str().unwrap().to_owned();
        *by_instance.entry(inst).or_default() += 1;
    }
    // Round-robin: three instances, ten requests each, and they are the ones `ps` lists.
    assert_eq!(by_pid.len(), 3, "{by_pid:?}");
    assert!(by_pid.values().all(|&n| n == 10), "{by_pid:?}");
    assert_eq!(
        by_pid
            .keys()
            .copied()
            .collect::<std::collections::BTreeSet<_>>(),
        ps_pids
    );
    assert_eq!(by_instance.len(), 3);

    // Headers: client IP forwarded, hop-by-hop headers (also those named by Connection) dropped.
    let r = http
        .get(format!("{}/rr/headers?x=1", s.url))
        .header("connection", "x-hop-secret")
        .header("x-hop-secret", "do-not-forward")
        .header("x-end-to-end", "kept")
        .send()
        .await
        .unwrap();
    let h: Value = r.json().await.unwrap();
    assert_eq!(h["x-forwarded-for"], "127.0.0.1", "{h}");
    assert_eq!(h["x-forwarded-prefix"], "/rr", "{h}");
    assert_eq!(h["x-end-to-end"], "kept", "{h}");
    assert!(h.get("x-hop-secret").is_none(), "{h}");

    // Bodies stream both ways: 2 MiB in, the same 2 MiB out.
    let big: Vec<u8> = (0..(2 << 20)).map(|i| (i % 251) as u8).collect();
    let r = http
        .post(format!("{}/rr/echo", s.url))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), big.as_slice());

    // The service's own 404 passes through; an unknown app is still Morel's JSON 404.
    let (status, _, _) = get(&http, &format!("{}/rr/nope", s.url)).await;
    assert_eq!(status, 404);
    // A path shaped like the call path, under an http app, is the service's too.
    let (status, pid, _) = get(&http, &format!("{}/rr/v1/x/call/y", s.url)).await;
    assert_eq!(status, 404);
    assert!(pid.is_some(), "answered by Morel, not by the service");
    let (status, _, body) = get(&http, &format!("{}/no-such-app/x", s.url)).await;
    assert_eq!(status, 404);
    assert!(body["error"].as_str().is_some(), "{body}");

    // Host routing: `rr.apps.test` reaches the service with the whole path, ahead of Morel's
    // own routes (`/api/…` here is the service's path, which it does not have: its 404).
    let r = http
        .get(format!("{}/hello", s.url))
        .header("host", "rr.apps.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-morel-edge"], "1");
    let r = http
        .get(format!("{}/api/apps", s.url))
        .header("host", "rr.apps.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers().get("x-instance-pid").is_some());

    // The per-request timeout (timeout_s = 2) answers 504.
    let t = Instant::now();
    let (status, _, body) = get(&http, &format!("{}/rr/slow?ms=4000", s.url)).await;
    assert_eq!(status, 504, "{body}");
    assert!(t.elapsed() < Duration::from_secs(4));

    // `morel ps` shows node, port, digest, state, restarts and uptime.
    let out = s.cli_ok(&["ps", "rr"]);
    assert!(out.contains("NODE") && out.contains("UPTIME"), "{out}");
    assert_eq!(out.matches(" ready ").count(), 3, "{out}");
    assert!(out.contains("limits: "), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn http_service_budget_is_enforced() {
    let s = MorelServer::start(&bin());
    let tmp = tempfile::tempdir().unwrap();
    let dir = service_dir(
        tmp.path(),
        "budgeted",
        &toml("budgeted", 1, "memory_mb = 64", ""),
    );

    let out = s.cli_ok(&[
        "budget",
        "set",
        "budgeted",
        "--max-instances",
        "2",
        "--memory",
        "256M",
    ]);
    assert!(out.contains("max_instances 2"), "{out}");
    // A scale beyond the budget is refused, saying why.
    let out = s.cli(&["scale", "budgeted", "--min", "3"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("exceeds the budget's max_instances 2"),
        "{err}"
    );

    s.deploy(&dir);
    s.cli_ok(&["scale", "budgeted", "--min", "2", "--max", "2"]);
    wait_for(Duration::from_secs(30), "two ready instances", || {
        let s = &s;
        async move { (ready(&instances(s, "budgeted").await).len() == 2).then_some(()) }
    })
    .await;

    // Lowering the budget below what runs is refused.
    let out = s.cli(&[
        "budget",
        "set",
        "budgeted",
        "--max-instances",
        "1",
        "--memory",
        "256M",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("at least 2 instances") && err.contains("max_instances 1"),
        "{err}"
    );
    // So is a memory budget too small for two 64 MiB instances.
    let out = s.cli(&[
        "budget",
        "set",
        "budgeted",
        "--max-instances",
        "2",
        "--memory",
        "100",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("128 MiB") && err.contains("100 MiB"), "{err}");

    // A blue/green update needs room for both colours: 2 new + 2 running > 2, so the release
    // is refused before anything starts, and the running version keeps serving.
    std::fs::write(
        dir.join("morel.toml"),
        toml("budgeted", 1, "memory_mb = 64", "VERSION = \"2\""),
    )
    .unwrap();
    let out = s.cli(&["deploy", dir.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("does not fit the budget") && err.contains("at most 2"),
        "{err}"
    );
    let rows = instances(&s, "budgeted").await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|r| r["release"] == "v1"), "{rows:?}");
    let (status, _, body) = get(&s.http(), &format!("{}/budgeted/hello", s.url)).await;
    assert_eq!((status, body["version"].as_str()), (200, Some("1")));

    // With room for both it goes through.
    s.cli_ok(&[
        "budget",
        "set",
        "budgeted",
        "--max-instances",
        "4",
        "--memory",
        "256",
    ]);
    s.deploy(&dir);
    let (status, _, body) = get(&s.http(), &format!("{}/budgeted/hello", s.url)).await;
    assert_eq!((status, body["version"].as_str()), (200, Some("2")));
    assert_eq!(ready(&instances(&s, "budgeted").await).len(), 2);

    // Scaling down drains and stops the extra instance; the service keeps answering.
    s.cli_ok(&["scale", "budgeted", "--min", "1"]);
    wait_for(Duration::from_secs(30), "one instance left", || {
        let s = &s;
        async move { (instances(s, "budgeted").await.len() == 1).then_some(()) }
    })
    .await;
    let (status, _, _) = get(&s.http(), &format!("{}/budgeted/hello", s.url)).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn http_service_blue_green_under_load_has_no_failed_requests() {
    let s = MorelServer::start(&bin());
    let tmp = tempfile::tempdir().unwrap();
    let dir = service_dir(
        tmp.path(),
        "bg",
        &toml("bg", 2, "warmup_s = 1", "VERSION = \"1\""),
    );
    s.deploy(&dir);
    let blue_pids: Vec<u32> = instances(&s, "bg")
        .await
        .iter()
        .map(|r| r["pid"].as_u64().unwrap() as u32)
        .collect();
    assert_eq!(blue_pids.len(), 2);

    // Continuous load: 4 clients, each request ~30 ms, bounded by count and time.
    let stop = Arc::new(AtomicBool::new(false));
    let url = format!("{}/bg/slow?ms=30", s.url);
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..4 {
        let stop = stop.clone();
        let url = url.clone();
        let http = s.http();
        clients.push(tokio::spawn(async move {
            let mut results = Vec::new();
            while !stop.load(Ordering::Relaxed)
                && results.len() < 5_000
                && started.elapsed() < Duration::from_secs(120)
            {
                let sent = Instant::now();
                let (status, pid, body) = get(&http, &url).await;
                results.push((sent, status, pid, body));
            }
            results
        }));
    }

    // Two long requests are in flight on blue when the switch comes: the drain lets them finish.
    let long: Vec<_> = (0..2)
        .map(|_| {
            let http = s.http();
            let url = format!("{}/bg/slow?ms=4000", s.url);
            tokio::spawn(async move { get(&http, &url).await })
        })
        .collect();

    // The update: green starts, gets healthy, warms up, takes the traffic; blue drains, stops.
    std::fs::write(
        dir.join("morel.toml"),
        toml("bg", 2, "warmup_s = 1", "VERSION = \"2\""),
    )
    .unwrap();
    let deploy = {
        let dir = dir.clone();
        let mut cmd = s.command(&["deploy", dir.to_str().unwrap()]);
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
    };
    let out = deploy.await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = wait_for(Duration::from_secs(30), "only green instances", || {
        let s = &s;
        async move {
            let rows = instances(s, "bg").await;
            (rows.len() == 2 && rows.iter().all(|r| r["release"] == "v2")).then_some(rows)
        }
    })
    .await;
    assert!(
        blue_pids.iter().all(|p| !alive(*p)),
        "blue processes still run"
    );
    let blue_gone = Instant::now();
    let green_pids: Vec<u32> = rows
        .iter()
        .map(|r| r["pid"].as_u64().unwrap() as u32)
        .collect();
    // Keep the load on while green serves a good number of requests after blue is gone.
    let deadline = Instant::now() + Duration::from_secs(20);
    let probe = s.http();
    let mut after = 0;
    while after < 20 && Instant::now() < deadline {
        let (status, pid, _) = get(&probe, &url).await;
        assert_eq!(status, 200);
        assert!(green_pids.contains(&pid.unwrap()));
        after += 1;
    }
    stop.store(true, Ordering::Relaxed);

    for l in long {
        let (status, pid, body) = l.await.unwrap();
        assert_eq!(
            status, 200,
            "a request in flight during the drain failed: {body}"
        );
        assert!(blue_pids.contains(&pid.unwrap()), "{body}");
    }
    let mut all = Vec::new();
    for c in clients {
        all.extend(c.await.unwrap());
    }
    let failed: Vec<_> = all.iter().filter(|r| r.1 != 200).collect();
    assert!(
        failed.is_empty(),
        "{} failed requests: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    let v1 = all.iter().filter(|r| r.3["version"] == "1").count();
    let v2 = all.iter().filter(|r| r.3["version"] == "2").count();
    assert!(v1 > 0 && v2 > 0, "v1 {v1}, v2 {v2} of {}", all.len());
    // No request sent after blue stopped was answered by a blue process.
    for (sent, _, pid, body) in &all {
        if *sent > blue_gone {
            assert!(
                !blue_pids.contains(&pid.unwrap()) && body["version"] == "2",
                "served by a stopped instance: {body}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn http_service_unhealthy_green_is_rolled_back() {
    let s = MorelServer::start(&bin());
    let tmp = tempfile::tempdir().unwrap();
    let dir = service_dir(tmp.path(), "rb", &toml("rb", 1, "start_timeout_s = 3", ""));
    s.deploy(&dir);
    let before = instances(&s, "rb").await;

    std::fs::write(
        dir.join("morel.toml"),
        toml(
            "rb",
            1,
            "start_timeout_s = 3",
            "UNHEALTHY = \"1\"\nVERSION = \"2\"",
        ),
    )
    .unwrap();
    let out = s.cli(&["deploy", dir.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not healthy within") && err.contains("/health answered HTTP 500"),
        "{err}"
    );
    // Blue keeps serving: same instance, version 1; green is gone.
    let (status, _, body) = get(&s.http(), &format!("{}/rb/hello", s.url)).await;
    assert_eq!((status, body["version"].as_str()), (200, Some("1")));
    let after = instances(&s, "rb").await;
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0]["id"], before[0]["id"]);
    assert_eq!(after[0]["state"], "ready");
    let (_, v2) = s.get("/api/apps/rb/releases/v2").await;
    assert_eq!(v2["status"], "failed", "{v2}");
}

#[tokio::test(flavor = "multi_thread")]
async fn http_service_crash_respawns_and_crash_loop_fails_with_stderr() {
    let s = MorelServer::start(&bin());
    let tmp = tempfile::tempdir().unwrap();
    // The instance cannot see the test's files: the flag is a loopback port that opens.
    let mut flag = morel_test_support::Gate::new();
    let dir = service_dir(tmp.path(), "crashy", &toml("crashy", 1, "", ""));
    s.cli_ok(&[
        "deploy",
        dir.to_str().unwrap(),
        "--set",
        &format!("CRASH_FLAG_PORT={}", flag.port()),
    ]);
    let http = s.http();
    let hello = format!("{}/crashy/hello", s.url);
    let (_, first_pid, _) = get(&http, &hello).await;
    let first_pid = first_pid.unwrap();

    // A crash: the process leaves routing at once and is respawned.
    let _ = http.post(format!("{}/crashy/crash", s.url)).send().await;
    let row = wait_for(Duration::from_secs(30), "the respawned instance", || {
        let s = &s;
        async move {
            let rows = instances(s, "crashy").await;
            rows.into_iter()
                .find(|r| r["state"] == "ready" && r["pid"].as_u64() != Some(first_pid as u64))
        }
    })
    .await;
    assert_eq!(row["restarts"], 1, "{row}");
    assert!(
        row["last_error"]
            .as_str()
            .unwrap()
            .contains("exited with status 3"),
        "{row}"
    );
    let (status, pid, _) = get(&http, &hello).await;
    assert_eq!(status, 200);
    assert_ne!(pid, Some(first_pid));
    assert!(!alive(first_pid));

    // From now on every start fails: crash loop → failed, with the stderr tail in the status.
    flag.open();
    let _ = http.post(format!("{}/crashy/crash", s.url)).send().await;
    let row = wait_for(
        Duration::from_secs(60),
        "the crash loop to be detected",
        || {
            let s = &s;
            async move {
                instances(s, "crashy")
                    .await
                    .into_iter()
                    .find(|r| r["state"] == "failed")
            }
        },
    )
    .await;
    let err = row["last_error"].as_str().unwrap();
    assert!(
        err.contains("crash loop") && err.contains("boom: crash flag"),
        "{err}"
    );
    let out = s.cli_ok(&["ps", "crashy"]);
    assert!(
        out.contains("failed") && out.contains("boom: crash flag"),
        "{out}"
    );
    // Nothing is ready: the edge answers 503 after its bounded wait.
    let t = Instant::now();
    let (status, _, body) = get(&http, &hello).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no ready instance"),
        "{body}"
    );
    assert!(t.elapsed() < Duration::from_secs(30));
}

#[tokio::test(flavor = "multi_thread")]
async fn http_service_memory_limit_is_enforced() {
    let s = MorelServer::start(&bin());
    let tmp = tempfile::tempdir().unwrap();
    let dir = service_dir(
        tmp.path(),
        "hog",
        &toml(
            "hog",
            1,
            "memory_mb = 64\nstart_timeout_s = 5",
            "HOG_MB = \"16\"",
        ),
    );
    // Under the limit: it runs, and the status says which limit is in force and how.
    s.deploy(&dir);
    let rows = instances(&s, "hog").await;
    let limits = rows[0]["limits"].as_str().unwrap().to_owned();
    assert!(limits.contains("memory 64 MiB"), "{limits}");
    assert!(
        limits.starts_with("cgroup v2")
            || limits.starts_with("cgroup v1")
            || limits.starts_with("rlimit"),
        "{limits}"
    );

    // The same program asking for more than the limit cannot have it: it fails to start,
    // and the status says the memory limit is why.
    std::fs::write(
        dir.join("morel.toml"),
        toml(
            "hog",
            1,
            "memory_mb = 64\nstart_timeout_s = 5",
            "HOG_MB = \"200\"",
        ),
    )
    .unwrap();
    let out = s.cli(&["deploy", dir.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("memory limit of 64 MiB"), "{err}");
    // The instance under the limit still serves.
    let (status, _, _) = get(&s.http(), &format!("{}/hog/hello", s.url)).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn http_service_instances_die_with_the_server_and_come_back_on_restart() {
    let dirs = Arc::new(tempfile::tempdir().unwrap());
    let mut s = MorelServer::start_with(&bin(), dirs.clone());
    let dir = service_dir(dirs.path(), "phoenix-src", &toml("phoenix", 2, "", ""));
    s.deploy(&dir);
    let pids: Vec<u32> = instances(&s, "phoenix")
        .await
        .iter()
        .map(|r| r["pid"].as_u64().unwrap() as u32)
        .collect();
    assert_eq!(pids.len(), 2);
    assert!(pids.iter().all(|p| alive(*p)));

    // SIGKILL the server: no cleanup code runs, yet its instances do not outlive it.
    s.kill9();
    wait_for(
        Duration::from_secs(10),
        "instances to die with the server",
        || {
            let pids = pids.clone();
            async move { pids.iter().all(|p| !alive(*p)).then_some(()) }
        },
    )
    .await;

    // On restart the active release is restored: new processes, stale rows gone.
    let s = MorelServer::start_with(&bin(), dirs);
    let http = s.http();
    let url = format!("{}/phoenix/hello", s.url);
    let (_, pid, _) = wait_for(Duration::from_secs(60), "the service after restart", || {
        let http = http.clone();
        let url = url.clone();
        async move {
            let r = get(&http, &url).await;
            (r.0 == 200).then_some(r)
        }
    })
    .await;
    assert!(!pids.contains(&pid.unwrap()));
    let rows = wait_for(Duration::from_secs(30), "two ready instances", || {
        let s = &s;
        async move {
            let rows = instances(s, "phoenix").await;
            (rows.len() == 2 && ready(&rows).len() == 2).then_some(rows)
        }
    })
    .await;
    assert!(
        rows.iter()
            .all(|r| !pids.contains(&(r["pid"].as_u64().unwrap() as u32)))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn http_service_and_function_routes_share_an_app_with_documented_precedence() {
    let s = MorelServer::start(&bin());
    let tmp = tempfile::tempdir().unwrap();
    let dir = service_dir(tmp.path(), "mixed", &toml("mixed", 1, "", ""));
    std::fs::write(
        dir.join("api.py"),
        "import morel\n\napi = morel.Endpoint(\"api\")\n\n\n@api.get(\"/hello\")\n\
         def hello():\n    return {\"from\": \"function\"}\n",
    )
    .unwrap();
    s.deploy(&dir);
    let http = s.http();

    // A manifest route wins over the http service for the same path...
    let (status, pid, body) = get(&http, &format!("{}/mixed/hello", s.url)).await;
    assert_eq!((status, pid), (200, None), "{body}");
    assert_eq!(body, json!({"from": "function"}));
    // ...any other path under /{app}/ goes to the service...
    let (status, pid, body) = get(&http, &format!("{}/mixed/slow?ms=1", s.url)).await;
    assert_eq!(status, 200, "{body}");
    assert!(pid.is_some(), "{body}");
    // ...and the call path still reaches the function.
    let (status, body) = s.call("mixed", "hello", "").await;
    assert_eq!((status, body), (200, json!({"from": "function"})));
    // Both resources run side by side; the service has its instance.
    let rows = instances(&s, "mixed").await;
    assert!(
        rows.iter()
            .any(|r| r["resource"] == "web" && r["state"] == "ready"),
        "{rows:?}"
    );
}

/// Resumes a SIGSTOPped process even when the test fails half-way.
struct Resume(u32);

impl Drop for Resume {
    fn drop(&mut self) {
        morel_test_support::signal_group(self.0, libc::SIGCONT);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn http_service_hung_instance_loses_its_lease_and_gets_it_back() {
    let s = MorelServer::start(&bin());
    let tmp = tempfile::tempdir().unwrap();
    let dir = service_dir(
        tmp.path(),
        "ttl",
        &toml("ttl", 2, "heartbeat_ttl_s = 3", ""),
    );
    s.deploy(&dir);
    let http = s.http();
    let hello = format!("{}/ttl/hello", s.url);

    let rows = instances(&s, "ttl").await;
    assert_eq!(ready(&rows).len(), 2, "{rows:?}");
    assert!(rows.iter().all(|r| r["lease_expired"] == false), "{rows:?}");
    let hung = rows[0]["pid"].as_u64().unwrap() as u32;
    let live = rows[1]["pid"].as_u64().unwrap() as u32;
    let (_, first, _) = get(&http, &hello).await;
    let (_, second, _) = get(&http, &hello).await;
    assert_eq!(
        [first, second]
            .into_iter()
            .flatten()
            .collect::<std::collections::BTreeSet<_>>(),
        [hung, live].into(),
        "both instances serve before the hang"
    );

    // The process hangs: it still accepts connections (the kernel does) but never answers.
    // The whole instance: its init and the server under it (a process group).
    morel_test_support::signal_group(hung, libc::SIGSTOP);
    let _resume = Resume(hung);
    let t = Instant::now();
    // Out of routing within the TTL (3 s); the supervisor notes it in the row at its next
    // missed heartbeat (one period plus one probe timeout later at most).
    wait_for(
        Duration::from_secs(15),
        "the hung instance's lease to expire",
        || {
            let s = &s;
            async move {
                let rows = instances(s, "ttl").await;
                rows.into_iter().find(|r| {
                    r["pid"].as_u64() == Some(hung as u64)
                        && r["lease_expired"] == true
                        && r["state"] == "ready"
                        && r["last_error"]
                            .as_str()
                            .is_some_and(|e| e.contains("unresponsive"))
                })
            }
        },
    )
    .await;
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    let out = s.cli_ok(&["ps", "ttl"]);
    assert!(out.contains("lease expired"), "{out}");

    // Every request goes to the live instance, at once (a request routed to the hung one
    // would wait for the edge's 10 s timeout and answer 504).
    let quick = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    for i in 0..20 {
        let t = Instant::now();
        let (status, pid, body) = get(&quick, &hello).await;
        assert_eq!(status, 200, "request {i}: {body}");
        assert_eq!(pid, Some(live), "request {i} served by the live instance");
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "request {i} took {:?}",
            t.elapsed()
        );
    }

    // It resumes: the next heartbeat renews the lease and traffic reaches both again.
    morel_test_support::signal_group(hung, libc::SIGCONT);
    let seen = wait_for(
        Duration::from_secs(15),
        "traffic to reach both instances",
        || {
            let quick = &quick;
            let hello = &hello;
            async move {
                let mut pids = std::collections::BTreeSet::new();
                for _ in 0..4 {
                    let (status, pid, _) = get(quick, hello).await;
                    assert_eq!(status, 200);
                    pids.extend(pid);
                }
                (pids.len() == 2).then_some(pids)
            }
        },
    )
    .await;
    assert_eq!(seen, [hung, live].into());
    let rows = instances(&s, "ttl").await;
    assert!(
        rows.iter()
            .all(|r| r["lease_expired"] == false && r["state"] == "ready"),
        "{rows:?}"
    );
    assert!(
        rows.iter()
            .all(|r| r["last_heartbeat_at"].as_i64().is_some()),
        "{rows:?}"
    );
    // No restart: the same processes serve, and the unresponsive note is gone.
    assert!(rows.iter().all(|r| r["restarts"] == 0), "{rows:?}");
    assert!(rows.iter().all(|r| r["last_error"].is_null()), "{rows:?}");
}
