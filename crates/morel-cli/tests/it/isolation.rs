//! Containment ("Contain every workload"): every deployed app may be an attacker.
//!
//! Attacker apps (`tests/fixtures/isolation/attacker`, Python, and `attacker-node`) try, from
//! inside their workers, to read the server's secrets (admin token, keys, database), another
//! app's files and environment, to signal the server and other workers, to write outside their
//! scratch directory, to exhaust processes and memory, to use syscalls a sandbox denies, and to
//! leave processes behind when their app is deleted or the server is killed. Each attack
//! answers with JSON where `ok: true` means it SUCCEEDED. A victim app
//! (`tests/fixtures/isolation/victim`) must keep answering with its own code and its own secret.
//!
//! The test aims the attacks itself: it knows the server's state directory, the server's pid and
//! the victim worker's pid, and passes them as call arguments. Every attack is run and every
//! breach collected, then the test fails listing all of them (with the attacker's JSON), so one
//! run shows the whole state of containment. Things the platform must keep doing whatever the
//! attacker did (the server answering, the victim answering) are asserted on the spot.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use morel_test_support::postgres::ScratchDb;
use morel_test_support::{MorelServer, signal, wait_for};
use serde_json::{Value, json};

use crate::bin;

const VICTIM: &str = "victim";
const VICTIM_ON_AGENT: &str = "victim-on-agent";
const ATTACKER: &str = "attacker";
const ATTACKER_NODE: &str = "attacker-node";
const CANARY_VAR: &str = "MOREL_TEST_CANARY";
const LIMIT: Duration = Duration::from_secs(60);

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/isolation")
        .join(name)
}

/// A string no other test (nor an earlier run) uses.
fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// A JSON value shortened for a message.
fn short(v: &Value) -> String {
    let text = v.to_string();
    if text.len() > 700 {
        let mut end = 700;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &text[..end])
    } else {
        text
    }
}

fn alive(pid: i64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true)
}

/// Host processes whose command line contains `marker`.
fn marker_pids(marker: &str) -> Vec<u32> {
    host_pids(|cmdline, _| cmdline.contains(marker))
}

/// Host processes that run a worker of `app` (its runner, with `MOREL_APP=app` set).
fn worker_pids(app: &str) -> Vec<u32> {
    let var = format!("MOREL_APP={app}");
    host_pids(|cmdline, environ| {
        cmdline.contains("runner") && environ.split('\0').any(|kv| kv == var)
    })
}

fn host_pids(matches: impl Fn(&str, &str) -> bool) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id();
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            let read = |f: &str| {
                std::fs::read(format!("/proc/{pid}/{f}"))
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default()
            };
            let cmdline = read("cmdline").replace('\0', " ");
            !cmdline.is_empty() && matches(&cmdline, &read("environ"))
        })
        .collect()
}

/// The real uid of a host process.
fn uid_of(pid: u32) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Every file directly in `dir` (e.g. `STATE/keys/`).
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Host paths an attack may have created: removed at the end whatever happened.
struct HostLitter(Vec<PathBuf>);

impl Drop for HostLitter {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Processes an attack left behind (marker children): killed at the end whatever happened.
struct MarkerLitter(Vec<String>);

impl Drop for MarkerLitter {
    fn drop(&mut self) {
        for m in &self.0 {
            for pid in marker_pids(m) {
                signal(pid, libc::SIGKILL);
            }
        }
    }
}

/// What the attacks achieved: every breach, and everything the attackers were told.
#[derive(Default)]
struct Report {
    breaches: Vec<String>,
    /// Every attacker answer, to check that no secret ever reached an attacker.
    seen: String,
}

impl Report {
    fn breach(&mut self, what: &str, detail: impl std::fmt::Display) {
        self.breaches.push(format!("{what}: {detail}"));
    }

    /// An attack must fail: a 200 answer saying `ok: true` is a breach. True when it succeeded.
    fn must_fail(&mut self, what: &str, answer: &(u16, Value)) -> bool {
        let succeeded = answer.0 == 200 && answer.1["ok"] == true;
        if succeeded {
            self.breach(what, short(&answer.1));
        }
        succeeded
    }

    fn assert_none(&self, s: &MorelServer) {
        assert!(
            self.breaches.is_empty(),
            "{} attack(s) succeeded:\n  - {}\n\nserver log (tail):\n{}",
            self.breaches.len(),
            self.breaches.join("\n  - "),
            tail(&s.log(), 40)
        );
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Calls an attacker's function and notes what it was told.
async fn attack(
    s: &MorelServer,
    r: &mut Report,
    app: &str,
    func: &str,
    args: Value,
) -> (u16, Value) {
    let (status, body) = s.call(app, func, &args.to_string()).await;
    r.seen.push_str(&body.to_string());
    eprintln!("{app}.{func}({args}) -> {status} {}", short(&body));
    (status, body)
}

/// The pid of the app's one ready instance of `resource` (once only one is ready).
async fn ready_pid(s: &MorelServer, app: &str, resource: &str, not: i64) -> i64 {
    wait_for(LIMIT, &format!("one ready {app} instance"), || async {
        let (_, detail) = s.get(&format!("/api/apps/{app}")).await;
        let ready: Vec<i64> = detail["instances"]
            .as_array()?
            .iter()
            .filter(|i| i["resource"] == resource && i["state"] == "ready")
            .filter_map(|i| i["pid"].as_i64())
            .filter(|pid| *pid != not && alive(*pid))
            .collect();
        (ready.len() == 1).then(|| ready[0])
    })
    .await
}

/// The victim answers with its own code and its own secret.
async fn victim_answers(s: &MorelServer, secret: Option<&str>) -> Value {
    let want = json!({"code": "victim-original", "secret": secret});
    wait_for(LIMIT, "the victim to answer as itself", || async {
        let (status, body) = s.call(VICTIM, "whoami", "").await;
        (status == 200 && body["secret"] == want["secret"]).then_some(body)
    })
    .await
}

async fn server_alive(s: &MorelServer) {
    let (status, body) = s.get("/api/apps").await;
    assert_eq!(status, 200, "the server must keep answering: {body}");
}

/// The extracted release directory of `app`'s active release under a state directory
/// (`STATE/releases/{namespace}/{app}/v{N}`, the agent's layout).
fn release_dir(state: &Path, app: &str, release: &str) -> PathBuf {
    state
        .join("releases")
        .join("default")
        .join(app)
        .join(release)
}

/// The attacks on the secrets of the server (or agent) whose state directory is `state`:
/// the admin token, every key, the database, and listing the directory.
async fn attack_state_secrets(
    s: &MorelServer,
    r: &mut Report,
    app: &str,
    read: &str,
    list: Option<&str>,
    state: &Path,
    db: Option<&str>,
) {
    let token = state.join("admin.token");
    if token.exists() {
        let a = attack(s, r, app, read, json!([token])).await;
        r.must_fail(&format!("{app} read STATE/admin.token"), &a);
    }
    let keys = files_in(&state.join("keys"));
    for key in &keys {
        let a = attack(s, r, app, read, json!([key])).await;
        r.must_fail(&format!("{app} read {}", key.display()), &a);
    }
    if let Some(db) = db {
        let db_path = state.join(db);
        assert!(db_path.exists(), "no {} on the host", db_path.display());
        let a = attack(s, r, app, read, json!([db_path])).await;
        r.must_fail(&format!("{app} read STATE/{db}"), &a);
    }
    let Some(list) = list else { return };
    let a = attack(s, r, app, list, json!([state])).await;
    if a.0 == 200 && a.1["ok"] == true {
        let entries: Vec<&str> = a.1["entries"]
            .as_array()
            .map(|e| e.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let exposed: Vec<&&str> = entries
            .iter()
            .filter(|e| ["admin.token", "keys", db.unwrap_or("admin.token")].contains(e))
            .collect();
        if !exposed.is_empty() {
            r.breach(
                &format!("{app} listed STATE and saw {exposed:?}"),
                short(&a.1),
            );
        }
    }
    if !keys.is_empty() {
        let a = attack(s, r, app, list, json!([state.join("keys")])).await;
        if a.0 == 200 && a.1["entries"].as_array().is_some_and(|e| !e.is_empty()) {
            r.breach(&format!("{app} listed STATE/keys"), short(&a.1));
        }
    }
}

/// Writes outside the scratch directory: to the state directory, `/etc` and `/tmp` (where a
/// write may succeed in the worker's private /tmp, but must not reach the host's).
async fn attack_writes(
    s: &MorelServer,
    r: &mut Report,
    app: &str,
    write: &str,
    state: &Path,
    litter: &mut HostLitter,
) {
    let tag = unique(&format!("isolation-{app}"));
    let in_state = state.join(format!("{tag}.txt"));
    let in_etc = PathBuf::from(format!("/etc/{tag}.txt"));
    let in_tmp = PathBuf::from(format!("/tmp/{tag}.txt"));
    litter
        .0
        .extend([in_state.clone(), in_etc.clone(), in_tmp.clone()]);
    for (what, path) in [("the state directory", &in_state), ("/etc", &in_etc)] {
        let a = attack(s, r, app, write, json!([path, "owned\n"])).await;
        if !r.must_fail(&format!("{app} wrote to {what}"), &a) && path.exists() {
            r.breach(
                &format!("{app} wrote to {what}"),
                format!(
                    "{} exists on the host; answer {}",
                    path.display(),
                    short(&a.1)
                ),
            );
        }
    }
    let a = attack(s, r, app, write, json!([in_tmp, "owned\n"])).await;
    // The worker's /tmp is its own: writable, and not the host's.
    assert_eq!(
        a.1["ok"],
        true,
        "{app}: its private /tmp must be writable: {}",
        short(&a.1)
    );
    if in_tmp.exists() {
        r.breach(
            &format!("{app} wrote to the host's /tmp"),
            format!(
                "{} appeared on the host; answer {}",
                in_tmp.display(),
                short(&a.1)
            ),
        );
    }
}

/// The worker's environment holds none of the server's variables.
fn check_environment(
    r: &mut Report,
    app: &str,
    answer: &(u16, Value),
    canary: &str,
    server_env: &[(String, String)],
) {
    assert_eq!(answer.0, 200, "{app}.environ: {}", short(&answer.1));
    let env = answer.1["env"].as_object().cloned().unwrap_or_default();
    if env.contains_key(CANARY_VAR) || answer.1.to_string().contains(canary) {
        r.breach(
            &format!("{app} sees the server's {CANARY_VAR}"),
            short(&answer.1),
        );
    }
    // Names a worker is given by the platform itself (the allow-list and the runners' own).
    const GIVEN: &[&str] = &[
        "PATH",
        "LANG",
        "HOME",
        "TMPDIR",
        "PORT",
        "MOREL_APP",
        "MOREL_ENV",
        "MOREL_RESOURCE",
        "MOREL_GATEWAY_URL",
        "PYTHONPATH",
        "PYTHONUNBUFFERED",
        "PYTHONDONTWRITEBYTECODE",
    ];
    let leaked: Vec<&str> = server_env
        .iter()
        .filter(|(k, v)| {
            !GIVEN.contains(&k.as_str()) && env.get(k).and_then(Value::as_str) == Some(v)
        })
        .map(|(k, _)| k.as_str())
        .collect();
    if !leaked.is_empty() {
        r.breach(
            &format!("{app} inherited {} of the server's variables", leaked.len()),
            format!("{leaked:?}"),
        );
    }
}

/// The server's environment as the harness starts it: the test's own plus what it adds.
fn server_env(s: &MorelServer, canary: &str) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = std::env::vars().collect();
    env.push((
        "MOREL_CONFIG_DIR".into(),
        s.config_dir.display().to_string(),
    ));
    env.push(("MOREL_LOG".into(), "info".into()));
    env.push((CANARY_VAR.into(), canary.into()));
    env
}

#[tokio::test(flavor = "multi_thread")]
async fn an_app_cannot_reach_the_server_other_apps_or_the_host() {
    let started = Instant::now();
    let canary = unique("canary");
    let secret = unique("victim-secret");
    let dirs = Arc::new(tempfile::tempdir().unwrap());
    let mut s = MorelServer::start_with_env(&bin(), dirs, &[], &[(CANARY_VAR, &canary)]);
    let state = s.state_dir.clone();
    let server_pid = i64::from(s.pid());
    let mut r = Report::default();
    let mut litter = HostLitter(Vec::new());
    let mut markers = MarkerLitter(Vec::new());

    s.deploy(&fixture("victim"));
    s.cli_ok(&[
        "secrets",
        "set",
        VICTIM,
        "VICTIM_SECRET",
        "--value",
        &secret,
    ]);
    s.deploy(&fixture("attacker"));
    s.deploy(&fixture("attacker-node"));
    victim_answers(&s, Some(&secret)).await;
    let victim_pid = ready_pid(&s, VICTIM, "default", -1).await;
    let (_, victim_app) = s.get(&format!("/api/apps/{VICTIM}")).await;
    let victim_release = release_dir(
        &state,
        VICTIM,
        victim_app["active_release"].as_str().unwrap(),
    );
    let victim_code = victim_release.join("victim.py");
    assert!(
        victim_code.is_file(),
        "the victim's code is not at {} (state layout changed?)",
        victim_code.display()
    );
    let env_of = |pid: i64| format!("/proc/{pid}/environ");

    // --- Python: the server's secrets.
    attack_state_secrets(
        &s,
        &mut r,
        ATTACKER,
        "read_file",
        Some("list_dir"),
        &state,
        Some("morel.db"),
    )
    .await;

    // --- The victim's files and environment, the server's environment.
    let a = attack(&s, &mut r, ATTACKER, "read_file", json!([victim_code])).await;
    r.must_fail("attacker read the victim's release files", &a);
    let a = attack(&s, &mut r, ATTACKER, "list_dir", json!([victim_release])).await;
    r.must_fail("attacker listed the victim's release directory", &a);
    let a = attack(
        &s,
        &mut r,
        ATTACKER,
        "read_file",
        json!([env_of(victim_pid)]),
    )
    .await;
    r.must_fail("attacker read the victim worker's environ", &a);
    let a = attack(
        &s,
        &mut r,
        ATTACKER,
        "read_file",
        json!([env_of(server_pid)]),
    )
    .await;
    r.must_fail("attacker read the server's environ", &a);

    // --- Its own environment: nothing of the server's; HOME and TMPDIR its own, writable.
    let a = attack(&s, &mut r, ATTACKER, "environ", json!([])).await;
    let server_env = server_env(&s, &canary);
    check_environment(&mut r, ATTACKER, &a, &canary, &server_env);
    let a = attack(&s, &mut r, ATTACKER, "scratch", json!([])).await;
    assert_eq!(a.0, 200, "{}", short(&a.1));
    for dir in ["home_dir", "tmpdir_dir"] {
        if a.1[dir]["writable"] != true {
            r.breach(
                &format!("the worker's {dir} is not an existing writable directory"),
                short(&a.1),
            );
        }
    }
    if a.1["home"].as_str() == std::env::var("HOME").ok().as_deref() {
        r.breach("the worker's HOME is the server's", short(&a.1));
    }
    if a.1["uid"] == 0 || a.1["gid"] == 0 {
        r.breach("the worker runs as root", short(&a.1));
    }
    // Each app its own uid: none of the victim's worker processes runs as the attacker.
    let victim_uids: Vec<u32> = worker_pids(VICTIM).into_iter().filter_map(uid_of).collect();
    assert!(
        !victim_uids.is_empty(),
        "no victim worker found on the host"
    );
    if let Some(uid) = a.1["uid"].as_u64()
        && victim_uids.contains(&(uid as u32))
    {
        r.breach(
            "the attacker runs under the victim's uid",
            format!("attacker uid {uid}, victim's processes {victim_uids:?}"),
        );
    }

    // --- /proc shows only its own processes, and no environment of the server's (nor the
    // victim's: every answer is checked for its secret at the end).
    let a = attack(&s, &mut r, ATTACKER, "procs", json!([])).await;
    if a.1["environs"].to_string().contains(&canary) {
        let readable: Vec<&String> = a.1["environs"]
            .as_object()
            .map(|e| e.keys().collect())
            .unwrap_or_default();
        r.breach(
            "attacker read the server's environment (its canary) in /proc",
            format!("environs readable for pids {readable:?}"),
        );
    }
    if a.0 == 200 && a.1["ok"] == true {
        // The server's command line: `morel up --listen … --state-dir …`.
        let server_cmd = bin().display().to_string();
        let procs = a.1["procs"].as_object().cloned().unwrap_or_default();
        let seen_server = procs
            .values()
            .filter_map(Value::as_str)
            .any(|c| c.starts_with(&server_cmd) && c.contains(" --listen "));
        if seen_server || procs.len() > 16 {
            r.breach(
                &format!(
                    "attacker sees {} processes in /proc (the server among them: {seen_server})",
                    procs.len()
                ),
                short(&a.1),
            );
        }
    }

    // --- Syscalls a sandbox denies (each tried in a child of the worker).
    let a = attack(&s, &mut r, ATTACKER, "syscalls", json!([])).await;
    assert!(
        a.1["results"].is_object(),
        "the syscall probe did not run: {}",
        short(&a.1)
    );
    r.must_fail(
        "attacker used ptrace/process_vm_readv/keyctl/bpf/perf_event_open/setns/unshare",
        &a,
    );

    // --- Writes outside the scratch directory, and tampering with the victim's code.
    attack_writes(&s, &mut r, ATTACKER, "write_file", &state, &mut litter).await;
    // Still returns the secret, so only the code shows the tampering.
    let tamper = "\n\ndef whoami():\n    import os\n    \
                  return {'code': 'tampered', 'secret': os.environ.get('VICTIM_SECRET')}\n";
    let a = attack(
        &s,
        &mut r,
        ATTACKER,
        "write_file",
        json!([victim_code, tamper]),
    )
    .await;
    r.must_fail("attacker wrote into the victim's release", &a);

    // --- Signals: the server and the victim's worker.
    let a = attack(&s, &mut r, ATTACKER, "kill", json!([server_pid, 0])).await;
    r.must_fail("attacker signalled the server (kill 0)", &a);
    let a = attack(
        &s,
        &mut r,
        ATTACKER,
        "kill",
        json!([victim_pid, libc::SIGKILL]),
    )
    .await;
    r.must_fail("attacker sent SIGKILL to the victim's worker", &a);
    server_alive(&s).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    if !alive(victim_pid) {
        r.breach(
            "the victim's worker died after the attacker's SIGKILL",
            victim_pid,
        );
    } else {
        // Restart the victim's worker ourselves, so it loads its code again: the attacker's
        // tampering (if any went through) would show now.
        signal(victim_pid as u32, libc::SIGKILL);
    }
    ready_pid(&s, VICTIM, "default", victim_pid).await;
    let (status, body) = s.call(VICTIM, "whoami", "").await;
    if (status, &body) != (200, &json!({"code": "victim-original", "secret": secret})) {
        r.breach(
            "the victim no longer answers with its own code and secret after the attacks",
            format!("{status} {}", short(&body)),
        );
    }

    // --- 500 processes: bounded by the process limit; the app keeps answering.
    let a = attack(&s, &mut r, ATTACKER, "fork_many", json!([500])).await;
    if a.0 == 200 && a.1["started"].as_i64().unwrap_or(0) >= 500 {
        r.breach("attacker started 500 processes", short(&a.1));
    }
    wait_for(
        LIMIT,
        "the attacker to answer after the fork attack",
        || async { (s.call(ATTACKER, "ping", "").await == (200, json!("pong"))).then_some(()) },
    )
    .await;

    // --- 2 GiB on a resource with memory_mb = 256: MemoryError, or the worker dies (502).
    let a = attack(&s, &mut r, ATTACKER, "hog", json!([2048])).await;
    r.must_fail("attacker allocated 2 GiB with memory_mb = 256", &a);
    server_alive(&s).await;
    victim_answers(&s, Some(&secret)).await;

    // --- Node: a subset.
    attack_state_secrets(
        &s,
        &mut r,
        ATTACKER_NODE,
        "readFile",
        None,
        &state,
        Some("morel.db"),
    )
    .await;
    let victim_pid = ready_pid(&s, VICTIM, "default", -1).await;
    let a = attack(
        &s,
        &mut r,
        ATTACKER_NODE,
        "readFile",
        json!([env_of(victim_pid)]),
    )
    .await;
    r.must_fail("attacker-node read the victim worker's environ", &a);
    let a = attack(&s, &mut r, ATTACKER_NODE, "signal", json!([server_pid, 0])).await;
    r.must_fail("attacker-node signalled the server (kill 0)", &a);
    attack_writes(&s, &mut r, ATTACKER_NODE, "writeFile", &state, &mut litter).await;
    let a = attack(&s, &mut r, ATTACKER_NODE, "environ", json!([])).await;
    check_environment(&mut r, ATTACKER_NODE, &a, &canary, &server_env);
    server_alive(&s).await;

    // --- The victim kept its secret; no attacker ever saw it.
    victim_answers(&s, Some(&secret)).await;
    if r.seen.contains(&secret) {
        r.breach(
            "an attacker saw the victim's secret",
            "its value is in an attacker's answer (see the output above)",
        );
    }

    // --- Deleting the app ends its whole process tree, setsid children included.
    let marker = start_marker(&s, &mut r, &mut markers, ATTACKER, "spawn_marker").await;
    s.cli_ok(&["delete", ATTACKER, "--yes"]);
    if !gone_within(&marker, Duration::from_secs(10)).await {
        r.breach(
            "a setsid child outlived `morel delete` of its app by 10 s",
            format!("pids {:?}", marker_pids(&marker)),
        );
    }
    victim_answers(&s, Some(&secret)).await;

    // --- A kill -9 of the server ends every worker's process tree too.
    let marker = start_marker(&s, &mut r, &mut markers, ATTACKER_NODE, "spawnMarker").await;
    s.kill9();
    if !gone_within(&marker, Duration::from_secs(10)).await {
        r.breach(
            "a setsid child outlived a kill -9 of the server by 10 s",
            format!("pids {:?}", marker_pids(&marker)),
        );
    }

    eprintln!("isolation suite ran in {:?}", started.elapsed());
    drop(markers);
    drop(litter);
    r.assert_none(&s);
}

/// Has `app` start a detached child carrying a fresh marker (`func`), and waits until the host
/// sees it; returns the marker.
async fn start_marker(
    s: &MorelServer,
    r: &mut Report,
    markers: &mut MarkerLitter,
    app: &str,
    func: &str,
) -> String {
    let marker = unique("isolation-marker");
    markers.0.push(marker.clone());
    let a = attack(s, r, app, func, json!([marker])).await;
    assert_eq!(
        a.1["ok"],
        true,
        "the marker child did not start: {}",
        short(&a.1)
    );
    wait_for(
        Duration::from_secs(10),
        "the marker child on the host",
        || async { (!marker_pids(&marker).is_empty()).then_some(()) },
    )
    .await;
    marker
}

/// Waits up to `limit` for no host process to carry `marker`.
async fn gone_within(marker: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if marker_pids(marker).is_empty() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A `morel agent` joined to a server, with the server's canary in its environment too.
struct AgentProc(std::process::Child);

impl Drop for AgentProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The same containment where workers run on a `morel agent` (`morel server` on PostgreSQL):
/// the agent's workers cannot read the servers' token and keys nor the agent's database, see
/// nothing of the agent's environment, cannot read the victim's environment, and cannot write
/// outside their scratch directory.
#[tokio::test(flavor = "multi_thread")]
async fn an_app_on_an_agent_cannot_reach_the_agent_or_other_apps() {
    let canary = unique("canary");
    let db = ScratchDb::create().await;
    let dirs = Arc::new(tempfile::tempdir().unwrap());
    let s = MorelServer::start_role_with_env(
        &bin(),
        dirs.clone(),
        "server",
        &["--database-url", db.url.as_str(), "--no-compiler"],
        &[(CANARY_VAR, &canary)],
    );
    let agent_state = dirs.path().join("node-a");
    let log = std::fs::File::create(agent_state.with_extension("log")).unwrap();
    let _agent = AgentProc(
        s.command(&[
            "agent",
            "--join",
            &s.url,
            "--token",
            &s.token,
            "--node",
            "node-a",
            "--capacity",
            "8",
            "--heartbeat-ms",
            "300",
            "--state-dir",
            agent_state.to_str().unwrap(),
        ])
        .env("MOREL_LOG", "info")
        .env(CANARY_VAR, &canary)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap(),
    );
    wait_for(Duration::from_secs(30), "a ready node", || async {
        let (_, nodes) = s.get("/api/nodes").await;
        nodes
            .as_array()?
            .iter()
            .any(|n| n["state"] == "ready")
            .then_some(())
    })
    .await;
    // Its own name: tests run side by side, and the victim is found among the host's processes.
    s.cli_ok(&[
        "deploy",
        fixture("victim").to_str().unwrap(),
        "--name",
        VICTIM_ON_AGENT,
    ]);
    s.deploy(&fixture("attacker"));
    wait_for(Duration::from_secs(120), "both apps to answer", || async {
        let v = s.call(VICTIM_ON_AGENT, "whoami", "").await;
        let a = s.call(ATTACKER, "ping", "").await;
        (v.0 == 200 && a == (200, json!("pong"))).then_some(())
    })
    .await;
    let victim_pids = wait_for(LIMIT, "the victim's worker on the host", || async {
        let pids = worker_pids(VICTIM_ON_AGENT);
        (!pids.is_empty()).then_some(pids)
    })
    .await;
    let victim_code = release_dir(&agent_state, VICTIM_ON_AGENT, "v1").join("victim.py");
    assert!(
        victim_code.is_file(),
        "the victim's code is not at {} (agent state layout changed?)",
        victim_code.display()
    );
    let mut r = Report::default();
    let mut litter = HostLitter(Vec::new());

    // The servers' secrets (same machine here), and the agent's own database.
    attack_state_secrets(
        &s,
        &mut r,
        ATTACKER,
        "read_file",
        Some("list_dir"),
        &s.state_dir,
        None,
    )
    .await;
    attack_state_secrets(
        &s,
        &mut r,
        ATTACKER,
        "read_file",
        Some("list_dir"),
        &agent_state,
        Some("agent.db"),
    )
    .await;

    // Nothing of the agent's environment (which holds the admin token, MOREL_TOKEN).
    let a = attack(&s, &mut r, ATTACKER, "environ", json!([])).await;
    let mut agent_env = server_env(&s, &canary);
    agent_env.push(("MOREL_TOKEN".into(), s.token.clone()));
    agent_env.push(("MOREL_URL".into(), s.url.clone()));
    check_environment(&mut r, ATTACKER, &a, &canary, &agent_env);
    if a.1.to_string().contains(&s.token) {
        r.breach(
            "attacker on an agent sees the admin token in its environment",
            "",
        );
    }

    // The victim's environment and files.
    for pid in &victim_pids {
        let a = attack(
            &s,
            &mut r,
            ATTACKER,
            "read_file",
            json!([format!("/proc/{pid}/environ")]),
        )
        .await;
        r.must_fail("attacker on an agent read the victim worker's environ", &a);
    }
    let a = attack(&s, &mut r, ATTACKER, "read_file", json!([victim_code])).await;
    r.must_fail("attacker on an agent read the victim's release files", &a);

    // Writes outside the scratch directory: the agent's state, the victim's code, /etc, /tmp.
    attack_writes(
        &s,
        &mut r,
        ATTACKER,
        "write_file",
        &agent_state,
        &mut litter,
    )
    .await;
    let a = attack(
        &s,
        &mut r,
        ATTACKER,
        "write_file",
        json!([victim_code, "\n# tampered\n"]),
    )
    .await;
    r.must_fail("attacker on an agent wrote into the victim's release", &a);
    server_alive(&s).await;

    drop(litter);
    r.assert_none(&s);
}

const UNPRIVILEGED_PROBE: &str = r#"
import os

def probe(state, server_pid):
    out = {}
    try:
        out["token"] = open(os.path.join(state, "admin.token")).read()
    except OSError as e:
        out["token_error"] = type(e).__name__
    try:
        out["state_listing"] = sorted(os.listdir(state))
    except OSError as e:
        out["state_listing"] = type(e).__name__
    status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines() if ":" in l)
    out["cap_eff"] = status["CapEff"].strip()
    out["cap_bnd"] = status["CapBnd"].strip()
    out["pids"] = len([p for p in os.listdir("/proc") if p.isdigit()])
    try:
        os.kill(int(server_pid), 0)
        out["signal_server"] = "sent"
    except OSError as e:
        out["signal_server"] = type(e).__name__
    out["canary"] = os.environ.get("MOREL_TEST_CANARY")
    return out
"#;

/// Morel run by an unprivileged user: workloads get a user namespace each (root inside, no
/// capabilities), with their own PID and mount namespaces, so they still reach nothing of the
/// server's.
#[tokio::test(flavor = "multi_thread")]
async fn without_root_workloads_run_in_user_namespaces() {
    use std::os::unix::fs::PermissionsExt;
    assert!(
        nix_is_root(),
        "the isolation suite runs as root (CI does); it starts Morel as `nobody` itself"
    );
    let dirs = Arc::new(tempfile::tempdir().unwrap());
    let root = dirs.path();
    let bin_dir = root.join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    std::fs::copy(bin(), bin_dir.join("morel")).unwrap();
    // The server and the CLI run as `nobody`, with Debian's python (pyenv's is under /root).
    let wrapper = bin_dir.join("morel-as-nobody");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec runuser -p -u nobody -- env HOME={root} PATH=/usr/local/bin:/usr/bin:/bin \
             MOREL_PYTHON=/usr/bin/python3 {bin} \"$@\"\n",
            root = root.display(),
            bin = bin_dir.join("morel").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let app = root.join("probe");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(app.join("probe.py"), UNPRIVILEGED_PROBE).unwrap();
    let status = std::process::Command::new("chown")
        .args(["-R", "nobody:nogroup"])
        .arg(root)
        .status()
        .unwrap();
    assert!(status.success());

    let canary = unique("canary");
    let s = MorelServer::start_role_with_env(
        &wrapper,
        dirs.clone(),
        "up",
        &[],
        &[("MOREL_TEST_CANARY", canary.as_str())],
    );
    let (_, system) = s.get("/api/system").await;
    let layers: Vec<(&str, bool)> = system["containment"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["layer"].as_str().unwrap(), l["enabled"] == true))
        .collect();
    assert!(layers.contains(&("user namespace", true)), "{system}");
    assert!(layers.contains(&("uid per app", false)), "{system}");
    s.deploy(&app);
    let answer = s
        .call("probe", "probe", &json!([s.state_dir, s.pid()]).to_string())
        .await;
    assert_eq!(answer.0, 200, "{}", answer.1);
    let p = &answer.1;
    assert!(p.get("token").is_none(), "read the admin token: {p}");
    assert_eq!(p["cap_eff"], "0000000000000000", "{p}");
    assert_eq!(p["cap_bnd"], "0000000000000000", "{p}");
    assert!(
        p["pids"].as_u64().unwrap() < 8,
        "sees the host's processes: {p}"
    );
    assert_ne!(p["signal_server"], "sent", "{p}");
    assert!(p["canary"].is_null(), "{p}");
    let listing = p["state_listing"].to_string();
    for secret in ["admin.token", "keys", "morel.db"] {
        assert!(!listing.contains(secret), "{p}");
    }
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|u| u.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// A resource may not ask for more memory than the app's whole budget: the deploy fails,
/// naming the field, and nothing of it runs.
#[tokio::test(flavor = "multi_thread")]
async fn a_resource_asking_for_more_than_the_budget_fails_the_deploy() {
    let s = MorelServer::start(&bin());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("greedy");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("app.py"), "def hi():\n    return 'hi'\n").unwrap();
    std::fs::write(
        dir.join("morel.toml"),
        "[app]\nname = \"greedy\"\n[resources.default]\nmemory_mb = 512\n",
    )
    .unwrap();
    s.cli_ok(&["budget", "set", "greedy", "--memory", "256M"]);
    let out = s.cli(&["deploy", dir.to_str().unwrap()]);
    assert!(!out.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("resources.default.memory_mb is 512 MiB, more than the memory budget"),
        "{text}"
    );
    assert_eq!(s.call("greedy", "hi", "").await.0, 404);
    // Within the budget it deploys.
    s.cli_ok(&["budget", "set", "greedy", "--memory", "1G"]);
    s.deploy(&dir);
    assert_eq!(s.call("greedy", "hi", "").await, (200, json!("hi")));
}

/// What runs is what was signed: a release file changed on the host after extraction is found
/// before the next start of a worker (which is then refused, and says why), and a restart
/// extracts the release again from its signed bundle.
#[tokio::test(flavor = "multi_thread")]
async fn a_release_changed_after_extraction_never_runs_and_a_restart_restores_it() {
    let mut s = MorelServer::start(&bin());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("signed");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("app.py"), "def who():\n    return 'original'\n").unwrap();
    s.deploy(&dir);
    assert_eq!(s.call("signed", "who", "").await, (200, json!("original")));

    let file = release_dir(&s.state_dir, "signed", "v1").join("app.py");
    std::fs::write(&file, "def who():\n    return 'tampered'\n").unwrap();
    let pid = ready_pid(&s, "signed", "default", -1).await;
    signal(pid as u32, libc::SIGKILL);
    // Every start from now on is refused: the call path never answers with the changed code.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = s.call("signed", "who", "").await;
        assert_ne!(body, json!("tampered"), "the changed release ran");
        if status == 503 {
            break;
        }
        assert!(Instant::now() < deadline, "still {status}: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_for(
        Duration::from_secs(10),
        "the refusal in the app's log",
        || async {
            let (_, logs) = s.get("/api/apps/signed/logs?since=1h").await;
            logs.to_string()
                .contains("changed after extraction")
                .then_some(())
        },
    )
    .await;

    // A restart finds the difference, logs it and extracts the signed bundle again.
    s.stop();
    let s = MorelServer::start_with(&bin(), s.dirs.clone());
    let answer = wait_for(Duration::from_secs(30), "the signed code again", || async {
        let (status, body) = s.call("signed", "who", "").await;
        (status == 200).then_some(body)
    })
    .await;
    assert_eq!(answer, json!("original"));
    assert!(
        std::fs::read_to_string(&file).unwrap().contains("original"),
        "the file on disk was not restored"
    );
}

/// A worker stopped by its memory limit is reported with the limit, in the instance's status
/// and in the app's log.
#[tokio::test(flavor = "multi_thread")]
async fn a_worker_killed_by_its_memory_limit_is_reported_with_the_limit() {
    let s = MorelServer::start(&bin());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node-hog");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("index.js"),
        "function hog() { const a = []; for (;;) a.push(new Array(1e6).fill(7)); }\n\
         function ping() { return 'pong'; }\n\
         module.exports = { hog, ping };\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("morel.toml"),
        "[app]\nname = \"node-hog\"\n[resources.default]\nmemory_mb = 128\n",
    )
    .unwrap();
    s.deploy(&dir);
    assert_eq!(s.call("node-hog", "ping", "").await, (200, json!("pong")));
    let (status, body) = s.call("node-hog", "hog", "").await;
    assert_eq!(status, 502, "{body}");
    let reported = wait_for(
        Duration::from_secs(20),
        "the limit in the status",
        || async {
            let (_, detail) = s.get("/api/apps/node-hog").await;
            let text = detail["instances"].to_string();
            text.contains("stopped by its memory limit of 128 MiB")
                .then_some(text)
        },
    )
    .await;
    assert!(reported.contains("memory limit"), "{reported}");
    wait_for(Duration::from_secs(10), "the limit in the log", || async {
        let (_, logs) = s.get("/api/apps/node-hog/logs?since=1h").await;
        logs.to_string()
            .contains("stopped by its memory limit of 128 MiB")
            .then_some(())
    })
    .await;
    // It is respawned and serves again.
    wait_for(Duration::from_secs(30), "the worker back", || async {
        (s.call("node-hog", "ping", "").await == (200, json!("pong"))).then_some(())
    })
    .await;
}
