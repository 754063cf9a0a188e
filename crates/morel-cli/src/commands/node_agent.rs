//! What `morel agent` runs: the instances the scheduler placed on its node.
//!
//! Every tick it asks the server for its placements. A new one is started: the bundle is
//! pulled by digest (`GET /api/bundles/{digest}/content`) and verified against the keys the
//! server trusts before anything is written, then the in-process [`Agent`] prepares it
//! (extract, install) and starts one instance of the placed resource. Calls for it are served
//! on the agent's own listener (the gateway's call path over a local route table), and the
//! agent reports the placement `ready` with that endpoint (or `failed` with the reason). A
//! running instance whose placement is gone (moved after a node loss, an older release, a
//! deleted app) is stopped, so an agent that comes back stops its stale instances.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use morel_agent::{Agent, BlobDir, Running};
use morel_bundle::{PublicKey, Signature, TrustedKeys};
use morel_core::{AppName, Digest, Namespace, PlacementState};
use morel_gateway::{AppRoutes, FnRoute, RouteTable};
use morel_store::AppKey;
use serde::Deserialize;

/// A placement as `GET /api/nodes/{node}/placements` returns it.
#[derive(Debug, Clone, Deserialize)]
pub struct Assignment {
    pub id: String,
    pub namespace: String,
    pub app: String,
    pub release: i64,
    pub resource: String,
    pub state: PlacementState,
    pub env: String,
    pub digest: Digest,
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// The app's uid, as the servers recorded it.
    #[serde(default)]
    pub uid: Option<u32>,
}

/// How long an instance no longer placed on this node keeps serving before it stops: longer
/// than the servers' routing refresh (500 ms) and a forwarded call's way.
const DRAIN: Duration = Duration::from_secs(3);

struct Instance {
    app: AppKey,
    release: i64,
    env: String,
    running: Running,
    /// The release's HTTP routes (`"METHOD /path"` → function), served at `/{app}{path}`.
    http: Vec<(String, String)>,
}

/// The servers this agent may talk to; it moves to the next one when a request fails.
pub struct Servers {
    urls: Vec<String>,
    current: Mutex<usize>,
    pub token: String,
    pub http: reqwest::Client,
}

impl Servers {
    pub fn new(urls: Vec<String>, token: String) -> Result<Self> {
        if urls.is_empty() {
            bail!("--join needs at least one server URL");
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(2))
            .build()?;
        Ok(Servers {
            urls,
            current: Mutex::new(0),
            token,
            http,
        })
    }

    pub fn url(&self) -> String {
        let i = *self.current.lock().unwrap_or_else(|e| e.into_inner());
        self.urls[i % self.urls.len()].clone()
    }

    /// After a failed request: use the next server.
    pub fn rotate(&self) {
        let mut i = self.current.lock().unwrap_or_else(|e| e.into_inner());
        *i = (*i + 1) % self.urls.len();
    }

    /// Sends a request to the current server, moving to the next one when it cannot be reached
    /// or answers 401, 404, 429 or 5xx (a server that refuses the token, lacks the bundle, or
    /// is in trouble); when every server answers so, the last answer is returned.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<reqwest::Response> {
        let mut last = None;
        let mut refused = None;
        for _ in 0..self.urls.len() {
            let url = self.url();
            let mut req = self
                .http
                .request(method.clone(), format!("{url}{path}"))
                .bearer_auth(&self.token);
            if let Some(b) = body {
                req = req.json(b);
            }
            match req.send().await {
                Ok(r) if fails_over(r.status()) => {
                    tracing::warn!(server = %url, status = %r.status(), path, "server refused; trying the next");
                    refused = Some(r);
                    self.rotate();
                }
                Ok(r) => return Ok(r),
                Err(e) => {
                    tracing::warn!(server = %url, error = %e, "server unreachable; trying the next");
                    last = Some(e);
                    self.rotate();
                }
            }
        }
        if let Some(r) = refused {
            return Ok(r);
        }
        Err(anyhow::anyhow!(
            "no server reachable: {}",
            last.map(|e| e.to_string()).unwrap_or_default()
        ))
    }
}

/// An answer after which another server may do better.
fn fails_over(status: reqwest::StatusCode) -> bool {
    use reqwest::StatusCode;
    matches!(
        status,
        StatusCode::UNAUTHORIZED | StatusCode::NOT_FOUND | StatusCode::TOO_MANY_REQUESTS
    ) || status.is_server_error()
}

pub struct NodeAgent {
    pub node: String,
    /// Where this agent serves calls (announced to the server).
    pub address: String,
    pub servers: Arc<Servers>,
    pub agent: Arc<Agent>,
    pub blobs: BlobDir,
    pub routes: Arc<RouteTable>,
    running: Mutex<HashMap<String, Instance>>,
    starting: Mutex<HashSet<String>>,
    /// Placements gone from this node whose instances still serve for [`DRAIN`].
    draining: Mutex<HashSet<String>>,
    failed: Mutex<HashMap<String, String>>,
    /// One prepare at a time (two placements of one release share its extracted files).
    prepare: tokio::sync::Mutex<()>,
}

impl NodeAgent {
    pub fn new(
        node: String,
        address: String,
        servers: Arc<Servers>,
        agent: Arc<Agent>,
        blobs: BlobDir,
        routes: Arc<RouteTable>,
    ) -> Arc<Self> {
        Arc::new(NodeAgent {
            node,
            address,
            servers,
            agent,
            blobs,
            routes,
            running: Default::default(),
            starting: Default::default(),
            draining: Default::default(),
            failed: Default::default(),
            prepare: Default::default(),
        })
    }

    /// Polls the server every `interval`, forever.
    pub async fn run(self: Arc<Self>, interval: Duration) {
        loop {
            if let Err(e) = self.clone().tick().await {
                tracing::warn!(error = %format!("{e:#}"), "syncing placements");
            }
            tokio::time::sleep(interval).await;
        }
    }

    async fn tick(self: Arc<Self>) -> Result<()> {
        let path = format!("/api/nodes/{}/placements", self.node);
        let resp = self.servers.send(reqwest::Method::GET, &path, None).await?;
        if !resp.status().is_success() {
            bail!("{path}: HTTP {}", resp.status().as_u16());
        }
        let assigned: Vec<Assignment> = resp.json().await.context("reading placements")?;
        let ids: HashSet<&str> = assigned.iter().map(|a| a.id.as_str()).collect();

        // Stop what is no longer placed here, after a drain: servers route by a table they
        // refresh every 500 ms, so an instance keeps serving what they still send it (a
        // redeploy's old release, a moved placement) for `DRAIN` before it stops.
        let gone: Vec<String> = {
            let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            let mut draining = self.draining.lock().unwrap_or_else(|e| e.into_inner());
            running
                .keys()
                .filter(|id| !ids.contains(id.as_str()) && draining.insert((*id).clone()))
                .cloned()
                .collect()
        };
        for id in gone {
            let this = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(DRAIN).await;
                let inst = this
                    .running
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
                this.draining
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
                if let Some(inst) = inst {
                    tracing::info!(placement = %id, app = %inst.app, resource = inst.running.resource(), "not placed here any more: drained, stopping");
                    this.install_routes(&inst.app);
                    inst.running.stop().await;
                }
            });
        }
        self.failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|id, _| ids.contains(id.as_str()));

        for a in assigned {
            let running = self
                .running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(&a.id);
            let failed = self
                .failed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&a.id)
                .cloned();
            if running {
                if a.state != PlacementState::Ready {
                    self.report(&a.id, PlacementState::Ready, None).await;
                }
            } else if let Some(msg) = failed {
                if a.state != PlacementState::Failed {
                    self.report(&a.id, PlacementState::Failed, Some(&msg)).await;
                }
            } else if self
                .starting
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(a.id.clone())
            {
                let this = self.clone();
                tokio::spawn(async move {
                    let id = a.id.clone();
                    match this.start(&a).await {
                        Ok(()) => this.report(&id, PlacementState::Ready, None).await,
                        Err(e) => {
                            let msg = format!("{e:#}");
                            tracing::warn!(placement = %id, error = %msg, "starting a placed instance failed");
                            this.failed
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .insert(id.clone(), msg.clone());
                            this.report(&id, PlacementState::Failed, Some(&msg)).await;
                        }
                    }
                    this.starting
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&id);
                });
            }
        }
        Ok(())
    }

    async fn report(&self, id: &str, state: PlacementState, error: Option<&str>) {
        let endpoint = (state == PlacementState::Ready).then_some(self.address.as_str());
        let body = serde_json::json!({"state": state, "endpoint": endpoint, "error": error});
        let path = format!("/api/nodes/{}/placements/{id}", self.node);
        match self
            .servers
            .send(reqwest::Method::POST, &path, Some(&body))
            .await
        {
            Ok(r) if r.status().is_success() => {}
            // Moved away meanwhile: the next tick stops it.
            Ok(r) => {
                tracing::info!(placement = %id, status = r.status().as_u16(), "report refused")
            }
            Err(e) => tracing::warn!(placement = %id, error = %format!("{e:#}"), "reporting"),
        }
    }

    /// Fetches and verifies the bundle, prepares the release and starts one instance of the
    /// placed resource.
    async fn start(&self, a: &Assignment) -> Result<()> {
        let app = AppKey::new(a.namespace.parse::<Namespace>()?, a.app.parse::<AppName>()?);
        if let Some(uid) = a.uid {
            self.agent.use_uid(&app, uid);
        }
        let prepared = {
            let _one = self.prepare.lock().await;
            let trusted = self.trusted_keys().await?;
            self.agent.set_trusted(trusted.clone());
            if !self.blobs.contains(&a.digest) {
                self.fetch_bundle(&a.digest, &trusted).await?;
            }
            let progress =
                |step: String| tracing::info!(app = %a.app, release = a.release, "{step}");
            self.agent
                .prepare(&app, &a.env, a.release, &a.digest, &progress)
                .await?
        };
        let mut prepared = prepared;
        // One placement is one instance.
        let Some(spec) = prepared.manifest.resources.get_mut(&a.resource) else {
            bail!(
                "release v{} of {} has no resource {:?}",
                a.release,
                a.app,
                a.resource
            );
        };
        spec.workers_min = 1;
        spec.workers_max = 1;
        let skip: BTreeSet<String> = prepared
            .manifest
            .resources
            .keys()
            .filter(|r| **r != a.resource)
            .cloned()
            .collect();
        let mut started = self.agent.start(&prepared, &a.config, &skip).await?;
        let running = started
            .pop()
            .with_context(|| format!("resource {:?} did not start", a.resource))?;
        for extra in started {
            extra.stop().await;
        }
        tracing::info!(placement = %a.id, app = %app, resource = %a.resource, "instance ready");
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                a.id.clone(),
                Instance {
                    app: app.clone(),
                    release: a.release,
                    env: a.env.clone(),
                    running,
                    http: prepared
                        .manifest
                        .routes
                        .values()
                        .flat_map(|t| t.iter().map(|(k, f)| (k.clone(), f.clone())))
                        .collect(),
                },
            );
        self.install_routes(&app);
        Ok(())
    }

    /// Routes an app's calls on this agent to its running instances (newest release first).
    fn install_routes(&self, app: &AppKey) {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let mine: Vec<&Instance> = running.values().filter(|i| &i.app == app).collect();
        let Some(newest) = mine.iter().map(|i| i.release).max() else {
            self.routes
                .remove(app.namespace.as_str(), app.name.as_str());
            return;
        };
        let mut functions = HashMap::new();
        let mut env = String::new();
        let mut http = Vec::new();
        for inst in mine.iter().filter(|i| i.release == newest) {
            env = inst.env.clone();
            http = inst.http.clone();
            for f in inst.running.functions() {
                functions.insert(
                    f.name.clone(),
                    FnRoute::new(
                        app.namespace.as_str(),
                        app.name.as_str(),
                        &f.name,
                        inst.running.clone(),
                        f.params.clone(),
                    ),
                );
            }
        }
        self.routes.install(
            app.namespace.as_str(),
            app.name.as_str(),
            AppRoutes {
                release: newest,
                env,
                functions,
                http: http.into_iter().collect(),
            },
        );
    }

    async fn trusted_keys(&self) -> Result<TrustedKeys> {
        #[derive(Deserialize)]
        struct Key {
            public_key: String,
        }
        let resp = self
            .servers
            .send(reqwest::Method::GET, "/api/keys", None)
            .await?;
        if !resp.status().is_success() {
            bail!("/api/keys: HTTP {}", resp.status().as_u16());
        }
        let keys: Vec<Key> = resp.json().await.context("reading trusted keys")?;
        let mut trusted = TrustedKeys::new();
        for k in keys {
            match PublicKey::from_text(&k.public_key) {
                Ok(p) => {
                    trusted.insert(p);
                }
                Err(e) => tracing::warn!(error = %e, "ignoring an unreadable trusted key"),
            }
        }
        Ok(trusted)
    }

    async fn fetch_bundle(&self, digest: &Digest, trusted: &TrustedKeys) -> Result<()> {
        let path = format!("/api/bundles/{digest}/content");
        let resp = self.servers.send(reqwest::Method::GET, &path, None).await?;
        if !resp.status().is_success() {
            bail!("{path}: HTTP {}", resp.status().as_u16());
        }
        let sig = resp
            .headers()
            .get("x-morel-signature")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .with_context(|| format!("bundle {} came without a signature", digest.short()))?;
        let sig = Signature::from_header(sig.trim())?;
        let bytes = resp.bytes().await.context("downloading a bundle")?;
        // Nothing is written before the digest and signature check out.
        morel_bundle::verify(&bytes, Some(digest), &sig, trusted)
            .with_context(|| format!("bundle {} from the server", digest.short()))?;
        self.blobs.put(digest, &bytes, &sig).await?;
        tracing::info!(digest = %digest.short(), size = bytes.len(), "bundle pulled and verified");
        Ok(())
    }
}
