//! The fast lane changes how fast requests are answered, never what is answered (issue
//! "Hostile input and faults never take Morel down", part 9): one list of valid and malformed
//! requests, written as raw bytes on loopback TCP to two `morel up` servers with the same
//! apps, one with the fast lane (the default) and one without (`MOREL_FAST_LANE=0`, hyper and
//! the router alone), must get the same answers: status, the headers that matter, the body,
//! and whether the connection is kept or closed.
//!
//! What legitimately differs between two servers and two calls is left out: `date`, `server`,
//! the serving instance's pid and id (present or not is compared), an error's or a job's `id`
//! and a service's `pid` in a JSON body (present or not is compared), the reason phrase, and
//! how a body is framed (its bytes are compared).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use morel_test_support::{MorelServer, example};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::bin;

/// Bound on waiting for an answer (or any one read or write); a request that gets nothing
/// within it shows as "no answer", on both servers alike.
const IO_LIMIT: Duration = Duration::from_secs(5);
/// After the answers a case waits for, how long a connection must stay open to count as kept.
/// The router reads an unread rest of a body for up to 100 ms before it decides (body_close).
const LINGER: Duration = Duration::from_millis(700);
/// Both servers' head and body timeouts, short so that the stalled requests end quickly.
const STALL_LIMIT_MS: &str = "1500";
/// The Host header of path-routed requests.
const HOST: &str = "diff.test";
/// The header line naming [`HOST`].
const HOST_LINE: &str = "Host: diff.test";
/// `morel up --domain`: `{app}.{DOMAIN}` reaches an app's http service by host name.
const DOMAIN: &str = "morel.test";

const CALL: &str = "/default/hello-python/latest/call";

/// An app with routes only: a route's other method is a 405.
const ROUTED: &str = r#"
import morel

api = morel.Endpoint("api", workers=(1, 1))


@api.get("/status")
def status():
    return {"ok": True}


@api.post("/items")
def create(name, qty=1):
    return {"name": name, "qty": qty}
"#;

/// The http service's app also has a route: it wins over the service for its path.
const SVC_ROUTE: &str = r#"
import morel

api = morel.Endpoint("api", workers=(1, 1))


@api.get("/fn")
def from_function():
    return {"from": "function"}
"#;

/// The http service: `examples/http-service`'s routes, and a request body read as its
/// framing says (`Content-Length` or chunked), so that every request leaves the instance's
/// connection clean whichever path forwarded it.
const SVC_SERVER: &str = r#"
import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

PID = int(os.environ.get("MOREL_PID") or os.getpid())


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def send(self, status, body, ctype="application/json", head=False):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Instance-Pid", str(PID))
        self.send_header("X-Version", "1")
        self.end_headers()
        if not head:
            self.wfile.write(data)

    def route(self, head=False):
        url = urlparse(self.path)
        body = self.body()
        if url.path == "/health":
            self.send(200, b"ok", "text/plain", head)
        elif url.path == "/hello":
            self.send(200, {"hello": "world", "pid": PID, "version": "1"}, head=head)
        elif url.path == "/slow":
            ms = int(parse_qs(url.query).get("ms", ["100"])[0])
            time.sleep(ms / 1000)
            self.send(200, {"slept_ms": ms, "pid": PID}, head=head)
        elif url.path == "/echo" and self.command == "POST":
            self.send(200, body, self.headers.get("Content-Type") or "application/octet-stream")
        elif url.path == "/headers":
            self.send(200, {k.lower(): v for k, v in self.headers.items()}, head=head)
        else:
            self.send(404, {"error": f"no route {self.command} {url.path}"}, head=head)

    def do_GET(self):
        self.route()

    def do_POST(self):
        self.route()

    def do_HEAD(self):
        self.route(head=True)

    def log_message(self, fmt, *args):
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
    server.daemon_threads = True
    server.serve_forever()
"#;

const SVC_TOML: &str = r#"[app]
name = "svc"

[resources.web]
runtime = "http"
command = ["python3", "server"]
health = "/health"
warmup_s = 0
workers = [1, 1]
memory_mb = 128
timeout_s = 10
"#;

/// The apps every case runs against: `hello-python` (functions), `routed` (routes only) and
/// `svc` (an http service with one route).
fn app_dirs(root: &Path) -> Vec<std::path::PathBuf> {
    let routed = root.join("routed");
    std::fs::create_dir_all(&routed).unwrap();
    std::fs::write(routed.join("api.py"), ROUTED).unwrap();
    let svc = root.join("svc");
    std::fs::create_dir_all(&svc).unwrap();
    std::fs::write(svc.join("morel.toml"), SVC_TOML).unwrap();
    std::fs::write(svc.join("server"), SVC_SERVER).unwrap();
    std::fs::write(svc.join("api.py"), SVC_ROUTE).unwrap();
    vec![example("hello-python"), routed, svc]
}

enum Step {
    Send(Vec<u8>),
    Pause(Duration),
    /// Half-closes the connection: the client sends nothing more.
    CloseWrite,
}

struct Case {
    name: &'static str,
    steps: Vec<Step>,
    /// Final answers (not 1xx) to wait for; fewer may come, then the connection's end says why.
    answers: usize,
    /// The requests are HEAD: their answers carry no body.
    head: bool,
}

impl Case {
    fn new(name: &'static str, bytes: impl Into<Vec<u8>>) -> Case {
        Case {
            name,
            steps: vec![Step::Send(bytes.into())],
            answers: 1,
            head: false,
        }
    }

    fn answers(mut self, n: usize) -> Case {
        self.answers = n;
        self
    }

    fn head(mut self) -> Case {
        self.head = true;
        self
    }

    fn then(mut self, step: Step) -> Case {
        self.steps.push(step);
        self
    }
}

/// A request with a Content-Length for `body`; `extra` are header lines, each ending in CRLF.
fn post(path: &str, body: &[u8], extra: &str) -> Vec<u8> {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {}\r\n{extra}\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}

fn get(path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {HOST}\r\n{extra}\r\n").into_bytes()
}

/// A request as written: the request line, the header lines and the body, nothing added.
fn raw(line: &str, headers: &[&str], body: &str) -> Vec<u8> {
    let mut req = format!("{line}\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    req.push_str(body);
    req.into_bytes()
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn cases() -> Vec<Case> {
    let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
    let mut cases = vec![
        // Valid calls, on the lane's path.
        Case::new("array args", post(&format!("{CALL}/add"), b"[2, 3]", "")),
        Case::new(
            "object args",
            post(&format!("{CALL}/greet"), br#"{"name": "Ada"}"#, ""),
        ),
        Case::new(
            "object args with a JSON content type",
            post(
                &format!("{CALL}/greet"),
                br#"{"name": "Ada"}"#,
                "Content-Type: application/json\r\n",
            ),
        ),
        Case::new("empty body", post(&format!("{CALL}/greet"), b"", "")),
        Case::new(
            "POST without Content-Length",
            raw(&format!("POST {CALL}/greet HTTP/1.1"), &[HOST_LINE], ""),
        ),
        Case::new("GET call", get(&format!("{CALL}/greet"), "")),
        Case::new(
            "HEAD call",
            raw(&format!("HEAD {CALL}/greet HTTP/1.1"), &[HOST_LINE], ""),
        )
        .head(),
        Case::new(
            "DELETE call",
            raw(&format!("DELETE {CALL}/greet HTTP/1.1"), &[HOST_LINE], ""),
        ),
        Case::new(
            "lower-case method",
            raw(
                &format!("post {CALL}/add HTTP/1.1"),
                &[HOST_LINE, "Content-Length: 6"],
                "[1, 2]",
            ),
        ),
        Case::new(
            "call with a query string",
            post(
                &format!("{CALL}/greet?name=Bob&x=1"),
                br#"{"name": "Ada"}"#,
                "",
            ),
        ),
        Case::new(
            "await path",
            post("/default/hello-python/latest/await/add", b"[40, 2]", ""),
        ),
        Case::new(
            "version v1",
            post("/default/hello-python/v1/call/add", b"[1, 1]", ""),
        ),
        Case::new(
            "percent-encoded function name",
            post(&format!("{CALL}/gr%65et"), b"", ""),
        ),
        Case::new(
            "whitespace-only body",
            post(&format!("{CALL}/greet"), b" \r\n\t ", ""),
        ),
        Case::new(
            "scalar body",
            post(&format!("{CALL}/greet"), br#""Grace""#, ""),
        ),
        // Bad bodies and failing functions.
        Case::new(
            "bad JSON",
            post(&format!("{CALL}/greet"), br#"{"name": "#, ""),
        ),
        Case::new(
            "body not UTF-8",
            post(&format!("{CALL}/greet"), b"[\"\xff\xfe\"]", ""),
        ),
        Case::new(
            "JSON nested over 64 levels",
            post(&format!("{CALL}/greet"), deep.as_bytes(), ""),
        ),
        Case::new(
            "a function that raises",
            post(&format!("{CALL}/fail"), br#"["no such thing"]"#, ""),
        ),
        Case::new(
            "too few arguments",
            post(&format!("{CALL}/add"), b"[1]", ""),
        ),
        Case::new(
            "unknown named argument",
            post(&format!("{CALL}/add"), br#"{"a": 1, "c": 2}"#, ""),
        ),
        // Unknown names.
        Case::new(
            "unknown app",
            post("/default/no-such-app/latest/call/greet", b"[]", ""),
        ),
        Case::new("unknown function", post(&format!("{CALL}/nope"), b"[]", "")),
        Case::new(
            "inactive version",
            post("/default/hello-python/v9/call/add", b"[1, 1]", ""),
        ),
        Case::new(
            "unknown prefix",
            post("/other/hello-python/latest/call/add", b"[1, 1]", ""),
        ),
        Case::new("unknown path", get("/no/such/path", "")),
        Case::new(
            "function app path without a route",
            get("/hello-python/greet", ""),
        ),
        // Framing: Content-Length and Transfer-Encoding.
        Case::new(
            "Content-Length over the body limit",
            cat(&[
                format!(
                    "POST {CALL}/greet HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {}\r\n\r\n",
                    7 << 20
                )
                .as_bytes(),
                &vec![b' '; (6 << 20) + (64 << 10)],
            ]),
        ),
        Case::new(
            "Content-Length past u64",
            raw(
                &format!("POST {CALL}/add HTTP/1.1"),
                &[HOST_LINE, "Content-Length: 99999999999999999999"],
                "[1, 2]",
            ),
        ),
        Case::new(
            "Content-Length not a number",
            raw(
                &format!("POST {CALL}/add HTTP/1.1"),
                &[HOST_LINE, "Content-Length: abc"],
                "[1, 2]",
            ),
        ),
        Case::new(
            "signed Content-Length",
            raw(
                &format!("POST {CALL}/add HTTP/1.1"),
                &[HOST_LINE, "Content-Length: +6"],
                "[1, 2]",
            ),
        ),
        Case::new(
            "two different Content-Lengths",
            raw(
                &format!("POST {CALL}/add HTTP/1.1"),
                &[HOST_LINE, "Content-Length: 6", "Content-Length: 2"],
                "[1, 2]",
            ),
        ),
        Case::new(
            "two equal Content-Lengths",
            raw(
                &format!("POST {CALL}/add HTTP/1.1"),
                &[HOST_LINE, "Content-Length: 6", "Content-Length: 6"],
                "[1, 2]",
            ),
        ),
        Case::new(
            "Content-Length list",
            raw(
                &format!("POST {CALL}/add HTTP/1.1"),
                &[HOST_LINE, "Content-Length: 6, 6"],
                "[1, 2]",
            ),
        ),
        Case::new(
            "chunked body",
            raw(
                &format!("POST {CALL}/add HTTP/1.1"),
                &[HOST_LINE, "Transfer-Encoding: chunked"],
                "3\r\n[2,\r\n3\r\n 3]\r\n0\r\n\r\n",
            ),
        ),
        Case::new(
            "chunked body with a bad chunk size",
            raw(
                &format!("POST {CALL}/add HTTP/1.1"),
                &[HOST_LINE, "Transfer-Encoding: chunked"],
                "zz\r\n[2, 3]\r\n0\r\n\r\n",
            ),
        ),
        Case::new(
            "chunked and Content-Length",
            raw(
                &format!("POST {CALL}/add HTTP/1.1"),
                &[HOST_LINE, "Transfer-Encoding: chunked", "Content-Length: 6"],
                "6\r\n[2, 3]\r\n0\r\n\r\n",
            ),
        ),
        Case::new(
            "unknown Transfer-Encoding",
            raw(
                &format!("POST {CALL}/add HTTP/1.1"),
                &[HOST_LINE, "Transfer-Encoding: gzip"],
                "[2, 3]",
            ),
        ),
        Case::new(
            "body longer than its Content-Length",
            raw(
                &format!("POST {CALL}/add HTTP/1.1"),
                &[HOST_LINE, "Content-Length: 6"],
                "[1, 2]garbage\r\n\r\n",
            ),
        )
        .answers(2),
        Case::new(
            "body cut short, then the client half-closes",
            raw(
                &format!("POST {CALL}/add HTTP/1.1"),
                &[HOST_LINE, "Content-Length: 60"],
                "[1, 2]",
            ),
        )
        .then(Step::CloseWrite),
        Case::new(
            "body promised and stalled",
            raw(
                &format!("POST {CALL}/add HTTP/1.1"),
                &[HOST_LINE, "Content-Length: 60"],
                "[1, ",
            ),
        ),
        Case::new(
            "head stalled",
            format!("POST {CALL}/add HTTP/1.1\r\nHost: {HOST}\r\n"),
        ),
        // Malformed heads.
        Case::new(
            "header line without a colon",
            raw(
                &format!("POST {CALL}/add HTTP/1.1"),
                &[HOST_LINE, "X-Broken header", "Content-Length: 6"],
                "[1, 2]",
            ),
        ),
        Case::new(
            "header name with a space before the colon",
            raw(
                &format!("POST {CALL}/add HTTP/1.1"),
                &[HOST_LINE, "Content-Length : 6"],
                "[1, 2]",
            ),
        ),
        Case::new(
            "obsolete line folding",
            raw(
                &format!("POST {CALL}/add HTTP/1.1"),
                &[HOST_LINE, "X-Folded: a", " b", "Content-Length: 6"],
                "[1, 2]",
            ),
        ),
        Case::new(
            "header value not ASCII",
            post(&format!("{CALL}/add"), b"[1, 2]", "X-Name: caf\u{e9}\r\n"),
        ),
        Case::new(
            "a 20 KiB header",
            post(
                &format!("{CALL}/add"),
                b"[1, 2]",
                &format!("X-Long: {}\r\n", "a".repeat(20 << 10)),
            ),
        ),
        Case::new(
            "a 1 MiB header",
            post(
                &format!("{CALL}/add"),
                b"[1, 2]",
                &format!("X-Long: {}\r\n", "a".repeat(1 << 20)),
            ),
        ),
        Case::new(
            "100 headers",
            post(
                &format!("{CALL}/add"),
                b"[1, 2]",
                &(0..100)
                    .map(|i| format!("X-H{i}: {i}\r\n"))
                    .collect::<String>(),
            ),
        ),
        Case::new(
            "a 20 KiB path",
            post(&format!("{CALL}/{}", "a".repeat(20 << 10)), b"[]", ""),
        ),
        Case::new(
            "absolute-form target",
            post(&format!("http://{HOST}{CALL}/add"), b"[1, 2]", ""),
        ),
        Case::new(
            "no Host header",
            raw(
                &format!("POST {CALL}/add HTTP/1.1"),
                &["Content-Length: 6"],
                "[1, 2]",
            ),
        ),
        Case::new(
            "empty line before the request line",
            cat(&[b"\r\n", &post(&format!("{CALL}/add"), b"[1, 2]", "")]),
        ),
        Case::new("not HTTP", "HELLO THERE\r\n\r\n"),
        Case::new(
            "HTTP/2 version",
            raw(
                &format!("POST {CALL}/add HTTP/2.0"),
                &[HOST_LINE, "Content-Length: 6"],
                "[1, 2]",
            ),
        ),
        Case::new(
            "NUL in the path",
            raw(
                &format!("POST {CALL}/ad\0d HTTP/1.1"),
                &[HOST_LINE, "Content-Length: 6"],
                "[1, 2]",
            ),
        ),
        // Versions and connections.
        Case::new(
            "HTTP/1.0",
            raw(
                &format!("POST {CALL}/add HTTP/1.0"),
                &[HOST_LINE, "Content-Length: 6"],
                "[1, 2]",
            ),
        ),
        Case::new(
            "HTTP/1.0 keep-alive",
            raw(
                &format!("POST {CALL}/add HTTP/1.0"),
                &[HOST_LINE, "Connection: keep-alive", "Content-Length: 6"],
                "[1, 2]",
            ),
        ),
        Case::new(
            "Connection: close",
            post(&format!("{CALL}/add"), b"[1, 2]", "Connection: close\r\n"),
        ),
        Case::new(
            "Connection: close, then a pipelined request",
            cat(&[
                &post(&format!("{CALL}/add"), b"[1, 2]", "Connection: close\r\n"),
                &post(&format!("{CALL}/add"), b"[3, 4]", ""),
            ]),
        )
        .answers(2),
        Case::new(
            "Connection: keep-alive, Upgrade",
            post(
                &format!("{CALL}/add"),
                b"[1, 2]",
                "Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n",
            ),
        ),
        Case::new(
            "Expect: 100-continue",
            post(
                &format!("{CALL}/add"),
                b"[1, 2]",
                "Expect: 100-continue\r\n",
            ),
        ),
        Case::new(
            "Expect: 100-continue, body after a pause",
            raw(
                &format!("POST {CALL}/add HTTP/1.1"),
                &[HOST_LINE, "Expect: 100-continue", "Content-Length: 6"],
                "",
            ),
        )
        .then(Step::Pause(Duration::from_millis(300)))
        .then(Step::Send(b"[1, 2]".to_vec())),
        Case::new(
            "pipelined calls",
            cat(&[
                &post(&format!("{CALL}/add"), b"[1, 2]", ""),
                &post(&format!("{CALL}/greet"), br#"{"name": "Bo"}"#, ""),
            ]),
        )
        .answers(2),
        Case::new(
            "pipelined call, control route, bad call, call",
            cat(&[
                &post(&format!("{CALL}/add"), b"[1, 2]", ""),
                &get("/api/readiness", ""),
                &post(&format!("{CALL}/greet"), b"{", ""),
                &post(&format!("{CALL}/add"), b"[5, 6]", ""),
            ]),
        )
        .answers(4),
        Case::new(
            "pipelined call after a 404",
            cat(&[
                &post(&format!("{CALL}/nope"), b"[]", ""),
                &post(&format!("{CALL}/add"), b"[5, 6]", ""),
            ]),
        )
        .answers(2),
        Case::new("request split across writes", format!("POST {CALL}/a"))
            .then(Step::Pause(Duration::from_millis(100)))
            .then(Step::Send(raw(
                "dd HTTP/1.1",
                &[HOST_LINE, "Content-Length: 6"],
                "[1,",
            )))
            .then(Step::Pause(Duration::from_millis(100)))
            .then(Step::Send(b" 2]".to_vec())),
        // Async jobs and the control API (the router's on both).
        Case::new(
            "async job",
            post("/default/hello-python/latest/run/add", b"[1, 2]", ""),
        ),
        Case::new(
            "async job with bad JSON",
            post("/default/hello-python/latest/run/add", b"[1,", ""),
        ),
        Case::new("readiness", get("/api/readiness", "")),
        Case::new("API without a token", get("/api/apps", "")),
        Case::new(
            "API with a wrong token",
            get("/api/apps", "Authorization: Bearer not-the-token\r\n"),
        ),
        // Routes.
        Case::new("route", get("/routed/status", "")),
        Case::new(
            "route with a body",
            post("/routed/items", br#"{"name": "pen", "qty": 2}"#, ""),
        ),
        Case::new("route, wrong method", get("/routed/items", "")),
        Case::new("route, unknown path", get("/routed/nope", "")),
        Case::new(
            "route, bad JSON",
            post("/routed/items", br#"{"name": "#, ""),
        ),
        Case::new("route of an app with a service", get("/svc/fn", "")),
        // The http service: by path and by host name.
        Case::new("service", get("/svc/hello", "")),
        Case::new("service with a query", get("/svc/slow?ms=5", "")),
        Case::new(
            "service echo",
            post(
                "/svc/echo",
                b"hello service",
                "Content-Type: text/plain\r\n",
            ),
        ),
        Case::new(
            "service echo, chunked",
            raw(
                "POST /svc/echo HTTP/1.1",
                &[
                    HOST_LINE,
                    "Content-Type: text/plain",
                    "Transfer-Encoding: chunked",
                ],
                "5\r\nhello\r\n6\r\n chunk\r\n0\r\n\r\n",
            ),
        ),
        Case::new(
            "service, headers it sees",
            get(
                "/svc/headers",
                "X-Forwarded-For: 10.9.9.9\r\nConnection: keep-alive, x-hop\r\n\
                 x-hop: 1\r\nTE: trailers\r\n",
            ),
        ),
        Case::new("service 404", get("/svc/nope", "")),
        Case::new(
            "service, the route's path with another method",
            post("/svc/fn", b"", ""),
        ),
        Case::new(
            "service HEAD",
            raw("HEAD /svc/hello HTTP/1.1", &[HOST_LINE], ""),
        )
        .head(),
        Case::new(
            "service, Connection: close",
            get("/svc/hello", "Connection: close\r\n"),
        ),
        Case::new(
            "service, HTTP/1.0",
            raw("GET /svc/hello HTTP/1.0", &[HOST_LINE], ""),
        ),
        Case::new(
            "service, pipelined",
            cat(&[
                &get("/svc/hello", ""),
                &post("/svc/echo", b"two", ""),
                &get("/svc/nope", ""),
            ]),
        )
        .answers(3),
        Case::new(
            "service by host name",
            raw("GET /hello HTTP/1.1", &[&format!("Host: svc.{DOMAIN}")], ""),
        ),
        Case::new(
            "service by host name with a port",
            raw(
                "GET /hello HTTP/1.1",
                &[&format!("Host: svc.{DOMAIN}:8080")],
                "",
            ),
        ),
        Case::new(
            "Morel's own path on a service's host name",
            raw(
                "GET /api/readiness HTTP/1.1",
                &[&format!("Host: svc.{DOMAIN}")],
                "",
            ),
        ),
        Case::new(
            "call path on a service's host name",
            raw(
                &format!("POST {CALL}/add HTTP/1.1"),
                &[&format!("Host: SVC.{DOMAIN}"), "Content-Length: 6"],
                "[1, 2]",
            ),
        ),
        Case::new(
            "function app's host name",
            raw(
                "GET /greet HTTP/1.1",
                &[&format!("Host: hello-python.{DOMAIN}")],
                "",
            ),
        ),
        Case::new(
            "unknown app's host name",
            raw(
                "GET /hello HTTP/1.1",
                &[&format!("Host: nope.{DOMAIN}")],
                "",
            ),
        ),
        Case::new(
            "call with a service's host name",
            raw(
                &format!("POST {CALL}/add HTTP/1.1"),
                &[&format!("Host: svc.{DOMAIN}"), "Content-Length: 6"],
                "[1, 2]",
            ),
        ),
    ];
    // A slow client: the whole request one byte at a time.
    let bytes = post(&format!("{CALL}/add"), b"[7, 8]", "");
    let mut slow = Case::new("one byte at a time", Vec::new());
    slow.steps.clear();
    for b in bytes {
        slow.steps.push(Step::Send(vec![b]));
        slow.steps.push(Step::Pause(Duration::from_millis(2)));
    }
    cases.push(slow);
    cases
}

/// One answer as it came off the wire, with what legitimately differs taken out.
#[derive(Debug, PartialEq)]
struct Seen {
    /// `HTTP/1.1 200` (the reason phrase is left out).
    status_line: String,
    /// The headers that matter, names in lower case.
    headers: BTreeMap<String, String>,
    body: Body,
}

impl Seen {
    /// A 1xx answer (`100 Continue`), which a final answer follows.
    fn interim(&self) -> bool {
        self.status_line
            .split(' ')
            .nth(1)
            .is_some_and(|code| code.starts_with('1'))
    }
}

#[derive(Debug, PartialEq)]
enum Body {
    Json(Value),
    Text(String),
}

/// How the exchange ended after the answers.
#[derive(Debug, PartialEq)]
enum End {
    /// The connection stayed open after every awaited answer.
    Open,
    /// The server closed the connection (or reset it).
    Closed,
    /// An awaited answer did not come within the limit, the connection open.
    NoAnswer,
    /// The bytes were not an HTTP answer.
    Malformed(String),
}

#[derive(Debug, PartialEq)]
struct Outcome {
    answers: Vec<Seen>,
    end: End,
}

impl Outcome {
    fn render(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for (i, a) in self.answers.iter().enumerate() {
            lines.push(format!("answer {}: {}", i + 1, a.status_line));
            for (name, value) in &a.headers {
                lines.push(format!("  {name}: {value}"));
            }
            let body = match &a.body {
                Body::Json(v) => format!("json {}", short(&v.to_string())),
                Body::Text(t) => format!("text {:?}", short(t)),
            };
            lines.push(format!("  body: {body}"));
        }
        lines.push(format!("end: {:?}", self.end));
        lines
    }
}

fn short(t: &str) -> String {
    if t.len() <= 300 {
        t.to_owned()
    } else {
        let cut = (0..=300)
            .rev()
            .find(|i| t.is_char_boundary(*i))
            .unwrap_or(0);
        format!("{}… ({} bytes)", &t[..cut], t.len())
    }
}

/// Headers compared as sent (after trimming); those whose value differs per instance are
/// compared for presence only. Everything else (`date`, `server`, framing) is left out.
const COMPARED: &[&str] = &[
    "allow",
    "connection",
    "content-encoding",
    "content-type",
    "location",
    "retry-after",
    "upgrade",
    "www-authenticate",
    "x-morel-edge",
    "x-version",
];
const PRESENT: &[&str] = &["x-instance-pid", "x-morel-instance"];

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Why reading an answer stopped.
enum Stop {
    /// The connection ended before any byte of the answer.
    Closed,
    /// Nothing came within the wait.
    Quiet,
    Malformed(String),
}

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    /// One read into `buf` within `limit`: `Ok(false)` at the end of the stream (or a reset).
    async fn more(&mut self, limit: Duration) -> Result<bool, Stop> {
        let mut chunk = vec![0; 64 << 10];
        match tokio::time::timeout(limit, self.stream.read(&mut chunk)).await {
            Err(_) => Err(Stop::Quiet),
            Ok(Ok(0)) | Ok(Err(_)) => Ok(false),
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
        }
    }

    /// Reads until `buf` holds `len` bytes.
    async fn fill_to(&mut self, len: usize) -> Result<(), Stop> {
        while self.buf.len() < len {
            match self.more(IO_LIMIT).await {
                Ok(true) => {}
                Ok(false) => return Err(self.malformed("the connection ended mid-body")),
                Err(Stop::Quiet) => return Err(self.malformed("the body stopped coming")),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn line(&mut self) -> Result<String, Stop> {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..i + 2).take(i).collect();
                return Ok(String::from_utf8_lossy(&line).into_owned());
            }
            match self.more(IO_LIMIT).await {
                Ok(true) => {}
                _ => return Err(self.malformed("the connection ended mid-line")),
            }
        }
    }

    fn malformed(&self, what: &str) -> Stop {
        Stop::Malformed(format!(
            "{what}: {:?}",
            short(&String::from_utf8_lossy(&self.buf))
        ))
    }

    /// Reads one answer; waits up to `first` for its first byte.
    async fn answer(&mut self, first: Duration, head_only: bool) -> Result<Seen, Stop> {
        let head_len = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            let wait = if self.buf.is_empty() { first } else { IO_LIMIT };
            match self.more(wait).await {
                Ok(true) => {}
                Ok(false) if self.buf.is_empty() => return Err(Stop::Closed),
                Ok(false) => return Err(self.malformed("the connection ended mid-head")),
                Err(Stop::Quiet) if !self.buf.is_empty() => {
                    return Err(self.malformed("the head stopped coming"));
                }
                Err(e) => return Err(e),
            }
        };
        let head: Vec<u8> = self.buf.drain(..head_len).collect();
        let head = String::from_utf8_lossy(&head).into_owned();
        let mut lines = head.trim_end_matches("\r\n").split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        let status: u16 = match parts.next().and_then(|s| s.parse().ok()) {
            Some(s) if version.starts_with("HTTP/1.") => s,
            _ => return Err(Stop::Malformed(format!("not a status line: {head:?}"))),
        };
        let mut all: Vec<(String, String)> = Vec::new();
        for l in lines {
            let Some((name, value)) = l.split_once(':') else {
                return Err(Stop::Malformed(format!(
                    "a header line without a colon: {head:?}"
                )));
            };
            all.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
        let header = |name: &str| {
            all.iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut headers = BTreeMap::new();
        for name in COMPARED {
            let v = header(name);
            if !v.is_empty() {
                let v = if *name == "connection" {
                    v.to_ascii_lowercase()
                } else {
                    v
                };
                headers.insert((*name).to_owned(), v);
            }
        }
        for name in PRESENT {
            if all.iter().any(|(n, _)| n == name) {
                headers.insert((*name).to_owned(), "<present>".to_owned());
            }
        }
        let no_body = head_only || status < 200 || status == 204 || status == 304;
        let te = header("transfer-encoding");
        let cl = header("content-length");
        let mut body = Vec::new();
        if no_body {
        } else if te.to_ascii_lowercase().contains("chunked") {
            loop {
                let line = self.line().await?;
                let size = line.split(';').next().unwrap_or_default().trim();
                let Ok(size) = usize::from_str_radix(size, 16) else {
                    return Err(Stop::Malformed(format!("a bad chunk size line {line:?}")));
                };
                if size == 0 {
                    while !self.line().await?.is_empty() {}
                    break;
                }
                self.fill_to(size + 2).await?;
                body.extend(self.buf.drain(..size));
                self.buf.drain(..2);
            }
        } else if !cl.is_empty() {
            let Ok(n) = cl.parse::<usize>() else {
                return Err(Stop::Malformed(format!("a bad Content-Length in {head:?}")));
            };
            self.fill_to(n).await?;
            body = self.buf.drain(..n).collect();
        } else {
            // Delimited by the end of the stream.
            loop {
                match self.more(IO_LIMIT).await {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(_) => return Err(self.malformed("a close-delimited body never ended")),
                }
            }
            body = std::mem::take(&mut self.buf);
        }
        Ok(Seen {
            status_line: format!("{version} {status}"),
            headers,
            body: normalize(&body),
        })
    }
}

/// A body as compared: JSON with the values that differ per call (`id`, `pid`) replaced by
/// a marker, else the text.
fn normalize(body: &[u8]) -> Body {
    match serde_json::from_slice::<Value>(body) {
        Ok(mut v) => {
            if let Some(o) = v.as_object_mut() {
                for key in ["id", "pid"] {
                    if let Some(x) = o.get_mut(key) {
                        *x = Value::from("<varies>");
                    }
                }
            }
            Body::Json(v)
        }
        Err(_) => Body::Text(String::from_utf8_lossy(body).into_owned()),
    }
}

/// Plays `case` on a new connection to `addr` and reads what comes back.
async fn exchange(addr: &str, case: &Case) -> Outcome {
    let stream = match tokio::time::timeout(IO_LIMIT, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        other => {
            return Outcome {
                answers: Vec::new(),
                end: End::Malformed(format!("cannot connect: {other:?}")),
            };
        }
    };
    stream.set_nodelay(true).unwrap();
    let mut conn = Conn {
        stream,
        buf: Vec::new(),
    };
    for step in &case.steps {
        match step {
            // A write the server stopped reading (it answered and closed) is not an outcome:
            // what it answered is read below.
            Step::Send(bytes) => {
                let _ = tokio::time::timeout(IO_LIMIT, conn.stream.write_all(bytes)).await;
            }
            Step::Pause(d) => tokio::time::sleep(*d).await,
            Step::CloseWrite => {
                let _ = conn.stream.shutdown().await;
            }
        }
    }
    let mut answers: Vec<Seen> = Vec::new();
    let end = loop {
        let finals = answers.iter().filter(|a| !a.interim()).count();
        let waiting = finals < case.answers;
        let closing = answers
            .last()
            .and_then(|a| a.headers.get("connection"))
            .is_some_and(|c| c.contains("close"));
        let wait = if waiting || closing { IO_LIMIT } else { LINGER };
        match conn.answer(wait, case.head).await {
            Ok(a) => answers.push(a),
            Err(Stop::Closed) => break End::Closed,
            Err(Stop::Quiet) if waiting => break End::NoAnswer,
            Err(Stop::Quiet) => break End::Open,
            Err(Stop::Malformed(m)) => break End::Malformed(m),
        }
    };
    Outcome { answers, end }
}

/// A readable diff of two outcomes: both in full, differing lines marked.
fn diff(name: &str, lane: &Outcome, router: &Outcome) -> String {
    let (a, b) = (lane.render(), router.render());
    let mut out = format!("--- {name}\n");
    for i in 0..a.len().max(b.len()) {
        let (x, y) = (a.get(i), b.get(i));
        if x == y {
            out.push_str(&format!("    {}\n", x.map_or("", String::as_str)));
        } else {
            out.push_str(&format!(
                "  ! fast lane: {}\n  !  no lane:  {}\n",
                x.map_or("(nothing)", String::as_str),
                y.map_or("(nothing)", String::as_str)
            ));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fast_lane_answers_every_request_as_the_router_does() {
    let started = std::time::Instant::now();
    let envs = [
        ("MOREL_HEADER_TIMEOUT_MS", STALL_LIMIT_MS),
        ("MOREL_BODY_TIMEOUT_MS", STALL_LIMIT_MS),
    ];
    let start = |lane: &'static str| {
        let mut envs = envs.to_vec();
        envs.push(("MOREL_FAST_LANE", lane));
        MorelServer::start_with_env(
            &bin(),
            Arc::new(tempfile::tempdir().unwrap()),
            &["--domain", DOMAIN],
            &envs,
        )
    };
    let (fast, plain) = (start("1"), start("0"));
    let tmp = tempfile::tempdir().unwrap();
    let apps = app_dirs(tmp.path());
    std::thread::scope(|scope| {
        for s in [&fast, &plain] {
            let apps = &apps;
            scope.spawn(move || {
                for dir in apps {
                    let out = s.deploy(dir);
                    assert!(out.contains("is ready"), "{out}");
                }
            });
        }
    });
    eprintln!("servers up and apps deployed in {:?}", started.elapsed());

    let addr = |s: &MorelServer| s.url.strip_prefix("http://").unwrap().to_owned();
    let (fast_addr, plain_addr) = (addr(&fast), addr(&plain));
    let cases = cases();
    // Each case on its own connection to each server, both at once; eight cases at a time
    // (no case depends on another's state), so that the lingers and stalls overlap.
    let outcomes: Vec<(usize, Outcome, Outcome)> =
        futures_util::stream::iter(cases.iter().enumerate())
            .map(|(i, case)| {
                let (fast_addr, plain_addr) = (&fast_addr, &plain_addr);
                async move {
                    let (a, b) =
                        tokio::join!(exchange(fast_addr, case), exchange(plain_addr, case));
                    (i, a, b)
                }
            })
            .buffer_unordered(8)
            .collect()
            .await;
    let mut outcomes = outcomes;
    outcomes.sort_by_key(|(i, _, _)| *i);

    let mut mismatches = Vec::new();
    for (i, lane, router) in &outcomes {
        let name = cases[*i].name;
        if lane != router {
            mismatches.push(diff(name, lane, router));
        }
    }
    eprintln!(
        "{} cases, {} answered alike, in {:?}",
        cases.len(),
        cases.len() - mismatches.len(),
        started.elapsed()
    );
    assert!(
        mismatches.is_empty(),
        "{} of {} requests were answered differently with the fast lane on and off:\n{}",
        mismatches.len(),
        cases.len(),
        mismatches.join("\n")
    );
    // Sanity: the comparison saw real answers, not two servers that answered nothing alike.
    let first = &outcomes[0].1;
    assert_eq!(
        first.answers.first().map(|a| (&a.status_line, &a.body)),
        Some((&"HTTP/1.1 200".to_owned(), &Body::Json(Value::from(5)))),
        "{:?}",
        first.render()
    );
}
