//! Seed 002: an app spread over several resources, routed by its manifest, whose functions
//! call each other across resources.

use morel_test_support::{MorelServer, example};
use serde_json::{Value, json};

use crate::bin;

#[tokio::test(flavor = "multi_thread")]
async fn routes_and_cross_resource_calls() {
    let s = MorelServer::start(&bin());
    s.deploy(&example("shop"));
    let http = s.http();

    // A route on the api resource calls a function of jobs (decorated call) and one of models (morel.call).
    let r = http
        .post(format!("{}/shop/checkout", s.url))
        .body(r#"{"items": [{"price": 10, "qty": 2}, {"price": 5, "qty": 1}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["total"], 25);
    assert_eq!(body["served_by"], "api");
    assert_eq!(
        body["thumbnail"],
        json!({"w": 64, "h": 48, "served_by": "jobs"})
    );
    assert_eq!(body["score"]["served_by"], "models");
    assert_eq!(body["score"]["score"], 2.5);
    // The class keeps one instance per worker: its counter grows.
    let again: Value = http
        .post(format!("{}/shop/checkout", s.url))
        .body(r#"{"items": []}"#)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(again["score"]["calls"].as_i64().unwrap() >= 2, "{again}");

    let r = http
        .get(format!("{}/shop/status", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"ok": true}));
    let r = http
        .get(format!("{}/shop@production/status", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        http.get(format!("{}/shop/checkout", s.url))
            .send()
            .await
            .unwrap()
            .status(),
        405
    );
    assert_eq!(
        http.get(format!("{}/shop/nope", s.url))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        http.get(format!("{}/no-such-app/x", s.url))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    // A remote failure propagates with the remote function's message and type.
    let r = http
        .post(format!("{}/shop/fail", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    let err: Value = r.json().await.unwrap();
    assert_eq!(err["type"], "ValueError", "{err}");
    assert!(
        err["error"].as_str().unwrap().contains("exploded from api"),
        "{err}"
    );

    // Every function is also on the call path, including class methods.
    assert_eq!(
        s.call("shop", "resize", "[1, 2]").await.1["served_by"],
        "jobs"
    );
    assert_eq!(
        s.call("shop", "Model.predict", "[10]").await.1["score"],
        1.0
    );

    // The authoritative manifest, with each resource's reconcile state.
    let (_, m) = s.get("/api/apps/shop/manifest").await;
    for r in ["api", "jobs", "models"] {
        assert_eq!(m["resources"][r]["status"], "deployed", "{m}");
        assert!(m["resources"][r]["config_hash"].as_str().unwrap().len() == 16);
    }
    assert_eq!(m["routes"]["api"]["POST /checkout"], "checkout");
    assert_eq!(m["function_registry"]["Model.predict"], "models");
}

async fn wait_execution(s: &MorelServer, id: &str, want: &[&str]) -> Value {
    morel_test_support::wait_for(
        std::time::Duration::from_secs(60),
        "the job to finish",
        || async {
            let (_, e) = s.get(&format!("/api/executions/{id}")).await;
            want.contains(&e["status"].as_str().unwrap_or(""))
                .then_some(e)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn async_jobs_run_report_and_cancel() {
    let s = MorelServer::start(&bin());
    s.deploy(&example("hello-python"));
    let http = s.http();
    let run = |func: &str, body: &str| {
        http.post(format!("{}/default/hello-python/latest/run/{func}", s.url))
            .body(body.to_owned())
            .send()
    };

    let r = run("add", "[20, 22]").await.unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let e = wait_execution(&s, &id, &["COMPLETED"]).await;
    assert_eq!(e["output"], json!(42));
    assert_eq!(e["function_id"], "default/hello-python/add");

    // A function that raises: FAILED with its message.
    let id = run("fail", r#"{"message": "nope"}"#)
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let e = wait_execution(&s, &id, &["FAILED"]).await;
    assert!(e["errorMessage"].as_str().unwrap().contains("nope"), "{e}");

    // Cancel a long job: it stays CANCELLED even when the worker finishes later.
    let id = run("slow_echo", r#"{"value": 1, "delay": 1.5}"#)
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, e) = s
        .api(
            reqwest::Method::POST,
            &format!("/api/executions/{id}/cancel"),
            None,
        )
        .await;
    assert_eq!(
        (status, e["status"].as_str()),
        (200, Some("CANCELLED")),
        "{e}"
    );
    let (status, _) = s
        .api(
            reqwest::Method::POST,
            &format!("/api/executions/{id}/cancel"),
            None,
        )
        .await;
    assert_eq!(status, 409, "cancelling twice is a conflict");
    // Proof the late result did not overwrite it: a second slow job started after it (they run
    // concurrently) has completed, so the cancelled one's worker call has returned too.
    let later = run("slow_echo", r#"{"value": 2, "delay": 1.5}"#)
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_execution(&s, &later, &["COMPLETED"]).await;
    let (_, e) = s.get(&format!("/api/executions/{id}")).await;
    assert_eq!(e["status"], "CANCELLED", "{e}");
    assert!(e["output"].is_null(), "{e}");

    // Bad input.
    assert_eq!(run("nope", "").await.unwrap().status(), 404);
    assert_eq!(run("add", "{bad").await.unwrap().status(), 400);
    assert_eq!(s.get("/api/executions/does-not-exist").await.0, 404);
}

fn instance_pids(detail: &Value) -> std::collections::BTreeMap<String, i64> {
    let Some(list) = detail["instances"].as_array() else {
        return Default::default();
    };
    list.iter()
        .filter(|i| i["state"] == "ready")
        .filter_map(|i| Some((i["resource"].as_str()?.to_owned(), i["pid"].as_i64()?)))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn reconcile_plans_and_keeps_unchanged_resources() {
    let s = MorelServer::start(&bin());
    let dir = tempfile::tempdir().unwrap();
    morel_test_support::copy_dir(&example("shop"), dir.path());
    let d = dir.path().to_str().unwrap();

    // First deploy: everything is new.
    let plan = s.cli_ok(&["deploy", d, "--name", "shop", "--dry-run"]);
    assert!(
        plan.contains("+ api (new)")
            && plan.contains("+ jobs (new)")
            && plan.contains("+ models (new)"),
        "{plan}"
    );
    assert_eq!(
        s.get("/api/apps/shop").await.0,
        404,
        "a dry run deploys nothing"
    );
    s.cli_ok(&["deploy", d, "--name", "shop"]);
    let before = morel_test_support::wait_for(
        std::time::Duration::from_secs(30),
        "three ready resources",
        || async {
            let pids = instance_pids(&s.get("/api/apps/shop").await.1);
            (pids.len() == 3).then_some(pids)
        },
    )
    .await;

    // The same bundle again: all unchanged, and no worker restarts.
    let plan = s.cli_ok(&["deploy", d, "--name", "shop", "--dry-run"]);
    assert!(
        plan.contains("= api (unchanged")
            && plan.contains("= jobs (unchanged")
            && plan.contains("= models (unchanged"),
        "{plan}"
    );
    s.cli_ok(&["deploy", d, "--name", "shop"]);
    let (_, detail) = s.get("/api/apps/shop").await;
    assert_eq!(detail["active_release"], "v2");
    assert_eq!(
        instance_pids(&detail),
        before,
        "a no-op redeploy restarted workers"
    );

    // Change settings of api, and remove models: changed restarts, removed really stops.
    let src = std::fs::read_to_string(dir.path().join("shop.py")).unwrap();
    let src = src.replace(
        r#"api = morel.Endpoint("api", workers=(1, 2), concurrency=8)"#,
        r#"api = morel.Endpoint("api", workers=(1, 2), concurrency=4)"#,
    );
    let src = src.replace("@models.function\nclass Model", "class Model");
    std::fs::write(dir.path().join("shop.py"), src).unwrap();
    let plan = s.cli_ok(&["deploy", d, "--name", "shop", "--dry-run"]);
    assert!(
        plan.contains("~ api (changed") && plan.contains("- models (removed"),
        "{plan}"
    );
    s.cli_ok(&["deploy", d, "--name", "shop"]);
    let (_, m) = s.get("/api/apps/shop/manifest").await;
    assert_eq!(m["resources"]["api"]["status"], "updated", "{m}");
    assert!(m["resources"].get("models").is_none(), "{m}");
    // The deploy returns once the new release serves; the old pools stop right after it.
    morel_test_support::wait_for(
        std::time::Duration::from_secs(10),
        "the changed resource's new worker alone, and the removed resource's gone",
        || async {
            let pids = instance_pids(&s.get("/api/apps/shop").await.1);
            (pids.contains_key("api")
                && pids.get("api") != before.get("api")
                && !pids.contains_key("models"))
            .then_some(())
        },
    )
    .await;
    let gone = before["models"];
    morel_test_support::wait_for(
        std::time::Duration::from_secs(10),
        "the removed resource's worker to exit",
        || async {
            let stat = std::fs::read_to_string(format!("/proc/{gone}/stat")).unwrap_or_default();
            (stat.is_empty() || stat.contains(") Z ")).then_some(())
        },
    )
    .await;
    assert_eq!(s.call("shop", "Model.predict", "[1]").await.0, 404);
}
