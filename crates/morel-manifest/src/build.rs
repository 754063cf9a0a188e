//! `morel build`: project directory → validated manifest.

use std::collections::BTreeMap;
use std::path::Path;

use morel_core::Runtime;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::ManifestError;
use crate::discover::{self, FunctionReport, Language};
use crate::model::{
    DEFAULT_HEARTBEAT_TTL_S, DependencyKind, DependencySpec, FunctionSpec, HttpSpec,
    MANIFEST_VERSION, MIN_HEARTBEAT_TTL_S, Manifest, ResourceSpec, ResourceType,
};
use crate::toml_config::{self, CONFIG_FILE, ProjectConfig, ResourceSection};

/// Inputs of a build besides the directory.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// App name; else `morel.toml`'s `[app] name`; else the directory's name.
    pub name: Option<String>,
    pub python: String,
    pub node: String,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            name: None,
            python: std::env::var(morel_core::env_vars::MOREL_PYTHON)
                .unwrap_or_else(|_| "python3".into()),
            node: std::env::var(morel_core::env_vars::MOREL_NODE).unwrap_or_else(|_| "node".into()),
        }
    }
}

/// Seed 000's project description: `metacall.json` / `metacall-*.json`.
#[derive(Debug, Deserialize)]
struct MetacallJson {
    language_id: String,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    scripts: Vec<String>,
}

struct Found {
    runtime: Runtime,
    file: String,
    f: FunctionReport,
}

const DEFAULT_RESOURCE: &str = "default";

pub fn build_manifest(dir: &Path, opts: &BuildOptions) -> Result<Manifest, ManifestError> {
    let read = |name: &str| -> Result<Option<String>, ManifestError> {
        let path = dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ManifestError::Io { path, source }),
        }
    };
    let config = match read(CONFIG_FILE)? {
        Some(text) => toml_config::parse(&text)?,
        None => ProjectConfig::default(),
    };

    let project_name = resolve_name(dir, opts, &config)?;

    // 1. Find functions: metacall*.json when present, else the project's own files.
    let mut found: Vec<Found> = Vec::new();
    let mut endpoints: BTreeMap<String, BTreeMap<String, serde_json::Value>> = BTreeMap::new();
    let metacall = metacall_files(dir)?;
    let mut push = |lang: Language,
                    files: &[String],
                    endpoints: &mut BTreeMap<_, _>|
     -> Result<(), ManifestError> {
        let (program, runtime) = match lang {
            Language::Python => (&opts.python, Runtime::Python),
            Language::Node => (&opts.node, Runtime::Node),
        };
        let report = discover::run(lang, program, dir, files)?;
        for (name, ep) in report.endpoints {
            endpoints.insert(name, ep.options);
        }
        for file in report.files {
            for f in file.functions {
                found.push(Found {
                    runtime,
                    file: file.file.clone(),
                    f,
                });
            }
        }
        Ok(())
    };
    if !metacall.is_empty() {
        let mut entries = Vec::new();
        for (file, text) in &metacall {
            for (lang, scripts) in metacall_entries(file, text)? {
                entries.push((file.clone(), lang, scripts));
            }
        }
        for (file, lang, scripts) in entries {
            for rel in &scripts {
                if !dir.join(rel).is_file() {
                    return Err(ManifestError::field(
                        &file,
                        "scripts",
                        format!("{rel:?} does not exist"),
                    ));
                }
            }
            push(lang, &scripts, &mut endpoints)?;
        }
    } else {
        let has_py = std::fs::read_dir(dir)
            .map_err(|source| ManifestError::Io {
                path: dir.to_owned(),
                source,
            })?
            .filter_map(Result::ok)
            .any(|e| e.path().extension().is_some_and(|x| x == "py"));
        if has_py {
            push(Language::Python, &[], &mut endpoints)?;
        }
        let has_node = ["package.json", "index.js", "index.mjs"]
            .iter()
            .any(|f| dir.join(f).is_file());
        if has_node {
            push(Language::Node, &[], &mut endpoints)?;
        }
        // WebAssembly sources: each file is one function, named after the file.
        for file in wasm_sources(dir, has_node)? {
            let stem = file
                .rsplit_once('.')
                .map(|(s, _)| s)
                .unwrap_or(&file)
                .replace('-', "_");
            found.push(Found {
                runtime: Runtime::Wasm,
                file,
                f: FunctionReport {
                    name: stem,
                    params: Vec::new(),
                    is_async: false,
                    is_class: false,
                    endpoint: None,
                    http_method: None,
                    http_path: None,
                },
            });
        }
    }

    // 2. Group into resources.
    let py_default = found
        .iter()
        .any(|f| f.runtime == Runtime::Python && f.f.endpoint.is_none());
    let has_process_default = found
        .iter()
        .any(|f| f.runtime != Runtime::Wasm && f.f.endpoint.is_none());
    let mut resources: BTreeMap<String, ResourceSpec> = BTreeMap::new();
    let assigned: BTreeMap<&str, &str> = config
        .resources
        .iter()
        .flat_map(|(r, sec)| sec.functions.iter().map(move |f| (f.as_str(), r.as_str())))
        .collect();
    for Found { runtime, file, f } in found {
        let resource = match (&f.endpoint, assigned.get(f.name.as_str())) {
            (Some(ep), _) => ep.clone(),
            (None, Some(r)) => (*r).to_owned(),
            (None, None) if runtime == Runtime::Node && py_default => "node".to_owned(),
            (None, None) if runtime == Runtime::Wasm && has_process_default => "wasm".to_owned(),
            (None, None) => DEFAULT_RESOURCE.to_owned(),
        };
        let spec = resources
            .entry(resource.clone())
            .or_insert_with(|| default_spec(runtime));
        if spec.runtime != runtime {
            return Err(ManifestError::field(
                &file,
                f.name.clone(),
                format!(
                    "resource {resource:?} mixes {} and {} functions",
                    spec.runtime, runtime
                ),
            ));
        }
        let module = match runtime {
            Runtime::Python => file.trim_end_matches(".py").replace('/', "."),
            // For wasm the module names the source language the agent compiles it with.
            Runtime::Wasm => wasm_language(&file).to_owned(),
            _ => file.clone(),
        };
        if spec.handler_file.is_none() {
            spec.handler_file = Some(file.clone());
        }
        if f.http_method.is_some() {
            spec.resource_type = ResourceType::LoadBalancerSlsResource;
        }
        spec.functions.push(FunctionSpec {
            attr: f.name.clone(),
            name: f.name,
            module,
            file,
            params: f.params,
            is_async: f.is_async,
            is_class: f.is_class,
            http_method: f.http_method,
            http_path: f.http_path,
        });
    }

    // 3. Apply SDK endpoint options, then morel.toml sections (the file wins).
    for (name, options) in &endpoints {
        if let Some(spec) = resources.get_mut(name) {
            apply_sdk_options(spec, name, options)?;
        }
    }
    for (name, sec) in &config.resources {
        let runtime = match &sec.runtime {
            Some(r) => Some(r.parse::<Runtime>().map_err(|e| {
                ManifestError::field(CONFIG_FILE, format!("resources.{name}.runtime"), e)
            })?),
            None => None,
        };
        if !resources.contains_key(name) {
            match runtime {
                Some(Runtime::Http) => {
                    resources.insert(name.clone(), default_spec(Runtime::Http));
                }
                Some(r) => {
                    return Err(ManifestError::field(
                        CONFIG_FILE,
                        format!("resources.{name}"),
                        format!("declares runtime {r} but no {r} functions were found for it"),
                    ));
                }
                None => {
                    return Err(ManifestError::field(
                        CONFIG_FILE,
                        format!("resources.{name}.runtime"),
                        "is required for a resource without discovered functions",
                    ));
                }
            }
        }
        let spec = resources
            .get_mut(name)
            .ok_or_else(|| ManifestError::Invalid(name.clone()))?;
        if let Some(r) = runtime
            && r != spec.runtime
        {
            return Err(ManifestError::field(
                CONFIG_FILE,
                format!("resources.{name}.runtime"),
                format!("is {r}, but its functions are {}", spec.runtime),
            ));
        }
        apply_section(spec, name, sec)?;
    }

    if resources.is_empty() {
        return Err(ManifestError::Empty {
            dir: dir.to_owned(),
        });
    }

    // 4. Dependencies, registry, routes, hashes.
    let requirements = read("requirements.txt")?;
    let package_json = read("package.json")?;
    let lock = read("package-lock.json")?;
    let mut registry = BTreeMap::new();
    let mut routes: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (rname, spec) in resources.iter_mut() {
        spec.dependencies = match spec.runtime {
            Runtime::Python => requirements
                .as_deref()
                .filter(|r| {
                    r.lines()
                        .any(|l| !l.trim().is_empty() && !l.trim().starts_with('#'))
                })
                .map(|r| DependencySpec {
                    kind: DependencyKind::Pip,
                    file: "requirements.txt".into(),
                    hash: hash_parts(&[r.as_bytes()]),
                }),
            Runtime::Node => match &package_json {
                Some(pj) if npm_has_dependencies(pj) => Some(DependencySpec {
                    kind: DependencyKind::Npm,
                    file: "package.json".into(),
                    hash: hash_parts(&[pj.as_bytes(), lock.as_deref().unwrap_or("").as_bytes()]),
                }),
                _ => None,
            },
            _ => None,
        };
        for f in &spec.functions {
            registry.insert(f.name.clone(), rname.clone());
            if let (Some(m), Some(p)) = (&f.http_method, &f.http_path) {
                routes
                    .entry(rname.clone())
                    .or_default()
                    .insert(format!("{m} {p}"), f.name.clone());
            }
        }
        spec.config_hash = spec.compute_config_hash();
    }
    let manifest = Manifest {
        version: MANIFEST_VERSION.into(),
        generated_at: morel_core::time::rfc3339(newest_mtime(dir, &resources)),
        project_name,
        function_registry: registry,
        resources,
        routes,
        metacall: !metacall.is_empty(),
    };
    manifest.validate()?;
    Ok(manifest)
}

/// The newest modification time among the files the build read. Used as `generated_at` so
/// that building an untouched tree twice gives the same bundle bytes, and so the same digest
/// (the server then skips the upload).
fn newest_mtime(dir: &Path, resources: &BTreeMap<String, ResourceSpec>) -> i64 {
    let mut files: Vec<String> = resources
        .values()
        .flat_map(|r| r.functions.iter().map(|f| f.file.clone()))
        .collect();
    files.extend(
        [
            "morel.toml",
            "requirements.txt",
            "package.json",
            "package-lock.json",
        ]
        .map(String::from),
    );
    if let Ok(entries) = std::fs::read_dir(dir) {
        files.extend(
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("metacall") && n.ends_with(".json")),
        );
    }
    files
        .iter()
        .filter_map(|f| {
            std::fs::metadata(dir.join(f))
                .and_then(|m| m.modified())
                .ok()
        })
        .filter_map(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .max()
        .unwrap_or(0)
}

fn resolve_name(
    dir: &Path,
    opts: &BuildOptions,
    config: &ProjectConfig,
) -> Result<String, ManifestError> {
    if let Some(n) = &opts.name {
        return n
            .parse::<morel_core::AppName>()
            .map(|n| n.to_string())
            .map_err(|e| ManifestError::field("--name", "name", e.to_string()));
    }
    if let Some(n) = &config.app.name {
        return n
            .parse::<morel_core::AppName>()
            .map(|n| n.to_string())
            .map_err(|e| ManifestError::field(CONFIG_FILE, "app.name", e.to_string()));
    }
    let base = std::fs::canonicalize(dir)
        .ok()
        .and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
        .unwrap_or_default();
    morel_core::AppName::slugify(&base)
        .map(|n| n.to_string())
        .ok_or_else(|| ManifestError::field(CONFIG_FILE, "app.name", format!("cannot derive an app name from directory {base:?}; set [app] name or pass --name")))
}

/// One `metacall*.json` file's descriptions (one, or a list of them): each one's language
/// and its scripts relative to the project directory, none of them leaving it.
fn metacall_entries(file: &str, text: &str) -> Result<Vec<(Language, Vec<String>)>, ManifestError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| ManifestError::field(file, "-", e.to_string()))?;
    let items = match value {
        serde_json::Value::Array(items) => items,
        other => vec![other],
    };
    let mut entries = Vec::new();
    for item in items {
        let mc: MetacallJson = serde_json::from_value(item)
            .map_err(|e| ManifestError::field(file, "-", e.to_string()))?;
        let lang = match mc.language_id.as_str() {
            "py" | "python" => Language::Python,
            "node" | "js" => Language::Node,
            other => {
                return Err(ManifestError::field(
                    file,
                    "language_id",
                    format!("unsupported language {other:?} (supported: \"py\", \"node\")"),
                ));
            }
        };
        if mc.scripts.is_empty() {
            return Err(ManifestError::field(file, "scripts", "lists no scripts"));
        }
        let base = mc.path.unwrap_or_default();
        let base = base.trim_start_matches("./").trim_matches('/');
        let mut scripts = Vec::new();
        for s in &mc.scripts {
            let rel = if base.is_empty() || base == "." {
                s.clone()
            } else {
                format!("{base}/{s}")
            };
            if rel.split('/').any(|p| p == "..") || rel.starts_with('/') {
                return Err(ManifestError::field(
                    file,
                    "scripts",
                    format!("{rel:?} leaves the project directory"),
                ));
            }
            scripts.push(rel);
        }
        entries.push((lang, scripts));
    }
    Ok(entries)
}

/// Parses one `metacall*.json` file's text with `build_manifest`'s own code: each
/// description's runtime and its scripts relative to the project directory (whether they
/// exist is left to the build). Public for the fuzz targets in `morel-fuzz`.
pub fn parse_metacall_json_for_fuzzing(
    file: &str,
    text: &str,
) -> Result<Vec<(Runtime, Vec<String>)>, ManifestError> {
    Ok(metacall_entries(file, text)?
        .into_iter()
        .map(|(lang, scripts)| match lang {
            Language::Python => (Runtime::Python, scripts),
            Language::Node => (Runtime::Node, scripts),
        })
        .collect())
}

fn metacall_files(dir: &Path) -> Result<Vec<(String, String)>, ManifestError> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|source| ManifestError::Io {
        path: dir.to_owned(),
        source,
    })?;
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("metacall") && name.ends_with(".json") {
            let text = std::fs::read_to_string(e.path()).map_err(|source| ManifestError::Io {
                path: e.path(),
                source,
            })?;
            out.push((name, text));
        }
    }
    out.sort();
    Ok(out)
}

/// The source language of a wasm function file, as `morel-compiler` names it (`wasm` = prebuilt).
pub fn wasm_language(file: &str) -> &'static str {
    match file.rsplit_once('.').map(|(_, e)| e) {
        Some("wat") => "wat",
        Some("c") => "c",
        Some("rs") => "rust",
        Some("ts") => "assemblyscript",
        _ => "wasm",
    }
}

/// Top-level `.wat/.c/.rs/.ts/.wasm` files. `.ts` counts as AssemblyScript only outside Node
/// projects, and `.rs` only outside Cargo projects.
fn wasm_sources(dir: &Path, node_project: bool) -> Result<Vec<String>, ManifestError> {
    let cargo_project = dir.join("Cargo.toml").exists();
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)
        .map_err(|source| ManifestError::Io {
            path: dir.to_owned(),
            source,
        })?
        .filter_map(Result::ok)
    {
        if !e.file_type().map(|t| t.is_file()).unwrap_or(false) {
            continue;
        }
        let name = e.file_name().to_string_lossy().into_owned();
        let ext = name.rsplit_once('.').map(|(_, x)| x).unwrap_or("");
        let wanted = match ext {
            "wat" | "c" | "wasm" => true,
            "rs" => !cargo_project,
            "ts" => !node_project && !name.ends_with(".d.ts"),
            _ => false,
        };
        if wanted {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

fn default_spec(runtime: Runtime) -> ResourceSpec {
    ResourceSpec {
        resource_type: ResourceType::ServerlessResource,
        runtime,
        handler_file: None,
        functions: Vec::new(),
        workers_min: 1,
        workers_max: 1,
        idle_timeout_s: 300,
        concurrency: match runtime {
            Runtime::Python => 8,
            _ => 64,
        },
        timeout_ms: 30_000,
        memory_mb: None,
        cpu: None,
        public: true,
        env: BTreeMap::new(),
        dependencies: None,
        http: None,
        config_hash: String::new(),
    }
}

fn apply_sdk_options(
    spec: &mut ResourceSpec,
    name: &str,
    options: &BTreeMap<String, serde_json::Value>,
) -> Result<(), ManifestError> {
    let field = |k: &str| format!("Endpoint({name:?}).{k}");
    let bad = |k: &str, why: &str| {
        ManifestError::field(
            spec.handler_file.clone().unwrap_or_default(),
            field(k),
            why.to_owned(),
        )
    };
    for (k, v) in options {
        match k.as_str() {
            "workers" => {
                let pair = v
                    .as_array()
                    .filter(|a| a.len() == 2)
                    .and_then(|a| Some((a[0].as_u64()?, a[1].as_u64()?)));
                let (lo, hi) =
                    pair.ok_or_else(|| bad(k, "must be a (min, max) pair of integers"))?;
                spec.workers_min = lo as u32;
                spec.workers_max = hi as u32;
            }
            "concurrency" => {
                spec.concurrency = v.as_u64().ok_or_else(|| bad(k, "must be an integer"))? as u32
            }
            "timeout_s" => {
                spec.timeout_ms =
                    (v.as_f64().ok_or_else(|| bad(k, "must be a number"))? * 1000.0) as u64
            }
            "idle_timeout_s" => {
                spec.idle_timeout_s = v.as_u64().ok_or_else(|| bad(k, "must be an integer"))?
            }
            "memory_mb" => spec.memory_mb = v.as_u64(),
            "cpu" => spec.cpu = v.as_f64(),
            "public" => spec.public = v.as_bool().ok_or_else(|| bad(k, "must be true or false"))?,
            "env" => {
                let map = v
                    .as_object()
                    .ok_or_else(|| bad(k, "must be a dict of strings"))?;
                for (ek, ev) in map {
                    spec.env.insert(
                        ek.clone(),
                        ev.as_str()
                            .ok_or_else(|| bad(k, "must be a dict of strings"))?
                            .to_owned(),
                    );
                }
            }
            _ => return Err(bad(k, "is not a known Endpoint option")),
        }
    }
    Ok(())
}

fn apply_section(
    spec: &mut ResourceSpec,
    name: &str,
    sec: &ResourceSection,
) -> Result<(), ManifestError> {
    let f = |k: &str| format!("resources.{name}.{k}");
    if let Some([lo, hi]) = sec.workers {
        spec.workers_min = lo;
        spec.workers_max = hi;
    }
    if let Some(c) = sec.concurrency {
        spec.concurrency = c;
    }
    if let Some(t) = sec.timeout_s {
        if t.is_nan() || t <= 0.0 {
            return Err(ManifestError::field(
                CONFIG_FILE,
                f("timeout_s"),
                "must be positive",
            ));
        }
        spec.timeout_ms = (t * 1000.0) as u64;
    }
    if let Some(i) = sec.idle_timeout_s {
        spec.idle_timeout_s = i;
    }
    spec.memory_mb = sec.memory_mb.or(spec.memory_mb);
    spec.cpu = sec.cpu.or(spec.cpu);
    if let Some(p) = sec.public {
        spec.public = p;
    }
    spec.env
        .extend(sec.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    for (route, function) in &sec.routes {
        apply_route(spec, name, route, function)?;
    }
    if spec.runtime == Runtime::Http {
        let command = sec
            .command
            .clone()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                ManifestError::field(
                    CONFIG_FILE,
                    f("command"),
                    "an http resource needs a non-empty command",
                )
            })?;
        let health = sec.health.clone().unwrap_or_else(|| "/health".into());
        if !health.starts_with('/') {
            return Err(ManifestError::field(
                CONFIG_FILE,
                f("health"),
                "must start with '/'",
            ));
        }
        spec.resource_type = ResourceType::LoadBalancerSlsResource;
        spec.http = Some(HttpSpec {
            command,
            health,
            warmup_s: sec.warmup_s.unwrap_or(0),
            start_timeout_s: match sec.start_timeout_s {
                Some(0) => {
                    return Err(ManifestError::field(
                        CONFIG_FILE,
                        f("start_timeout_s"),
                        "must be at least 1",
                    ));
                }
                Some(t) => t,
                None => 30,
            },
            heartbeat_ttl_s: match sec.heartbeat_ttl_s {
                Some(t) if t < MIN_HEARTBEAT_TTL_S => {
                    return Err(ManifestError::field(
                        CONFIG_FILE,
                        f("heartbeat_ttl_s"),
                        format!("must be at least {MIN_HEARTBEAT_TTL_S}"),
                    ));
                }
                Some(t) => t,
                None => DEFAULT_HEARTBEAT_TTL_S,
            },
        });
    } else if sec.command.is_some() || sec.health.is_some() {
        return Err(ManifestError::field(
            CONFIG_FILE,
            f("command"),
            "only http resources take a command",
        ));
    }
    if spec.runtime != Runtime::Http && sec.heartbeat_ttl_s.is_some() {
        return Err(ManifestError::field(
            CONFIG_FILE,
            f("heartbeat_ttl_s"),
            "only http resources have a heartbeat",
        ));
    }
    Ok(())
}

/// Methods a route may use, as the SDK's decorators name them.
const ROUTE_METHODS: [&str; 5] = ["GET", "POST", "PUT", "DELETE", "PATCH"];

/// A `routes` entry of a `morel.toml` resource: `"METHOD /path" = "function"`.
fn apply_route(
    spec: &mut ResourceSpec,
    resource: &str,
    route: &str,
    function: &str,
) -> Result<(), ManifestError> {
    let field = format!("resources.{resource}.routes.\"{route}\"");
    let bad = |msg: String| ManifestError::field(CONFIG_FILE, field.clone(), msg);
    let (method, path) = route
        .trim()
        .split_once(' ')
        .ok_or_else(|| bad("expected \"METHOD /path\", e.g. \"POST /checkout\"".into()))?;
    let method = method.to_ascii_uppercase();
    if !ROUTE_METHODS.contains(&method.as_str()) {
        return Err(bad(format!(
            "unknown method {method:?} (expected one of: {})",
            ROUTE_METHODS.join(", ")
        )));
    }
    let path = path.trim();
    if !path.starts_with('/') || path.contains(|c: char| c.is_whitespace() || c == '?' || c == '#')
    {
        return Err(bad(format!(
            "path {path:?} must start with '/' and hold no spaces, '?' or '#'"
        )));
    }
    let f = spec
        .functions
        .iter_mut()
        .find(|f| f.name == function)
        .ok_or_else(|| {
            bad(format!(
                "function {function:?} is not on resource {resource:?} (add it to its `functions`)"
            ))
        })?;
    f.http_method = Some(method);
    f.http_path = Some(path.to_owned());
    spec.resource_type = ResourceType::LoadBalancerSlsResource;
    Ok(())
}

fn npm_has_dependencies(package_json: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(package_json)
        .ok()
        .and_then(|v| {
            v.get("dependencies")
                .and_then(|d| d.as_object())
                .map(|d| !d.is_empty())
        })
        .unwrap_or(false)
}

fn hash_parts(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    hex::encode(&h.finalize()[..16])
}
