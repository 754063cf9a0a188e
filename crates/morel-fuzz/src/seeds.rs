//! The seed corpora: small valid and near-valid inputs per target, written once by
//! `morel-fuzz seeds` and checked in under `corpus/TARGET/`.
//!
//! Most seeds are spelled out here. The bundles and manifests are made by Morel itself from
//! `examples/` (`build_manifest`, `pack_dir`), and the hostile zips with the `zip` writer.

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use zip::write::SimpleFileOptions;

type Seeds = Vec<(&'static str, &'static str, Vec<u8>)>;

fn text(
    target: &'static str,
    name: &'static str,
    data: &str,
) -> (&'static str, &'static str, Vec<u8>) {
    (target, name, data.as_bytes().to_vec())
}

fn bytes(
    target: &'static str,
    name: &'static str,
    data: &[u8],
) -> (&'static str, &'static str, Vec<u8>) {
    (target, name, data.to_vec())
}

/// A frame as a worker writes it: a 4-byte big-endian length, then the JSON.
fn frame(json: &str) -> Vec<u8> {
    let mut out = (json.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(json.as_bytes());
    out
}

const METADATA: &str = r#"{"type":"MetaData","functions":[{"name":"greet","params":["name"],"is_async":false},{"name":"add","params":["a","b"],"is_async":false},{"name":"slow_echo","params":["value","delay"],"is_async":true}]}"#;
const METADATA_SIGNATURE: &str = r#"{"type":"MetaData","functions":[{"name":"get_item","params":["item_id","request","q"],"is_async":false,"signature":[{"name":"item_id","kind":"positional_or_keyword","default":false},{"name":"request","kind":"request","default":false},{"name":"q","kind":"keyword_only","default":true},{"name":"kw","kind":"var_keyword","default":false}]}]}"#;
const RESPONSE: &str = r#"{"type":"InvokeResult","id":5,"ok":true,"result":"<p>hi</p>","response":{"status":201,"headers":[["Location","/items/7"],["content-type","text/html"]],"raw":true}}"#;
const RESULT: &str =
    r#"{"type":"InvokeResult","id":1,"ok":true,"result":{"message":"Hello, Ada!"}}"#;
const RAISED: &str = r#"{"type":"InvokeResult","id":2,"ok":false,"error":{"message":"boom","type":"ValueError","traceback":"Traceback (most recent call last):\n  File \"hello.py\", line 22, in fail\nValueError: boom\n"}}"#;
const NOT_FOUND: &str = r#"{"type":"InvokeResult","id":3,"ok":false,"error":{"message":"no function nope","type":"NotFound"}}"#;
const LOAD_ERROR: &str =
    r#"{"type":"LoadError","error":"SyntaxError: invalid syntax (hello.py, line 3)"}"#;

fn spelled_out() -> Seeds {
    let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    let long_line = {
        let mut s = "a".repeat(16 * 1024 + 5);
        s.push_str("\r\nnext\n");
        s
    };
    let mut frames = frame(METADATA);
    frames.extend(frame(RESULT));
    frames.extend(frame(RAISED));
    let mut cut = frame(RESULT);
    cut.truncate(cut.len() - 3);
    let mut tail = frame(NOT_FOUND);
    tail.extend_from_slice(&[0, 0]);
    vec![
        // The fast lane: request heads as clients send them.
        text(
            "lane_head",
            "call-post",
            "POST /default/hello/latest/call/add HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n[1, 2]\n",
        ),
        text(
            "lane_head",
            "call-version-close",
            "POST /default/hello/v3/call/greet HTTP/1.1\r\nHost: localhost\r\nContent-Length: 15\r\nConnection: close\r\n\r\n{\"name\":\"Ada\"}",
        ),
        text(
            "lane_head",
            "call-preview-host",
            "POST /default/hello/staging/await/add HTTP/1.1\r\nHost: staging--hello.example.test\r\ncontent-length: 0\r\n\r\n",
        ),
        text(
            "lane_head",
            "call-wrong-version",
            "GET /default/hello/v9/call/add HTTP/1.1\r\nHost: a\r\n\r\n",
        ),
        text(
            "lane_head",
            "edge-path",
            "GET /hello/x?q=1 HTTP/1.1\r\nHost: example.test\r\nAccept: */*\r\nX-Forwarded-For: 10.1.2.3\r\nX-Forwarded-Prefix: /evil\r\n\r\n",
        ),
        text(
            "lane_head",
            "edge-host",
            "GET /api/items HTTP/1.1\r\nHost: hello.apps.test:8080\r\nConnection: keep-alive, x-hop\r\nx-hop: 1\r\nKeep-Alive: timeout=5\r\nX-Forwarded-Host: evil\r\n\r\n",
        ),
        text(
            "lane_head",
            "chunked",
            "POST /default/hello/latest/call/add HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n[1,2]\r\n0\r\n\r\n",
        ),
        text(
            "lane_head",
            "expect",
            "PUT /hello/upload HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n",
        ),
        text("lane_head", "http10", "GET /hello/ HTTP/1.0\r\n\r\n"),
        text(
            "lane_head",
            "two-lengths",
            "POST /default/hello/latest/call/add HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n[]",
        ),
        text(
            "lane_head",
            "pipelined",
            "GET /hello/a HTTP/1.1\r\nHost: a\r\n\r\nGET /hello/b HTTP/1.1\r\nHost: a\r\n\r\n",
        ),
        text("lane_head", "partial", "GET /hello/x HTTP/1.1\r\nHost: exa"),
        text(
            "lane_head",
            "upgrade",
            "GET /hello/ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        ),
        text(
            "lane_head",
            "control",
            "GET /api/apps HTTP/1.1\r\nAuthorization: Bearer x\r\n\r\n",
        ),
        text(
            "lane_head",
            "run",
            "POST /default/hello/latest/run/add HTTP/1.1\r\nContent-Length: 2\r\n\r\n[]",
        ),
        text(
            "lane_head",
            "bare-lf",
            "GET /hello/x HTTP/1.1\nHost: a\nConnection: host\n\n",
        ),
        // Answers from an instance.
        text(
            "upstream_head",
            "length",
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nDate: Thu, 01 Jan 2026 00:00:00 GMT\r\n\r\nhello",
        ),
        text(
            "upstream_head",
            "chunked",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-trailer: 1\r\n\r\nNEXT",
        ),
        text(
            "upstream_head",
            "until-close",
            "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nbody until close",
        ),
        text(
            "upstream_head",
            "no-content",
            "HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n",
        ),
        text(
            "upstream_head",
            "not-modified",
            "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
        ),
        text(
            "upstream_head",
            "http10",
            "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
        ),
        text(
            "upstream_head",
            "hop-headers",
            "HTTP/1.1 404 Not Found\r\nConnection: x-secret\r\nx-secret: 1\r\nKeep-Alive: timeout=5\r\nx-morel-edge: 9\r\nx-morel-instance: evil\r\nContent-Length: 0\r\n\r\n",
        ),
        text(
            "upstream_head",
            "continue",
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        ),
        text(
            "upstream_head",
            "coded-chunked",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
        ),
        text(
            "upstream_head",
            "express",
            "HTTP/1.1 200 OK\r\nX-Powered-By: Express\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: 13\r\nETag: W/\"d-abc\"\r\nDate: Thu, 01 Jan 2026 00:00:00 GMT\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n{\"ok\": true}\n",
        ),
        text(
            "upstream_head",
            "conflicting-lengths",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        ),
        text("upstream_head", "partial", "HTTP/1.1 200 OK\r\nContent-Le"),
        // Call bodies.
        text("call_args", "empty", ""),
        text("call_args", "array", "[1, 2]"),
        text("call_args", "named", "{\"name\": \"Ada\"}"),
        text("call_args", "positional-object", "{\"z\":1,\"a\":2}"),
        text("call_args", "number", "42"),
        text("call_args", "string", "\"hi\""),
        text("call_args", "null", "null"),
        text("call_args", "spaced-array", " [1, [2]]\n"),
        text(
            "call_args",
            "nested",
            "{\"a\": [1, {\"b\": null}], \"c\": \"\\u00e9\\n\\\"[\"}",
        ),
        text("call_args", "deep-64", &deep(64)),
        text("call_args", "deep-65", &deep(65)),
        text("call_args", "broken", "{nope"),
        text("call_args", "cut-array", "[1,"),
        text("call_args", "two-values", "[1] [2]"),
        text(
            "call_args",
            "surrogates",
            "[\"\\ud83d\\ude00\", \"\\ud800\"]",
        ),
        text("call_args", "float", "{\"x\": 1.5e10, \"y\": -0.0}"),
        // The same bytes are read as a query string too.
        text(
            "call_args",
            "query",
            "q=red+pen&tag=a&tag=b&caf%C3%A9=%E2%82%AC&flag",
        ),
        text("call_args", "bad-query", "a=%zz&=1&b=%ff"),
        // The worker's reply pipe.
        bytes("worker_frames", "load-call-raise", &frames),
        bytes("worker_frames", "cut-frame", &cut),
        bytes("worker_frames", "cut-length", &tail),
        bytes("worker_frames", "empty-frame", &[0, 0, 0, 0]),
        bytes("worker_frames", "too-long", &[0x04, 0x00, 0x00, 0x01, b'{']),
        text("worker_frame_json", "metadata", METADATA),
        text(
            "worker_frame_json",
            "metadata-signature",
            METADATA_SIGNATURE,
        ),
        text("worker_frame_json", "response", RESPONSE),
        text("worker_frame_json", "result", RESULT),
        text("worker_frame_json", "raised", RAISED),
        text("worker_frame_json", "not-found", NOT_FOUND),
        text("worker_frame_json", "load-error", LOAD_ERROR),
        text(
            "worker_frame_json",
            "raw-result",
            r#"{"type":"InvokeResult","id":18446744073709551615,"ok":true,"result":[1,"\u00e9",{"a":null}]}"#,
        ),
        text(
            "worker_frame_json",
            "odd-error",
            r#"{"type":"InvokeResult","id":4,"ok":false,"error":"just text"}"#,
        ),
        text(
            "worker_frame_json",
            "unknown",
            r#"{"type":"Pong","extra":1}"#,
        ),
        // Workload output.
        bytes(
            "log_lines",
            "mixed",
            b"ok\nbad \xff\xfe byte\r\nafter\nno newline",
        ),
        text(
            "log_lines",
            "traceback",
            "Traceback (most recent call last):\n  File \"hello.py\", line 22, in fail\n    raise ValueError(message)\nValueError: boom\n",
        ),
        text("log_lines", "blank-lines", "\n\n\r\n"),
        text("log_lines", "empty", ""),
        text("log_lines", "long-line", &long_line),
        bytes(
            "log_lines",
            "cut-utf8",
            "h\u{e9}llo \u{1f600}\n".as_bytes().split_at(9).0,
        ),
        // Project files.
        text(
            "morel_toml",
            "doc-example",
            "[app]\nname = \"web\"\n[resources.web]\nruntime = \"http\"\ncommand = [\"./server\"]\nhealth = \"/health\"\nworkers = [1, 3]\n[resources.api]\nfunctions = [\"checkout\"]\nworkers = [0, 3]\nconcurrency = 8\nidle_timeout_s = 60\nroutes = { \"POST /checkout\" = \"checkout\" }\n",
        ),
        text(
            "morel_toml",
            "app-only",
            "[app]\nname = \"shop\"\nmain_branch = \"main\"\n",
        ),
        text(
            "morel_toml",
            "env-and-limits",
            "[resources.default]\nmemory_mb = 256\ncpu = 0.5\ntimeout_s = 2.5\npublic = true\nenv = { GREETING = \"hi\", \"WITH SPACE\" = \"x\" }\n",
        ),
        text(
            "morel_toml",
            "unknown-field",
            "[app]\nname = \"x\"\nnmae = \"typo\"\n",
        ),
        text(
            "morel_toml",
            "bad-type",
            "[resources.web]\nworkers = [1, 2, 3]\n\u{e9}t\u{e9} = 1\n",
        ),
        text(
            "metacall_json",
            "list",
            r#"[{"language_id":"py","path":".","scripts":["calc.py"]},{"language_id":"node","path":"./web/","scripts":["index.js","lib/util.js"]}]"#,
        ),
        text(
            "metacall_json",
            "escape",
            r#"{"language_id":"python","path":"src/..","scripts":["../etc/passwd"]}"#,
        ),
        text(
            "metacall_json",
            "no-scripts",
            r#"{"language_id":"js","scripts":[]}"#,
        ),
        text(
            "metacall_json",
            "unsupported",
            r#"{"language_id":"rb","scripts":["x.rb"]}"#,
        ),
    ]
}

/// A zip made with the `zip` writer.
fn make_zip(entries: &[(&str, Entry)]) -> io::Result<Vec<u8>> {
    let mut w = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
    let stored = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .unix_permissions(0o644);
    let deflated = stored.compression_method(zip::CompressionMethod::Deflated);
    for (name, entry) in entries {
        match entry {
            Entry::File(data) => {
                w.start_file(*name, stored).map_err(io::Error::other)?;
                w.write_all(data)?;
            }
            Entry::Deflated(data) => {
                w.start_file(*name, deflated).map_err(io::Error::other)?;
                w.write_all(data)?;
            }
            Entry::Exec(data) => {
                w.start_file(*name, stored.unix_permissions(0o755))
                    .map_err(io::Error::other)?;
                w.write_all(data)?;
            }
            Entry::Dir => w.add_directory(*name, stored).map_err(io::Error::other)?,
            Entry::Link(target) => w
                .add_symlink(*name, *target, stored)
                .map_err(io::Error::other)?,
        }
    }
    Ok(w.finish().map_err(io::Error::other)?.into_inner())
}

enum Entry {
    File(&'static [u8]),
    Deflated(Vec<u8>),
    Exec(&'static [u8]),
    Dir,
    Link(&'static str),
}

/// Replaces every `from` in `data` with `to` (same length): how duplicate names are made,
/// which the writer refuses.
fn patch(mut data: Vec<u8>, from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut i = 0;
    while i + from.len() <= data.len() {
        if &data[i..i + from.len()] == from {
            data[i..i + from.len()].copy_from_slice(to);
        }
        i += 1;
    }
    data
}

fn zips() -> io::Result<Vec<(&'static str, Vec<u8>)>> {
    let manifest = br#"{"version":"1.0","generated_at":"2026-01-01T00:00:00Z","project_name":"z","function_registry":{"f":"default"},"resources":{"default":{"resource_type":"ServerlessResource","runtime":"python","functions":[{"name":"f","module":"m","file":"m.py","attr":"f","params":[],"is_async":false,"is_class":false}],"workers_min":0,"workers_max":1,"idle_timeout_s":60,"concurrency":1,"timeout_ms":1000,"public":true}}}"#;
    let lines: Vec<u8> = (0..2000)
        .flat_map(|i| format!("line {i} of a file that deflates well\n").into_bytes())
        .collect();
    let duplicate = make_zip(&[
        ("m.py", Entry::File(b"def f(): return 1\n")),
        ("DUP2", Entry::File(b"second")),
        ("DUP1", Entry::File(b"first")),
    ])?;
    Ok(vec![
        (
            "links",
            make_zip(&[
                ("manifest.json", Entry::File(manifest)),
                ("lib/", Entry::Dir),
                ("lib/real.txt", Entry::File(b"real\n")),
                ("lib/link", Entry::Link("real.txt")),
                ("up", Entry::Link("lib/../lib")),
                ("bin/run", Entry::Exec(b"#!/bin/sh\necho hi\n")),
            ])?,
        ),
        (
            "escaping-link",
            make_zip(&[
                ("ok.txt", Entry::File(b"ok")),
                ("evil", Entry::Link("../../etc/passwd")),
            ])?,
        ),
        (
            "chained-links",
            make_zip(&[("d/l", Entry::Link("..")), ("e", Entry::Link("d/l/.."))])?,
        ),
        (
            "parent-name",
            make_zip(&[("a/../../evil.txt", Entry::File(b"x"))])?,
        ),
        (
            "upload-top-dir",
            make_zip(&[
                ("myapp/", Entry::Dir),
                (
                    "myapp/app.py",
                    Entry::File(b"def handler(x):\n    return x\n"),
                ),
                ("myapp/sub/util.py", Entry::File(b"X = 1\n")),
                ("__MACOSX/myapp/._app.py", Entry::File(b"\0\x05\x16\x07")),
            ])?,
        ),
        ("duplicate-names", patch(duplicate, b"DUP2", b"DUP1")),
        (
            "deflated",
            make_zip(&[
                ("manifest.json", Entry::File(manifest)),
                ("data/lines.txt", Entry::Deflated(lines)),
            ])?,
        ),
        ("empty", make_zip(&[])?),
        (
            "file-under-file",
            make_zip(&[("a", Entry::File(b"1")), ("a/b", Entry::File(b"2"))])?,
        ),
    ])
}

/// Builds `examples/NAME`'s manifest with Morel's own build (discovery runs python3/node).
fn example_manifest(examples: &Path, name: &str) -> Result<morel_manifest::Manifest, String> {
    let opts = morel_manifest::BuildOptions {
        name: Some(name.to_owned()),
        ..Default::default()
    };
    morel_manifest::build_manifest(&examples.join(name), &opts).map_err(|e| e.to_string())
}

/// Writes every seed under `corpus/TARGET/NAME`; returns the files written. The examples'
/// manifests need python3 (and node for `hello-node`); one that cannot be built is skipped
/// with a note on stderr.
pub fn write_seeds(corpus: &Path, examples: &Path) -> io::Result<Vec<PathBuf>> {
    let mut all: Vec<(String, String, Vec<u8>)> = spelled_out()
        .into_iter()
        .map(|(t, n, d)| (t.to_owned(), n.to_owned(), d))
        .collect();
    for (name, zip) in zips()? {
        all.push(("bundle_extract".into(), format!("{name}.zip"), zip.clone()));
        all.push(("upload_zip".into(), format!("{name}.zip"), zip));
    }
    for example in [
        "hello-python",
        "http-service",
        "metacall-style",
        "shop",
        "hello-node",
    ] {
        let manifest = match example_manifest(examples, example) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("seeds: skipping the manifest of examples/{example}: {e}");
                continue;
            }
        };
        let json = manifest.to_json_pretty().into_bytes();
        all.push((
            "manifest_json".into(),
            format!("{example}.json"),
            json.clone(),
        ));
        if example == "hello-python" {
            let packed = morel_bundle::pack_dir(
                &examples.join(example),
                &json,
                &morel_bundle::PackLimits::default(),
            )
            .map_err(io::Error::other)?;
            all.push((
                "bundle_extract".into(),
                "hello-python.zip".into(),
                packed.bytes.clone(),
            ));
            all.push(("upload_zip".into(), "hello-python.zip".into(), packed.bytes));
        }
    }
    for (target, file, name) in [
        ("morel_toml", "http-service/morel.toml", "http-service.toml"),
        (
            "metacall_json",
            "metacall-style/metacall.json",
            "metacall-style.json",
        ),
    ] {
        all.push((target.into(), name.into(), fs::read(examples.join(file))?));
    }
    let mut written = Vec::new();
    for (target, name, data) in all {
        let dir = corpus.join(&target);
        fs::create_dir_all(&dir)?;
        let path = dir.join(name);
        fs::write(&path, data)?;
        written.push(path);
    }
    Ok(written)
}
