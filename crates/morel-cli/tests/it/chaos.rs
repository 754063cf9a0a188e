//! Faults under load (issue "Hostile input and faults never take Morel down", part 10): while
//! a bounded load of calls and edge requests runs, a Python worker, an http instance and the
//! server itself are killed with SIGKILL, round after round, the server restarted on the same
//! state directory. Nothing acknowledged may be lost (deploys, secrets, async jobs), and every
//! fault's window of failed requests is bounded; the windows are measured and printed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use morel_test_support::{MorelServer, copy_dir, example, signal, signal_group, wait_for};
use serde_json::{Value, json};

use crate::bin;

/// Rounds of (worker, http instance, server) kills.
const ROUNDS: u32 = 3;
/// The longest run of failed requests a fault may cause, on any stream. Measured on a 2-core
/// machine (the test prints them): under 0.1 s for a worker or an http instance, about 0.35 s
/// for the server's kill and restart; the bound leaves room for a loaded machine.
const WINDOW_BOUND: Duration = Duration::from_secs(10);
/// Bound on waiting for anything to come back after a fault.
const RECOVERY_LIMIT: Duration = Duration::from_secs(60);
/// Each load request's own timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between two requests of one load stream.
const LOAD_PAUSE: Duration = Duration::from_millis(20);
/// No load stream sends more requests than this, whatever happens.
const LOAD_MAX_REQUESTS: usize = 4000;
/// Slow jobs queued just before each server kill: more than the job worker's 16 slots, so
/// that some are running and some still queued when the server dies.
const SLOW_JOBS: u32 = 24;

const FN_APP: &str = "chaos-fn";
const WEB_APP: &str = "chaos-web";

fn fn_code(version: u32) -> String {
    format!(
        r#"import asyncio
import os

VERSION = {version}


def version():
    return VERSION


def add(a, b):
    return a + b


def secret(name):
    return os.environ.get(name)


async def slow(value, delay):
    await asyncio.sleep(delay)
    return value
"#
    )
}

const FN_TOML: &str = r#"[app]
name = "chaos-fn"

[resources.default]
workers = [1, 1]
concurrency = 64
"#;

const WEB_TOML: &str = r#"[app]
name = "chaos-web"

[resources.web]
runtime = "http"
command = ["./server"]
health = "/health"
warmup_s = 0
workers = [2, 2]
memory_mb = 128
timeout_s = 10
"#;

/// Writes the function app at `version` into `dir` (the same directory, redeployed).
fn write_fn_app(dir: &Path, version: u32) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("app.py"), fn_code(version)).unwrap();
    std::fs::write(dir.join("morel.toml"), FN_TOML).unwrap();
}

fn web_app(root: &Path) -> PathBuf {
    let dir = root.join(WEB_APP);
    copy_dir(&example("http-service"), &dir);
    std::fs::write(dir.join("morel.toml"), WEB_TOML).unwrap();
    dir
}

/// An error with its causes: reqwest's own text does not say what went wrong on the wire.
fn chain(e: reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

/// One load request: when it started and ended (since the test's start) and how it went.
#[derive(Clone)]
struct Record {
    stream: &'static str,
    start: Duration,
    end: Duration,
    ok: bool,
    what: String,
}

/// A bounded background load on loopback: each stream sends one request at a time to the
/// server's current URL and records every outcome.
struct Load {
    url: Arc<RwLock<String>>,
    records: Arc<Mutex<Vec<Record>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    t0: Instant,
}

impl Load {
    fn start(url: &str, t0: Instant) -> Load {
        let mut load = Load {
            url: Arc::new(RwLock::new(url.to_owned())),
            records: Arc::new(Mutex::new(Vec::new())),
            stop: Arc::new(AtomicBool::new(false)),
            tasks: Vec::new(),
            t0,
        };
        load.spawn("call", |http, url, i| async move {
            let r = http
                .post(format!("{url}/default/{FN_APP}/latest/call/add"))
                .body(format!("[{i}, 1]"))
                .send()
                .await
                .map_err(chain)?;
            let status = r.status().as_u16();
            let body = r.text().await.map_err(chain)?;
            if status == 200 && body.trim() == (i + 1).to_string() {
                Ok(())
            } else {
                Err(format!("{status} {body}"))
            }
        });
        load.spawn("edge", |http, url, _| async move {
            let r = http
                .get(format!("{url}/{WEB_APP}/hello"))
                .send()
                .await
                .map_err(chain)?;
            let status = r.status().as_u16();
            let body = r.text().await.map_err(chain)?;
            let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            if status == 200 && v["hello"] == "world" {
                Ok(())
            } else {
                Err(format!("{status} {body}"))
            }
        });
        load
    }

    fn spawn<F, Fut>(&mut self, stream: &'static str, request: F)
    where
        F: Fn(reqwest::Client, String, usize) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<(), String>> + Send,
    {
        let (url, records, stop, t0) = (
            self.url.clone(),
            self.records.clone(),
            self.stop.clone(),
            self.t0,
        );
        self.tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .build()
                .unwrap();
            for i in 0..LOAD_MAX_REQUESTS {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let url = url.read().unwrap().clone();
                let start = t0.elapsed();
                let outcome = request(http.clone(), url, i).await;
                let end = t0.elapsed();
                records.lock().unwrap().push(Record {
                    stream,
                    start,
                    end,
                    ok: outcome.is_ok(),
                    what: outcome.err().unwrap_or_default(),
                });
                tokio::time::sleep(LOAD_PAUSE).await;
            }
        }));
    }

    fn point_at(&self, url: &str) {
        *self.url.write().unwrap() = url.to_owned();
    }

    fn now(&self) -> Duration {
        self.t0.elapsed()
    }

    /// Waits until every stream has had a request succeed that started after `since`.
    async fn recovered(&self, since: Duration, what: &str) {
        wait_for(RECOVERY_LIMIT, what, || async {
            let records = self.records.lock().unwrap();
            ["call", "edge"]
                .iter()
                .all(|s| {
                    records
                        .iter()
                        .any(|r| r.stream == *s && r.ok && r.start >= since)
                })
                .then_some(())
        })
        .await;
    }

    async fn finish(self) -> Vec<Record> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        self.records.lock().unwrap().clone()
    }
}

/// What happened to the load in one phase (from its start to the next phase's).
struct Window {
    phase: String,
    /// The longest run of consecutive failed requests of one stream: from the start of its
    /// first request to the start of the next request that succeeded.
    longest: Duration,
    failed: usize,
    total: usize,
    example: Option<String>,
}

fn windows(phases: &[(String, Duration)], records: &[Record]) -> Vec<Window> {
    let mut out = Vec::new();
    for (i, (phase, from)) in phases.iter().enumerate() {
        let to = phases.get(i + 1).map_or(Duration::MAX, |p| p.1);
        let mut w = Window {
            phase: phase.clone(),
            longest: Duration::ZERO,
            failed: 0,
            total: 0,
            example: None,
        };
        for stream in ["call", "edge"] {
            let mut run_start: Option<Duration> = None;
            let mut last_end = Duration::ZERO;
            for r in records.iter().filter(|r| r.stream == stream) {
                if r.start < *from || r.start >= to {
                    continue;
                }
                w.total += 1;
                if r.ok {
                    if let Some(s) = run_start.take() {
                        w.longest = w.longest.max(r.start - s);
                    }
                } else {
                    w.failed += 1;
                    if w.example.is_none() {
                        w.example = Some(format!("{stream}: {}", r.what));
                    }
                    run_start.get_or_insert(r.start);
                    last_end = r.end;
                }
            }
            // A run still failing when the phase ended counts to its last failure.
            if let Some(s) = run_start {
                w.longest = w.longest.max(last_end - s);
            }
        }
        out.push(w);
    }
    out
}

/// The ready instances' pids of `resource` in `app`'s active release.
async fn ready_pids(s: &MorelServer, app: &str, resource: &str) -> Option<Vec<u32>> {
    let (_, detail) = s.get(&format!("/api/apps/{app}")).await;
    let active = detail["active_release"].as_str()?.to_owned();
    let (_, rows) = s.get(&format!("/api/apps/{app}/instances")).await;
    Some(
        rows.as_array()?
            .iter()
            .filter(|r| r["resource"] == resource && r["release"] == active.as_str())
            .filter(|r| r["state"] == "ready")
            .filter_map(|r| r["pid"].as_u64())
            .map(|p| p as u32)
            .collect(),
    )
}

/// A ready instance's pid of `resource` in `app`.
async fn ready_pid(s: &MorelServer, app: &str, resource: &str) -> u32 {
    wait_for(RECOVERY_LIMIT, "a ready instance", || async {
        ready_pids(s, app, resource).await?.first().copied()
    })
    .await
}

/// Waits until `app`'s `resource` has `n` ready instances, none of them `killed`.
async fn replaced(s: &MorelServer, app: &str, resource: &str, killed: u32, n: usize) {
    wait_for(RECOVERY_LIMIT, "the killed instance replaced", || async {
        let pids = ready_pids(s, app, resource).await?;
        (pids.len() == n && !pids.contains(&killed)).then_some(())
    })
    .await;
}

/// Waits until `func(args)` answers `want` and the function app's one instance is the only
/// ready one (a rollout's old instances stopped).
async fn settled(s: &MorelServer, func: &str, args: &Value, want: &Value) {
    wait_for(RECOVERY_LIMIT, "the function app to settle", || async {
        let answer = s.call(FN_APP, func, &args.to_string()).await;
        let pids = ready_pids(s, FN_APP, "default").await?;
        (answer == (200, want.clone()) && pids.len() == 1).then_some(())
    })
    .await;
}

/// Runs blocking test-support calls (the CLI, starting and killing the server) off the
/// runtime's async path.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// An async job acknowledged with its id, and what it must return.
struct Job {
    id: String,
    output: Value,
    /// Queued just before a server kill: it may have been running when the server died.
    before_kill: bool,
}

async fn submit(s: &MorelServer, func: &str, body: &str) -> String {
    let r = s
        .http()
        .post(format!("{}/default/{FN_APP}/latest/run/{func}", s.url))
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{func} {body}");
    let v: Value = r.json().await.unwrap();
    v["id"].as_str().unwrap().to_owned()
}

/// The function app's active release, as the server says.
async fn active_release(s: &MorelServer) -> String {
    let (_, detail) = s.get(&format!("/api/apps/{FN_APP}")).await;
    detail["active_release"]
        .as_str()
        .unwrap_or_else(|| panic!("no active release: {detail}"))
        .to_owned()
}

/// Everything acknowledged so far is still there and served, on the server as it is now:
/// the function app at release `fn_release` (its code at `fn_version`), the service at v1.
async fn nothing_acknowledged_is_lost(
    s: &MorelServer,
    fn_release: &str,
    fn_version: u32,
    secrets: &[(String, String)],
    jobs: &[Job],
) {
    let (_, apps) = s.get("/api/apps").await;
    let names: Vec<&str> = apps
        .as_array()
        .unwrap_or_else(|| panic!("{apps}"))
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    for app in [FN_APP, WEB_APP] {
        assert!(names.contains(&app), "{app} is not listed: {apps}");
    }
    let (_, detail) = s.get(&format!("/api/apps/{FN_APP}")).await;
    assert_eq!(detail["active_release"], fn_release, "{detail}");
    let (_, detail) = s.get(&format!("/api/apps/{WEB_APP}")).await;
    assert_eq!(detail["active_release"], "v1", "{detail}");
    // Answering, at that version (the restore may still be going on).
    wait_for(RECOVERY_LIMIT, "the acknowledged version", || async {
        (s.call(FN_APP, "version", "").await == (200, json!(fn_version))).then_some(())
    })
    .await;
    let http = s.http();
    let hello = wait_for(RECOVERY_LIMIT, "the service", || async {
        let r = http
            .get(format!("{}/{WEB_APP}/hello", s.url))
            .send()
            .await
            .ok()?;
        (r.status() == 200).then_some(())?;
        r.json::<Value>().await.ok()
    })
    .await;
    assert_eq!(hello["version"], "1", "{hello}");
    for (key, value) in secrets {
        let (status, got) = s.call(FN_APP, "secret", &json!([key]).to_string()).await;
        assert_eq!((status, &got), (200, &json!(value)), "secret {key}");
    }
    let (_, listed) = s
        .get(&format!(
            "/api/apps/{FN_APP}/environments/production/secrets"
        ))
        .await;
    let listed = listed.to_string();
    for (key, _) in secrets {
        assert!(listed.contains(key), "{key} is not listed: {listed}");
    }
    for job in jobs {
        let (status, e) = s.get(&format!("/api/executions/{}", job.id)).await;
        assert_eq!(status, 200, "job {} is lost: {e}", job.id);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_nine_of_workers_instances_and_the_server_loses_nothing_acknowledged() {
    let t0 = Instant::now();
    let dirs = Arc::new(tempfile::tempdir().unwrap());
    let mut s = MorelServer::start_with(&bin(), dirs.clone());
    let tmp = tempfile::tempdir().unwrap();
    let fn_dir = tmp.path().join(FN_APP);
    write_fn_app(&fn_dir, 1);
    blocking(|| {
        s.deploy(&fn_dir);
        s.deploy(&web_app(tmp.path()));
    });
    let mut secrets: Vec<(String, String)> = Vec::new();
    let mut jobs: Vec<Job> = Vec::new();

    let load = Load::start(&s.url, t0);
    let mut phases: Vec<(String, Duration)> = vec![("steady".into(), load.now())];
    load.recovered(Duration::ZERO, "the load's first answers")
        .await;

    for round in 1..=ROUNDS {
        // Acknowledged work: a deploy, a secret, async jobs; each waited for until it is in
        // force, so that the faults below hit a settled app.
        phases.push((format!("round {round}: redeploy"), load.now()));
        write_fn_app(&fn_dir, round + 1);
        blocking(|| s.deploy(&fn_dir));
        let fn_version = round + 1;
        settled(&s, "version", &json!([]), &json!(fn_version)).await;
        phases.push((format!("round {round}: secret set"), load.now()));
        let (key, value) = (format!("CHAOS_{round}"), format!("value-{round}"));
        blocking(|| s.cli_ok(&["secrets", "set", FN_APP, &key, "--value", &value]));
        // The instances restart with the secret (in the background, or before the CLI
        // returns).
        settled(&s, "secret", &json!([key]), &json!(value)).await;
        secrets.push((key, value));
        // The release in force once both are acknowledged (a secret's change may make a
        // release of its own).
        let fn_release = active_release(&s).await;
        phases.push((format!("round {round}: jobs"), load.now()));
        for j in 0..4u32 {
            let id = submit(&s, "add", &format!("[{round}, {j}]")).await;
            let job = Job {
                id,
                output: json!(round + j),
                before_kill: false,
            };
            wait_for(RECOVERY_LIMIT, "a job to complete", || async {
                let (_, e) = s.get(&format!("/api/executions/{}", job.id)).await;
                (e["status"] != "QUEUED" && e["status"] != "RUNNING").then_some(())
            })
            .await;
            jobs.push(job);
        }

        // A worker.
        let pid = ready_pid(&s, FN_APP, "default").await;
        let at = load.now();
        phases.push((format!("round {round}: kill -9 worker"), at));
        signal(pid, libc::SIGKILL);
        replaced(&s, FN_APP, "default", pid, 1).await;
        load.recovered(at, "calls after the worker's kill").await;

        // An http instance.
        let pid = ready_pid(&s, WEB_APP, "web").await;
        let at = load.now();
        phases.push((format!("round {round}: kill -9 http instance"), at));
        signal_group(pid, libc::SIGKILL);
        replaced(&s, WEB_APP, "web", pid, 2).await;
        load.recovered(at, "edge requests after the instance's kill")
            .await;

        // The server, with jobs running and queued.
        for j in 0..SLOW_JOBS {
            let value = json!({"round": round, "job": j});
            let id = submit(&s, "slow", &json!([value, 3]).to_string()).await;
            jobs.push(Job {
                id,
                output: value,
                before_kill: true,
            });
        }
        let at = load.now();
        phases.push((format!("round {round}: kill -9 server"), at));
        blocking(|| s.kill9());
        s = blocking(|| MorelServer::start_with(&bin(), dirs.clone()));
        load.point_at(&s.url);
        load.recovered(at, "the load after the server's restart")
            .await;
        nothing_acknowledged_is_lost(&s, &fn_release, fn_version, &secrets, &jobs).await;
    }
    phases.push(("after the last round".into(), load.now()));
    let records = load.finish().await;

    // Jobs: each ran and returned its output, or was running when its server was killed
    // (its message stays hidden for the visibility timeout, then it runs again). None may
    // end without having run, nor stay queued.
    // Jobs a kill interrupted run again after the restart (not after their visibility
    // timeout): every one ends.
    let settled = wait_for(Duration::from_secs(60), "the jobs to end", || async {
        let mut states = Vec::new();
        for job in &jobs {
            let (status, e) = s.get(&format!("/api/executions/{}", job.id)).await;
            if status != 200 || e["status"] == "QUEUED" || e["status"] == "RUNNING" {
                return None;
            }
            states.push(e);
        }
        Some(states)
    })
    .await;
    let mut interrupted = 0;
    let mut wrong = Vec::new();
    for (job, e) in jobs.iter().zip(&settled) {
        match e["status"].as_str() {
            Some("COMPLETED") if e["output"] == job.output => {
                interrupted += usize::from(job.before_kill);
            }
            _ => wrong.push(format!(
                "{} ({}): {e}",
                job.id,
                if job.before_kill {
                    "queued just before a server kill"
                } else {
                    "queued well before any kill"
                }
            )),
        }
    }

    let windows = windows(&phases, &records);
    eprintln!(
        "chaos: {} requests, {} failed, {} jobs ({} queued or running at a server kill, all completed), {:?} in all",
        records.len(),
        records.iter().filter(|r| !r.ok).count(),
        jobs.len(),
        interrupted,
        t0.elapsed()
    );
    for w in &windows {
        eprintln!(
            "chaos: {:<36} longest failed window {:>6} ms, {} of {} requests failed{}",
            w.phase,
            w.longest.as_millis(),
            w.failed,
            w.total,
            w.example
                .as_ref()
                .map(|e| format!(" (e.g. {e})"))
                .unwrap_or_default()
        );
    }
    let mut problems: Vec<String> = wrong
        .iter()
        .map(|w| format!("an acknowledged job did not run: {w}"))
        .collect();
    for w in windows.iter().filter(|w| w.longest > WINDOW_BOUND) {
        problems.push(format!(
            "{}: requests failed for {:?}, over the bound of {WINDOW_BOUND:?}",
            w.phase, w.longest
        ));
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
