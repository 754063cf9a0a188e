//! A new user's flow, end to end (issue #23, parts 2 and 3): routes with path parameters bind
//! them (and the query) to named arguments; a function reads the request and answers with its
//! own status and headers through the SDK; an argument that does not fit the function's
//! parameters is a 400 naming the parameter and the signature, never a 500 from inside it or a
//! positional binding of an object; and every URL Morel shows for an app answers.
//!
//! The app is `tests/fixtures/user-flow` (the SDK's docstring example and a few plain
//! functions); the http service is the fast lane's backend, `tests/fixtures/lane-service`.
//! The same checks run with the fast lane on and off (`MOREL_FAST_LANE=0`); one more test
//! shows on the wire that the lane, not the router, answered the routes.

use std::path::PathBuf;
use std::time::Duration;

use morel_test_support::{MorelServer, wait_for};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{bin, raised};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// An answer: status, headers, and the body as JSON (or as a string when it is not JSON).
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A 400 whose error names `what`, of `kind`.
    fn assert_refused(&self, kind: &str, what: &[&str]) {
        assert_eq!(self.status, 400, "{}", self.body);
        assert_eq!(self.body["type"], kind, "{}", self.body);
        let error = self.body["error"].as_str().unwrap_or_default();
        for w in what {
            assert!(error.contains(w), "{w:?} not in {error:?}");
        }
    }
}

async fn send(s: &MorelServer, method: &str, path: &str, body: Option<&str>) -> Answer {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = s
        .http()
        .request(method, format!("{}{path}", s.url))
        .header("user-agent", "user-flow/1");
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_owned());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    Answer {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    }
}

async fn get(s: &MorelServer, path: &str) -> Answer {
    send(s, "GET", path, None).await
}

/// `morel up` (with extra environment) and the user-flow app deployed; the deploy's output.
fn server_with_app(envs: &[(&str, &str)]) -> (MorelServer, String) {
    let dirs = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let s = MorelServer::start_with_env(&bin(), dirs, &[], envs);
    let out = s.deploy(&fixture("user-flow"));
    assert!(out.contains("user-flow v1 is ready"), "{out}");
    (s, out)
}

/// What every server answers alike, with the fast lane on or off.
async fn check_routes_and_arguments(s: &MorelServer) {
    // Path parameters bind to named arguments, as strings; so do query parameters, a repeated
    // one as a list.
    let a = get(s, "/user-flow/items/42").await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body, json!({"item_id": "42", "q": null, "tag": null}));
    let a = get(s, "/user-flow/items/42?q=red+pen&tag=a&tag=b").await;
    assert_eq!(
        a.body,
        json!({"item_id": "42", "q": "red pen", "tag": ["a", "b"]})
    );
    assert_eq!(
        get(s, "/user-flow/items/caf%C3%A9").await.body["item_id"],
        "café"
    );
    // A literal path wins over a parameter in its place.
    assert_eq!(
        get(s, "/user-flow/items/new").await.body,
        json!("the new-item form")
    );
    // DELETE binds its query too; PUT merges it with the body, the body winning.
    let a = send(s, "DELETE", "/user-flow/items/42?hard=yes", None).await;
    assert_eq!(a.body, json!({"deleted": "42", "hard": "yes"}));
    let a = send(
        s,
        "PUT",
        "/user-flow/items/42?q=from-query",
        Some(r#"{"name": "pen", "q": "from-body"}"#),
    )
    .await;
    assert_eq!(
        a.body,
        json!({"item_id": "42", "name": "pen", "q": "from-body"})
    );
    let a = send(
        s,
        "PUT",
        "/user-flow/items/42?q=from-query",
        Some(r#"{"name": "pen"}"#),
    )
    .await;
    assert_eq!(a.body["q"], "from-query");

    // What does not route: no such path (404), another method (405 naming the methods).
    let a = get(s, "/user-flow/items/").await;
    assert_eq!(
        (a.status, &a.body["type"]),
        (404, &json!("NotFound")),
        "{}",
        a.body
    );
    let a = send(s, "POST", "/user-flow/items/42", Some("{}")).await;
    assert_eq!(a.status, 405, "{}", a.body);
    assert!(
        a.body["error"]
            .as_str()
            .unwrap()
            .contains("DELETE, GET, PUT"),
        "{}",
        a.body
    );

    // A route's arguments must fit too: an unknown query parameter, a missing body argument,
    // a path parameter the body repeats, positional arguments beside URL ones, bad encoding.
    get(s, "/user-flow/items/42?colour=red")
        .await
        .assert_refused(
            "BadArguments",
            &[
                "has no parameter \"colour\"",
                "signature: get_item(item_id, q, tag)",
            ],
        );
    send(s, "PUT", "/user-flow/items/42", Some("{}"))
        .await
        .assert_refused(
            "BadArguments",
            &["missing argument \"name\"", "put_item(item_id, name, q)"],
        );
    send(
        s,
        "PUT",
        "/user-flow/items/42",
        Some(r#"{"name": "x", "item_id": 7}"#),
    )
    .await
    .assert_refused(
        "BadArguments",
        &["\"item_id\" is given both in the path and in the body"],
    );
    send(s, "PUT", "/user-flow/items/42", Some(r#"["x"]"#))
        .await
        .assert_refused(
            "BadArguments",
            &["cannot be combined with path or query parameters"],
        );
    get(s, "/user-flow/items/%ff")
        .await
        .assert_refused("BadRequest", &["path parameter \"item_id\"", "not UTF-8"]);
    get(s, "/user-flow/items/42?q=%zz")
        .await
        .assert_refused("BadRequest", &["query parameter \"q\"", "hexadecimal"]);

    // The request reaches the parameter annotated morel.Request, and morel.Response sets the
    // answer's status and headers: on its route and on the call path alike.
    let a = send(s, "POST", "/user-flow/orders", Some(r#"{"item": "pen"}"#)).await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.header("location"), Some("/user-flow/orders/1"));
    assert_eq!(a.header("x-trace"), Some("t-1"));
    assert_eq!(a.header("content-type"), Some("application/json"));
    assert_eq!(
        a.body,
        json!({"item": "pen", "method": "POST", "path": "/user-flow/orders", "agent": "user-flow/1", "query": {}})
    );
    let a = send(
        s,
        "POST",
        "/default/user-flow/latest/call/create_order",
        Some(r#"["ink"]"#),
    )
    .await;
    assert_eq!(
        (a.status, a.header("x-trace")),
        (201, Some("t-1")),
        "{}",
        a.body
    );
    assert_eq!(
        a.body["path"],
        "/default/user-flow/latest/call/create_order"
    );
    send(
        s,
        "POST",
        "/default/user-flow/latest/call/create_order",
        Some(r#"{"item": 1, "request": 2}"#),
    )
    .await
    .assert_refused(
        "BadArguments",
        &["\"request\" of create_order() is the HTTP request"],
    );
    let a = get(s, "/user-flow/hello").await;
    assert_eq!(
        (a.status, a.header("content-type")),
        (200, Some("text/html"))
    );
    assert_eq!(a.body, json!("<h1>hi</h1>"));

    // On the call path: missing, extra and unknown arguments name the parameter and the
    // signature; an object is never bound by position.
    let call = |f: &str, body: &str| {
        let (f, body) = (f.to_owned(), body.to_owned());
        async move {
            send(
                s,
                "POST",
                &format!("/default/user-flow/latest/call/{f}"),
                Some(&body),
            )
            .await
        }
    };
    call("add", "[1]").await.assert_refused(
        "BadArguments",
        &["add() is missing argument \"b\" (signature: add(a, b))"],
    );
    call("add", "")
        .await
        .assert_refused("BadArguments", &["missing arguments \"a\", \"b\""]);
    call("add", "[1, 2, 3]").await.assert_refused(
        "BadArguments",
        &[
            "add() takes 2 positional arguments but 3 were given",
            "signature: add(a, b)",
        ],
    );
    call("add", r#"{"a": 1, "bb": 2}"#).await.assert_refused(
        "BadArguments",
        &["add() has no parameter \"bb\"", "signature: add(a, b)"],
    );
    call("add", r#"{"x": 1, "y": 2}"#)
        .await
        .assert_refused("BadArguments", &["no parameters \"x\", \"y\""]);
    let a = call("add", r#"{"b": 2, "a": 40}"#).await;
    assert_eq!((a.status, &a.body), (200, &json!(42)));
    assert_eq!(call("add", "[40, 2]").await.body, json!(42));
    assert_eq!(
        call("greet", r#"{"name": "Ada"}"#).await.body,
        json!("Hello, Ada!")
    );
    assert_eq!(call("greet", r#""Bo""#).await.body, json!("Hello, Bo!"));

    // A function's own exception is still its 500, with the id of its traceback in the log.
    let a = call("boom", r#"["bad input"]"#).await;
    let id = a.body["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        raised((a.status, a.body)),
        (500, json!({"error": "bad input", "type": "ValueError"}))
    );
    wait_for(Duration::from_secs(10), "the traceback in the log", || {
        let logs = s.cli_ok(&["logs", "user-flow"]);
        let found = logs.contains(&format!("error {id}: Traceback"))
            && logs.contains("ValueError: bad input");
        async move { found.then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn routes_bind_parameters_and_arguments_that_do_not_fit_are_refused() {
    let (s, _) = server_with_app(&[]);
    check_routes_and_arguments(&s).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_fast_lane_routes_and_arguments_are_answered_the_same() {
    let (s, _) = server_with_app(&[("MOREL_FAST_LANE", "0")]);
    check_routes_and_arguments(&s).await;
}

/// Reads one answer (head and a `Content-Length` body) from a raw connection.
async fn read_answer(stream: &mut TcpStream, buf: &mut Vec<u8>) -> (String, Vec<u8>) {
    let find = |b: &[u8]| b.windows(4).position(|w| w == b"\r\n\r\n");
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = find(buf) {
            break i + 4;
        }
        let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut chunk))
            .await
            .expect("an answer within 30 s")
            .unwrap();
        assert!(n > 0, "the connection closed before an answer");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or_else(|| panic!("no content-length:\n{head}"));
    while buf.len() < head_end + len {
        let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut chunk))
            .await
            .expect("the body within 30 s")
            .unwrap();
        assert!(n > 0, "the connection closed in the body");
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[head_end..head_end + len].to_vec();
    buf.drain(..head_end + len);
    (head, body)
}

/// On one keep-alive connection, routes (literal and with parameters) and a call are answered
/// while the connection stays in the fast lane: the http service's answer after them comes
/// with its head as the instance wrote it (`Content-Type`), which only the lane does (hyper
/// writes names in lower case). A function that takes the request is the router's: after
/// it, the connection is hyper's.
#[tokio::test(flavor = "multi_thread")]
async fn the_fast_lane_answers_routes_itself() {
    let (s, _) = server_with_app(&[]);
    s.deploy(&fixture("lane-service"));
    let addr = s.url.trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    let mut buf = Vec::new();
    let mut ask = async |stream: &mut TcpStream, req: String| {
        stream.write_all(req.as_bytes()).await.unwrap();
        read_answer(stream, &mut buf).await
    };
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
    let post = |path: &str, body: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };

    for (req, want) in [
        (
            get("/user-flow/items/42?tag=x"),
            json!({"item_id": "42", "q": null, "tag": "x"}),
        ),
        (get("/user-flow/items/new"), json!("the new-item form")),
        (
            post("/default/user-flow/latest/call/add", "[1, 2]"),
            json!(3),
        ),
    ] {
        let (head, body) = ask(&mut stream, req).await;
        assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
        assert_eq!(
            serde_json::from_slice::<Value>(&body).unwrap(),
            want,
            "{head}"
        );
    }
    let (head, _) = ask(&mut stream, get("/lane/echo")).await;
    assert!(
        head.contains("\r\nContent-Type: "),
        "the routes were handed to the router:\n{head}"
    );

    let (head, body) = ask(&mut stream, post("/user-flow/orders", r#"{"item": "pen"}"#)).await;
    assert!(head.starts_with("HTTP/1.1 201 "), "{head}");
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["item"],
        "pen"
    );
    let (head, _) = ask(&mut stream, get("/lane/echo")).await;
    assert!(
        head.contains("\r\ncontent-type: "),
        "a request-taking function stayed in the lane:\n{head}"
    );
}

/// The URLs `morel deploy`, `ls`, `inspect` (text and JSON) and the API (what the dashboard
/// shows) give for an app with functions and routes and for an http service, and that each
/// of them answers.
#[tokio::test(flavor = "multi_thread")]
async fn every_url_shown_for_an_app_answers() {
    let (s, deployed) = server_with_app(&[]);
    let base = &s.url;
    for line in [
        format!("GET /items/{{item_id}}  → get_item  {base}/user-flow/items/{{item_id}}"),
        format!("POST /orders  → create_order  {base}/user-flow/orders"),
        format!("add(a, b)  POST {base}/default/user-flow/latest/call/add"),
    ] {
        assert!(deployed.contains(&line), "{line:?} not in:\n{deployed}");
    }
    let out = s.cli_ok(&["deploy", fixture("user-flow").to_str().unwrap(), "--json"]);
    let v: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert!(
        v["routes"].as_array().unwrap().contains(&json!({
            "method": "DELETE", "path": "/items/{item_id}", "function": "delete_item",
            "url": format!("{base}/user-flow/items/{{item_id}}"),
        })),
        "{v}"
    );
    let out = s.deploy(&fixture("lane-service"));
    assert!(
        out.contains(&format!("(http service)  {base}/lane/")),
        "{out}"
    );

    // `morel ls`: each app's URL; the http service's is its edge, not the call path.
    let ls = s.cli_ok(&["ls"]);
    assert!(
        ls.contains(&format!("{base}/default/user-flow/latest/call/")),
        "{ls}"
    );
    assert!(
        ls.contains(&format!("{base}/lane/")) && !ls.contains("/default/lane/"),
        "{ls}"
    );

    // `morel inspect`: routes and URLs, in text and in JSON.
    let text = s.cli_ok(&["inspect", "user-flow"]);
    assert!(text.contains("ROUTES"), "{text}");
    assert!(
        text.lines().any(|l| l.contains("GET")
            && l.contains("/items/{item_id}")
            && l.contains("get_item")
            && l.contains(&format!("{base}/user-flow/items/{{item_id}}"))),
        "{text}"
    );
    let text = s.cli_ok(&["inspect", "lane"]);
    assert!(text.contains(&format!("service: {base}/lane/")), "{text}");
    let app: Value = serde_json::from_str(&s.cli_ok(&["inspect", "user-flow", "--json"])).unwrap();
    let urls = &app["urls"];
    assert_eq!(
        urls["call"],
        format!("{base}/default/user-flow/latest/call/")
    );
    assert_eq!(urls["service"], Value::Null);
    let routes: Vec<String> = urls["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{} {} {}",
                r["method"].as_str().unwrap(),
                r["path"].as_str().unwrap(),
                r["function"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        routes,
        [
            "GET /hello hello_page",
            "GET /items/new new_item",
            "DELETE /items/{item_id} delete_item",
            "GET /items/{item_id} get_item",
            "PUT /items/{item_id} put_item",
            "POST /orders create_order",
        ]
    );
    let get_item = app["functions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "get_item")
        .unwrap();
    assert_eq!(get_item["route"], "GET /items/{item_id}");
    let lane: Value = serde_json::from_str(&s.cli_ok(&["inspect", "lane", "--json"])).unwrap();
    assert_eq!(lane["url"], format!("{base}/lane/"));
    assert_eq!(
        lane["urls"],
        json!({"call": null, "routes": [], "service": format!("{base}/lane/")})
    );
    assert_eq!(
        lane["resources"][0]["endpoint_url"],
        format!("{base}/lane/")
    );
    let (_, manifest) = s.get("/api/apps/lane/manifest").await;
    assert_eq!(
        manifest["resources"]["web"]["endpoint_url"],
        format!("{base}/lane/")
    );

    // Each URL answers: a function on the call path, every GET route (its parameters filled
    // in), and the http service at its edge URL.
    let http = s.http();
    let resp = http
        .post(format!("{}add", urls["call"].as_str().unwrap()))
        .body("[1, 2]")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    for r in urls["routes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["method"] == "GET")
    {
        let url = r["url"].as_str().unwrap().replace("{item_id}", "42");
        let resp = http.get(&url).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{url}");
    }
    let resp = http
        .get(format!("{}echo", lane["url"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers().contains_key("x-morel-instance"),
        "{:?}",
        resp.headers()
    );

    // `morel env ls`: an environment's URLs; one running only an http service has no call
    // path, and every URL it lists answers.
    let envs: Value = serde_json::from_str(&s.cli_ok(&["env", "ls", "lane", "--json"])).unwrap();
    let urls: Vec<&str> = envs[0]["urls"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(!urls.is_empty(), "{envs}");
    for url in urls {
        assert!(!url.contains("/call/"), "{url} in {envs}");
        let resp = http.get(format!("{url}echo")).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{url}echo");
    }
    let envs: Value =
        serde_json::from_str(&s.cli_ok(&["env", "ls", "user-flow", "--json"])).unwrap();
    assert!(
        envs[0]["urls"].as_array().unwrap().iter().any(|u| u
            .as_str()
            .unwrap()
            .ends_with("/default/user-flow/production/call/")),
        "{envs}"
    );
}
