//! `build_manifest` on real project directories, with the real discovery scripts.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use morel_core::Runtime;
use morel_manifest::{BuildOptions, DependencyKind, ManifestError, build_manifest};

fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }
    dir
}

fn build(dir: &Path, name: &str) -> Result<morel_manifest::Manifest, ManifestError> {
    build_manifest(
        dir,
        &BuildOptions {
            name: Some(name.into()),
            ..BuildOptions::default()
        },
    )
}

#[test]
fn python_functions_with_params_and_async() {
    let p = project(&[
        (
            "app.py",
            "import asyncio\n\ndef greet(name, punct='!'):\n    return name\n\nasync def later(x):\n    return x\n\ndef _hidden():\n    pass\n",
        ),
        ("requirements.txt", "six==1.16.0\n"),
    ]);
    let m = build(p.path(), "app").unwrap();
    assert_eq!(m.project_name, "app");
    let res = &m.resources["default"];
    assert_eq!(res.runtime, Runtime::Python);
    let names: Vec<&str> = res.functions.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, vec!["greet", "later"]);
    assert_eq!(res.functions[0].params, vec!["name", "punct"]);
    assert!(res.functions[1].is_async);
    assert_eq!(res.functions[0].module, "app");
    assert_eq!(res.dependencies.as_ref().unwrap().kind, DependencyKind::Pip);
    assert_eq!(m.function_registry["greet"], "default");
    assert_eq!(res.config_hash, res.compute_config_hash());
    assert_eq!(res.config_hash.len(), 16);
}

#[test]
fn node_exports_and_npm_dependencies() {
    let p = project(&[
        (
            "package.json",
            r#"{"name":"x","main":"lib.js","dependencies":{"ms":"2.1.3"}}"#,
        ),
        (
            "lib.js",
            "function a(x, y) { return x + y }\nasync function b() {}\nmodule.exports = { a, b };\n",
        ),
    ]);
    let m = build(p.path(), "node-app").unwrap();
    let res = &m.resources["default"];
    assert_eq!(res.runtime, Runtime::Node);
    let a = res.functions.iter().find(|f| f.name == "a").unwrap();
    assert_eq!(a.params, vec!["x", "y"]);
    assert_eq!(a.file, "lib.js");
    assert!(
        res.functions
            .iter()
            .find(|f| f.name == "b")
            .unwrap()
            .is_async
    );
    assert_eq!(res.dependencies.as_ref().unwrap().kind, DependencyKind::Npm);
    // No dependencies → nothing to install.
    let p = project(&[
        ("index.js", "exports.f = () => 1;\n"),
        ("package.json", r#"{"name":"y"}"#),
    ]);
    assert!(
        build(p.path(), "y").unwrap().resources["default"]
            .dependencies
            .is_none()
    );
}

#[test]
fn metacall_json_object_or_list_selects_scripts() {
    let p = project(&[
        (
            "metacall.json",
            r#"{"language_id":"py","path":".","scripts":["a.py"]}"#,
        ),
        ("a.py", "def fa():\n    return 1\n"),
        ("b.py", "def fb():\n    return 2\n"),
    ]);
    let m = build(p.path(), "mc").unwrap();
    assert!(m.function_registry.contains_key("fa"));
    assert!(!m.function_registry.contains_key("fb"));

    let p = project(&[
        (
            "metacall.json",
            r#"[{"language_id":"py","path":"src","scripts":["a.py"]},{"language_id":"node","path":".","scripts":["n.js"]}]"#,
        ),
        ("src/a.py", "def fa():\n    return 1\n"),
        ("n.js", "module.exports = { fn(x) { return x } };\n"),
    ]);
    let m = build(p.path(), "mc2").unwrap();
    assert_eq!(m.resources["default"].runtime, Runtime::Python);
    assert_eq!(m.resources["default"].functions[0].file, "src/a.py");
    assert_eq!(m.resources["default"].functions[0].module, "src.a");
    assert_eq!(m.resources["node"].runtime, Runtime::Node);
    assert_eq!(m.function_registry["fn"], "node");
}

#[test]
fn errors_name_the_file_and_field() {
    let p = project(&[(
        "metacall.json",
        r#"{"language_id":"rb","path":".","scripts":["x.rb"]}"#,
    )]);
    let e = build(p.path(), "x").unwrap_err().to_string();
    assert!(
        e.contains("metacall.json") && e.contains("language_id") && e.contains("rb"),
        "{e}"
    );

    let p = project(&[(
        "metacall.json",
        r#"{"language_id":"py","path":".","scripts":["../etc.py"]}"#,
    )]);
    let e = build(p.path(), "x").unwrap_err().to_string();
    assert!(
        e.contains("scripts") && e.contains("leaves the project"),
        "{e}"
    );

    let p = project(&[("app.py", "def f(:\n")]);
    let e = build(p.path(), "x").unwrap_err().to_string();
    assert!(e.contains("app.py:1"), "{e}");

    let p = project(&[
        ("app.py", "def f():\n    pass\n"),
        ("morel.toml", "[app]\nname = \"Bad Name\"\n"),
    ]);
    let e = build_manifest(p.path(), &BuildOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("morel.toml") && e.contains("app.name"), "{e}");

    let p = project(&[
        ("app.py", "def f():\n    pass\n"),
        ("morel.toml", "[resources.default]\nunknown_key = 1\n"),
    ]);
    let e = build(p.path(), "x").unwrap_err().to_string();
    assert!(e.contains("morel.toml") && e.contains("unknown_key"), "{e}");

    let p = project(&[
        ("app.py", "def f():\n    pass\n"),
        ("morel.toml", "[resources.default]\nruntime = \"cobol\"\n"),
    ]);
    let e = build(p.path(), "x").unwrap_err().to_string();
    assert!(
        e.contains("resources.default.runtime") && e.contains("cobol"),
        "{e}"
    );

    let p = project(&[("README.md", "nothing here")]);
    assert!(matches!(
        build(p.path(), "x"),
        Err(ManifestError::Empty { .. })
    ));
}

#[test]
fn morel_toml_settings_and_name() {
    let p = project(&[
        ("app.py", "def f():\n    pass\n"),
        (
            "morel.toml",
            "[app]\nname = \"shop\"\n[resources.default]\ntimeout_s = 2.5\nconcurrency = 3\nworkers = [1, 4]\nenv = { A = \"b\" }\n",
        ),
    ]);
    let m = build_manifest(p.path(), &BuildOptions::default()).unwrap();
    assert_eq!(m.project_name, "shop");
    let r = &m.resources["default"];
    assert_eq!(
        (r.timeout_ms, r.concurrency, r.workers_min, r.workers_max),
        (2500, 3, 1, 4)
    );
    assert_eq!(r.env["A"], "b");
    // A different setting changes the config hash; the same one does not.
    let before = r.config_hash.clone();
    std::fs::write(p.path().join("morel.toml"), "[app]\nname = \"shop\"\n[resources.default]\ntimeout_s = 2.5\nconcurrency = 4\nworkers = [1, 4]\nenv = { A = \"b\" }\n").unwrap();
    assert_ne!(
        build_manifest(p.path(), &BuildOptions::default())
            .unwrap()
            .resources["default"]
            .config_hash,
        before
    );
}

#[test]
fn validation_rejects_duplicates_and_bad_routes() {
    let p = project(&[("app.py", "def f():\n    pass\n")]);
    let m = build(p.path(), "v").unwrap();
    let mut bad = m.clone();
    let mut dup = bad.resources["default"].clone();
    dup.config_hash = String::new();
    bad.resources.insert("other".into(), dup);
    let e = bad.validate().unwrap_err().to_string();
    assert!(e.contains("duplicate function name"), "{e}");

    let mut bad = m.clone();
    let f = &mut bad.resources.get_mut("default").unwrap().functions[0];
    f.http_method = Some("POST".into());
    f.http_path = Some("/x".into());
    let e = bad.validate().unwrap_err().to_string();
    assert!(e.contains("route needs a LoadBalancerSlsResource"), "{e}");

    let json = serde_json::to_vec(&m).unwrap();
    assert_eq!(morel_manifest::Manifest::from_json(&json).unwrap(), m);
    assert!(morel_manifest::Manifest::from_json(b"{\"version\":\"9\"}").is_err());
}

/// A route path's parameters are whole segments naming parameters of the function; two
/// routes of one method whose paths differ only in parameter names are duplicates.
#[test]
fn route_parameters_are_checked_at_build() {
    let app = |route: &str, params: &str| {
        format!(
            "import morel\napi = morel.Endpoint(\"api\")\n\n@api.get(\"{route}\")\ndef get_item({params}):\n    return 1\n"
        )
    };
    let p = project(&[("app.py", &app("/items/{item_id}", "item_id, q=None"))]);
    let m = build(p.path(), "r").unwrap();
    assert_eq!(m.routes["api"]["GET /items/{item_id}"], "get_item");
    assert!(!m.metacall);

    for (route, params, needle) in [
        (
            "/items/{id}",
            "item_id",
            "binds {id}, but get_item(item_id) has no parameter \"id\"",
        ),
        (
            "/items/{id}.json",
            "id",
            "a parameter must be a whole segment",
        ),
        ("/items/{1}", "id", "named like an argument"),
    ] {
        std::fs::write(p.path().join("app.py"), app(route, params)).unwrap();
        let e = build(p.path(), "r").unwrap_err().to_string();
        assert!(e.contains(needle), "{route}: {e}");
        assert!(e.contains("get_item.http_path"), "{route}: {e}");
    }
    // `**kwargs` takes any parameter.
    std::fs::write(p.path().join("app.py"), app("/items/{id}", "**kw")).unwrap();
    build(p.path(), "r").unwrap();

    std::fs::write(
        p.path().join("app.py"),
        format!(
            "{}\n@api.get(\"/items/{{name}}\")\ndef by_name(name):\n    return 2\n",
            app("/items/{item_id}", "item_id")
        ),
    )
    .unwrap();
    let e = build(p.path(), "r").unwrap_err().to_string();
    assert!(e.contains("duplicate route \"GET /items/{"), "{e}");

    let mc = project(&[
        (
            "metacall.json",
            r#"{"language_id":"py","path":".","scripts":["a.py"]}"#,
        ),
        ("a.py", "def fa(x):\n    return x\n"),
    ]);
    assert!(build(mc.path(), "mc").unwrap().metacall);
}

/// Node projects get seed 002's resource fields from morel.toml: which functions run where,
/// workers, concurrency, idle timeout and routes. Nothing runs the code to find them.
#[test]
fn node_resources_and_routes_from_morel_toml() {
    let toml = r#"
[app]
name = "store"
[resources.api]
functions = ["checkout", "status"]
workers = [1, 2]
concurrency = 16
routes = { "POST /checkout" = "checkout", "get /status" = "status" }
[resources.jobs]
functions = ["resize"]
workers = [0, 3]
idle_timeout_s = 60
timeout_s = 5
"#;
    let p = project(&[
        ("package.json", r#"{"name":"store","main":"index.js"}"#),
        (
            "index.js",
            "function checkout(items) {}\nfunction status() {}\nfunction resize(w, h) {}\nfunction other() {}\nmodule.exports = { checkout, status, resize, other };\n",
        ),
        ("morel.toml", toml),
    ]);
    let m = build_manifest(
        p.path(),
        &BuildOptions {
            name: None,
            python: "python3".into(),
            node: "node".into(),
        },
    )
    .unwrap();
    assert_eq!(m.project_name, "store");
    let api = &m.resources["api"];
    assert_eq!(api.runtime, Runtime::Node);
    assert_eq!(
        (api.workers_min, api.workers_max, api.concurrency),
        (1, 2, 16)
    );
    assert_eq!(
        api.resource_type,
        morel_manifest::ResourceType::LoadBalancerSlsResource
    );
    let jobs = &m.resources["jobs"];
    assert_eq!((jobs.workers_min, jobs.workers_max), (0, 3));
    assert_eq!((jobs.idle_timeout_s, jobs.timeout_ms), (60, 5000));
    assert_eq!(
        jobs.resource_type,
        morel_manifest::ResourceType::ServerlessResource
    );
    assert_eq!(m.function_registry["resize"], "jobs");
    assert_eq!(m.function_registry["other"], "default");
    assert_eq!(m.routes["api"]["POST /checkout"], "checkout");
    assert_eq!(m.routes["api"]["GET /status"], "status");
    assert!(!m.routes.contains_key("jobs"));

    // Routes name the field on error: unknown function, bad method, bad path, duplicates,
    // a route to a function of another resource.
    for (routes, needle) in [
        (
            r#"{ "POST /x" = "nope" }"#,
            "function \"nope\" is not on resource \"api\"",
        ),
        (r#"{ "FETCH /x" = "checkout" }"#, "unknown method \"FETCH\""),
        (r#"{ "POST x" = "checkout" }"#, "must start with '/'"),
        (r#"{ "POST" = "checkout" }"#, "expected \"METHOD /path\""),
        (
            r#"{ "POST /x" = "resize" }"#,
            "function \"resize\" is not on resource \"api\"",
        ),
        (
            r#"{ "POST /x" = "checkout", "post /x" = "status" }"#,
            "duplicate route \"POST /x\"",
        ),
    ] {
        let bad = toml.replace(
            r#"routes = { "POST /checkout" = "checkout", "get /status" = "status" }"#,
            &format!("routes = {routes}"),
        );
        std::fs::write(p.path().join("morel.toml"), bad).unwrap();
        let err = build(p.path(), "store").unwrap_err().to_string();
        assert!(err.contains(needle), "{routes}: {err}");
        if !needle.starts_with("duplicate") {
            assert!(err.contains("resources.api.routes"), "{routes}: {err}");
        }
    }
}

#[test]
fn http_heartbeat_ttl_defaults_is_configurable_and_validated() {
    let toml = |extra: &str| {
        format!(
            "[app]\nname = \"web\"\n[resources.web]\nruntime = \"http\"\ncommand = [\"./server\"]\n{extra}"
        )
    };
    let p = project(&[("server", "#!/bin/sh\n"), ("morel.toml", &toml(""))]);
    let m = build_manifest(p.path(), &BuildOptions::default()).unwrap();
    let http = m.resources["web"].http.clone().unwrap();
    assert_eq!(
        http.heartbeat_ttl_s,
        morel_manifest::DEFAULT_HEARTBEAT_TTL_S
    );

    std::fs::write(p.path().join("morel.toml"), toml("heartbeat_ttl_s = 7\n")).unwrap();
    let m = build_manifest(p.path(), &BuildOptions::default()).unwrap();
    assert_eq!(m.resources["web"].http.as_ref().unwrap().heartbeat_ttl_s, 7);

    std::fs::write(p.path().join("morel.toml"), toml("heartbeat_ttl_s = 1\n")).unwrap();
    let e = build_manifest(p.path(), &BuildOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("morel.toml") && e.contains("heartbeat_ttl_s") && e.contains("at least 2"),
        "{e}"
    );
}
