//! Seed 001: compiled WebAssembly functions through the real API, compiler service and wasmtime.

use std::time::Duration;

use morel_test_support::{MorelServer, example, repo_root, wait_for};
use reqwest::Method;
use serde_json::{Value, json};

use crate::bin;

/// A core-ABI guest: returns its input unchanged.
const ECHO_WAT: &str = r#"(module
  (memory (export "memory") 1)
  (global $next (mut i32) (i32.const 1024))
  (func (export "alloc") (param $len i32) (result i32)
    (local $p i32) (local.set $p (global.get $next))
    (global.set $next (i32.add (global.get $next) (local.get $len))) (local.get $p))
  (func (export "handle") (param $ptr i32) (param $len i32) (result i64)
    (i64.or (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32)) (i64.extend_i32_u (local.get $len)))))"#;

fn guest(body: &str) -> String {
    format!(
        r#"(module (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "handle") (param i32 i32) (result i64) {body}))"#
    )
}

async fn create(s: &MorelServer, name: &str, language: &str, source: &str) -> (u16, Value) {
    s.api(
        Method::POST,
        "/functions",
        Some(json!({ "name": name, "language": language, "source": source })),
    )
    .await
}

async fn wait_terminal(s: &MorelServer, id: &str) -> Value {
    wait_for(
        Duration::from_secs(120),
        "the function to finish compiling",
        || async {
            let (_, f) = s.get(&format!("/functions/{id}")).await;
            matches!(f["status"].as_str(), Some("READY" | "FAILED")).then_some(f)
        },
    )
    .await
}

async fn execute(s: &MorelServer, id: &str, input: Value, timeout_ms: Option<u64>) -> (u16, Value) {
    s.api(
        Method::POST,
        &format!("/functions/{id}/execute"),
        Some(json!({ "input": input, "timeout_ms": timeout_ms })),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn register_compile_execute_and_fail() {
    let s = MorelServer::start(&bin());
    // Flow 1: compile succeeds.
    let (status, f) = create(&s, "echo", "wat", ECHO_WAT).await;
    assert_eq!(
        (status, f["status"].as_str()),
        (201, Some("PENDING")),
        "{f}"
    );
    let id = f["id"].as_str().unwrap().to_owned();
    let f = wait_terminal(&s, &id).await;
    assert_eq!(f["status"], "READY", "{f}");
    // Flow 3: execute.
    let (status, e) = execute(&s, &id, json!({"hello": [1, 2]}), None).await;
    assert_eq!(status, 200);
    assert_eq!(
        (e["status"].as_str(), &e["output"]),
        (Some("COMPLETED"), &json!({"hello": [1, 2]})),
        "{e}"
    );
    let (_, got) = s
        .get(&format!("/executions/{}", e["id"].as_str().unwrap()))
        .await;
    assert_eq!(got["status"], "COMPLETED");
    let (_, list) = s.get(&format!("/functions/{id}/executions")).await;
    assert_eq!(list.as_array().unwrap().len(), 1);

    // Flow 2: compile fails with the compiler's message.
    let (_, bad) = create(
        &s,
        "broken",
        "wat",
        "(module (func $f (result i32) (i32.const)))",
    )
    .await;
    let bad = wait_terminal(&s, bad["id"].as_str().unwrap()).await;
    assert_eq!(bad["status"], "FAILED");
    assert!(!bad["compile_error"].as_str().unwrap().is_empty(), "{bad}");
    // Flow 4: a function that is not READY cannot run.
    let (status, body) = execute(&s, bad["id"].as_str().unwrap(), json!(1), None).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("FAILED"));
    assert_eq!(execute(&s, "no-such-id", json!(1), None).await.0, 404);

    // Flow 5: runtime failures are executions with status FAILED/TIMED_OUT, answered with 200.
    let cases = [
        ("trap", guest("(unreachable)"), "FAILED", "unreachable"),
        (
            "spin",
            guest("(loop $l (br $l)) (i64.const 0)"),
            "TIMED_OUT",
            "",
        ),
        (
            "grow",
            guest("(drop (memory.grow (i32.const 60000))) (i64.const 0)"),
            "FAILED",
            "memory limit",
        ),
        (
            "notjson",
            guest("(i32.store8 (i32.const 0) (i32.const 123)) (i64.const 1)"),
            "FAILED",
            "JSON",
        ),
    ];
    for (name, src, want, needle) in cases {
        let (_, f) = create(&s, name, "wat", &src).await;
        let f = wait_terminal(&s, f["id"].as_str().unwrap()).await;
        assert_eq!(f["status"], "READY", "{name}: {f}");
        let (status, e) = execute(&s, f["id"].as_str().unwrap(), json!({}), Some(500)).await;
        assert_eq!(status, 200, "{name}: {e}");
        assert_eq!(e["status"], want, "{name}: {e}");
        assert!(
            e["errorMessage"].as_str().unwrap_or("").contains(needle),
            "{name}: {e}"
        );
    }
    // A module importing what the host does not provide fails at validation, naming the import.
    let (_, f) = create(&s, "imports", "wat", r#"(module (import "env" "launch_missiles" (func)) (memory (export "memory") 1) (func (export "alloc") (param i32) (result i32) (i32.const 0)) (func (export "handle") (param i32 i32) (result i64) (i64.const 0)))"#).await;
    let f = wait_terminal(&s, f["id"].as_str().unwrap()).await;
    assert_eq!(f["status"], "FAILED");
    assert!(
        f["compile_error"]
            .as_str()
            .unwrap()
            .contains("launch_missiles"),
        "{f}"
    );
    // Missing exports, too.
    let (_, f) = create(&s, "noexports", "wat", "(module)").await;
    let f = wait_terminal(&s, f["id"].as_str().unwrap()).await;
    assert!(
        f["compile_error"].as_str().unwrap().contains("handle"),
        "{f}"
    );
    // None of that stopped the server: echo still answers.
    assert_eq!(
        execute(&s, &id, json!("still here"), None).await.1["output"],
        json!("still here")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests() {
    let s = MorelServer::start(&bin());
    let (status, body) = create(&s, "x", "cobol", "IDENTIFICATION DIVISION.").await;
    assert_eq!(status, 400);
    let msg = body["error"].as_str().unwrap();
    assert!(
        msg.contains("wat") && msg.contains("assemblyscript"),
        "{msg}"
    );
    let (status, _) = create(&s, "x", "wat", &"a".repeat(2 << 20)).await;
    assert_eq!(status, 413);
    let r = s
        .http()
        .post(format!("{}/functions", s.url))
        .json(&json!({"name": "x", "language": "wat", "source": "(module)"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_language_compiles_and_runs() {
    let s = MorelServer::start(&bin());
    let root = repo_root();
    let cases = [
        ("wat", "examples/wasm-wat/echo.wat"),
        ("c", "examples/wasm-c/sum.c"),
        ("rust", "examples/wasm-rust/fib.rs"),
        ("assemblyscript", "examples/wasm-assemblyscript/greet.ts"),
    ];
    let mut ids = Vec::new();
    for (lang, file) in cases {
        let source = std::fs::read_to_string(root.join(file)).unwrap();
        let (status, f) = create(&s, lang, lang, &source).await;
        assert_eq!(status, 201, "{f}");
        ids.push((lang, f["id"].as_str().unwrap().to_owned()));
    }
    for (lang, id) in &ids {
        let f = wait_terminal(&s, id).await;
        assert_eq!(
            f["status"], "READY",
            "{lang}: {f}\nrun scripts/setup-toolchains if a toolchain is missing"
        );
    }
    let input = |lang: &str| match lang {
        "c" => json!([1, 2, 3.5]),
        "rust" => json!(10),
        "assemblyscript" => json!({"name": "Ada"}),
        _ => json!({"any": "thing"}),
    };
    for (lang, id) in &ids {
        let (_, e) = execute(&s, id, input(lang), None).await;
        assert_eq!(e["status"], "COMPLETED", "{lang}: {e}");
        match *lang {
            "c" => assert_eq!(e["output"], json!({"sum": 6.5, "count": 3}), "{e}"),
            "rust" => assert_eq!(e["output"], json!({"n": 10, "fib": 55}), "{e}"),
            "wat" => assert_eq!(e["output"], json!({"any": "thing"}), "{e}"),
            _ => assert!(e["output"].to_string().contains("Ada"), "{e}"),
        }
    }
    // The CLI: fn ls / exec / executions, and doctor.
    assert!(s.cli_ok(&["fn", "ls"]).contains("READY"));
    let out = s.cli_ok(&["fn", "exec", &ids[1].1, "--input", "[40, 2]"]);
    assert_eq!(
        serde_json::from_str::<Value>(out.trim()).unwrap(),
        json!({"sum": 42, "count": 2})
    );
    assert!(
        s.cli_ok(&["fn", "executions", &ids[1].1])
            .contains("COMPLETED")
    );
    let doctor: Value = serde_json::from_str(&s.cli_ok(&["doctor", "--json"])).unwrap();
    assert!(
        doctor["languages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["available"] == true),
        "{doctor}"
    );
    let _ = example("hello-python");
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_keeps_ready_functions_without_recompiling() {
    let mut s = MorelServer::start(&bin());
    let (_, f) = create(&s, "echo", "wat", ECHO_WAT).await;
    let id = f["id"].as_str().unwrap().to_owned();
    wait_terminal(&s, &id).await;
    assert_eq!(
        execute(&s, &id, json!(1), None).await.1["status"],
        "COMPLETED"
    );
    let cache = s.state_dir.join("wasm-cache");
    let cached: Vec<_> = std::fs::read_dir(&cache).unwrap().collect();
    assert!(
        !cached.is_empty(),
        "the precompiled module is cached on disk"
    );
    let dirs = s.dirs.clone();
    s.stop();
    let s2 = MorelServer::start_with(&bin(), dirs);
    let (status, e) = execute(&s2, &id, json!({"back": true}), None).await;
    assert_eq!(
        (status, e["output"].clone()),
        (200, json!({"back": true})),
        "{e}"
    );
    assert!(
        s2.log().contains("loaded precompiled module from cache")
            || std::fs::read_dir(&cache).unwrap().count() == cached.len(),
        "no recompile after restart"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_compiler_is_redelivered_its_job() {
    // The server runs no compiler; jobs wait on the queue.
    let dirs = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let s = MorelServer::start_with_args(&bin(), dirs.clone(), &["--no-compiler"]);
    let (_, f) = create(&s, "echo", "wat", ECHO_WAT).await;
    let id = f["id"].as_str().unwrap().to_owned();
    assert_eq!(
        s.get(&format!("/functions/{id}")).await.1["status"],
        "COMPILING"
    );
    assert_eq!(
        execute(&s, &id, json!(1), None).await.0,
        400,
        "not READY yet"
    );

    // A compiler whose C toolchain hangs takes a C job, and is killed mid-compile.
    let marker = dirs.path().join("compiling");
    let fake = dirs.path().join("fake-clang");
    std::fs::write(
        &fake,
        format!("#!/bin/sh\ntouch {}\nexec sleep 60\n", marker.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (_, c) = create(
        &s,
        "sum",
        "c",
        &std::fs::read_to_string(repo_root().join("examples/wasm-c/sum.c")).unwrap(),
    )
    .await;
    let c_id = c["id"].as_str().unwrap().to_owned();
    let mut hanging = s
        .command(&[
            "compiler",
            "--state-dir",
            s.state_dir.to_str().unwrap(),
            "--visibility-timeout-ms",
            "1500",
        ])
        .env("MOREL_CLANG", &fake)
        .spawn()
        .unwrap();
    // It compiles the wat job first, then hangs in the fake clang.
    assert_eq!(wait_terminal(&s, &id).await["status"], "READY");
    wait_for(
        Duration::from_secs(30),
        "the compiler to start the C job",
        || async { marker.exists().then_some(()) },
    )
    .await;
    hanging.kill().unwrap();
    let _ = hanging.wait();

    // A healthy compiler gets the same job again once its visibility timeout passes.
    let mut healthy = s
        .command(&["compiler", "--state-dir", s.state_dir.to_str().unwrap()])
        .spawn()
        .unwrap();
    let done = wait_terminal(&s, &c_id).await;
    let _ = healthy.kill();
    let _ = healthy.wait();
    assert_eq!(done["status"], "READY", "{done}");
    assert_eq!(
        execute(&s, &c_id, json!([2, 3]), None).await.1["output"],
        json!({"sum": 5, "count": 2})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_app_mixes_wasm_and_python_on_one_call_path() {
    let s = MorelServer::start(&bin());
    let out = s.deploy(&example("mixed-wasm-python"));
    assert!(
        out.contains("echo(input)") && out.contains("mean(values)"),
        "{out}"
    );
    assert_eq!(
        s.call("mixed-wasm-python", "mean", "[[1, 2, 3]]").await,
        (200, json!(2.0))
    );
    assert_eq!(
        s.call("mixed-wasm-python", "echo", r#"{"hi": [1, 2]}"#)
            .await,
        (200, json!({"hi": [1, 2]}))
    );
    assert_eq!(
        s.call("mixed-wasm-python", "echo", "").await,
        (200, json!(null))
    );
    assert_eq!(s.call("mixed-wasm-python", "echo", "{bad").await.0, 400);
    let (_, detail) = s.get("/api/apps/mixed-wasm-python").await;
    let runtimes: Vec<&str> = detail["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["runtime"].as_str().unwrap())
        .collect();
    assert_eq!(runtimes, vec!["python", "wasm"], "{detail}");

    // A wasm function that traps answers 500; one that loops answers 504 at the resource deadline.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("boom.wat"), guest("(unreachable)")).unwrap();
    std::fs::write(
        dir.path().join("spin.wat"),
        guest("(loop $l (br $l)) (i64.const 0)"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("morel.toml"),
        "[app]\nname = \"wasm-errors\"\n[resources.default]\ntimeout_s = 0.5\n",
    )
    .unwrap();
    s.deploy(dir.path());
    let (status, body) = s.call("wasm-errors", "boom", "{}").await;
    assert_eq!(status, 500, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("unreachable"),
        "{body}"
    );
    assert_eq!(s.call("wasm-errors", "spin", "{}").await.0, 504);
    assert_eq!(
        s.call("mixed-wasm-python", "echo", "1").await,
        (200, json!(1))
    );
}

/// Runs a `morel` command that must fail; returns its stderr.
fn cli_err(s: &MorelServer, args: &[&str]) -> String {
    let out = s.cli(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "morel {args:?} succeeded:\nstdout: {}\nstderr: {stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

#[tokio::test(flavor = "multi_thread")]
async fn compiled_functions_go_by_name_are_unique_removable_and_recompiled_when_failed() {
    let s = MorelServer::start(&bin());
    let dir = tempfile::tempdir().unwrap();
    let echo_file = dir.path().join("echo.wat");
    std::fs::write(&echo_file, ECHO_WAT).unwrap();
    let echo_path = echo_file.to_str().unwrap();

    // `fn create` by the CLI, then everything by name: exec, executions, the API's routes.
    let out = s.cli_ok(&["fn", "create", "echo", "--lang", "wat", echo_path, "--json"]);
    let echo: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(echo["status"], "READY", "{echo}");
    let echo_id = echo["id"].as_str().unwrap().to_owned();
    let out = s.cli_ok(&["fn", "exec", "echo", "--input", r#"{"by": "name"}"#]);
    assert_eq!(
        serde_json::from_str::<Value>(out.trim()).unwrap(),
        json!({"by": "name"})
    );
    assert!(
        s.cli_ok(&["fn", "executions", "echo"])
            .contains("COMPLETED")
    );
    let (status, got) = s.get("/functions/echo").await;
    assert_eq!((status, &got["id"]), (200, &json!(echo_id)), "{got}");
    let (status, e) = execute(&s, "echo", json!([1]), None).await;
    assert_eq!((status, &e["output"]), (200, &json!([1])), "{e}");
    let exec_id = e["id"].as_str().unwrap().to_owned();
    let (status, list) = s.get("/functions/echo/executions").await;
    assert_eq!((status, list.as_array().unwrap().len()), (200, 2), "{list}");
    // Ids still work as before.
    assert_eq!(
        execute(&s, &echo_id, json!(2), None).await.1["output"],
        json!(2)
    );

    // A second `echo` is a conflict naming the one that holds the name, whatever the route.
    let (status, body) = create(&s, "echo", "wat", ECHO_WAT).await;
    assert_eq!((status, &body["type"]), (409, &json!("Conflict")), "{body}");
    let msg = body["error"].as_str().unwrap();
    assert!(
        msg.contains("\"echo\"")
            && msg.contains(&echo_id)
            && msg.contains("READY")
            && msg.contains("morel fn rm echo"),
        "{msg}"
    );
    let err = cli_err(&s, &["fn", "create", "echo", "--lang", "wat", echo_path]);
    assert!(
        err.contains("a function named \"echo\" already exists") && err.contains("HTTP 409"),
        "{err}"
    );
    let (_, all) = s.get("/functions").await;
    assert_eq!(all.as_array().unwrap().len(), 1, "{all}");

    // Names that would be ambiguous or unusable are refused, saying why.
    for (bad, why) in [
        ("0190a000-0000-7000-8000-000000000001", "UUID"),
        (" echo", "whitespace"),
        ("..", ".."),
    ] {
        let (status, body) = create(&s, bad, "wat", ECHO_WAT).await;
        assert_eq!(
            (status, &body["type"]),
            (400, &json!("BadRequest")),
            "{body}"
        );
        assert!(
            body["error"].as_str().unwrap().contains(why),
            "{bad:?}: {body}"
        );
    }
    // Any other printable name works through the CLI (it is one path segment, encoded).
    s.cli_ok(&["fn", "create", "my echo/2?", "--lang", "wat", echo_path]);
    let out = s.cli_ok(&["fn", "exec", "my echo/2?", "--input", "\"odd\""]);
    assert_eq!(out.trim(), "\"odd\"");

    // A FAILED function is recompiled by creating its name again, with the fixed source.
    let broken_file = dir.path().join("broken.wat");
    std::fs::write(&broken_file, "(module (func $f (result i32) (i32.const)))").unwrap();
    let broken_path = broken_file.to_str().unwrap();
    let err = cli_err(
        &s,
        &["fn", "create", "broken", "--lang", "wat", broken_path],
    );
    assert!(err.contains("compilation of broken failed"), "{err}");
    let (_, failed) = s.get("/functions/broken").await;
    assert_eq!(failed["status"], "FAILED", "{failed}");
    let failed_id = failed["id"].as_str().unwrap().to_owned();
    let (status, body) = execute(&s, "broken", json!(1), None).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("FAILED"), "{body}");
    std::fs::write(&broken_file, ECHO_WAT).unwrap();
    let out = s.cli(&["fn", "create", "broken", "--lang", "wat", broken_path]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("in place of the FAILED {failed_id}")),
        "{stderr}"
    );
    let (_, fixed) = s.get("/functions/broken").await;
    assert_eq!(fixed["status"], "READY", "{fixed}");
    assert_ne!(fixed["id"], json!(failed_id));
    assert_eq!(
        execute(&s, "broken", json!("fixed"), None).await.1["output"],
        json!("fixed")
    );
    assert_eq!(s.get(&format!("/functions/{failed_id}")).await.0, 404);
    // Through the API: the answer says which function it replaced.
    let (_, f) = create(&s, "broken2", "wat", "(module (func").await;
    let f = wait_terminal(&s, f["id"].as_str().unwrap()).await;
    assert_eq!(f["status"], "FAILED", "{f}");
    let (status, again) = create(&s, "broken2", "wat", ECHO_WAT).await;
    assert_eq!((status, &again["replaced"]), (201, &f["id"]), "{again}");
    assert_eq!(
        wait_terminal(&s, again["id"].as_str().unwrap()).await["status"],
        "READY"
    );

    // `fn rm` deletes the function and its executions; the name is free again.
    let out = s.cli_ok(&["fn", "rm", "echo"]);
    assert!(
        out.contains("deleted echo") && out.contains(&echo_id),
        "{out}"
    );
    let (status, body) = s.get("/functions/echo").await;
    assert_eq!((status, &body["type"]), (404, &json!("NotFound")), "{body}");
    assert_eq!(
        s.get(&format!("/functions/{echo_id}/executions")).await.0,
        404
    );
    assert_eq!(s.get(&format!("/executions/{exec_id}")).await.0, 404);
    let err = cli_err(&s, &["fn", "rm", "echo"]);
    assert!(
        err.contains("no function is named \"echo\"") && err.contains("HTTP 404"),
        "{err}"
    );
    let err = cli_err(&s, &["fn", "exec", "echo"]);
    assert!(err.contains("no function is named \"echo\""), "{err}");
    // By id, through the API.
    let broken2 = again["id"].as_str().unwrap();
    let (status, body) = s
        .api(Method::DELETE, &format!("/functions/{broken2}"), None)
        .await;
    assert_eq!(
        (status, body),
        (200, json!({"deleted": broken2, "name": "broken2"}))
    );
    let (status, body) = s.api(Method::DELETE, "/functions/broken2", None).await;
    assert_eq!((status, &body["type"]), (404, &json!("NotFound")), "{body}");
    let (status, f) = create(&s, "echo", "wat", ECHO_WAT).await;
    assert_eq!(status, 201, "{f}");
    let mut names: Vec<String> = s
        .get("/functions")
        .await
        .1
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["broken", "echo", "my echo/2?"]);
}
