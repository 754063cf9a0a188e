//! Runs the instances of an `http` resource: programs that serve HTTP themselves.
//!
//! Each instance gets a free loopback `PORT`, the release's env and its limits, and a
//! supervisor task that walks it through `idle → launching → ready → draining → stopped`
//! (or `failed`), persisting every state in the store's instances table:
//! spawn → poll the health path (bounded by the start timeout) → warm-up → ready, which is
//! when the edge may route to it. A process that exits leaves routing at once and is respawned
//! with exponential backoff; [`MAX_FAST_FAILURES`] failures in a row, each before the process
//! had been ready for [`HEALTHY_AFTER`], mark it `failed` (crash loop) with the tail of its
//! stderr. A process that never gets healthy counts as a fast failure however long it tried.
//!
//! A ready instance's endpoint holds a [`Lease`] of `heartbeat_ttl` (3 s by default): every
//! [`HEARTBEAT_EVERY`] the supervisor probes the health path (bounded by
//! [`HEARTBEAT_TIMEOUT`]) and renews the lease when it answers 2xx. [`HttpService::pick`]
//! skips instances whose lease ran out, so a hung (e.g. SIGSTOPped) or unreachable instance
//! stops receiving traffic within the TTL and gets it back at its next good heartbeat. The
//! state stays `ready`; the status says `lease_expired` and the row's `last_error` says since
//! when it is unresponsive. Missed heartbeats never restart the process: a stalled process may
//! resume (a pause, an overload, a debugger) and killing it would lose its in-flight work, a
//! process that exits is respawned anyway, and when the agent itself is gone nobody is left to
//! restart anything, which is what the lease is for.
//!
//! Stopping drains: an instance first leaves routing, then in-flight requests (counted by
//! [`InFlight`] guards the edge holds for a whole response) finish within the drain limit, and
//! only then is the process group sent SIGTERM (SIGKILL after a grace period).
//! This module does not proxy anything; the gateway's edge picks endpoints from it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use morel_core::{Digest, InstanceId, InstanceState};
use morel_store::{AppKey, InstanceRow, LogStream, Store};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::watch;

use crate::LogHub;
use crate::lease::Lease;
use crate::limits::{InstanceCgroup, LimitBackend, Limits};

pub const MAX_FAST_FAILURES: u32 = 5;
pub const HEALTHY_AFTER: Duration = Duration::from_secs(10);
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
const HEALTH_POLL: Duration = Duration::from_millis(100);
const HEALTH_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
const STOP_GRACE: Duration = Duration::from_secs(5);
const STDERR_TAIL: usize = 20;
/// How often the supervisor probes a ready instance to renew its endpoint's lease.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// How long one heartbeat probe may take before it counts as missed.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(1);

/// Everything needed to run one http resource of one release, fully resolved.
pub struct HttpServiceParams {
    pub app: AppKey,
    pub resource: String,
    pub release: i64,
    pub digest: Digest,
    pub node: String,
    pub instances: usize,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub cwd: PathBuf,
    pub env: Vec<(String, String)>,
    pub health: String,
    pub warmup: Duration,
    /// How long a ready endpoint stays routable after its last successful heartbeat.
    pub heartbeat_ttl: Duration,
    /// How long an instance may take from spawn to a healthy answer.
    pub start_timeout: Duration,
    /// The edge's per-request timeout; also the drain limit.
    pub request_timeout: Duration,
    pub limits: Limits,
    pub backend: LimitBackend,
    /// What each instance is confined to; its scratch directory is added per process.
    pub jail: morel_runtime_process::Jail,
    /// Where each instance process gets its scratch directory (`HOME`, `TMPDIR`).
    pub scratch: PathBuf,
    /// Run before each start (the release's integrity); an error fails the start.
    pub pre_start: Option<morel_runtime_process::PreStart>,
    pub store: Arc<dyn Store>,
    pub logs: LogHub,
}

/// What `morel ps` shows of one instance, as the supervisor last saw it.
#[derive(Clone, Debug)]
pub struct InstanceStatus {
    pub id: InstanceId,
    pub state: InstanceState,
    pub pid: Option<u32>,
    pub port: Option<u16>,
    pub restarts: u32,
    pub last_error: Option<String>,
    /// When the current process became ready (ms since the epoch).
    pub ready_since: Option<i64>,
    /// When the current process last answered a heartbeat (ms since the epoch).
    pub last_heartbeat: Option<i64>,
    /// Ready, but its lease ran out (no heartbeat answered within the TTL): not routed to.
    pub lease_expired: bool,
}

struct Instance {
    id: InstanceId,
    /// `Some` while the instance is ready: the edge routes to it. Written by the supervisor,
    /// read by the edge (under this lock, so a drain never misses a request being picked).
    ready: Mutex<Option<SocketAddr>>,
    in_flight: Arc<AtomicUsize>,
    /// Renewed by each heartbeat; the edge skips the instance when it ran out (lock-free).
    lease: Lease,
    status: Mutex<InstanceStatus>,
    stop: watch::Sender<bool>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// A running http resource: its instances and their supervisors.
pub struct HttpService {
    pub app: AppKey,
    pub resource: String,
    pub release: i64,
    pub digest: Digest,
    pub request_timeout: Duration,
    /// Which limits are in force and how (cgroup v2 or rlimit), for the status.
    pub limits_note: String,
    params: Arc<HttpServiceParams>,
    instances: Mutex<Vec<Arc<Instance>>>,
    next: AtomicUsize,
    /// Bumped whenever an instance becomes ready or leaves routing; the edge waits on it.
    changed: watch::Sender<u64>,
}

/// A routed request's hold on an instance: drains wait until every guard is dropped.
pub struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A ready instance picked for one request.
pub struct Endpoint {
    pub addr: SocketAddr,
    pub instance: InstanceId,
    pub guard: InFlight,
}

impl HttpService {
    /// Starts `params.instances` supervisors; use [`HttpService::wait_ready`] to wait for them.
    pub fn start(params: HttpServiceParams) -> Arc<HttpService> {
        let (changed, _) = watch::channel(0);
        let limits_note = params.backend.describe(&params.limits);
        let n = params.instances.max(1);
        let svc = Arc::new(HttpService {
            app: params.app.clone(),
            resource: params.resource.clone(),
            release: params.release,
            digest: params.digest.clone(),
            request_timeout: params.request_timeout,
            limits_note,
            params: Arc::new(params),
            instances: Mutex::new(Vec::new()),
            next: AtomicUsize::new(0),
            changed,
        });
        svc.resize(n);
        svc
    }

    fn list(&self) -> Vec<Arc<Instance>> {
        self.instances.lock().map(|v| v.clone()).unwrap_or_default()
    }

    fn notify(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Grows or shrinks to `n` instances (at least one). New instances start at once; removed
    /// ones are drained and stopped in the background.
    pub fn resize(self: &Arc<Self>, n: usize) {
        let n = n.max(1);
        let removed: Vec<Arc<Instance>> = {
            let Ok(mut list) = self.instances.lock() else {
                return;
            };
            while list.len() < n {
                let (stop, _) = watch::channel(false);
                let id = InstanceId::new();
                let inst = Arc::new(Instance {
                    id,
                    ready: Mutex::new(None),
                    in_flight: Arc::new(AtomicUsize::new(0)),
                    lease: Lease::default(),
                    status: Mutex::new(InstanceStatus {
                        id,
                        state: InstanceState::Idle,
                        pid: None,
                        port: None,
                        restarts: 0,
                        last_error: None,
                        ready_since: None,
                        last_heartbeat: None,
                        lease_expired: false,
                    }),
                    stop,
                    task: Mutex::new(None),
                });
                let sup = Supervisor {
                    svc: Arc::downgrade(self),
                    inst: inst.clone(),
                    p: self.params.clone(),
                    stop: inst.stop.subscribe(),
                    ready_for: Duration::ZERO,
                };
                let handle = tokio::spawn(sup.run());
                if let Ok(mut t) = inst.task.lock() {
                    *t = Some(handle);
                }
                list.push(inst);
            }
            let keep = n.min(list.len());
            list.split_off(keep)
        };
        for inst in removed {
            let store = self.params.store.clone();
            tokio::spawn(async move {
                stop_instance(&inst).await;
                let _ = store.delete_instance(inst.id).await;
            });
        }
    }

    /// The limits each instance runs with.
    pub fn limits(&self) -> Limits {
        self.params.limits
    }

    pub fn instance_count(&self) -> usize {
        self.list().len()
    }

    /// Each instance's status, as its supervisor last set it (the lease as of now).
    pub fn statuses(&self) -> Vec<InstanceStatus> {
        self.list()
            .iter()
            .filter_map(|i| {
                let mut s = i.status.lock().ok()?.clone();
                s.lease_expired = s.state == InstanceState::Ready && !i.lease.is_live();
                Some(s)
            })
            .collect()
    }

    pub fn ready_count(&self) -> usize {
        self.list()
            .iter()
            .filter(|i| i.ready.lock().map(|r| r.is_some()).unwrap_or(false))
            .count()
    }

    /// Waits until every instance is ready (health + warm-up). Fails as soon as one is
    /// `failed`, or when `limit` passes, saying which instance and why.
    pub async fn wait_ready(&self, limit: Duration) -> Result<(), String> {
        let mut rx = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let statuses = self.statuses();
            if let Some(f) = statuses.iter().find(|s| s.state == InstanceState::Failed) {
                return Err(format!(
                    "instance {} of {} failed: {}",
                    f.id,
                    self.resource,
                    f.last_error.clone().unwrap_or_default()
                ));
            }
            let ready = self.ready_count();
            if ready >= statuses.len() && ready > 0 {
                return Ok(());
            }
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if remaining.is_zero() || tokio::time::timeout(remaining, rx.changed()).await.is_err() {
                let why = statuses
                    .iter()
                    .filter_map(|s| s.last_error.as_ref())
                    .next_back()
                    .map(|e| format!("; last error: {e}"))
                    .unwrap_or_default();
                return Err(format!(
                    "{ready} of {} instances of {} became healthy within {limit:?}{why}",
                    statuses.len(),
                    self.resource
                ));
            }
        }
    }

    /// Picks a ready instance whose lease is live, round-robin, and counts the request as in
    /// flight on it.
    pub fn pick(&self) -> Option<Endpoint> {
        let list = self.list();
        let n = list.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            let inst = &list[(start + i) % n];
            if !inst.lease.is_live() {
                continue;
            }
            let Ok(ready) = inst.ready.lock() else {
                continue;
            };
            if let Some(addr) = *ready {
                inst.in_flight.fetch_add(1, Ordering::AcqRel);
                return Some(Endpoint {
                    addr,
                    instance: inst.id,
                    guard: InFlight(inst.in_flight.clone()),
                });
            }
        }
        None
    }

    /// Like [`HttpService::pick`], waiting up to `limit` for an instance to become ready.
    pub async fn pick_within(&self, limit: Duration) -> Option<Endpoint> {
        let mut rx = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(e) = self.pick() {
                return Some(e);
            }
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if remaining.is_zero() || tokio::time::timeout(remaining, rx.changed()).await.is_err() {
                return None;
            }
        }
    }

    /// Drains and stops every instance (in parallel) and removes their rows.
    pub async fn stop(&self) {
        let list: Vec<Arc<Instance>> = self
            .instances
            .lock()
            .map(|mut v| v.drain(..).collect())
            .unwrap_or_default();
        let ids: Vec<InstanceId> = list.iter().map(|i| i.id).collect();
        let stops: Vec<_> = list
            .into_iter()
            .map(|inst| tokio::spawn(async move { stop_instance(&inst).await }))
            .collect();
        for s in stops {
            let _ = s.await;
        }
        // Instances that had failed (crash loop) kept their rows for `morel ps`; they go too.
        for id in ids {
            let _ = self.params.store.delete_instance(id).await;
        }
        self.notify();
    }
}

async fn stop_instance(inst: &Instance) {
    let _ = inst.stop.send(true);
    let handle = inst.task.lock().ok().and_then(|mut t| t.take());
    if let Some(h) = handle {
        let _ = h.await;
    }
}

struct Supervisor {
    svc: std::sync::Weak<HttpService>,
    inst: Arc<Instance>,
    p: Arc<HttpServiceParams>,
    stop: watch::Receiver<bool>,
    /// How long the last process served as ready; only a process that was ready for
    /// [`HEALTHY_AFTER`] resets the crash-loop count (one that never got healthy never does).
    ready_for: Duration,
}

/// A ready instance whose lease ran out: since when (last good heartbeat, ms since the
/// epoch), and the row's `last_error` from before, restored when it answers again.
struct Unresponsive {
    since: i64,
    previous_error: Option<String>,
}

/// How one run of the process ended.
enum Outcome {
    /// Asked to stop.
    Stopped,
    /// The process failed; the message says how.
    Failed(String),
}

impl Supervisor {
    async fn run(mut self) {
        let p = self.p.clone();
        let now = morel_core::time::now_ms();
        let mut row = InstanceRow {
            id: self.inst.id,
            app: p.app.clone(),
            resource: p.resource.clone(),
            release: p.release,
            digest: p.digest.clone(),
            node: p.node.clone(),
            state: InstanceState::Idle,
            pid: None,
            port: None,
            restarts: 0,
            last_error: None,
            started_at: now,
            updated_at: now,
        };
        self.persist(&row).await;
        let mut fast_failures = 0u32;
        let mut backoff = BACKOFF_START;
        loop {
            if *self.stop.borrow() {
                break;
            }
            self.ready_for = Duration::ZERO;
            let failure = match self.run_once(&mut row).await {
                Outcome::Stopped => break,
                Outcome::Failed(msg) => msg,
            };
            p.logs.event(
                &p.app,
                format!(
                    "instance {} of {} failed: {failure}",
                    self.inst.id, p.resource
                ),
            );
            if self.ready_for >= HEALTHY_AFTER {
                fast_failures = 0;
                backoff = BACKOFF_START;
            }
            fast_failures += 1;
            row.restarts += 1;
            row.pid = None;
            row.port = None;
            if fast_failures >= MAX_FAST_FAILURES {
                let msg = format!("crash loop: {fast_failures} failures in a row; {failure}");
                p.logs.event(
                    &p.app,
                    format!(
                        "instance {} of {} marked failed: {msg}",
                        self.inst.id, p.resource
                    ),
                );
                row.last_error = Some(msg);
                self.set_state(&mut row, InstanceState::Failed).await;
                return;
            }
            row.last_error = Some(failure);
            self.set_state(&mut row, InstanceState::Launching).await;
            let wait = backoff;
            backoff = (backoff * 2).min(BACKOFF_MAX);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.stop.changed() => break,
            }
        }
        self.set_state(&mut row, InstanceState::Stopped).await;
        let _ = p.store.delete_instance(row.id).await;
    }

    /// Spawns the process once and follows it until it fails or the instance is stopped.
    async fn run_once(&mut self, row: &mut InstanceRow) -> Outcome {
        let p = self.p.clone();
        let port = match free_port() {
            Ok(port) => port,
            Err(e) => return Outcome::Failed(format!("no free port: {e}")),
        };
        row.port = Some(port as i64);
        row.pid = None;
        self.set_state(row, InstanceState::Launching).await;

        let cgroup = match p.backend.instance(&self.inst.id.to_string(), &p.limits) {
            Ok(c) => c,
            Err(e) => return Outcome::Failed(format!("cannot create its cgroup: {e}")),
        };
        if let Some(check) = &p.pre_start
            && let Err(e) = (check.0)()
        {
            return Outcome::Failed(e);
        }
        let sandbox = morel_runtime_process::Sandbox::current();
        let scratch = match morel_runtime_process::Scratch::create(
            &p.scratch,
            &format!("{}.{}", self.inst.id, port),
            p.jail.uid,
        ) {
            Ok(s) => s,
            Err(e) => return Outcome::Failed(format!("cannot create its scratch directory: {e}")),
        };
        let mut jail = p.jail.clone();
        jail.write.push(scratch.path().to_path_buf());
        if let Some(c) = &cgroup {
            c.confine(&mut jail);
        }
        let mut cmd = sandbox.command(&p.program, &p.args, &jail);
        cmd.current_dir(&p.cwd)
            .env_clear()
            .envs(morel_runtime_process::sandbox::base_env(scratch.path()))
            .envs(p.env.iter().map(|(k, v)| (k, v)))
            .env(morel_core::env_vars::INSTANCE_PORT, port.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        crate::limits::apply(&mut cmd, &p.limits, cgroup.as_ref());
        let mut child = match sandbox.spawn(cmd).await {
            Ok(c) => c,
            Err(e) => {
                return Outcome::Failed(format!("cannot start {}: {e}", p.program.display()));
            }
        };
        let pid = child.id().unwrap_or(0);
        row.pid = Some(pid as i64);
        if let Ok(mut s) = self.inst.status.lock() {
            s.pid = Some(pid);
        }
        let tail: Arc<Mutex<VecDeque<String>>> = Arc::default();
        let source = self.inst.id.to_string();
        let readers = [
            child.stdout.take().map(|o| {
                tokio::spawn(pump(
                    BufReader::new(o),
                    p.logs.clone(),
                    p.app.clone(),
                    source.clone(),
                    LogStream::Stdout,
                    None,
                ))
            }),
            child.stderr.take().map(|e| {
                tokio::spawn(pump(
                    BufReader::new(e),
                    p.logs.clone(),
                    p.app.clone(),
                    source.clone(),
                    LogStream::Stderr,
                    Some(tail.clone()),
                ))
            }),
        ];
        let addr = SocketAddr::from(([127, 0, 0, 1], port));

        // launching → healthy (bounded) → warm-up → ready.
        tokio::select! {
            h = wait_healthy(addr, &p.health, p.start_timeout) => {
                if let Err(msg) = h {
                    terminate(&mut child, pid).await;
                    return Outcome::Failed(msg);
                }
            }
            status = child.wait() => {
                return Outcome::Failed(exit_message(status, &tail, &p, cgroup.as_ref(), readers).await);
            }
            _ = self.stop.changed() => {
                terminate(&mut child, pid).await;
                return Outcome::Stopped;
            }
        }
        if !p.warmup.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(p.warmup) => {}
                status = child.wait() => {
                    return Outcome::Failed(exit_message(status, &tail, &p, cgroup.as_ref(), readers).await);
                }
                _ = self.stop.changed() => {
                    terminate(&mut child, pid).await;
                    return Outcome::Stopped;
                }
            }
        }
        row.started_at = morel_core::time::now_ms();
        if let Ok(mut s) = self.inst.status.lock() {
            s.ready_since = Some(row.started_at);
            s.last_heartbeat = Some(row.started_at);
        }
        // The health check just passed: that is the first heartbeat.
        self.inst.lease.renew(p.heartbeat_ttl);
        if let Ok(mut r) = self.inst.ready.lock() {
            *r = Some(addr);
        }
        self.set_state(row, InstanceState::Ready).await;
        self.notify();
        let ready_at = tokio::time::Instant::now();

        // Ready: heartbeat until the process exits or the instance is stopped. The probe runs
        // inside the select, so an exit is seen at once even while a probe hangs.
        let mut unresponsive: Option<Unresponsive> = None;
        let exited = loop {
            let beat = async {
                tokio::time::sleep(HEARTBEAT_EVERY).await;
                matches!(
                    tokio::time::timeout(HEARTBEAT_TIMEOUT, probe(addr, &p.health)).await,
                    Ok(Ok(status)) if (200..300).contains(&status)
                )
            };
            tokio::select! {
                status = child.wait() => break Some(status),
                _ = self.stop.changed() => break None,
                ok = beat => self.heartbeat(ok, row, &mut unresponsive).await,
            }
        };
        self.ready_for = ready_at.elapsed();
        // Leave routing at once, whatever happened.
        self.inst.lease.revoke();
        if let Ok(mut r) = self.inst.ready.lock() {
            *r = None;
        }
        if let Ok(mut s) = self.inst.status.lock() {
            s.ready_since = None;
            s.last_heartbeat = None;
        }
        if let Some(u) = unresponsive {
            row.last_error = u.previous_error;
        }
        self.notify();
        match exited {
            Some(status) => {
                Outcome::Failed(exit_message(status, &tail, &p, cgroup.as_ref(), readers).await)
            }
            None => {
                self.set_state(row, InstanceState::Draining).await;
                let drained = wait_drained(&self.inst.in_flight, p.request_timeout).await;
                if !drained {
                    p.logs.event(
                        &p.app,
                        format!(
                            "instance {} of {}: {} requests still in flight after {:?}; stopping anyway",
                            self.inst.id,
                            p.resource,
                            self.inst.in_flight.load(Ordering::Acquire),
                            p.request_timeout
                        ),
                    );
                }
                terminate(&mut child, pid).await;
                Outcome::Stopped
            }
        }
    }

    /// Records one heartbeat of a ready instance: a good one renews the lease (and, after an
    /// outage, brings the instance back into routing); a missed one lets the lease run out,
    /// and the first miss past the TTL says so in the log and the persisted row.
    async fn heartbeat(
        &self,
        ok: bool,
        row: &mut InstanceRow,
        unresponsive: &mut Option<Unresponsive>,
    ) {
        let p = &self.p;
        if ok {
            self.inst.lease.renew(p.heartbeat_ttl);
            if let Ok(mut s) = self.inst.status.lock() {
                s.last_heartbeat = Some(morel_core::time::now_ms());
            }
            if let Some(u) = unresponsive.take() {
                let secs = (morel_core::time::now_ms() - u.since) / 1000;
                p.logs.event(
                    &p.app,
                    format!(
                        "instance {} of {} answers heartbeats again after {secs}s: back in routing",
                        self.inst.id, p.resource
                    ),
                );
                row.last_error = u.previous_error;
                self.set_state(row, InstanceState::Ready).await;
            }
            return;
        }
        if unresponsive.is_some() || self.inst.lease.is_live() {
            return;
        }
        let since = self
            .inst
            .status
            .lock()
            .ok()
            .and_then(|s| s.last_heartbeat)
            .unwrap_or_else(morel_core::time::now_ms);
        let msg = format!(
            "unresponsive: no heartbeat ({} within {:?}) answered for {:?}; lease expired, out of routing",
            p.health, HEARTBEAT_TIMEOUT, p.heartbeat_ttl,
        );
        tracing::warn!(instance = %self.inst.id, resource = %p.resource, "{msg}");
        p.logs.event(
            &p.app,
            format!("instance {} of {} {msg}", self.inst.id, p.resource),
        );
        *unresponsive = Some(Unresponsive {
            since,
            previous_error: row.last_error.replace(msg),
        });
        self.set_state(row, InstanceState::Ready).await;
    }

    fn notify(&self) {
        if let Some(svc) = self.svc.upgrade() {
            svc.notify();
        }
    }

    async fn set_state(&self, row: &mut InstanceRow, state: InstanceState) {
        row.state = state;
        row.updated_at = morel_core::time::now_ms();
        if let Ok(mut s) = self.inst.status.lock() {
            s.state = state;
            s.pid = row.pid.map(|p| p as u32);
            s.port = row.port.map(|p| p as u16);
            s.restarts = row.restarts as u32;
            s.last_error = row.last_error.clone();
        }
        if state != InstanceState::Stopped {
            self.persist(row).await;
        }
        self.notify();
    }

    async fn persist(&self, row: &InstanceRow) {
        if let Err(e) = self.p.store.upsert_instance(row).await {
            tracing::warn!(error = %format!("{e:#}"), "could not persist instance state");
        }
    }
}

/// Copies a child's output lines into the app's log; stderr lines also go to `tail`.
async fn pump<R: tokio::io::AsyncRead + Unpin>(
    reader: BufReader<R>,
    logs: LogHub,
    app: AppKey,
    source: String,
    stream: LogStream,
    tail: Option<Arc<Mutex<VecDeque<String>>>>,
) {
    let mut lines = morel_runtime_process::loglines::LogLines::new(reader);
    while let Some(line) = lines.next_line().await {
        if let Some(t) = &tail
            && let Ok(mut t) = t.lock()
        {
            if t.len() == STDERR_TAIL {
                t.pop_front();
            }
            t.push_back(line.clone());
        }
        logs.push(&app, stream, &source, line);
    }
}

/// Describes an exit: status or signal, the memory limit when it is the likely cause, and
/// the last lines of stderr.
async fn exit_message(
    status: std::io::Result<std::process::ExitStatus>,
    tail: &Arc<Mutex<VecDeque<String>>>,
    p: &HttpServiceParams,
    cgroup: Option<&InstanceCgroup>,
    readers: [Option<tokio::task::JoinHandle<()>>; 2],
) -> String {
    // Let the pumps read what the process wrote before it died (bounded: they end at EOF).
    for r in readers.into_iter().flatten() {
        let _ = tokio::time::timeout(Duration::from_secs(1), r).await;
    }
    let how = match status {
        Ok(s) => {
            use std::os::unix::process::ExitStatusExt;
            match (s.code(), s.signal()) {
                (Some(c), _) => format!("exited with status {c}"),
                (None, Some(sig)) => format!("killed by signal {sig}"),
                _ => "exited".to_owned(),
            }
        }
        Err(e) => format!("could not be waited for: {e}"),
    };
    let lines: Vec<String> = tail
        .lock()
        .map(|t| t.iter().cloned().collect())
        .unwrap_or_default();
    let last: Vec<&String> = lines.iter().rev().take(5).rev().collect();
    let mut msg = format!("process {how}");
    if let Some(mb) = p.limits.memory_mb {
        let oom = cgroup.is_some_and(|c| c.oom_killed());
        let alloc_failed = lines.iter().any(|l| {
            l.contains("MemoryError")
                || l.contains("Cannot allocate memory")
                || l.contains("out of memory")
                || l.contains("memory allocation")
        });
        if oom {
            msg.push_str(&format!(
                ": killed by the memory limit of {mb} MiB (cgroup OOM)"
            ));
        } else if alloc_failed {
            msg.push_str(&format!(
                ": memory allocation failed under the memory limit of {mb} MiB"
            ));
        }
    }
    if !last.is_empty() {
        msg.push_str("; last stderr:\n");
        msg.push_str(
            &last
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
        );
    }
    msg
}

/// SIGTERM to the process group, SIGKILL after the grace period.
async fn terminate(child: &mut tokio::process::Child, pid: u32) {
    if pid != 0 {
        crate::limits::kill_group(pid, libc::SIGTERM);
    }
    if tokio::time::timeout(STOP_GRACE, child.wait())
        .await
        .is_err()
    {
        if pid != 0 {
            crate::limits::kill_group(pid, libc::SIGKILL);
        }
        let _ = child.kill().await;
    }
}

/// Waits until no request is in flight, up to `limit`. False when some still were.
async fn wait_drained(in_flight: &AtomicUsize, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while in_flight.load(Ordering::Acquire) > 0 {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// A loopback port for a new instance: free now, and outside the kernel's ephemeral range.
///
/// The port is only reserved until this function returns; the instance binds it a moment
/// later. A port from `bind(0)` comes out of the ephemeral range, which every outgoing
/// connection and every other `bind(0)` on the machine draws from too, so under load another
/// socket could take it in between, and the instance would fail with "address in use" (or
/// worse, its health probe would reach a stranger). Below that range only listeners that
/// name their port live; the port is chosen at random among them and checked free.
fn free_port() -> std::io::Result<u16> {
    let (low, high) = instance_port_range();
    if high > low {
        for _ in 0..64 {
            let Ok(random) = getrandom::u32() else { break };
            let port = low + (random % u32::from(high - low)) as u16;
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return Ok(port);
            }
        }
    }
    let l = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(l.local_addr()?.port())
}

/// Where instance ports are drawn from: from 10000 up to the start of the ephemeral range
/// (`/proc/sys/net/ipv4/ip_local_port_range`, 32768 by default). Empty when the ephemeral
/// range starts lower, and then ports come from `bind(0)`.
fn instance_port_range() -> (u16, u16) {
    const LOW: u16 = 10_000;
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    (LOW, ephemeral_start.max(LOW))
}

/// Polls `GET {path}` until it answers 2xx, or `limit` passes.
async fn wait_healthy(addr: SocketAddr, path: &str, limit: Duration) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let last = match tokio::time::timeout(HEALTH_PROBE_TIMEOUT, probe(addr, path)).await {
            Ok(Ok(status)) if (200..300).contains(&status) => return Ok(()),
            Ok(Ok(status)) => format!("{path} answered HTTP {status}"),
            Ok(Err(e)) => format!("{path}: {e}"),
            Err(_) => format!("{path} did not answer within {HEALTH_PROBE_TIMEOUT:?}"),
        };
        if tokio::time::Instant::now() + HEALTH_POLL >= deadline {
            return Err(format!("not healthy within {limit:?} ({last})"));
        }
        tokio::time::sleep(HEALTH_POLL).await;
    }
}

/// One health request; returns the status code.
async fn probe(addr: SocketAddr, path: &str) -> std::io::Result<u16> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nUser-Agent: morel-health\r\n\r\n")
            .as_bytes(),
    )
    .await?;
    let mut reader = BufReader::new(s);
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    // Drain a little of the rest so the server does not see a reset mid-write.
    let mut sink = [0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_millis(50), reader.read(&mut sink)).await;
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not an HTTP status line: {:?}", line.trim()),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ports_come_from_below_the_ephemeral_range() {
        let (low, high) = instance_port_range();
        assert_eq!(low, 10_000);
        assert!(high >= low);
        let ephemeral = std::net::TcpListener::bind(("127.0.0.1", 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        for _ in 0..50 {
            let port = free_port().unwrap();
            if high > low {
                assert!((low..high).contains(&port), "{port} not in {low}..{high}");
                assert!(
                    port < ephemeral,
                    "{port} is in the ephemeral range ({ephemeral})"
                );
            }
        }
    }
}
