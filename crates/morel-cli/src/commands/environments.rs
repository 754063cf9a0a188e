//! `morel deploy --git`, `morel env ls|set|unset|rm`, `morel secrets set|ls|rm`, `morel certs add`.

use std::io::Read;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use reqwest::Method;
use serde_json::{Value, json};

use crate::args::{CertsCommand, DeployArgs, EnvCommand, SecretsCommand};
use crate::client::Client;

/// Longest `deploy --git` follows a deploy before giving up (the deploy keeps going).
const FOLLOW_LIMIT: Duration = Duration::from_secs(900);

/// Queues a git deploy and streams its steps until it ends.
pub async fn git_deploy(args: DeployArgs) -> Result<()> {
    let client = Client::from_settings()?;
    let url = args.git.clone().unwrap_or_default();
    let mut body = json!({ "repo_url": url });
    if let Some(b) = &args.branch {
        body["branch"] = json!(b);
    }
    if let Some(n) = &args.name {
        body["app"] = json!(n);
    }
    if let Some(m) = &args.main_branch {
        body["main_branch"] = json!(m);
    }
    let queued: Value = client
        .json(client.request(Method::POST, "/api/deploys").json(&body))
        .await?;
    let id = queued["id"].as_str().unwrap_or_default().to_owned();
    eprintln!(
        "queued deploy {id} of {} ({} branch {})",
        queued["app"].as_str().unwrap_or("-"),
        url,
        queued["branch"].as_str().unwrap_or("-")
    );
    if args.detach {
        if args.json {
            println!("{}", serde_json::to_string_pretty(&queued)?);
        }
        return Ok(());
    }
    let deadline = tokio::time::Instant::now() + FOLLOW_LIMIT;
    let mut shown = 0;
    loop {
        let d: Value = client.get(&format!("/api/deploys/{id}")).await?;
        let steps = d["steps"].as_array().cloned().unwrap_or_default();
        for s in steps.iter().skip(shown) {
            eprintln!(
                "  ✓ {:<12} {}",
                s["step"].as_str().unwrap_or("-"),
                s["detail"].as_str().unwrap_or("")
            );
        }
        shown = steps.len();
        match d["status"].as_str() {
            Some("succeeded") => {
                if args.json {
                    println!("{}", serde_json::to_string_pretty(&d)?);
                } else {
                    println!(
                        "deployed {} to {} ({})",
                        d["app"].as_str().unwrap_or("-"),
                        d["env"].as_str().unwrap_or("-"),
                        d["release"].as_str().unwrap_or("-")
                    );
                    for u in d["urls"].as_array().into_iter().flatten() {
                        println!("  {}", u.as_str().unwrap_or(""));
                    }
                }
                return Ok(());
            }
            Some("failed") => bail!(
                "deploy {id} failed: {}",
                d["error"].as_str().unwrap_or("unknown error")
            ),
            _ => {}
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("deploy {id} is still running; follow it with GET /api/deploys/{id}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub async fn env(cmd: EnvCommand) -> Result<()> {
    let client = Client::from_settings()?;
    match cmd {
        EnvCommand::Ls { app, json } => {
            let envs: Vec<Value> = client.get(&format!("/api/apps/{app}/environments")).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&envs)?);
                return Ok(());
            }
            println!(
                "{:<20} {:<10} {:<20} {:<8} {:<10} URLS",
                "ENV", "KIND", "BRANCH", "RELEASE", "STATUS"
            );
            for e in envs {
                let s = |k: &str| e[k].as_str().unwrap_or("-").to_owned();
                let urls: Vec<&str> = e["urls"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                println!(
                    "{:<20} {:<10} {:<20} {:<8} {:<10} {}",
                    s("name"),
                    s("kind"),
                    s("branch"),
                    s("release"),
                    s("status"),
                    urls.join(" ")
                );
            }
            Ok(())
        }
        EnvCommand::Set {
            app,
            pairs,
            env,
            detach,
            json,
        } => {
            let mut set = serde_json::Map::new();
            for p in &pairs {
                let (k, v) = p
                    .split_once('=')
                    .with_context(|| format!("{p:?}: expected KEY=VALUE"))?;
                set.insert(k.to_owned(), json!(v));
            }
            let r: Value = client
                .json(
                    client
                        .request(
                            Method::POST,
                            &format!("/api/apps/{app}/environments/{env}/config"),
                        )
                        .json(&json!({ "set": set })),
                )
                .await?;
            let what = format!("set {} value(s) on {app}/{env}", pairs.len());
            follow_release(&client, &app, &env, &r, &what, detach, json).await
        }
        EnvCommand::Unset {
            app,
            keys,
            env,
            detach,
            json,
        } => {
            let r: Value = client
                .json(
                    client
                        .request(
                            Method::POST,
                            &format!("/api/apps/{app}/environments/{env}/config"),
                        )
                        .json(&json!({ "unset": keys })),
                )
                .await?;
            let what = format!("unset {} on {app}/{env}", keys.join(", "));
            follow_release(&client, &app, &env, &r, &what, detach, json).await
        }
        EnvCommand::Rm { app, env, yes } => {
            super::confirm(
                &format!(
                    "Remove environment {env} of {app}: stop its instances and delete its data?"
                ),
                yes,
            )?;
            client
                .send(client.request(
                    Method::DELETE,
                    &format!("/api/apps/{app}/environments/{env}"),
                ))
                .await?;
            println!("removed environment {env} of {app}");
            Ok(())
        }
    }
}

pub async fn secrets(cmd: SecretsCommand) -> Result<()> {
    let client = Client::from_settings()?;
    match cmd {
        SecretsCommand::Set {
            app,
            key,
            value,
            env,
            detach,
            json,
        } => {
            let value = match value {
                Some(v) => v,
                None => {
                    let mut v = String::new();
                    std::io::stdin()
                        .read_to_string(&mut v)
                        .context("reading the secret's value from stdin")?;
                    v.trim_end_matches(['\n', '\r']).to_owned()
                }
            };
            let r: Value = client
                .json(
                    client
                        .request(
                            Method::PUT,
                            &format!("/api/apps/{app}/environments/{env}/secrets/{key}"),
                        )
                        .json(&json!({ "value": value })),
                )
                .await?;
            let what = format!("set secret {key} on {app}/{env}");
            follow_release(&client, &app, &env, &r, &what, detach, json).await
        }
        SecretsCommand::Ls { app, env, json } => {
            let list: Vec<Value> = client
                .get(&format!("/api/apps/{app}/environments/{env}/secrets"))
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            println!("{:<32} UPDATED", "NAME");
            for s in list {
                let at = s["updated_at"].as_i64().unwrap_or(0);
                let when = humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + Duration::from_millis(at.max(0) as u64),
                );
                println!("{:<32} {when}", s["name"].as_str().unwrap_or("-"));
            }
            Ok(())
        }
        SecretsCommand::Rm {
            app,
            key,
            env,
            detach,
            json,
        } => {
            let r: Value = client
                .json(client.request(
                    Method::DELETE,
                    &format!("/api/apps/{app}/environments/{env}/secrets/{key}"),
                ))
                .await?;
            let what = format!("removed secret {key} from {app}/{env}");
            follow_release(&client, &app, &env, &r, &what, detach, json).await
        }
    }
}

/// Longest a config or secret change waits for its release before giving up (it keeps going).
const RELEASE_LIMIT: Duration = Duration::from_secs(900);

/// Says what a config or secret change did and, unless `detach`, waits until the release it
/// made is ready (an error when it fails). With `json`, prints the change's answer (`detach`,
/// or no release) or the ready release as JSON instead.
async fn follow_release(
    client: &Client,
    app: &str,
    env: &str,
    change: &Value,
    what: &str,
    detach: bool,
    json: bool,
) -> Result<()> {
    let Some(release) = change["release"].as_str() else {
        if json {
            println!("{}", serde_json::to_string_pretty(change)?);
        } else {
            println!("{what} (no release to restart yet: the next deploy has it)");
        }
        return Ok(());
    };
    if detach {
        if json {
            println!("{}", serde_json::to_string_pretty(change)?);
        } else {
            println!("{what}: rolling out {release}");
        }
        return Ok(());
    }
    eprintln!("{what}: rolling out {release}");
    let host = morel_gateway::environment_host(app, env);
    let deadline = tokio::time::Instant::now() + RELEASE_LIMIT;
    let mut pause = Duration::from_millis(20);
    loop {
        let r: Value = client
            .get(&format!("/api/apps/{host}/releases/{release}"))
            .await?;
        match r["status"].as_str() {
            Some("ready") if json => {
                println!("{}", serde_json::to_string_pretty(&r)?);
                return Ok(());
            }
            Some("ready") => {
                println!("{what}: {release} is ready");
                return Ok(());
            }
            Some("failed") => bail!(
                "{release} of {app}/{env} failed:\n{}",
                r["error"].as_str().unwrap_or("unknown error")
            ),
            Some("superseded") => {
                println!("{what}: {release} was superseded by a newer release");
                return Ok(());
            }
            _ => {}
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "{release} of {app}/{env} is still {} after {RELEASE_LIMIT:?}; follow it with `morel logs {app} -f`",
                r["status"].as_str().unwrap_or("pending")
            );
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 3 / 2).min(Duration::from_millis(250));
    }
}

pub async fn certs(cmd: CertsCommand) -> Result<()> {
    let client = Client::from_settings()?;
    match cmd {
        CertsCommand::Add {
            app,
            env,
            cert,
            key,
            json,
        } => {
            let cert_pem = std::fs::read_to_string(&cert)
                .with_context(|| format!("reading {}", cert.display()))?;
            let key_pem = std::fs::read_to_string(&key)
                .with_context(|| format!("reading {}", key.display()))?;
            let r: Value = client
                .json(
                    client
                        .request(
                            Method::PUT,
                            &format!("/api/apps/{app}/environments/{env}/certificate"),
                        )
                        .json(&json!({ "cert_pem": cert_pem, "key_pem": key_pem })),
                )
                .await
                .with_context(|| {
                    format!("certificate {} / key {}", cert.display(), key.display())
                })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
                return Ok(());
            }
            let hosts: Vec<&str> = r["hosts"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            if hosts.is_empty() {
                println!(
                    "stored the certificate of {app}/{env}; start the server with --domain to serve it by host name"
                );
            } else {
                println!("serving {} with the new certificate", hosts.join(", "));
            }
            Ok(())
        }
    }
}
