//! The fast lane of `morel up`'s public listener (morel-gateway's `lane.rs` and `upstream.rs`),
//! end to end: the tests write raw HTTP/1.1 bytes on loopback TCP and parse the answers
//! themselves, so they see exactly what goes on the wire: framing, headers, keep-alive,
//! pipelining and closes, also of the router's answers after a hand-off.
//!
//! The backend is `tests/fixtures/lane-service`, a Python HTTP/1.1 server whose routes each
//! answer with one framing (length, chunked, close-delimited) and which closes a kept
//! connection idle for 0.3 s.
//!
//! Which path answered shows on the wire: the lane copies the instance's answer head as the
//! instance wrote it (`Content-Type`, as the Python server spells it), hyper writes header
//! names in lower case. The tests check it, so a lane that handed every request to the router
//! fails them instead of passing through the fallback.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use morel_test_support::{MorelServer, example};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::bin;

/// The Host header every request sends (what `X-Forwarded-Host` must repeat).
const HOST: &str = "edge.example.test:8080";
/// Bound on any one read or write; a hang fails the test rather than stalling it.
const IO_LIMIT: Duration = Duration::from_secs(30);

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lane-service")
}

/// `morel up` with the lane's backend deployed (one instance, ready).
async fn lane_server() -> MorelServer {
    let s = MorelServer::start(&bin());
    deploy_backend(&s);
    s
}

fn deploy_backend(s: &MorelServer) {
    let out = s.deploy(&fixture());
    assert!(out.contains("lane v1 is ready"), "{out}");
}

/// The id of the backend's one ready instance (what `x-morel-instance` must name).
async fn instance_id(s: &MorelServer) -> String {
    let (status, rows) = s.get("/api/apps/lane/instances").await;
    assert_eq!(status, 200, "{rows}");
    let ready: Vec<&Value> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["state"] == "ready")
        .collect();
    assert_eq!(ready.len(), 1, "{rows}");
    ready[0]["id"].as_str().unwrap().to_owned()
}

fn get(path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {HOST}\r\n{extra}\r\n").into_bytes()
}

/// A POST with a Content-Length; `extra` are header lines, each ending in CRLF.
fn post(path: &str, body: &[u8], extra: &str) -> Vec<u8> {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {}\r\n{extra}\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// One answer as it came off the wire.
struct Answer {
    status: u16,
    /// The head as sent, status line to the blank line.
    head: String,
    /// Names lowercased, in the order sent.
    headers: Vec<(String, String)>,
    /// The body, de-chunked when it was chunked.
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        let mut values = self.headers.iter().filter(|(n, _)| n == name);
        let first = values.next().map(|(_, v)| v.as_str());
        assert!(values.next().is_none(), "{name} sent twice:\n{}", self.head);
        first
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}{}", self.head, self.text()))
    }

    /// The instance's head came through as the instance wrote it: the lane answered.
    fn answered_by_lane(&self) -> bool {
        self.head.contains("\r\nContent-Type: ")
    }

    /// Header names in lower case: hyper and the router answered.
    fn answered_by_hyper(&self) -> bool {
        self.head.contains("\r\ncontent-type: ")
    }

    /// An edge answer from the backend's instance: 200, marked by the edge, naming `instance`.
    fn assert_edge(&self, instance: &str) {
        assert_eq!(self.status, 200, "{}{}", self.head, self.text());
        assert_eq!(self.header("x-morel-edge"), Some("1"), "{}", self.head);
        assert_eq!(
            self.header("x-morel-instance"),
            Some(instance),
            "{}",
            self.head
        );
    }
}

/// A client connection speaking raw HTTP/1.1.
struct Wire {
    stream: TcpStream,
    /// Bytes read and not yet taken by an answer.
    buf: Vec<u8>,
}

impl Wire {
    async fn connect(s: &MorelServer) -> Wire {
        let addr = s.url.strip_prefix("http://").unwrap();
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Wire {
            stream,
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        tokio::time::timeout(IO_LIMIT, self.stream.write_all(bytes))
            .await
            .expect("the server did not take the request within the limit")
            .unwrap();
    }

    /// One read into `buf`; 0 at the end of the stream.
    async fn more(&mut self) -> usize {
        let mut chunk = vec![0; 64 << 10];
        let n = tokio::time::timeout(IO_LIMIT, self.stream.read(&mut chunk))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "nothing more within {IO_LIMIT:?}; read so far: {:?}",
                    String::from_utf8_lossy(&self.buf)
                )
            })
            .unwrap();
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }

    /// Reads until `buf` holds `len` bytes; the stream must not end first.
    async fn fill_to(&mut self, len: usize) {
        while self.buf.len() < len {
            assert!(
                self.more().await > 0,
                "the connection closed mid-answer: {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        }
    }

    /// Takes one CRLF-ended line (without the CRLF).
    async fn line(&mut self) -> String {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..i + 2).take(i).collect();
                return String::from_utf8(line).unwrap();
            }
            assert!(
                self.more().await > 0,
                "the connection closed mid-line: {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        }
    }

    /// Reads one whole answer, framed as its head says (RFC 9112 §6.3): chunked, by
    /// Content-Length, or up to the end of the stream.
    async fn answer(&mut self) -> Answer {
        let head_len = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            assert!(
                self.more().await > 0,
                "the connection closed before an answer head: {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        };
        let head = String::from_utf8(self.buf.drain(..head_len).collect()).unwrap();
        let mut lines = head.trim_end_matches("\r\n").split("\r\n");
        let status_line = lines.next().unwrap();
        let mut parts = status_line.splitn(3, ' ');
        assert_eq!(parts.next(), Some("HTTP/1.1"), "{head}");
        let status: u16 = parts.next().unwrap().parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (name, value) = l
                    .split_once(':')
                    .unwrap_or_else(|| panic!("a malformed header line {l:?} in:\n{head}"));
                assert_eq!(name, name.trim(), "{head}");
                (name.to_ascii_lowercase(), value.trim().to_owned())
            })
            .collect();
        let mut answer = Answer {
            status,
            head,
            headers,
            body: Vec::new(),
        };
        let chunked = answer.header("transfer-encoding");
        let length = answer.header("content-length");
        if let Some(coding) = chunked {
            assert_eq!(coding, "chunked", "{}", answer.head);
            assert!(length.is_none(), "both framings:\n{}", answer.head);
            loop {
                let line = self.line().await;
                let size = line.split(';').next().unwrap().trim();
                let size = usize::from_str_radix(size, 16)
                    .unwrap_or_else(|_| panic!("a malformed chunk size line {line:?}"));
                if size == 0 {
                    // Trailers, up to the blank line.
                    while !self.line().await.is_empty() {}
                    break;
                }
                self.fill_to(size + 2).await;
                answer.body.extend(self.buf.drain(..size));
                let end: Vec<u8> = self.buf.drain(..2).collect();
                assert_eq!(end, b"\r\n", "a chunk's data does not end with CRLF");
            }
        } else if let Some(length) = length {
            let length: usize = length.parse().unwrap();
            self.fill_to(length).await;
            answer.body = self.buf.drain(..length).collect();
        } else {
            while self.more().await > 0 {}
            answer.body = std::mem::take(&mut self.buf);
        }
        answer
    }

    /// Nothing was sent beyond the answers read so far.
    fn assert_nothing_extra(&self) {
        assert!(
            self.buf.is_empty(),
            "bytes after the last answer: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
    }

    /// The server closed the connection: no more bytes, then the end of the stream.
    async fn assert_closed(&mut self) {
        self.assert_nothing_extra();
        let mut chunk = [0; 1024];
        let read = tokio::time::timeout(IO_LIMIT, self.stream.read(&mut chunk))
            .await
            .expect("the server kept the connection open");
        match read {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Ok(n) => panic!(
                "bytes after the last answer: {:?}",
                String::from_utf8_lossy(&chunk[..n])
            ),
            Err(e) => panic!("reading for the close: {e}"),
        }
    }
}

/// The request headers the instance saw, from the echo route's `x-seen-headers`.
fn seen_by_echo(a: &Answer) -> Value {
    serde_json::from_str(a.header("x-seen-headers").unwrap()).unwrap()
}

/// Lane, lane (chunked), a hand-off to the router, then hyper: all on one connection, in
/// order, each answer whole and framed so the next one parses.
#[tokio::test(flavor = "multi_thread")]
async fn one_keep_alive_connection_carries_lane_answers_a_hand_off_and_hyper_answers_after_it() {
    let s = lane_server().await;
    let instance = instance_id(&s).await;
    let mut w = Wire::connect(&s).await;

    w.send(&post("/lane/echo", b"first", "")).await;
    let a = w.answer().await;
    a.assert_edge(&instance);
    assert!(a.answered_by_lane(), "not the lane's answer:\n{}", a.head);
    assert_eq!(a.text(), "first");
    assert_eq!(a.header("content-length"), Some("5"));
    assert_eq!(seen_by_echo(&a)["x-forwarded-prefix"], "/lane");
    w.assert_nothing_extra();

    w.send(&get("/lane/chunked", "")).await;
    let a = w.answer().await;
    a.assert_edge(&instance);
    assert!(a.answered_by_lane(), "not the lane's answer:\n{}", a.head);
    assert_eq!(a.header("transfer-encoding"), Some("chunked"));
    assert_eq!(a.text(), "chunk-0 chunk-1 chunk-2 chunk-3 chunk-4 ");
    w.assert_nothing_extra();

    // Not the lane's: the rest of the connection goes to hyper and the router.
    w.send(&get("/api/readiness", "")).await;
    let a = w.answer().await;
    assert_eq!(a.status, 200, "{}{}", a.head, a.text());
    assert_eq!(a.json(), json!({"status": "ready"}));
    w.assert_nothing_extra();

    w.send(&post("/lane/echo", b"after the hand-off", "")).await;
    let a = w.answer().await;
    a.assert_edge(&instance);
    assert!(a.answered_by_hyper(), "not hyper's answer:\n{}", a.head);
    assert_eq!(a.text(), "after the hand-off");
    assert_eq!(seen_by_echo(&a)["x-forwarded-prefix"], "/lane");
    w.assert_nothing_extra();
}

/// Requests written in one go are answered in order, each whole; a hand-off in the middle of
/// a pipeline replays the bytes the lane had already read, so nothing is lost or reordered.
#[tokio::test(flavor = "multi_thread")]
async fn pipelined_requests_are_answered_in_order_also_across_a_hand_off() {
    let s = lane_server().await;
    let instance = instance_id(&s).await;
    let mut w = Wire::connect(&s).await;

    let mut batch = post("/lane/echo", b"one", "");
    batch.extend(get("/lane/chunked", ""));
    batch.extend(post("/lane/echo", b"three", ""));
    w.send(&batch).await;
    let (a, b, c) = (w.answer().await, w.answer().await, w.answer().await);
    for x in [&a, &b, &c] {
        x.assert_edge(&instance);
        assert!(x.answered_by_lane(), "not the lane's answer:\n{}", x.head);
    }
    assert_eq!(a.text(), "one");
    assert_eq!(b.text(), "chunk-0 chunk-1 chunk-2 chunk-3 chunk-4 ");
    assert_eq!(c.text(), "three");
    // One after the other on the connection the lane keeps to the instance.
    let conn = a.header("x-conn");
    assert!(conn.is_some(), "{}", a.head);
    assert_eq!(b.header("x-conn"), conn, "{}", b.head);
    assert_eq!(c.header("x-conn"), conn, "{}", c.head);
    w.assert_nothing_extra();

    let mut batch = post("/lane/echo", b"four", "");
    batch.extend(get("/api/readiness", ""));
    batch.extend(post("/lane/echo", b"six", ""));
    w.send(&batch).await;
    let a = w.answer().await;
    a.assert_edge(&instance);
    assert!(a.answered_by_lane(), "not the lane's answer:\n{}", a.head);
    assert_eq!(a.text(), "four");
    let b = w.answer().await;
    assert_eq!(b.status, 200, "{}{}", b.head, b.text());
    assert_eq!(b.json(), json!({"status": "ready"}));
    let c = w.answer().await;
    c.assert_edge(&instance);
    assert!(c.answered_by_hyper(), "not hyper's answer:\n{}", c.head);
    assert_eq!(c.text(), "six");
    w.assert_nothing_extra();
}

/// The instance gets the forwarding headers the edge sets (the client's own
/// `X-Forwarded-Proto/-Host/-Prefix` replaced, `X-Forwarded-For` extended) and none of the
/// hop-by-hop headers, including those the client's `Connection` names.
#[tokio::test(flavor = "multi_thread")]
async fn the_instance_sees_forwarding_headers_and_no_hop_by_hop_headers() {
    let s = lane_server().await;
    let instance = instance_id(&s).await;
    let mut w = Wire::connect(&s).await;

    let extra = "X-Forwarded-For: 10.9.9.9\r\nConnection: keep-alive, x-hop\r\nx-hop: 1\r\n\
                 Keep-Alive: timeout=5\r\nTE: trailers\r\nX-Forwarded-Proto: https\r\n\
                 X-Forwarded-Prefix: /evil\r\nX-Forwarded-Host: evil.example\r\nx-app: kept\r\n";
    w.send(&get("/lane/headers?q=1", extra)).await;
    let a = w.answer().await;
    a.assert_edge(&instance);
    assert!(a.answered_by_lane(), "not the lane's answer:\n{}", a.head);
    assert_eq!(a.header("x-seen-path"), Some("/headers?q=1"));
    let seen = a.json();
    assert_eq!(seen["x-forwarded-for"], "10.9.9.9, 127.0.0.1", "{seen}");
    assert_eq!(seen["x-forwarded-prefix"], "/lane", "{seen}");
    assert_eq!(seen["x-forwarded-proto"], "http", "{seen}");
    assert_eq!(seen["x-forwarded-host"], HOST, "{seen}");
    assert_eq!(seen["host"], HOST, "{seen}");
    assert_eq!(seen["x-app"], "kept", "{seen}");
    for hop in ["connection", "x-hop", "keep-alive", "te"] {
        assert!(
            seen.get(hop).is_none(),
            "{hop} reached the instance: {seen}"
        );
    }
    // The hop-by-hop headers were the client's connection's own: it stays open.
    w.send(&post("/lane/echo", b"still open", "")).await;
    let a = w.answer().await;
    a.assert_edge(&instance);
    assert_eq!(a.text(), "still open");
    let seen = seen_by_echo(&a);
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1", "{seen}");
    assert_eq!(seen["x-forwarded-host"], HOST, "{seen}");
}

/// A 1 MiB body (larger than the lane holds in memory: streamed to the instance) and a
/// 10 KiB one (held) reach the instance whole, and the connection stays in step after both,
/// also with a request pipelined right behind the streamed body.
#[tokio::test(flavor = "multi_thread")]
async fn a_streamed_one_mib_body_and_a_held_ten_kib_body_arrive_whole() {
    let s = lane_server().await;
    let instance = instance_id(&s).await;
    let mut w = Wire::connect(&s).await;

    let big: Vec<u8> = (0..1u32 << 20).map(|i| (i * 7 % 251) as u8).collect();
    let small: Vec<u8> = (0..10u32 << 10).map(|i| (i % 13) as u8 + b'a').collect();
    for body in [&big, &small] {
        w.send(&post("/lane/big", body, "")).await;
        let a = w.answer().await;
        a.assert_edge(&instance);
        assert!(a.answered_by_lane(), "not the lane's answer:\n{}", a.head);
        assert_eq!(
            a.json(),
            json!({"length": body.len(), "sha256": hex::encode(Sha256::digest(body))})
        );
        w.assert_nothing_extra();
    }

    let mut batch = post("/lane/big", &big, "");
    batch.extend(post("/lane/echo", b"right behind", ""));
    w.send(&batch).await;
    let a = w.answer().await;
    a.assert_edge(&instance);
    assert_eq!(a.json()["sha256"], hex::encode(Sha256::digest(&big)));
    let b = w.answer().await;
    b.assert_edge(&instance);
    assert!(b.answered_by_lane(), "not the lane's answer:\n{}", b.head);
    assert_eq!(b.text(), "right behind");
    w.assert_nothing_extra();
}

/// An answer with neither Content-Length nor chunking ends where the instance closes: it
/// arrives whole, says `connection: close`, and the edge then closes the client's connection.
#[tokio::test(flavor = "multi_thread")]
async fn a_close_delimited_answer_arrives_whole_then_the_connection_closes() {
    let s = lane_server().await;
    let instance = instance_id(&s).await;
    let mut w = Wire::connect(&s).await;

    // Kept alive up to then.
    w.send(&post("/lane/echo", b"before", "")).await;
    let a = w.answer().await;
    a.assert_edge(&instance);
    assert_eq!(a.text(), "before");

    w.send(&get("/lane/close", "")).await;
    let a = w.answer().await;
    a.assert_edge(&instance);
    assert!(a.answered_by_lane(), "not the lane's answer:\n{}", a.head);
    assert_eq!(a.header("content-length"), None, "{}", a.head);
    assert_eq!(a.header("transfer-encoding"), None, "{}", a.head);
    assert_eq!(a.header("connection"), Some("close"), "{}", a.head);
    assert_eq!(a.text(), "part-0;part-1;part-2;");
    w.assert_closed().await;
}

/// The instance closes a connection idle for 0.3 s; the lane keeps its connections for
/// longer (`upstream::IDLE_FOR`), so the next request finds its kept connection closed and
/// must go again on a fresh one rather than fail.
#[tokio::test(flavor = "multi_thread")]
async fn a_kept_connection_the_instance_closed_is_retried_on_a_fresh_one() {
    let s = lane_server().await;
    let instance = instance_id(&s).await;
    // One client connection: its requests are served on one thread, with one pool.
    let mut w = Wire::connect(&s).await;
    w.send(&post("/lane/echo", b"warm", "")).await;
    let a = w.answer().await;
    a.assert_edge(&instance);
    let mut conn = a.header("x-conn").unwrap().to_owned();

    for (i, req) in [
        post("/lane/echo", b"after idle", ""),
        get("/lane/headers", ""),
    ]
    .into_iter()
    .enumerate()
    {
        // Not a wait for state: the idle time is what makes the kept connection stale.
        tokio::time::sleep(Duration::from_secs(1)).await;
        w.send(&req).await;
        let a = w.answer().await;
        a.assert_edge(&instance);
        assert!(a.answered_by_lane(), "not the lane's answer:\n{}", a.head);
        if i == 0 {
            assert_eq!(a.text(), "after idle");
        } else {
            assert_eq!(a.json()["x-forwarded-prefix"], "/lane");
        }
        // The kept connection was closed by the instance: this one is new.
        let now = a.header("x-conn").unwrap().to_owned();
        assert_ne!(
            now, conn,
            "answered on the connection the instance had closed"
        );
        conn = now;
    }
    // A new client connection after the idle time is answered too.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut w = Wire::connect(&s).await;
    w.send(&post("/lane/echo", b"new client", "")).await;
    let a = w.answer().await;
    a.assert_edge(&instance);
    assert_eq!(a.text(), "new client");
}

/// Calls answered by the lane on a raw keep-alive connection: the call's JSON with its
/// headers. The lane answered them: an edge request after them is still the lane's, and a
/// hand-off is for the rest of a connection. An unknown function is the router's 404.
#[tokio::test(flavor = "multi_thread")]
async fn function_calls_are_answered_by_the_lane_and_an_unknown_function_by_the_router() {
    let s = lane_server().await;
    let out = s.deploy(&example("hello-python"));
    assert!(out.contains("hello-python v1 is ready"), "{out}");
    let instance = instance_id(&s).await;
    let call = |func: &str, body: &str, extra: &str| {
        post(
            &format!("/default/hello-python/latest/call/{func}"),
            body.as_bytes(),
            &format!("Content-Type: application/json\r\n{extra}"),
        )
    };
    let assert_call = |a: &Answer, want: Value| {
        assert_eq!(a.status, 200, "{}{}", a.head, a.text());
        assert_eq!(a.header("content-type"), Some("application/json"));
        assert_eq!(a.header("x-morel-edge"), Some("1"));
        assert_eq!(
            a.header("content-length"),
            Some(a.body.len().to_string().as_str())
        );
        assert_eq!(a.json(), want);
    };
    let mut w = Wire::connect(&s).await;

    w.send(&call("add", "[2, 3]", "")).await;
    assert_call(&w.answer().await, json!(5));
    w.send(&call("greet", r#"{"name": "Ada"}"#, "")).await;
    assert_call(&w.answer().await, json!({"message": "Hello, Ada!"}));
    w.send(&post("/lane/echo", b"between calls", "")).await;
    let a = w.answer().await;
    a.assert_edge(&instance);
    assert!(
        a.answered_by_lane(),
        "the calls before were handed off:\n{}",
        a.head
    );

    w.send(&call("nope", "[]", "")).await;
    let a = w.answer().await;
    assert_eq!(a.status, 404, "{}{}", a.head, a.text());
    assert_eq!(a.header("content-type"), Some("application/json"));
    let body = a.json();
    assert_eq!(body["type"], "NotFound", "{body}");
    assert!(body["error"].as_str().unwrap().contains("nope"), "{body}");
    // The router serves the connection on.
    w.send(&call("add", "[40, 2]", "")).await;
    assert_call(&w.answer().await, json!(42));
    w.assert_nothing_extra();

    // A call asking for the close is answered, says so, and the connection closes.
    let mut w = Wire::connect(&s).await;
    w.send(&call("add", "[1, 1]", "Connection: close\r\n"))
        .await;
    let a = w.answer().await;
    assert_call(&a, json!(2));
    assert_eq!(a.header("connection"), Some("close"), "{}", a.head);
    w.assert_closed().await;
}

/// `Connection: close` from the client: the edge answer says `connection: close`, and the
/// connection closes after it, without answering a request pipelined behind it.
#[tokio::test(flavor = "multi_thread")]
async fn connection_close_from_the_client_is_answered_then_the_connection_closes() {
    let s = lane_server().await;
    let instance = instance_id(&s).await;

    let mut w = Wire::connect(&s).await;
    w.send(&post("/lane/echo", b"last", "Connection: close\r\n"))
        .await;
    let a = w.answer().await;
    a.assert_edge(&instance);
    assert!(a.answered_by_lane(), "not the lane's answer:\n{}", a.head);
    assert_eq!(a.header("connection"), Some("close"), "{}", a.head);
    assert_eq!(a.text(), "last");
    w.assert_closed().await;

    let mut w = Wire::connect(&s).await;
    let mut batch = get("/lane/chunked", "Connection: close\r\n");
    batch.extend(post("/lane/echo", b"never answered", ""));
    w.send(&batch).await;
    let a = w.answer().await;
    a.assert_edge(&instance);
    assert_eq!(a.header("connection"), Some("close"), "{}", a.head);
    assert_eq!(a.text(), "chunk-0 chunk-1 chunk-2 chunk-3 chunk-4 ");
    w.assert_closed().await;
}

/// Several kept connections to one instance all gone stale: a request must still be
/// answered, as hyper's pool (`MOREL_FAST_LANE=0`) answers it.
#[tokio::test(flavor = "multi_thread")]
async fn many_stale_kept_connections_do_not_make_a_request_fail() {
    // One serving thread, so every connection to the instance is in the same pool.
    let s = MorelServer::start_with_env(
        &bin(),
        Arc::new(tempfile::tempdir().unwrap()),
        &[],
        &[("MOREL_HTTP_THREADS", "1")],
    );
    deploy_backend(&s);
    let instance = instance_id(&s).await;
    // Four requests at once: four connections to the instance, kept afterwards.
    let mut clients = Vec::new();
    for _ in 0..4 {
        let mut w = Wire::connect(&s).await;
        w.send(&get("/lane/slow?ms=300", "")).await;
        clients.push(w);
    }
    for w in &mut clients {
        w.answer().await.assert_edge(&instance);
    }
    // Not a wait for state: the idle time is what makes the kept connections stale.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut w = Wire::connect(&s).await;
    w.send(&post("/lane/echo", b"after idle", "")).await;
    let a = w.answer().await;
    a.assert_edge(&instance);
    assert_eq!(a.text(), "after idle");
}

/// `Content-Length: +5` is not a Content-Length (RFC 9110 §8.6: `1*DIGIT`); hyper answers
/// 400, and the lane must not answer otherwise (nor forward the header as it came).
#[tokio::test(flavor = "multi_thread")]
async fn a_signed_content_length_is_refused_as_the_router_refuses_it() {
    let s = lane_server().await;
    let mut w = Wire::connect(&s).await;
    w.send(
        format!("POST /lane/echo HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: +5\r\n\r\nhello")
            .as_bytes(),
    )
    .await;
    let a = w.answer().await;
    assert_eq!(a.status, 400, "{}{}", a.head, a.text());
}

/// `morel_connections_moved_total` from `/metrics`.
async fn connections_moved(s: &MorelServer) -> u64 {
    let m = crate::observe::scrape(s).await;
    m["morel_connections_moved_total"] as u64
}

/// Two serving threads and one Node worker, whose replies are read on one of them: of two
/// keep-alive connections (dealt one to each thread), the one on the other thread moves to the
/// worker's thread after its eighth call, exactly once, and both go on being answered, in
/// order, on the same TCP connections.
#[tokio::test(flavor = "multi_thread")]
async fn a_connection_moves_to_the_thread_that_reads_its_workers_replies() {
    let dirs = Arc::new(tempfile::tempdir().unwrap());
    let s = MorelServer::start_with_env(&bin(), dirs, &[], &[("MOREL_HTTP_THREADS", "2")]);
    let out = s.deploy(&example("hello-node"));
    assert!(out.contains("hello-node v1 is ready"), "{out}");
    let before = connections_moved(&s).await;
    let call = |a: u32| {
        post(
            "/default/hello-node/latest/call/add",
            format!("[{a}, 1]").as_bytes(),
            "Content-Type: application/json\r\n",
        )
    };
    // Accepted one after the other, so dealt to different threads.
    let mut wires = [Wire::connect(&s).await, Wire::connect(&s).await];
    for i in 0..20u32 {
        for (k, w) in wires.iter_mut().enumerate() {
            let a = 100 * k as u32 + i;
            w.send(&call(a)).await;
            let answer = w.answer().await;
            assert_eq!(answer.status, 200, "{}{}", answer.head, answer.text());
            assert_eq!(answer.json(), json!(a + 1), "connection {k}, call {i}");
        }
    }
    for w in &wires {
        w.assert_nothing_extra();
    }
    assert_eq!(
        connections_moved(&s).await - before,
        1,
        "one of the two connections moves, once"
    );
}

/// An answer the router gives before reading a large request body to its end (a refusal
/// without a token, a 404, a 413) says `Connection: close` and closes: the unread rest stands
/// where the next request would, so a client that kept the connection would fail its next
/// request on it. A small unread body is read after the answer and the connection kept, as is
/// one read before it.
#[tokio::test(flavor = "multi_thread")]
async fn an_answer_given_before_a_large_body_was_read_closes_the_connection() {
    let s = MorelServer::start(&bin());
    let out = s.deploy(&example("hello-python"));
    assert!(out.contains("hello-python v1 is ready"), "{out}");
    // Each head promises 7 MiB and less is sent: 64 KiB, or for the 413 64 KiB more than the
    // 6 MiB a call may take (the router reads that far before it refuses).
    let promised = 7usize << 20;
    for (path, sent, status, kind) in [
        ("/api/package/create", 64 << 10, 401, "Unauthorized"),
        (
            "/default/no-such-app/latest/call/greet",
            64 << 10,
            404,
            "NotFound",
        ),
        (
            "/default/hello-python/latest/call/greet",
            (6 << 20) + (64 << 10),
            413,
            "PayloadTooLarge",
        ),
    ] {
        let mut w = Wire::connect(&s).await;
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n\
             Content-Length: {promised}\r\n\r\n"
        )
        .into_bytes();
        req.extend(std::iter::repeat_n(b' ', sent));
        w.send(&req).await;
        let a = w.answer().await;
        assert_eq!(a.status, status, "{path}: {}{}", a.head, a.text());
        assert_eq!(a.json()["type"], kind, "{path}: {}", a.text());
        assert_eq!(a.header("connection"), Some("close"), "{path}: {}", a.head);
        w.assert_closed().await;
    }

    // Refused unread but small, or read to its end and then answered: the connection carries
    // the next request.
    let auth = format!("Authorization: Bearer {}\r\n", s.token);
    let mut w = Wire::connect(&s).await;
    w.send(&post(
        "/api/deploy/create",
        br#"{"suffix": "sneaky"}"#,
        "Content-Type: application/json\r\n",
    ))
    .await;
    let a = w.answer().await;
    assert_eq!(a.status, 401, "{}{}", a.head, a.text());
    assert_eq!(a.header("connection"), None, "{}", a.head);
    w.send(&post(
        "/api/deploy/create",
        br#"{"suffix": "no-such-app"}"#,
        &format!("{auth}Content-Type: application/json\r\n"),
    ))
    .await;
    let a = w.answer().await;
    assert_eq!(a.status, 404, "{}{}", a.head, a.text());
    assert_eq!(a.header("connection"), None, "{}", a.head);
    w.send(&get("/api/inspect", &auth)).await;
    let a = w.answer().await;
    assert_eq!(a.status, 200, "{}{}", a.head, a.text());
    assert_eq!(a.header("connection"), None, "{}", a.head);
}
