//! `morel server --database-url postgres://…`: the control plane and the gateway, with the
//! instances on joined agents (`morel agent --join`). Several servers may run on one database
//! (and one shared state directory for bundles, keys and the admin token); every one serves the
//! API and forwards calls, and the one holding each role's lease runs the node-loss watch and
//! the scheduler. When it dies another takes over.
//!
//! `morel gateway --database-url postgres://…` is the call path alone: a stateless edge that
//! forwards calls to agents from the placements it polls, and serves nothing else.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use morel_agent::{Agent, AgentConfig, BlobDir, LogHub};
use morel_bundle::SigningKey;
use morel_control::ServerConfig;
use morel_control::remote::RemoteTable;
use morel_gateway::RouteTable;
use morel_store::KeyRow;

use crate::args::{GatewayArgs, ServerArgs};
use crate::settings;

pub async fn run(args: ServerArgs) -> Result<()> {
    if !morel_store::is_postgres_url(&args.database_url) {
        anyhow::bail!(
            "--database-url must be a PostgreSQL URL (postgres://user@host:port/db) for morel server; \
             on one machine use morel up"
        );
    }
    let state_dir = &args.state_dir;
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("creating state directory {}", state_dir.display()))?;
    let state_dir = std::fs::canonicalize(state_dir)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let mut cfg = ServerConfig::new(addr, state_dir.clone());
    cfg.remote_agents = true;

    crate::containment::start()?;
    let token = super::up::admin_token(&cfg.admin_token_path())?;
    let store = super::transfer::open_store(Some(&args.database_url), &state_dir).await?;
    let server_key = SigningKey::load_or_generate(&cfg.server_key_path())?;
    let cli_key = SigningKey::load_or_generate(&settings::signing_key_path())?;
    for (key, name) in [(&server_key, "server"), (&cli_key, "local-cli")] {
        let public = key.public();
        store
            .trust_key(&KeyRow {
                key_id: public.key_id(),
                public_key: public.to_text(),
                name: name.into(),
                created_at: morel_core::time::now_ms(),
            })
            .await?;
    }

    let logs = LogHub::start(store.clone());
    let blobs = BlobDir::new(state_dir.join("blobs"));
    let engine = morel_runtime_wasm::WasmEngine::new(morel_runtime_wasm::EngineConfig::new(
        state_dir.join("wasm-cache"),
    ))?;
    // The deployer's in-process agent is only used for key bookkeeping here: releases are
    // activated and their instances placed on joined agents (cfg.remote_agents).
    let agent = Agent::new(
        AgentConfig {
            node: "server".into(),
            state_dir: state_dir.join("server-agent"),
            python: cfg.python.clone(),
            node_bin: cfg.node.clone(),
            npm: cfg.npm.clone(),
            gateway_url: cfg.public_url.clone(),
        },
        store.clone(),
        blobs.clone(),
        logs.clone(),
        engine.clone(),
        morel_compiler::Toolchains::detect(),
    )?;
    let routes = Arc::new(RouteTable::new());
    let functions = morel_control::functions::Functions::new(store.clone(), engine);
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(functions.clone().consume_results(stop.clone()));
    if !args.no_compiler {
        tokio::spawn(morel_control::functions::run_compiler(
            store.clone(),
            morel_compiler::Toolchains::detect(),
            morel_compiler::CompileLimits::default(),
            None,
            stop.clone(),
        ));
    }
    let deployer = morel_control::deploy::Deployer::new(
        cfg.clone(),
        store.clone(),
        agent,
        routes.clone(),
        blobs,
        logs,
        server_key,
    );
    let ttl = morel_control::cluster::DEFAULT_NODE_TTL;
    tokio::spawn(morel_control::cluster::run_node_watch(
        store.clone(),
        ttl,
        Duration::from_secs(1),
        |_| {},
        stop.clone(),
    ));
    tokio::spawn(morel_control::scheduler::run_scheduler(
        store.clone(),
        Duration::from_millis(500),
        stop.clone(),
    ));
    let table = Arc::new(RemoteTable::default());
    tokio::spawn(morel_control::remote::run_refresh(
        store,
        table.clone(),
        ttl,
        Duration::from_millis(500),
        stop,
    ));

    settings::save_login(&settings::Login {
        url: cfg.public_url.clone(),
        token: token.clone(),
    })?;
    crate::containment::lock_state_dir(&state_dir)?;
    eprintln!("Morel is listening on {}", cfg.public_url);
    eprintln!("  role:        server (instances run on joined agents)");
    eprintln!("  state:       {}", state_dir.display());
    eprintln!("  admin token: {}", cfg.admin_token_path().display());
    eprintln!(
        "  join agents: morel agent --join {} --token \"$(cat {})\"",
        cfg.public_url,
        cfg.admin_token_path().display()
    );

    // Environments' routes answer, but previews, git deploys and host names are `morel up`'s
    // for now: no deploy worker or TLS listener runs here.
    let envs = morel_control::environments::Environments::new(deployer.clone(), None, None);
    let server = morel_control::Server {
        deployer: deployer.clone(),
        functions,
        routes,
        envs,
        token: morel_control::Token::new(&token),
    };
    // Calls are forwarded to agents; everything else is the usual API.
    let app = morel_control::remote::router(table).fallback_service(server.router());
    morel_control::listen::serve(listener, app, None, super::up::shutdown_signal(), GRACE).await?;
    let _ = stop_tx.send(true);
    Ok(())
}

/// How long open requests get to be answered once a stop is asked for.
const GRACE: Duration = Duration::from_secs(10);

/// `morel gateway`: forwards `/{prefix}/{app}/{version}/call/{func}` to agents; no API.
pub async fn gateway(args: GatewayArgs) -> Result<()> {
    if !morel_store::is_postgres_url(&args.database_url) {
        anyhow::bail!(
            "--database-url must be the servers' PostgreSQL URL (postgres://user@host:port/db)"
        );
    }
    let store = morel_store::open(&args.database_url)
        .await
        .with_context(|| format!("opening {}", morel_store::redact_url(&args.database_url)))?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let table = Arc::new(RemoteTable::default());
    tokio::spawn(morel_control::remote::run_refresh(
        store,
        table.clone(),
        morel_control::cluster::DEFAULT_NODE_TTL,
        Duration::from_millis(500),
        stop,
    ));
    eprintln!("Morel gateway is listening on http://{addr}");
    let app = morel_control::remote::router(table).fallback(|| async {
        (
            axum::http::StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({
                "error": "this is a Morel gateway: only /{prefix}/{app}/{version}/call/{func} is served here",
                "type": "NotFound"
            })),
        )
    });
    morel_control::listen::serve(listener, app, None, super::up::shutdown_signal(), GRACE).await?;
    let _ = stop_tx.send(true);
    Ok(())
}
