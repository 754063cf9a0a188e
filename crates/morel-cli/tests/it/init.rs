//! `morel init KIND DIR`: each template deploys as it is with `morel deploy DIR` and answers,
//! and its own test passes without Morel.

use std::path::Path;
use std::process::Command;

use morel_test_support::MorelServer;
use serde_json::{Value, json};

use crate::bin;

/// Runs `morel init ARGS…` (no server needed); returns (success, stdout, stderr).
fn init(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin())
        .arg("init")
        .args(args)
        .env("MOREL_LOG", "warn")
        .env("MOREL_URL", "http://127.0.0.1:8080")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `morel init KIND DIR`, checked; returns its output.
fn init_ok(kind: &str, dir: &Path) -> String {
    let (ok, stdout, stderr) = init(&[kind, dir.to_str().unwrap()]);
    assert!(ok, "morel init {kind} failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("morel deploy ") && stdout.contains("  curl "),
        "{stdout}"
    );
    stdout
}

/// Runs the template's own test in `dir`, without Morel.
fn template_test(dir: &Path, program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?} failed in {}:\n{}\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn init_python_and_node_deploy_as_they_are() {
    let s = MorelServer::start(&bin());
    let root = tempfile::tempdir().unwrap();

    // The app name comes from the directory's name, made valid.
    let py = root.path().join("Hello Py");
    let out = init_ok("python", &py);
    assert!(out.contains("project hello-py"), "{out}");
    template_test(&py, "python3", &["-m", "unittest"]);
    s.deploy(&py);
    assert_eq!(
        s.call("hello-py", "greet", r#"{"name": "Ada"}"#).await,
        (200, json!({"message": "Hello, Ada!"}))
    );

    let node = root.path().join("hello-node");
    init_ok("node", &node);
    template_test(&node, "node", &["--test"]);
    s.deploy(&node);
    assert_eq!(
        s.call("hello-node", "greet", r#"{"name": "Ada"}"#).await,
        (200, json!({"message": "Hello, Ada!"}))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn init_http_deploys_as_it_is() {
    let s = MorelServer::start(&bin());
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("web");
    init_ok("http", &dir);
    template_test(&dir, "python3", &["-m", "unittest"]);
    s.deploy(&dir);
    let r = s
        .http()
        .get(format!("{}/web/hello?name=Ada", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"message": "Hello, Ada!"})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn init_wasm_c_and_wasm_rust_deploy_as_they_are() {
    let s = MorelServer::start(&bin());
    let root = tempfile::tempdir().unwrap();

    let c = root.path().join("sum_c");
    init_ok("wasm-c", &c);
    template_test(&c, "sh", &["tests/check.sh"]);
    s.deploy(&c);
    assert_eq!(
        s.call("sum_c", "sum", "[1, 2, 3.5]").await,
        (200, json!({"sum": 6.5, "count": 3}))
    );

    let rust = root.path().join("fib-rs");
    init_ok("wasm-rust", &rust);
    template_test(&rust, "sh", &["tests/check.sh"]);
    s.deploy(&rust);
    assert_eq!(
        s.call("fib-rs", "fib", "10").await,
        (200, json!({"n": 10, "fib": 55}))
    );
}

#[test]
fn init_refuses_to_overwrite_and_names_the_file() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("taken");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("hello.py"), "def mine(): pass\n").unwrap();
    std::fs::write(dir.join("notes.txt"), "kept\n").unwrap();

    let (ok, _, stderr) = init(&["python", dir.to_str().unwrap()]);
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains(&dir.join("hello.py").display().to_string())
            && stderr.contains("already exists")
            && stderr.contains("--force"),
        "{stderr}"
    );
    // Nothing was written: the check comes before any write.
    assert!(!dir.join("morel.toml").exists());
    assert_eq!(
        std::fs::read_to_string(dir.join("hello.py")).unwrap(),
        "def mine(): pass\n"
    );

    // --force overwrites the template's files and keeps the others.
    let (ok, stdout, stderr) = init(&["python", dir.to_str().unwrap(), "--force"]);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        std::fs::read_to_string(dir.join("hello.py"))
            .unwrap()
            .contains("def greet")
    );
    assert!(
        std::fs::read_to_string(dir.join("morel.toml"))
            .unwrap()
            .contains("name = \"taken\"")
    );
    assert!(dir.join("notes.txt").exists());

    // An unknown kind is a usage error that lists the kinds.
    let (ok, _, stderr) = init(&["ruby", dir.to_str().unwrap()]);
    assert!(!ok && stderr.contains("wasm-rust"), "{stderr}");
}
