//! The fast lane: the public listener's hot paths, answered straight off the socket.
//!
//! Nearly all traffic on the public listener is one of two shapes: a function call
//! (`/{prefix}/{app}/{version}/call/{func}`) or a request for an app's http service
//! (`/{app}/…`, or anything on `{app}.{domain}`). Through hyper's server, axum's router and,
//! for the edge, hyper-util's pooled client, those cost about twice the CPU per request that
//! nginx spends proxying the same traffic (bench/NOTES.md, "the fast lane"). The lane reads a
//! request head with `httparse`; when the head is plain HTTP/1.1 and its route is one of those
//! shapes, it answers the request itself: a call runs exactly as on the router's path (the same
//! `call_function`, metrics and JSON), an edge request goes to a ready instance over a pooled
//! connection (`upstream.rs`) and its answer is copied back as it arrives.
//!
//! Everything else (another route, an answer the router words such as a 404 or a 413, an
//! upgrade, a chunked request body, `Expect`, HTTP/1.0, a malformed head) is handed back
//! unanswered: the caller serves the rest of the connection with hyper and the router,
//! replaying the bytes the lane had read. The lane changes how fast the hot paths are
//! answered, never what is answered.
//!
//! A connection whose calls keep going to a worker whose replies are read on another serving
//! thread (a Node worker has one reply pipe, read on one thread) is moved to that thread
//! between requests ([`LaneEnd::Move`]): every reply would otherwise wake the caller from the
//! other thread, and two threads that each sleep and wake for half the calls cost more than one
//! that stays busy (bench/NOTES.md, "connections follow their worker").

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::StatusCode;
use morel_agent::HttpService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::routes::RouteMatch;
use crate::{CallLimits, FnRoute, RouteTable, UrlArgs, upstream};

/// Longest request head the lane reads; a longer one is left to hyper (which answers 431).
const MAX_HEAD: usize = 16 << 10;
/// Most headers in a head the lane serves.
const MAX_HEADERS: usize = 64;
/// How much a read asks for at least.
const READ_CHUNK: usize = 8 << 10;
/// Calls in a row answered through another serving thread before the connection moves there:
/// enough that calls spread over workers read on different threads (a pool of several) do not
/// make a connection hop to and fro by chance.
const MOVE_AFTER: u32 = 8;

/// Serves the hot paths of one connection at a time; see the module docs.
pub struct Lane {
    routes: Arc<RouteTable>,
    limits: CallLimits,
}

/// How a connection left the lane.
#[derive(Debug)]
pub enum LaneEnd {
    /// The connection is done with: closed by either side, or the server is stopping.
    Closed,
    /// The lane does not serve the next request: serve the rest of the connection elsewhere,
    /// starting with these bytes, already read from it.
    HandOff(Vec<u8>),
    /// Between requests, with nothing read ahead: serve the connection on this serving thread
    /// instead, which reads the replies of the worker its calls have been going to.
    Move(usize),
}

/// A request the lane serves, planned from its head.
struct Plan {
    target: Target,
    head_len: usize,
    body_len: usize,
    /// The client asked for the connection to be closed after the answer.
    close: bool,
}

enum Target {
    /// A function call: on the call path (the route was looked up in the routes whose
    /// version the plan checked), or on an app route, with the arguments its URL gives.
    Call(Arc<FnRoute>, UrlArgs),
    Edge {
        svc: Arc<HttpService>,
        /// The request head as the instance gets it.
        head: Vec<u8>,
        /// The method may be repeated (RFC 9110 §9.2.2).
        idempotent: bool,
    },
}

enum Parsed {
    Serve(Plan),
    /// The head is not complete yet.
    Partial,
    /// Not for the lane.
    Other,
}

/// Paths of Morel's own API, the function API, the dashboard and `/metrics`: never the lane's.
/// The serving threads also run these on the main runtime (see morel-control's `listen`).
pub fn is_control_path(path: &str) -> bool {
    const PREFIXES: &[&str] = &["/api/", "/functions", "/executions/", "/dashboard"];
    const EXACT: &[&str] = &["/metrics", "/validate", "/manifest"];
    PREFIXES.iter().any(|p| path.starts_with(p)) || EXACT.contains(&path)
}

impl Lane {
    pub fn new(routes: Arc<RouteTable>, limits: CallLimits) -> Self {
        Lane { routes, limits }
    }

    /// Serves requests from `stream` for as long as they are the lane's, then says how the
    /// connection ended. Stops between requests once `stop` turns true.
    pub async fn serve(
        &self,
        stream: &mut TcpStream,
        peer: SocketAddr,
        stop: &mut watch::Receiver<bool>,
    ) -> LaneEnd {
        let mut buf = Vec::with_capacity(READ_CHUNK);
        let here = morel_runtime_process::serving_thread();
        let mut follow = Follow::default();
        let limits = crate::conn_limits();
        loop {
            if buf.is_empty()
                && let Some(to) = follow.due()
                && !*stop.borrow()
            {
                return LaneEnd::Move(to);
            }
            // A request's head must be whole within the header timeout of its first byte.
            let mut head_deadline =
                (!buf.is_empty()).then(|| tokio::time::Instant::now() + limits.header);
            let plan = loop {
                if !buf.is_empty() {
                    match self.plan(&buf, peer) {
                        Parsed::Serve(plan) => break plan,
                        Parsed::Partial if buf.len() < MAX_HEAD => {}
                        Parsed::Partial | Parsed::Other => return LaneEnd::HandOff(buf),
                    }
                }
                let read = match head_deadline {
                    None => {
                        if *stop.borrow() {
                            return LaneEnd::Closed;
                        }
                        // Idle between requests: closed after the idle timeout. The read is
                        // polled first, so a request already waiting never arms the timer.
                        tokio::select! {
                            biased;
                            read = read_some(stream, &mut buf) => read,
                            _ = stop.changed() => return LaneEnd::Closed,
                            _ = tokio::time::sleep(limits.idle) => return LaneEnd::Closed,
                        }
                    }
                    Some(deadline) => {
                        match tokio::time::timeout_at(deadline, read_some(stream, &mut buf)).await {
                            Ok(read) => read,
                            Err(_) => return LaneEnd::Closed,
                        }
                    }
                };
                match read {
                    Ok(0) | Err(_) => return LaneEnd::Closed,
                    Ok(_) => {}
                }
                if head_deadline.is_none() {
                    head_deadline = Some(tokio::time::Instant::now() + limits.header);
                }
            };
            let keep_alive = match &plan.target {
                Target::Call(route, url) => {
                    let call = self.call(stream, &mut buf, &plan, route, url);
                    let (kept, replied_on) = morel_runtime_process::noting_reply_thread(call).await;
                    follow.note(here, replied_on);
                    kept
                }
                Target::Edge {
                    svc,
                    head,
                    idempotent,
                } => {
                    let req = upstream::Outgoing {
                        head,
                        head_len: plan.head_len,
                        body_len: plan.body_len,
                        close: plan.close,
                        idempotent: *idempotent,
                    };
                    follow.note(here, here);
                    upstream::forward(stream, &mut buf, svc, &req).await
                }
            };
            if !keep_alive || plan.close {
                let _ = stream.shutdown().await;
                return LaneEnd::Closed;
            }
        }
    }

    /// Reads the head at the start of `buf` and decides whether the lane serves it.
    fn plan(&self, buf: &[u8], peer: SocketAddr) -> Parsed {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        let head_len = match req.parse(buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Parsed::Partial,
            Err(_) => return Parsed::Other,
        };
        match self.plan_head(&req, head_len, peer) {
            Some(plan) => Parsed::Serve(plan),
            None => Parsed::Other,
        }
    }

    fn plan_head(
        &self,
        req: &httparse::Request,
        head_len: usize,
        peer: SocketAddr,
    ) -> Option<Plan> {
        let (method, target) = (req.method?, req.path?);
        if req.version != Some(1) || method == "HEAD" || method == "CONNECT" {
            return None;
        }
        if !target.starts_with('/') {
            return None;
        }
        let mut body_len: Option<usize> = None;
        let mut close = false;
        let mut host = None;
        for h in req.headers.iter() {
            let name = h.name;
            if name.eq_ignore_ascii_case("content-length") {
                let n = usize::try_from(content_length(h.value)?).ok()?;
                if body_len.is_some_and(|b| b != n) {
                    return None;
                }
                body_len = Some(n);
            } else if name.eq_ignore_ascii_case("transfer-encoding")
                || name.eq_ignore_ascii_case("upgrade")
                || name.eq_ignore_ascii_case("expect")
            {
                return None;
            } else if name.eq_ignore_ascii_case("connection") {
                for token in std::str::from_utf8(h.value).ok()?.split(',') {
                    let token = token.trim();
                    if token.eq_ignore_ascii_case("close") {
                        close = true;
                    } else if token.eq_ignore_ascii_case("upgrade") {
                        return None;
                    }
                }
            } else if name.eq_ignore_ascii_case("host") {
                host = std::str::from_utf8(h.value).ok();
            }
        }
        let body_len = body_len.unwrap_or(0);
        let path = target.split_once('?').map_or(target, |(p, _)| p);
        let edge = |svc: Arc<HttpService>, forwarded: &str, prefix: Option<&str>| Target::Edge {
            head: upstream::request_head(method, forwarded, req.headers, peer.ip(), prefix),
            svc,
            idempotent: matches!(method, "GET" | "PUT" | "DELETE" | "OPTIONS" | "TRACE"),
        };
        // (1) `{app}.{domain}`: the whole request is the app's.
        if let Some(svc) = host.and_then(|h| self.routes.edge().app_for_host_name(h)) {
            return Some(Plan {
                target: edge(svc, target, None),
                head_len,
                body_len,
                close,
            });
        }
        // (2) Morel's own routes, and environments' host names, are the router's.
        if path == "/"
            || is_control_path(path)
            || host.is_some_and(|h| self.routes.by_host(h).is_some())
        {
            return None;
        }
        let target = if let Some(call) = call_shape(path) {
            let (prefix, app, version, func) = call?;
            if body_len > self.limits.max_body {
                return None;
            }
            let routes = self.routes.get(prefix, app)?;
            // An environment's name other than production's addresses a preview: the router's.
            if routes.env != version && self.routes.get_env(prefix, app, version).is_some() {
                return None;
            }
            crate::check_version(version, app, routes.release, &routes.env).ok()?;
            let route = routes.functions.get(func)?;
            // A function that takes the request gets it from the router.
            if route.binding.wants_request() {
                return None;
            }
            Target::Call(route.clone(), UrlArgs::default())
        } else {
            // (3, 4) `/{app}/rest`: a manifest route of the app, else its http service.
            let rel = &path[1..];
            let (segment, rest) = rel.split_once('/').map_or((rel, ""), |(s, r)| (s, r));
            if segment.is_empty() || segment.contains(['@', '%']) {
                return None;
            }
            let rest_path = &path[segment.len() + 1..];
            let rest_path = if rest_path.is_empty() { "/" } else { rest_path };
            if let Some(routes) = self.routes.get("default", segment)
                && let RouteMatch::Found {
                    function, params, ..
                } = routes.http.find(method, rest_path)
            {
                // The router answers what the lane would not say in the same words: a
                // function not running (503), a URL it cannot decode (400), a body over the
                // limit (413), a function that takes the request.
                let route = routes.functions.get(function)?;
                if route.binding.wants_request() || body_len > self.limits.max_body {
                    return None;
                }
                let query = target.split_once('?').map(|(_, q)| q);
                let url = crate::call::url_args(&params, query).ok()?;
                return Some(Plan {
                    target: Target::Call(route.clone(), url),
                    head_len,
                    body_len,
                    close,
                });
            }
            let svc = self.routes.edge().get("default", segment)?;
            let forwarded = format!("/{rest}{}", &target[path.len()..]);
            edge(svc, &forwarded, Some(&target[..segment.len() + 1]))
        };
        Some(Plan {
            target,
            head_len,
            body_len,
            close,
        })
    }

    /// Runs one function call and answers it; false when the connection cannot go on.
    async fn call(
        &self,
        stream: &mut TcpStream,
        buf: &mut Vec<u8>,
        plan: &Plan,
        route: &FnRoute,
        url: &UrlArgs,
    ) -> bool {
        let end = plan.head_len + plan.body_len;
        if let Err(e) = read_to(stream, buf, end).await {
            let (status, kind, message) = match e.kind() {
                io::ErrorKind::TimedOut => (
                    StatusCode::REQUEST_TIMEOUT,
                    "RequestTimeout",
                    crate::conn::BODY_TIMEOUT_ANSWER,
                ),
                // The client closed its side mid-body: it may still read the answer.
                io::ErrorKind::UnexpectedEof => (
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    crate::conn::BODY_INCOMPLETE_ANSWER,
                ),
                _ => return false,
            };
            let _ = answer(
                stream,
                status,
                &crate::call::error_body(kind, message),
                true,
            )
            .await;
            return false;
        }
        let input = crate::CallInput {
            body: &buf[plan.head_len..end],
            url,
            request: None,
        };
        let outcome = crate::call::run_call(route, &input).await;
        buf.drain(..end);
        let written = match outcome {
            Ok(out) => answer_output(stream, &out, plan.close).await,
            Err(f) => {
                let body = f.body();
                answer(stream, f.status, &body, plan.close).await
            }
        };
        written.is_ok()
    }
}

/// What the lane makes of the bytes at the start of a connection: see
/// [`Lane::parse_request_head_for_fuzzing`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadForFuzzing {
    /// The head is not whole yet: the lane reads on, up to its head limit.
    Partial,
    /// Not the lane's: the connection is handed to hyper and the router.
    Other,
    /// The lane serves it (`call`: a function call, else an edge request): a head of
    /// `head_len` bytes, then a body of `body_len`; `close` when the client asked for it.
    Serve {
        call: bool,
        head_len: usize,
        body_len: usize,
        close: bool,
    },
}

impl Lane {
    /// Reads a request head at the start of `buf` with exactly the code [`Lane::serve`] runs on
    /// the bytes it read from a connection (`httparse`, the lane's own checks such as
    /// `Content-Length`, and the route plan against this lane's route table), without a
    /// socket. Public for the fuzz targets in `morel-fuzz`.
    pub fn parse_request_head_for_fuzzing(&self, buf: &[u8]) -> HeadForFuzzing {
        let peer = SocketAddr::from(([127, 0, 0, 1], 40_000));
        match self.plan(buf, peer) {
            Parsed::Partial => HeadForFuzzing::Partial,
            Parsed::Other => HeadForFuzzing::Other,
            Parsed::Serve(plan) => HeadForFuzzing::Serve {
                call: matches!(plan.target, Target::Call(..)),
                head_len: plan.head_len,
                body_len: plan.body_len,
                close: plan.close,
            },
        }
    }
}

/// The head the edge sends an instance for the client's request head at the start of `buf`
/// (`request_head`, as for a request from 127.0.0.1 routed by path with `prefix`, or by host
/// name with `None`), or `None` when `buf` does not start with a whole head the lane can
/// read. Public for the fuzz targets in `morel-fuzz`.
pub fn forwarded_head_for_fuzzing(buf: &[u8], prefix: Option<&str>) -> Option<Vec<u8>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(_) = req.parse(buf).ok()? else {
        return None;
    };
    let (method, target) = (req.method?, req.path?);
    let client = std::net::IpAddr::from([127, 0, 0, 1]);
    Some(upstream::request_head(
        method,
        target,
        req.headers,
        client,
        prefix,
    ))
}

/// Which serving thread a connection's calls were answered through, call after call.
#[derive(Default)]
struct Follow {
    thread: Option<usize>,
    streak: u32,
}

impl Follow {
    /// Notes one request served on thread `here` whose reply was read on `replied_on`.
    fn note(&mut self, here: Option<usize>, replied_on: Option<usize>) {
        match (here, replied_on) {
            (Some(here), Some(there)) if here != there => {
                if self.thread == Some(there) {
                    self.streak += 1;
                } else {
                    self.thread = Some(there);
                    self.streak = 1;
                }
            }
            _ => *self = Follow::default(),
        }
    }

    /// The thread to move to, once [`MOVE_AFTER`] calls in a row were answered through it.
    fn due(&self) -> Option<usize> {
        self.thread.filter(|_| self.streak >= MOVE_AFTER)
    }
}

/// `/{prefix}/{app}/{version}/call|await/{func}`: `None` for another shape, `Some(None)` for
/// the call shape with a segment the router would decode or reject.
#[allow(clippy::type_complexity)]
fn call_shape(path: &str) -> Option<Option<(&str, &str, &str, &str)>> {
    let mut parts = path[1..].split('/');
    let (prefix, app, version, verb, func) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if parts.next().is_some() {
        return None;
    }
    match verb {
        "call" | "await" => {}
        // `run` is the async jobs' route; the router has it.
        "run" => return Some(None),
        _ => return None,
    }
    let plain = |s: &str| !s.is_empty() && !s.contains('%');
    if [prefix, app, version, func].iter().all(|s| plain(s)) {
        Some(Some((prefix, app, version, func)))
    } else {
        Some(None)
    }
}

/// A `Content-Length` value: digits only (RFC 9110 §8.6), optional whitespace around them.
pub(crate) fn content_length(value: &[u8]) -> Option<u64> {
    let v = value.trim_ascii();
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// One read into `buf`'s spare room; `Ok(0)` at the end of the stream.
pub(crate) async fn read_some(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    if buf.capacity() - buf.len() < READ_CHUNK / 2 {
        buf.reserve(READ_CHUNK);
    }
    stream.read_buf(buf).await
}

/// Reads until `buf` holds at least `len` bytes; `TimedOut` when a read waits longer than the
/// body timeout.
pub(crate) async fn read_to(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    len: usize,
) -> io::Result<()> {
    if buf.len() < len {
        buf.reserve(len - buf.len());
    }
    let pause = crate::conn_limits().body;
    while buf.len() < len {
        match tokio::time::timeout(pause, stream.read_buf(buf)).await {
            Ok(Ok(0)) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
            // The body stopped arriving (a promised length never sent).
            Err(_) => return Err(io::ErrorKind::TimedOut.into()),
        }
    }
    Ok(())
}

/// Writes a whole answer with a `Content-Length`: Morel's JSON results and error bodies.
pub(crate) async fn answer(
    stream: &mut TcpStream,
    status: StatusCode,
    body: &[u8],
    close: bool,
) -> io::Result<()> {
    let mut out = Vec::with_capacity(192 + body.len());
    status_line(
        &mut out,
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
    );
    out.extend_from_slice(b"content-type: application/json\r\nx-morel-edge: 1\r\ncontent-length: ");
    out.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    push_date(&mut out);
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    stream.write_all(&out).await
}

/// Writes a function's answer: its status, content type and headers, and its body (none for
/// 204 and 304), as the router's `CallOutput::into_response` does.
async fn answer_output(
    stream: &mut TcpStream,
    out: &crate::CallOutput,
    close: bool,
) -> io::Result<()> {
    let mut head = Vec::with_capacity(256 + out.body.len());
    status_line(
        &mut head,
        out.status.as_u16(),
        out.status.canonical_reason().unwrap_or(""),
    );
    let bodiless = out.bodiless();
    if !bodiless {
        head.extend_from_slice(b"content-type: ");
        head.extend_from_slice(out.content_type.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"x-morel-edge: 1\r\n");
    for (name, value) in &out.headers {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if !bodiless {
        head.extend_from_slice(b"content-length: ");
        head.extend_from_slice(itoa::Buffer::new().format(out.body.len()).as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    push_date(&mut head);
    if close {
        head.extend_from_slice(b"connection: close\r\n");
    }
    head.extend_from_slice(b"\r\n");
    if !bodiless {
        head.extend_from_slice(&out.body);
    }
    stream.write_all(&head).await
}

pub(crate) fn status_line(out: &mut Vec<u8>, code: u16, reason: &str) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa::Buffer::new().format(code).as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends a `date` header line; the text is made once a second per thread.
pub(crate) fn push_date(out: &mut Vec<u8>) {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};
    thread_local! {
        static DATE: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
    }
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with(|d| {
        let mut d = d.borrow_mut();
        if d.0 != second || d.1.is_empty() {
            *d = (second, httpdate::fmt_http_date(now));
        }
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(d.1.as_bytes());
        out.extend_from_slice(b"\r\n");
    });
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A connection follows a thread only after `MOVE_AFTER` replies in a row came through
    /// that same thread; a local reply, an edge request or a reply through a third thread
    /// starts the count again, and a server without serving threads never moves anything.
    #[test]
    fn a_connection_follows_only_a_run_of_replies_through_one_other_thread() {
        let run = |f: &mut Follow, n: u32, replied_on: Option<usize>| {
            for _ in 0..n {
                f.note(Some(0), replied_on);
            }
        };
        let mut f = Follow::default();
        run(&mut f, MOVE_AFTER - 1, Some(1));
        assert_eq!(f.due(), None);
        run(&mut f, 1, Some(1));
        assert_eq!(f.due(), Some(1));

        for breaker in [Some(0), None, Some(2)] {
            let mut f = Follow::default();
            run(&mut f, MOVE_AFTER - 1, Some(1));
            run(&mut f, 1, breaker);
            run(&mut f, MOVE_AFTER - 1, Some(1));
            assert_eq!(f.due(), None, "after a reply through {breaker:?}");
        }

        let mut f = Follow::default();
        for _ in 0..2 * MOVE_AFTER {
            f.note(None, Some(1));
        }
        assert_eq!(f.due(), None);
    }

    #[test]
    fn only_the_call_shape_is_a_call() {
        assert_eq!(
            call_shape("/default/hello/latest/call/add"),
            Some(Some(("default", "hello", "latest", "add")))
        );
        assert_eq!(
            call_shape("/default/hello/v3/await/add"),
            Some(Some(("default", "hello", "v3", "add")))
        );
        // Shapes the router answers in its own words.
        assert_eq!(call_shape("/default/hello/latest/run/add"), Some(None));
        assert_eq!(call_shape("/default/hello/latest/call/a%20b"), Some(None));
        assert_eq!(call_shape("/default//latest/call/add"), Some(None));
        // Not the call shape at all.
        assert_eq!(call_shape("/default/hello/latest/call/add/more"), None);
        assert_eq!(call_shape("/web/hello"), None);
        assert_eq!(call_shape("/default/hello/latest/other/add"), None);
    }

    #[test]
    fn control_paths_are_never_the_lanes() {
        for p in [
            "/api/apps",
            "/functions",
            "/functions/3",
            "/executions/9",
            "/dashboard/app.js",
            "/metrics",
        ] {
            assert!(is_control_path(p), "{p}");
        }
        for p in ["/web/api/x", "/default/a/latest/call/f", "/metricsx"] {
            assert!(!is_control_path(p), "{p}");
        }
    }

    #[test]
    fn content_lengths_are_digits_only() {
        assert_eq!(content_length(b"42"), Some(42));
        assert_eq!(content_length(b" 7 "), Some(7));
        for bad in [
            &b"+5"[..],
            b"-1",
            b"",
            b"1e3",
            b"0x10",
            b"5 5",
            b"99999999999999999999",
        ] {
            assert_eq!(
                content_length(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn the_date_line_is_an_http_date() {
        let mut out = Vec::new();
        push_date(&mut out);
        let line = String::from_utf8(out).unwrap();
        let value = line.strip_prefix("date: ").unwrap().trim_end();
        assert!(httpdate::parse_http_date(value).is_ok(), "{line}");
    }
}
