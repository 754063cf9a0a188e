//! Environments (seed 003): git branches deployed from real local repositories (file URLs)
//! into production and preview environments, each with its own secrets, config, address and
//! certificate; pushes, removal, rollback, secret rotation, HTTPS by SNI, and a server killed
//! in the middle of a queued deploy.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use morel_test_support::{MorelServer, wait_for};
use serde_json::{Value, json};

use crate::bin;

const LIMIT: Duration = Duration::from_secs(120);
const APP: &str = "webapp";

/// A git repository in a temp dir, with a Python app whose `info` returns what it sees.
struct Repo {
    dir: tempfile::TempDir,
}

impl Repo {
    fn new() -> Repo {
        let r = Repo {
            dir: tempfile::tempdir().unwrap(),
        };
        r.git(&["init", "-q", "-b", "main"]);
        r.commit_app("main-1");
        r
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("webapp")
    }

    fn url(&self) -> String {
        format!("file://{}", self.path().display())
    }

    fn git(&self, args: &[&str]) {
        std::fs::create_dir_all(self.path()).unwrap();
        let out = Command::new("git")
            .args([
                "-c",
                "user.name=Test",
                "-c",
                "user.email=test@example.invalid",
            ])
            .args(["-c", "commit.gpgsign=false"])
            .args(args)
            .current_dir(self.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Commits a version of the app that reports `marker`.
    fn commit_app(&self, marker: &str) {
        std::fs::create_dir_all(self.path()).unwrap();
        std::fs::write(
            self.path().join("app.py"),
            format!(
                r#"import os

import morel

web = morel.Endpoint("web")


@web.get("/info")
def info():
    return {{
        "marker": "{marker}",
        "env": os.environ.get("MOREL_ENV"),
        "secret": os.environ.get("API_KEY"),
        "greeting": os.environ.get("GREETING"),
        "pid": int(os.environ.get("MOREL_PID") or os.getpid()),
    }}
"#
            ),
        )
        .unwrap();
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", marker]);
    }

    fn branch(&self, name: &str, marker: &str) {
        self.git(&["checkout", "-q", "-b", name, "main"]);
        self.commit_app(marker);
        self.git(&["checkout", "-q", "main"]);
    }

    fn push(&self, branch: &str, marker: &str) {
        self.git(&["checkout", "-q", branch]);
        self.commit_app(marker);
        self.git(&["checkout", "-q", "main"]);
    }
}

/// `morel deploy --git` to completion; returns (stdout, stderr).
fn deploy_git(s: &MorelServer, url: &str, branch: Option<&str>) -> (String, String) {
    let mut args = vec!["deploy", "--git", url];
    if let Some(b) = branch {
        args.extend(["--branch", b]);
    }
    let out = s.cli(&args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "deploy --git {url} {branch:?} failed:\n{stdout}\n{stderr}\nserver log:\n{}",
        s.log()
    );
    (stdout, stderr)
}

/// Calls `info` of an environment through the call path.
async fn info(s: &MorelServer, env: &str) -> (u16, Value) {
    let url = format!("{}/default/{APP}/{env}/call/info", s.url);
    let resp = s.http().post(url).body("[]").send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn info_ok(s: &MorelServer, env: &str) -> Value {
    let (status, body) = info(s, env).await;
    assert_eq!(status, 200, "info of {env}: {body}");
    body
}

/// Waits until `info` of `env` satisfies `check` (a rollout finished).
async fn wait_info(
    s: &MorelServer,
    env: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    wait_for(LIMIT, what, || async {
        let (status, body) = info(s, env).await;
        (status == 200 && check(&body)).then_some(body)
    })
    .await
}

async fn environments(s: &MorelServer) -> Vec<Value> {
    let (status, body) = s.get(&format!("/api/apps/{APP}/environments")).await;
    assert_eq!(status, 200, "{body}");
    body.as_array().unwrap().clone()
}

fn env_named<'a>(envs: &'a [Value], name: &str) -> &'a Value {
    envs.iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no environment {name} in {envs:?}"))
}

fn process_alive(pid: i64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

fn secret_set(s: &MorelServer, env: &str, key: &str, value: &str) {
    use std::io::Write;
    let mut child = s
        .command(&["secrets", "set", APP, key, "--env", env])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{value}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "secrets set: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn branches_become_environments_with_their_own_secrets_urls_and_lifecycle() {
    let repo = Repo::new();
    repo.branch("feature/Login", "login-1");
    repo.branch("fix-2", "fix-1");
    let s = MorelServer::start_with_args(
        &bin(),
        Arc::new(tempfile::tempdir().unwrap()),
        &["--domain", "morel.test"],
    );

    // main → production; the CLI streams each of seed 003's steps.
    let (stdout, stderr) = deploy_git(&s, &repo.url(), None);
    assert!(
        stdout.contains("deployed webapp to production (v1)"),
        "{stdout}"
    );
    for step in [
        "resolve",
        "build",
        "environment",
        "address",
        "secrets",
        "instances",
        "url",
    ] {
        assert!(
            stderr.contains(&format!("✓ {step}")),
            "step {step} not streamed:\n{stderr}"
        );
    }
    let prod = info_ok(&s, "production").await;
    assert_eq!(prod["marker"], "main-1");
    assert_eq!(prod["env"], "production");
    // Production is still the app itself: `latest` and the plain routes reach it as before.
    assert_eq!(info_ok(&s, "latest").await["marker"], "main-1");

    // Two other branches → two previews, named from their branches.
    let (stdout, _) = deploy_git(&s, &repo.url(), Some("feature/Login"));
    assert!(stdout.contains("to feature-login"), "{stdout}");
    deploy_git(&s, &repo.url(), Some("fix-2"));
    let login = info_ok(&s, "feature-login").await;
    assert_eq!(login["marker"], "login-1");
    assert_eq!(login["env"], "feature-login");
    assert_eq!(info_ok(&s, "fix-2").await["marker"], "fix-1");
    assert_eq!(info_ok(&s, "production").await["marker"], "main-1");

    // Addresses: `/{app}@{env}/…` routes and `{env}--{app}.{domain}` by Host header.
    let http = s.http();
    let at: Value = http
        .get(format!("{}/{APP}@feature-login/info", s.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(at["marker"], "login-1");
    for (host, marker) in [
        ("fix-2--webapp.morel.test", "fix-1"),
        ("webapp.morel.test", "main-1"),
    ] {
        let by_host: Value = http
            .get(format!("{}/info", s.url))
            .header("host", host)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(by_host["marker"], marker, "Host {host}");
    }

    // Async runs reach the preview too.
    let (status, queued) = s
        .api(
            reqwest::Method::POST,
            &format!("/default/{APP}/fix-2/run/info"),
            Some(json!([])),
        )
        .await;
    assert_eq!(status, 202, "{queued}");
    let job = queued["id"].as_str().unwrap().to_owned();
    let done = wait_for(LIMIT, "the preview's job", || async {
        let (_, e) = s.get(&format!("/api/executions/{job}")).await;
        (e["status"] == "COMPLETED").then_some(e)
    })
    .await;
    assert_eq!(done["output"]["marker"], "fix-1", "{done}");
    // Previews are listed under their app, not as apps of their own.
    let (_, apps) = s.get("/api/apps").await;
    let names: Vec<&str> = apps
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert_eq!(names, [APP]);

    // Separate secrets per environment; setting one restarts that environment's instances.
    let login_pid = login["pid"].as_i64().unwrap();
    secret_set(&s, "feature-login", "API_KEY", "login-secret-value");
    secret_set(&s, "fix-2", "API_KEY", "fix-secret-value");
    let login = wait_info(&s, "feature-login", "the login secret", |b| {
        b["secret"] == "login-secret-value"
    })
    .await;
    assert_ne!(
        login["pid"].as_i64().unwrap(),
        login_pid,
        "a secret change must restart"
    );
    wait_info(&s, "fix-2", "the fix secret", |b| {
        b["secret"] == "fix-secret-value"
    })
    .await;
    assert_eq!(info_ok(&s, "production").await["secret"], Value::Null);
    // Rotation: a new value rolls the instances again.
    let before = login["pid"].as_i64().unwrap();
    secret_set(&s, "feature-login", "API_KEY", "login-rotated-value");
    let login = wait_info(&s, "feature-login", "the rotated secret", |b| {
        b["secret"] == "login-rotated-value"
    })
    .await;
    assert_ne!(login["pid"].as_i64().unwrap(), before);
    // The new instance takes the traffic first; the old one is stopped after that switch.
    wait_for(LIMIT, "the old instance to be stopped", || async {
        (!process_alive(before)).then_some(())
    })
    .await;

    // Values never come back from the API, the CLI or the log, nor sit in the database.
    let out = s.cli_ok(&["secrets", "ls", APP, "--env", "feature-login", "--json"]);
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed[0]["name"], "API_KEY");
    assert!(listed[0]["updated_at"].as_i64().unwrap() > 0);
    let envs_text = serde_json::to_string(&environments(&s).await).unwrap();
    let db = std::fs::read(s.state_dir.join("morel.db")).unwrap();
    let wal = std::fs::read(s.state_dir.join("morel.db-wal")).unwrap_or_default();
    for value in [
        "login-secret-value",
        "login-rotated-value",
        "fix-secret-value",
    ] {
        assert!(!out.contains(value) && !envs_text.contains(value));
        assert!(!s.log().contains(value), "secret {value} in the server log");
        let found = |hay: &[u8]| hay.windows(value.len()).any(|w| w == value.as_bytes());
        assert!(
            !found(&db) && !found(&wal),
            "secret {value} stored in plain text"
        );
    }

    // `env ls` shows each environment's branch, release, status and URLs.
    let envs = environments(&s).await;
    assert_eq!(envs.len(), 3, "{envs:?}");
    let login_env = env_named(&envs, "feature-login");
    assert_eq!(login_env["branch"], "feature/Login");
    assert_eq!(login_env["kind"], "preview");
    // Its deploy made v1; setting and rotating its secret made v2 and v3.
    assert_eq!(login_env["release"], "v3");
    assert_eq!(login_env["status"], "ready");
    assert_eq!(login_env["secrets"], 1);
    let urls: Vec<&str> = login_env["urls"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        urls.iter()
            .any(|u| u.ends_with("/default/webapp/feature-login/call/"))
    );
    assert!(
        urls.iter()
            .any(|u| u.contains("feature-login--webapp.morel.test"))
    );
    assert_eq!(env_named(&envs, "production")["branch"], "main");
    let table = s.cli_ok(&["env", "ls", APP]);
    assert!(
        table.contains("feature-login") && table.contains("fix-2") && table.contains("production")
    );

    // A push to a branch redeploys its environment: same environment, new release, new instances.
    repo.push("feature/Login", "login-2");
    let pid = login["pid"].as_i64().unwrap();
    let (stdout, _) = deploy_git(&s, &repo.url(), Some("feature/Login"));
    assert!(stdout.contains("to feature-login (v4)"), "{stdout}");
    let login = info_ok(&s, "feature-login").await;
    assert_eq!(login["marker"], "login-2");
    assert_eq!(
        login["secret"], "login-rotated-value",
        "secrets survive a redeploy"
    );
    assert_ne!(
        login["pid"].as_i64().unwrap(),
        pid,
        "a redeploy replaces the instances"
    );
    assert_eq!(environments(&s).await.len(), 3);

    // Config values per environment: a new release with the variable.
    s.cli_ok(&[
        "env",
        "set",
        APP,
        "GREETING=hello-login",
        "--env",
        "feature-login",
    ]);
    wait_info(&s, "feature-login", "the config value", |b| {
        b["greeting"] == "hello-login"
    })
    .await;
    assert_eq!(info_ok(&s, "fix-2").await["greeting"], Value::Null);

    // Rollback of one environment re-activates its older release; the others stay.
    s.cli_ok(&["rollback", APP, "--env", "feature-login", "--to", "v1"]);
    assert_eq!(info_ok(&s, "feature-login").await["marker"], "login-1");
    assert_eq!(info_ok(&s, "production").await["marker"], "main-1");

    // A removed branch: `env rm` stops its instances and deletes its data.
    let fix_pid = info_ok(&s, "fix-2").await["pid"].as_i64().unwrap();
    s.cli_ok(&["env", "rm", APP, "fix-2", "--yes"]);
    assert_eq!(info(&s, "fix-2").await.0, 404);
    wait_for(LIMIT, "the preview's worker to exit", || async {
        (!process_alive(fix_pid)).then_some(())
    })
    .await;
    let envs = environments(&s).await;
    assert_eq!(envs.len(), 2, "{envs:?}");
    let (status, _) = s
        .get(&format!("/api/apps/{APP}/environments/fix-2/secrets"))
        .await;
    assert_eq!(status, 404, "the preview's secrets must be gone");
    let host_status = http
        .get(format!("{}/info", s.url))
        .header("host", "fix-2--webapp.morel.test")
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(host_status, 404);
    // Production cannot be removed that way.
    let out = s.cli(&["env", "rm", APP, "production", "--yes"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("production cannot be removed"));
    assert_eq!(info_ok(&s, "production").await["marker"], "main-1");

    // Deleting the app takes its previews, secrets and addresses with it.
    let login_pid = info_ok(&s, "feature-login").await["pid"].as_i64().unwrap();
    s.cli_ok(&["delete", APP, "--yes"]);
    assert_eq!(info(&s, "feature-login").await.0, 404);
    assert_eq!(info(&s, "production").await.0, 404);
    let (status, _) = s.get(&format!("/api/apps/{APP}/environments")).await;
    assert_eq!(status, 404);
    let (_, apps) = s.get("/api/apps").await;
    assert_eq!(apps, json!([]));
    wait_for(LIMIT, "the preview's worker to exit", || async {
        (!process_alive(login_pid)).then_some(())
    })
    .await;
}

/// Writes a self-signed certificate for `host` (and its key) with the openssl binary.
fn make_cert(dir: &Path, name: &str, host: &str) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj"])
        .arg(format!("/CN={host}"))
        .arg("-addext")
        .arg(format!("subjectAltName=DNS:{host}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// GET `https://{host}:{port}{path}` through curl, trusting only `ca`; the handshake fails
/// unless the server presents a certificate for `host`.
fn curl_https(host: &str, port: u16, path: &str, ca: &Path) -> (bool, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--cacert"])
        .arg(ca)
        .arg("--resolve")
        .arg(format!("{host}:{port}:127.0.0.1"))
        .arg(format!("https://{host}:{port}{path}"))
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn https_picks_each_environments_certificate_by_sni() {
    let repo = Repo::new();
    repo.branch("preview-a", "preview-a-1");
    let s = MorelServer::start_with_args(
        &bin(),
        Arc::new(tempfile::tempdir().unwrap()),
        &["--domain", "morel.test", "--tls-listen", "127.0.0.1:0"],
    );
    let port: u16 = wait_for(LIMIT, "the https line", || async {
        s.log()
            .lines()
            .find_map(|l| l.split("https://127.0.0.1:").nth(1))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
    })
    .await;
    deploy_git(&s, &repo.url(), None);
    deploy_git(&s, &repo.url(), Some("preview-a"));

    let certs = tempfile::tempdir().unwrap();
    let prod_host = "webapp.morel.test";
    let preview_host = "preview-a--webapp.morel.test";
    let (prod_cert, prod_key) = make_cert(certs.path(), "prod", prod_host);
    let (prev_cert, prev_key) = make_cert(certs.path(), "preview", preview_host);

    // A mismatched pair and a file that is not a certificate are refused with the reason.
    let out = s.cli(&[
        "certs",
        "add",
        APP,
        "--env",
        "preview-a",
        "--cert",
        prev_cert.to_str().unwrap(),
        "--key",
        prod_key.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not match the certificate"), "{err}");
    let out = s.cli(&[
        "certs",
        "add",
        APP,
        "--env",
        "preview-a",
        "--cert",
        prev_key.to_str().unwrap(),
        "--key",
        prev_key.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no PEM CERTIFICATE"));
    let out = s.cli(&[
        "certs",
        "add",
        APP,
        "--env",
        "preview-a",
        "--cert",
        prod_cert.to_str().unwrap(),
        "--key",
        prod_key.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("the certificate is not valid for {preview_host}")),
        "{err}"
    );
    // Nothing was stored: no certificate is served yet.
    assert!(!curl_https(preview_host, port, "/info", &prev_cert).0);

    let out = s.cli_ok(&[
        "certs",
        "add",
        APP,
        "--env",
        "preview-a",
        "--cert",
        prev_cert.to_str().unwrap(),
        "--key",
        prev_key.to_str().unwrap(),
    ]);
    assert!(out.contains(preview_host), "{out}");
    s.cli_ok(&[
        "certs",
        "add",
        APP,
        "--cert",
        prod_cert.to_str().unwrap(),
        "--key",
        prod_key.to_str().unwrap(),
    ]);
    // Each host name gets its own certificate (curl verifies it against the name) and content.
    let (ok, body) = curl_https(preview_host, port, "/info", &prev_cert);
    assert!(ok, "{body}\n{}", s.log());
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["marker"],
        "preview-a-1"
    );
    let (ok, body) = curl_https(prod_host, port, "/info", &prod_cert);
    assert!(ok, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["marker"],
        "main-1"
    );
    // The preview's certificate is not the production one's.
    assert!(!curl_https(prod_host, port, "/info", &prev_cert).0);
    let envs = environments(&s).await;
    assert_eq!(env_named(&envs, "preview-a")["certificate"], true);
    assert!(
        env_named(&envs, "preview-a")["urls"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u
                .as_str()
                .unwrap()
                .starts_with(&format!("https://{preview_host}:{port}")))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_server_resumes_the_queued_deploy_without_duplicates() {
    let repo = Repo::new();
    let dirs = Arc::new(tempfile::tempdir().unwrap());
    let mut s = MorelServer::start_with_env(
        &bin(),
        dirs.clone(),
        &[],
        &[("MOREL_TEST_DEPLOY_HOLD_AFTER", "environment")],
    );
    let (status, queued) = s
        .api(
            reqwest::Method::POST,
            "/api/deploys",
            Some(json!({"repo_url": repo.url()})),
        )
        .await;
    assert_eq!(status, 202, "{queued}");
    let id = queued["id"].as_str().unwrap().to_owned();
    // The worker stops after creating the environment; the server is then killed.
    wait_for(LIMIT, "the environment step", || async {
        let (_, d) = s.get(&format!("/api/deploys/{id}")).await;
        d["steps"]
            .as_array()
            .is_some_and(|st| st.iter().any(|x| x["step"] == "environment"))
            .then_some(())
    })
    .await;
    s.kill9();

    let s = MorelServer::start_with(&bin(), dirs);
    let d = wait_for(LIMIT, "the resumed deploy", || async {
        let (_, d) = s.get(&format!("/api/deploys/{id}")).await;
        d["status"]
            .as_str()
            .is_some_and(|st| st == "succeeded" || st == "failed")
            .then_some(d)
    })
    .await;
    assert_eq!(d["status"], "succeeded", "{d}\n{}", s.log());
    assert_eq!(d["attempts"], 2);
    let steps: Vec<&str> = d["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x["step"].as_str())
        .collect();
    assert_eq!(
        steps,
        [
            "resolve",
            "build",
            "environment",
            "address",
            "secrets",
            "instances",
            "url"
        ]
    );
    assert_eq!(info_ok(&s, "production").await["marker"], "main-1");
    let (_, releases) = s.get(&format!("/api/apps/{APP}/releases")).await;
    assert_eq!(releases.as_array().unwrap().len(), 1, "{releases}");
    assert_eq!(environments(&s).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_git_deploys_get_clear_errors_and_create_nothing() {
    let repo = Repo::new();
    let empty = tempfile::tempdir().unwrap();
    let empty_repo = empty.path().join("nothing");
    std::fs::create_dir_all(&empty_repo).unwrap();
    std::fs::write(empty_repo.join("README.md"), "no code here\n").unwrap();
    for args in [
        vec!["init", "-q", "-b", "main"],
        vec!["add", "-A"],
        vec![
            "-c",
            "user.name=T",
            "-c",
            "user.email=t@e.invalid",
            "commit",
            "-q",
            "-m",
            "docs",
        ],
    ] {
        assert!(
            Command::new("git")
                .args(&args)
                .current_dir(&empty_repo)
                .status()
                .unwrap()
                .success()
        );
    }
    let s = MorelServer::start(&bin());
    let marker = std::env::temp_dir().join(format!("morel-injected-{}", std::process::id()));
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"repo_url": format!("--upload-pack=touch {}", marker.display())}),
            "is not allowed",
        ),
        (
            json!({"repo_url": format!("ext::sh -c touch% {}", marker.display())}),
            "is not allowed",
        ),
        (
            json!({"repo_url": "http://example.invalid/x.git"}),
            "must use one of",
        ),
        (
            json!({"repo_url": repo.url(), "branch": "--upload-pack=x"}),
            "is not valid",
        ),
        (
            json!({"repo_url": repo.url(), "branch": "main;touch x"}),
            "is not valid",
        ),
        (
            json!({"repo_url": "file:///nonexistent/repo.git"}),
            "cannot be read",
        ),
        (
            json!({"repo_url": repo.url(), "branch": "no-such-branch"}),
            "does not exist",
        ),
        (
            json!({"repo_url": repo.url(), "app": "Bad Name"}),
            "invalid app name",
        ),
        (json!({"repo_url": repo.url(), "bogus": 1}), "unknown field"),
    ];
    for (body, expected) in cases {
        let (status, resp) = s
            .api(reqwest::Method::POST, "/api/deploys", Some(body.clone()))
            .await;
        assert_eq!(status, 400, "{body}: {resp}");
        let msg = resp["error"].as_str().unwrap_or_default();
        assert!(msg.contains(expected), "{body}: {msg}");
    }
    assert!(!marker.exists(), "an injected command ran");
    // The CLI shows the same reason.
    let out = s.cli(&["deploy", "--git", &repo.url(), "--branch", "no-such-branch"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("branch \"no-such-branch\" does not exist")
    );

    // A repository with nothing to deploy fails in the build step, before any environment.
    let url = format!("file://{}", empty_repo.display());
    let out = s.cli(&["deploy", "--git", &url]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("has no deployable project"), "{err}");
    let (status, _) = s.get("/api/apps/nothing/environments").await;
    assert_eq!(status, 404);
    let (_, apps) = s.get("/api/apps").await;
    assert_eq!(apps, json!([]), "nothing may be half-created");
    // The server keeps serving: a good deploy still works.
    deploy_git(&s, &repo.url(), None);
    assert_eq!(info_ok(&s, "production").await["marker"], "main-1");

    // The main branch is configurable per app: `develop` takes production over, and `main`
    // then deploys to a preview of its own.
    repo.branch("develop", "develop-1");
    let out = s.cli_ok(&[
        "deploy",
        "--git",
        &repo.url(),
        "--branch",
        "develop",
        "--main-branch",
        "develop",
    ]);
    assert!(out.contains("to production (v2)"), "{out}");
    assert_eq!(info_ok(&s, "production").await["marker"], "develop-1");
    let (stdout, _) = deploy_git(&s, &repo.url(), Some("main"));
    assert!(stdout.contains("to main (v1)"), "{stdout}");
    assert_eq!(info_ok(&s, "main").await["marker"], "main-1");
    let (stdout, _) = deploy_git(&s, &repo.url(), None);
    assert!(stdout.contains("to production (v3)"), "{stdout}");
    let envs = environments(&s).await;
    assert_eq!(env_named(&envs, "production")["branch"], "develop");
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_prunes_bundles_of_older_releases() {
    let repo = Repo::new();
    let s = MorelServer::start_with_args(
        &bin(),
        Arc::new(tempfile::tempdir().unwrap()),
        &["--keep-releases", "1"],
    );
    deploy_git(&s, &repo.url(), None);
    let bundles = |s: &MorelServer| {
        std::fs::read_dir(s.state_dir.join("blobs"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "bundle")
            })
            .count()
    };
    let before = bundles(&s);
    repo.push("main", "main-2");
    let (stdout, _) = deploy_git(&s, &repo.url(), None);
    assert!(stdout.contains("(v2)"), "{stdout}");
    assert_eq!(info_ok(&s, "production").await["marker"], "main-2");
    assert_eq!(bundles(&s), before, "v1's bundle is pruned as v2's arrives");
    let out = s.cli(&["rollback", APP, "--to", "v1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the bundle of v1 is no longer kept"), "{err}");
    assert_eq!(info_ok(&s, "production").await["marker"], "main-2");
}

#[tokio::test(flavor = "multi_thread")]
async fn directory_deploys_with_env_go_to_a_preview_and_production_keeps_serving() {
    let repo = Repo::new();
    let s = MorelServer::start(&bin());
    let dir = repo.path();
    let dir = dir.to_str().unwrap();
    s.cli_ok(&["deploy", dir, "--name", APP]);
    repo.commit_app("staging-1");
    let out = s.cli_ok(&["deploy", dir, "--name", APP, "--env", "staging"]);
    assert!(out.contains("is ready"), "{out}");
    assert_eq!(info_ok(&s, "staging").await["marker"], "staging-1");
    assert_eq!(info_ok(&s, "staging").await["env"], "staging");
    assert_eq!(info_ok(&s, "production").await["marker"], "main-1");
    assert_eq!(info_ok(&s, "latest").await["marker"], "main-1");
    // Secrets work for directory deploys too, production included.
    secret_set(&s, "production", "API_KEY", "prod-value");
    wait_info(&s, "production", "the production secret", |b| {
        b["secret"] == "prod-value"
    })
    .await;
    assert_eq!(info_ok(&s, "staging").await["secret"], Value::Null);
    let envs = environments(&s).await;
    assert_eq!(envs.len(), 2, "{envs:?}");
    assert_eq!(env_named(&envs, "staging")["kind"], "preview");
    // The secret's restart is a release of its own.
    assert_eq!(env_named(&envs, "production")["release"], "v2");
    // A name the call path needs for versions is refused.
    let out = s.cli(&["deploy", dir, "--name", APP, "--env", "v2"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not valid"));
}
