//! Deploy and call flows through the CLI and the call path, for every example, with every
//! bad input the Foundation issue names.

use std::time::Duration;

use morel_test_support::{MorelServer, copy_dir, example, wait_for};
use serde_json::{Value, json};

use crate::bin;

#[tokio::test(flavor = "multi_thread")]
async fn python_deploy_call_inspect_logs_delete() {
    let s = MorelServer::start(&bin());
    let out = s.deploy(&example("hello-python"));
    assert!(out.contains("hello-python v1 is ready"), "{out}");
    assert!(out.contains("greet(name)"), "{out}");

    // Named arguments, positional arguments, no body (defaults), async functions, /await/.
    assert_eq!(
        s.call("hello-python", "greet", r#"{"name":"Ada"}"#).await,
        (200, json!({"message": "Hello, Ada!"}))
    );
    assert_eq!(
        s.call("hello-python", "add", "[2, 3]").await,
        (200, json!(5))
    );
    assert_eq!(
        s.call("hello-python", "greet", "").await,
        (200, json!({"message": "Hello, world!"}))
    );
    assert_eq!(
        s.call("hello-python", "slow_echo", r#"{"value": [1, "two"]}"#)
            .await,
        (200, json!([1, "two"]))
    );
    // Object keys that are not parameter names: refused, naming them and the signature (an
    // object is bound by position only in seed 000's metacall.json projects, see compat.rs).
    let (status, body) = s.call("hello-python", "add", r#"{"x": 40, "y": 2}"#).await;
    assert_eq!(
        (status, &body["type"]),
        (400, &json!("BadArguments")),
        "{body}"
    );
    assert_eq!(
        body["error"],
        "add() has no parameters \"x\", \"y\" (signature: add(a, b))"
    );
    let r = s
        .http()
        .post(format!("{}/default/hello-python/v1/await/add", s.url))
        .body("[1,1]")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers().get("x-morel-edge").map(|v| v.to_str().unwrap()),
        Some("1")
    );
    let r = s
        .http()
        .get(format!(
            "{}/default/hello-python/production/call/greet",
            s.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"message": "Hello, world!"})
    );

    // The CLI call.
    let out = s.cli_ok(&[
        "call",
        "hello-python",
        "greet",
        "--data",
        r#"{"name":"Ada"}"#,
    ]);
    assert_eq!(
        serde_json::from_str::<Value>(out.trim()).unwrap(),
        json!({"message": "Hello, Ada!"})
    );

    // ls and inspect, human and --json.
    let ls: Value = serde_json::from_str(&s.cli_ok(&["ls", "--json"])).unwrap();
    assert_eq!(ls[0]["name"], "hello-python");
    assert_eq!(ls[0]["active_release"], "v1");
    assert!(s.cli_ok(&["ls"]).contains("hello-python"));
    let detail: Value =
        serde_json::from_str(&s.cli_ok(&["inspect", "hello-python", "--json"])).unwrap();
    let greet = detail["functions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "greet")
        .unwrap()
        .clone();
    assert_eq!(greet["params"], json!(["name"]));
    assert_eq!(detail["instances"][0]["state"], "ready");
    assert_eq!(detail["resources"][0]["status"], "deployed");
    assert!(
        s.cli_ok(&["inspect", "hello-python"])
            .contains("slow_echo(value, delay)")
    );

    // The worker's print() reaches the app's log.
    wait_for(
        Duration::from_secs(10),
        "the greeting in the logs",
        || async {
            let out = s.cli_ok(&["logs", "hello-python"]);
            out.contains("greeting Ada").then_some(())
        },
    )
    .await;
    // Follow mode streams (bounded by killing it once the line shows up).
    let mut follow = s
        .command(&["logs", "hello-python", "-f"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.contains("greeting Follower"))
            .is_some()
    });
    s.call("hello-python", "greet", r#"{"name":"Follower"}"#)
        .await;
    let found = wait_for(Duration::from_secs(15), "the followed log line", || async {
        reader.is_finished().then_some(())
    });
    let _ = tokio::time::timeout(Duration::from_secs(20), found).await;
    let _ = follow.kill();
    let _ = follow.wait();
    assert!(
        reader.join().unwrap(),
        "morel logs -f did not stream the new line"
    );

    // Delete: gone from the call path and the listing, files removed.
    let releases_dir = s.state_dir.join("releases/default/hello-python");
    assert!(releases_dir.exists());
    s.cli_ok(&["delete", "hello-python", "--yes"]);
    assert_eq!(s.call("hello-python", "greet", "").await.0, 404);
    assert_eq!(s.cli_ok(&["ls", "--json"]).trim(), "[]");
    assert!(!releases_dir.exists());
    let out = s.cli(&["delete", "hello-python", "--yes"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
}

#[tokio::test(flavor = "multi_thread")]
async fn call_path_bad_input() {
    let s = MorelServer::start(&bin());
    // A copy with a one-second deadline, so "never returns" is quick to test.
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&example("hello-python"), dir.path());
    std::fs::write(
        dir.path().join("morel.toml"),
        "[app]\nname = \"deadline\"\n[resources.default]\ntimeout_s = 1\n",
    )
    .unwrap();
    s.deploy(dir.path());

    let (status, body) = crate::raised(s.call("deadline", "fail", r#"{"message":"kaput"}"#).await);
    assert_eq!(
        (status, body),
        (500, json!({"error": "kaput", "type": "ValueError"}))
    );
    let (status, body) = s.call("deadline", "nope", "").await;
    assert_eq!(status, 404);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no function \"nope\""),
        "{body}"
    );
    assert_eq!(s.call("missing-app", "greet", "").await.0, 404);
    let (status, body) = s.call("deadline", "greet", "{not json").await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("not valid JSON"),
        "{body}"
    );
    let big = format!("[\"{}\"]", "x".repeat(7 << 20));
    let (status, body) = s.call("deadline", "greet", &big).await;
    assert_eq!(status, 413, "{body}");
    let (status, body) = s.call("deadline", "sleep_forever", "").await;
    assert_eq!(status, 504, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("deadline"),
        "{body}"
    );
    let r = s
        .http()
        .get(format!("{}/default/deadline/v9/call/greet", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // After all of that the server, and the app, still serve.
    assert_eq!(s.call("deadline", "add", "[1, 2]").await, (200, json!(3)));
}

#[tokio::test(flavor = "multi_thread")]
async fn node_and_metacall_projects() {
    let s = MorelServer::start(&bin());
    s.deploy(&example("hello-node"));
    assert_eq!(
        s.call("hello-node", "greet", r#"{"name":"Bob"}"#).await,
        (200, json!({"message": "Hello, Bob!"}))
    );
    assert_eq!(
        s.call("hello-node", "add", "[20, 22]").await,
        (200, json!(42))
    );
    assert_eq!(
        s.call("hello-node", "slowEcho", r#"["later", 10]"#).await,
        (200, json!("later"))
    );
    assert_eq!(
        crate::raised(s.call("hello-node", "fail", r#"["bad"]"#).await),
        (500, json!({"error": "bad", "type": "TypeError"}))
    );

    s.deploy(&example("metacall-style"));
    assert_eq!(
        s.call("metacall-style", "multiply", r#"{"a": 6, "b": 7}"#)
            .await,
        (200, json!(42))
    );
    // Only the scripts metacall.json lists are deployed, and private helpers are not exported.
    assert_eq!(s.call("metacall-style", "not_deployed", "").await.0, 404);
    assert_eq!(s.call("metacall-style", "_private_helper", "").await.0, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn dependencies_are_installed_and_cached() {
    let s = MorelServer::start(&bin());
    s.deploy(&example("python-with-deps"));
    assert_eq!(
        s.call("python-with-deps", "natural_size", "[3000000]")
            .await,
        (200, json!("3.0 MB"))
    );
    s.deploy(&example("node-with-deps"));
    assert_eq!(
        s.call("node-with-deps", "pretty", "[60000]").await,
        (200, json!("1 minute"))
    );
    assert_eq!(
        s.call("node-with-deps", "duration", r#"["2h"]"#).await,
        (200, json!(7_200_000))
    );

    // A redeploy with an unchanged requirements.txt (but changed code) installs nothing.
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&example("python-with-deps"), dir.path());
    std::fs::write(
        dir.path().join("extra.py"),
        "def twice(n):\n    return 2 * n\n",
    )
    .unwrap();
    let out = s.cli_ok(&[
        "deploy",
        dir.path().to_str().unwrap(),
        "--name",
        "python-with-deps",
    ]);
    assert!(out.contains("python-with-deps v2 is ready"), "{out}");
    assert_eq!(
        s.call("python-with-deps", "twice", "[21]").await,
        (200, json!(42))
    );
    let (_, logs) = s.get("/api/apps/python-with-deps/logs?stream=event").await;
    let lines: Vec<&str> = logs
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["line"].as_str().unwrap())
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("v1:") && l.contains("dependencies of default installed")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("v2:") && l.contains("unchanged (cached)")),
        "{lines:?}"
    );
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with("v2:") && l.contains("installed")),
        "{lines:?}"
    );
    // The old release is no longer served; latest is v2.
    let r = s
        .http()
        .post(format!(
            "{}/default/python-with-deps/v1/call/natural_size",
            s.url
        ))
        .body("[1]")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_install_fails_the_deploy_with_pips_message() {
    let s = MorelServer::start(&bin());
    s.deploy(&example("hello-python"));
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&example("hello-python"), dir.path());
    std::fs::write(
        dir.path().join("requirements.txt"),
        "morel-no-such-package-zzz==0.0.1\n",
    )
    .unwrap();
    let out = s.cli(&[
        "deploy",
        dir.path().to_str().unwrap(),
        "--name",
        "hello-python",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("release v2 of hello-python failed"), "{err}");
    assert!(
        err.contains("pip failed") && err.contains("morel-no-such-package-zzz"),
        "{err}"
    );
    // The previous release keeps serving.
    assert_eq!(
        s.call("hello-python", "add", "[1, 1]").await,
        (200, json!(2))
    );
    let (_, app) = s.get("/api/apps/hello-python").await;
    assert_eq!(app["active_release"], "v1");
    assert_eq!(app["releases"][1]["status"], "failed");
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_code_fails_the_deploy_with_the_traceback() {
    let s = MorelServer::start(&bin());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("app.py"),
        "import no_such_module_here\n\ndef f():\n    return 1\n",
    )
    .unwrap();
    let out = s.cli(&["deploy", dir.path().to_str().unwrap(), "--name", "broken"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no_such_module_here"), "{err}");
    // Build-time problems name the file.
    std::fs::write(dir.path().join("app.py"), "def f(:\n").unwrap();
    let out = s.cli(&["deploy", dir.path().to_str().unwrap(), "--name", "broken"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("app.py:1"), "{err}");
    let empty = tempfile::tempdir().unwrap();
    let out = s.cli(&["deploy", empty.path().to_str().unwrap(), "--name", "empty"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no deployable functions"));
}

#[tokio::test(flavor = "multi_thread")]
async fn bundles_are_verified_and_auth_is_required() {
    let s = MorelServer::start(&bin());
    // The control API needs the token; the call path does not.
    let r = s
        .http()
        .get(format!("{}/api/apps", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.json::<Value>().await.unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("token")
    );
    let r = s
        .http()
        .get(format!("{}/api/apps", s.url))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // A bundle signed by a key the server does not trust.
    let out_dir = tempfile::tempdir().unwrap();
    let bundle = out_dir.path().join("b.bundle");
    let other_config = out_dir.path().join("other-config");
    let out = std::process::Command::new(bin())
        .args([
            "build",
            example("hello-python").to_str().unwrap(),
            "--out",
            bundle.to_str().unwrap(),
        ])
        .env("MOREL_CONFIG_DIR", &other_config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&bundle).unwrap();
    let sig = std::fs::read_to_string(bundle.with_extension("sig")).unwrap();
    let digest = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("digest:").map(|d| d.trim().to_owned()))
        .unwrap();
    let put = |bytes: Vec<u8>, sig: Option<String>| {
        let mut req = s
            .http()
            .put(format!("{}/api/bundles/{digest}", s.url))
            .bearer_auth(&s.token)
            .body(bytes);
        if let Some(sig) = sig {
            req = req.header("x-morel-signature", sig);
        }
        req.send()
    };
    let r = put(bytes.clone(), Some(sig.clone())).await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("untrusted key"));
    let r = put(bytes.clone(), None).await.unwrap();
    assert_eq!(r.status(), 400);

    // Trust it: now it uploads, and a tampered copy is still refused.
    let public = String::from_utf8_lossy(
        &std::process::Command::new(bin())
            .args(["keys", "show"])
            .env("MOREL_CONFIG_DIR", &other_config)
            .output()
            .unwrap()
            .stdout,
    )
    .trim()
    .to_owned();
    s.cli_ok(&["keys", "trust", &public, "--name", "ci"]);
    assert!(s.cli_ok(&["keys", "ls"]).contains("ci"));
    let mut tampered = bytes.clone();
    let mid = tampered.len() / 2;
    tampered[mid] ^= 0xff;
    let r = put(tampered, Some(sig.clone())).await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("digest"));
    let r = put(bytes, Some(sig)).await.unwrap();
    assert_eq!(r.status(), 201);
    let (status, _) = s
        .api(
            reqwest::Method::POST,
            "/api/apps/signed/releases",
            Some(json!({"digest": digest})),
        )
        .await;
    assert_eq!(status, 202);
    wait_for(
        Duration::from_secs(60),
        "the signed bundle to serve",
        || async { (s.call("signed", "add", "[1, 2]").await == (200, json!(3))).then_some(()) },
    )
    .await;
    // Releasing a digest that was never uploaded is refused.
    let (status, body) = s
        .api(
            reqwest::Method::POST,
            "/api/apps/signed/releases",
            Some(json!({"digest": "ab".repeat(32)})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unchanged_tree_is_not_uploaded_twice() {
    let s = MorelServer::start(&bin());
    let first = s.cli(&["deploy", example("metacall-style").to_str().unwrap()]);
    assert!(first.status.success());
    assert!(
        String::from_utf8_lossy(&first.stderr).contains("uploading"),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let second = s.cli(&["deploy", example("metacall-style").to_str().unwrap()]);
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        second.status.success() && err.contains("already on the server; skipping upload"),
        "{err}"
    );
    assert!(String::from_utf8_lossy(&second.stdout).contains("metacall-style v2 is ready"));
}
