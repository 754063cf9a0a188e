//! The published seed 000 client, `@metacall/deploy`, unchanged, against the real `morel up`.
//!
//! The client is installed by `npm install --prefix crates/morel-cli/tests/metacall-client`
//! (the test script does it). `package.json` there pins `@metacall/protocol` 0.1.26: with the
//! 0.1.31 a plain install resolves to, the client cannot upload at all (it rejects its own
//! zip stream before sending anything and exits 5), whatever the server does.
//!
//! The client can exit 0 without having done anything (no plans, a zip over about 2 MiB), so
//! every step is checked on the server: through `/api/inspect` and the call path.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use morel_test_support::MorelServer;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::bin;

/// Longest any one client run may take before it is killed.
const CLIENT_LIMIT: Duration = Duration::from_secs(120);

const INSTALL: &str = "npm install --prefix crates/morel-cli/tests/metacall-client";

fn client_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/metacall-client")
}

/// The installed client; a missing or wrongly resolved install fails the test, never skips it.
fn client_bin() -> PathBuf {
    let dir = client_dir();
    let bin = dir.join("node_modules/.bin/metacall-deploy");
    assert!(
        bin.is_file(),
        "the @metacall/deploy client is not installed ({} is missing): run `{INSTALL}` from the repository root",
        bin.display()
    );
    let protocol = dir.join("node_modules/@metacall/protocol/package.json");
    let version = std::fs::read_to_string(&protocol)
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v["version"].as_str().map(str::to_owned));
    assert_eq!(
        version.as_deref(),
        Some("0.1.26"),
        "{} must be the pinned 0.1.26 (newer versions cannot upload): run `{INSTALL}` again",
        protocol.display()
    );
    bin
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// A client configured for one server: its own HOME and `--confDir` with `config.ini`.
struct Client {
    bin: PathBuf,
    dir: tempfile::TempDir,
}

impl Client {
    fn new(s: &MorelServer, token: &str) -> Client {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        std::fs::create_dir_all(dir.path().join("conf")).unwrap();
        let ini = format!(
            "baseURL={url}\napiURL={url}\ndevURL={url}\ntoken={token}\n",
            url = s.url
        );
        std::fs::write(dir.path().join("conf/config.ini"), ini).unwrap();
        Client {
            bin: client_bin(),
            dir,
        }
    }

    fn conf(&self) -> String {
        self.dir.path().join("conf").display().to_string()
    }

    /// Runs the client with `args` and `stdin` (never a TTY), killed after [`CLIENT_LIMIT`].
    async fn run(&self, args: &[&str], stdin: &[u8]) -> Run {
        // Runs may overlap (two deploys at once): each gets its own output files.
        static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let out_path = self.dir.path().join(format!("out-{n}"));
        let err_path = self.dir.path().join(format!("err-{n}"));
        let mut child = tokio::process::Command::new(&self.bin)
            .arg("--confDir")
            .arg(self.conf())
            .args(args)
            .env("HOME", self.dir.path().join("home"))
            .env_remove("METACALL_API_KEY")
            .env_remove("NODE_ENV")
            .env_remove("METACALL_DEPLOY_INTERACTIVE")
            .env("NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(std::fs::File::create(&out_path).unwrap())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn metacall-deploy (is node installed?)");
        let mut pipe = child.stdin.take().unwrap();
        // The client may exit before reading its input; a broken pipe is not the test's concern.
        let _ = pipe.write_all(stdin).await;
        drop(pipe);
        let status = tokio::time::timeout(CLIENT_LIMIT, child.wait()).await;
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        match status {
            Ok(status) => Run {
                code: status.unwrap().code(),
                stdout: read(&out_path),
                stderr: read(&err_path),
            },
            Err(_) => {
                let _ = child.kill().await;
                let run = Run {
                    code: None,
                    stdout: read(&out_path),
                    stderr: read(&err_path),
                };
                panic!(
                    "metacall-deploy {args:?} did not finish within {CLIENT_LIMIT:?}; killed.\n{run}"
                );
            }
        }
    }

    async fn run_ok(&self, s: &MorelServer, args: &[&str], stdin: &[u8]) -> Run {
        let run = self.run(args, stdin).await;
        assert_eq!(
            run.code,
            Some(0),
            "metacall-deploy {args:?}:\n{run}\nserver log:\n{}",
            s.log()
        );
        run
    }
}

async fn call(s: &MorelServer, path: &str, body: &str) -> (u16, Value) {
    let resp = s
        .http()
        .post(format!("{}{path}", s.url))
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

async fn inspect(s: &MorelServer) -> Vec<Value> {
    let (status, body) = s.get("/api/inspect").await;
    assert_eq!(status, 200, "{body}");
    body.as_array().unwrap().clone()
}

/// `(suffix, status, version)` of every deployment, in inspect order.
fn summary(list: &[Value]) -> Vec<(String, String, String)> {
    list.iter()
        .map(|d| {
            (
                d["suffix"].as_str().unwrap().to_owned(),
                d["status"].as_str().unwrap().to_owned(),
                d["version"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn func_names(entry: &Value, lang: &str) -> Vec<String> {
    let mut names: Vec<String> = entry["packages"][lang]
        .as_array()
        .unwrap_or_else(|| panic!("no {lang} package in {entry}"))
        .iter()
        .flat_map(|file| {
            file["scope"]["funcs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["name"].as_str().unwrap().to_owned())
        })
        .collect();
    names.sort();
    names
}

/// Small projects, written the way a user of the client would have them.
fn write_projects(root: &Path) -> (PathBuf, PathBuf) {
    let py = root.join("python-project");
    std::fs::create_dir_all(py.join("lib")).unwrap();
    std::fs::write(py.join("app.py"), "import os\n\nfrom lib.words import shout\n\n\ndef greet(name):\n    return 'hi ' + name\n\n\ndef loud(name):\n    return shout(name)\n\n\ndef setting(key):\n    return os.environ.get(key)\n").unwrap();
    std::fs::write(py.join("lib/__init__.py"), "").unwrap();
    std::fs::write(
        py.join("lib/words.py"),
        "def shout(s):\n    return s.upper() + '!'\n",
    )
    .unwrap();
    std::fs::write(
        py.join("metacall.json"),
        r#"{ "language_id": "py", "path": ".", "scripts": ["app.py"] }"#,
    )
    .unwrap();
    // The client sends .env as the deploy's env (and, being a dotfile, inside the zip too).
    std::fs::write(py.join(".env"), "MC_GREETING=salut tout le monde\n").unwrap();

    let node = root.join("mcnode");
    std::fs::create_dir_all(&node).unwrap();
    std::fs::write(node.join("index.js"), "function hello(name) { return 'hello ' + name; }\nfunction sum(a, b) { return a + b; }\nmodule.exports = { hello, sum };\n").unwrap();
    std::fs::write(
        node.join("package.json"),
        r#"{"name": "mcnode", "version": "1.0.0", "main": "index.js"}"#,
    )
    .unwrap();
    std::fs::write(
        node.join("metacall.json"),
        r#"{ "language_id": "node", "path": ".", "scripts": ["index.js"] }"#,
    )
    .unwrap();
    (py, node)
}

#[tokio::test(flavor = "multi_thread")]
async fn deploy_inspect_redeploy_delete_with_the_published_client() {
    let s = MorelServer::start(&bin());
    let client = Client::new(&s, &s.token);
    let work = tempfile::tempdir().unwrap();
    let (py, node) = write_projects(work.path());

    // Deploy Python, named with --projectName (the client lowercases it into the id).
    let run = client
        .run_ok(
            &s,
            &["--workdir", py.to_str().unwrap(), "--projectName", "McPy"],
            b"",
        )
        .await;
    assert!(
        run.stdout.contains("Repository deployed"),
        "the client did not report a deploy (it prints this only for a non-empty deploy/create answer):\n{run}"
    );
    assert_eq!(
        summary(&inspect(&s).await),
        [("mcpy".into(), "ready".into(), "v1".into())]
    );
    assert_eq!(
        call(&s, "/default/mcpy/v1/call/greet", r#"{"name": "Ada"}"#).await,
        (200, json!("hi Ada"))
    );
    assert_eq!(
        call(&s, "/default/mcpy/v1/call/loud", r#"["ada"]"#).await,
        (200, json!("ADA!"))
    );
    assert_eq!(
        call(&s, "/default/mcpy/v1/call/setting", r#"["MC_GREETING"]"#).await,
        (200, json!("salut tout le monde"))
    );

    // Deploy Node, named after its directory.
    let run = client
        .run_ok(&s, &["--workdir", node.to_str().unwrap()], b"")
        .await;
    assert!(run.stdout.contains("Repository deployed"), "{run}");
    assert_eq!(
        call(&s, "/default/mcnode/v1/call/hello", r#"{"name": "Ada"}"#).await,
        (200, json!("hello Ada"))
    );
    assert_eq!(
        call(&s, "/default/mcnode/v1/call/sum", "[40, 2]").await,
        (200, json!(42))
    );
    let list = inspect(&s).await;
    let mut got = summary(&list);
    got.sort();
    assert_eq!(
        got,
        [
            ("mcnode".into(), "ready".into(), "v1".into()),
            ("mcpy".into(), "ready".into(), "v1".into())
        ]
    );
    let entry = |suffix: &str| list.iter().find(|d| d["suffix"] == suffix).unwrap().clone();
    assert_eq!(
        func_names(&entry("mcpy"), "py"),
        ["greet", "loud", "setting"]
    );
    assert_eq!(func_names(&entry("mcnode"), "node"), ["hello", "sum"]);

    // --inspect Raw prints the server's list once and exits.
    let run = client.run_ok(&s, &["--inspect", "Raw"], b"").await;
    let start = run
        .stdout
        .find('[')
        .unwrap_or_else(|| panic!("no JSON array in:\n{run}"));
    let printed: Vec<Value> =
        serde_json::from_str(run.stdout[start..].trim()).unwrap_or_else(|e| panic!("{e}:\n{run}"));
    let mut got = summary(&printed);
    got.sort();
    assert_eq!(
        got,
        [
            ("mcnode".into(), "ready".into(), "v1".into()),
            ("mcpy".into(), "ready".into(), "v1".into())
        ]
    );
    assert_eq!(
        func_names(
            printed.iter().find(|d| d["suffix"] == "mcpy").unwrap(),
            "py"
        ),
        ["greet", "loud", "setting"]
    );

    // Deploying the same project again: a new version, not an error.
    std::fs::write(node.join("index.js"), "function hello(name) { return 'hello again ' + name; }\nfunction sum(a, b) { return a + b; }\nmodule.exports = { hello, sum };\n").unwrap();
    client
        .run_ok(&s, &["--workdir", node.to_str().unwrap()], b"")
        .await;
    assert_eq!(
        call(&s, "/default/mcnode/v2/call/hello", r#"["Ada"]"#).await,
        (200, json!("hello again Ada"))
    );
    let node_version = inspect(&s)
        .await
        .iter()
        .find(|d| d["suffix"] == "mcnode")
        .unwrap()["version"]
        .clone();
    assert_eq!(node_version, "v2");

    // --delete with "\n" picks the first ready deployment in inspect order.
    let order = summary(&inspect(&s).await);
    let (first, first_version) = (order[0].0.clone(), order[0].2.clone());
    let (second, second_version) = (order[1].0.clone(), order[1].2.clone());
    let run = client.run_ok(&s, &["--delete"], b"\n").await;
    assert!(run.stdout.contains("Deploy Delete Succeed"), "{run}");
    assert_eq!(
        summary(&inspect(&s).await),
        [(second.clone(), "ready".into(), second_version.clone())],
        "{first} was deleted:\n{run}"
    );
    let (status, body) = call(
        &s,
        &format!("/default/{first}/{first_version}/call/hello"),
        "[\"x\"]",
    )
    .await;
    assert_eq!((status, &body["type"]), (404, &json!("NotFound")), "{body}");
    let still = match second.as_str() {
        "mcpy" => call(&s, "/default/mcpy/latest/call/greet", r#"["still"]"#).await,
        _ => call(&s, "/default/mcnode/latest/call/hello", r#"["still"]"#).await,
    };
    assert_eq!(still.0, 200, "{still:?}");
    assert!(still.1.as_str().unwrap().ends_with("still"), "{still:?}");

    // Redeploy the deleted one, then "down, enter" picks the second entry of the list.
    let first_dir = if first == "mcpy" { &py } else { &node };
    let first_name = if first == "mcpy" { "McPy" } else { "mcnode" };
    client
        .run_ok(
            &s,
            &[
                "--workdir",
                first_dir.to_str().unwrap(),
                "--projectName",
                first_name,
            ],
            b"",
        )
        .await;
    let order = summary(&inspect(&s).await);
    assert_eq!(order.len(), 2, "{order:?}");
    let (keep, target) = (order[0].clone(), order[1].clone());
    client.run_ok(&s, &["--delete"], b"\x1b[B\n").await;
    assert_eq!(
        summary(&inspect(&s).await),
        std::slice::from_ref(&keep),
        "{} was the one to delete",
        target.0
    );

    // The last one, then an empty list: the client reports it and exits 1.
    client.run_ok(&s, &["--delete"], b"\n").await;
    assert_eq!(inspect(&s).await, Vec::<Value>::new());
    let run = client.run_ok(&s, &["--inspect", "Raw"], b"").await;
    let start = run
        .stdout
        .find('[')
        .unwrap_or_else(|| panic!("no JSON array in:\n{run}"));
    assert_eq!(
        serde_json::from_str::<Value>(run.stdout[start..].trim()).unwrap(),
        json!([]),
        "{run}"
    );
    let run = client.run(&["--delete"], b"\n").await;
    assert_eq!(run.code, Some(1), "{run}");
    assert!(
        format!("{}{}", run.stdout, run.stderr).contains("No deployment found"),
        "{run}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_client_with_a_wrong_token_deploys_nothing() {
    let s = MorelServer::start(&bin());
    let client = Client::new(&s, "not-the-admin-token");
    let work = tempfile::tempdir().unwrap();
    let (py, _) = write_projects(work.path());

    let run = client
        .run(
            &[
                "--workdir",
                py.to_str().unwrap(),
                "--projectName",
                "intruder",
            ],
            b"",
        )
        .await;
    assert_eq!(run.code, Some(1), "{run}");
    assert!(
        format!("{}{}", run.stdout, run.stderr).contains("Token validation failed"),
        "{run}"
    );
    assert_eq!(inspect(&s).await, Vec::<Value>::new());
    let (status, _) = call(&s, "/default/intruder/v1/call/greet", "[\"x\"]").await;
    assert_eq!(status, 404);
}

/// A one-branch git repository at `parent/owner/name` holding `files`, as a `file://` URL.
fn git_repo(parent: &Path, owner: &str, name: &str, files: &[(&str, &str)]) -> String {
    let repo = parent.join(owner).join(name);
    std::fs::create_dir_all(&repo).unwrap();
    for (path, text) in files {
        std::fs::write(repo.join(path), text).unwrap();
    }
    git_commit_all(&repo)
}

/// Makes the directory `repo` a one-branch (`main`) git repository of all its files, as a
/// `file://` URL.
fn git_commit_all(repo: &Path) -> String {
    for args in [
        &["init", "--quiet", "-b", "main"][..],
        &["add", "."],
        &["commit", "--quiet", "-m", "first"],
    ] {
        let out = std::process::Command::new("git")
            .args([
                "-c",
                "user.name=Morel Test",
                "-c",
                "user.email=test@morel.invalid",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args)
            .current_dir(repo)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .stdin(Stdio::null())
            .output()
            .expect("git is needed for the repository tests");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    format!("file://{}", repo.display())
}

/// `--addrepo`: the client lists the branches (one, so it picks it), lists its files to find
/// the runners (`/api/repository/filelist`), asks for the clone (`repository/add`, which names
/// the app `owner-repo`), deploys it, then follows its logs until inspect says it is ready.
/// Its one question, which logs to follow, is answered with the first choice ("Deploy").
#[tokio::test(flavor = "multi_thread")]
async fn the_published_client_deploys_python_and_node_repositories() {
    let s = MorelServer::start(&bin());
    let client = Client::new(&s, &s.token);
    let work = tempfile::tempdir().unwrap();
    let py = git_repo(
        work.path(),
        "McOwner",
        "PyRepo",
        &[
            ("app.py", "def triple(x):\n    return 3 * x\n"),
            (
                "metacall.json",
                r#"{ "language_id": "py", "path": ".", "scripts": ["app.py"] }"#,
            ),
            ("requirements.txt", ""),
        ],
    );
    let node = git_repo(
        work.path(),
        "McOwner",
        "Node.Repo.git",
        &[
            (
                "index.js",
                "function shout(s) { return s.toUpperCase() + '!'; }\nmodule.exports = { shout };\n",
            ),
            (
                "package.json",
                r#"{"name": "noderepo", "version": "1.0.0", "main": "index.js"}"#,
            ),
            (
                "metacall.json",
                r#"{ "language_id": "node", "path": ".", "scripts": ["index.js"] }"#,
            ),
        ],
    );

    let run = client.run_ok(&s, &["--addrepo", &py], b"\n").await;
    assert!(
        run.stdout.contains("Only one branch found : main")
            && run.stdout.contains("Repository deployed"),
        "{run}"
    );
    assert_eq!(
        summary(&inspect(&s).await),
        [("mcowner-pyrepo".into(), "ready".into(), "v1".into())],
        "{run}"
    );
    assert_eq!(
        call(&s, "/default/mcowner-pyrepo/v1/call/triple", "[14]").await,
        (200, json!(42))
    );

    let run = client.run_ok(&s, &["--addrepo", &node], b"\n").await;
    assert!(run.stdout.contains("Repository deployed"), "{run}");
    let list = inspect(&s).await;
    let mut got = summary(&list);
    got.sort();
    assert_eq!(
        got,
        [
            ("mcowner-node-repo".into(), "ready".into(), "v1".into()),
            ("mcowner-pyrepo".into(), "ready".into(), "v1".into())
        ]
    );
    let entry = list
        .iter()
        .find(|d| d["suffix"] == "mcowner-node-repo")
        .unwrap();
    assert_eq!(func_names(entry, "node"), ["shout"]);
    assert_eq!(
        call(&s, "/default/mcowner-node-repo/v1/call/shout", r#"["hey"]"#).await,
        (200, json!("HEY!"))
    );
}

// ---- MetaCall FaaS scenarios: packages and repositories, dependencies, .env, restart ----------

/// How long Morel may take to restore its apps after a restart.
const RESTORE_LIMIT: Duration = Duration::from_secs(30);

/// Calls in flight at once in the concurrency step.
const CONCURRENT_CALLS: usize = 50;

/// A local dependency, so that nothing reaches beyond loopback.
#[derive(Clone, Copy)]
enum Dep {
    None,
    /// Python: a wheel built on the fly in `vendor/`, found through `--find-links ./vendor`
    /// (pip reads that path relative to the requirements file) with `--no-index`.
    WheelFindLinks,
    /// Python: a line naming the wheel by its path, `./vendor/NAME-1.0-py3-none-any.whl`,
    /// relative to the app, as MetaCall installs it (`pip3 install -r` in the app's directory).
    WheelPath,
    /// Node: `"dependencies": {"NAME": "file:./vendor/NAME"}`, a package in the app's tree.
    NodeFile,
}

/// One deployed app of a scenario and what its functions answer: `greet(name)` is
/// `"<id>: <name>"` (shouted by the dependency when it has one), `setting("MC_WHERE")` is the
/// value its `.env` sets.
struct App {
    id: String,
    /// Where its files are.
    dir: PathBuf,
    /// Its key in inspect's `packages`.
    lang: &'static str,
    shouts: bool,
}

impl App {
    fn greeting(&self, name: &str) -> String {
        if self.shouts {
            format!("{}: {}!", self.id, name.to_uppercase())
        } else {
            format!("{}: {name}", self.id)
        }
    }

    fn call_path(&self, func: &str) -> String {
        format!("/default/{}/v1/call/{func}", self.id)
    }
}

/// What each app's `.env` sets `MC_WHERE` to (quoted, with a ` #` that is not a comment).
fn where_value(id: &str) -> String {
    format!("from the .env of {id} # not a comment")
}

fn write(path: &Path, text: impl AsRef<[u8]>) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A pure-Python wheel of module `name` with `shout(s)`, written into `dir` with Python's
/// `zipfile` (no build backend, so no index is needed).
fn build_wheel(dir: &Path, name: &str) -> PathBuf {
    const SCRIPT: &str = r#"
import sys, zipfile
out, name = sys.argv[1], sys.argv[2]
info = name + "-1.0.dist-info/"
files = {
    name + "/__init__.py": "def shout(s):\n    return s.upper() + '!'\n",
    info + "METADATA": "Metadata-Version: 2.1\nName: " + name + "\nVersion: 1.0\n",
    info + "WHEEL": "Wheel-Version: 1.0\nGenerator: morel-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
files[info + "RECORD"] = "".join(p + ",,\n" for p in files) + info + "RECORD,,\n"
with zipfile.ZipFile(out, "w") as z:
    for path, text in files.items():
        z.writestr(path, text)
"#;
    std::fs::create_dir_all(dir).unwrap();
    let wheel = dir.join(format!("{name}-1.0-py3-none-any.whl"));
    let out = std::process::Command::new("python3")
        .args(["-c", SCRIPT])
        .arg(&wheel)
        .arg(name)
        .output()
        .expect("python3 is needed to build test wheels");
    assert!(
        out.status.success(),
        "building a wheel: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wheel
}

/// A Python app in `dir` deployed as `id`: `app.py`, `metacall.json`, `.env`, and with a
/// dependency its `requirements.txt` and `vendor/`.
fn python_app(dir: &Path, id: &str, dep: Dep) -> App {
    let module = format!("mcdep_{}", id.replace('-', "_"));
    let (import, expr) = match dep {
        Dep::None => (String::new(), "name"),
        _ => (format!("from {module} import shout\n"), "shout(name)"),
    };
    write(
        &dir.join("app.py"),
        format!(
            "import os\n{import}\nAPP = {id:?}\n\n\ndef greet(name):\n    return APP + ': ' + {expr}\n\n\ndef setting(key):\n    return os.environ.get(key)\n"
        ),
    );
    write(
        &dir.join("metacall.json"),
        r#"{ "language_id": "py", "path": ".", "scripts": ["app.py"] }"#,
    );
    write(
        &dir.join(".env"),
        format!("# settings\nMC_WHERE=\"{}\"\n", where_value(id)),
    );
    match dep {
        Dep::None => {}
        Dep::WheelFindLinks => {
            build_wheel(&dir.join("vendor"), &module);
            write(
                &dir.join("requirements.txt"),
                format!("--no-index\n--find-links ./vendor\n{module}\n"),
            );
        }
        Dep::WheelPath => {
            let wheel = build_wheel(&dir.join("vendor"), &module);
            let file = wheel.file_name().unwrap().to_str().unwrap();
            write(
                &dir.join("requirements.txt"),
                format!("--no-index\n./vendor/{file}\n"),
            );
        }
        Dep::NodeFile => unreachable!("a Python app has no npm dependency"),
    }
    App {
        id: id.to_owned(),
        dir: dir.to_owned(),
        lang: "py",
        shouts: !matches!(dep, Dep::None),
    }
}

/// A Node app in `dir` deployed as `id`: `index.js`, `package.json`, `metacall.json`, `.env`,
/// and with a dependency a package of its own under `vendor/`.
fn node_app(dir: &Path, id: &str, dep: Dep) -> App {
    let module = format!("mcdep-{id}");
    let (require, expr, deps) = match dep {
        Dep::None => (String::new(), "name", String::new()),
        Dep::NodeFile => {
            write(
                &dir.join("vendor").join(&module).join("package.json"),
                format!(r#"{{"name": "{module}", "version": "1.0.0", "main": "index.js"}}"#),
            );
            write(
                &dir.join("vendor").join(&module).join("index.js"),
                "module.exports = { shout: (s) => s.toUpperCase() + '!' };\n",
            );
            (
                format!("const {{ shout }} = require('{module}');\n"),
                "shout(name)",
                format!(r#", "dependencies": {{"{module}": "file:./vendor/{module}"}}"#),
            )
        }
        _ => unreachable!("a Node app has no pip dependency"),
    };
    write(
        &dir.join("index.js"),
        format!(
            "{require}const APP = {id:?};\nfunction greet(name) {{ return APP + ': ' + {expr}; }}\nfunction setting(key) {{ return process.env[key] ?? null; }}\nmodule.exports = {{ greet, setting }};\n"
        ),
    );
    write(
        &dir.join("package.json"),
        format!(r#"{{"name": "{id}", "version": "1.0.0", "main": "index.js"{deps}}}"#),
    );
    write(
        &dir.join("metacall.json"),
        r#"{ "language_id": "node", "path": ".", "scripts": ["index.js"] }"#,
    );
    write(
        &dir.join(".env"),
        format!("# settings\nMC_WHERE=\"{}\"\n", where_value(id)),
    );
    App {
        id: id.to_owned(),
        dir: dir.to_owned(),
        lang: "node",
        shouts: !matches!(dep, Dep::None),
    }
}

/// Deploys `app` as a package with the client (`--workdir`; it sends the `.env`).
async fn deploy_package(client: &Client, app: &App) -> Run {
    let dir = app.dir.to_str().unwrap();
    client
        .run(&["--workdir", dir, "--projectName", &app.id], b"")
        .await
}

/// Deploys `app` as a git repository with the client (`--addrepo`; it sends no env, so only
/// the repository's own `.env` can set any).
async fn deploy_repository(client: &Client, app: &App) -> Run {
    let url = git_commit_all(&app.dir);
    client.run(&["--addrepo", &url], b"\n").await
}

fn assert_deployed(s: &MorelServer, what: &str, run: &Run) {
    assert!(
        run.code == Some(0) && run.stdout.contains("Repository deployed"),
        "the client did not deploy {what}:\n{run}\nserver log:\n{}",
        s.log()
    );
}

/// `greet` and `setting` of `app` answer what its code, dependency and `.env` say.
async fn assert_answers(s: &MorelServer, app: &App, when: &str) {
    assert_eq!(
        call(s, &app.call_path("greet"), r#"["Ada"]"#).await,
        (200, json!(app.greeting("Ada"))),
        "{} {when}",
        app.id
    );
    assert_eq!(
        call(s, &app.call_path("setting"), r#"{"key": "MC_WHERE"}"#).await,
        (200, json!(where_value(&app.id))),
        "{}'s .env {when}",
        app.id
    );
}

/// Inspect (the API's and the client's `--inspect Raw`) lists exactly `apps`, ready at v1,
/// each with its two functions in its language.
async fn assert_inspect(s: &MorelServer, client: &Client, apps: &[App]) {
    let mut want: Vec<(String, String, String)> = apps
        .iter()
        .map(|a| (a.id.clone(), "ready".into(), "v1".into()))
        .collect();
    want.sort();
    let list = inspect(s).await;
    let mut got = summary(&list);
    got.sort();
    assert_eq!(got, want);
    for app in apps {
        let entry = list
            .iter()
            .find(|d| d["suffix"] == app.id.as_str())
            .unwrap();
        assert_eq!(func_names(entry, app.lang), ["greet", "setting"], "{entry}");
    }
    let run = client.run_ok(s, &["--inspect", "Raw"], b"").await;
    let start = run
        .stdout
        .find('[')
        .unwrap_or_else(|| panic!("no JSON array in:\n{run}"));
    let printed: Vec<Value> =
        serde_json::from_str(run.stdout[start..].trim()).unwrap_or_else(|e| panic!("{e}:\n{run}"));
    let mut got = summary(&printed);
    got.sort();
    assert_eq!(got, want, "{run}");
}

/// After the deploys: calls, inspect, a restart of Morel (killed, started again on the same
/// state), calls and inspect again, concurrent calls, then every app deleted with the client
/// (answering 404 from then on while the others still answer).
async fn calls_inspect_restart_concurrency_delete(s: MorelServer, apps: &[App]) {
    for app in apps {
        assert_answers(&s, app, "after its deploy").await;
    }
    let client = Client::new(&s, &s.token);
    assert_inspect(&s, &client, apps).await;

    // Restart: killed as a crash would, then started again on the same directories.
    let dirs = s.dirs.clone();
    let mut s = s;
    s.kill9();
    drop(s);
    let s = MorelServer::start_with(&bin(), dirs);
    morel_test_support::wait_for(RESTORE_LIMIT, "readiness after the restart", || async {
        (s.get("/api/readiness").await.0 == 200).then_some(())
    })
    .await;
    for app in apps {
        assert_answers(&s, app, "after the restart").await;
    }
    let client = Client::new(&s, &s.token);
    assert_inspect(&s, &client, apps).await;

    // Concurrent calls, spread over the apps, each answer checked.
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..CONCURRENT_CALLS {
        let app = &apps[i % apps.len()];
        let name = format!("caller {i}");
        let want = app.greeting(&name);
        let req = s
            .http()
            .post(format!("{}{}", s.url, app.call_path("greet")))
            .body(json!([name]).to_string());
        calls.spawn(async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.text().await.unwrap(), want)
        });
    }
    while let Some(done) = calls.join_next().await {
        let (status, body, want) = done.unwrap();
        assert_eq!(
            (status, serde_json::from_str::<Value>(&body).ok()),
            (200, Some(json!(want))),
            "{body}"
        );
    }

    // Delete: the client deletes the first ready deployment in inspect order ("\n").
    for left in (0..apps.len()).rev() {
        let first = summary(&inspect(&s).await)[0].0.clone();
        let run = client.run_ok(&s, &["--delete"], b"\n").await;
        assert!(run.stdout.contains("Deploy Delete Succeed"), "{run}");
        let remaining = summary(&inspect(&s).await);
        assert_eq!(
            remaining.len(),
            left,
            "{first} was to be deleted: {remaining:?}"
        );
        assert!(remaining.iter().all(|d| d.0 != first), "{remaining:?}");
        let gone = apps.iter().find(|a| a.id == first).unwrap();
        for func in ["greet", "setting"] {
            let (status, body) = call(&s, &gone.call_path(func), r#"["x"]"#).await;
            assert_eq!(
                (status, &body["type"]),
                (404, &json!("NotFound")),
                "{} after its delete: {body}",
                gone.call_path(func)
            );
        }
        for (id, _, _) in &remaining {
            let app = apps.iter().find(|a| &a.id == id).unwrap();
            assert_eq!(
                call(&s, &app.call_path("greet"), r#"["still"]"#).await,
                (200, json!(app.greeting("still"))),
                "{id} after {first}'s delete"
            );
        }
    }
    assert_eq!(inspect(&s).await, Vec::<Value>::new());
}

/// Python apps with and without a (local) dependency, each with a `.env`, deployed as
/// packages and as repositories with the published client; then the whole lifecycle.
#[tokio::test(flavor = "multi_thread")]
async fn python_packages_and_repositories_with_dependencies_and_env_through_a_restart() {
    let s = MorelServer::start(&bin());
    let client = Client::new(&s, &s.token);
    let work = tempfile::tempdir().unwrap();
    let root = work.path();

    let pkg = python_app(&root.join("py-pkg"), "py-pkg", Dep::None);
    let pkg_deps = python_app(
        &root.join("py-pkg-deps"),
        "py-pkg-deps",
        Dep::WheelFindLinks,
    );
    let repo = python_app(&root.join("McPy/Plain"), "mcpy-plain", Dep::None);
    let repo_deps = python_app(
        &root.join("McPy/WithDeps"),
        "mcpy-withdeps",
        Dep::WheelFindLinks,
    );

    // Two deploys at a time: the packages, then the repositories (the client follows each
    // repository's logs for 10 s).
    let (a, b) = tokio::join!(
        deploy_package(&client, &pkg),
        deploy_package(&client, &pkg_deps),
    );
    assert_deployed(&s, "the Python package", &a);
    assert_deployed(&s, "the Python package with a dependency", &b);
    let (a, b) = tokio::join!(
        deploy_repository(&client, &repo),
        deploy_repository(&client, &repo_deps),
    );
    assert_deployed(&s, "the Python repository", &a);
    assert_deployed(&s, "the Python repository with a dependency", &b);

    calls_inspect_restart_concurrency_delete(s, &[pkg, pkg_deps, repo, repo_deps]).await;
}

/// Node apps without dependencies, each with a `.env`, deployed as a package and as a
/// repository with the published client; then the whole lifecycle.
#[tokio::test(flavor = "multi_thread")]
async fn node_package_and_repository_with_env_through_a_restart() {
    let s = MorelServer::start(&bin());
    let client = Client::new(&s, &s.token);
    let work = tempfile::tempdir().unwrap();
    let root = work.path();

    let pkg = node_app(&root.join("node-pkg"), "node-pkg", Dep::None);
    let repo = node_app(&root.join("McNode/Plain"), "mcnode-plain", Dep::None);

    let (a, b) = tokio::join!(
        deploy_package(&client, &pkg),
        deploy_repository(&client, &repo),
    );
    assert_deployed(&s, "the Node package", &a);
    assert_deployed(&s, "the Node repository", &b);

    calls_inspect_restart_concurrency_delete(s, &[pkg, repo]).await;
}

/// Node apps with a `file:` dependency inside their own tree, as a package and as a
/// repository: MetaCall runs `npm i` in the app's directory, where `./vendor/…` exists.
#[tokio::test(flavor = "multi_thread")]
async fn node_file_dependencies_in_packages_and_repositories() {
    let s = MorelServer::start(&bin());
    let client = Client::new(&s, &s.token);
    let work = tempfile::tempdir().unwrap();
    let root = work.path();

    let pkg = node_app(&root.join("node-pkg-deps"), "node-pkg-deps", Dep::NodeFile);
    let repo = node_app(
        &root.join("McNode/WithDeps"),
        "mcnode-withdeps",
        Dep::NodeFile,
    );

    let (a, b) = tokio::join!(
        deploy_package(&client, &pkg),
        deploy_repository(&client, &repo),
    );
    assert_deployed(&s, "the Node package with a file: dependency", &a);
    assert_answers(&s, &pkg, "after its deploy").await;
    assert_deployed(&s, "the Node repository with a file: dependency", &b);
    assert_answers(&s, &repo, "after its deploy").await;
}

/// A requirements line naming a wheel by its path relative to the app, as MetaCall resolves
/// it (its `pip3 install -r requirements.txt` runs in the app's directory).
#[tokio::test(flavor = "multi_thread")]
async fn python_requirement_paths_are_relative_to_the_app() {
    let s = MorelServer::start(&bin());
    let client = Client::new(&s, &s.token);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("py-pkg-path");
    let app = python_app(&dir, "py-pkg-path", Dep::WheelPath);

    let run = deploy_package(&client, &app).await;
    assert_deployed(
        &s,
        "the Python package with a wheel named by its path",
        &run,
    );
    assert_answers(&s, &app, "after its deploy").await;
}
