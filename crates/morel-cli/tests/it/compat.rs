//! Seed 000's API over real HTTP against the real `morel up`: package upload (multipart zip),
//! repository clone (a real local git repository), deploy create/delete, inspect, the call
//! path with seed 000's argument rules, and every bad input the compatibility layer must
//! refuse (auth, zip-slip, symlinks, git option injection).
//!
//! Zips are built in the test with Python's `zipfile` (fixed timestamps, so deterministic);
//! it can write entries (`../x`, symlinks) that no well-behaved archiver would.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use morel_test_support::MorelServer;
use reqwest::Method;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use crate::bin;

// ---- fixtures ---------------------------------------------------------------------------

const PY_APP: &str = r#"import asyncio
import os


def greet(name):
    return "hi " + name


def sub(a, b):
    return a - b


async def double_later(x):
    await asyncio.sleep(0)
    return x * 2


def env(name):
    return os.environ.get(name)


def fail(message):
    raise ValueError(message)
"#;

/// Not listed in metacall.json, so it must not be deployed.
const PY_EXTRA: &str = "def hidden():\n    return 'should not be callable'\n";

const PY_METACALL: &str = r#"{"language_id": "py", "path": ".", "scripts": ["app.py"]}"#;

const NODE_APP: &str = r#"function hello(name) { return 'hello ' + name; }
function concat(a, b) { return a + b; }
async function later(x) { return x * 3; }
function fail(message) { throw new TypeError(message); }
module.exports = { hello, concat, later, fail };
"#;

const NODE_PACKAGE: &str = r#"{"name": "nodeapp", "version": "1.0.0", "main": "index.js"}"#;

const NODE_METACALL: &str = r#"{"language_id": "node", "path": ".", "scripts": ["index.js"]}"#;

enum Entry<'a> {
    File(&'a str, &'a str),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
}

fn py_project() -> Vec<Entry<'static>> {
    vec![
        Entry::File("app.py", PY_APP),
        Entry::File("extra.py", PY_EXTRA),
        Entry::File("metacall.json", PY_METACALL),
    ]
}

fn node_project() -> Vec<Entry<'static>> {
    vec![
        Entry::File("index.js", NODE_APP),
        Entry::File("package.json", NODE_PACKAGE),
        Entry::File("metacall.json", NODE_METACALL),
    ]
}

/// Builds a zip in memory with Python's `zipfile`, entries in the given order, Unix modes.
fn zip(entries: &[Entry]) -> Vec<u8> {
    const SCRIPT: &str = r#"
import io, json, stat, sys, zipfile
buf = io.BytesIO()
with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
    for kind, name, data in json.load(sys.stdin):
        info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
        info.create_system = 3
        if kind == "dir":
            info.external_attr = ((stat.S_IFDIR | 0o755) << 16) | 0x10
        elif kind == "symlink":
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
        else:
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
        z.writestr(info, data)
sys.stdout.buffer.write(buf.getvalue())
"#;
    let spec: Vec<Value> = entries
        .iter()
        .map(|e| match e {
            Entry::File(n, d) => json!(["file", n, d]),
            Entry::Dir(n) => json!(["dir", n, ""]),
            Entry::Symlink(n, t) => json!(["symlink", n, t]),
        })
        .collect();
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is needed to build test zips");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(Value::Array(spec).to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "building a zip failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

// ---- HTTP helpers -----------------------------------------------------------------------

async fn answer(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The multipart form exactly as `@metacall/deploy` sends it (field order, names, the
/// `blob` file name), minus any field the caller leaves out.
fn client_form(id: Option<&str>, zip: Option<Vec<u8>>) -> Form {
    let mut form = Form::new();
    if let Some(id) = id {
        form = form.text("id", id.to_owned());
    }
    form = form
        .text("type", "application/x-zip-compressed")
        .text("jsons", "[]")
        .text("runners", "[]");
    if let Some(zip) = zip {
        let part = Part::bytes(zip)
            .file_name("blob")
            .mime_str("application/x-zip-compressed")
            .unwrap();
        form = form.part("raw", part);
    }
    form
}

/// `POST /api/package/create`, authenticated the way the client does it (`jwt <token>`).
async fn package_create(s: &MorelServer, id: Option<&str>, zip: Option<Vec<u8>>) -> (u16, Value) {
    let resp = s
        .http()
        .post(format!("{}/api/package/create", s.url))
        .header("Authorization", format!("jwt {}", s.token))
        .multipart(client_form(id, zip))
        .send()
        .await
        .unwrap();
    answer(resp).await
}

/// `POST /api/deploy/create` with the client's body.
async fn deploy_create(s: &MorelServer, suffix: &str, env: Value) -> (u16, Value) {
    let body = json!({"resourceType": "Package", "suffix": suffix, "release": "18c0ffee", "env": env, "plan": "Essential", "version": "v1"});
    s.api(Method::POST, "/api/deploy/create", Some(body)).await
}

/// Uploads and deploys, asserting both steps succeed; returns the deploy answer.
async fn upload_and_deploy(s: &MorelServer, id: &str, entries: &[Entry<'_>]) -> Value {
    let (status, body) = package_create(s, Some(id), Some(zip(entries))).await;
    assert_eq!(
        status,
        201,
        "package/create {id}: {body}\nserver log:\n{}",
        s.log()
    );
    assert_eq!(body["id"], id, "{body}");
    let (status, body) = deploy_create(s, id, json!([])).await;
    assert_eq!(
        status,
        200,
        "deploy/create {id}: {body}\nserver log:\n{}",
        s.log()
    );
    body
}

async fn deploy_delete(s: &MorelServer, suffix: &str, version: &str) -> (u16, Value) {
    s.api(
        Method::POST,
        "/api/deploy/delete",
        Some(json!({"prefix": "default", "suffix": suffix, "version": version})),
    )
    .await
}

/// An unauthenticated POST of `body` to `path` (the call path needs no token).
async fn post(s: &MorelServer, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
    answer(
        s.http()
            .post(format!("{}{path}", s.url))
            .body(body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn inspect(s: &MorelServer) -> Vec<Value> {
    let (status, body) = s.get("/api/inspect").await;
    assert_eq!(status, 200, "{body}");
    body.as_array()
        .unwrap_or_else(|| panic!("inspect is not an array: {body}"))
        .clone()
}

fn deployment<'a>(list: &'a [Value], suffix: &str) -> Option<&'a Value> {
    list.iter().find(|d| d["suffix"] == suffix)
}

/// `name -> (async, argument names)` for every function of `lang` in an inspect entry.
fn functions(entry: &Value, lang: &str) -> BTreeMap<String, (bool, Vec<String>)> {
    let files = entry["packages"][lang]
        .as_array()
        .unwrap_or_else(|| panic!("no {lang} packages in {entry}"));
    let mut out = BTreeMap::new();
    for file in files {
        for f in file["scope"]["funcs"].as_array().unwrap() {
            let args = f["signature"]["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["name"].as_str().unwrap().to_owned())
                .collect();
            out.insert(
                f["name"].as_str().unwrap().to_owned(),
                (f["async"].as_bool().unwrap(), args),
            );
        }
    }
    out
}

fn sig(is_async: bool, args: &[&str]) -> (bool, Vec<String>) {
    (is_async, args.iter().map(|a| (*a).to_owned()).collect())
}

fn assert_error(got: &(u16, Value), status: u16, kind: &str, mentions: &[&str]) {
    let (s, body) = got;
    assert_eq!(*s, status, "{body}");
    assert_eq!(body["type"], kind, "{body}");
    let msg = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message in {body}"));
    for m in mentions {
        assert!(msg.contains(m), "error {msg:?} does not mention {m:?}");
    }
}

// ---- package API ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn package_deploy_call_inspect_delete_python_and_node() {
    let s = MorelServer::start(&bin());

    let (status, body) = package_create(&s, Some("pyapp"), Some(zip(&py_project()))).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["id"], "pyapp");
    assert_eq!(
        body["functions"],
        json!(["double_later", "env", "fail", "greet", "sub"]),
        "only metacall.json's scripts are deployed"
    );
    let digest = body["digest"].as_str().unwrap();
    assert!(
        digest.len() == 64 && digest.chars().all(|c| c.is_ascii_hexdigit()),
        "{body}"
    );
    let (status, body) = deploy_create(&s, "pyapp", json!([])).await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({"prefix": "default", "suffix": "pyapp", "version": "v1"})
        )
    );

    let (status, body) = package_create(&s, Some("nodeapp"), Some(zip(&node_project()))).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body["functions"],
        json!(["concat", "fail", "hello", "later"])
    );
    let (status, body) = deploy_create(&s, "nodeapp", json!([])).await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({"prefix": "default", "suffix": "nodeapp", "version": "v1"})
        )
    );

    // Python: named object, object with other keys (positional, in the order sent), array,
    // a single non-array value, /await/ for an async function.
    let py = "/default/pyapp/v1";
    assert_eq!(
        post(&s, &format!("{py}/call/sub"), r#"{"b": 1, "a": 5}"#).await,
        (200, json!(4))
    );
    assert_eq!(
        post(&s, &format!("{py}/call/sub"), r#"{"y": 1, "x": 5}"#).await,
        (200, json!(-4))
    );
    assert_eq!(
        post(&s, &format!("{py}/call/sub"), "[10, 3]").await,
        (200, json!(7))
    );
    assert_eq!(
        post(&s, &format!("{py}/call/greet"), r#""Ada""#).await,
        (200, json!("hi Ada"))
    );
    assert_eq!(
        post(&s, &format!("{py}/await/double_later"), r#"{"x": 21}"#).await,
        (200, json!(42))
    );
    assert_eq!(
        post(&s, &format!("{py}/call/double_later"), "[5]").await,
        (200, json!(10))
    );
    assert_eq!(
        post(&s, &format!("{py}/await/greet"), "[\"Bob\"]").await,
        (200, json!("hi Bob"))
    );
    assert_error(
        &post(&s, &format!("{py}/call/hidden"), "[]").await,
        404,
        "NotFound",
        &["hidden"],
    );

    let node = "/default/nodeapp/v1";
    assert_eq!(
        post(
            &s,
            &format!("{node}/call/concat"),
            r#"{"b": "B", "a": "A"}"#
        )
        .await,
        (200, json!("AB"))
    );
    assert_eq!(
        post(
            &s,
            &format!("{node}/call/concat"),
            r#"{"y": "Y", "x": "X"}"#
        )
        .await,
        (200, json!("YX"))
    );
    assert_eq!(
        post(&s, &format!("{node}/call/concat"), r#"["A", "B"]"#).await,
        (200, json!("AB"))
    );
    assert_eq!(
        post(&s, &format!("{node}/call/hello"), r#"{"name": "Ada"}"#).await,
        (200, json!("hello Ada"))
    );
    assert_eq!(
        post(&s, &format!("{node}/await/later"), "[4]").await,
        (200, json!(12))
    );

    // Inspect: both ready, with functions, async flags and argument names.
    let list = inspect(&s).await;
    assert_eq!(list.len(), 2, "{list:?}");
    let py_entry = deployment(&list, "pyapp").expect("pyapp in inspect");
    assert_eq!(py_entry["status"], "ready");
    assert_eq!(py_entry["prefix"], "default");
    assert_eq!(py_entry["version"], "v1");
    assert_eq!(py_entry["ports"], json!([]));
    assert_eq!(
        py_entry["packages"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["py"]
    );
    assert_eq!(py_entry["packages"]["py"][0]["name"], "app.py");
    let want: BTreeMap<String, (bool, Vec<String>)> = [
        ("double_later", sig(true, &["x"])),
        ("env", sig(false, &["name"])),
        ("fail", sig(false, &["message"])),
        ("greet", sig(false, &["name"])),
        ("sub", sig(false, &["a", "b"])),
    ]
    .into_iter()
    .map(|(n, s)| (n.to_owned(), s))
    .collect();
    assert_eq!(functions(py_entry, "py"), want);
    let node_entry = deployment(&list, "nodeapp").expect("nodeapp in inspect");
    assert_eq!(node_entry["status"], "ready");
    assert_eq!(node_entry["version"], "v1");
    assert_eq!(
        node_entry["packages"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["node"]
    );
    let want: BTreeMap<String, (bool, Vec<String>)> = [
        ("concat", sig(false, &["a", "b"])),
        ("fail", sig(false, &["message"])),
        ("hello", sig(false, &["name"])),
        ("later", sig(true, &["x"])),
    ]
    .into_iter()
    .map(|(n, s)| (n.to_owned(), s))
    .collect();
    assert_eq!(functions(node_entry, "node"), want);

    // Delete the Python app: gone from the call path and from inspect; Node is untouched.
    assert_eq!(
        deploy_delete(&s, "pyapp", "v1").await,
        (200, json!("Deploy Delete Succeed"))
    );
    assert_error(
        &post(&s, &format!("{py}/call/greet"), "[\"x\"]").await,
        404,
        "NotFound",
        &["pyapp"],
    );
    let list = inspect(&s).await;
    assert!(deployment(&list, "pyapp").is_none(), "{list:?}");
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(
        post(&s, &format!("{node}/call/hello"), r#"["still here"]"#).await,
        (200, json!("hello still here"))
    );
    // Deleting again, or something that never existed, or under another prefix: 404 JSON.
    let (status, body) = s
        .api(
            Method::POST,
            "/api/deploy/delete",
            Some(json!({"prefix": "someone-else", "suffix": "nodeapp", "version": "v1"})),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["type"], "NotFound", "{body}");
    assert_error(
        &deploy_delete(&s, "pyapp", "v1").await,
        404,
        "NotFound",
        &["pyapp"],
    );
    assert_error(
        &deploy_delete(&s, "never-deployed", "v1").await,
        404,
        "NotFound",
        &["never-deployed"],
    );

    assert_eq!(
        deploy_delete(&s, "nodeapp", "v1").await,
        (200, json!("Deploy Delete Succeed"))
    );
    assert_error(
        &post(&s, &format!("{node}/call/hello"), "[\"x\"]").await,
        404,
        "NotFound",
        &["nodeapp"],
    );
    assert_eq!(inspect(&s).await, Vec::<Value>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn zip_with_a_top_level_folder_is_unwrapped() {
    let s = MorelServer::start(&bin());
    // What `zip -r wrapped.zip wrapped/` produces: a directory entry, then everything under it.
    let entries = [
        Entry::Dir("wrapped/"),
        Entry::File("wrapped/app.py", PY_APP),
        Entry::Dir("wrapped/lib/"),
        Entry::File("wrapped/lib/notes.txt", "not code\n"),
        Entry::File("wrapped/metacall.json", PY_METACALL),
    ];
    let body = upload_and_deploy(&s, "wrapped", &entries).await;
    assert_eq!(
        body,
        json!({"prefix": "default", "suffix": "wrapped", "version": "v1"})
    );
    assert_eq!(
        post(
            &s,
            "/default/wrapped/v1/call/greet",
            r#"{"name": "zip -r"}"#
        )
        .await,
        (200, json!("hi zip -r"))
    );
    let list = inspect(&s).await;
    let entry = deployment(&list, "wrapped").unwrap();
    assert_eq!(
        entry["packages"]["py"][0]["name"], "app.py",
        "the wrapping folder is stripped: {entry}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deploying_the_same_suffix_again_makes_v2() {
    let s = MorelServer::start(&bin());
    upload_and_deploy(&s, "again", &py_project()).await;
    assert_eq!(
        post(&s, "/default/again/v1/call/greet", r#"["one"]"#).await,
        (200, json!("hi one"))
    );

    let v2 = PY_APP.replace(r#""hi " + name"#, r#""hello again " + name"#);
    let entries = [
        Entry::File("app.py", &v2),
        Entry::File("metacall.json", PY_METACALL),
    ];
    let body = upload_and_deploy(&s, "again", &entries).await;
    assert_eq!(
        body,
        json!({"prefix": "default", "suffix": "again", "version": "v2"})
    );
    assert_eq!(
        post(&s, "/default/again/v2/call/greet", r#"["two"]"#).await,
        (200, json!("hello again two"))
    );
    assert_eq!(
        post(&s, "/default/again/latest/call/greet", r#"["two"]"#).await,
        (200, json!("hello again two"))
    );
    let list = inspect(&s).await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["version"], "v2");
    assert_eq!(list[0]["status"], "ready");

    // deploy/create with no new upload redeploys the current code as the next version.
    let (status, body) = deploy_create(&s, "again", json!([])).await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({"prefix": "default", "suffix": "again", "version": "v3"})
        )
    );
    assert_eq!(
        post(&s, "/default/again/v3/call/greet", r#"["three"]"#).await,
        (200, json!("hello again three"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deploy_env_reaches_the_worker() {
    let s = MorelServer::start(&bin());
    let (status, body) = package_create(&s, Some("envapp"), Some(zip(&py_project()))).await;
    assert_eq!(status, 201, "{body}");
    let value = r#"bonjour = "tout le monde" $HOME; echo"#;
    let env = json!([{"name": "MOREL_COMPAT_GREETING", "value": value}, {"name": "MOREL_COMPAT_EMPTY", "value": ""}]);
    let (status, body) = deploy_create(&s, "envapp", env).await;
    assert_eq!(status, 200, "{body}\n{}", s.log());
    assert_eq!(
        post(
            &s,
            "/default/envapp/v1/call/env",
            r#"["MOREL_COMPAT_GREETING"]"#
        )
        .await,
        (200, json!(value))
    );
    assert_eq!(
        post(
            &s,
            "/default/envapp/v1/call/env",
            r#"{"name": "MOREL_COMPAT_EMPTY"}"#
        )
        .await,
        (200, json!(""))
    );
    assert_eq!(
        post(
            &s,
            "/default/envapp/v1/call/env",
            r#"["MOREL_COMPAT_NEVER_SET"]"#
        )
        .await,
        (200, Value::Null)
    );

    // A name that cannot be an environment variable is refused, and nothing is deployed.
    let (status, body) = package_create(&s, Some("envbad"), Some(zip(&py_project()))).await;
    assert_eq!(status, 201, "{body}");
    assert_error(
        &deploy_create(&s, "envbad", json!([{"name": "A=B", "value": "x"}])).await,
        400,
        "BadRequest",
        &["A=B"],
    );
    assert!(deployment(&inspect(&s).await, "envbad").is_none());
}

/// An app's own `.env` (in the package's zip or committed to the repository) reaches its
/// functions, as MetaCall FaaS reads it when it starts an app again; the request's `env`
/// wins over it. A `.env` that cannot be read is refused naming its line, never its values.
#[tokio::test(flavor = "multi_thread")]
async fn a_package_or_repository_dotenv_reaches_the_worker() {
    let s = MorelServer::start(&bin());
    let call_env = |app: &'static str, name: &'static str| {
        let s = &s;
        async move {
            post(
                s,
                &format!("/default/{app}/v1/call/env"),
                json!([name]).to_string(),
            )
            .await
        }
    };
    const DOTENV: &str = "# from the file\nMOREL_COMPAT_GREETING=\"from the file # quoted\"\nexport MOREL_COMPAT_EMPTY=file\n";

    // A package: the file's variables, the request's over them.
    let mut entries = py_project();
    entries.push(Entry::File(".env", DOTENV));
    let (status, body) = package_create(&s, Some("dotenvpkg"), Some(zip(&entries))).await;
    assert_eq!(status, 201, "{body}");
    let env = json!([{"name": "MOREL_COMPAT_EMPTY", "value": "from the request"}]);
    let (status, body) = deploy_create(&s, "dotenvpkg", env).await;
    assert_eq!(status, 200, "{body}\n{}", s.log());
    assert_eq!(
        call_env("dotenvpkg", "MOREL_COMPAT_GREETING").await,
        (200, json!("from the file # quoted"))
    );
    assert_eq!(
        call_env("dotenvpkg", "MOREL_COMPAT_EMPTY").await,
        (200, json!("from the request"))
    );

    // A repository: the client sends no env for one, so its `.env` is all there is.
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("EnvOwner").join("EnvRepo");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(repo.join("app.py"), PY_APP).unwrap();
    std::fs::write(repo.join("metacall.json"), PY_METACALL).unwrap();
    std::fs::write(repo.join(".env"), DOTENV).unwrap();
    git(&repo, &["init", "--quiet", "-b", "main"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "--quiet", "-m", "with a .env"]);
    let url = format!("file://{}", repo.display());
    let (status, body) = s
        .api(
            Method::POST,
            "/api/repository/add",
            Some(json!({"url": url, "branch": "main"})),
        )
        .await;
    assert_eq!((status, body), (201, json!({"id": "envowner-envrepo"})));
    let (status, body) = deploy_create(&s, "envowner-envrepo", json!([])).await;
    assert_eq!(status, 200, "{body}\n{}", s.log());
    assert_eq!(
        call_env("envowner-envrepo", "MOREL_COMPAT_GREETING").await,
        (200, json!("from the file # quoted"))
    );
    assert_eq!(
        call_env("envowner-envrepo", "MOREL_COMPAT_EMPTY").await,
        (200, json!("file"))
    );

    // An unreadable `.env`: 400 naming the line, without its value; nothing deployed.
    let mut entries = py_project();
    entries.push(Entry::File(".env", "OK=1\nTOKEN=\"hunter2\n"));
    let (status, body) = package_create(&s, Some("dotenvbad"), Some(zip(&entries))).await;
    assert_eq!(status, 201, "{body}");
    let got = deploy_create(&s, "dotenvbad", json!([])).await;
    assert_error(&got, 400, "BadRequest", &[".env", "line 2", "TOKEN"]);
    assert!(!got.1.to_string().contains("hunter2"), "{}", got.1);
    assert!(!s.log().contains("hunter2"));
    assert!(deployment(&inspect(&s).await, "dotenvbad").is_none());
}

// ---- bad input ----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn the_api_needs_a_token_but_the_call_path_does_not() {
    let s = MorelServer::start(&bin());
    let http = s.http();
    let unauthorized = |got: (u16, Value)| assert_error(&got, 401, "Unauthorized", &["token"]);

    unauthorized(
        answer(
            http.get(format!("{}/api/inspect", s.url))
                .send()
                .await
                .unwrap(),
        )
        .await,
    );
    unauthorized(
        answer(
            http.get(format!("{}/api/inspect", s.url))
                .header("Authorization", "jwt not-the-token")
                .send()
                .await
                .unwrap(),
        )
        .await,
    );
    unauthorized(
        answer(
            http.get(format!("{}/api/inspect", s.url))
                .header("Authorization", format!("Basic {}", s.token))
                .send()
                .await
                .unwrap(),
        )
        .await,
    );
    unauthorized(
        answer(
            http.get(format!("{}/validate", s.url))
                .send()
                .await
                .unwrap(),
        )
        .await,
    );
    let upload = http
        .post(format!("{}/api/package/create", s.url))
        .multipart(client_form(Some("sneaky"), Some(zip(&py_project()))));
    unauthorized(answer(upload.send().await.unwrap()).await);
    unauthorized(
        answer(
            http.post(format!("{}/api/deploy/create", s.url))
                .json(&json!({"suffix": "sneaky"}))
                .send()
                .await
                .unwrap(),
        )
        .await,
    );
    unauthorized(
        answer(
            http.post(format!("{}/api/deploy/delete", s.url))
                .json(&json!({"suffix": "sneaky"}))
                .send()
                .await
                .unwrap(),
        )
        .await,
    );
    unauthorized(
        answer(
            http.post(format!("{}/api/repository/branchlist", s.url))
                .json(&json!({"url": "file:///tmp"}))
                .send()
                .await
                .unwrap(),
        )
        .await,
    );
    // The refused upload left nothing behind.
    assert_eq!(inspect(&s).await, Vec::<Value>::new());
    assert_error(
        &deploy_create(&s, "sneaky", json!([])).await,
        404,
        "NotFound",
        &["sneaky"],
    );

    // Both schemes work; the account and billing routes answer what the client expects.
    let jwt = |path: &str| {
        http.get(format!("{}{path}", s.url))
            .header("Authorization", format!("jwt {}", s.token))
            .send()
    };
    assert_eq!(
        answer(jwt("/validate").await.unwrap()).await,
        (200, json!(true))
    );
    assert_eq!(s.get("/validate").await, (200, json!(true)));
    let refresh = jwt("/api/account/refresh-token").await.unwrap();
    assert_eq!(refresh.status(), 200);
    assert_eq!(
        refresh.text().await.unwrap(),
        s.token,
        "refresh-token answers the raw token text"
    );
    assert_eq!(
        answer(jwt("/api/billing/list-subscriptions").await.unwrap()).await,
        (200, json!(["Essential"]))
    );
    // Readiness is public.
    assert_eq!(
        answer(
            http.get(format!("{}/api/readiness", s.url))
                .send()
                .await
                .unwrap()
        )
        .await
        .0,
        200
    );

    // The call path needs no token.
    upload_and_deploy(&s, "public", &py_project()).await;
    assert_eq!(
        post(&s, "/default/public/v1/call/greet", r#"["anyone"]"#).await,
        (200, json!("hi anyone"))
    );
    let r = http
        .get(format!("{}/default/public/v1/call/env", s.url))
        .send()
        .await
        .unwrap();
    // A GET has no arguments: env() then raises Python's TypeError (the function's error,
    // not an auth failure).
    assert_error(&answer(r).await, 500, "TypeError", &["name"]);
}

/// Every file whose name contains `needle`, anywhere under `dir`.
fn find_named(dir: &Path, needle: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for e in entries.filter_map(Result::ok) {
        let path = e.path();
        if e.file_name().to_string_lossy().contains(needle) {
            found.push(path.clone());
        }
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            found.extend(find_named(&path, needle));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn uploads_refuse_zip_slip_symlinks_and_garbage() {
    let s = MorelServer::start(&bin());
    let unique = format!(
        "evil-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );

    // Zip-slip: `../evil.py` (and deeper) are refused by name, and nothing lands outside.
    for name in [
        format!("../{unique}.py"),
        format!("../../{unique}-deep.py"),
        format!("lib/../../{unique}-mid.py"),
    ] {
        let mut entries = py_project();
        entries.push(Entry::File(&name, "print('pwned')\n"));
        let got = package_create(&s, Some("slip"), Some(zip(&entries))).await;
        assert_error(&got, 400, "BadRequest", &[&name]);
    }
    let tmp = std::env::temp_dir();
    for candidate in [
        tmp.join(format!("{unique}.py")),
        tmp.join(format!("{unique}-deep.py")),
        tmp.join(format!("{unique}-mid.py")),
        Path::new("/").join(format!("{unique}-deep.py")),
    ] {
        assert!(
            !candidate.exists(),
            "zip-slip wrote {}",
            candidate.display()
        );
    }
    let root = s.dirs.path().parent().unwrap();
    assert_eq!(
        find_named(s.dirs.path(), &unique),
        Vec::<std::path::PathBuf>::new()
    );
    assert!(
        root.read_dir()
            .unwrap()
            .filter_map(Result::ok)
            .all(|e| !e.file_name().to_string_lossy().contains(&unique))
    );

    // An absolute entry name.
    let mut entries = py_project();
    let abs = format!("/tmp/{unique}-abs.py");
    entries.push(Entry::File(&abs, "x = 1\n"));
    let (status, body) = package_create(&s, Some("absolute"), Some(zip(&entries))).await;
    assert_eq!(status, 400, "{body}");
    assert!(!Path::new(&abs).exists());

    // A symlink to a file outside the project, and one to a file inside it.
    let mut entries = py_project();
    entries.push(Entry::Symlink("passwd", "/etc/passwd"));
    assert_error(
        &package_create(&s, Some("link"), Some(zip(&entries))).await,
        400,
        "BadRequest",
        &["passwd", "symlink"],
    );
    let mut entries = py_project();
    entries.push(Entry::Symlink("alias.py", "app.py"));
    assert_error(
        &package_create(&s, Some("link"), Some(zip(&entries))).await,
        400,
        "BadRequest",
        &["alias.py", "symlink"],
    );

    // Not a zip; no zip at all; no id; an id that cannot be an app name.
    assert_error(
        &package_create(
            &s,
            Some("garbage"),
            Some(b"this is not a zip file\n".to_vec()),
        )
        .await,
        400,
        "BadRequest",
        &["zip"],
    );
    assert_error(
        &package_create(&s, Some("nozip"), None).await,
        400,
        "BadRequest",
        &["zip"],
    );
    assert_error(
        &package_create(&s, None, Some(zip(&py_project()))).await,
        400,
        "BadRequest",
        &["`id`"],
    );
    let (status, body) = package_create(&s, Some("../../etc"), Some(zip(&py_project()))).await;
    assert_eq!(status, 400, "{body}");
    // A zip with no deployable code.
    let (status, body) = package_create(
        &s,
        Some("empty"),
        Some(zip(&[Entry::File("README.md", "nothing here\n")])),
    )
    .await;
    assert_eq!(status, 400, "{body}");

    // None of it registered anything, and deploying any of those names finds nothing.
    assert_eq!(inspect(&s).await, Vec::<Value>::new());
    for id in ["slip", "absolute", "link", "garbage", "nozip", "empty"] {
        assert_error(
            &deploy_create(&s, id, json!([])).await,
            404,
            "NotFound",
            &[id],
        );
    }
    // The server still takes a good upload.
    upload_and_deploy(&s, "fine", &py_project()).await;
    assert_eq!(
        post(&s, "/default/fine/v1/call/greet", r#"["after"]"#).await,
        (200, json!("hi after"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_projects_fail_to_deploy_without_hurting_others() {
    let s = MorelServer::start(&bin());
    upload_and_deploy(&s, "steady", &py_project()).await;

    assert_error(
        &deploy_create(&s, "unknown-suffix", json!([])).await,
        404,
        "NotFound",
        &["unknown-suffix"],
    );

    // A syntax error is found when the package is built: 400 naming the file and line (the
    // wording after that is Python's own and varies by version).
    let broken = [
        Entry::File(
            "app.py",
            "import os\n\n\ndef greet(name)\n    return name\n",
        ),
        Entry::File("metacall.json", PY_METACALL),
    ];
    assert_error(
        &package_create(&s, Some("syntax"), Some(zip(&broken))).await,
        400,
        "BadRequest",
        &["app.py:4"],
    );
    let (status, body) = deploy_create(&s, "syntax", json!([])).await;
    assert_ne!(status, 200, "{body}");

    // An import that fails at load time: the deploy answers DeployFailed with Python's error.
    let failing = [
        Entry::File(
            "app.py",
            "import no_such_module_for_morel_compat\n\n\ndef f():\n    return 1\n",
        ),
        Entry::File("metacall.json", PY_METACALL),
    ];
    let (status, body) = package_create(&s, Some("importfail"), Some(zip(&failing))).await;
    assert_eq!(status, 201, "{body}");
    assert_error(
        &deploy_create(&s, "importfail", json!([])).await,
        422,
        "DeployFailed",
        &["ModuleNotFoundError", "no_such_module_for_morel_compat"],
    );
    let list = inspect(&s).await;
    assert_eq!(
        deployment(&list, "importfail").expect("the failed deployment is listed")["status"],
        "fail"
    );
    assert!(deployment(&list, "syntax").is_none(), "{list:?}");
    assert_error(
        &post(&s, "/default/importfail/v1/call/f", "[]").await,
        404,
        "NotFound",
        &["importfail"],
    );

    // A Node module that throws while loading.
    let node_broken = [
        Entry::File(
            "index.js",
            "throw new Error('cannot start: morel compat');\nmodule.exports = { f() { return 1; } };\n",
        ),
        Entry::File("metacall.json", NODE_METACALL),
    ];
    let (status, body) = package_create(&s, Some("nodefail"), Some(zip(&node_broken))).await;
    assert_eq!(
        status, 201,
        "discovery reads the exports without running the module: {body}"
    );
    assert_error(
        &deploy_create(&s, "nodefail", json!([])).await,
        422,
        "DeployFailed",
        &["cannot start: morel compat"],
    );

    // The server keeps serving the healthy app and still deploys new ones.
    assert_eq!(
        post(&s, "/default/steady/v1/call/sub", "[3, 1]").await,
        (200, json!(2))
    );
    upload_and_deploy(&s, "later", &node_project()).await;
    assert_eq!(
        post(&s, "/default/later/v1/call/hello", r#"["after failures"]"#).await,
        (200, json!("hello after failures"))
    );
    assert_eq!(
        deployment(&inspect(&s).await, "steady").unwrap()["status"],
        "ready"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn call_path_errors() {
    let s = MorelServer::start(&bin());
    upload_and_deploy(&s, "pyapp", &py_project()).await;
    upload_and_deploy(&s, "nodeapp", &node_project()).await;
    let py = "/default/pyapp/v1/call";

    assert_error(
        &post(&s, &format!("{py}/nope"), "[]").await,
        404,
        "NotFound",
        &["nope"],
    );
    assert_error(
        &post(&s, "/default/no-such-app/v1/call/greet", "[]").await,
        404,
        "NotFound",
        &["no-such-app"],
    );
    assert_error(
        &post(&s, "/default/pyapp/v9/call/greet", "[]").await,
        404,
        "NotFound",
        &["v9"],
    );
    assert_error(
        &post(&s, &format!("{py}/greet"), "{not json").await,
        400,
        "BadRequest",
        &["JSON"],
    );
    assert_error(
        &post(&s, &format!("{py}/greet"), "[\"unterminated").await,
        400,
        "BadRequest",
        &["JSON"],
    );

    // 7 MiB of otherwise valid JSON: 413. Just under the 6 MiB limit is served.
    let big = format!("[\"{}\"]", "a".repeat(7 << 20));
    assert_error(
        &post(&s, &format!("{py}/greet"), big).await,
        413,
        "PayloadTooLarge",
        &[],
    );
    let (status, body) = post(
        &s,
        &format!("{py}/greet"),
        format!("[\"{}\"]", "b".repeat(5 << 20)),
    )
    .await;
    assert_eq!(
        status,
        200,
        "a 5 MiB argument: {}",
        body.to_string().chars().take(300).collect::<String>()
    );
    assert_eq!(body.as_str().map(str::len), Some(3 + (5 << 20)));

    // A raised exception: 500 with the message and the exception's type; the worker survives.
    assert_eq!(
        crate::raised(post(&s, &format!("{py}/fail"), r#"["it broke"]"#).await),
        (500, json!({"error": "it broke", "type": "ValueError"}))
    );
    assert_eq!(
        post(&s, &format!("{py}/greet"), r#"["next"]"#).await,
        (200, json!("hi next"))
    );
    assert_eq!(
        crate::raised(post(&s, "/default/nodeapp/v1/call/fail", r#"["node broke"]"#).await),
        (500, json!({"error": "node broke", "type": "TypeError"}))
    );
    assert_eq!(
        post(&s, "/default/nodeapp/v1/call/hello", r#"["next"]"#).await,
        (200, json!("hello next"))
    );
}

// ---- repository API ---------------------------------------------------------------------

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=Morel Test",
            "-c",
            "user.email=test@morel.invalid",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .output()
        .expect("git is needed for the repository tests");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A repository at `MetaOwner/GitApp` (so deployed as `metaowner-gitapp`) with `answer()`
/// returning 42 on `main` and 43 on `feature`, which also adds `docs/notes.md`.
fn make_repo(parent: &Path) -> String {
    let repo = parent.join("MetaOwner").join("GitApp");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "--quiet", "-b", "main"]);
    std::fs::write(repo.join("lib.py"), "def answer():\n    return 42\n").unwrap();
    std::fs::write(
        repo.join("metacall.json"),
        r#"{"language_id": "py", "path": ".", "scripts": ["lib.py"]}"#,
    )
    .unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "--quiet", "-m", "answer"]);
    git(&repo, &["checkout", "--quiet", "-b", "feature"]);
    std::fs::write(repo.join("lib.py"), "def answer():\n    return 43\n").unwrap();
    std::fs::create_dir_all(repo.join("docs")).unwrap();
    std::fs::write(repo.join("docs/notes.md"), "# notes\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "--quiet", "-m", "a better answer"]);
    git(&repo, &["checkout", "--quiet", "main"]);
    format!("file://{}", repo.display())
}

#[tokio::test(flavor = "multi_thread")]
async fn repository_branchlist_filelist_add_and_deploy() {
    let s = MorelServer::start(&bin());
    let tmp = tempfile::tempdir().unwrap();
    let url = make_repo(tmp.path());

    let (status, body) = s
        .api(
            Method::POST,
            "/api/repository/branchlist",
            Some(json!({"url": url})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut branches: Vec<String> = serde_json::from_value(body["branches"].clone()).unwrap();
    branches.sort();
    assert_eq!(branches, ["feature", "main"]);

    // The files of each branch, as the client reads them to find its runners.
    for (branch, files) in [
        ("main", json!(["lib.py", "metacall.json"])),
        (
            "feature",
            json!(["docs/notes.md", "lib.py", "metacall.json"]),
        ),
    ] {
        let got = s
            .api(
                Method::POST,
                "/api/repository/filelist",
                Some(json!({"url": url, "branch": branch})),
            )
            .await;
        assert_eq!(got, (200, json!({ "files": files })), "{branch}");
    }
    assert_error(
        &s.api(
            Method::POST,
            "/api/repository/filelist",
            Some(json!({"url": url, "branch": "no-such-branch"})),
        )
        .await,
        400,
        "BadRequest",
        &["no-such-branch", "not found"],
    );

    // Named like MetaCall names it: `owner-repo`, lowercased.
    let (status, body) = s
        .api(
            Method::POST,
            "/api/repository/add",
            Some(json!({"url": url, "branch": "main", "jsons": []})),
        )
        .await;
    assert_eq!((status, body), (201, json!({"id": "metaowner-gitapp"})));
    let (status, body) = deploy_create(&s, "metaowner-gitapp", json!([])).await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({"prefix": "default", "suffix": "metaowner-gitapp", "version": "v1"})
        )
    );
    assert_eq!(
        post(&s, "/default/metaowner-gitapp/v1/call/answer", "").await,
        (200, json!(42))
    );
    let list = inspect(&s).await;
    assert_eq!(
        functions(deployment(&list, "metaowner-gitapp").unwrap(), "py")
            .keys()
            .collect::<Vec<_>>(),
        ["answer"]
    );

    // The other branch, by name: its code, as the next version.
    let (status, body) = s
        .api(
            Method::POST,
            "/api/repository/add",
            Some(json!({"url": url, "branch": "feature"})),
        )
        .await;
    assert_eq!((status, body), (201, json!({"id": "metaowner-gitapp"})));
    let (status, body) = deploy_create(&s, "metaowner-gitapp", json!([])).await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({"prefix": "default", "suffix": "metaowner-gitapp", "version": "v2"})
        )
    );
    assert_eq!(
        post(&s, "/default/metaowner-gitapp/v2/call/answer", "[]").await,
        (200, json!(43))
    );

    // A bare `NAME.git` repository: the app is named without the `.git`.
    let bare = tmp.path().join("Team").join("OtherGit.git");
    std::fs::create_dir_all(bare.parent().unwrap()).unwrap();
    git(
        tmp.path(),
        &["clone", "--quiet", "--bare", &url, bare.to_str().unwrap()],
    );
    let bare_url = format!("file://{}", bare.display());
    let (status, body) = s
        .api(
            Method::POST,
            "/api/repository/filelist",
            Some(json!({"url": bare_url, "branch": "main"})),
        )
        .await;
    assert_eq!(
        (status, body),
        (200, json!({"files": ["lib.py", "metacall.json"]}))
    );
    let (status, body) = s
        .api(
            Method::POST,
            "/api/repository/add",
            Some(json!({"url": bare_url, "branch": "main"})),
        )
        .await;
    assert_eq!((status, body), (201, json!({"id": "team-othergit"})));
    let (status, body) = deploy_create(&s, "team-othergit", json!([])).await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({"prefix": "default", "suffix": "team-othergit", "version": "v1"})
        )
    );
    assert_eq!(
        post(&s, "/default/team-othergit/v1/call/answer", "[]").await,
        (200, json!(42))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn repository_api_refuses_injection() {
    let s = MorelServer::start(&bin());
    let tmp = tempfile::tempdir().unwrap();
    let url = make_repo(tmp.path());
    let marks = tempfile::tempdir().unwrap();
    let m = marks.path().display().to_string();

    let bad_urls = [
        format!("--upload-pack=touch {m}/upload-pack"),
        format!("--upload-pack=touch${{IFS}}{m}/upload-pack-ifs"),
        format!("ext::sh -c touch% {m}/pwned"),
        format!("ext::sh%20-c%20touch%20{m}/pwned2"),
        format!("ssh://-oProxyCommand=touch%20{m}/proxy/x"),
        format!("http://127.0.0.1:9/{m}/repo.git"),
        format!("{}/MetaOwner/GitApp", tmp.path().display()),
        format!("{url}\n--upload-pack=touch {m}/newline"),
    ];
    for bad in &bad_urls {
        for route in ["branchlist", "filelist", "add"] {
            let got = s
                .api(
                    Method::POST,
                    &format!("/api/repository/{route}"),
                    Some(json!({"url": bad, "branch": "main"})),
                )
                .await;
            assert_error(&got, 400, "BadRequest", &[]);
        }
    }
    assert_error(
        &s.api(
            Method::POST,
            "/api/repository/branchlist",
            Some(json!({"url": format!("http://127.0.0.1:9/{m}")})),
        )
        .await,
        400,
        "BadRequest",
        &["https"],
    );

    for branch in [
        "--foo",
        "a;b",
        &format!("--upload-pack=touch {m}/branch"),
        "$(touch x)",
        "a..b",
        "main\n",
    ] {
        for route in ["filelist", "add"] {
            let got = s
                .api(
                    Method::POST,
                    &format!("/api/repository/{route}"),
                    Some(json!({"url": url, "branch": branch})),
                )
                .await;
            assert_error(&got, 400, "BadRequest", &[]);
        }
    }
    // A branch that does not exist: git's own message.
    assert_error(
        &s.api(
            Method::POST,
            "/api/repository/add",
            Some(json!({"url": url, "branch": "no-such-branch"})),
        )
        .await,
        400,
        "BadRequest",
        &["no-such-branch", "not found"],
    );
    // A repository that does not exist.
    let missing = format!("file://{}/missing-repo", tmp.path().display());
    for route in ["branchlist", "filelist"] {
        assert_error(
            &s.api(
                Method::POST,
                &format!("/api/repository/{route}"),
                Some(json!({"url": missing, "branch": "main"})),
            )
            .await,
            400,
            "BadRequest",
            &["missing-repo"],
        );
    }

    let created: Vec<_> = std::fs::read_dir(marks.path())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    assert_eq!(
        created,
        Vec::<std::path::PathBuf>::new(),
        "an injected command ran"
    );
    assert_eq!(
        inspect(&s).await,
        Vec::<Value>::new(),
        "nothing was registered"
    );
    assert_error(
        &deploy_create(&s, "metaowner-gitapp", json!([])).await,
        404,
        "NotFound",
        &["metaowner-gitapp"],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_request_bodies_get_json_errors() {
    let s = MorelServer::start(&bin());
    let auth = format!("jwt {}", s.token);
    let cases: [(&str, Option<&str>, &str); 7] = [
        (
            "/api/deploy/create",
            Some("application/json"),
            r#"{"suffix":"#,
        ),
        ("/api/deploy/create", Some("application/json"), "{}"),
        ("/api/deploy/create", None, r#"{"suffix": "x"}"#),
        ("/api/deploy/delete", Some("application/json"), "[1, 2]"),
        ("/api/repository/branchlist", Some("application/json"), "{"),
        (
            "/api/repository/filelist",
            Some("application/json"),
            r#"{"branch": "main"}"#,
        ),
        (
            "/api/repository/add",
            Some("application/json"),
            r#"{"branch": "main"}"#,
        ),
    ];
    for (path, content_type, body) in cases {
        let mut req = s
            .http()
            .post(format!("{}{path}", s.url))
            .header("Authorization", &auth)
            .body(body);
        if let Some(ct) = content_type {
            req = req.header("Content-Type", ct);
        }
        let (status, json) = answer(req.send().await.unwrap()).await;
        assert!(
            (400..500).contains(&status),
            "{path} {body:?}: {status} {json}"
        );
        assert!(
            json["error"].is_string() && json["type"].is_string(),
            "{path} {body:?}: {status} answered {json} instead of {{error, type}}"
        );
    }
}
