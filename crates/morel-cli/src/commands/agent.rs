//! `morel agent --join URL[,URL…] --token T`: a machine joining a Morel installation. It
//! registers its node (name, address, capacity) with a server, heartbeats so the leader does
//! not mark it lost, re-registers when the server forgot it, answers `GET /healthz`, and runs
//! the instances the scheduler placed on it (`node_agent.rs`), serving their calls on its
//! address. With several server URLs it moves to the next one when the current one fails.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use morel_agent::{Agent, AgentConfig, BlobDir, LogHub};
use morel_gateway::{CallLimits, RouteTable};
use reqwest::{Method, StatusCode};

use super::node_agent::{NodeAgent, Servers};
use crate::args::AgentArgs;

/// How often the agent asks for its placements.
const SYNC_EVERY: Duration = Duration::from_millis(500);

pub async fn run(args: AgentArgs) -> Result<()> {
    let mut joins = Vec::new();
    for j in &args.join {
        let j = j.trim().trim_end_matches('/').to_owned();
        if !(j.starts_with("http://") || j.starts_with("https://")) {
            bail!("--join must be the server's URL (http://host:port), got {j:?}");
        }
        joins.push(j);
    }
    let node = match args.node {
        Some(n) => n,
        None => default_node_name(),
    };
    let state_dir = &args.state_dir;
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("creating state directory {}", state_dir.display()))?;
    let state_dir = std::fs::canonicalize(state_dir)?;
    crate::containment::start()?;
    crate::containment::lock_state_dir(&state_dir)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr: SocketAddr = listener.local_addr()?;
    let address = match &args.advertise {
        Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
            url.trim_end_matches('/').to_owned()
        }
        Some(url) => bail!("--advertise {url:?}: give a URL, such as http://10.0.0.5:7000"),
        None if addr.ip().is_unspecified() => bail!(
            "listening on {addr}, which servers cannot dial: give --advertise \
             http://THIS-MACHINE:{} (the address servers reach this agent at)",
            addr.port()
        ),
        None => format!("http://{addr}"),
    };

    // The agent's own store holds only what its in-process agent records locally (instance
    // rows, logs); the cluster's state is on the servers.
    let store = morel_store::open(&state_dir.join("agent.db").display().to_string())
        .await
        .context("opening the agent's local store")?;
    let tools = morel_control::ServerConfig::new(addr, state_dir.clone());
    let blobs = BlobDir::new(state_dir.join("blobs"));
    let engine = morel_runtime_wasm::WasmEngine::new(morel_runtime_wasm::EngineConfig::new(
        state_dir.join("wasm-cache"),
    ))?;
    let agent = Agent::new(
        AgentConfig {
            node: node.clone(),
            state_dir: state_dir.clone(),
            python: tools.python.clone(),
            node_bin: tools.node.clone(),
            npm: tools.npm.clone(),
            gateway_url: joins[0].clone(),
        },
        store.clone(),
        blobs.clone(),
        LogHub::start(store.clone()),
        engine,
        morel_compiler::Toolchains::detect(),
    )?;
    let store_for_logs = store;
    let routes = Arc::new(RouteTable::new());
    let health = node.clone();
    let app = axum::Router::new()
        .route(
            "/healthz",
            axum::routing::get(move || {
                let node = health.clone();
                async move { axum::Json(serde_json::json!({"node": node, "status": "ok"})) }
            }),
        )
        .merge(morel_gateway::router(routes.clone(), CallLimits::default()));
    // Served like every listener of Morel: the fast lane for calls, the same connection limits.
    let lane = morel_gateway::Lane::new(routes.clone(), CallLimits::default());
    let (stop_serving, serving_stopped) = tokio::sync::oneshot::channel::<()>();
    let serve = tokio::spawn(morel_control::listen::serve(
        listener,
        app,
        Some(lane),
        async move {
            let _ = serving_stopped.await;
        },
        Duration::from_secs(5),
    ));

    let servers = Arc::new(Servers::new(joins, args.token.clone())?);
    let register = serde_json::json!({"id": node, "address": address, "capacity": args.capacity});
    send(&servers, "/api/nodes", Some(&register))
        .await
        .with_context(|| format!("joining {}", servers.url()))?;
    eprintln!(
        "agent {node} joined {} (address {address}, capacity {})",
        servers.url(),
        args.capacity
    );
    let runner = NodeAgent::new(
        node.clone(),
        address.clone(),
        servers.clone(),
        agent,
        blobs,
        routes,
    );
    let sync = tokio::spawn(runner.run(SYNC_EVERY));
    let shipper = tokio::spawn(ship_logs(
        store_for_logs,
        servers.clone(),
        node.clone(),
        morel_core::time::now_ms(),
    ));

    let heartbeat_path = format!("/api/nodes/{node}/heartbeat");
    let every = Duration::from_millis(args.heartbeat_ms.max(100));
    let beat = async {
        loop {
            tokio::time::sleep(every).await;
            match send(&servers, &heartbeat_path, None).await {
                Ok(Sent::Done) => {}
                Ok(Sent::UnknownNode) => {
                    tracing::warn!(node = %node, "the server forgot this node: registering again");
                    if let Err(e) = send(&servers, "/api/nodes", Some(&register)).await {
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
    sync.abort();
    shipper.abort();
    let _ = stop_serving.send(());
    let _ = serve.await;
    Ok(())
}

/// How often the agent ships its instances' new output to a server.
const SHIP_LOGS_EVERY: Duration = Duration::from_secs(1);

/// Ships the output its instances wrote to the agent's own store (since `since_ms`, this
/// run's start) to a server (`POST /api/nodes/{node}/logs`), which records it in the shared
/// store, so `morel logs` on any server shows it. A failed shipment is retried on the next
/// round (servers fail over like every call of the agent); at most
/// `MAX_SHIPPED_LINES` lines per request.
async fn ship_logs(
    store: Arc<dyn morel_store::Store>,
    servers: Arc<Servers>,
    node: String,
    since_ms: i64,
) {
    let path = format!("/api/nodes/{node}/logs");
    let mut shipped: std::collections::HashMap<morel_store::AppKey, i64> = Default::default();
    loop {
        tokio::time::sleep(SHIP_LOGS_EVERY).await;
        if let Ok(instances) = store.list_instances(None).await {
            for i in instances {
                shipped.entry(i.app).or_insert(0);
            }
        }
        for (app, after) in shipped.iter_mut() {
            let limit = morel_control::api::nodes::MAX_SHIPPED_LINES as i64;
            let Ok(rows) = store.read_logs(app, *after, since_ms, limit).await else {
                continue;
            };
            let Some(last) = rows.last().map(|r| r.id) else {
                continue;
            };
            let lines: Vec<serde_json::Value> = rows
                .into_iter()
                .map(|r| {
                    serde_json::json!({
                        "namespace": app.namespace.as_str(),
                        "app": app.name.as_str(),
                        "ts": r.ts,
                        "stream": r.stream.as_str(),
                        "source": r.source,
                        "line": r.line,
                    })
                })
                .collect();
            match send(&servers, &path, Some(&serde_json::Value::Array(lines))).await {
                Ok(_) => *after = last,
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "shipping logs; retrying"),
            }
        }
    }
}

enum Sent {
    Done,
    /// The server answered 404 to a heartbeat: it has no such node.
    UnknownNode,
}

async fn send(servers: &Servers, path: &str, body: Option<&serde_json::Value>) -> Result<Sent> {
    let resp = servers.send(Method::POST, path, body).await?;
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
