//! `morel call | ls | inspect | logs | delete`.

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::Value;

use crate::args::{CallArgs, DeleteArgs, InspectArgs, LogsArgs, RollbackArgs};
use crate::client::Client;

pub async fn call(args: CallArgs) -> Result<()> {
    let client = Client::from_settings()?;
    let url = format!(
        "{}/default/{}/{}/call/{}",
        client.login.url, args.app, args.release, args.function
    );
    let http = reqwest::Client::new();
    let req = match &args.data {
        Some(d) => {
            serde_json::from_str::<Value>(d)
                .with_context(|| format!("--data is not valid JSON: {d}"))?;
            http.post(&url)
                .header("content-type", "application/json")
                .body(d.clone())
        }
        None => http.post(&url),
    };
    let resp = req
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    if !resp.status().is_success() {
        return Err(crate::client::ApiError::from_response(resp).await.into());
    }
    let text = resp.text().await?;
    println!("{text}");
    Ok(())
}

pub async fn ls(json: bool) -> Result<()> {
    let client = Client::from_settings()?;
    let apps: Vec<Value> = client.get("/api/apps").await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&apps)?);
        return Ok(());
    }
    if apps.is_empty() {
        println!("no apps deployed (try `morel deploy examples/hello-python`)");
        return Ok(());
    }
    println!("{:<24} {:<8} {:<12} URL", "APP", "RELEASE", "STATUS");
    for a in apps {
        let s = |k: &str| a.get(k).and_then(|v| v.as_str()).unwrap_or("-").to_owned();
        println!(
            "{:<24} {:<8} {:<12} {}",
            s("name"),
            s("active_release"),
            s("status"),
            s("url")
        );
    }
    Ok(())
}

pub async fn inspect(args: InspectArgs) -> Result<()> {
    let client = Client::from_settings()?;
    let app: Value = client.get(&format!("/api/apps/{}", args.app)).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&app)?);
        return Ok(());
    }
    let s = |v: &Value, k: &str| {
        v.get(k)
            .and_then(|x| {
                x.as_str()
                    .map(str::to_owned)
                    .or_else(|| (!x.is_null()).then(|| x.to_string()))
            })
            .unwrap_or_else(|| "-".into())
    };
    println!("app:     {}", s(&app, "name"));
    println!("status:  {}", s(&app, "status"));
    println!("release: {}", s(&app, "active_release"));
    println!("url:     {}", s(&app, "url"));
    if let Some(service) = app["urls"]["service"].as_str() {
        println!("service: {service}");
    }
    let list = |k: &str| {
        app.get(k)
            .and_then(|v| v.as_array())
            .cloned()
            .unwrap_or_default()
    };
    let routes = app["urls"]["routes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !routes.is_empty() {
        println!("\nROUTES");
        for r in routes {
            println!(
                "  {:<7} {:<24} {:<20} {}",
                s(&r, "method"),
                s(&r, "path"),
                s(&r, "function"),
                s(&r, "url")
            );
        }
    }
    println!("\nFUNCTIONS");
    for f in list("functions") {
        let params: Vec<String> = f
            .get("params")
            .and_then(|p| p.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        println!(
            "  {}({})  [{}]  {}",
            s(&f, "name"),
            params.join(", "),
            s(&f, "resource"),
            s(&f, "url")
        );
    }
    println!("\nRESOURCES");
    for r in list("resources") {
        println!(
            "  {:<16} {:<8} {:<9} hash {}",
            s(&r, "name"),
            s(&r, "runtime"),
            s(&r, "status"),
            s(&r, "config_hash")
        );
    }
    println!("\nINSTANCES");
    for i in list("instances") {
        println!(
            "  {}  {:<12} {:<9} pid {:<8} restarts {}  {}",
            s(&i, "id"),
            s(&i, "resource"),
            s(&i, "state"),
            s(&i, "pid"),
            s(&i, "restarts"),
            i.get("last_error").and_then(|e| e.as_str()).unwrap_or("")
        );
    }
    println!("\nRELEASES");
    for r in list("releases") {
        println!(
            "  {:<5} {:<11} {}  {}  {}",
            s(&r, "version"),
            s(&r, "status"),
            &s(&r, "digest")[..12.min(s(&r, "digest").len())],
            s(&r, "created_at"),
            r.get("error").and_then(|e| e.as_str()).unwrap_or("")
        );
    }
    Ok(())
}

fn print_log(l: &Value, json: bool) {
    if json {
        println!("{l}");
        return;
    }
    let s = |k: &str| l.get(k).and_then(|v| v.as_str()).unwrap_or("");
    let marker = if s("stream") == "event" {
        "[morel]"
    } else {
        ""
    };
    let source = if s("stream") == "event" {
        String::new()
    } else {
        s("source")
            .chars()
            .rev()
            .take(6)
            .collect::<String>()
            .chars()
            .rev()
            .collect()
    };
    println!("{} {}{} {}", s("ts"), marker, source, s("line"));
}

pub async fn logs(args: LogsArgs) -> Result<()> {
    let client = Client::from_settings()?;
    let mut path = format!("/api/apps/{}/logs?follow={}", args.app, args.follow);
    if let Some(since) = &args.since {
        path.push_str(&format!("&since={since}"));
    }
    if !args.follow {
        let lines: Vec<Value> = client.get(&path).await?;
        for l in &lines {
            print_log(l, args.json);
        }
        return Ok(());
    }
    let resp = client.send(client.request(Method::GET, &path)).await?;
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    while let Some(chunk) = body.next().await {
        buf.push_str(&String::from_utf8_lossy(&chunk?));
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            for line in event.lines() {
                if let Some(data) = line.strip_prefix("data:")
                    && let Ok(v) = serde_json::from_str::<Value>(data.trim())
                {
                    print_log(&v, args.json);
                }
            }
        }
    }
    Ok(())
}

pub async fn delete(args: DeleteArgs) -> Result<()> {
    super::confirm(
        &format!(
            "Delete app {} with all its environments, releases and data?",
            args.app
        ),
        args.yes,
    )?;
    let client = Client::from_settings()?;
    client
        .send(client.request(Method::DELETE, &format!("/api/apps/{}", args.app)))
        .await?;
    println!("deleted {}", args.app);
    Ok(())
}

pub async fn rollback(args: RollbackArgs) -> Result<()> {
    let client = Client::from_settings()?;
    let release = match &args.to {
        Some(v) => Some(
            v.trim_start_matches('v')
                .parse::<i64>()
                .with_context(|| format!("--to {v:?}: expected a release like v2"))?,
        ),
        None => None,
    };
    let r: Value = client
        .json(
            client
                .request(Method::POST, &format!("/api/apps/{}/rollback", args.app))
                .json(&serde_json::json!({ "release": release, "env": args.env })),
        )
        .await?;
    let n = r["number"].as_i64().unwrap_or(0);
    // A preview's releases live under its host app (`{app}--{env}`).
    let host = morel_gateway::environment_host(&args.app, &args.env);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(600);
    loop {
        let r: Value = client
            .get(&format!("/api/apps/{host}/releases/v{n}"))
            .await?;
        match r["status"].as_str() {
            Some("ready") if args.json => {
                println!("{}", serde_json::to_string_pretty(&r)?);
                return Ok(());
            }
            Some("ready") => {
                println!("{} is back on v{n}", args.app);
                return Ok(());
            }
            Some("failed") => bail!(
                "rollback to v{n} failed: {}",
                r["error"].as_str().unwrap_or("")
            ),
            _ if tokio::time::Instant::now() > deadline => {
                bail!("rollback to v{n} did not finish in 10 minutes")
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(150)).await,
        }
    }
}
