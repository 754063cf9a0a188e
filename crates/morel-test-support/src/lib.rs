//! Helpers for end-to-end tests: start the real `morel` binary on a free loopback port with
//! its own state and config directories, call it over HTTP, run CLI commands against it, and
//! wait for conditions with a bound (never a bare sleep).

#![allow(clippy::unwrap_used, clippy::print_stdout)]

pub mod postgres;

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running `morel up`.
pub struct MorelServer {
    pub bin: PathBuf,
    pub url: String,
    pub token: String,
    pub state_dir: PathBuf,
    pub config_dir: PathBuf,
    /// Keeps the temporary directories alive for the server's lifetime (and restarts).
    pub dirs: std::sync::Arc<tempfile::TempDir>,
    child: Option<Child>,
    log_path: PathBuf,
}

impl MorelServer {
    /// Starts `morel up` on 127.0.0.1:0 with fresh temporary state.
    pub fn start(bin: &Path) -> MorelServer {
        let dirs = std::sync::Arc::new(tempfile::tempdir().unwrap());
        Self::start_with(bin, dirs)
    }

    /// Starts (or restarts) a server on the given directories.
    pub fn start_with(bin: &Path, dirs: std::sync::Arc<tempfile::TempDir>) -> MorelServer {
        Self::start_with_args(bin, dirs, &[])
    }

    /// Starts a server on the given directories with extra `morel up` arguments.
    pub fn start_with_args(
        bin: &Path,
        dirs: std::sync::Arc<tempfile::TempDir>,
        extra: &[&str],
    ) -> MorelServer {
        Self::start_role_with_env(bin, dirs, "up", extra, &[])
    }

    /// Starts a server with extra `morel up` arguments and environment variables.
    pub fn start_with_env(
        bin: &Path,
        dirs: std::sync::Arc<tempfile::TempDir>,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> MorelServer {
        Self::start_role_with_env(bin, dirs, "up", extra, envs)
    }

    /// Starts `morel ROLE` (`up` or `server`) on the given directories with extra arguments.
    pub fn start_role(
        bin: &Path,
        dirs: std::sync::Arc<tempfile::TempDir>,
        role: &str,
        extra: &[&str],
    ) -> MorelServer {
        Self::start_role_with_env(bin, dirs, role, extra, &[])
    }

    /// Starts `morel ROLE` with extra arguments and environment variables.
    pub fn start_role_with_env(
        bin: &Path,
        dirs: std::sync::Arc<tempfile::TempDir>,
        role: &str,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> MorelServer {
        let state_dir = dirs.path().join("state");
        let config_dir = dirs.path().join("config");
        let log_path = dirs.path().join(format!(
            "server-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let log = std::fs::File::create(&log_path).unwrap();
        let mut cmd = Command::new(bin);
        cmd.args([role, "--listen", "127.0.0.1:0"]);
        // A gateway has no state directory (nor admin token) of its own.
        if role != "gateway" {
            cmd.arg("--state-dir").arg(&state_dir);
        }
        let mut child = cmd
            .args(extra)
            .env("MOREL_CONFIG_DIR", &config_dir)
            .env("MOREL_LOG", "info")
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn morel");
        // The server prints its URL once it is listening; everything after goes to the log file.
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let log_copy = log_path.clone();
        std::thread::spawn(move || {
            let mut out = std::fs::OpenOptions::new()
                .append(true)
                .open(&log_copy)
                .unwrap();
            let mut sent = false;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                use std::io::Write;
                let _ = writeln!(out, "{line}");
                if !sent && let Some(url) = line.split("listening on ").nth(1) {
                    let _ = tx.send(url.trim().to_owned());
                    sent = true;
                }
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(u) => u,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "morel up did not start; log:\n{}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
        };
        let token = match std::fs::read_to_string(state_dir.join("admin.token")) {
            Ok(t) => t.trim().to_owned(),
            // A server that joined an installation whose token another server recorded has
            // no file of its own; tests give it that server's token.
            Err(_) if role == "gateway" || role == "server" => String::new(),
            Err(e) => panic!("morel {role} wrote no admin token: {e}"),
        };
        MorelServer {
            bin: bin.to_owned(),
            url,
            token,
            state_dir,
            config_dir,
            dirs,
            child: Some(child),
            log_path,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// A `morel` command pointed at this server.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .env("MOREL_URL", &self.url)
            .env("MOREL_TOKEN", &self.token)
            .env("MOREL_CONFIG_DIR", &self.config_dir)
            .env("MOREL_LOG", "warn")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs a `morel` command to completion.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs a `morel` command and panics with its output unless it succeeds; returns stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "morel {args:?} failed:\nstdout: {}\nstderr: {}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Deploys a directory with the CLI, panicking with details on failure.
    pub fn deploy(&self, dir: &Path) -> String {
        self.cli_ok(&["deploy", dir.to_str().unwrap()])
    }

    pub fn http(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap()
    }

    /// POSTs `body` to the call path; returns status and JSON (or the raw text as a string).
    pub async fn call(&self, app: &str, func: &str, body: &str) -> (u16, Value) {
        let url = format!("{}/default/{app}/latest/call/{func}", self.url);
        let resp = self
            .http()
            .post(url)
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// An authenticated control API request.
    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http()
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.api(reqwest::Method::GET, path, None).await
    }

    /// Stops the server with SIGTERM and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe_signal(child.id(), libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server with SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for MorelServer {
    fn drop(&mut self) {
        self.stop();
    }
}

#[allow(unsafe_code)]
fn unsafe_signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a child pid we own; no memory is involved.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// Sends a signal to any pid (tests kill workers with it).
pub fn signal(pid: u32, sig: i32) {
    unsafe_signal(pid, sig);
}

/// Sends a signal to the process group led by `pid`: an instance's init and its workload.
#[allow(unsafe_code)]
pub fn signal_group(pid: u32, sig: i32) {
    // SAFETY: kill(2) with a negative pid targets a process group; no memory is involved.
    unsafe {
        libc::kill(-(pid as i32), sig);
    }
}

/// A condition a contained workload can observe, which cannot see the test's files: a
/// loopback port that refuses connections until [`Gate::open`], then accepts them.
pub struct Gate {
    port: u16,
    listener: Option<std::net::TcpListener>,
}

impl Gate {
    pub fn new() -> Gate {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
        let port = l.local_addr().expect("its address").port();
        Gate {
            port,
            listener: None,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn open(&mut self) {
        self.listener =
            Some(std::net::TcpListener::bind(("127.0.0.1", self.port)).expect("the gate's port"));
    }
}

impl Default for Gate {
    fn default() -> Self {
        Gate::new()
    }
}

/// Polls `check` until it returns `Some`, or panics with `what` after `limit`.
pub async fn wait_for<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The repository root (for `examples/`).
pub fn repo_root() -> PathBuf {
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    while !dir.join("examples").is_dir() {
        assert!(dir.pop(), "cannot find the repository root");
    }
    dir
}

pub fn example(name: &str) -> PathBuf {
    repo_root().join("examples").join(name)
}

/// Copies a directory tree (to modify an example in a test without touching the repo).
pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let to = dst.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() == "node_modules" || entry.file_name() == ".morel" {
                continue;
            }
            copy_dir(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), &to).unwrap();
        }
    }
}
