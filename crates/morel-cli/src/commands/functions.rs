//! `morel fn …`, `morel compiler`, `morel doctor`.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use reqwest::Method;
use serde_json::{Value, json};

use crate::args::{CompilerArgs, FnCommand};
use crate::client::Client;

pub async fn run(cmd: FnCommand) -> Result<()> {
    let client = Client::from_settings()?;
    match cmd {
        FnCommand::Create {
            name,
            lang,
            file,
            detach,
            json,
        } => {
            let source = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let f: Value = client
                .json(
                    client
                        .request(Method::POST, "/functions")
                        .json(&json!({ "name": name, "language": lang, "source": source })),
                )
                .await?;
            let id = f["id"].as_str().unwrap_or_default().to_owned();
            if !json {
                match f["replaced"].as_str() {
                    Some(old) => eprintln!(
                        "registered {name} ({id}) in place of the FAILED {old}; compiling {lang}…"
                    ),
                    None => eprintln!("registered {name} ({id}); compiling {lang}…"),
                }
            }
            let mut f = f;
            if !detach {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
                while !matches!(f["status"].as_str(), Some("READY" | "FAILED")) {
                    if tokio::time::Instant::now() > deadline {
                        bail!("{name} is still {} after 5 minutes", f["status"]);
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    f = client.get(&format!("/functions/{id}")).await?;
                }
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&f)?);
            } else {
                println!("{id}  {}", f["status"].as_str().unwrap_or("?"));
            }
            if f["status"] == "FAILED" {
                bail!(
                    "compilation of {name} failed:\n{}",
                    f["compile_error"].as_str().unwrap_or("")
                );
            }
        }
        FnCommand::Ls(j) => {
            let list: Vec<Value> = client.get("/functions").await?;
            if j.json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!(
                    "{:<38} {:<20} {:<15} {:<10}",
                    "ID", "NAME", "LANGUAGE", "STATUS"
                );
                for f in list {
                    println!(
                        "{:<38} {:<20} {:<15} {:<10}",
                        f["id"].as_str().unwrap_or(""),
                        f["name"].as_str().unwrap_or(""),
                        f["language"].as_str().unwrap_or(""),
                        f["status"].as_str().unwrap_or("")
                    );
                }
            }
        }
        FnCommand::Exec {
            function,
            input,
            timeout_ms,
            json,
        } => {
            let input: Value = serde_json::from_str(&input)
                .with_context(|| format!("--input is not valid JSON: {input}"))?;
            let path = format!("/functions/{}/execute", segment(&function));
            let e: Value = client
                .json(
                    client
                        .request(Method::POST, &path)
                        .json(&json!({ "input": input, "timeout_ms": timeout_ms })),
                )
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&e)?);
            } else if e["status"] == "COMPLETED" {
                println!("{}", e["output"]);
            } else {
                bail!(
                    "execution {} {}: {}",
                    e["id"].as_str().unwrap_or(""),
                    e["status"].as_str().unwrap_or(""),
                    e["errorMessage"].as_str().unwrap_or("")
                );
            }
        }
        FnCommand::Executions { function, json } => {
            let list: Vec<Value> = client
                .get(&format!("/functions/{}/executions", segment(&function)))
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for e in list {
                    println!(
                        "{}  {:<10} {:>6} ms  {}",
                        e["id"].as_str().unwrap_or(""),
                        e["status"].as_str().unwrap_or(""),
                        e["duration_ms"],
                        e["errorMessage"].as_str().unwrap_or("")
                    );
                }
            }
        }
        FnCommand::Rm { function } => {
            let done: Value = client
                .json(client.request(
                    Method::DELETE,
                    &format!("/functions/{}", segment(&function)),
                ))
                .await?;
            println!(
                "deleted {} ({}) and its executions",
                done["name"].as_str().unwrap_or(&function),
                done["deleted"].as_str().unwrap_or("")
            );
        }
    }
    Ok(())
}

/// A function's name or id as one URL path segment: names may hold any printable character.
fn segment(reference: &str) -> String {
    let mut out = String::with_capacity(reference.len());
    for b in reference.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub async fn compiler(args: CompilerArgs) -> Result<()> {
    let store = super::transfer::open_store(args.database_url.as_deref(), &args.state_dir).await?;
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    eprintln!(
        "compiler service consuming {} in {}",
        morel_control::functions::JOBS_QUEUE,
        args.state_dir.display()
    );
    let task = tokio::spawn(morel_control::functions::run_compiler(
        store,
        morel_compiler::Toolchains::detect(),
        morel_compiler::CompileLimits::default(),
        args.visibility_timeout_ms.map(Duration::from_millis),
        stop,
    ));
    let _ = tokio::signal::ctrl_c().await;
    let _ = stop_tx.send(true);
    let _ = task.await;
    Ok(())
}

pub async fn doctor(json: bool) -> Result<()> {
    let statuses = morel_compiler::Toolchains::detect().doctor().await;
    crate::containment::start()?;
    if json {
        let rows: Vec<Value> = statuses
            .iter()
            .map(
                |s| json!({ "language": s.language, "available": s.available, "detail": s.detail }),
            )
            .collect();
        let doc = json!({ "languages": rows, "containment": morel_agent::protections() });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    println!("function languages:");
    for s in &statuses {
        println!(
            "  {:<15} {:<4} {}",
            format!("{:?}", s.language).to_lowercase(),
            if s.available { "ok" } else { "no" },
            s.detail
        );
    }
    if statuses.iter().any(|s| !s.available) {
        println!("  install the missing toolchains with scripts/setup-toolchains");
    }
    println!("\nworkload containment (morel up, server and agent on this machine, as this user):");
    for p in morel_agent::protections() {
        println!(
            "  {:<26} {:<3} {}",
            p.layer,
            if p.enabled { "on" } else { "off" },
            p.detail
        );
    }
    Ok(())
}
