//! The fast lane's HTTP parsing: request heads from clients (`lane.rs`), answer heads and
//! chunked bodies from instances (`upstream.rs`).

use std::sync::{Arc, OnceLock};

use morel_gateway::{
    AppRoutes, CallLimits, HeadForFuzzing, Lane, RouteTable, chunked_body_len_for_fuzzing,
    forwarded_head_for_fuzzing, parse_answer_head_for_fuzzing,
};

use crate::Sig;

pub(crate) const REQUEST_TOKENS: &[&[u8]] = &[
    b"GET ",
    b"POST ",
    b"HEAD ",
    b"CONNECT ",
    b"OPTIONS ",
    b" HTTP/1.1\r\n",
    b" HTTP/1.0\r\n",
    b"HTTP/2",
    b"Host: ",
    b"Host: hello.apps.test\r\n",
    b"Host: staging--hello.example.test\r\n",
    b"Content-Length: ",
    b"content-length: 5\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Connection: close\r\n",
    b"Connection: keep-alive, upgrade\r\n",
    b"Connection: host, x-forwarded-for\r\n",
    b"Upgrade: websocket\r\n",
    b"Expect: 100-continue\r\n",
    b"X-Forwarded-For: 10.0.0.1\r\n",
    b"X-Forwarded-Host: evil\r\n",
    b"X-Forwarded-Prefix: /evil\r\n",
    b"Keep-Alive: timeout=5\r\n",
    b"Connection: ",
    b"content-length",
    b"transfer-encoding",
    b"host",
    b"/default/hello/latest/call/add",
    b"/default/hello/v3/call/add",
    b"/default/hello/staging/await/add",
    b"/default/hello/latest/run/add",
    b"/hello/",
    b"/api/apps",
    b"/metrics",
    b"?q=1",
    b"%2F",
    b"@",
    b"\r\n\r\n",
];

pub(crate) const ANSWER_TOKENS: &[&[u8]] = &[
    b"HTTP/1.1 200 OK\r\n",
    b"HTTP/1.0 200 OK\r\n",
    b"HTTP/1.1 204 No Content\r\n",
    b"HTTP/1.1 304 Not Modified\r\n",
    b"HTTP/1.1 100 Continue\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\n",
    b"Content-Length: ",
    b"Transfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: gzip, chunked\r\n",
    b"Transfer-Encoding: chunked, gzip\r\n",
    b"Connection: close\r\n",
    b"Connection: x-secret\r\n",
    b"x-morel-edge: 9\r\n",
    b"Connection: ",
    b"content-length",
    b"transfer-encoding",
    b"date",
    b"x-morel-instance: 1\r\n",
    b"Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n",
    b"0\r\n\r\n",
    b"5\r\nhello\r\n",
    b"ffffffffffffffff\r\n",
    b"10000000000000000\r\n",
    b";ext=1",
    b"x-trailer: 1\r\n",
];

/// The lane's header limit (`MAX_HEADERS` in lane.rs).
const LANE_HEADERS: usize = 64;
/// The lane's limit for an instance's answer head (`MAX_HEADERS` in upstream.rs).
const ANSWER_HEADERS: usize = 100;

/// A lane over a route table with an app (`default/hello`, release 3, a manifest route), one
/// of its previews (`staging`, with a host name) and a domain for `{app}.{domain}` hosts. No
/// function or service is running, so every head ends as `Other` or `Partial`; what is
/// fuzzed is how the lane gets there.
fn lane() -> &'static Lane {
    static LANE: OnceLock<Lane> = OnceLock::new();
    LANE.get_or_init(|| {
        let routes = Arc::new(RouteTable::new());
        let app = |release, env: &str| AppRoutes {
            release,
            env: env.to_owned(),
            functions: Default::default(),
            http: [
                ("GET /x".to_owned(), "add".to_owned()),
                ("GET /items/{id}".to_owned(), "add".to_owned()),
            ]
            .into_iter()
            .collect(),
        };
        routes.install("default", "hello", app(3, "production"));
        routes.install("default", "hello--staging", app(4, "staging"));
        routes.set_host("staging--hello.example.test", "default", "hello--staging");
        routes.edge().set_domain(Some("apps.test".to_owned()));
        Lane::new(routes, CallLimits::default())
    })
}

fn header_count(headers: &[httparse::Header], name: &str) -> usize {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .count()
}

fn header_value<'a>(headers: &[httparse::Header<'a>], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

/// Header names listed by `Connection` headers, which are not passed on; but never
/// `Content-Length`, which frames the body the lane passes on.
fn connection_named(headers: &[httparse::Header]) -> Vec<String> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .filter_map(|h| std::str::from_utf8(h.value).ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty() && n != "content-length")
        .collect()
}

/// Request heads: the lane's verdict must follow httparse's (a malformed head is the
/// router's, an incomplete one is read on), and the head the edge would forward for it must
/// be a well-formed head of the same request without hop-by-hop headers, carrying exactly the
/// forwarding headers the edge sets.
pub(crate) fn lane_head(data: &[u8]) -> u64 {
    let verdict = lane().parse_request_head_for_fuzzing(data);
    let mut headers = [httparse::EMPTY_HEADER; LANE_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let parsed = req.parse(data);
    let mut sig = Sig::new("lane");
    match &parsed {
        Err(e) => {
            assert_eq!(
                verdict,
                HeadForFuzzing::Other,
                "a head httparse refuses ({e}) is the router's"
            );
            sig = sig.str("malformed").str(&format!("{e:?}"));
        }
        Ok(httparse::Status::Partial) => {
            assert_eq!(verdict, HeadForFuzzing::Partial, "an incomplete head");
            sig = sig
                .str("partial")
                .flag(req.method.is_some())
                .size(req.headers.len());
        }
        Ok(httparse::Status::Complete(n)) => {
            if let HeadForFuzzing::Serve {
                call,
                head_len,
                body_len,
                ..
            } = verdict
            {
                assert_eq!(head_len, *n, "the head's length");
                assert!(!call || body_len <= CallLimits::default().max_body);
            }
            assert_ne!(
                verdict,
                HeadForFuzzing::Partial,
                "a whole head is not partial"
            );
            let path = req.path.unwrap_or("");
            let method = req.method.unwrap_or("");
            let named = connection_named(req.headers);
            // The features the lane's plan branches on, coarsely.
            sig = sig
                .str("complete")
                .str(match method {
                    "GET" | "POST" | "HEAD" | "CONNECT" => method,
                    _ => "other",
                })
                .num(u64::from(req.version.unwrap_or(9)))
                .num(match path.split('/').count() {
                    0 | 1 => 0,
                    2 => 1,
                    3..=5 => 2,
                    6 => 3,
                    _ => 4,
                })
                .flag(path.contains(['%', '@']))
                .flag(path.contains("/call/") || path.contains("/await/"))
                .num(header_count(req.headers, "content-length").min(2) as u64)
                .flag(header_value(req.headers, "host").is_some())
                .flag(
                    header_value(req.headers, "transfer-encoding").is_some()
                        || header_value(req.headers, "expect").is_some()
                        || header_value(req.headers, "upgrade").is_some(),
                )
                .flag(named.iter().any(|n| n == "close" || n == "upgrade"))
                .str(&format!("{verdict:?}"));
            for prefix in [None, Some("/hello")] {
                let forwarded = forwarded_head_for_fuzzing(data, prefix)
                    .expect("a whole head has a forwarded head");
                check_forwarded(&req, &forwarded, prefix);
            }
        }
    }
    if !matches!(parsed, Ok(httparse::Status::Complete(_))) {
        assert!(
            forwarded_head_for_fuzzing(data, None).is_none(),
            "only a whole head is forwarded"
        );
    }
    sig.done()
}

fn check_forwarded(req: &httparse::Request, out: &[u8], prefix: Option<&str>) {
    let text = String::from_utf8_lossy(out);
    // The edge adds at most four headers to the lane's 64.
    let mut headers = [httparse::EMPTY_HEADER; LANE_HEADERS + 4];
    let mut fwd = httparse::Request::new(&mut headers);
    match fwd.parse(out) {
        Ok(httparse::Status::Complete(n)) => {
            assert_eq!(n, out.len(), "the forwarded head is one head: {text:?}")
        }
        other => panic!("the forwarded head does not parse ({other:?}): {text:?}"),
    }
    assert_eq!(fwd.method, req.method, "method kept: {text:?}");
    assert_eq!(fwd.path, req.path, "target kept: {text:?}");
    assert_eq!(fwd.version, Some(1), "{text:?}");
    let named = connection_named(req.headers);
    const OURS: &[&str] = &[
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-forwarded-prefix",
    ];
    for h in fwd.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        assert!(
            !morel_gateway::is_hop_by_hop(&name),
            "hop-by-hop header {name} forwarded: {text:?}"
        );
        assert!(
            !named.contains(&name) || OURS.contains(&name.as_str()),
            "header {name}, named by Connection, forwarded: {text:?}"
        );
    }
    assert_eq!(header_count(fwd.headers, "x-forwarded-for"), 1, "{text:?}");
    let xff = header_value(fwd.headers, "x-forwarded-for").unwrap_or_default();
    assert!(
        xff.ends_with(b"127.0.0.1"),
        "the client is the last hop: {text:?}"
    );
    assert_eq!(
        header_count(fwd.headers, "x-forwarded-proto"),
        1,
        "{text:?}"
    );
    assert_eq!(
        header_value(fwd.headers, "x-forwarded-proto"),
        Some(&b"http"[..])
    );
    if let Some(p) = prefix {
        assert_eq!(
            header_count(fwd.headers, "x-forwarded-prefix"),
            1,
            "{text:?}"
        );
        assert_eq!(
            header_value(fwd.headers, "x-forwarded-prefix"),
            Some(p.as_bytes()),
            "{text:?}"
        );
    }
    if header_value(req.headers, "host").is_some() {
        assert!(
            header_count(fwd.headers, "x-forwarded-host") <= 1,
            "the client's X-Forwarded-Host is replaced: {text:?}"
        );
    }
    // The body that follows is framed by the client's Content-Length: the instance must get
    // the same one, or the body's bytes would be read as the start of the next request on
    // the (pooled) connection.
    let lengths = |headers: &[httparse::Header]| -> Vec<Vec<u8>> {
        headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
            .map(|h| h.value.trim_ascii().to_vec())
            .collect()
    };
    let sent = lengths(req.headers);
    if !sent.is_empty() && sent.iter().all(|v| v == &sent[0]) {
        assert_eq!(
            lengths(fwd.headers),
            sent,
            "the Content-Length that frames the body is forwarded: {text:?}"
        );
    }
}

/// Answer heads from an instance: the lane's verdict must follow httparse's, and an accepted
/// head must be rewritten into a well-formed head of the same status that has no hop-by-hop
/// headers but `Transfer-Encoding`, exactly one `x-morel-edge`, and a framing that agrees
/// with its headers. A chunked body after it must end at the same byte however it is split.
pub(crate) fn upstream_head(data: &[u8]) -> u64 {
    let mut headers = [httparse::EMPTY_HEADER; ANSWER_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let parsed = resp.parse(data);
    let mut sig = Sig::new("upstream");
    for client_close in [false, true] {
        let got = parse_answer_head_for_fuzzing(data, client_close);
        match (&parsed, got) {
            (Err(_), Ok(h)) => panic!("a head httparse refuses was accepted: {h:?}"),
            (Err(e), Err(_)) => sig = sig.str("malformed").str(&format!("{e:?}")),
            (Ok(httparse::Status::Partial), Ok(None)) => sig = sig.str("partial"),
            (Ok(httparse::Status::Partial), other) => {
                panic!("an incomplete head gave {other:?}")
            }
            (Ok(httparse::Status::Complete(_)), Ok(None)) => {
                panic!("a whole head was taken as incomplete")
            }
            (Ok(httparse::Status::Complete(_)), Err(e)) => {
                sig = sig.str("refused").message(&e.to_string());
            }
            (Ok(httparse::Status::Complete(n)), Ok(Some((head, framing, reusable, len)))) => {
                assert_eq!(len, *n, "the head's length");
                check_answer(&resp, &head, &framing, reusable, client_close);
                sig = sig
                    .str("rewritten")
                    .str(framing.split('(').next().unwrap_or(""))
                    .flag(reusable)
                    .num(u64::from(resp.code.unwrap_or(0) / 100))
                    .size(resp.headers.len());
                if framing == "Chunked" && !client_close {
                    sig = sig.num(chunked_body(&data[len..]));
                }
            }
        }
    }
    sig.done()
}

fn check_answer(
    resp: &httparse::Response,
    head: &[u8],
    framing: &str,
    reusable: bool,
    client_close: bool,
) {
    let mut whole = head.to_vec();
    whole.extend_from_slice(b"x-morel-instance: 1\r\n\r\n");
    let text = String::from_utf8_lossy(&whole);
    // The lane adds at most four headers to the instance's.
    let mut headers = [httparse::EMPTY_HEADER; ANSWER_HEADERS + 4];
    let mut out = httparse::Response::new(&mut headers);
    match out.parse(&whole) {
        Ok(httparse::Status::Complete(n)) => assert_eq!(n, whole.len(), "one head: {text:?}"),
        other => panic!("the rewritten head does not parse ({other:?}): {text:?}"),
    }
    assert_eq!(out.code, resp.code, "{text:?}");
    assert_eq!(out.version, Some(1), "{text:?}");
    assert_eq!(header_count(out.headers, "x-morel-edge"), 1, "{text:?}");
    assert_eq!(header_count(out.headers, "x-morel-instance"), 1, "{text:?}");
    assert!(header_count(out.headers, "date") >= 1, "{text:?}");
    let connection_close = out.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("connection") && h.value.eq_ignore_ascii_case(b"close")
    });
    let named = connection_named(resp.headers);
    for h in out.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        // Headers the lane sets itself, and the codings it keeps on the message.
        if matches!(
            name.as_str(),
            "transfer-encoding" | "date" | "x-morel-edge" | "x-morel-instance"
        ) || (name == "connection" && h.value == b"close")
        {
            continue;
        }
        assert!(
            !morel_gateway::is_hop_by_hop(&name),
            "hop-by-hop header {name} kept: {text:?}"
        );
        assert!(
            !named.contains(&name),
            "header {name}, named by Connection, kept: {text:?}"
        );
    }
    if client_close {
        assert!(connection_close, "the client asked to close: {text:?}");
    }
    if resp.version == Some(0) {
        assert!(!reusable, "an HTTP/1.0 connection is not kept");
    }
    let te = header_count(out.headers, "transfer-encoding");
    match framing {
        "Empty" => assert!(matches!(resp.code, Some(204 | 304)), "{framing} {text:?}"),
        "Chunked" => assert!(te >= 1, "{framing} {text:?}"),
        "UntilClose" => {
            assert!(!reusable, "a body until close ends the connection");
            assert!(connection_close, "{framing} {text:?}");
        }
        f if f.starts_with("Length(") => {
            let n: u64 = f["Length(".len()..f.len() - 1]
                .parse()
                .expect("a framing length");
            assert_eq!(te, 0, "{framing} {text:?}");
            let lengths: Vec<u64> = out
                .headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
                .map(|h| {
                    std::str::from_utf8(h.value)
                        .ok()
                        .and_then(|v| v.trim().parse().ok())
                        .expect("a kept Content-Length is a number")
                })
                .collect();
            assert!(
                !lengths.is_empty() && lengths.iter().all(|l| *l == n),
                "{framing} {text:?}"
            );
        }
        other => panic!("unknown framing {other}"),
    }
}

/// Follows a chunked body whole and split in two places; every way must agree. Returns a
/// small outcome for the signal.
fn chunked_body(body: &[u8]) -> u64 {
    let whole = chunked_body_len_for_fuzzing(&[body]);
    let splits = [
        body.len() / 2,
        body.len() / 3,
        body.len().saturating_sub(1),
        body.iter().position(|b| *b == b'\n').unwrap_or(0),
    ];
    for split in splits {
        let (a, b) = body.split_at(split);
        let (c, d) = b.split_at(b.len() / 2);
        let parts = chunked_body_len_for_fuzzing(&[a, c, d]);
        match (&whole, &parts) {
            (Ok(x), Ok(y)) => assert_eq!(x, y, "a chunked body split at {split}"),
            (Err(_), Err(_)) => {}
            _ => panic!("a chunked body split at {split}: {whole:?} whole, {parts:?} split"),
        }
    }
    match whole {
        Ok(Some(n)) => {
            assert!(n <= body.len());
            1 + u64::from(n == body.len())
        }
        Ok(None) => 3,
        Err(_) => 4,
    }
}
