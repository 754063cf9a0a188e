//! `morel push | budget | scale | ps`: HTTP services (seed 004 flows A and B).

use anyhow::{Context, Result, bail};
use morel_bundle::SigningKey;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::args::{BudgetCommand, InspectArgs, PublishArgs, PushArgs, ScaleArgs};
use crate::client::Client;
use crate::settings;

/// Builds, signs and uploads; prints the digest alone on stdout (flow A).
pub async fn push(args: PushArgs) -> Result<()> {
    let client = Client::from_settings()?;
    let dir = args.dir.clone();
    let name = args.name.clone();
    let (manifest, packed) =
        tokio::task::spawn_blocking(move || super::deploy::build_bundle(&dir, name)).await??;
    let key = SigningKey::load_or_generate(&settings::signing_key_path())?;
    let sig = morel_bundle::sign(&packed.digest, &key);
    let path = format!("/api/bundles/{}", packed.digest);
    let exists = client
        .request(Method::HEAD, &path)
        .send()
        .await
        .with_context(|| format!("cannot reach {}", client.login.url))?;
    match exists.status() {
        StatusCode::OK => eprintln!(
            "{}: bundle {} is already on the server",
            manifest.project_name,
            packed.digest.short()
        ),
        StatusCode::UNAUTHORIZED => bail!(
            "the server refused the token (HTTP 401); run `morel login URL --token T` or set MOREL_TOKEN"
        ),
        _ => {
            let req = client
                .request(Method::PUT, &path)
                .header("x-morel-signature", sig.to_header())
                .body(packed.bytes.clone());
            client.send(req).await.context("uploading the bundle")?;
            eprintln!(
                "{}: pushed {} files ({} KiB), signed by key {}",
                manifest.project_name,
                packed.files,
                packed.bytes.len().div_ceil(1024),
                sig.key_id
            );
        }
    }
    println!("{}", packed.digest);
    Ok(())
}

/// Creates a release from an uploaded digest (flow B) and waits until it is ready or failed.
pub async fn publish(args: PublishArgs) -> Result<()> {
    let client = Client::from_settings()?;
    let mut config = serde_json::Map::new();
    for kv in &args.set {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--set {kv:?}: expected KEY=VALUE"))?;
        config.insert(k.to_owned(), Value::String(v.to_owned()));
    }
    let body = json!({ "digest": args.digest, "env": args.env, "config": config });
    let release: Value = client
        .json(
            client
                .request(Method::POST, &format!("/api/apps/{}/releases", args.app))
                .json(&body),
        )
        .await?;
    let n = release["number"]
        .as_i64()
        .context("the server sent no release number")?;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(900);
    loop {
        let r: Value = client
            .get(&format!("/api/apps/{}/releases/v{n}", args.app))
            .await?;
        match r["status"].as_str().unwrap_or("") {
            "ready" | "superseded" => {
                println!("{} v{n} is ready", args.app);
                return Ok(());
            }
            "failed" => bail!(
                "release v{n} of {} failed:\n{}",
                args.app,
                r["error"].as_str().unwrap_or("")
            ),
            status if tokio::time::Instant::now() > deadline => bail!(
                "release v{n} is still {status} after 15 minutes; follow it with `morel logs {} -f`",
                args.app
            ),
            _ => tokio::time::sleep(std::time::Duration::from_millis(150)).await,
        }
    }
}

/// `512`, `512M`, `512Mi` → 512; `2G`, `2Gi` → 2048.
fn parse_memory(text: &str) -> Result<u64> {
    let t = text.trim();
    let (num, mult) = if let Some(n) = t.strip_suffix("Gi").or_else(|| t.strip_suffix('G')) {
        (n, 1024)
    } else if let Some(n) = t.strip_suffix("Mi").or_else(|| t.strip_suffix('M')) {
        (n, 1)
    } else {
        (t, 1)
    };
    let n: u64 = num
        .trim()
        .parse()
        .with_context(|| format!("--memory {text:?}: expected MiB or a size like 512M or 2G"))?;
    Ok(n * mult)
}

fn print_budget(v: &Value) {
    let f = |k: &str| match &v[k] {
        Value::Null => "-".to_owned(),
        x => x.to_string(),
    };
    println!(
        "budget: max_instances {}, cpu {}, memory_mb {}",
        f("max_instances"),
        f("cpu"),
        f("memory_mb")
    );
    println!("scale:  min {}, max {}", f("min"), f("max"));
}

pub async fn budget(cmd: BudgetCommand) -> Result<()> {
    let client = Client::from_settings()?;
    match cmd {
        BudgetCommand::Set {
            app,
            max_instances,
            cpu,
            memory,
            json,
        } => {
            let memory_mb = memory.as_deref().map(parse_memory).transpose()?;
            let body =
                json!({ "max_instances": max_instances, "cpu": cpu, "memory_mb": memory_mb });
            let v: Value = client
                .json(
                    client
                        .request(Method::PUT, &format!("/api/apps/{app}/budget"))
                        .json(&body),
                )
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print_budget(&v);
            }
        }
        BudgetCommand::Show { app, json } => {
            let v: Value = client.get(&format!("/api/apps/{app}/budget")).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print_budget(&v);
            }
        }
    }
    Ok(())
}

pub async fn scale(args: ScaleArgs) -> Result<()> {
    let client = Client::from_settings()?;
    let max = args.max.unwrap_or(args.min);
    let v: Value = client
        .json(
            client
                .request(Method::PUT, &format!("/api/apps/{}/scale", args.app))
                .json(&json!({ "min": args.min, "max": max })),
        )
        .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print_budget(&v);
    }
    Ok(())
}

fn uptime(s: Option<i64>) -> String {
    match s {
        None => "-".into(),
        Some(s) if s < 60 => format!("{s}s"),
        Some(s) if s < 3600 => format!("{}m{}s", s / 60, s % 60),
        Some(s) => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}

pub async fn ps(args: InspectArgs) -> Result<()> {
    let client = Client::from_settings()?;
    let rows: Vec<Value> = client
        .get(&format!("/api/apps/{}/instances", args.app))
        .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!("{} has no instances", args.app);
        return Ok(());
    }
    println!(
        "{:<12} {:<10} {:<8} {:<6} {:<14} {:<10} {:<9} {:<8} PID",
        "INSTANCE", "RESOURCE", "NODE", "PORT", "DIGEST", "STATE", "RESTARTS", "UPTIME"
    );
    let s = |v: &Value, k: &str| match &v[k] {
        Value::String(x) => x.clone(),
        Value::Null => "-".into(),
        x => x.to_string(),
    };
    let mut notes = Vec::new();
    for r in &rows {
        let id = s(r, "id");
        let digest = s(r, "digest");
        println!(
            "{:<12} {:<10} {:<8} {:<6} {:<14} {:<10} {:<9} {:<8} {}",
            &id[id.len().saturating_sub(12)..],
            s(r, "resource"),
            s(r, "node"),
            s(r, "port"),
            digest
                .strip_prefix("sha256:")
                .unwrap_or(&digest)
                .chars()
                .take(12)
                .collect::<String>(),
            s(r, "state"),
            s(r, "restarts"),
            uptime(r["uptime_s"].as_i64()),
            s(r, "pid"),
        );
        if r["lease_expired"].as_bool() == Some(true) {
            let ago = r["last_heartbeat_at"]
                .as_i64()
                .map(|t| {
                    format!(
                        ", last heartbeat {}s ago",
                        (morel_core::time::now_ms() - t).max(0) / 1000
                    )
                })
                .unwrap_or_default();
            notes.push(format!(
                "{}: lease expired{ago}: not routed to until a heartbeat succeeds",
                &id[id.len().saturating_sub(12)..]
            ));
        }
        if let Some(e) = r["last_error"].as_str() {
            notes.push(format!("{}: {e}", &id[id.len().saturating_sub(12)..]));
        }
    }
    if let Some(l) = rows.iter().find_map(|r| r["limits"].as_str()) {
        println!("limits: {l}");
    }
    for n in notes {
        println!("{n}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_memory;

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("512").unwrap(), 512);
        assert_eq!(parse_memory("256M").unwrap(), 256);
        assert_eq!(parse_memory("2Gi").unwrap(), 2048);
        assert!(parse_memory("lots").is_err());
    }
}
