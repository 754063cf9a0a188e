//! `/metrics` and the recent calls of app functions, against the real binary: counters move
//! by exactly the calls made, per status; the recent-call ring shows them with their errors.

use std::collections::HashMap;
use std::time::Duration;

use morel_test_support::{MorelServer, copy_dir, example, wait_for};

use crate::bin;

/// One scrape: every sample line as `series → value`.
pub(crate) async fn scrape(s: &MorelServer) -> HashMap<String, f64> {
    let resp = s
        .http()
        .get(format!("{}/metrics", s.url))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let ctype = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    let text = resp.text().await.unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_owned(), value.parse::<f64>().unwrap())
        })
        .collect()
}

fn get(m: &HashMap<String, f64>, series: &str) -> f64 {
    m.get(series).copied().unwrap_or(0.0)
}

fn calls(func: &str, status: u16) -> String {
    format!(
        r#"morel_calls_total{{namespace="default",app="hello-python",function="{func}",status="{status}"}}"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_exactly_the_calls_made_per_status() {
    let s = MorelServer::start(&bin());
    s.deploy(&example("hello-python"));

    // Like the rest of the control API, metrics need the token.
    let anon = s
        .http()
        .get(format!("{}/metrics", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status(), 401);

    let before = scrape(&s).await;
    // The deploy itself was measured: one successful rollout, one worker started.
    assert_eq!(
        get(
            &before,
            r#"morel_deploy_duration_seconds_count{outcome="ok"}"#
        ),
        1.0
    );
    assert!(
        get(
            &before,
            r#"morel_instance_starts_total{namespace="default",app="hello-python",resource="default"}"#
        ) >= 1.0,
        "{before:?}"
    );
    assert_eq!(
        get(
            &before,
            r#"morel_instances{namespace="default",app="hello-python",resource="default",state="ready"}"#
        ),
        1.0,
        "{before:?}"
    );
    for q in ["compilation_jobs", "compilation_results", "jobs"] {
        assert_eq!(
            before.get(&format!(r#"morel_queue_depth{{queue="{q}"}}"#)),
            Some(&0.0),
            "{q}"
        );
    }

    // 5 successes, 3 raised errors, 2 bad bodies, 1 call of a function that does not exist.
    for i in 0..5 {
        let (status, _) = s
            .call("hello-python", "greet", &format!(r#"{{"name":"n{i}"}}"#))
            .await;
        assert_eq!(status, 200);
    }
    for i in 0..3 {
        let (status, body) = s
            .call(
                "hello-python",
                "fail",
                &format!(r#"{{"message":"bad {i}"}}"#),
            )
            .await;
        assert_eq!(status, 500, "{body}");
    }
    for _ in 0..2 {
        let (status, body) = s.call("hello-python", "add", "{not json").await;
        assert_eq!(status, 400, "{body}");
    }
    let (status, _) = s.call("hello-python", "nope", "{}").await;
    assert_eq!(status, 404);

    let after = scrape(&s).await;
    let delta = |series: &str| get(&after, series) - get(&before, series);
    assert_eq!(delta(&calls("greet", 200)), 5.0);
    assert_eq!(delta(&calls("greet", 500)), 0.0);
    assert_eq!(delta(&calls("fail", 500)), 3.0);
    assert_eq!(delta(&calls("fail", 200)), 0.0);
    assert_eq!(delta(&calls("add", 400)), 2.0);
    assert_eq!(delta(&calls("add", 200)), 0.0);
    assert_eq!(delta("morel_unrouted_calls_total"), 1.0);
    let total: f64 = after
        .iter()
        .filter(|(k, _)| k.starts_with("morel_calls_total{"))
        .map(|(k, v)| v - get(&before, k))
        .sum();
    assert_eq!(total, 10.0, "every call counted once, nothing else");
    assert_eq!(
        delta(
            r#"morel_call_duration_seconds_count{namespace="default",app="hello-python",function="greet"}"#
        ),
        5.0
    );
    assert!(
        delta(
            r#"morel_call_duration_seconds_sum{namespace="default",app="hello-python",function="greet"}"#
        ) > 0.0
    );

    // The recent calls of `fail`, newest first, with the error each raised.
    let (status, body) = s
        .get("/api/apps/hello-python/functions/fail/executions")
        .await;
    assert_eq!(status, 200, "{body}");
    let list = body["calls"].as_array().unwrap();
    assert_eq!(list.len(), 3, "{body}");
    assert_eq!(list[0]["status"], 500);
    assert_eq!(list[0]["ok"], false);
    let err = list[0]["error"].as_str().unwrap();
    assert!(err.contains("ValueError") && err.contains("bad 2"), "{err}");
    assert!(list[2]["error"].as_str().unwrap().contains("bad 0"));
    let (_, body) = s
        .get("/api/apps/hello-python/functions/greet/executions")
        .await;
    let list = body["calls"].as_array().unwrap();
    assert_eq!(list.len(), 5);
    assert!(list.iter().all(|c| c["ok"] == true && c["error"].is_null()));
    assert!(list[0]["duration_ms"].as_f64().unwrap() > 0.0);

    let (status, body) = s
        .get("/api/apps/hello-python/functions/nope/executions")
        .await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].as_str().unwrap().contains("nope"));
    let (status, _) = s.get("/api/apps/ghost/functions/f/executions").await;
    assert_eq!(status, 404);
}

/// The served document is the checked-in one, needs no token, and every operation it lists is
/// answered by a real route of the running server (not the "no route" fallback, not 405).
#[tokio::test(flavor = "multi_thread")]
async fn openapi_document_is_served_and_every_operation_is_routed() {
    let s = MorelServer::start(&bin());
    let resp = s
        .http()
        .get(format!("{}/api/openapi.json", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let served = resp.text().await.unwrap();
    let checked_in = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json"),
    )
    .unwrap();
    assert!(
        served == checked_in,
        "the server's /api/openapi.json differs from docs/openapi.json"
    );
    let doc: serde_json::Value = serde_json::from_str(&served).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() > 30);
    let mut checked = 0;
    for (path, item) in paths {
        let url = format!("{}{}", s.url, path.replace(['{', '}'], ""));
        for method in item.as_object().unwrap().keys() {
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let resp = s
                .http()
                .request(m, &url)
                .bearer_auth(&s.token)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap();
            assert_ne!(status, 405, "{method} {path} is documented but not routed");
            assert!(
                !(status == 404 && body.contains("no route for")),
                "{method} {path} is documented but not routed: {body}"
            );
            checked += 1;
        }
    }
    assert!(checked > 40, "{checked}");
}

/// Compile jobs and deploys are counted by outcome: one WAT function that compiles, one that
/// does not, and a deploy whose code raises at import.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_compile_jobs_and_deploys_by_outcome() {
    let s = MorelServer::start(&bin());
    let before = scrape(&s).await;
    let compiled = |outcome: &str| format!(r#"morel_compile_jobs_total{{outcome="{outcome}"}}"#);
    let deploys =
        |outcome: &str| format!(r#"morel_deploy_duration_seconds_count{{outcome="{outcome}"}}"#);

    let good = r#"(module (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "handle") (param i32 i32) (result i64) (i64.const 0)))"#;
    for (name, source) in [("good", good), ("bad", "(module (func")] {
        let (status, f) = s
            .api(
                reqwest::Method::POST,
                "/functions",
                Some(serde_json::json!({ "name": name, "language": "wat", "source": source })),
            )
            .await;
        assert_eq!(status, 201, "{f}");
        let id = f["id"].as_str().unwrap().to_owned();
        wait_for(Duration::from_secs(60), "the compile to finish", || async {
            let (_, f) = s.get(&format!("/functions/{id}")).await;
            matches!(f["status"].as_str(), Some("READY" | "FAILED")).then_some(())
        })
        .await;
    }

    s.deploy(&example("hello-python"));
    let broken = tempfile::tempdir().unwrap();
    copy_dir(&example("hello-python"), broken.path());
    std::fs::write(
        broken.path().join("hello.py"),
        "raise RuntimeError('broken at import')\n\ndef f():\n    return 1\n",
    )
    .unwrap();
    let out = s.cli(&[
        "deploy",
        broken.path().to_str().unwrap(),
        "--name",
        "hello-python",
    ]);
    assert!(!out.status.success());

    let after = scrape(&s).await;
    let delta = |series: &str| get(&after, series) - get(&before, series);
    assert_eq!(delta(&compiled("ok")), 1.0);
    assert_eq!(delta(&compiled("failed")), 1.0);
    assert_eq!(delta(&deploys("ok")), 1.0);
    assert_eq!(delta(&deploys("failed")), 1.0);
    assert_eq!(
        get(&after, r#"morel_queue_depth{queue="compilation_jobs"}"#),
        0.0
    );
}
