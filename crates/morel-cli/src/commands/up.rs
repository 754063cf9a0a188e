//! `morel up`: control plane + gateway + local agent in one process, on SQLite (default) or on
//! PostgreSQL (`--database-url`).

use std::sync::Arc;

use anyhow::{Context, Result};
use morel_agent::{Agent, AgentConfig, BlobDir, LogHub};
use morel_bundle::SigningKey;
use morel_control::ServerConfig;
use morel_gateway::RouteTable;
use morel_store::KeyRow;

use crate::args::UpArgs;
use crate::settings;

pub async fn run(args: UpArgs) -> Result<()> {
    let state_dir = &args.state_dir;
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("creating state directory {}", state_dir.display()))?;
    let state_dir = std::fs::canonicalize(state_dir)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let mut cfg = ServerConfig::new(addr, state_dir.clone());
    cfg.domain = args.domain.clone();
    cfg.keep_releases = args.keep_releases;
    let tls_listener = match args.tls_listen {
        Some(a) => Some(
            tokio::net::TcpListener::bind(a)
                .await
                .with_context(|| format!("cannot listen on {a} (--tls-listen)"))?,
        ),
        None => None,
    };
    let tls_url = match &tls_listener {
        Some(l) => Some(format!("https://{}", l.local_addr()?)),
        None => None,
    };

    crate::containment::start()?;
    let token = admin_token(&cfg.admin_token_path())?;
    let store = super::transfer::open_store(args.database_url.as_deref(), &state_dir).await?;
    // `morel up` owns its database: its state directory's token is the installation's
    // (a new admin.token file rotates it).
    store
        .set_setting(
            morel_control::auth::ADMIN_TOKEN_SETTING,
            &morel_control::Token::new(&token).hash_hex(),
        )
        .await
        .context("recording the admin token")?;
    // `morel up` runs its own agent as node "local": two of them on one database would take
    // each other's instances for stale ones. Until the server/agent roles split, one at a time.
    let _single = store
        .try_lead("morel up")
        .await
        .context("checking for another morel up on this database")?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "another `morel up` is already running on this database; stop it first \
                 (several servers on one database need the many-machine roles)"
            )
        })?;

    // The server signs packages it builds itself; the local CLI signs what it deploys. Both are trusted.
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
    // One wasm engine per process: compiled functions and wasm resources of apps share it.
    let engine = morel_runtime_wasm::WasmEngine::new(morel_runtime_wasm::EngineConfig::new(
        state_dir.join("wasm-cache"),
    ))?;
    let agent = Agent::new(
        AgentConfig {
            node: "local".into(),
            state_dir: state_dir.clone(),
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
    routes.edge().set_domain(
        args.edge_domain
            .clone()
            .or_else(|| std::env::var(morel_core::env_vars::MOREL_EDGE_DOMAIN).ok())
            .or_else(|| args.domain.clone())
            .filter(|d| !d.trim().is_empty()),
    );
    let functions = morel_control::functions::Functions::new(store.clone(), engine);
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(functions.clone().consume_results(stop.clone()));
    let stop_jobs = stop.clone();
    if !args.no_compiler {
        tokio::spawn(morel_control::functions::run_compiler(
            store.clone(),
            morel_compiler::Toolchains::detect(),
            morel_compiler::CompileLimits::default(),
            None,
            stop,
        ));
    }
    let deployer = morel_control::deploy::Deployer::new(
        cfg.clone(),
        store,
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
    deployer
        .boot()
        .await
        .map_err(|e| anyhow::anyhow!("restoring deployments: {}", e.message))?;
    let envs = morel_control::environments::Environments::new(
        deployer.clone(),
        cfg.domain.clone(),
        tls_url.clone(),
    );
    envs.boot()
        .await
        .map_err(|e| anyhow::anyhow!("restoring environments: {}", e.message))?;
    tokio::spawn(morel_control::git_deploy::run_deploys(
        envs.clone(),
        stop_jobs.clone(),
    ));
    // This is the only process running jobs on this database (`try_lead` above): the jobs the
    // last one was running when it stopped run again now, not after their visibility timeout.
    match deployer
        .store
        .queue_release_all(morel_control::jobs::JOBS_QUEUE)
        .await
    {
        Ok(0) => {}
        Ok(n) => tracing::info!(jobs = n, "jobs interrupted by the last stop run again"),
        Err(e) => tracing::warn!(error = %format!("{e:#}"), "releasing interrupted jobs"),
    }
    tokio::spawn(morel_control::jobs::run_jobs(
        deployer.clone(),
        16,
        stop_jobs.clone(),
    ));
    // Nodes that joined (many machines) are marked lost after missing heartbeats.
    tokio::spawn(morel_control::cluster::run_node_watch(
        deployer.store.clone(),
        morel_control::cluster::DEFAULT_NODE_TTL,
        std::time::Duration::from_secs(1),
        |_| {},
        stop_jobs,
    ));

    settings::save_login(&settings::Login {
        url: cfg.public_url.clone(),
        token: token.clone(),
    })?;
    crate::containment::lock_state_dir(&state_dir)?;
    eprintln!("Morel is listening on {}", cfg.public_url);
    if let Some(u) = &tls_url {
        eprintln!("  https:       {u} (certificates chosen by SNI)");
    }
    eprintln!("  state:       {}", state_dir.display());
    eprintln!("  admin token: {}", cfg.admin_token_path().display());
    eprintln!(
        "  dashboard:   {}/ (sign in with the admin token)",
        cfg.public_url
    );
    eprintln!("  deploy with: morel deploy examples/hello-python");

    let server = morel_control::Server {
        deployer: deployer.clone(),
        functions,
        routes,
        envs: envs.clone(),
        token: morel_control::Token::new(&token),
    };
    if let Some(l) = tls_listener {
        let router = server.router();
        let certs = envs.certs.clone();
        tokio::spawn(async move {
            if let Err(e) = morel_control::tls::serve_tls(l, router, certs, shutdown_signal()).await
            {
                tracing::error!(error = %e, "the TLS listener stopped");
            }
        });
    }
    for dir in args.deploy.clone() {
        let url = cfg.public_url.clone();
        tokio::spawn(async move {
            let deploy = crate::args::DeployArgs {
                dir: dir.clone(),
                git: None,
                branch: None,
                main_branch: None,
                name: None,
                env: "production".into(),
                set: vec![],
                detach: false,
                dry_run: false,
                json: false,
            };
            if let Err(e) = super::deploy::deploy(deploy).await {
                eprintln!("error: deploying {}: {e:#}", dir.display());
            } else {
                eprintln!(
                    "try: curl -X POST {url}/default/<app>/latest/call/<function> -d '{{...}}'"
                );
            }
        });
    }
    morel_control::serve(listener, &server, shutdown_signal()).await?;
    eprintln!("shutting down: stopping instances");
    let _ = stop_tx.send(true);
    deployer.shutdown().await;
    Ok(())
}

/// Reads the admin token, creating it (0600) on first start.
pub(crate) fn admin_token(path: &std::path::Path) -> Result<String> {
    if let Ok(t) = std::fs::read_to_string(path) {
        let t = t.trim().to_owned();
        if !t.is_empty() {
            return Ok(t);
        }
    }
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes)
        .map_err(|e| anyhow::anyhow!("no randomness for the admin token: {e}"))?;
    let token = format!(
        "morel_{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    std::fs::write(path, format!("{token}\n"))
        .with_context(|| format!("writing {}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(token)
}

pub(crate) async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
