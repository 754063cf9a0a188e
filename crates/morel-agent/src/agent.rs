//! The local agent: prepare a release (verify → extract → install) and start its pools.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use morel_bundle::{ExtractLimits, Signature, TrustedKeys};
use morel_core::{Digest, Runtime, env_vars};
use morel_manifest::{DependencyKind, Manifest};
use morel_runtime_process::sandbox::{DEFAULT_MEMORY_MB, DEFAULT_OPEN_FILES, DEFAULT_PROCESSES};
use morel_runtime_process::{Installer, Jail, RunnerFiles, Sandbox, WorkerSpec};
use morel_store::{AppKey, Store};

use crate::pool::PoolParams;
use crate::{AgentError, BlobDir, LogHub, ResourcePool};

/// Left out of an extracted tree's digest: the marker holding it, and the link to the
/// installed `node_modules` the agent adds.
const TREE_DIGEST_SKIP: [&str; 2] = [".morel-extracted", "node_modules"];

/// How long a worker may take from spawn to `MetaData`.
const LOAD_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// This node's name, recorded on every instance.
    pub node: String,
    pub state_dir: PathBuf,
    pub python: String,
    pub node_bin: String,
    pub npm: String,
    /// Base URL of the gateway, given to workers for cross-function calls.
    pub gateway_url: String,
}

pub struct Agent {
    cfg: AgentConfig,
    store: Arc<dyn Store>,
    installer: Installer,
    runners: RunnerFiles,
    blobs: BlobDir,
    /// Keys whose signatures this agent accepts. Written by the control plane when keys are
    /// trusted or removed; read on every prepare.
    trusted: RwLock<TrustedKeys>,
    logs: LogHub,
    /// Runs wasm resources in this process.
    engine: morel_runtime_wasm::WasmEngine,
    toolchains: morel_compiler::Toolchains,
    /// How workloads' memory and cpu are limited on this machine (cgroup v2, v1 or rlimit),
    /// detected once per process.
    limit_backend: crate::LimitBackend,
    /// Apps' uids as the servers recorded them (an agent of a many-machine installation);
    /// other apps get theirs from this agent's store.
    uids: RwLock<BTreeMap<String, u32>>,
}

/// A started resource: worker processes, or wasm modules run in this process.
#[derive(Clone)]
pub enum Running {
    Process(Arc<ResourcePool>),
    Wasm(Arc<crate::WasmResource>),
    /// An `http` resource: programs serving HTTP, reached through the edge.
    Http(Arc<crate::HttpService>),
}

impl Running {
    pub fn resource(&self) -> &str {
        match self {
            Running::Process(p) => &p.resource,
            Running::Wasm(w) => &w.resource,
            Running::Http(h) => &h.resource,
        }
    }

    pub fn functions(&self) -> Vec<morel_runtime_process::protocol::FunctionMeta> {
        match self {
            Running::Process(p) => p.functions(),
            Running::Wasm(w) => w.functions(),
            Running::Http(_) => Vec::new(),
        }
    }

    /// One function as its runtime reported it.
    pub fn function(&self, name: &str) -> Option<morel_runtime_process::protocol::FunctionMeta> {
        match self {
            Running::Process(p) => p.function(name),
            Running::Wasm(w) => w.functions().into_iter().find(|f| f.name == name),
            Running::Http(_) => None,
        }
    }

    pub async fn stop(&self) {
        match self {
            Running::Process(p) => p.stop().await,
            Running::Http(h) => h.stop().await,
            Running::Wasm(_) => {}
        }
    }
}

/// A release that is verified, extracted and has its dependencies installed.
#[derive(Clone, Debug)]
pub struct PreparedRelease {
    pub app: AppKey,
    pub env: String,
    pub release: i64,
    pub digest: Digest,
    pub root: PathBuf,
    pub manifest: Manifest,
    /// Per resource: the virtualenv to run Python workers with, when it has requirements.
    venvs: BTreeMap<String, PathBuf>,
    /// Per resource: the directory holding its installed `node_modules`, when it has any.
    node_deps: BTreeMap<String, PathBuf>,
    /// Checks before each start of a workload that the extracted files are the signed ones.
    tree: Option<Arc<morel_bundle::TreeCheck>>,
    /// Per wasm function: its compiled module on disk.
    wasm: BTreeMap<String, PathBuf>,
}

impl PreparedRelease {
    /// The integrity check each workload start of this release runs first.
    fn pre_start(&self) -> Option<morel_runtime_process::PreStart> {
        let tree = self.tree.clone()?;
        Some(morel_runtime_process::PreStart(Arc::new(move || {
            tree.verify()
        })))
    }
}

impl Agent {
    pub fn new(
        cfg: AgentConfig,
        store: Arc<dyn Store>,
        blobs: BlobDir,
        logs: LogHub,
        engine: morel_runtime_wasm::WasmEngine,
        toolchains: morel_compiler::Toolchains,
    ) -> Result<Arc<Agent>, AgentError> {
        let runtime_dir = cfg.state_dir.join("runtime");
        let runners = RunnerFiles::install(&runtime_dir).map_err(AgentError::io(&runtime_dir))?;
        let installer = Installer::new(
            cfg.state_dir.join("deps"),
            cfg.python.clone(),
            cfg.npm.clone(),
        );
        Ok(Arc::new(Agent {
            cfg,
            store,
            installer,
            runners,
            blobs,
            trusted: RwLock::new(TrustedKeys::new()),
            logs,
            engine,
            toolchains,
            limit_backend: crate::LimitBackend::current().clone(),
            uids: RwLock::new(BTreeMap::new()),
        }))
    }

    pub fn set_trusted(&self, keys: TrustedKeys) {
        if let Ok(mut t) = self.trusted.write() {
            *t = keys;
        }
    }

    /// Runs `app`'s workloads as `uid`: the id the servers recorded, the same on every machine.
    pub fn use_uid(&self, app: &AppKey, uid: u32) {
        if let Ok(mut u) = self.uids.write() {
            u.insert(app.to_string(), uid);
        }
    }

    /// How workloads are limited here (cgroup v2, v1 or rlimit, and why).
    pub fn limit_backend(&self) -> &crate::LimitBackend {
        &self.limit_backend
    }

    /// How a workload is limited: through this machine's cgroups when its resource `asked` for
    /// limits (`cpu` or `memory_mb`), else by the default memory per process (RLIMIT_DATA).
    /// A cgroup costs each cold start its creation (about 15 ms on cgroup v1, bench/NOTES.md),
    /// so only a workload that sets a limit pays for it.
    fn limit_backend_for(&self, asked: bool) -> crate::LimitBackend {
        match &self.limit_backend {
            crate::LimitBackend::Rlimit { .. } => self.limit_backend.clone(),
            _ if asked => self.limit_backend.clone(),
            _ => crate::LimitBackend::Rlimit {
                why: "the resource sets neither cpu nor memory_mb: the default memory holds per \
                      process"
                    .into(),
            },
        }
    }

    pub fn node(&self) -> &str {
        &self.cfg.node
    }

    /// Removes instance rows left by a previous run of this node: their processes are gone.
    pub async fn forget_stale_instances(&self) -> Result<(), AgentError> {
        for row in self.store.list_instances(None).await? {
            if row.node == self.cfg.node {
                self.store.delete_instance(row.id).await?;
            }
        }
        Ok(())
    }

    fn release_dir(&self, app: &AppKey, release: i64) -> PathBuf {
        self.cfg
            .state_dir
            .join("releases")
            .join(app.namespace.as_str())
            .join(app.name.as_str())
            .join(format!("v{release}"))
    }

    /// What a workload of `resource` is confined to: the app's uid (when Morel runs as root),
    /// read access to its release, dependencies, the runners and `program`'s trees, the state
    /// directory hidden, and its limits. The scratch directory is added per process.
    async fn jail(
        &self,
        prepared: &PreparedRelease,
        resource: &str,
        program: &std::path::Path,
        memory_mb: Option<u64>,
    ) -> Result<Jail, AgentError> {
        let sandbox = Sandbox::current();
        let given = self
            .uids
            .read()
            .ok()
            .and_then(|u| u.get(&prepared.app.to_string()).copied());
        let uid = match given {
            _ if !sandbox.uid_per_app() => None,
            Some(uid) => Some(uid),
            None => {
                let (first, count) = sandbox.uid_range();
                Some(self.store.app_uid(&prepared.app, first, count).await?)
            }
        };
        let mut read = vec![prepared.root.clone(), self.runners.dir().to_path_buf()];
        read.extend(prepared.venvs.get(resource).cloned());
        read.extend(prepared.node_deps.get(resource).cloned());
        read.extend(Sandbox::program_trees(
            program,
            std::env::var_os("PATH").as_deref(),
        ));
        Ok(Jail {
            uid,
            // RLIMIT_DATA unless the instance gets a cgroup (`InstanceCgroup::confine`).
            memory_bytes: Some(memory_mb.unwrap_or(DEFAULT_MEMORY_MB) << 20),
            cgroups: Vec::new(),
            // RLIMIT_NPROC counts a uid's processes: only an app's own uid makes it per app.
            processes: uid.map(|_| DEFAULT_PROCESSES),
            open_files: Some(DEFAULT_OPEN_FILES),
            read,
            write: Vec::new(),
            hide: vec![self.cfg.state_dir.clone()],
            landlock: sandbox.enabled(),
            seccomp: sandbox.enabled(),
            user_namespace: sandbox.user_namespaces(),
        })
    }

    /// Where workloads get their scratch directories.
    fn scratch_dir(&self) -> PathBuf {
        self.cfg.state_dir.join("scratch")
    }

    /// Verifies the bundle (digest and signature, before anything is extracted), extracts
    /// it, and installs each resource's dependencies (cached by the dependency file's hash).
    pub async fn prepare(
        &self,
        app: &AppKey,
        env: &str,
        release: i64,
        digest: &Digest,
        progress: &(dyn Fn(String) + Send + Sync),
    ) -> Result<PreparedRelease, AgentError> {
        let root = self.release_dir(app, release);
        let marker = root.join(".morel-extracted");
        let bundle_err = |source| AgentError::Bundle {
            digest: digest.clone(),
            source,
        };
        // What runs is what was signed: an extracted tree whose files no longer match the
        // digest recorded at extraction is logged and extracted again from the bundle.
        let mut tree_digest = None;
        let intact = if marker.exists() {
            let recorded = tokio::fs::read_to_string(&marker).await.unwrap_or_default();
            let dir = root.clone();
            let now = tokio::task::spawn_blocking(move || {
                morel_bundle::tree_digest(&dir, &TREE_DIGEST_SKIP)
            })
            .await
            .ok()
            .and_then(Result::ok);
            let intact = now.as_deref() == Some(recorded.trim());
            // An empty marker is a tree extracted before digests were recorded.
            if !intact && !recorded.trim().is_empty() {
                let msg = format!(
                    "release v{release}: the extracted files differ from bundle {} \
                     (changed after extraction); extracting it again",
                    digest.short()
                );
                tracing::warn!(app = %app, "{msg}");
                self.logs.event(app, msg);
            }
            if intact {
                tree_digest = Some(recorded.trim().to_owned());
            }
            intact
        } else {
            false
        };
        let manifest_bytes = if intact {
            tokio::fs::read(root.join(morel_manifest::MANIFEST_FILE))
                .await
                .map_err(AgentError::io(&root))?
        } else {
            progress(format!("verifying bundle {}", digest.short()));
            let (bytes, sig) = self
                .blobs
                .read(digest)
                .await
                .map_err(|_| AgentError::MissingBundle(digest.clone()))?;
            let sig = Signature::from_header(sig.trim()).map_err(bundle_err)?;
            {
                let trusted = self.trusted.read().map(|t| t.clone()).unwrap_or_default();
                morel_bundle::verify(&bytes, Some(digest), &sig, &trusted).map_err(bundle_err)?;
            }
            progress("extracting bundle".into());
            if root.exists() {
                tokio::fs::remove_dir_all(&root)
                    .await
                    .map_err(AgentError::io(&root))?;
            }
            if let Some(parent) = root.parent() {
                tokio::fs::create_dir_all(parent)
                    .await
                    .map_err(AgentError::io(parent))?;
            }
            let dest = root.clone();
            let bytes = Arc::new(bytes);
            let b = bytes.clone();
            tokio::task::spawn_blocking(move || {
                morel_bundle::extract(&b, &dest, &ExtractLimits::default())
            })
            .await
            .map_err(|e| AgentError::Start {
                resource: "-".into(),
                message: e.to_string(),
            })?
            .map_err(bundle_err)?;
            let dir = root.clone();
            let tree = tokio::task::spawn_blocking(move || {
                morel_bundle::tree_digest(&dir, &TREE_DIGEST_SKIP)
            })
            .await
            .map_err(|e| AgentError::Start {
                resource: "-".into(),
                message: e.to_string(),
            })?
            .map_err(AgentError::io(&root))?;
            tokio::fs::write(&marker, tree.as_bytes())
                .await
                .map_err(AgentError::io(&marker))?;
            tree_digest = Some(tree);
            tokio::fs::read(root.join(morel_manifest::MANIFEST_FILE))
                .await
                .map_err(AgentError::io(&root))?
        };
        let manifest = Manifest::from_json(&manifest_bytes).map_err(|e| AgentError::Start {
            resource: "-".into(),
            message: e.to_string(),
        })?;

        let mut venvs = BTreeMap::new();
        let mut node_deps = BTreeMap::new();
        let mut wasm = BTreeMap::new();
        for (name, res) in manifest
            .resources
            .iter()
            .filter(|(_, r)| r.runtime == Runtime::Wasm)
        {
            for f in &res.functions {
                let path = self.compile_wasm(&root, name, f, &progress).await?;
                wasm.insert(f.name.clone(), path);
            }
        }
        for (name, res) in &manifest.resources {
            let Some(dep) = &res.dependencies else {
                continue;
            };
            let file = root.join(&dep.file);
            let installed = match dep.kind {
                DependencyKind::Pip => {
                    progress(format!("installing Python dependencies of {name} (pip)"));
                    let inst = self
                        .installer
                        .python(&dep.hash, &file)
                        .await
                        .map_err(|source| AgentError::Deps {
                            resource: name.clone(),
                            source,
                        })?;
                    venvs.insert(name.clone(), inst.path.clone());
                    inst
                }
                DependencyKind::Npm => {
                    progress(format!("installing Node dependencies of {name} (npm)"));
                    let inst = self
                        .installer
                        .node(&dep.hash, &file)
                        .await
                        .map_err(|source| AgentError::Deps {
                            resource: name.clone(),
                            source,
                        })?;
                    if let Some(dir) = inst.path.parent() {
                        node_deps.insert(name.clone(), dir.to_path_buf());
                    }
                    let link = root.join("node_modules");
                    if tokio::fs::symlink_metadata(&link).await.is_err() {
                        tokio::fs::symlink(&inst.path, &link)
                            .await
                            .map_err(AgentError::io(&link))?;
                    }
                    inst
                }
            };
            progress(if installed.fresh {
                format!("dependencies of {name} installed")
            } else {
                format!("dependencies of {name} unchanged (cached)")
            });
        }
        let tree = tree_digest
            .map(|d| Arc::new(morel_bundle::TreeCheck::new(&root, &TREE_DIGEST_SKIP, d)));
        Ok(PreparedRelease {
            tree,
            app: app.clone(),
            env: env.to_owned(),
            release,
            digest: digest.clone(),
            root,
            manifest,
            venvs,
            node_deps,
            wasm,
        })
    }

    /// Compiles one wasm function source (cached by the hash of language and source).
    async fn compile_wasm(
        &self,
        root: &std::path::Path,
        resource: &str,
        f: &morel_manifest::FunctionSpec,
        progress: &(dyn Fn(String) + Send + Sync),
    ) -> Result<PathBuf, AgentError> {
        let src_path = root.join(&f.file);
        if f.module == "wasm" {
            return Ok(src_path);
        }
        let source = tokio::fs::read_to_string(&src_path)
            .await
            .map_err(AgentError::io(&src_path))?;
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        h.update(f.module.as_bytes());
        h.update([0]);
        h.update(source.as_bytes());
        let dir = self.cfg.state_dir.join("wasm-builds");
        let out = dir.join(format!("{}.wasm", hex::encode(h.finalize())));
        if out.exists() {
            return Ok(out);
        }
        progress(format!("compiling {} ({})", f.file, f.module));
        let start_err = |message: String| AgentError::Start {
            resource: resource.to_owned(),
            message,
        };
        let lang: morel_compiler::Language = f.module.parse().map_err(
            |e: <morel_compiler::Language as std::str::FromStr>::Err| start_err(e.to_string()),
        )?;
        let bytes = self
            .toolchains
            .compile(lang, &source, &morel_compiler::CompileLimits::default())
            .await
            .map_err(|e| start_err(format!("{}: {e}", f.file)))?;
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(AgentError::io(&dir))?;
        let tmp = dir.join(format!(".{}.tmp", std::process::id()));
        tokio::fs::write(&tmp, &bytes)
            .await
            .map_err(AgentError::io(&tmp))?;
        tokio::fs::rename(&tmp, &out)
            .await
            .map_err(AgentError::io(&out))?;
        Ok(out)
    }

    /// Starts every resource's pool and waits for each to have a ready instance. On failure the
    /// pools already started are stopped again.
    pub async fn start(
        &self,
        prepared: &PreparedRelease,
        config: &BTreeMap<String, String>,
        skip: &std::collections::BTreeSet<String>,
    ) -> Result<Vec<Running>, AgentError> {
        self.start_placed(prepared, config, skip, &BTreeMap::new())
            .await
    }

    /// Like [`Agent::start`], with the instance count and limits of http resources decided by
    /// the control plane (budget and scale); resources not in `placements` use the manifest's.
    pub async fn start_placed(
        &self,
        prepared: &PreparedRelease,
        config: &BTreeMap<String, String>,
        skip: &std::collections::BTreeSet<String>,
        placements: &BTreeMap<String, crate::HttpPlacement>,
    ) -> Result<Vec<Running>, AgentError> {
        let mut pools = Vec::new();
        let mut running = Vec::new();
        let mut services: Vec<Arc<crate::HttpService>> = Vec::new();
        for (name, res) in &prepared.manifest.resources {
            if skip.contains(name) {
                continue;
            }
            if res.runtime == Runtime::Http {
                let placement = placements
                    .get(name)
                    .cloned()
                    .unwrap_or_else(|| crate::HttpPlacement::from_spec(res));
                let started = match self.http_jail(prepared, name, res, &placement).await {
                    Ok(jail) => self.start_http(prepared, config, name, res, &placement, jail),
                    Err(e) => Err(e),
                };
                match started {
                    Ok(svc) => services.push(svc),
                    Err(e) => {
                        stop_all(&pools).await;
                        for s in &services {
                            s.stop().await;
                        }
                        return Err(e);
                    }
                }
                continue;
            }
            if res.runtime == Runtime::Wasm {
                let mut modules = std::collections::HashMap::new();
                for f in &res.functions {
                    let Some(path) = prepared.wasm.get(&f.name) else {
                        continue;
                    };
                    let bytes = tokio::fs::read(path).await.map_err(AgentError::io(path))?;
                    let engine = self.engine.clone();
                    let module = tokio::task::spawn_blocking(move || engine.load(&bytes))
                        .await
                        .map_err(|e| AgentError::Start {
                            resource: name.clone(),
                            message: e.to_string(),
                        })?
                        .map_err(|e| AgentError::Start {
                            resource: name.clone(),
                            message: format!("{}: {e}", f.file),
                        })?;
                    modules.insert(f.name.clone(), module);
                }
                running.push(Running::Wasm(Arc::new(crate::WasmResource::new(
                    name.clone(),
                    Duration::from_millis(res.timeout_ms),
                    self.engine.clone(),
                    modules,
                ))));
                continue;
            }
            let (program, runner): (PathBuf, &PathBuf) = match res.runtime {
                Runtime::Python => (
                    prepared
                        .venvs
                        .get(name)
                        .map(|v| v.join("bin/python"))
                        .unwrap_or_else(|| PathBuf::from(&self.cfg.python)),
                    &self.runners.runner_py,
                ),
                Runtime::Node => (PathBuf::from(&self.cfg.node_bin), &self.runners.runner_js),
                other => {
                    stop_all(&pools).await;
                    for s in &services {
                        s.stop().await;
                    }
                    return Err(AgentError::UnsupportedRuntime(other));
                }
            };
            let jail = match self.jail(prepared, name, &program, res.memory_mb).await {
                Ok(j) => j,
                Err(e) => {
                    stop_all(&pools).await;
                    for s in &services {
                        s.stop().await;
                    }
                    return Err(e);
                }
            };
            let mut env: Vec<(String, String)> =
                config.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            env.extend(res.env.iter().map(|(k, v)| (k.clone(), v.clone())));
            env.extend([
                (
                    env_vars::INSTANCE_APP.to_owned(),
                    prepared.app.name.to_string(),
                ),
                (env_vars::INSTANCE_ENV.to_owned(), prepared.env.clone()),
                (env_vars::INSTANCE_RESOURCE.to_owned(), name.clone()),
                (
                    env_vars::INSTANCE_GATEWAY.to_owned(),
                    self.cfg.gateway_url.clone(),
                ),
                (
                    "PYTHONPATH".to_owned(),
                    self.runners.python_path.display().to_string(),
                ),
                ("PYTHONUNBUFFERED".to_owned(), "1".to_owned()),
                ("PYTHONDONTWRITEBYTECODE".to_owned(), "1".to_owned()),
            ]);
            let spec = WorkerSpec {
                program,
                args: vec![runner.display().to_string()],
                cwd: prepared.root.clone(),
                env,
                app: prepared.app.name.to_string(),
                resource: name.clone(),
                concurrency: res.concurrency,
                functions: res
                    .functions
                    .iter()
                    .map(|f| (f.name.clone(), f.file.clone(), f.attr.clone()))
                    .collect(),
                load_timeout: LOAD_TIMEOUT,
                jail,
                scratch: Some(self.scratch_dir()),
                pre_start: prepared.pre_start(),
            };
            let pool = ResourcePool::start(PoolParams {
                app: prepared.app.clone(),
                resource: name.clone(),
                release: prepared.release,
                digest: prepared.digest.clone(),
                node: self.cfg.node.clone(),
                limits: crate::pool::ScaleLimits {
                    min: res.workers_min as usize,
                    max: res.workers_max.max(1) as usize,
                    concurrency: res.concurrency.max(1) as usize,
                    idle_timeout: Duration::from_secs(res.idle_timeout_s),
                },
                timeout: Duration::from_millis(res.timeout_ms),
                spec,
                store: self.store.clone(),
                logs: self.logs.clone(),
                metacall: prepared.manifest.metacall,
                resources: crate::Limits {
                    memory_mb: res.memory_mb,
                    cpu: res.cpu,
                }
                .with_default_memory(),
                backend: self.limit_backend_for(res.memory_mb.is_some() || res.cpu.is_some()),
            });
            pools.push(pool);
        }
        let mut failure = None;
        for pool in &pools {
            if let Err(message) = pool.wait_ready(LOAD_TIMEOUT + Duration::from_secs(5)).await {
                failure = Some(AgentError::Start {
                    resource: pool.resource.clone(),
                    message,
                });
                break;
            }
        }
        if failure.is_none() {
            // Health plus warm-up of every instance, bounded by the resource's start timeout.
            for svc in &services {
                let res = &prepared.manifest.resources[&svc.resource];
                let (start, warmup) = res
                    .http
                    .as_ref()
                    .map(|h| (h.start_timeout_s, h.warmup_s))
                    .unwrap_or((30, 0));
                let limit = Duration::from_secs(start + warmup) + Duration::from_secs(2);
                if let Err(message) = svc.wait_ready(limit).await {
                    failure = Some(AgentError::Start {
                        resource: svc.resource.clone(),
                        message,
                    });
                    break;
                }
            }
        }
        if let Some(e) = failure {
            stop_all(&pools).await;
            for s in &services {
                s.stop().await;
            }
            return Err(e);
        }
        running.extend(pools.into_iter().map(Running::Process));
        running.extend(services.into_iter().map(Running::Http));
        Ok(running)
    }

    /// Starts the instances of one http resource (without waiting for them).
    fn start_http(
        &self,
        prepared: &PreparedRelease,
        config: &BTreeMap<String, String>,
        name: &str,
        res: &morel_manifest::ResourceSpec,
        placement: &crate::HttpPlacement,
        jail: Jail,
    ) -> Result<Arc<crate::HttpService>, AgentError> {
        let program = Self::http_program(prepared, name, res)?;
        let http = res.http.as_ref().ok_or_else(|| AgentError::Start {
            resource: name.to_owned(),
            message: "an http resource needs a command".into(),
        })?;
        let rest = http.command.get(1..).unwrap_or_default();
        let mut env: Vec<(String, String)> =
            config.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        env.extend(res.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        env.extend([
            (
                env_vars::INSTANCE_APP.to_owned(),
                prepared.app.name.to_string(),
            ),
            (env_vars::INSTANCE_ENV.to_owned(), prepared.env.clone()),
            (env_vars::INSTANCE_RESOURCE.to_owned(), name.to_owned()),
            (
                env_vars::INSTANCE_GATEWAY.to_owned(),
                self.cfg.gateway_url.clone(),
            ),
            ("PYTHONUNBUFFERED".to_owned(), "1".to_owned()),
        ]);
        Ok(crate::HttpService::start(crate::HttpServiceParams {
            app: prepared.app.clone(),
            resource: name.to_owned(),
            release: prepared.release,
            digest: prepared.digest.clone(),
            node: self.cfg.node.clone(),
            instances: placement.instances,
            program,
            args: rest.to_vec(),
            cwd: prepared.root.clone(),
            env,
            health: http.health.clone(),
            warmup: Duration::from_secs(http.warmup_s),
            heartbeat_ttl: Duration::from_secs(http.heartbeat_ttl_s),
            start_timeout: Duration::from_secs(http.start_timeout_s),
            request_timeout: Duration::from_millis(res.timeout_ms),
            limits: placement.limits.with_default_memory(),
            backend: self.limit_backend_for(
                placement.limits.memory_mb.is_some() || placement.limits.cpu.is_some(),
            ),
            jail,
            scratch: self.scratch_dir(),
            pre_start: prepared.pre_start(),
            store: self.store.clone(),
            logs: self.logs.clone(),
        }))
    }

    /// The program of an http resource: `./server` is relative to the bundle; a bare name
    /// (`python3`) is looked up in PATH.
    fn http_program(
        prepared: &PreparedRelease,
        name: &str,
        res: &morel_manifest::ResourceSpec,
    ) -> Result<PathBuf, AgentError> {
        let first = res
            .http
            .as_ref()
            .and_then(|h| h.command.first())
            .ok_or_else(|| AgentError::Start {
                resource: name.to_owned(),
                message: "an http resource needs a non-empty command".into(),
            })?;
        Ok(if first.contains('/') && !first.starts_with('/') {
            prepared.root.join(first.trim_start_matches("./"))
        } else {
            PathBuf::from(first)
        })
    }

    /// The jail of an http resource's instances (memory from its placement).
    async fn http_jail(
        &self,
        prepared: &PreparedRelease,
        name: &str,
        res: &morel_manifest::ResourceSpec,
        placement: &crate::HttpPlacement,
    ) -> Result<Jail, AgentError> {
        let program = Self::http_program(prepared, name, res)?;
        self.jail(prepared, name, &program, placement.limits.memory_mb)
            .await
    }

    /// Deletes the extracted files of every release of an app (seed 000's delete flow).
    pub async fn remove_app_files(&self, app: &AppKey) -> Result<(), AgentError> {
        let dir = self
            .cfg
            .state_dir
            .join("releases")
            .join(app.namespace.as_str())
            .join(app.name.as_str());
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(AgentError::Io {
                path: dir,
                source: e,
            }),
        }
    }
}

pub async fn stop_all(pools: &[Arc<ResourcePool>]) {
    for p in pools {
        p.stop().await;
    }
}

/// Where and how big an http resource runs: decided by the control plane from the manifest,
/// the app's scale and its budget.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpPlacement {
    pub instances: usize,
    pub limits: crate::Limits,
}

impl HttpPlacement {
    /// The manifest's own choice: `workers_min` instances with its `memory_mb` and `cpu`.
    pub fn from_spec(res: &morel_manifest::ResourceSpec) -> HttpPlacement {
        HttpPlacement {
            instances: res.workers_min.max(1) as usize,
            limits: crate::Limits {
                memory_mb: res.memory_mb,
                cpu: res.cpu,
            },
        }
    }
}
