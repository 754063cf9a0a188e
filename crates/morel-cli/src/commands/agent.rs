//! `morel agent --join URL --token T`: a machine joining a Morel installation. So far it
//! registers its node (name, address, capacity) with the server, heartbeats so the server's
//! leader does not mark it lost, re-registers when the server forgot it, and answers
//! `GET /healthz` on its address. Running the instances placed on it is the next step.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use reqwest::StatusCode;

use crate::args::AgentArgs;

pub async fn run(args: AgentArgs) -> Result<()> {
    let join = args.join.trim_end_matches('/').to_owned();
    if !(join.starts_with("http://") || join.starts_with("https://")) {
        bail!("--join must be the server's URL (http://host:port), got {join:?}");
    }
    let node = match args.node {
        Some(n) => n,
        None => default_node_name(),
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr: SocketAddr = listener.local_addr()?;
    let address = format!("http://{addr}");
    let health = node.clone();
    let app = axum::Router::new().route(
        "/healthz",
        axum::routing::get(move || {
            let node = health.clone();
            async move { axum::Json(serde_json::json!({"node": node, "status": "ok"})) }
        }),
    );
    let serve = tokio::spawn(async move { axum::serve(listener, app).await });

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let register = serde_json::json!({"id": node, "address": address, "capacity": args.capacity});
    send(&http, &join, &args.token, "/api/nodes", Some(&register))
        .await
        .with_context(|| format!("joining {join}"))?;
    eprintln!(
        "agent {node} joined {join} (address {address}, capacity {})",
        args.capacity
    );

    let heartbeat_path = format!("/api/nodes/{node}/heartbeat");
    let every = Duration::from_millis(args.heartbeat_ms.max(100));
    let beat = async {
        loop {
            tokio::time::sleep(every).await;
            match send(&http, &join, &args.token, &heartbeat_path, None).await {
                Ok(Sent::Done) => {}
                Ok(Sent::UnknownNode) => {
                    tracing::warn!(node = %node, "the server forgot this node: registering again");
                    if let Err(e) =
                        send(&http, &join, &args.token, "/api/nodes", Some(&register)).await
                    {
                        tracing::warn!(error = %format!("{e:#}"), "registering again");
                    }
                }
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "heartbeat failed; retrying"),
            }
        }
    };
    tokio::select! {
        _ = beat => {}
        _ = super::up::shutdown_signal() => {}
    }
    serve.abort();
    Ok(())
}

enum Sent {
    Done,
    /// The server answered 404 to a heartbeat: it has no such node.
    UnknownNode,
}

async fn send(
    http: &reqwest::Client,
    join: &str,
    token: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> Result<Sent> {
    let mut req = http.post(format!("{join}{path}")).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("cannot reach {join}"))?;
    match resp.status() {
        s if s.is_success() => Ok(Sent::Done),
        StatusCode::NOT_FOUND if body.is_none() => Ok(Sent::UnknownNode),
        s => {
            let text = resp.text().await.unwrap_or_default();
            bail!("{path}: HTTP {}: {text}", s.as_u16())
        }
    }
}

/// The machine's host name, lowercased, as the default node name.
fn default_node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_ascii_lowercase())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into())
}
