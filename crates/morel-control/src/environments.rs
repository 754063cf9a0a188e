//! Environments (seed 003): every app has `production` (its main branch) and any number of
//! preview environments (one per other branch), each with its own config, secrets,
//! certificate, address and instances.
//!
//! A preview's releases, resources and instances live under a host app key,
//! `{app}--{env}` (see [`morel_gateway::environment_host`]); production lives under the app
//! itself, so production behaves exactly as before environments existed. The environments
//! table is what ties a host back to its app and branch.

use std::collections::BTreeMap;
use std::sync::Arc;

use morel_core::{AppName, Digest};
use morel_gateway::{PRODUCTION, environment_host};
use morel_store::{
    AppKey, CertificateRow, EnvironmentKind, EnvironmentRow, EnvironmentStatus, ReleaseRow,
    SecretRow,
};
use serde::Serialize;

use crate::ApiError;
use crate::deploy::{ConfigChange, Deployer};
use crate::secrets::{SecretValue, cert_key_aad, secret_aad};
use crate::tls::CertResolver;

/// Longest environment name made from a branch.
const MAX_ENV_LEN: usize = 40;

/// The environments service: what the API handlers and the deploy worker call.
pub struct Environments {
    pub deployer: Arc<Deployer>,
    pub certs: Arc<CertResolver>,
    /// `{env}--{app}.{domain}` and `{app}.{domain}` host names, when set.
    pub domain: Option<String>,
    /// Public base URL of the TLS listener, when there is one.
    pub tls_url: Option<String>,
}

/// One environment as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EnvironmentView {
    pub name: String,
    /// `production` or `preview`.
    pub kind: &'static str,
    /// The git branch it tracks (`null` when deployed from a directory).
    pub branch: Option<String>,
    /// The repository, with any credentials in it masked.
    pub repo_url: Option<String>,
    /// The active release (`v3`).
    pub release: Option<String>,
    /// `creating`, `deploying`, `ready` or `failed`.
    pub status: &'static str,
    pub error: Option<String>,
    /// Every address: call path, routes and host names.
    pub urls: Vec<String>,
    /// Host names under the server's domain (none without one).
    pub hosts: Vec<String>,
    /// How many secrets it has.
    pub secrets: usize,
    /// Names of the active release's config values (never the values).
    pub config_names: Vec<String>,
    /// Names of the environment's secrets (never the values).
    pub secret_names: Vec<String>,
    /// Whether it has a TLS certificate.
    pub certificate: bool,
    /// Milliseconds since the epoch.
    pub updated_at: i64,
}

/// A secret as the API shows it: its name, never its value.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SecretView {
    pub name: String,
    /// Milliseconds since the epoch.
    pub updated_at: i64,
    /// After a change: the release (`v5`) that restarts the environment's instances with
    /// it, when the environment has one to restart.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
}

/// Whether `name` may name an environment (it shares the call path's version segment).
pub fn check_env_name(name: &str) -> Result<(), ApiError> {
    let reserved = name == "latest"
        || name
            .strip_prefix('v')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    let valid = !name.is_empty()
        && name.len() <= MAX_ENV_LEN
        && name.as_bytes()[0].is_ascii_lowercase()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.contains("--")
        && !name.ends_with('-');
    if reserved || !valid {
        return Err(ApiError::bad_request(format!(
            "environment name {name:?} is not valid (lowercase letters, digits and single '-', starting with a letter, at most {MAX_ENV_LEN}; not \"latest\" or vN)"
        )));
    }
    Ok(())
}

/// A branch's environment name: lowercase, `[a-z0-9-]`, no doubled or trailing `-`.
pub fn slug_branch(branch: &str, max: usize) -> String {
    let mut out = String::new();
    for c in branch.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    let mut s: String = out.chars().take(max).collect();
    while s.ends_with('-') {
        s.pop();
    }
    if s.is_empty() || !s.as_bytes()[0].is_ascii_lowercase() {
        s = format!("b-{s}").chars().take(max).collect();
        while s.ends_with('-') {
            s.pop();
        }
    }
    s
}

/// The host app key of `app`'s environment `env`.
pub fn host_key(app: &AppKey, env: &str) -> Result<AppKey, ApiError> {
    let name: AppName = environment_host(app.name.as_str(), env)
        .parse()
        .map_err(|_| {
            ApiError::bad_request(format!(
                "app name {} and environment name {env} are too long together (at most 61 characters)",
                app.name
            ))
        })?;
    Ok(AppKey::new(app.namespace.clone(), name))
}

/// The app (and environment) a host app key serves: the inverse of [`host_key`].
pub fn app_of_host(host: &AppKey, env: &str) -> AppKey {
    host.name
        .as_str()
        .strip_suffix(&format!("--{env}"))
        .filter(|_| env != PRODUCTION)
        .and_then(|a| a.parse().ok())
        .map_or_else(|| host.clone(), |n| AppKey::new(host.namespace.clone(), n))
}

fn fingerprint(pairs: &BTreeMap<String, String>) -> Digest {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    for (k, v) in pairs {
        h.update((k.len() as u64).to_be_bytes());
        h.update(k.as_bytes());
        h.update((v.len() as u64).to_be_bytes());
        h.update(v.as_bytes());
    }
    Digest::from_sha256(h.finalize().into())
}

impl Deployer {
    /// Adds the environment's secrets (opened here, in memory) to a release's config.
    pub(crate) async fn with_secrets(
        &self,
        release: &ReleaseRow,
        mut config: BTreeMap<String, String>,
    ) -> Result<(BTreeMap<String, String>, Digest), morel_agent::AgentError> {
        let app = app_of_host(&release.app, &release.env);
        let mut opened = BTreeMap::new();
        for row in self.store.list_secrets(&app, &release.env).await? {
            let plain = self
                .sealer
                .open(&secret_aad(&app, &release.env, &row.name), &row.sealed)
                .map_err(|e| morel_agent::AgentError::Start {
                    resource: "-".into(),
                    message: e.to_string(),
                })?;
            opened.insert(row.name, String::from_utf8_lossy(&plain).into_owned());
        }
        let fp = fingerprint(&opened);
        config.extend(opened);
        Ok((config, fp))
    }

    pub(crate) fn secrets_unchanged(&self, host: &AppKey, fp: &Digest) -> bool {
        let fps = self.secret_fps.lock().unwrap_or_else(|e| e.into_inner());
        fps.get(host) == Some(fp)
    }

    pub(crate) fn remember_secrets(&self, host: &AppKey, fp: Digest) {
        let mut fps = self.secret_fps.lock().unwrap_or_else(|e| e.into_inner());
        fps.insert(host.clone(), fp);
    }
}

impl Environments {
    pub fn new(
        deployer: Arc<Deployer>,
        domain: Option<String>,
        tls_url: Option<String>,
    ) -> Arc<Self> {
        Arc::new(Environments {
            deployer,
            certs: Arc::new(CertResolver::default()),
            domain: domain.map(|d| d.trim_matches('.').to_ascii_lowercase()),
            tls_url,
        })
    }

    fn store(&self) -> &Arc<dyn morel_store::Store> {
        &self.deployer.store
    }

    /// Host names of an environment under the configured domain.
    pub fn hosts(&self, app: &AppKey, env: &str) -> Vec<String> {
        match &self.domain {
            None => Vec::new(),
            Some(d) if env == PRODUCTION => vec![format!("{}.{d}", app.name)],
            Some(d) => vec![format!("{env}--{}.{d}", app.name)],
        }
    }

    /// Every address of an environment: the call path (when it runs functions), its routes
    /// and http service, host names.
    pub fn urls(&self, app: &AppKey, env: &str) -> Vec<String> {
        let base = &self.deployer.cfg.public_url;
        // An environment of http services only has no call path (it would answer 404).
        let functions = host_key(app, env)
            .ok()
            .and_then(|h| {
                self.deployer
                    .routes
                    .get(h.namespace.as_str(), h.name.as_str())
            })
            .is_none_or(|r| !r.functions.is_empty());
        let mut urls = Vec::new();
        if functions {
            urls.push(format!("{base}/{}/{}/{env}/call/", app.namespace, app.name));
        }
        urls.push(format!("{base}/{}@{env}/", app.name));
        let port = base.rsplit(':').next().unwrap_or("80");
        for h in self.hosts(app, env) {
            urls.push(format!("http://{h}:{port}/"));
            if let Some(tls) = &self.tls_url {
                let tls_port = tls.rsplit(':').next().unwrap_or("443");
                urls.push(format!("https://{h}:{tls_port}/"));
            }
        }
        urls
    }

    /// Registers an environment's host names with the gateway (step "address").
    pub fn attach_address(&self, app: &AppKey, env: &str) -> Result<(), ApiError> {
        let host = host_key(app, env)?;
        for h in self.hosts(app, env) {
            self.deployer
                .routes
                .set_host(&h, host.namespace.as_str(), host.name.as_str());
        }
        Ok(())
    }

    /// Loads an environment's certificate into the SNI resolver; true when it has one.
    pub async fn apply_certificate(&self, app: &AppKey, env: &str) -> Result<bool, ApiError> {
        let rows = self.store().list_certificates().await?;
        let Some(row) = rows.iter().find(|c| c.app == *app && c.env == env) else {
            return Ok(false);
        };
        let key = self
            .deployer
            .sealer
            .open(&cert_key_aad(app, env), &row.key_sealed)
            .map_err(|e| ApiError::internal("opening a certificate key", &e))?;
        let certified = crate::tls::parse_pair(&row.cert_pem, &String::from_utf8_lossy(&key))
            .map_err(ApiError::bad_request)?;
        self.certs.set(&self.hosts(app, env), certified);
        Ok(true)
    }

    /// After a restart: host names and certificates of every environment.
    pub async fn boot(&self) -> Result<(), ApiError> {
        for e in self.store().list_environments(None).await? {
            self.attach_address(&e.app, &e.name)?;
            if let Err(err) = self.apply_certificate(&e.app, &e.name).await {
                tracing::warn!(app = %e.app, env = %e.name, error = %err.message, "certificate not loaded");
            }
        }
        Ok(())
    }

    /// An environment's row; production exists implicitly for an app deployed without git.
    pub async fn get(&self, app: &AppKey, env: &str) -> Result<EnvironmentRow, ApiError> {
        if let Some(e) = self.store().get_environment(app, env).await? {
            return Ok(e);
        }
        if env == PRODUCTION
            && let Some(a) = self.store().get_app(app).await?
        {
            return Ok(EnvironmentRow {
                app: app.clone(),
                name: PRODUCTION.into(),
                kind: EnvironmentKind::Production,
                branch: None,
                repo_url: None,
                status: if a.active_release.is_some() {
                    EnvironmentStatus::Ready
                } else {
                    EnvironmentStatus::Creating
                },
                url: None,
                error: None,
                created_at: a.created_at,
                updated_at: a.updated_at,
            });
        }
        Err(ApiError::not_found(format!(
            "app {} has no environment {env:?}",
            app.name
        )))
    }

    pub async fn list(&self, app: &AppKey) -> Result<Vec<EnvironmentView>, ApiError> {
        let mut rows = self.store().list_environments(Some(app)).await?;
        if !rows.iter().any(|e| e.name == PRODUCTION)
            && let Ok(p) = self.get(app, PRODUCTION).await
        {
            rows.insert(0, p);
        }
        if rows.is_empty() {
            return Err(ApiError::not_found(format!("app {} not found", app.name)));
        }
        let certs = self.store().list_certificates().await?;
        let mut out = Vec::new();
        for e in rows {
            let host = host_key(app, &e.name)?;
            let active = self
                .store()
                .get_app(&host)
                .await?
                .and_then(|a| a.active_release);
            let release = active.map(|n| format!("v{n}"));
            let config_names = match active {
                Some(n) => self
                    .store()
                    .get_release(&host, n)
                    .await?
                    .and_then(|r| {
                        serde_json::from_str::<std::collections::BTreeMap<String, String>>(
                            &r.config_json,
                        )
                        .ok()
                    })
                    .map(|m| m.into_keys().collect())
                    .unwrap_or_default(),
                None => Vec::new(),
            };
            let secret_names: Vec<String> = self
                .store()
                .list_secrets(app, &e.name)
                .await?
                .into_iter()
                .map(|s| s.name)
                .collect();
            out.push(EnvironmentView {
                kind: e.kind.as_str(),
                branch: e.branch.clone(),
                repo_url: e.repo_url.as_deref().map(crate::git_deploy::redact_url),
                release,
                status: e.status.as_str(),
                error: e.error.clone(),
                urls: self.urls(app, &e.name),
                hosts: self.hosts(app, &e.name),
                secrets: secret_names.len(),
                config_names,
                secret_names,
                certificate: certs.iter().any(|c| c.app == *app && c.env == e.name),
                updated_at: e.updated_at,
                name: e.name,
            });
        }
        Ok(out)
    }

    /// A new release of the environment's bundle and config, so its instances restart with
    /// its new secrets; none when the environment has no release yet. Made like every
    /// release (`Deployer::create_release`), so it follows a config change still rolling
    /// out instead of undoing it.
    async fn roll(&self, app: &AppKey, env: &str) -> Result<Option<String>, ApiError> {
        let host = host_key(app, env)?;
        if self.deployer.current_release(&host).await?.is_none() {
            return Ok(None);
        }
        self.deployer.logs.event(
            &host,
            format!("secrets of {env} changed: a new release restarts the instances"),
        );
        let r = self
            .deployer
            .create_release(&host, None, env, ConfigChange::Merge(BTreeMap::new()))
            .await?;
        Ok(Some(format!("v{}", r.number)))
    }

    pub async fn set_secret(
        &self,
        app: &AppKey,
        env: &str,
        name: &str,
        value: &SecretValue,
    ) -> Result<SecretView, ApiError> {
        check_secret_name(name)?;
        self.get(app, env).await?;
        let sealed = self
            .deployer
            .sealer
            .seal(&secret_aad(app, env, name), value.expose().as_bytes())
            .map_err(|e| ApiError::internal("sealing a secret", &e))?;
        let now = morel_core::time::now_ms();
        self.store()
            .put_secret(&SecretRow {
                app: app.clone(),
                env: env.to_owned(),
                name: name.to_owned(),
                sealed,
                updated_at: now,
            })
            .await?;
        tracing::info!(app = %app, env, secret = name, "secret set");
        let release = self.roll(app, env).await?;
        Ok(SecretView {
            name: name.to_owned(),
            updated_at: now,
            release,
        })
    }

    pub async fn list_secrets(&self, app: &AppKey, env: &str) -> Result<Vec<SecretView>, ApiError> {
        self.get(app, env).await?;
        Ok(self
            .store()
            .list_secrets(app, env)
            .await?
            .into_iter()
            .map(|s| SecretView {
                name: s.name,
                updated_at: s.updated_at,
                release: None,
            })
            .collect())
    }

    /// Removes a secret; says which release restarts the instances without it.
    pub async fn remove_secret(
        &self,
        app: &AppKey,
        env: &str,
        name: &str,
    ) -> Result<Option<String>, ApiError> {
        self.get(app, env).await?;
        if !self.store().delete_secret(app, env, name).await? {
            return Err(ApiError::not_found(format!(
                "environment {env} of {} has no secret {name:?}",
                app.name
            )));
        }
        self.roll(app, env).await
    }

    /// `morel env set` and `env unset`: a new release of the environment's bundle with its
    /// config changed (see `Deployer::create_release`).
    pub async fn change_config(
        &self,
        app: &AppKey,
        env: &str,
        change: ConfigChange,
    ) -> Result<ReleaseRow, ApiError> {
        let names: Vec<&String> = match &change {
            ConfigChange::Merge(set) | ConfigChange::Replace(set) => set.keys().collect(),
            ConfigChange::Unset(names) => names.iter().collect(),
        };
        for k in names {
            check_secret_name(k)?;
        }
        self.get(app, env).await?;
        let host = host_key(app, env)?;
        self.deployer.create_release(&host, None, env, change).await
    }

    pub async fn add_certificate(
        &self,
        app: &AppKey,
        env: &str,
        cert_pem: &str,
        key_pem: &SecretValue,
    ) -> Result<Vec<String>, ApiError> {
        self.get(app, env).await?;
        // Validate before storing anything.
        let certified =
            crate::tls::parse_pair(cert_pem, key_pem.expose()).map_err(ApiError::bad_request)?;
        crate::tls::check_hosts(&certified, &self.hosts(app, env))
            .map_err(ApiError::bad_request)?;
        let key_sealed = self
            .deployer
            .sealer
            .seal(&cert_key_aad(app, env), key_pem.expose().as_bytes())
            .map_err(|e| ApiError::internal("sealing a certificate key", &e))?;
        self.store()
            .put_certificate(&CertificateRow {
                app: app.clone(),
                env: env.to_owned(),
                cert_pem: cert_pem.to_owned(),
                key_sealed,
                updated_at: morel_core::time::now_ms(),
            })
            .await?;
        self.apply_certificate(app, env).await?;
        Ok(self.hosts(app, env))
    }

    /// `morel env rm`: stops everything a preview runs and deletes its data.
    pub async fn remove(&self, app: &AppKey, env: &str) -> Result<(), ApiError> {
        if env == PRODUCTION {
            return Err(ApiError::bad_request(format!(
                "production cannot be removed with env rm; use `morel delete {}` to delete the whole app",
                app.name
            )));
        }
        let row = self.get(app, env).await?;
        let host = host_key(app, &row.name)?;
        self.deployer.delete_app(&host).await?;
        for h in self.hosts(app, env) {
            self.deployer.routes.remove_host(&h);
        }
        self.certs.remove(&self.hosts(app, env));
        self.store().delete_environment(app, env).await?;
        tracing::info!(app = %app, env, "environment removed");
        Ok(())
    }

    /// Removes every environment of an app (its previews' instances and data, and the
    /// production row, secrets and certificate); true when it had any.
    pub async fn remove_all(&self, app: &AppKey) -> Result<bool, ApiError> {
        let envs = self.store().list_environments(Some(app)).await?;
        for e in &envs {
            if e.kind == EnvironmentKind::Preview {
                self.remove(app, &e.name).await?;
            }
        }
        // Secrets and a certificate may exist for production without an environment row.
        for h in self.hosts(app, PRODUCTION) {
            self.deployer.routes.remove_host(&h);
        }
        self.certs.remove(&self.hosts(app, PRODUCTION));
        self.store().delete_environment(app, PRODUCTION).await?;
        Ok(!envs.is_empty())
    }

    /// For a directory deploy with `--env E`: creates preview `E` of `app` unless it exists,
    /// and returns the key its releases go under (the app itself for production).
    pub async fn ensure_preview(&self, app: &AppKey, env: &str) -> Result<AppKey, ApiError> {
        if env == PRODUCTION {
            return Ok(app.clone());
        }
        check_env_name(env)?;
        let host = host_key(app, env)?;
        if self.store().get_environment(app, env).await?.is_none() {
            if self.store().get_app(&host).await?.is_some() {
                return Err(ApiError::bad_request(format!(
                    "environment {env} of {} would collide with the app named {}",
                    app.name, host.name
                )));
            }
            let now = morel_core::time::now_ms();
            self.store()
                .upsert_environment(&EnvironmentRow {
                    app: app.clone(),
                    name: env.to_owned(),
                    kind: EnvironmentKind::Preview,
                    branch: None,
                    repo_url: None,
                    status: EnvironmentStatus::Ready,
                    url: self.urls(app, env).first().cloned(),
                    error: None,
                    created_at: now,
                    updated_at: now,
                })
                .await?;
            self.attach_address(app, env)?;
        }
        Ok(host)
    }

    /// Host app keys of every preview environment.
    pub async fn preview_hosts(&self) -> Result<std::collections::HashSet<AppKey>, ApiError> {
        let mut out = std::collections::HashSet::new();
        for e in self.store().list_environments(None).await? {
            if e.kind == EnvironmentKind::Preview {
                out.insert(host_key(&e.app, &e.name)?);
            }
        }
        Ok(out)
    }

    /// The host app key for rollback and other per-environment release operations.
    pub async fn host_for(&self, app: &AppKey, env: &str) -> Result<AppKey, ApiError> {
        self.get(app, env).await?;
        host_key(app, env)
    }

    /// Deletes bundles of an environment's releases beyond the newest `keep` (never the
    /// active one's, nor one another kept release still uses).
    pub async fn prune_bundles(&self, host: &AppKey, keep: usize) -> Result<usize, ApiError> {
        let store = self.store();
        let active = store.get_app(host).await?.and_then(|a| a.active_release);
        let releases = store.list_releases(host).await?;
        let cut = releases.len().saturating_sub(keep);
        let mut in_use = std::collections::HashSet::new();
        for app in store.list_apps().await? {
            for (i, r) in store.list_releases(&app.key).await?.into_iter().enumerate() {
                let pruned = app.key == *host && i < cut && Some(r.number) != active;
                if !pruned {
                    in_use.insert(r.digest.clone());
                }
            }
        }
        let mut removed = 0;
        for r in releases.iter().take(cut) {
            if Some(r.number) == active || in_use.contains(&r.digest) {
                continue;
            }
            let blobs = &self.deployer.blobs;
            if blobs.contains(&r.digest) {
                let _ = std::fs::remove_file(blobs.bundle_path(&r.digest));
                let _ = std::fs::remove_file(blobs.signature_path(&r.digest));
                removed += 1;
            }
            // The shared copy too, or any server would restore it.
            self.deployer.store.delete_blob_content(&r.digest).await?;
        }
        Ok(removed)
    }
}

/// Config and secret names become environment variables.
fn check_secret_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.as_bytes()[0].is_ascii_digit()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.starts_with("MOREL_");
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "{name:?} is not a valid variable name (letters, digits and '_', not starting with a digit or MOREL_)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_slugs() {
        assert_eq!(slug_branch("feature/Login_Page", 40), "feature-login-page");
        assert_eq!(slug_branch("--x--", 40), "x");
        assert_eq!(slug_branch("123", 40), "b-123");
        assert_eq!(slug_branch("a/b/c/d", 3), "a-b");
        assert!(check_env_name("feature-x").is_ok());
        assert!(check_env_name("v2").is_err());
        assert!(check_env_name("latest").is_err());
        assert!(check_env_name("a--b").is_err());
    }
}
