//! The Node SDK (issue #27 part 3), end to end: a Node project that declares resources and
//! routes with `require('morel-sdk')` (not installed: Morel's runner ships it) deploys as is;
//! its routes bind path and query parameters, a parameter named `request` gets the request, a
//! returned `Response` sets the status and headers, and `morel.call` reaches a function of
//! another resource through the gateway (a failure there keeping its type) or of its own
//! worker in process. The same from an ES module (`import ... from 'morel-sdk'`), and a
//! non-literal route path is refused at deploy.
//!
//! The app is `examples/node-sdk`.

use morel_test_support::{MorelServer, example};
use serde_json::{Value, json};

use crate::{bin, raised};

/// Status, headers and the body as JSON (or as a string when it is not JSON).
async fn send(
    s: &MorelServer,
    method: reqwest::Method,
    path: &str,
    body: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = s
        .http()
        .request(method, format!("{}{path}", s.url))
        .header("user-agent", "node-sdk-test/1");
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_owned());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, headers, body)
}

fn header<'h>(headers: &'h reqwest::header::HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn node_sdk_routes_requests_responses_and_cross_resource_calls() {
    use reqwest::Method;

    let s = MorelServer::start(&bin());
    let out = s.deploy(&example("node-sdk"));
    assert!(out.contains("node-sdk v1 is ready"), "{out}");

    // Path and query parameters are named arguments; a repeated query parameter is a list.
    let (status, _, body) = send(
        &s,
        Method::GET,
        "/node-sdk/items/42?q=red+pen&tag=a&tag=b",
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"item_id": "42", "q": "red pen", "tag": ["a", "b"]})
    );
    assert_eq!(
        send(&s, Method::GET, "/node-sdk/items/7", None).await.2,
        json!({"item_id": "7", "q": null, "tag": null})
    );

    // The parameter named `request` gets the request; the Response sets status and headers,
    // on the route and on the call path alike.
    let (status, headers, body) = send(
        &s,
        Method::POST,
        "/node-sdk/orders",
        Some(r#"{"item": "pen"}"#),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(header(&headers, "location"), Some("/node-sdk/orders/1"));
    assert_eq!(header(&headers, "x-trace"), Some("t-1"));
    assert_eq!(
        body,
        json!({"item": "pen", "method": "POST", "path": "/node-sdk/orders",
               "agent": "node-sdk-test/1", "query": {}})
    );
    let (status, headers, body) = send(
        &s,
        Method::POST,
        "/default/node-sdk/latest/call/createOrder",
        Some(r#"["ink"]"#),
    )
    .await;
    assert_eq!(
        (status, header(&headers, "x-trace")),
        (201, Some("t-1")),
        "{body}"
    );
    assert_eq!(body["item"], "ink");
    assert_eq!(body["path"], "/default/node-sdk/latest/call/createOrder");
    // Clients cannot pass the request as an argument.
    let (status, _, body) = send(
        &s,
        Method::POST,
        "/default/node-sdk/latest/call/createOrder",
        Some(r#"{"item": 1, "request": 2}"#),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("\"request\" of createOrder() is the HTTP request"),
        "{body}"
    );
    // A string body with a content type that is not JSON is sent as it is.
    let resp = s
        .http()
        .get(format!("{}/node-sdk/hello", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(resp.headers(), "content-type"),
        Some("text/html"),
        "{:?}",
        resp.headers()
    );
    assert_eq!(resp.text().await.unwrap(), "<h1>hi</h1>");

    // morel.call: `label` runs on a jobs worker through the gateway; `double` in the api
    // worker itself.
    let (status, _, body) = send(
        &s,
        Method::POST,
        "/node-sdk/checkout",
        Some(r#"{"items": [{"price": 10, "qty": 2}, {"price": 5, "qty": 1}]}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["total"], 25);
    assert_eq!(body["served_by"], "api");
    assert_eq!(
        body["label"],
        json!({"text": "total: 25", "served_by": "jobs"})
    );
    assert_eq!(body["twice"]["value"], 50);
    assert_eq!(body["twice"]["via"], "in process");
    assert_eq!(
        send(&s, Method::GET, "/node-sdk/local", None).await.2,
        json!({"value": 42, "via": "in process"})
    );
    assert_eq!(
        s.call("node-sdk", "double", "[4]").await,
        (200, json!({"value": 8, "via": "gateway"}))
    );
    // A remote failure comes back with the remote error's message and type.
    let (status, _, body) = send(&s, Method::POST, "/node-sdk/fail", None).await;
    assert_eq!(
        raised((status, body)),
        (
            500,
            json!({"error": "exploded from api", "type": "RangeError"})
        )
    );

    // A plain export, without the SDK, still runs (on the default resource); routes answer
    // only their method.
    assert_eq!(s.call("node-sdk", "add", "[40, 2]").await, (200, json!(42)));
    assert_eq!(
        s.call("node-sdk", "label", "[1]").await.1["served_by"],
        "jobs"
    );
    assert_eq!(
        send(&s, Method::GET, "/node-sdk/checkout", None).await.0,
        405
    );

    // The endpoints' options made the resources.
    let (_, m) = s.get("/api/apps/node-sdk/manifest").await;
    let resources = &m["resources"];
    assert_eq!(resources["api"]["runtime"], "node", "{m}");
    assert_eq!(
        (
            &resources["api"]["workers_max"],
            &resources["api"]["concurrency"]
        ),
        (&json!(2), &json!(8)),
        "{m}"
    );
    assert_eq!(resources["jobs"]["timeout_ms"], 10_000, "{m}");
    for r in ["api", "jobs", "default"] {
        assert_eq!(resources[r]["status"], "deployed", "{m}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn node_sdk_from_an_es_module_and_literal_paths_only() {
    let s = MorelServer::start(&bin());
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("esm-sdk");
    std::fs::create_dir(&app).unwrap();
    std::fs::write(
        app.join("index.mjs"),
        r#"import morel, { Endpoint, Response } from 'morel-sdk';

const api = new Endpoint('api');

export const hi = api.get('/hi/{who}', async (who, request) =>
  new Response({ who, path: request.path, same: morel.Response === Response }, { status: 202 }));

export function plain(x) {
  return x;
}
"#,
    )
    .unwrap();
    let out = s.deploy(&app);
    assert!(out.contains("esm-sdk v1 is ready"), "{out}");
    let resp = s
        .http()
        .get(format!("{}/esm-sdk/hi/bo", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"who": "bo", "path": "/esm-sdk/hi/bo", "same": true})
    );
    assert_eq!(s.call("esm-sdk", "plain", "[5]").await, (200, json!(5)));

    // Discovery reads the marks without running the code, so a path must be a literal.
    let bad = dir.path().join("bad-path");
    std::fs::create_dir(&bad).unwrap();
    std::fs::write(
        bad.join("index.js"),
        "const morel = require('morel-sdk');\nconst api = new morel.Endpoint('api');\n\
         const PATH = '/x';\nexports.x = api.get(PATH, () => 1);\n",
    )
    .unwrap();
    let out = s.cli(&["deploy", bad.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("the path given to api.get must be a string literal"),
        "{stderr}"
    );
}
