//! The lane's half of the edge: one HTTP/1.1 exchange with a ready instance of an http
//! service, over a pooled connection, with the answer copied back to the client as it comes.
//!
//! It keeps the edge's rules (`edge.rs`): hop-by-hop headers are dropped both ways,
//! `X-Forwarded-For/-Host/-Proto/-Prefix` are set, answers carry `X-Morel-Edge` and
//! `X-Morel-Instance`, the instance's in-flight guard is held until the last byte of the
//! answer, no ready instance within [`NO_INSTANCE_WAIT`] is a 503, the per-request timeout a
//! 504 and a failed instance a 502.
//!
//! Connections to instances are kept per serving thread (a socket belongs to the runtime that
//! opened it) for [`IDLE_FOR`] after their last answer, and checked before reuse: one the
//! instance has closed meanwhile is dropped. If one is closed just as a request goes out, the
//! request is sent again on a new connection when it may be repeated (an idempotent method,
//! and a body held in memory, up to [`RETRY_BODY`]); otherwise the answer is a 502, as the
//! instance may have acted on it. A larger body streams straight through on a new connection.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use morel_agent::HttpService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::NO_INSTANCE_WAIT;
use crate::edge::is_hop_by_hop;
use crate::lane::{answer, push_date, read_some, read_to, status_line};

/// How long a connection to an instance is kept after its last answer. Shorter than the usual
/// keep-alive of HTTP servers (Node and uvicorn: 5 s), so the instance rarely closes it first.
pub const IDLE_FOR: Duration = Duration::from_secs(4);
/// Connections kept per instance and serving thread.
const MAX_IDLE: usize = 64;
/// Request bodies up to this size are read whole before sending, so they can be sent again.
pub const RETRY_BODY: usize = 64 << 10;
/// Longest answer head read from an instance.
const MAX_ANSWER_HEAD: usize = 64 << 10;
const MAX_HEADERS: usize = 100;
/// Connects to instances that take longer than this count as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

thread_local! {
    static IDLE: RefCell<HashMap<SocketAddr, Vec<(TcpStream, Instant)>>> =
        RefCell::new(HashMap::new());
}

/// A connection to an instance and whether it was kept from an earlier request.
struct Conn {
    stream: TcpStream,
    addr: SocketAddr,
    reused: bool,
}

async fn checkout(addr: SocketAddr, fresh: bool) -> io::Result<Conn> {
    if let Some(stream) = kept(addr).filter(|_| !fresh) {
        return Ok(Conn {
            stream,
            addr,
            reused: true,
        });
    }
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(Conn {
        stream,
        addr,
        reused: false,
    })
}

/// The most recently used kept connection to `addr` that is still open.
fn kept(addr: SocketAddr) -> Option<TcpStream> {
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let list = idle.get_mut(&addr)?;
        while let Some((stream, since)) = list.pop() {
            if since.elapsed() >= IDLE_FOR {
                continue;
            }
            // A kept connection must have nothing to read: an end of stream means the
            // instance closed it, bytes would be an answer nobody asked for.
            let mut probe = [0u8; 1];
            match stream.try_read(&mut probe) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Some(stream),
                _ => continue,
            }
        }
        None
    })
}

/// Drops this thread's kept connections to `addr` (after one of them turned out closed).
fn forget(addr: SocketAddr) {
    IDLE.with(|idle| idle.borrow_mut().remove(&addr));
}

fn checkin(conn: Conn) {
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let list = idle.entry(conn.addr).or_default();
        // Ones idle for too long are dropped here too, so a pool that is no longer
        // used does not hold them.
        list.retain(|(_, since)| since.elapsed() < IDLE_FOR);
        if list.len() < MAX_IDLE {
            list.push((conn.stream, Instant::now()));
        }
    });
}

/// The client's request head as the instance gets it: `method target HTTP/1.1`, the client's
/// headers without hop-by-hop ones, and the forwarding headers (the same as `edge.rs` sets).
pub(crate) fn request_head(
    method: &str,
    target: &str,
    headers: &[httparse::Header],
    client_ip: IpAddr,
    prefix: Option<&str>,
) -> Vec<u8> {
    let named = connection_named(headers);
    let has_host = headers.iter().any(|h| h.name.eq_ignore_ascii_case("host"));
    let mut out = Vec::with_capacity(256 + headers.len() * 32);
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut earlier_hops: Option<&[u8]> = None;
    let mut host: Option<&[u8]> = None;
    for h in headers {
        let n = h.name;
        if is_hop_by_hop(n) || named.iter().any(|x| x.eq_ignore_ascii_case(n)) {
            continue;
        }
        if n.eq_ignore_ascii_case("x-forwarded-for") {
            earlier_hops.get_or_insert(h.value);
            continue;
        }
        if n.eq_ignore_ascii_case("x-forwarded-proto")
            || (has_host && n.eq_ignore_ascii_case("x-forwarded-host"))
            || (prefix.is_some() && n.eq_ignore_ascii_case("x-forwarded-prefix"))
        {
            continue;
        }
        if n.eq_ignore_ascii_case("host") {
            host.get_or_insert(h.value);
        }
        push_header(&mut out, n.as_bytes(), h.value);
    }
    out.extend_from_slice(b"x-forwarded-for: ");
    let earlier = earlier_hops
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::trim)
        .filter(|v| !v.is_empty());
    if let Some(earlier) = earlier {
        out.extend_from_slice(earlier.as_bytes());
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(client_ip.to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(host) = host {
        push_header(&mut out, b"x-forwarded-host", host);
    }
    out.extend_from_slice(b"x-forwarded-proto: http\r\n");
    if let Some(p) = prefix {
        push_header(&mut out, b"x-forwarded-prefix", p.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Header names a `Connection` header lists: hop-by-hop for this message. Never
/// `Content-Length`: the lane sends the body on framed by it, so it must reach the other side
/// (dropped, the body would be read there as the start of the next message).
fn connection_named<'a>(headers: &[httparse::Header<'a>]) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .filter_map(|h| std::str::from_utf8(h.value).ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|n| !n.is_empty() && !n.eq_ignore_ascii_case("content-length"))
        .collect()
}

/// Why an exchange with an instance failed before its answer began.
enum Failed {
    /// Nothing was answered on a kept connection: it was closed before the request reached
    /// the instance, so the request can go again.
    Stale(io::Error),
    Io(io::Error),
}

/// How an answer's body ends.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Framing {
    Empty,
    Length(u64),
    Chunked,
    /// At the end of the stream: the client's connection is closed after it.
    UntilClose,
}

/// An answer head, rewritten for the client.
struct AnswerHead {
    /// The head to send the client.
    head: Vec<u8>,
    framing: Framing,
    /// The instance keeps the connection open after this answer.
    reusable: bool,
    /// Bytes of the answer's head in the read buffer.
    len: usize,
}

/// One request for an instance, as the lane planned it.
pub(crate) struct Outgoing<'a> {
    /// The request head as the instance gets it.
    pub head: &'a [u8],
    /// Where the client's head ends in the read buffer; the body follows it.
    pub head_len: usize,
    pub body_len: usize,
    /// The client asked for its connection to be closed after the answer.
    pub close: bool,
    /// The method may be repeated (RFC 9110 §9.2.2).
    pub idempotent: bool,
}

/// Forwards one planned request (the client's head at `buf[..head_len]`, then its body) to a
/// ready instance of `svc` and copies the answer to `client`. False when the client's
/// connection cannot serve another request.
pub(crate) async fn forward(
    client: &mut TcpStream,
    buf: &mut Vec<u8>,
    svc: &HttpService,
    req: &Outgoing<'_>,
) -> bool {
    let Outgoing {
        head_len,
        body_len,
        close,
        idempotent,
        ..
    } = *req;
    let held = body_len <= RETRY_BODY;
    // A larger body streams through, so it cannot be sent twice: it goes on a new connection.
    let mut fresh = !held;
    if held && let Err(e) = read_to(client, buf, head_len + body_len).await {
        if e.kind() == std::io::ErrorKind::TimedOut {
            let body = crate::call::error_body("RequestTimeout", crate::conn::BODY_TIMEOUT_ANSWER);
            let _ =
                crate::lane::answer(client, axum::http::StatusCode::REQUEST_TIMEOUT, &body, true)
                    .await;
        }
        return false;
    }
    let mut attempts = 0;
    let (mut conn, endpoint, mut ubuf, answer_head) = loop {
        attempts += 1;
        let Some(endpoint) = svc.pick_within(NO_INSTANCE_WAIT).await else {
            let message = format!(
                "no ready instance of {}/{} within {NO_INSTANCE_WAIT:?}",
                svc.app.name, svc.resource
            );
            return fail(
                client,
                StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable",
                message,
            )
            .await;
        };
        let mut conn = match checkout(endpoint.addr, fresh).await {
            Ok(c) => c,
            Err(e) if attempts < 3 => {
                tracing::debug!(instance = %endpoint.instance, error = %e, "edge: connect failed, retrying");
                continue;
            }
            Err(e) => {
                tracing::warn!(instance = %endpoint.instance, error = %e, "edge: cannot connect to the instance");
                let message = format!(
                    "instance {} of {} failed to answer",
                    endpoint.instance, svc.resource
                );
                return fail(client, StatusCode::BAD_GATEWAY, "BadGateway", message).await;
            }
        };
        let mut ubuf = Vec::with_capacity(8 << 10);
        let exchange = async {
            send(&mut conn, client, buf, req, held).await?;
            read_answer_head(&mut conn, &mut ubuf, close).await
        };
        let outcome = tokio::time::timeout(svc.request_timeout, exchange).await;
        match outcome {
            Ok(Ok(h)) => break (conn, endpoint, ubuf, h),
            // Closed as the request went out: a request that may be repeated goes again, on a
            // new connection (this thread's other kept ones to the instance are dropped too).
            // At most once: a new connection is never stale.
            Ok(Err(Failed::Stale(e))) if held && idempotent => {
                tracing::debug!(instance = %endpoint.instance, error = %e, "edge: kept connection was closed, retrying");
                forget(endpoint.addr);
                fresh = true;
                attempts -= 1;
            }
            Ok(Err(Failed::Stale(e) | Failed::Io(e))) => {
                tracing::warn!(instance = %endpoint.instance, error = %e, "edge: instance failed to answer");
                let message = format!(
                    "instance {} of {} failed to answer",
                    endpoint.instance, svc.resource
                );
                return fail(client, StatusCode::BAD_GATEWAY, "BadGateway", message).await;
            }
            Err(_) => {
                let message = format!(
                    "{} did not answer within {:?}",
                    svc.resource, svc.request_timeout
                );
                return fail(client, StatusCode::GATEWAY_TIMEOUT, "Timeout", message).await;
            }
        }
    };
    // The body's bytes read with the head went with it; the rest never came into `buf`.
    buf.drain(..(head_len + body_len).min(buf.len()));
    let AnswerHead {
        mut head,
        framing,
        reusable,
        len,
    } = answer_head;
    head.extend_from_slice(b"x-morel-instance: ");
    head.extend_from_slice(endpoint.instance.to_string().as_bytes());
    head.extend_from_slice(b"\r\n\r\n");
    ubuf.drain(..len);
    // The guard is held until the answer's last byte is sent.
    let copied = copy_body(&mut conn.stream, client, head, &mut ubuf, framing).await;
    drop(endpoint.guard);
    match copied {
        Ok(clean) => {
            if clean && reusable {
                checkin(conn);
            }
            framing != Framing::UntilClose
        }
        Err(_) => false,
    }
}

async fn fail(client: &mut TcpStream, status: StatusCode, kind: &str, message: String) -> bool {
    let body = crate::call::error_body(kind, &message);
    let _ = answer(client, status, &body, true).await;
    false
}

/// Sends the request head and body on `conn`; `held`: the whole body is in `buf`.
async fn send(
    conn: &mut Conn,
    client: &mut TcpStream,
    buf: &[u8],
    req: &Outgoing<'_>,
    held: bool,
) -> Result<(), Failed> {
    let Outgoing {
        head,
        head_len,
        body_len,
        ..
    } = *req;
    if held {
        let body = &buf[head_len..head_len + body_len];
        let mut both = bytes::Buf::chain(head, body);
        let reused = conn.reused;
        return conn.stream.write_all_buf(&mut both).await.map_err(|e| {
            if reused {
                Failed::Stale(e)
            } else {
                Failed::Io(e)
            }
        });
    }
    // A large body streams through: what was read with the head, then the rest.
    let early = &buf[head_len..buf.len().min(head_len + body_len)];
    let mut both = bytes::Buf::chain(head, early);
    conn.stream
        .write_all_buf(&mut both)
        .await
        .map_err(Failed::Io)?;
    let rest = (body_len - early.len()) as u64;
    let copied = tokio::io::copy(&mut (&mut *client).take(rest), &mut conn.stream)
        .await
        .map_err(Failed::Io)?;
    if copied < rest {
        return Err(Failed::Io(io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(())
}

/// Reads the instance's answer head into `ubuf` and rewrites it for the client (without the
/// `x-morel-instance` line and the blank line that ends the head). Informational answers
/// (`1xx`) are not expected: the lane does not forward `Expect` or upgrades.
async fn read_answer_head(
    conn: &mut Conn,
    ubuf: &mut Vec<u8>,
    client_close: bool,
) -> Result<AnswerHead, Failed> {
    loop {
        match read_some(&mut conn.stream, ubuf).await {
            Ok(0) if ubuf.is_empty() && conn.reused => {
                return Err(Failed::Stale(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "the kept connection was closed",
                )));
            }
            Ok(0) => {
                return Err(Failed::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the connection closed before a whole answer head",
                )));
            }
            Err(e) if ubuf.is_empty() && conn.reused => return Err(Failed::Stale(e)),
            Err(e) => return Err(Failed::Io(e)),
            Ok(_) => {}
        }
        match rewrite_answer_head(ubuf, client_close) {
            Ok(Some(h)) => return Ok(h),
            Ok(None) if ubuf.len() < MAX_ANSWER_HEAD => {}
            Ok(None) => return Err(Failed::Io(io::Error::other("the answer head is too long"))),
            Err(e) => return Err(Failed::Io(e)),
        }
    }
}

/// Parses an answer head at the start of `ubuf`; `None` while it is incomplete.
fn rewrite_answer_head(ubuf: &[u8], client_close: bool) -> io::Result<Option<AnswerHead>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(ubuf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(io::Error::other(format!("a malformed answer head: {e}"))),
    };
    let code = resp.code.unwrap_or(0);
    // httparse takes any three digits; below 100 is no status (hyper refuses it too, so the
    // router's edge answers 502), and written back as is it would be a malformed status line.
    if code < 100 {
        return Err(io::Error::other(format!(
            "a malformed status code ({code:03})"
        )));
    }
    if (100..200).contains(&code) {
        return Err(io::Error::other(format!(
            "an informational answer ({code}) to a request that did not ask for one"
        )));
    }
    let named = connection_named(resp.headers);
    let mut reusable = resp.version == Some(1);
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut encoded = false;
    let mut has_date = false;
    let mut out = Vec::with_capacity(len + 128);
    status_line(&mut out, code, resp.reason.unwrap_or(""));
    for h in resp.headers.iter() {
        let n = h.name;
        if n.eq_ignore_ascii_case("connection") {
            let v = std::str::from_utf8(h.value).unwrap_or("");
            if v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")) {
                reusable = false;
            }
            continue;
        }
        if n.eq_ignore_ascii_case("transfer-encoding") {
            encoded = true;
            let v = std::str::from_utf8(h.value).unwrap_or("");
            chunked = v
                .rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
            // Codings other than chunked stay on the message, as the instance sent them.
            push_header(&mut out, b"transfer-encoding", h.value);
            continue;
        }
        if n.eq_ignore_ascii_case("content-length") {
            let v = crate::lane::content_length(h.value)
                .ok_or_else(|| io::Error::other("a malformed Content-Length"))?;
            if length.is_some_and(|l| l != v) {
                return Err(io::Error::other("conflicting Content-Length headers"));
            }
            length = Some(v);
        }
        if is_hop_by_hop(n)
            || named.iter().any(|x| x.eq_ignore_ascii_case(n))
            || n.eq_ignore_ascii_case("x-morel-edge")
            || n.eq_ignore_ascii_case("x-morel-instance")
        {
            continue;
        }
        if n.eq_ignore_ascii_case("content-length") && encoded {
            continue;
        }
        has_date |= n.eq_ignore_ascii_case("date");
        push_header(&mut out, n.as_bytes(), h.value);
    }
    let framing = if code == 204 || code == 304 {
        Framing::Empty
    } else if encoded {
        if chunked {
            Framing::Chunked
        } else {
            Framing::UntilClose
        }
    } else if let Some(l) = length {
        Framing::Length(l)
    } else {
        Framing::UntilClose
    };
    if framing == Framing::UntilClose {
        reusable = false;
    }
    if !has_date {
        push_date(&mut out);
    }
    if client_close || framing == Framing::UntilClose {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"x-morel-edge: 1\r\n");
    Ok(Some(AnswerHead {
        head: out,
        framing,
        reusable,
        len,
    }))
}

/// Reads an instance's answer head at the start of `buf` with the lane's own code
/// (`rewrite_answer_head`): `Ok(None)` while it is incomplete, else the head the client gets
/// (without the `x-morel-instance` line and the blank line that end it), how its body is
/// framed (`Empty`, `Length(n)`, `Chunked` or `UntilClose`), whether the connection to the
/// instance can be kept, and the head's length in `buf`. Public for the fuzz targets in
/// `morel-fuzz`.
#[allow(clippy::type_complexity)]
pub fn parse_answer_head_for_fuzzing(
    buf: &[u8],
    client_close: bool,
) -> io::Result<Option<(Vec<u8>, String, bool, usize)>> {
    Ok(rewrite_answer_head(buf, client_close)?
        .map(|h| (h.head, format!("{:?}", h.framing), h.reusable, h.len)))
}

/// Follows a chunked answer body arriving in `pieces` with the lane's own code (`Chunks`, as
/// `copy_body` feeds it): `Ok(Some(n))` when the body ended after its first `n` bytes,
/// `Ok(None)` when it needs more. Public for the fuzz targets in `morel-fuzz`.
pub fn chunked_body_len_for_fuzzing(pieces: &[&[u8]]) -> io::Result<Option<usize>> {
    let mut chunks = Chunks::default();
    let mut total = 0;
    for piece in pieces {
        total += chunks.feed(piece)?;
        if chunks.done() {
            return Ok(Some(total));
        }
    }
    Ok(None)
}

/// Sends `head` and the answer's body to the client: what is in `ubuf` first, then the rest
/// from the instance. `Ok(true)` when the body ended exactly where its framing said, so the
/// connection to the instance can serve another request.
async fn copy_body(
    upstream: &mut TcpStream,
    client: &mut TcpStream,
    mut head: Vec<u8>,
    ubuf: &mut Vec<u8>,
    framing: Framing,
) -> io::Result<bool> {
    match framing {
        Framing::Empty => {
            client.write_all(&head).await?;
            Ok(ubuf.is_empty())
        }
        Framing::Length(len) => {
            let early = (ubuf.len() as u64).min(len) as usize;
            head.extend_from_slice(&ubuf[..early]);
            client.write_all(&head).await?;
            let rest = len - early as u64;
            if rest > 0 {
                let copied = tokio::io::copy(&mut (&mut *upstream).take(rest), client).await?;
                if copied < rest {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
            }
            Ok(ubuf.len() == early)
        }
        Framing::Chunked => {
            let mut chunks = Chunks::default();
            let used = chunks.feed(ubuf)?;
            head.extend_from_slice(&ubuf[..used]);
            client.write_all(&head).await?;
            if chunks.done() {
                return Ok(used == ubuf.len());
            }
            ubuf.clear();
            loop {
                if read_some(upstream, ubuf).await? == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                let used = chunks.feed(ubuf)?;
                client.write_all(&ubuf[..used]).await?;
                if chunks.done() {
                    return Ok(used == ubuf.len());
                }
                ubuf.clear();
            }
        }
        Framing::UntilClose => {
            head.extend_from_slice(ubuf);
            client.write_all(&head).await?;
            tokio::io::copy(upstream, client).await?;
            Ok(false)
        }
    }
}

/// Follows a chunked body's framing (RFC 9112 §7.1) as its bytes pass through, to find where
/// it ends. The bytes themselves are forwarded as they are.
#[derive(Default)]
struct Chunks {
    state: ChunkState,
    line: Vec<u8>,
}

#[derive(Default, Clone, Copy, Debug, PartialEq)]
enum ChunkState {
    #[default]
    Size,
    Data(u64),
    DataEnd,
    Trailer,
    Done,
}

/// Longest chunk-size or trailer line accepted.
const MAX_CHUNK_LINE: usize = 8 << 10;

impl Chunks {
    fn done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Takes in `data`; returns how many of its bytes belong to the body (all of them unless
    /// the body ends inside `data`).
    fn feed(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut i = 0;
        while i < data.len() {
            match self.state {
                ChunkState::Done => break,
                ChunkState::Data(left) => {
                    let take = (left).min((data.len() - i) as u64);
                    i += take as usize;
                    self.state = if take == left {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left - take)
                    };
                }
                ChunkState::Size | ChunkState::DataEnd | ChunkState::Trailer => {
                    let b = data[i];
                    i += 1;
                    if b != b'\n' {
                        if self.line.len() >= MAX_CHUNK_LINE {
                            return Err(io::Error::other("a chunk line is too long"));
                        }
                        self.line.push(b);
                        continue;
                    }
                    let line = self.line.strip_suffix(b"\r").unwrap_or(&self.line);
                    self.state = match self.state {
                        ChunkState::Size => {
                            let size = line.split(|c| *c == b';').next().unwrap_or(&[]);
                            let size = std::str::from_utf8(size)
                                .ok()
                                .and_then(|s| u64::from_str_radix(s.trim(), 16).ok())
                                .ok_or_else(|| io::Error::other("a malformed chunk size"))?;
                            if size == 0 {
                                ChunkState::Trailer
                            } else {
                                ChunkState::Data(size)
                            }
                        }
                        ChunkState::DataEnd if line.is_empty() => ChunkState::Size,
                        ChunkState::DataEnd => {
                            return Err(io::Error::other("a chunk does not end with CRLF"));
                        }
                        _ if line.is_empty() => ChunkState::Done,
                        other => other,
                    };
                    self.line.clear();
                }
            }
        }
        Ok(i)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_end_where_their_framing_says_in_any_split() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";
        let end = body.len() - 4;
        for split in 0..body.len() {
            let mut c = Chunks::default();
            let first = c.feed(&body[..split]).unwrap();
            assert_eq!(first, split.min(end));
            let second = c.feed(&body[split..]).unwrap();
            assert!(c.done(), "split at {split}");
            assert_eq!(first + second, end, "split at {split}");
        }
        let mut c = Chunks::default();
        assert!(c.feed(b"zz\r\n").is_err());
        let mut c = Chunks::default();
        assert!(c.feed(b"2\r\nabX\r\n").is_err());
    }

    fn parse_req(raw: &[u8]) -> Vec<u8> {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut req = httparse::Request::new(&mut headers);
        req.parse(raw).unwrap();
        request_head(
            req.method.unwrap(),
            "/rest?q=1",
            req.headers,
            "127.0.0.9".parse().unwrap(),
            Some("/web"),
        )
    }

    #[test]
    fn forwarded_requests_lose_hop_headers_and_gain_forwarding_ones() {
        let raw =
            b"POST /web/rest?q=1 HTTP/1.1\r\nHost: web.test\r\nConnection: keep-alive, x-hop\r\n\
x-hop: 1\r\nKeep-Alive: timeout=5\r\nX-Forwarded-For: 10.1.2.3\r\nX-Forwarded-Proto: https\r\n\
X-Forwarded-Prefix: /evil\r\nx-app: kept\r\ncontent-length: 2\r\n\r\n";
        let head = String::from_utf8(parse_req(raw)).unwrap();
        assert!(head.starts_with("POST /rest?q=1 HTTP/1.1\r\n"), "{head}");
        let lower = head.to_ascii_lowercase();
        for gone in ["connection:", "x-hop:", "keep-alive:", "https", "/evil"] {
            assert!(!lower.contains(gone), "{gone} in {head}");
        }
        for kept in [
            "Host: web.test\r\n",
            "x-app: kept\r\n",
            "content-length: 2\r\n",
            "x-forwarded-for: 10.1.2.3, 127.0.0.9\r\n",
            "x-forwarded-host: web.test\r\n",
            "x-forwarded-proto: http\r\n",
            "x-forwarded-prefix: /web\r\n",
        ] {
            assert!(head.contains(kept), "{kept:?} missing in {head}");
        }
        assert!(head.ends_with("\r\n\r\n"));
    }

    #[test]
    fn answer_heads_are_rewritten_with_their_framing() {
        let h = rewrite_answer_head(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: x-secret\r\nx-secret: 1\r\nx-morel-edge: 9\r\n\r\nhello",
            false,
        )
        .unwrap()
        .unwrap();
        let text = String::from_utf8(h.head).unwrap();
        assert_eq!(h.framing, Framing::Length(5));
        assert!(h.reusable);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("Content-Length: 5\r\n"), "{text}");
        assert!(!text.contains("x-secret"), "{text}");
        assert!(
            text.contains("x-morel-edge: 1\r\n") && !text.contains(": 9"),
            "{text}"
        );
        assert!(text.contains("date: "), "{text}");

        let h = rewrite_answer_head(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            true,
        )
        .unwrap()
        .unwrap();
        let text = String::from_utf8(h.head).unwrap();
        assert_eq!(h.framing, Framing::Chunked);
        assert!(!text.contains("Content-Length"), "{text}");
        assert!(text.contains("connection: close\r\n"), "{text}");

        let h = rewrite_answer_head(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", false)
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::UntilClose);
        assert!(!h.reusable);
        let h = rewrite_answer_head(
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(h.framing, Framing::Empty);
        assert!(
            rewrite_answer_head(b"HTTP/1.1 200 OK\r\nContent-Le", false)
                .unwrap()
                .is_none()
        );
        assert!(rewrite_answer_head(b"HTTP/1.1 100 Continue\r\n\r\n", false).is_err());
    }
}
