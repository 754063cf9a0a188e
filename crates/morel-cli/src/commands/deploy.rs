//! `morel build` and `morel deploy`.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use morel_bundle::{PackLimits, Packed, SigningKey};
use morel_manifest::{BuildOptions, Manifest};
use reqwest::{Method, StatusCode};
use serde::Deserialize;

use crate::args::{BuildArgs, DeployArgs};
use crate::client::Client;
use crate::settings;

pub(crate) fn build_bundle(dir: &Path, name: Option<String>) -> Result<(Manifest, Packed)> {
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let opts = BuildOptions {
        name,
        ..BuildOptions::default()
    };
    let manifest = morel_manifest::build_manifest(dir, &opts)
        .with_context(|| format!("building {}", dir.display()))?;
    let json = serde_json::to_vec_pretty(&manifest)?;
    let packed = morel_bundle::pack_dir(dir, &json, &PackLimits::default())
        .with_context(|| format!("packing {}", dir.display()))?;
    Ok((manifest, packed))
}

pub async fn build(args: BuildArgs) -> Result<()> {
    if args.print {
        let manifest = morel_manifest::build_manifest(
            &args.dir,
            &BuildOptions {
                name: args.name,
                ..BuildOptions::default()
            },
        )
        .with_context(|| format!("building {}", args.dir.display()))?;
        println!("{}", manifest.to_json_pretty());
        return Ok(());
    }
    let (manifest, packed) = build_bundle(&args.dir, args.name)?;
    let key = SigningKey::load_or_generate(&settings::signing_key_path())?;
    let sig = morel_bundle::sign(&packed.digest, &key);
    let out = args.out.unwrap_or_else(|| {
        args.dir
            .join(".morel")
            .join(format!("{}.bundle", packed.digest))
    });
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&out, &packed.bytes).with_context(|| format!("writing {}", out.display()))?;
    let sig_path = out.with_extension("sig");
    std::fs::write(&sig_path, sig.to_header())?;
    println!("app:       {}", manifest.project_name);
    for (name, r) in &manifest.resources {
        let fns: Vec<&str> = r.functions.iter().map(|f| f.name.as_str()).collect();
        println!("resource:  {name} ({}): {}", r.runtime, fns.join(", "));
    }
    println!(
        "files:     {} ({} bytes unpacked)",
        packed.files, packed.uncompressed
    );
    println!("digest:    {}", packed.digest);
    println!("bundle:    {}", out.display());
    println!("signature: {} (key {})", sig_path.display(), sig.key_id);
    Ok(())
}

#[derive(Clone, Deserialize)]
struct ReleaseView {
    number: i64,
    status: String,
    error: Option<String>,
}

#[derive(Deserialize)]
struct LogLine {
    id: i64,
    line: String,
}

#[derive(Deserialize)]
struct FunctionView {
    name: String,
    params: Vec<String>,
    url: String,
}

#[derive(Deserialize)]
struct AppDetail {
    functions: Vec<FunctionView>,
    /// `call`, `routes` (method, path, function, url) and `service`.
    #[serde(default)]
    urls: serde_json::Value,
}

/// Prints progress on a spinner when stderr is a terminal, as plain lines otherwise.
struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    fn new(quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::new_spinner();
            b.set_style(
                ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.enable_steady_tick(Duration::from_millis(100));
            b
        });
        Progress { bar }
    }
    fn step(&self, msg: &str) {
        match &self.bar {
            Some(b) => {
                b.println(format!("  {msg}"));
                b.set_message(msg.to_owned());
            }
            None => eprintln!("  {msg}"),
        }
    }
    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

pub async fn deploy(args: DeployArgs) -> Result<()> {
    if args.git.is_some() {
        return super::environments::git_deploy(args).await;
    }
    let client = Client::from_settings()?;
    let progress = Progress::new(args.json);
    progress.step(&format!("building {}", args.dir.display()));
    let dir = args.dir.clone();
    let name = args.name.clone();
    let (manifest, packed) =
        tokio::task::spawn_blocking(move || build_bundle(&dir, name)).await??;
    let app = manifest.project_name.clone();
    // A preview environment's releases live under its host app (`{app}--{env}`).
    let host = morel_gateway::environment_host(&app, &args.env);
    let fn_count: usize = manifest.resources.values().map(|r| r.functions.len()).sum();
    progress.step(&format!(
        "packed {app}: {} files, {fn_count} functions, digest {}",
        packed.files,
        packed.digest.short()
    ));

    let key = SigningKey::load_or_generate(&settings::signing_key_path())?;
    let sig = morel_bundle::sign(&packed.digest, &key);
    let exists = client
        .request(Method::HEAD, &format!("/api/bundles/{}", packed.digest))
        .send()
        .await
        .with_context(|| format!("cannot reach {}", client.login.url))?;
    match exists.status() {
        StatusCode::OK => progress.step("bundle already on the server; skipping upload"),
        StatusCode::UNAUTHORIZED => bail!(
            "the server refused the token (HTTP 401); run `morel login URL --token T` or set MOREL_TOKEN"
        ),
        _ => {
            progress.step(&format!(
                "uploading {} KiB",
                packed.bytes.len().div_ceil(1024)
            ));
            let req = client
                .request(Method::PUT, &format!("/api/bundles/{}", packed.digest))
                .header("x-morel-signature", sig.to_header())
                .body(packed.bytes.clone());
            client.send(req).await.context("uploading the bundle")?;
        }
    }
    // The reconcile plan, as a short diff, before anything changes.
    let plan: serde_json::Value = client
        .get(&format!("/api/apps/{host}/plan?digest={}", packed.digest))
        .await?;
    let mut lines = Vec::new();
    for (key, sign, label) in [
        ("new", '+', "new"),
        ("changed", '~', "changed: restart"),
        ("removed", '-', "removed: stop and delete"),
        ("unchanged", '=', "unchanged: keep"),
    ] {
        for r in plan[key].as_array().into_iter().flatten() {
            lines.push(format!("{sign} {} ({label})", r.as_str().unwrap_or("?")));
        }
    }
    if args.dry_run {
        for l in &lines {
            println!("{l}");
        }
        progress.finish();
        return Ok(());
    }
    for l in &lines {
        progress.step(&format!("plan: {l}"));
    }
    let mut config = BTreeMap::new();
    for kv in &args.set {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--set {kv:?}: expected KEY=VALUE"))?;
        config.insert(k.to_owned(), v.to_owned());
    }
    let body = serde_json::json!({ "digest": packed.digest, "env": args.env, "config": config });
    let release: ReleaseView = client
        .json(
            client
                .request(Method::POST, &format!("/api/apps/{app}/releases"))
                .json(&body),
        )
        .await?;
    let n = release.number;
    progress.step(&format!("release v{n} created"));
    if args.detach {
        progress.finish();
        print_result(&args, &app, n, "pending", None, &[], &[]);
        return Ok(());
    }
    // Follow this release's steps (its events say `vN: step`) until it is ready or failed;
    // the app's other events (earlier releases, instances) are not this deploy's.
    let mut after = 0i64;
    let mine = format!("v{n}: ");
    let mut shown = std::collections::HashSet::new();
    let mut ended: Option<(ReleaseView, std::time::Instant)> = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(900);
    // Most releases are ready within a few hundred ms: look often at first, then back off.
    let mut pause = Duration::from_millis(10);
    let final_release = loop {
        loop {
            let lines: Vec<LogLine> = client
                .get(&format!(
                    "/api/apps/{host}/logs?stream=event&after={after}&limit=10000"
                ))
                .await
                .unwrap_or_default();
            let more = lines.len() == 10_000;
            for l in lines {
                after = l.id;
                if let Some(step) = l.line.strip_prefix(&mine)
                    && shown.insert(step.to_owned())
                {
                    progress.step(step);
                }
            }
            if !more {
                break;
            }
        }
        // Once the release has ended, its last steps may still be on their way to the log
        // (written in batches): wait for its `ready` step, a little.
        if let Some((r, ended)) = &ended {
            if r.status != "ready"
                || shown.iter().any(|s| s.starts_with("ready"))
                || ended.elapsed() > Duration::from_millis(300)
            {
                break r.clone();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let r: ReleaseView = client
            .get(&format!("/api/apps/{host}/releases/v{n}"))
            .await?;
        if matches!(r.status.as_str(), "ready" | "failed" | "superseded") {
            ended = Some((r, std::time::Instant::now()));
            continue;
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "release v{n} is still {} after 15 minutes; follow it with `morel logs {app} -f`",
                r.status
            );
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 3 / 2).min(Duration::from_millis(250));
    };
    progress.finish();
    if final_release.status == "failed" {
        let err = final_release.error.unwrap_or_default();
        if args.json {
            print_result(&args, &app, n, "failed", Some(&err), &[], &[]);
        }
        bail!("release v{n} of {app} failed:\n{err}");
    }
    let detail: AppDetail = client.get(&format!("/api/apps/{host}")).await?;
    let routes = detail.urls["routes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    print_result(
        &args,
        &app,
        n,
        &final_release.status,
        None,
        &detail.functions,
        &routes,
    );
    if !args.json {
        for (name, _) in manifest
            .resources
            .iter()
            .filter(|(_, r)| r.runtime == morel_core::Runtime::Http)
        {
            println!("  {name} (http service)  {}/{app}/", client.login.url);
        }
    }
    Ok(())
}

fn print_result(
    args: &DeployArgs,
    app: &str,
    n: i64,
    status: &str,
    error: Option<&str>,
    functions: &[FunctionView],
    routes: &[serde_json::Value],
) {
    if args.json {
        let fns: Vec<_> = functions
            .iter()
            .map(|f| serde_json::json!({ "name": f.name, "params": f.params, "url": f.url }))
            .collect();
        println!(
            "{}",
            serde_json::json!({ "app": app, "release": format!("v{n}"), "status": status, "error": error, "functions": fns, "routes": routes })
        );
        return;
    }
    println!("{app} v{n} is {status}");
    for f in functions {
        println!("  {}({})  POST {}", f.name, f.params.join(", "), f.url);
    }
    for r in routes {
        println!(
            "  {} {}  → {}  {}",
            r["method"].as_str().unwrap_or(""),
            r["path"].as_str().unwrap_or(""),
            r["function"].as_str().unwrap_or(""),
            r["url"].as_str().unwrap_or("")
        );
    }
}
