//! The deploy service: bundles in, running releases out.
//!
//! A release goes `pending → installing → starting → ready` (or `failed`). Only when every
//! resource of the new release has a ready instance are routes switched to it; the previous
//! release's pools are then stopped. A failed release leaves the previous one serving.
//! At boot, every app's active release is started again from its extracted bundle and cached
//! dependencies, so a restart needs no user action and reinstalls nothing.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use morel_agent::{Agent, BlobDir, LogHub, Running};
use morel_bundle::{PackLimits, Signature, SigningKey, TrustedKeys};
use morel_core::{Digest, ReleaseStatus, ResourceStatus};
use morel_gateway::{AppRoutes, FnRoute, RouteTable};
use morel_manifest::{BuildOptions, Manifest};
use morel_store::{AppKey, BlobRow, ReleaseRow, ResourceRow, Store};

use crate::{ApiError, ServerConfig};

/// Largest bundle accepted on upload.
pub const MAX_BUNDLE_BYTES: usize = 256 << 20;

/// What a new release's config is, from its environment's current config.
#[derive(Clone, Debug)]
pub enum ConfigChange {
    /// These values added or changed, the others kept (`deploy --set`, `env set`).
    Merge(BTreeMap<String, String>),
    /// These values removed (`env unset`); one that is not set is an error.
    Unset(Vec<String>),
    /// Exactly these values (seed 000's deploys carry their whole environment).
    Replace(BTreeMap<String, String>),
}

pub struct Deployer {
    pub cfg: ServerConfig,
    pub store: Arc<dyn Store>,
    pub agent: Arc<Agent>,
    pub routes: Arc<RouteTable>,
    pub blobs: BlobDir,
    pub logs: LogHub,
    pub server_key: SigningKey,
    /// Pools of each app's active release. Written by rollouts and deletes (under the app's
    /// lock), read by inspect views.
    active: Mutex<HashMap<AppKey, Vec<Running>>>,
    /// One lock per app: deploys and deletes of the same app run one at a time.
    app_locks: Mutex<HashMap<AppKey, Arc<tokio::sync::Mutex<()>>>>,
    /// One lock per app: its releases are made one at a time (`create_release`).
    release_locks: Mutex<HashMap<AppKey, Arc<tokio::sync::Mutex<()>>>>,
    /// Seals environments' secrets (see `secrets.rs`).
    pub(crate) sealer: crate::secrets::SecretBox,
    /// A fingerprint of the secrets each (host) app's running pools were started with;
    /// written by rollouts, so a secret change restarts even "unchanged" resources.
    pub(crate) secret_fps: Mutex<HashMap<AppKey, Digest>>,
    /// Writes async jobs' enqueues and outcomes with group commit.
    pub jobs: crate::jobs::JobWriter,
    /// On `morel server`: the apps whose instances run on agents, which its job worker
    /// reaches by forwarding (set once at startup).
    pub remote: std::sync::OnceLock<crate::remote::Remote>,
}

impl Deployer {
    pub fn new(
        cfg: ServerConfig,
        store: Arc<dyn Store>,
        agent: Arc<Agent>,
        routes: Arc<RouteTable>,
        blobs: BlobDir,
        logs: LogHub,
        server_key: SigningKey,
    ) -> Arc<Self> {
        Arc::new(Deployer {
            jobs: crate::jobs::JobWriter::new(store.clone()),
            store,
            agent,
            routes,
            blobs,
            logs,
            server_key,
            active: Default::default(),
            app_locks: Default::default(),
            release_locks: Default::default(),
            sealer: crate::secrets::SecretBox::new(cfg.state_dir.join("keys/secrets.key")),
            secret_fps: Default::default(),
            remote: std::sync::OnceLock::new(),
            cfg,
        })
    }

    pub(crate) fn lock_for(&self, app: &AppKey) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.app_locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(app.clone()).or_default().clone()
    }

    /// Holds the app's lock (deploys, deletes, scale and budget changes run one at a time).
    pub async fn app_lock(&self, app: &AppKey) -> tokio::sync::OwnedMutexGuard<()> {
        self.lock_for(app).lock_owned().await
    }

    /// The trusted keys, as stored; also pushed to the agent.
    pub async fn trusted_keys(&self) -> Result<TrustedKeys, ApiError> {
        let mut keys = TrustedKeys::new();
        for row in self.store.list_keys().await? {
            match morel_bundle::PublicKey::from_text(&row.public_key) {
                Ok(k) => {
                    keys.insert(k);
                }
                Err(e) => {
                    tracing::warn!(key = %row.key_id, error = %e, "ignoring unreadable trusted key")
                }
            }
        }
        self.agent.set_trusted(keys.clone());
        Ok(keys)
    }

    /// Verifies an uploaded bundle's digest and signature and stores it. Idempotent.
    pub async fn store_bundle(
        &self,
        expected: &Digest,
        bytes: &[u8],
        sig: &Signature,
    ) -> Result<Digest, ApiError> {
        let trusted = self.trusted_keys().await?;
        let digest = morel_bundle::verify(bytes, Some(expected), sig, &trusted)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        // The manifest must be readable and valid before anything can be deployed from it.
        read_manifest(bytes)?;
        self.put_blob(&digest, bytes, sig).await?;
        Ok(digest)
    }

    async fn put_blob(
        &self,
        digest: &Digest,
        bytes: &[u8],
        sig: &Signature,
    ) -> Result<(), ApiError> {
        if !self.blobs.contains(digest) {
            self.blobs
                .put(digest, bytes, sig)
                .await
                .map_err(|e| ApiError::internal("writing a bundle", &e))?;
        }
        // The bytes go to the store before the row that says the bundle exists, so every
        // server that sees the row can serve the bundle.
        self.store.put_blob_content(digest, bytes).await?;
        self.store
            .put_blob(&BlobRow {
                digest: digest.clone(),
                size: bytes.len() as i64,
                signature: sig.to_header(),
                key_id: sig.key_id.clone(),
                created_at: morel_core::time::now_ms(),
            })
            .await?;
        Ok(())
    }

    /// Opens the installation's secrets key from the store with this server's KEK (recording
    /// it on the first start). Run once at startup, before anything is sealed or opened.
    pub async fn share_secrets_key(&self) -> Result<(), crate::secrets::SecretError> {
        self.sealer
            .share_via_store(&*self.store, &self.cfg.kek_path())
            .await
    }

    /// Whether the bundle is in this server's blob directory, restoring it from the store
    /// (where every server writes what it receives) when it is not: the blob directory is a
    /// cache. The restored bytes are checked against their digest. False when neither has it.
    pub async fn ensure_bundle(&self, digest: &Digest) -> Result<bool, ApiError> {
        if self.blobs.contains(digest) {
            return Ok(true);
        }
        let Some(row) = self.store.get_blob(digest).await? else {
            return Ok(false);
        };
        let Some(bytes) = self.store.get_blob_content(digest).await? else {
            return Ok(false);
        };
        if morel_bundle::digest_of(&bytes) != *digest {
            tracing::error!(%digest, "the store's bytes of this bundle do not match its digest");
            return Ok(false);
        }
        let sig = Signature::from_header(&row.signature)
            .map_err(|e| ApiError::internal("reading a bundle signature", &e))?;
        self.blobs
            .put(digest, &bytes, &sig)
            .await
            .map_err(|e| ApiError::internal("caching a bundle", &e))?;
        tracing::info!(%digest, "bundle restored from the store into the blob directory");
        Ok(true)
    }

    /// Copies into the store the bytes of bundles that only this server's blob directory
    /// holds (installations from before bundles lived in the store). Run once at startup.
    pub async fn backfill_bundle_contents(&self) -> Result<usize, ApiError> {
        let mut copied = 0;
        let Ok(entries) = std::fs::read_dir(self.blobs.dir()) else {
            return Ok(0);
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(digest) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".bundle"))
                .and_then(|d| d.parse::<Digest>().ok())
            else {
                continue;
            };
            if self.store.get_blob(&digest).await?.is_none()
                || self.store.get_blob_content(&digest).await?.is_some()
            {
                continue;
            }
            let (bytes, _) = self
                .blobs
                .read(&digest)
                .await
                .map_err(|e| ApiError::internal("reading a bundle", &e))?;
            if morel_bundle::digest_of(&bytes) == digest {
                self.store.put_blob_content(&digest, &bytes).await?;
                copied += 1;
            }
        }
        if copied > 0 {
            tracing::info!(
                bundles = copied,
                "copied bundles from the blob directory into the store"
            );
        }
        Ok(copied)
    }

    /// Builds, packs and signs (with the server's key) a project directory received through
    /// seed 000's package or repository API.
    pub async fn pack_and_store(
        &self,
        dir: &Path,
        name: &str,
    ) -> Result<(Digest, Manifest), ApiError> {
        let opts = BuildOptions {
            name: Some(name.to_owned()),
            python: self.cfg.python.clone(),
            node: self.cfg.node.clone(),
        };
        let dir_owned = dir.to_owned();
        let (manifest, packed) = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
            let manifest = morel_manifest::build_manifest(&dir_owned, &opts)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            let json = serde_json::to_vec_pretty(&manifest)
                .map_err(|e| ApiError::internal("serializing a manifest", &e))?;
            let packed = morel_bundle::pack_dir(&dir_owned, &json, &PackLimits::default())
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            Ok((manifest, packed))
        })
        .await
        .map_err(|e| ApiError::internal("building a package", &e))??;
        let sig = morel_bundle::sign(&packed.digest, &self.server_key);
        self.put_blob(&packed.digest, &packed.bytes, &sig).await?;
        Ok((packed.digest, manifest))
    }

    /// Records release `v{N+1}` of `app` and starts rolling it out in the background: of
    /// `digest`, or (none given) of the bundle the environment runs now; with the config
    /// `change` makes of the environment's current config ([`Deployer::current_release`]).
    /// Releases of one app are made one at a time, so concurrent changes all land.
    pub async fn create_release(
        self: &Arc<Self>,
        app: &AppKey,
        digest: Option<&Digest>,
        env: &str,
        change: ConfigChange,
    ) -> Result<ReleaseRow, ApiError> {
        let lock = {
            let mut locks = self.release_locks.lock().unwrap_or_else(|e| e.into_inner());
            locks.entry(app.clone()).or_default().clone()
        };
        let _making = lock.lock().await;
        let current = self.current_release(app).await?;
        let digest = match (digest, &current) {
            (Some(d), _) => d.clone(),
            (None, Some(r)) => r.digest.clone(),
            (None, None) => {
                return Err(ApiError::bad_request(format!(
                    "environment {env} of {} has no release to configure; deploy it first",
                    crate::environments::app_of_host(app, env).name
                )));
            }
        };
        let mut config: BTreeMap<String, String> = current
            .as_ref()
            .and_then(|r| serde_json::from_str(&r.config_json).ok())
            .unwrap_or_default();
        match change {
            ConfigChange::Merge(set) => config.extend(set),
            ConfigChange::Unset(names) => {
                let missing: Vec<&String> =
                    names.iter().filter(|n| !config.contains_key(*n)).collect();
                if !missing.is_empty() {
                    return Err(ApiError::not_found(format!(
                        "environment {env} of {} has no config value named {}",
                        crate::environments::app_of_host(app, env).name,
                        missing
                            .iter()
                            .map(|n| format!("{n:?}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
                for n in &names {
                    config.remove(n);
                }
            }
            ConfigChange::Replace(all) => config = all,
        }
        self.record_release(app, &digest, env, &config).await
    }

    /// The release whose config and bundle an environment's next release starts from: the
    /// newest one still rolling out past the active one, else the active one; for an app
    /// with none active yet, its newest release that did not fail.
    pub async fn current_release(&self, app: &AppKey) -> Result<Option<ReleaseRow>, ApiError> {
        let active = self
            .store
            .get_app(app)
            .await?
            .and_then(|a| a.active_release);
        let releases = self.store.list_releases(app).await?;
        Ok(releases
            .into_iter()
            .filter(|r| match active {
                Some(a) => r.number == a || (r.number > a && !r.status.is_terminal()),
                None => r.status != ReleaseStatus::Failed,
            })
            .max_by_key(|r| r.number))
    }

    async fn record_release(
        self: &Arc<Self>,
        app: &AppKey,
        digest: &Digest,
        env: &str,
        config: &BTreeMap<String, String>,
    ) -> Result<ReleaseRow, ApiError> {
        let (_, manifest) = self.uploaded_bundle(digest).await?;
        if manifest.project_name != app.name.as_str() {
            tracing::info!(bundle = %manifest.project_name, app = %app.name, "deploying a bundle under another app name");
        }
        let manifest_json = serde_json::to_string(&manifest)
            .map_err(|e| ApiError::internal("serializing a manifest", &e))?;
        let config_json = serde_json::to_string(config)
            .map_err(|e| ApiError::internal("serializing config", &e))?;
        self.store.ensure_app(app).await?;
        let release = self
            .store
            .create_release(app, env, digest, &manifest_json, &config_json)
            .await?;
        self.logs.event(
            app,
            format!(
                "release v{} created from bundle {}",
                release.number,
                digest.short()
            ),
        );
        self.spawn_rollout(release.clone());
        Ok(release)
    }

    /// Rolls a release out in the background (progress is in its status and the event log).
    pub(crate) fn spawn_rollout(self: &Arc<Self>, release: ReleaseRow) {
        let this = self.clone();
        if self.cfg.remote_agents {
            tokio::spawn(crate::scheduler::activate_release(this, release));
            return;
        }
        tokio::spawn(async move { this.rollout(release).await });
    }

    /// Waits until the release reaches a terminal status, or `limit` passes.
    pub async fn wait_release(
        &self,
        app: &AppKey,
        number: i64,
        limit: Duration,
    ) -> Result<ReleaseRow, ApiError> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let r = self.store.get_release(app, number).await?.ok_or_else(|| {
                ApiError::not_found(format!("release v{number} of {app} not found"))
            })?;
            if r.status.is_terminal() || tokio::time::Instant::now() >= deadline {
                return Ok(r);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn rollout(self: Arc<Self>, release: ReleaseRow) {
        let app = release.app.clone();
        let lock = self.lock_for(&app);
        let _guard = lock.lock().await;
        // The app may have been deleted while this waited.
        if self.store.get_app(&app).await.ok().flatten().is_none() {
            return;
        }
        let n = release.number;
        let started = std::time::Instant::now();
        let outcome = self.rollout_locked(&release).await;
        morel_metrics::global().deploy_finished(
            match outcome {
                Ok(()) => morel_metrics::Outcome::Ok,
                Err(_) => morel_metrics::Outcome::Failed,
            },
            started.elapsed(),
        );
        if let Err(e) = outcome {
            // Error text reaches API clients: do not reveal where the server keeps its state.
            let msg = e
                .to_string()
                .replace(&*self.cfg.state_dir.to_string_lossy(), "<state>");
            tracing::warn!(app = %app, release = n, error = %msg, "release failed");
            self.logs.event(&app, format!("release v{n} failed: {msg}"));
            let _ = self
                .store
                .set_release_status(&app, n, ReleaseStatus::Failed, Some(&msg))
                .await;
        }
    }

    async fn rollout_locked(&self, release: &ReleaseRow) -> Result<(), morel_agent::AgentError> {
        let app = &release.app;
        let n = release.number;
        let boot = self
            .store
            .get_app(app)
            .await?
            .and_then(|a| a.active_release)
            == Some(n);
        self.store
            .set_release_status(app, n, ReleaseStatus::Installing, None)
            .await?;
        let logs = self.logs.clone();
        let app_for_progress = app.clone();
        let progress = move |step: String| logs.event(&app_for_progress, format!("v{n}: {step}"));
        let prepared = self
            .agent
            .prepare(app, &release.env, n, &release.digest, &progress)
            .await?;
        self.store
            .set_release_status(app, n, ReleaseStatus::Starting, None)
            .await?;
        progress("starting instances".into());
        let config: BTreeMap<String, String> =
            serde_json::from_str(&release.config_json).unwrap_or_default();
        // The environment's secrets join the config only here, in memory (never persisted).
        let (config, secrets_fp) = self.with_secrets(release, config).await?;
        // Unchanged resources (same config hash, same bundle, same config) keep running.
        let previous_config = match self
            .store
            .get_app(app)
            .await?
            .and_then(|a| a.active_release)
        {
            Some(p) if p != n => self
                .store
                .get_release(app, p)
                .await?
                .map(|r| (r.config_json, r.env)),
            _ => None,
        };
        let _ = self.ensure_bundle(&release.digest).await;
        let content = match self.blobs.read(&release.digest).await {
            Ok((bytes, _)) => content_hash(&bytes).map_err(|e| morel_agent::AgentError::Start {
                resource: "-".into(),
                message: e.message,
            })?,
            Err(_) => {
                return Err(morel_agent::AgentError::MissingBundle(
                    release.digest.clone(),
                ));
            }
        };
        let plan = self.plan(app, &prepared.manifest, &content).await?;
        let config_same = previous_config
            .as_ref()
            .is_some_and(|(c, e)| *c == release.config_json && *e == release.env)
            && self.secrets_unchanged(app, &secrets_fp);
        let keep: Vec<Running> = if config_same {
            self.active_pools(app)
                .into_iter()
                .filter(|r| plan.unchanged.iter().any(|u| u == r.resource()))
                .collect()
        } else {
            Vec::new()
        };
        let skip: std::collections::BTreeSet<String> =
            keep.iter().map(|r| r.resource().to_owned()).collect();
        for r in &skip {
            progress(format!("{r}: unchanged, kept running"));
        }
        let placements = crate::services::placements(
            self,
            app,
            &prepared.manifest,
            &self.active_pools(app),
            &skip,
        )
        .await
        .map_err(morel_agent::AgentError::Plan)?;
        let mut pools = self
            .agent
            .start_placed(&prepared, &config, &skip, &placements)
            .await?;
        pools.extend(keep);

        // Switch routing to the new pools, then retire the old ones.
        let mut functions = HashMap::new();
        for pool in &pools {
            for f in pool.functions() {
                functions.insert(
                    f.name.clone(),
                    FnRoute::new(
                        app.namespace.as_str(),
                        app.name.as_str(),
                        &f.name,
                        pool.clone(),
                        f.params.clone(),
                    ),
                );
            }
        }
        self.routes.install(
            app.namespace.as_str(),
            app.name.as_str(),
            AppRoutes {
                release: n,
                env: release.env.clone(),
                functions,
                http: prepared
                    .manifest
                    .routes
                    .values()
                    .flat_map(|t| t.iter().map(|(k, f)| (k.clone(), f.clone())))
                    .collect(),
            },
        );
        crate::services::install_edge(&self.routes, app, &pools);
        let old = {
            let mut active = self.active.lock().unwrap_or_else(|e| e.into_inner());
            active.insert(app.clone(), pools.clone())
        };
        self.remember_secrets(app, secrets_fp);
        // Persist the reconcile state of each resource (seed 002) and the functions' signatures.
        let existing: HashMap<String, ResourceRow> = self
            .store
            .list_resources(app)
            .await?
            .into_iter()
            .map(|r| (r.name.clone(), r))
            .collect();
        for pool in &pools {
            let Some(spec) = prepared.manifest.resources.get(pool.resource()) else {
                continue;
            };
            let status = match existing.get(pool.resource()) {
                Some(_) if boot || skip.contains(pool.resource()) => {
                    existing[pool.resource()].status
                }
                Some(_) => ResourceStatus::Updated,
                None => ResourceStatus::Deployed,
            };
            self.store
                .upsert_resource(&ResourceRow {
                    app: app.clone(),
                    name: pool.resource().to_owned(),
                    runtime: spec.runtime,
                    config_hash: spec.config_hash.clone(),
                    digest: content.clone(),
                    release: n,
                    status,
                    error: None,
                    endpoint_url: format!(
                        "{}/{}/{}/latest/call",
                        self.cfg.public_url, app.namespace, app.name
                    ),
                    updated_at: morel_core::time::now_ms(),
                })
                .await?;
            let rows: Vec<morel_store::FunctionRow> = pool
                .functions()
                .into_iter()
                .map(|f| {
                    let decl = spec.functions.iter().find(|d| d.name == f.name);
                    morel_store::FunctionRow {
                        name: f.name,
                        resource: pool.resource().to_owned(),
                        params: f.params,
                        is_async: f.is_async,
                        http_method: decl.and_then(|d| d.http_method.clone()),
                        http_path: decl.and_then(|d| d.http_path.clone()),
                    }
                })
                .collect();
            self.store
                .replace_functions(app, pool.resource(), &rows)
                .await?;
        }
        for name in existing.keys() {
            if !prepared.manifest.resources.contains_key(name) {
                self.store.delete_resource(app, name).await?;
            }
        }
        let previous = self
            .store
            .get_app(app)
            .await?
            .and_then(|a| a.active_release);
        self.store.set_active_release(app, Some(n)).await?;
        self.store
            .set_release_status(app, n, ReleaseStatus::Ready, None)
            .await?;
        if let Some(p) = previous.filter(|p| *p != n) {
            self.store
                .set_release_status(app, p, ReleaseStatus::Superseded, None)
                .await?;
        }
        progress(format!("ready; routing to v{n}"));
        if let Some(old) = old {
            for pool in old {
                if !skip.contains(pool.resource()) {
                    pool.stop().await;
                }
            }
        }

        Ok(())
    }

    /// Re-activates an older release (default: the newest release before the active one that
    /// once served). Its bundle and extracted files are kept, so this is a fast rollout.
    pub async fn rollback(
        self: &Arc<Self>,
        app: &AppKey,
        to: Option<i64>,
    ) -> Result<ReleaseRow, ApiError> {
        let row = self
            .store
            .get_app(app)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("app {app} not found")))?;
        let releases = self.store.list_releases(app).await?;
        let target = match to {
            Some(n) => releases
                .iter()
                .find(|r| r.number == n)
                .ok_or_else(|| ApiError::not_found(format!("app {app} has no release v{n}")))?,
            None => releases
                .iter()
                .rev()
                .find(|r| {
                    Some(r.number) != row.active_release && r.status == ReleaseStatus::Superseded
                })
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "app {app} has no earlier release to roll back to"
                    ))
                })?,
        };
        if Some(target.number) == row.active_release {
            return Err(ApiError::bad_request(format!(
                "v{} is already the active release",
                target.number
            )));
        }
        if !self.ensure_bundle(&target.digest).await? {
            return Err(ApiError::bad_request(format!(
                "the bundle of v{} is no longer kept",
                target.number
            )));
        }
        self.logs
            .event(app, format!("rolling back to v{}", target.number));
        self.store
            .set_release_status(app, target.number, ReleaseStatus::Pending, None)
            .await?;
        let release = self
            .store
            .get_release(app, target.number)
            .await?
            .ok_or_else(|| ApiError::not_found("release vanished"))?;
        self.spawn_rollout(release.clone());
        Ok(release)
    }

    /// Seed 002's reconcile categories for deploying `manifest` (from bundle `digest`) over what
    /// the app runs now: a resource is unchanged when its config hash and bundle are the same.
    /// `content` is [`content_hash`] of the bundle: the same files give the same hash even when
    /// the manifest's timestamp differs.
    pub async fn plan(
        &self,
        app: &AppKey,
        manifest: &Manifest,
        content: &Digest,
    ) -> Result<Plan, morel_store::StoreError> {
        let existing: HashMap<String, ResourceRow> = self
            .store
            .list_resources(app)
            .await?
            .into_iter()
            .map(|r| (r.name.clone(), r))
            .collect();
        let mut plan = Plan::default();
        for (name, spec) in &manifest.resources {
            match existing.get(name) {
                None => plan.new.push(name.clone()),
                Some(r) if r.config_hash == spec.config_hash && r.digest == *content => {
                    plan.unchanged.push(name.clone())
                }
                Some(_) => plan.changed.push(name.clone()),
            }
        }
        plan.removed = existing
            .keys()
            .filter(|k| !manifest.resources.contains_key(*k))
            .cloned()
            .collect();
        plan.removed.sort();
        Ok(plan)
    }

    /// An uploaded bundle's bytes and validated manifest (400 when it was never uploaded).
    async fn uploaded_bundle(&self, digest: &Digest) -> Result<(Vec<u8>, Manifest), ApiError> {
        if self.store.get_blob(digest).await?.is_none() || !self.ensure_bundle(digest).await? {
            return Err(ApiError::bad_request(format!(
                "bundle {digest} has not been uploaded"
            )));
        }
        let (bytes, _) = self
            .blobs
            .read(digest)
            .await
            .map_err(|e| ApiError::internal("reading a bundle", &e))?;
        let manifest = read_manifest(&bytes)?;
        Ok((bytes, manifest))
    }

    /// The plan for deploying an uploaded bundle, without deploying it.
    pub async fn plan_for_bundle(&self, app: &AppKey, digest: &Digest) -> Result<Plan, ApiError> {
        let (bytes, manifest) = self.uploaded_bundle(digest).await?;
        let content = content_hash(&bytes)?;
        Ok(self.plan(app, &manifest, &content).await?)
    }

    /// Stops an app's instances, removes its routes, data and files. False if it did not exist.
    pub async fn delete_app(&self, app: &AppKey) -> Result<bool, ApiError> {
        let lock = self.lock_for(app);
        let _guard = lock.lock().await;
        let existed = self.store.get_app(app).await?.is_some()
            || self.store.get_package(app).await?.is_some();
        self.routes
            .remove(app.namespace.as_str(), app.name.as_str());
        self.routes
            .edge()
            .remove(app.namespace.as_str(), app.name.as_str());
        morel_metrics::global().forget_app(app.namespace.as_str(), app.name.as_str());
        let pools = self
            .active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(app);
        for pool in pools.unwrap_or_default() {
            pool.stop().await;
        }
        self.store.delete_package(app).await?;
        self.store.delete_budget(app).await?;
        self.store.delete_app(app).await?;
        self.agent
            .remove_app_files(app)
            .await
            .map_err(|e| ApiError::internal("removing app files", &e))?;
        Ok(existed)
    }

    /// Stops every running instance (server shutdown).
    pub async fn shutdown(&self) {
        let all: Vec<_> = self
            .active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .collect();
        for (_, pools) in all {
            for pool in pools {
                pool.stop().await;
            }
        }
    }

    pub fn active_pools(&self, app: &AppKey) -> Vec<Running> {
        self.active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(app)
            .cloned()
            .unwrap_or_default()
    }

    /// Brings every app's active release back after a restart; fails releases a crash interrupted.
    pub async fn boot(self: &Arc<Self>) -> Result<(), ApiError> {
        self.trusted_keys().await?;
        self.agent
            .forget_stale_instances()
            .await
            .map_err(|e| ApiError::internal("cleaning stale instances", &e))?;
        for app in self.store.list_apps().await? {
            self.reconcile_interrupted(&app).await?;
            let Some(n) = app.active_release else {
                continue;
            };
            let Some(release) = self.store.get_release(&app.key, n).await? else {
                continue;
            };
            tracing::info!(app = %app.key, release = n, "restoring active release");
            if self.cfg.remote_agents {
                self.spawn_rollout(release);
                continue;
            }
            // Until its rollout ends, the app is "being restored": readiness says so and its
            // calls get 503 with Retry-After instead of 404.
            let key = app.key.clone();
            self.routes
                .set_restoring(key.namespace.as_str(), key.name.as_str(), true);
            let this = self.clone();
            tokio::spawn(async move {
                this.clone().rollout(release).await;
                this.routes
                    .set_restoring(key.namespace.as_str(), key.name.as_str(), false);
            });
        }
        Ok(())
    }
}

/// Seed 002's reconcile categories, by resource name.
#[derive(Debug, Default, serde::Serialize, utoipa::ToSchema)]
pub struct Plan {
    pub new: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: Vec<String>,
}

/// A hash of a bundle's files other than `manifest.json`: what decides whether a resource's
/// code changed between two bundles.
pub fn content_hash(bundle: &[u8]) -> Result<Digest, ApiError> {
    use sha2::Digest as _;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bundle))
        .map_err(|e| ApiError::bad_request(format!("bundle is not a zip: {e}")))?;
    let mut entries = Vec::new();
    for i in 0..archive.len() {
        let mut f = archive
            .by_index(i)
            .map_err(|e| ApiError::bad_request(format!("unreadable bundle entry: {e}")))?;
        let name = f.name().to_owned();
        if name == morel_manifest::MANIFEST_FILE || f.is_dir() {
            continue;
        }
        let mut h = sha2::Sha256::new();
        std::io::copy(&mut f, &mut h)
            .map_err(|e| ApiError::bad_request(format!("unreadable bundle entry {name}: {e}")))?;
        entries.push((name, f.unix_mode().unwrap_or(0), h.finalize()));
    }
    entries.sort();
    let mut h = sha2::Sha256::new();
    for (name, mode, digest) in entries {
        h.update(name.as_bytes());
        h.update([0]);
        h.update(mode.to_be_bytes());
        h.update(digest);
    }
    Ok(Digest::from_sha256(h.finalize().into()))
}

pub fn read_manifest(bundle: &[u8]) -> Result<Manifest, ApiError> {
    let bytes = morel_bundle::read_entry(bundle, morel_manifest::MANIFEST_FILE, 4 << 20)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Manifest::from_json(&bytes).map_err(|e| ApiError::bad_request(e.to_string()))
}
