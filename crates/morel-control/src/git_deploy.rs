//! Git deploys (seed 003's event flow on Morel's own machinery). `POST /api/deploys`
//! validates the request (URL scheme, branch name, the repository answers and has the
//! branch), records it and puts its id on the durable `deploys` queue, answering 202 at once.
//! The worker walks the steps below; each finished step is recorded once per deploy, and
//! what it produced (environment name, bundle digest, release number) is kept on the deploy
//! row, so a worker that crashes mid-way is resumed from the queue by the next one without
//! creating anything twice.
//!
//! Steps: `resolve` (branch → environment) → `build` (shallow clone, build, pack, sign) →
//! `environment` (create if missing) → `address` (host names) → `secrets` (secrets and
//! certificate) → `instances` (create or replace, wait ready) → `url` (record the address).

use std::sync::Arc;
use std::time::Duration;

use morel_core::{DeployId, Digest, ReleaseStatus};
use morel_gateway::PRODUCTION;
use morel_store::{
    AppKey, DeployRow, DeployStatus, EnvironmentKind, EnvironmentRow, EnvironmentStatus,
};
use serde::{Deserialize, Serialize};

use crate::ApiError;
use crate::environments::{Environments, check_env_name, host_key, slug_branch};

pub const DEPLOYS_QUEUE: &str = "deploys";
/// A worker holds a deploy this long and renews it while working, so after a crash the
/// request is visible again within this time.
const LEASE_MS: i64 = 8_000;
const MAX_READS: i64 = 5;
/// Longest a release may take to become ready within a deploy.
const RELEASE_LIMIT: Duration = Duration::from_secs(600);
const DEFAULT_MAIN_BRANCH: &str = "main";

#[derive(Serialize, Deserialize)]
struct DeployMessage {
    deploy_id: DeployId,
}

/// The body of `POST /api/deploys`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// An `https://`, `ssh://` or `file://` repository URL.
    pub repo_url: String,
    /// The branch to deploy; default: the app's main branch. The main branch deploys to
    /// `production`, any other branch to a preview environment named after it.
    #[serde(default)]
    pub branch: Option<String>,
    /// App name; default: the repository's name.
    #[serde(default)]
    pub app: Option<String>,
    /// Changes which branch deploys to production (default `main`).
    #[serde(default)]
    pub main_branch: Option<String>,
}

/// The app name a repository URL suggests (`…/shop.git` → `shop`).
pub fn app_from_url(url: &str) -> Option<morel_core::AppName> {
    let last = url.trim_end_matches('/').rsplit(['/', ':']).next()?;
    morel_core::AppName::slugify(last.strip_suffix(".git").unwrap_or(last))
}

/// A repository URL as shown by the API: credentials in its user part are masked.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest
            .split('/')
            .next()
            .and_then(|auth| auth.rsplit_once('@'))
        {
            Some((user, _)) if user.contains(':') => {
                format!("{scheme}://***@{}", &rest[user.len() + 1..])
            }
            _ => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

impl Environments {
    /// Validates a deploy request and queues it. Bad input is rejected here, before anything
    /// is recorded.
    pub async fn request_deploy(&self, req: DeployRequest) -> Result<DeployRow, ApiError> {
        let git = &self.deployer.cfg.git;
        crate::git::check_url(&req.repo_url)?;
        for b in req.branch.iter().chain(req.main_branch.iter()) {
            crate::git::check_branch(b)?;
        }
        let name = match &req.app {
            Some(a) => a
                .parse::<morel_core::AppName>()
                .map_err(|e| ApiError::bad_request(e.to_string()))?,
            None => app_from_url(&req.repo_url).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "cannot derive an app name from {:?}; pass one",
                    req.repo_url
                ))
            })?,
        };
        let app = AppKey::in_default(name);
        let branches = crate::git::branches(git, &req.repo_url)
            .await
            .map_err(|e| {
                ApiError::bad_request(format!(
                    "repository {} cannot be read: {}",
                    req.repo_url, e.message
                ))
            })?;
        let main = self.main_branch(&app, req.main_branch.as_deref()).await?;
        let branch = req.branch.clone().unwrap_or_else(|| main.clone());
        if !branches.contains(&branch) {
            return Err(ApiError::bad_request(format!(
                "branch {branch:?} does not exist in {} (branches: {})",
                req.repo_url,
                if branches.is_empty() {
                    "none".to_owned()
                } else {
                    branches.join(", ")
                }
            )));
        }
        let now = morel_core::time::now_ms();
        let row = DeployRow {
            id: DeployId::new(),
            app,
            repo_url: req.repo_url,
            branch: Some(branch),
            main_branch: req.main_branch,
            env: None,
            digest: None,
            release: None,
            status: DeployStatus::Queued,
            error: None,
            attempts: 0,
            created_at: now,
            updated_at: now,
        };
        self.store_().create_deploy(&row).await?;
        let msg = serde_json::to_value(DeployMessage { deploy_id: row.id })
            .map_err(|e| ApiError::internal("encoding a deploy", &e))?;
        self.store_().queue_send(DEPLOYS_QUEUE, &msg).await?;
        Ok(row)
    }

    fn store_(&self) -> &Arc<dyn morel_store::Store> {
        &self.deployer.store
    }

    async fn main_branch(&self, app: &AppKey, requested: Option<&str>) -> Result<String, ApiError> {
        if let Some(m) = requested {
            return Ok(m.to_owned());
        }
        Ok(self
            .store_()
            .get_environment(app, PRODUCTION)
            .await?
            .and_then(|e| e.branch)
            .unwrap_or_else(|| DEFAULT_MAIN_BRANCH.to_owned()))
    }

    /// Walks one deploy to its end (or to the point a crash stops it).
    async fn walk(&self, id: DeployId) -> Result<(), ApiError> {
        let Some(mut d) = self.store_().get_deploy(id).await? else {
            return Ok(());
        };
        if d.status.is_terminal() {
            return Ok(());
        }
        d.attempts += 1;
        d.status = DeployStatus::Running;
        self.store_().update_deploy(&d).await?;
        match self.steps(&mut d).await {
            Ok(()) => {
                d.status = DeployStatus::Succeeded;
                d.error = None;
            }
            Err(e) => {
                let msg = e
                    .message
                    .replace(&*self.deployer.cfg.state_dir.to_string_lossy(), "<state>");
                tracing::warn!(deploy = %d.id, app = %d.app, error = %msg, "git deploy failed");
                d.status = DeployStatus::Failed;
                d.error = Some(msg.clone());
                if let Some(env) = &d.env
                    && let Some(mut e) = self.store_().get_environment(&d.app, env).await?
                {
                    e.status = EnvironmentStatus::Failed;
                    e.error = Some(msg);
                    e.updated_at = morel_core::time::now_ms();
                    self.store_().upsert_environment(&e).await?;
                }
            }
        }
        self.store_().update_deploy(&d).await?;
        Ok(())
    }

    async fn record(&self, d: &DeployRow, step: &str, detail: String) -> Result<(), ApiError> {
        self.store_()
            .record_deploy_step(d.id, step, &detail)
            .await?;
        self.deployer.logs.event(
            &d.app,
            format!("deploy {}: {step}: {detail}", short(&d.id.to_string())),
        );
        hold_after(step).await;
        Ok(())
    }

    async fn steps(&self, d: &mut DeployRow) -> Result<(), ApiError> {
        let done: std::collections::HashSet<String> = self
            .store_()
            .list_deploy_steps(d.id)
            .await?
            .into_iter()
            .map(|s| s.step)
            .collect();
        let app = d.app.clone();
        let branch = d
            .branch
            .clone()
            .unwrap_or_else(|| DEFAULT_MAIN_BRANCH.to_owned());

        // 1. Which environment does the branch deploy to?
        let env = match d.env.clone() {
            Some(e) => e,
            None => {
                let env = self.resolve_env(d, &branch).await?;
                d.env = Some(env.clone());
                self.store_().update_deploy(d).await?;
                env
            }
        };
        let host = host_key(&app, &env)?;
        if !done.contains("resolve") {
            self.record(d, "resolve", format!("branch {branch} → environment {env}"))
                .await?;
        }

        // 2. Clone and build the branch into a signed bundle.
        let cached = match d.digest.as_deref().and_then(|s| s.parse::<Digest>().ok()) {
            Some(dg) if self.deployer.ensure_bundle(&dg).await? => Some(dg),
            _ => None,
        };
        let digest = match cached {
            Some(dg) => dg,
            _ => {
                let dg = self.build(d, &branch).await?;
                d.digest = Some(dg.to_string());
                self.store_().update_deploy(d).await?;
                dg
            }
        };
        if !done.contains("build") {
            self.record(
                d,
                "build",
                format!("cloned {branch}; bundle {}", digest.short()),
            )
            .await?;
        }

        // 3. Does the environment exist? Create it if not.
        let existing = self.store_().get_environment(&app, &env).await?;
        let created = existing.is_none();
        let now = morel_core::time::now_ms();
        let mut row = existing.unwrap_or(EnvironmentRow {
            app: app.clone(),
            name: env.clone(),
            kind: if env == PRODUCTION {
                EnvironmentKind::Production
            } else {
                EnvironmentKind::Preview
            },
            branch: None,
            repo_url: None,
            status: EnvironmentStatus::Creating,
            url: None,
            error: None,
            created_at: now,
            updated_at: now,
        });
        if created && env != PRODUCTION && self.store_().get_app(&host).await?.is_some() {
            return Err(ApiError::bad_request(format!(
                "environment {env} of {} would collide with the app named {}",
                app.name, host.name
            )));
        }
        row.branch = Some(if env == PRODUCTION {
            d.main_branch.clone().unwrap_or(branch.clone())
        } else {
            branch.clone()
        });
        row.repo_url = Some(d.repo_url.clone());
        row.status = EnvironmentStatus::Deploying;
        row.error = None;
        row.updated_at = now;
        self.store_().upsert_environment(&row).await?;
        if !done.contains("environment") {
            let what = if created { "created" } else { "exists" };
            self.record(d, "environment", format!("{env} {what}"))
                .await?;
        }

        // 4. Attach its address.
        self.attach_address(&app, &env)?;
        let urls = self.urls(&app, &env);
        if !done.contains("address") {
            self.record(d, "address", urls.join(" ")).await?;
        }

        // 5. Secrets and certificate.
        let secrets = self.store_().list_secrets(&app, &env).await?.len();
        let cert = self.apply_certificate(&app, &env).await?;
        if !done.contains("secrets") {
            let detail = format!(
                "{secrets} secret{}, {}",
                if secrets == 1 { "" } else { "s" },
                if cert {
                    "certificate loaded"
                } else {
                    "no certificate"
                }
            );
            self.record(d, "secrets", detail).await?;
        }

        // 6. Create or replace the instances: one release per deploy, reused on resume.
        if d.release.is_none() {
            // A crash right after creating the release, before recording it: reuse that one.
            let orphan = self
                .store_()
                .list_releases(&host)
                .await?
                .into_iter()
                .rev()
                .find(|r| r.digest == digest && r.env == env && r.created_at >= d.created_at);
            if let Some(r) = orphan {
                d.release = Some(r.number);
                self.store_().update_deploy(d).await?;
                if !r.status.is_terminal() {
                    self.deployer.spawn_rollout(r);
                }
            }
        }
        let release = match d.release {
            Some(n) => {
                let r = self
                    .store_()
                    .get_release(&host, n)
                    .await?
                    .ok_or_else(|| ApiError::not_found(format!("release v{n} vanished")))?;
                if r.status == ReleaseStatus::Failed
                    && r.error.as_deref() == Some("interrupted by a server restart")
                {
                    self.store_()
                        .set_release_status(&host, n, ReleaseStatus::Pending, None)
                        .await?;
                    self.deployer.spawn_rollout(r.clone());
                }
                r
            }
            None => {
                // The environment's config (`morel env set`) is kept across deploys.
                let r = self
                    .deployer
                    .create_release(
                        &host,
                        Some(&digest),
                        &env,
                        crate::deploy::ConfigChange::Merge(Default::default()),
                    )
                    .await?;
                d.release = Some(r.number);
                self.store_().update_deploy(d).await?;
                r
            }
        };
        let r = self
            .deployer
            .wait_release(&host, release.number, RELEASE_LIMIT)
            .await?;
        if r.status != ReleaseStatus::Ready {
            return Err(ApiError::bad_request(format!(
                "release v{} of {env} {}: {}",
                r.number,
                r.status.as_str(),
                r.error.unwrap_or_default()
            )));
        }
        if !done.contains("instances") {
            self.record(d, "instances", format!("v{} ready", r.number))
                .await?;
        }

        // 7. Record the environment's URL.
        row.status = EnvironmentStatus::Ready;
        row.url = urls.first().cloned();
        row.updated_at = morel_core::time::now_ms();
        self.store_().upsert_environment(&row).await?;
        let keep = self.deployer.cfg.keep_releases;
        if keep > 0 {
            let pruned = self.prune_bundles(&host, keep).await?;
            if pruned > 0 {
                tracing::info!(app = %app, env, pruned, "pruned old bundles");
            }
        }
        if !done.contains("url") {
            self.record(d, "url", row.url.clone().unwrap_or_default())
                .await?;
        }
        Ok(())
    }

    async fn resolve_env(&self, d: &DeployRow, branch: &str) -> Result<String, ApiError> {
        let main = self.main_branch(&d.app, d.main_branch.as_deref()).await?;
        if branch == main {
            return Ok(PRODUCTION.to_owned());
        }
        let envs = self.store_().list_environments(Some(&d.app)).await?;
        if let Some(e) = envs
            .iter()
            .find(|e| e.kind == EnvironmentKind::Preview && e.branch.as_deref() == Some(branch))
        {
            return Ok(e.name.clone());
        }
        // The host key `{app}--{env}` must stay a valid app name.
        let max = 61usize.saturating_sub(d.app.name.as_str().len()).min(40);
        if max < 3 {
            return Err(ApiError::bad_request(format!(
                "app name {} is too long for preview environments",
                d.app.name
            )));
        }
        let base = slug_branch(branch, max);
        let taken = |n: &str| n == PRODUCTION || envs.iter().any(|e| e.name == n);
        let mut name = base.clone();
        let mut i = 2;
        while taken(&name) || check_env_name(&name).is_err() {
            let suffix = format!("-{i}");
            let stem: String = base
                .chars()
                .take(max.saturating_sub(suffix.len()))
                .collect();
            name = format!("{}{suffix}", stem.trim_end_matches('-'));
            i += 1;
            if i > 1000 {
                return Err(ApiError::bad_request(format!(
                    "no free environment name for branch {branch}"
                )));
            }
        }
        Ok(name)
    }

    async fn build(&self, d: &DeployRow, branch: &str) -> Result<Digest, ApiError> {
        let scratch = self.deployer.cfg.state_dir.join("tmp");
        std::fs::create_dir_all(&scratch)
            .map_err(|e| ApiError::internal("creating a scratch directory", &e))?;
        let dir = tempfile::Builder::new()
            .prefix("git-deploy-")
            .tempdir_in(&scratch)
            .map_err(|e| ApiError::internal("creating a scratch directory", &e))?;
        let checkout = dir.path().join("src");
        crate::git::clone(&self.deployer.cfg.git, &d.repo_url, branch, &checkout).await?;
        let (digest, _) = self
            .deployer
            .pack_and_store(&checkout, d.app.name.as_str())
            .await
            .map_err(|e| {
                ApiError::bad_request(format!(
                    "branch {branch} of {} has no deployable project: {}",
                    d.repo_url, e.message
                ))
            })?;
        Ok(digest)
    }
}

fn short(id: &str) -> &str {
    id.get(id.len().saturating_sub(8)..).unwrap_or(id)
}

/// Test hook: stops a worker for good right after the named step (the e2e test then kills
/// the server mid-deploy). Unset in normal operation.
async fn hold_after(step: &str) {
    if std::env::var(morel_core::env_vars::MOREL_TEST_DEPLOY_HOLD_AFTER).as_deref() == Ok(step) {
        tracing::warn!(
            step,
            "holding the deploy worker ({} is set)",
            morel_core::env_vars::MOREL_TEST_DEPLOY_HOLD_AFTER
        );
        std::future::pending::<()>().await;
    }
}

/// The deploy worker: one deploy at a time, its lease renewed while it runs.
pub async fn run_deploys(envs: Arc<Environments>, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        let msgs = envs
            .store_()
            .queue_read(DEPLOYS_QUEUE, LEASE_MS, 1)
            .await
            .unwrap_or_default();
        let Some(m) = msgs.into_iter().next() else {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = stop.changed() => return,
            }
            continue;
        };
        let store = envs.store_().clone();
        let Ok(msg) = serde_json::from_value::<DeployMessage>(m.message.clone()) else {
            let _ = store.queue_archive(DEPLOYS_QUEUE, m.msg_id, true).await;
            continue;
        };
        if m.read_ct > MAX_READS {
            if let Ok(Some(mut d)) = store.get_deploy(msg.deploy_id).await {
                d.status = DeployStatus::Failed;
                d.error = Some(format!(
                    "deploy was picked up {} times without finishing",
                    m.read_ct - 1
                ));
                let _ = store.update_deploy(&d).await;
            }
            let _ = store.queue_archive(DEPLOYS_QUEUE, m.msg_id, true).await;
            continue;
        }
        // Renew the lease while the deploy runs.
        let renew_store = store.clone();
        let renew = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis((LEASE_MS / 3) as u64)).await;
                let _ = renew_store
                    .queue_set_vt(DEPLOYS_QUEUE, m.msg_id, LEASE_MS)
                    .await;
            }
        });
        let result = envs.walk(msg.deploy_id).await;
        renew.abort();
        match result {
            Ok(()) => {
                let _ = store.queue_delete(DEPLOYS_QUEUE, m.msg_id).await;
            }
            Err(e) => {
                tracing::warn!(deploy = %msg.deploy_id, error = %e.message, "deploy worker error; will retry")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_redaction() {
        assert_eq!(
            app_from_url("file:///tmp/x/Shop.git").unwrap().as_str(),
            "shop"
        );
        assert_eq!(
            app_from_url("ssh://git@host:22/team/web-app/")
                .unwrap()
                .as_str(),
            "web-app"
        );
        assert_eq!(
            redact_url("https://bob:s3cret@example.com/a/b.git"),
            "https://***@example.com/a/b.git"
        );
        assert_eq!(
            redact_url("ssh://git@example.com/a.git"),
            "ssh://git@example.com/a.git"
        );
        assert_eq!(redact_url("file:///tmp/a"), "file:///tmp/a");
    }
}
