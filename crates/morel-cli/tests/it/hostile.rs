//! Hostile input and faults (issue "Hostile input and faults never take Morel down"): what a
//! client or an app sends never crashes, wedges or exhausts Morel or another app, every
//! refusal is a clear 4xx, and internals never reach a public body.

use std::path::Path;
use std::time::Duration;

use morel_test_support::{Gate, MorelServer, example, wait_for};
use serde_json::{Value, json};

use crate::bin;

fn write(dir: &Path, files: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

/// The ready instance of an app: (pid, restarts).
async fn instance(s: &MorelServer, app: &str) -> (i64, i64) {
    let (_, detail) = s.get(&format!("/api/apps/{app}")).await;
    let i = detail["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["state"] == "ready")
        .unwrap_or_else(|| panic!("no ready instance: {detail}"))
        .clone();
    (i["pid"].as_i64().unwrap(), i["restarts"].as_i64().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn deeply_nested_bodies_are_refused_and_the_worker_keeps_serving() {
    let s = MorelServer::start(&bin());
    s.deploy(&example("hello-python"));
    let before = instance(&s, "hello-python").await;
    let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    let bodies = [
        deep(2000),
        format!("[{}]", deep(200)),
        format!("{{\"name\": {}}}", deep(100)),
    ];
    for round in 0..2 {
        for body in &bodies {
            let (status, answer) = s.call("hello-python", "greet", body).await;
            assert_eq!(status, 400, "round {round}: {answer}");
            assert_eq!(answer["type"], "BadRequest", "{answer}");
            assert!(
                answer["error"]
                    .as_str()
                    .unwrap()
                    .contains("deeper than 64 levels"),
                "{answer}"
            );
        }
    }
    // Brackets inside strings are data, however many.
    let text = format!("{}{}", "[".repeat(3000), "{".repeat(3000));
    assert_eq!(
        s.call("hello-python", "greet", &json!([text]).to_string())
            .await
            .0,
        200
    );
    assert_eq!(
        s.call("hello-python", "greet", r#"{"name": "Ada"}"#).await,
        (200, json!({"message": "Hello, Ada!"}))
    );
    assert_eq!(
        instance(&s, "hello-python").await,
        before,
        "the worker was restarted"
    );
}

const FALLS_OVER: &str = r#"
import os
import socket
import sys

def _gate_open():
    try:
        socket.create_connection(("127.0.0.1", int(os.environ["GATE_PORT"])), timeout=0.5).close()
        return True
    except OSError:
        return False

if _gate_open():
    # What a crashing runtime leaves on stderr: a traceback with server paths.
    sys.stderr.write('Traceback (most recent call last):\n  File "/srv/secret/internal/app.py", line 7\nRuntimeError: db password is hunter2\n')
    sys.stderr.flush()
    os._exit(3)

def ping():
    return "pong"

def die():
    os._exit(3)
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_loop_answers_503_without_the_apps_stderr_which_goes_to_its_logs() {
    let s = MorelServer::start(&bin());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("falls-over");
    write(&dir, &[("app.py", FALLS_OVER)]);
    let mut gate = Gate::new();
    s.cli_ok(&[
        "deploy",
        dir.to_str().unwrap(),
        "--set",
        &format!("GATE_PORT={}", gate.port()),
    ]);
    assert_eq!(
        s.call("falls-over", "ping", "").await,
        (200, Value::from("pong"))
    );
    // From now on every start crashes: the pool gives up after a few.
    gate.open();
    assert_eq!(s.call("falls-over", "die", "").await.0, 502);
    let (status, body) = wait_for(Duration::from_secs(60), "the crash loop", || async {
        let (status, body) = s.call("falls-over", "ping", "").await;
        (status == 503).then_some((status, body))
    })
    .await;
    assert_eq!(status, 503);
    let text = body.to_string();
    for leak in ["Traceback", "hunter2", "/srv/secret", "app.py", "exit code"] {
        assert!(
            !text.contains(leak),
            "the public body carries {leak:?}: {text}"
        );
    }
    assert!(text.contains("morel logs"), "{text}");
    // The owner sees why (log writes are batched: wait for them).
    wait_for(
        Duration::from_secs(10),
        "the crash in the app's logs",
        || async {
            let (_, logs) = s.get("/api/apps/falls-over/logs?since=1h").await;
            let logs = logs.to_string();
            (logs.contains("hunter2") && logs.contains("crash loop")).then_some(())
        },
    )
    .await;
}

const HANGS: &str = r#"
import time
import morel

api = morel.Endpoint("api", workers=(1, 1), concurrency=1, timeout_s=1)

@api.function
def hang():
    time.sleep(600)

@api.function
def ping():
    return "pong"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_call_that_never_returns_gets_504_and_its_worker_is_recycled() {
    let s = MorelServer::start(&bin());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hangs");
    write(&dir, &[("app.py", HANGS)]);
    s.deploy(&dir);
    let (first_pid, _) = instance(&s, "hangs").await;
    for _ in 0..2 {
        let (status, body) = s.call("hangs", "hang", "").await;
        assert_eq!(status, 504, "{body}");
        // Its one slot is stuck: the instance is not reported ready meanwhile.
        wait_for(
            Duration::from_secs(1),
            "the stuck instance not ready",
            || async {
                let (_, detail) = s.get("/api/apps/hangs").await;
                let states: Vec<&str> = detail["instances"]
                    .as_array()?
                    .iter()
                    .filter_map(|i| i["state"].as_str())
                    .collect();
                (!states.contains(&"ready")).then_some(())
            },
        )
        .await;
        // The one thread is stuck in sleep(600): within the grace plus a respawn, the worker
        // is replaced and calls are answered again.
        let answered = wait_for(Duration::from_secs(20), "a call answered again", || async {
            let (status, body) = s.call("hangs", "ping", "").await;
            (status == 200).then_some(body)
        })
        .await;
        assert_eq!(answered, Value::from("pong"));
    }
    let (pid, restarts) = instance(&s, "hangs").await;
    assert_ne!(pid, first_pid);
    assert!(restarts >= 2, "restarts {restarts}");
    wait_for(
        Duration::from_secs(10),
        "the recycle in the app's logs",
        || async {
            let (_, logs) = s.get("/api/apps/hangs/logs?since=1h").await;
            let logs = logs.to_string();
            (logs.contains("call") && logs.contains("of hang passed its deadline")).then_some(())
        },
    )
    .await;
}

const NOISY: &str = r#"
import sys

def shout(n):
    sys.stdout.write("x" * int(n) + "\n")
    sys.stdout.buffer.write(b"not utf-8: \xff\xfe end\n")
    sys.stdout.flush()
    print("after the noise", flush=True)
    return "done"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn huge_and_binary_log_lines_are_cut_and_escaped_and_logging_goes_on() {
    let s = MorelServer::start(&bin());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("noisy");
    write(&dir, &[("app.py", NOISY)]);
    s.deploy(&dir);
    for _ in 0..2 {
        assert_eq!(
            s.call("noisy", "shout", "[5000000]").await,
            (200, Value::from("done"))
        );
    }
    let lines = wait_for(Duration::from_secs(10), "the lines in the logs", || async {
        let (_, logs) = s.get("/api/apps/noisy/logs?since=1h").await;
        let lines: Vec<String> = logs
            .as_array()?
            .iter()
            .filter_map(|l| l["line"].as_str().map(str::to_owned))
            .collect();
        (lines.iter().filter(|l| *l == "after the noise").count() == 2).then_some(lines)
    })
    .await;
    let long: Vec<&String> = lines.iter().filter(|l| l.starts_with("xxxx")).collect();
    assert_eq!(long.len(), 2);
    for l in long {
        assert!(l.len() < 17 * 1024, "{} bytes kept", l.len());
        assert!(l.ends_with("more dropped]"), "{}", &l[l.len() - 80..]);
    }
    assert!(
        lines.iter().any(|l| l == "not utf-8: \\xff\\xfe end"),
        "{:?}",
        lines
            .iter()
            .filter(|l| !l.starts_with("xxx"))
            .collect::<Vec<_>>()
    );
}

const CHATTY: &str = r#"
def chatter(n):
    for i in range(int(n)):
        print(f"line {i}")
    return "done"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn an_apps_log_volume_is_rate_limited_and_the_log_says_how_much_was_dropped() {
    let dirs = std::sync::Arc::new(tempfile::tempdir().unwrap());
    // 100 lines/s, bursts of 500.
    let s = MorelServer::start_with_env(&bin(), dirs, &[], &[("MOREL_LOG_RATE", "100")]);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("chatty");
    write(&dir, &[("app.py", CHATTY)]);
    s.deploy(&dir);
    let logs = || async {
        let (_, logs) = s.get("/api/apps/chatty/logs?since=1h&limit=100000").await;
        logs.as_array()
            .unwrap()
            .iter()
            .filter_map(|l| l["line"].as_str().map(str::to_owned))
            .collect::<Vec<String>>()
    };
    let t = std::time::Instant::now();
    assert_eq!(
        s.call("chatty", "chatter", "[20000]").await,
        (200, Value::from("done"))
    );
    let lines = wait_for(Duration::from_secs(10), "the limit in the logs", || async {
        let lines = logs().await;
        lines
            .iter()
            .any(|l| l.contains("over the log rate limit of 100 lines/s"))
            .then_some(lines)
    })
    .await;
    let kept = lines.iter().filter(|l| l.starts_with("line ")).count();
    let allowed = 500 + (t.elapsed().as_secs_f64() * 100.0) as usize;
    assert!(
        (500..=allowed).contains(&kept),
        "{kept} lines kept, at most {allowed} allowed"
    );
    // Once the allowance is back, the next line passes after a count of what was dropped.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        s.call("chatty", "chatter", "[1]").await,
        (200, Value::from("done"))
    );
    // Every line is either in the log or counted there as dropped.
    wait_for(
        Duration::from_secs(10),
        "the count of dropped lines",
        || async {
            let lines = logs().await;
            let said: usize = lines
                .iter()
                .filter_map(|l| {
                    l.strip_suffix(" lines of output were dropped (over the log rate limit)")?
                        .parse::<usize>()
                        .ok()
                })
                .sum();
            let kept = lines.iter().filter(|l| l.starts_with("line ")).count();
            (said > 0 && said + kept == 20001).then_some(())
        },
    )
    .await;
    // The server itself is fine.
    assert_eq!(s.get("/api/readiness").await.0, 200);
}

const SLOW_BOOT: &str = r#"
import time

time.sleep(2)

def hi():
    return "hi"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn after_a_restart_calls_wait_for_the_restore_with_503_never_404() {
    let mut s = MorelServer::start(&bin());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("slow-boot");
    write(&dir, &[("app.py", SLOW_BOOT)]);
    s.deploy(&dir);
    s.stop();
    let s = MorelServer::start_with(&bin(), s.dirs.clone());
    let http = s.http();
    let (mut unavailable, mut not_ready) = (0, 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        assert!(std::time::Instant::now() < deadline, "never restored");
        let ready = http
            .get(format!("{}/api/readiness", s.url))
            .send()
            .await
            .unwrap();
        let ready_status = ready.status().as_u16();
        let r = http
            .post(format!("{}/default/slow-boot/latest/call/hi", s.url))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let retry = r.headers().get("retry-after").cloned();
        let body: Value = r.json().await.unwrap();
        match status {
            200 => {
                assert_eq!(body, Value::from("hi"));
                break;
            }
            503 => {
                assert_eq!(
                    retry.as_ref().map(|v| v.to_str().unwrap()),
                    Some("1"),
                    "{body}"
                );
                assert_ne!(ready_status, 200, "readiness said ready while {body}");
                unavailable += 1;
            }
            other => panic!("a call while restoring got {other}: {body}"),
        }
        if ready_status == 503 {
            not_ready += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The 2 s import makes the window wide enough to be seen.
    assert!(
        unavailable > 0 && not_ready > 0,
        "{unavailable} {not_ready}"
    );
    let ready = http
        .get(format!("{}/api/readiness", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
}

/// Reads what the server sends until it closes the connection (or `limit` passes: panics).
async fn until_closed(stream: &mut tokio::net::TcpStream, limit: Duration) -> String {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    tokio::time::timeout(limit, stream.read_to_end(&mut got))
        .await
        .expect("the server kept the connection open")
        .ok();
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn stalled_heads_bodies_and_idle_connections_are_closed() {
    // The same on the fast lane and on hyper and the router alone.
    for fast_lane in ["1", "0"] {
        let dirs = std::sync::Arc::new(tempfile::tempdir().unwrap());
        let mut envs = LIMITS_FOR_TESTS.to_vec();
        envs.push(("MOREL_FAST_LANE", fast_lane));
        let s = MorelServer::start_with_env(&bin(), dirs, &[], &envs);
        s.deploy(&example("hello-python"));
        let call = "/default/hello-python/latest/call/greet";
        let listener = Listener {
            addr: s.url.trim_start_matches("http://").to_owned(),
            label: format!("morel up, fast lane {fast_lane}"),
            call,
            other: "/api/readiness",
        };
        listener.limits_hold().await;
        // An async call's body is read by the API, on the router.
        listener
            .stalled_body_gets_408("/default/hello-python/latest/await/greet")
            .await;
    }
}

/// Connection limits short enough for tests: what [`Listener::limits_hold`] expects.
pub const LIMITS_FOR_TESTS: [(&str, &str); 3] = [
    ("MOREL_HEADER_TIMEOUT_MS", "500"),
    ("MOREL_BODY_TIMEOUT_MS", "500"),
    ("MOREL_IDLE_TIMEOUT_MS", "2500"),
];

/// A listener of Morel started with [`LIMITS_FOR_TESTS`].
pub struct Listener {
    pub addr: String,
    pub label: String,
    /// A POST path answering `{"name": "Ada"}` with "Hello, Ada!".
    pub call: &'static str,
    /// A GET path answered by the router (hyper), not the fast lane.
    pub other: &'static str,
}

impl Listener {
    async fn connect(&self) -> tokio::net::TcpStream {
        tokio::net::TcpStream::connect(&self.addr).await.unwrap()
    }

    /// Sends `text` and reads until `want` is in the answer (the connection stays open).
    async fn ask(&self, c: &mut tokio::net::TcpStream, text: &str, want: &str) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        c.write_all(text.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&got).contains(want) {
            let n = tokio::time::timeout(Duration::from_secs(10), c.read(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("{}: no answer to {text:?}", self.label))
                .unwrap();
            assert!(
                n > 0,
                "{}: closed before answering {text:?}: {got:?}",
                self.label
            );
            got.extend_from_slice(&buf[..n]);
        }
    }

    fn greeting(&self) -> String {
        let body = r#"{"name": "Ada"}"#;
        format!(
            "POST {} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            self.call,
            body.len()
        )
    }

    /// A stalled head is closed within the header timeout, on a new connection and on one
    /// kept alive after a request (served by the fast lane or by the router); a stalled body
    /// gets 408; an idle connection is closed after the idle timeout, not before.
    pub async fn limits_hold(&self) {
        use tokio::io::AsyncWriteExt;
        let other = format!("GET {} HTTP/1.1\r\nhost: x\r\n\r\n", self.other);
        for path in [self.call, self.other] {
            for after in [
                None,
                Some((self.greeting(), "Hello, Ada!")),
                Some((other.clone(), "200")),
            ] {
                let mut c = self.connect().await;
                if let Some((first, want)) = &after {
                    self.ask(&mut c, first, want).await;
                }
                c.write_all(format!("POST {path} HTTP/1.1\r\nhost: x\r\n").as_bytes())
                    .await
                    .unwrap();
                let t = std::time::Instant::now();
                until_closed(&mut c, Duration::from_secs(5)).await;
                assert!(
                    t.elapsed() < Duration::from_millis(1800),
                    "{}: a stalled head on {path} after {:?} stayed open {:?}",
                    self.label,
                    after.map(|a| a.0),
                    t.elapsed()
                );
            }
        }
        self.stalled_body_gets_408(self.call).await;
        // Idle after a request on the lane and after one on the router: closed after the
        // idle timeout, not at the header timeout.
        for first in [self.greeting(), other] {
            let mut c = self.connect().await;
            self.ask(&mut c, &first, "200").await;
            let t = std::time::Instant::now();
            until_closed(&mut c, Duration::from_secs(8)).await;
            assert!(
                t.elapsed() >= Duration::from_millis(2300),
                "{}: an idle connection closed after {:?}",
                self.label,
                t.elapsed()
            );
        }
    }

    /// A body promised and not sent: 408, then the connection closes.
    pub async fn stalled_body_gets_408(&self, path: &str) {
        use tokio::io::AsyncWriteExt;
        let mut c = self.connect().await;
        c.write_all(
            format!("POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: 104857600\r\n\r\n{{\"na")
                .as_bytes(),
        )
        .await
        .unwrap();
        let answer = until_closed(&mut c, Duration::from_secs(5)).await;
        assert!(
            answer.starts_with("HTTP/1.1 408"),
            "{}: {path}: {answer}",
            self.label
        );
        assert!(answer.contains("RequestTimeout"), "{answer}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_raised_exception_answers_its_type_and_message_and_logs_its_traceback_under_an_id() {
    let s = MorelServer::start(&bin());
    s.deploy(&example("hello-python"));
    let (status, body) = s.call("hello-python", "fail", r#"["no such thing"]"#).await;
    assert_eq!(status, 500, "{body}");
    let id = body["id"].as_str().expect("an error id").to_owned();
    let text = body.to_string();
    for leak in ["Traceback", "File \"", ".py"] {
        assert!(!text.contains(leak), "the body carries {leak:?}: {text}");
    }
    let lines = wait_for(
        Duration::from_secs(10),
        "the traceback in the log",
        || async {
            let (_, logs) = s.get("/api/apps/hello-python/logs?since=1h").await;
            let lines: Vec<String> = logs
                .as_array()?
                .iter()
                .filter_map(|l| l["line"].as_str())
                .filter(|l| l.contains(&format!("error {id}:")))
                .map(str::to_owned)
                .collect();
            lines
                .iter()
                .any(|l| l.contains("Traceback"))
                .then_some(lines)
        },
    )
    .await;
    assert!(
        lines.iter().any(|l| l.contains("hello.py")),
        "the traceback names the function's file: {lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_past_the_cap_get_503_and_are_closed() {
    use tokio::io::AsyncWriteExt;
    let dirs = std::sync::Arc::new(tempfile::tempdir().unwrap());
    // Default timeouts, so the held connections stay open while the cap is tried.
    let s = MorelServer::start_with_env(&bin(), dirs, &[], &[("MOREL_MAX_CONNECTIONS", "40")]);
    s.deploy(&example("hello-python"));
    let addr = s.url.trim_start_matches("http://").to_owned();
    let connect = || tokio::net::TcpStream::connect(addr.clone());
    let body = r#"{"name": "Ada"}"#;
    // Past the cap, a new connection gets a clear 503 and is closed.
    let mut held = Vec::new();
    for _ in 0..40 {
        let mut c = connect().await.unwrap();
        // A head in progress: held open until the header timeout (10 s).
        c.write_all(b"GET /api/readiness HTTP/1.1\r\n")
            .await
            .unwrap();
        held.push(c);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut extra = connect().await.unwrap();
    let answer = until_closed(&mut extra, Duration::from_secs(3)).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("too many open connections"), "{answer}");
    drop(held);
    // Once they are gone (the server sees them close a moment later: until then a new
    // connection may still get the refusal), connections are served again.
    let url = format!("{}/default/hello-python/latest/call/greet", s.url);
    wait_for(Duration::from_secs(10), "a call after the cap", || async {
        let resp = s.http().post(&url).body(body).send().await.ok()?;
        (resp.status() == 200).then_some(())
    })
    .await;
}
