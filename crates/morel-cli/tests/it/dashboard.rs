//! The dashboard in a real browser: Debian's headless Chromium, driven by playwright-core
//! (`crates/morel-dashboard/browser-tests/run.mjs`), against the real `morel up`.
//!
//! The browser script signs in, finds the app deployed here with its environment's config
//! names (never values), calls a function from its page and sees the server's record of the
//! execution (a failing one with its error), finds another app's routes with their URLs and an
//! http service's edge URL, sees the line it printed in the live logs, compiles and runs a WAT function, sees a
//! second function of that name refused, deletes it after confirming (not after dismissing),
//! and rolls back a release. It fails on any console error or page error. Screenshots of every page, at laptop and
//! phone widths, go to `target/dashboard-screenshots`.
//!
//! Chromium and the node modules are installed by the test script; when either is missing this
//! test fails and says how to install it. It never skips.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use morel_test_support::{MorelServer, copy_dir, example, repo_root};
use serde_json::json;

use crate::bin;

const CHROMIUM: &str = "/usr/bin/chromium";
const INSTALL_CHROMIUM: &str = "apt-get install -y chromium";
const INSTALL_NODE_MODULES: &str = "npm install --prefix crates/morel-dashboard/browser-tests";
/// Longest the whole browser run may take before it is killed.
const BROWSER_LIMIT: Duration = Duration::from_secs(300);

fn browser_tests_dir() -> PathBuf {
    repo_root().join("crates/morel-dashboard/browser-tests")
}

/// Fails with the install command when the browser or playwright-core is missing.
fn require_browser() {
    assert!(
        Path::new(CHROMIUM).is_file(),
        "{CHROMIUM} is missing: the dashboard tests drive Debian's Chromium. Install it with `{INSTALL_CHROMIUM}`"
    );
    let module = browser_tests_dir().join("node_modules/playwright-core/package.json");
    assert!(
        module.is_file(),
        "playwright-core is not installed ({} is missing): run `{INSTALL_NODE_MODULES}` from the repository root",
        module.display()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dashboard_drives_an_app_in_chromium() {
    require_browser();
    let s = MorelServer::start(&bin());

    // v1 is the example; v2 keeps `greet` as it is and adds a function, so the browser can call
    // greet on whichever is active and the rollback shows in the function list.
    s.deploy(&example("hello-python"));
    let v2 = tempfile::tempdir().unwrap();
    copy_dir(&example("hello-python"), v2.path());
    let source = std::fs::read_to_string(v2.path().join("hello.py")).unwrap();
    std::fs::write(
        v2.path().join("hello.py"),
        format!("{source}\n\ndef release():\n    return \"v2\"\n"),
    )
    .unwrap();
    // v2 carries config: the dashboard shows its names, never its values.
    s.cli_ok(&[
        "deploy",
        v2.path().to_str().unwrap(),
        "--name",
        "hello-python",
        "--set",
        "GREETING_STYLE=formal",
        "--set",
        "API_SECRET=s3cr3t-value",
    ]);
    let (_, app) = s.get("/api/apps/hello-python").await;
    assert_eq!(app["active_release"], "v2", "{app}");
    assert!(!app.to_string().contains("s3cr3t-value"), "{app}");
    // An app with routes and an http service: the browser finds their URLs.
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    s.deploy(&fixtures.join("user-flow"));
    s.deploy(&fixtures.join("lane-service"));

    // A node joins, so the nodes page shows one with its capacity and heartbeat.
    let agent_state = tempfile::tempdir().unwrap();
    let _agent = tokio::process::Command::from(s.command(&[
        "agent",
        "--state-dir",
        agent_state.path().to_str().unwrap(),
        "--join",
        &s.url,
        "--token",
        &s.token,
        "--node",
        "edge-1",
        "--capacity",
        "4",
    ]))
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .kill_on_drop(true)
    .spawn()
    .unwrap();
    morel_test_support::wait_for(
        std::time::Duration::from_secs(30),
        "node edge-1 to join",
        || async {
            let (_, nodes) = s.get("/api/nodes").await;
            nodes
                .as_array()?
                .iter()
                .any(|n| n["id"] == "edge-1" && n["state"] == "ready")
                .then_some(())
        },
    )
    .await;

    let shots = repo_root().join("target/dashboard-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).unwrap();

    let run = tokio::process::Command::new("node")
        .arg(browser_tests_dir().join("run.mjs"))
        .arg(&s.url)
        .arg(&s.token)
        .arg(&shots)
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = match tokio::time::timeout(BROWSER_LIMIT, run).await {
        Ok(out) => out.expect("run node (is Node.js installed?)"),
        Err(_) => panic!(
            "the browser run did not finish in {BROWSER_LIMIT:?}; server log:\n{}",
            s.log()
        ),
    };
    let report = format!(
        "exit {:?}\n--- browser stdout ---\n{}\n--- browser stderr ---\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the dashboard browser run failed (screenshots in {}):\n{report}\n--- server log ---\n{}",
        shots.display(),
        s.log()
    );

    // The server agrees with what the browser saw: the compiled function is gone, v1 is back,
    // and it answers.
    let (_, functions) = s.get("/functions").await;
    assert_eq!(functions, json!([]), "{report}");
    let (_, app) = s.get("/api/apps/hello-python").await;
    assert_eq!(app["active_release"], "v1", "{app}\n{report}");
    assert_eq!(
        s.call("hello-python", "greet", r#"{"name":"Ada"}"#).await,
        (200, json!({"message": "Hello, Ada!"}))
    );
    for page in [
        "01-login",
        "02-apps",
        "03-app",
        "04-function",
        "05-logs",
        "06-nodes",
        "07-functions",
        "08-rollback",
    ] {
        for size in ["1280x800", "390x844"] {
            let file = shots.join(format!("{page}-{size}.png"));
            assert!(file.is_file(), "{} is missing\n{report}", file.display());
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dashboard_is_served_with_its_security_headers() {
    let s = MorelServer::start(&bin());
    let http = s.http();
    for (path, content_type) in [
        ("/", "text/html"),
        ("/dashboard/app.js", "text/javascript"),
        ("/dashboard/app.css", "text/css"),
    ] {
        let r = http.get(format!("{}{path}", s.url)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let header = |name: &str| {
            r.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        assert!(header("content-type").starts_with(content_type), "{path}");
        assert_eq!(header("cache-control"), "no-store", "{path}");
        let csp = header("content-security-policy");
        assert!(csp.starts_with("default-src 'self'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
    }
    // The page is public; the API it calls is not.
    let r = http
        .get(format!("{}/api/apps", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}
