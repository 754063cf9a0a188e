//! `morel server --database-url postgres://…`: the control plane and the gateway, with the
//! instances on joined agents (`morel agent --join`). Several servers may run on one database
//! (each with a state directory of its own: what they share is in the store); every one serves the
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
    let store = super::transfer::open_store(Some(&args.database_url), &state_dir).await?;
    let (admin, local_token) = server_token(&*store, &cfg.admin_token_path()).await?;
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
    deployer
        .share_secrets_key()
        .await
        .context("opening the secrets key")?;
    deployer
        .backfill_bundle_contents()
        .await
        .map_err(|e| anyhow::anyhow!("copying bundles into the store: {}", e.message))?;
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
        stop.clone(),
    ));
    // Async jobs: every server reads the shared queue (each job is read by one at a time) and
    // runs its jobs on the agents. A server that dies mid-job leaves it to come back after
    // its visibility timeout.
    let _ = deployer
        .remote
        .set(morel_control::remote::Remote::new(table.clone()));
    tokio::spawn(morel_control::jobs::run_jobs(deployer.clone(), 16, stop));

    if let Some(token) = &local_token {
        settings::save_login(&settings::Login {
            url: cfg.public_url.clone(),
            token: token.clone(),
        })?;
    }
    crate::containment::lock_state_dir(&state_dir)?;
    eprintln!("Morel is listening on {}", cfg.public_url);
    eprintln!("  role:        server (instances run on joined agents)");
    eprintln!("  state:       {}", state_dir.display());
    if local_token.is_some() {
        eprintln!("  admin token: {}", cfg.admin_token_path().display());
        eprintln!(
            "  join agents: morel agent --join {} --token \"$(cat {})\"",
            cfg.public_url,
            cfg.admin_token_path().display()
        );
    } else {
        eprintln!(
            "  admin token: the installation's (in the admin.token of the server that started first)"
        );
    }

    // Environments' routes answer, but previews, git deploys and host names are `morel up`'s
    // for now: no deploy worker or TLS listener runs here.
    let envs = morel_control::environments::Environments::new(deployer.clone(), None, None);
    let server = morel_control::Server {
        deployer: deployer.clone(),
        functions,
        routes,
        envs,
        token: admin,
    };
    // Calls are forwarded to agents; everything else is the usual API.
    let app = morel_control::remote::router(table, Some(server.router()));
    morel_control::listen::serve(listener, app, None, super::up::shutdown_signal(), GRACE).await?;
    let _ = stop_tx.send(true);
    Ok(())
}

/// The installation's admin token, which every server of one database accepts: the one the
/// store holds, or, on the first server to start, this state directory's (created if
/// missing). Returns it and its plain text when this state directory has it.
async fn server_token(
    store: &dyn morel_store::Store,
    path: &std::path::Path,
) -> Result<(morel_control::Token, Option<String>)> {
    use morel_control::auth::ADMIN_TOKEN_SETTING;
    let local = std::fs::read_to_string(path)
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty());
    if let Some(hash) = store.get_setting(ADMIN_TOKEN_SETTING).await? {
        let token = morel_control::Token::from_hash_hex(&hash)
            .ok_or_else(|| anyhow::anyhow!("the store's admin token hash is corrupt"))?;
        return Ok(match local {
            Some(t) if token.matches(&t) => (token, Some(t)),
            Some(_) => {
                tracing::warn!(
                    path = %path.display(),
                    "this state directory's admin.token is not the installation's admin token: \
                     ignoring it (use the token of the server that started first)"
                );
                (token, None)
            }
            None => (token, None),
        });
    }
    let plain = super::up::admin_token(path)?;
    let (token, mine) = morel_control::auth::installation_token(store, &plain).await?;
    if !mine {
        // Another server recorded its token first: this file would only mislead.
        let _ = std::fs::remove_file(path);
    }
    Ok((token, mine.then_some(plain)))
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
    let not_api = axum::Router::new().fallback(|| async {
        (
            axum::http::StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({
                "error": "this is a Morel gateway: it serves calls (/{prefix}/{app}/{version}/call/{func}) and apps' routes (/{app}/path), no API",
                "type": "NotFound"
            })),
        )
    });
    let app = morel_control::remote::router(table, Some(not_api));
    morel_control::listen::serve(listener, app, None, super::up::shutdown_signal(), GRACE).await?;
    let _ = stop_tx.send(true);
    Ok(())
}
