//! A resource's running instances, the supervisor that keeps each one alive, and the call
//! path's choice of instance.
//!
//! A pool has `workers_max` slots, fixed when it starts. A slot is either stopped or has a
//! supervisor task: spawn → ready → wait for exit → respawn with exponential backoff. Five
//! failures in a row that each lived under [`HEALTHY_AFTER`] mark the instance `failed` (crash
//! loop) with the last stderr lines as its error. A worker that fails to load before any
//! instance of the pool ever loaded fails the pool at once: that is a broken deploy, not a crash.
//!
//! Which slots run is decided by the scaler (`scale.rs`), never by the call path: a call only
//! picks a ready worker with a free slot, or registers itself as waiting and wakes the scaler.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use morel_core::{InstanceId, InstanceState};
use morel_runtime_process::protocol::FunctionMeta;
use morel_runtime_process::{InvokeError, LogSink, Worker, WorkerSpec};
use morel_store::{AppKey, InstanceRow, LogStream, Store};
use tokio::sync::{Notify, watch};

use crate::LogHub;

const MAX_FAST_FAILURES: u32 = 5;
const HEALTHY_AFTER: Duration = Duration::from_secs(10);
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
const STOP_GRACE: Duration = Duration::from_secs(5);

/// What the pool's callers can observe: how many instances are ready, and whether the pool
/// has given up (its first start failed, or an instance is in a crash loop).
#[derive(Clone, Debug, Default)]
pub struct PoolStatus {
    pub ready: usize,
    pub failed: Option<String>,
}

/// Why a call through a pool failed, in terms the gateway maps to HTTP statuses.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error(transparent)]
    Invoke(#[from] InvokeError),
    /// The pool cannot run calls: it failed (crash loop, broken code) or is being stopped (503).
    #[error("resource {resource} has no instance to run the call{reason}")]
    NoInstance { resource: String, reason: String },
    /// The call's deadline passed while it waited for a free slot or a starting instance (504).
    #[error(
        "no instance of resource {resource} was free within the call's deadline of {waited:?} ({ready} ready, {starting} starting)"
    )]
    WaitTimeout {
        resource: String,
        waited: Duration,
        ready: usize,
        starting: usize,
    },
}

/// Per-resource scaling settings, from the manifest.
#[derive(Clone, Copy, Debug)]
pub struct ScaleLimits {
    pub min: usize,
    /// Also the number of slots.
    pub max: usize,
    /// Calls one instance runs at once.
    pub concurrency: usize,
    /// A ready instance with no call for this long is stopped, down to `min`.
    pub idle_timeout: Duration,
}

/// Why a slot's supervisor is asked to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StopReason {
    /// Scaled down: the instance row stays, as `stopped`, and the slot may start again.
    Idle,
    /// The pool is retired (new release, app deleted, shutdown): the row is deleted.
    Retire,
}

pub(crate) struct Slot {
    pub(crate) id: InstanceId,
    /// Written by the slot's supervisor, read by callers picking a worker and by the scaler.
    pub(crate) worker: Mutex<Option<Worker>>,
    /// Milliseconds since the pool's epoch when a call on this slot last ended (or the
    /// instance became ready). Written by callers, read by the scaler.
    pub(crate) last_used: AtomicU64,
}

/// A running supervisor of a slot. Only the scaler and `stop` touch these.
pub(crate) struct SlotRun {
    pub(crate) stop: watch::Sender<Option<StopReason>>,
    pub(crate) handle: tokio::task::JoinHandle<()>,
}

impl SlotRun {
    /// Starting or ready, and not asked to stop: an instance that counts toward the pool's
    /// size. (A stopping one may still be draining, but it will not take calls again.)
    pub(crate) fn serving(&self) -> bool {
        !self.handle.is_finished() && self.stop.borrow().is_none()
    }
}

pub struct ResourcePool {
    pub app: AppKey,
    pub resource: String,
    pub release: i64,
    pub timeout: Duration,
    pub limits: ScaleLimits,
    pub(crate) slots: Vec<Arc<Slot>>,
    pub(crate) runs: Mutex<Vec<Option<SlotRun>>>,
    next: AtomicUsize,
    status: watch::Receiver<PoolStatus>,
    status_tx: Arc<watch::Sender<PoolStatus>>,
    /// Slots with a supervisor (starting, ready or backing off). Written by `start_slot` and
    /// supervisors as they end; read by callers to know whether the pool can still grow.
    active: AtomicUsize,
    /// Slots with a ready worker. Written by supervisors, read by callers.
    ready: AtomicUsize,
    /// Set once when the pool is retired; nothing starts after it.
    pub(crate) stopping: AtomicBool,
    /// Calls waiting for a free slot. Written by callers, read by the scaler.
    pub(crate) waiting: AtomicUsize,
    /// Signalled when a slot frees up, an instance becomes ready or the pool fails; only when
    /// `waiting > 0`, so a call that found a free slot never touches it.
    freed: Notify,
    /// Wakes the scaler when a call starts waiting.
    pub(crate) wake_scaler: Arc<Notify>,
    pub(crate) epoch: tokio::time::Instant,
    /// Some instance of this pool loaded once: later load failures are crashes, not a broken deploy.
    loaded: AtomicBool,
    p: Arc<PoolParams>,
    scaler: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Functions as the first ready worker reported them (`MetaData`).
    functions: Mutex<Vec<FunctionMeta>>,
}

pub(crate) struct PoolParams {
    pub app: AppKey,
    pub resource: String,
    pub release: i64,
    pub digest: morel_core::Digest,
    pub node: String,
    pub limits: ScaleLimits,
    pub timeout: Duration,
    pub spec: WorkerSpec,
    pub store: Arc<dyn Store>,
    pub logs: LogHub,
    /// The release's functions were found through `metacall.json` (the manifest's `metacall`).
    pub metacall: bool,
    /// Memory and cpu of each worker (memory with its default applied), and how this machine
    /// enforces them: a cgroup per worker process, made here and removed when it is gone.
    pub resources: crate::Limits,
    pub backend: crate::LimitBackend,
}

impl ResourcePool {
    /// Starts `max(min, 1)` instances (one even for `min = 0`: the deploy must prove the code
    /// loads and learn its functions; the scaler stops it after the idle timeout) and the scaler.
    pub(crate) fn start(p: PoolParams) -> Arc<ResourcePool> {
        let (status_tx, status) = watch::channel(PoolStatus::default());
        let max = p.limits.max.max(1);
        let slots: Vec<Arc<Slot>> = (0..max)
            .map(|_| {
                Arc::new(Slot {
                    id: InstanceId::new(),
                    worker: Mutex::new(None),
                    last_used: AtomicU64::new(0),
                })
            })
            .collect();
        let initial = p.limits.min.clamp(1, max);
        let pool = Arc::new(ResourcePool {
            app: p.app.clone(),
            resource: p.resource.clone(),
            release: p.release,
            timeout: p.timeout,
            limits: p.limits,
            slots,
            runs: Mutex::new((0..max).map(|_| None).collect()),
            next: AtomicUsize::new(0),
            status,
            status_tx: Arc::new(status_tx),
            active: AtomicUsize::new(0),
            ready: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            waiting: AtomicUsize::new(0),
            freed: Notify::new(),
            wake_scaler: Arc::new(Notify::new()),
            epoch: tokio::time::Instant::now(),
            loaded: AtomicBool::new(false),
            p: Arc::new(p),
            scaler: Mutex::new(None),
            functions: Mutex::new(Vec::new()),
        });
        for i in 0..initial {
            pool.start_slot(i);
        }
        let scaler = tokio::spawn(crate::scale::run(Arc::downgrade(&pool)));
        if let Ok(mut s) = pool.scaler.lock() {
            *s = Some(scaler);
        }
        pool
    }

    /// Starts a supervisor on slot `i` unless one runs there. Called by `start` and the scaler.
    pub(crate) fn start_slot(self: &Arc<Self>, i: usize) -> bool {
        if self.stopping.load(Ordering::SeqCst) {
            return false;
        }
        let Ok(mut runs) = self.runs.lock() else {
            return false;
        };
        if runs[i].as_ref().is_some_and(|r| !r.handle.is_finished()) {
            return false;
        }
        let (stop, stop_rx) = watch::channel(None);
        self.active.fetch_add(1, Ordering::SeqCst);
        let sup = Supervisor {
            pool: Arc::downgrade(self),
            slot: self.slots[i].clone(),
            p: self.p.clone(),
            stop: stop_rx,
            status: self.status_tx.clone(),
        };
        runs[i] = Some(SlotRun {
            stop,
            handle: tokio::spawn(sup.run()),
        });
        true
    }

    pub fn status(&self) -> PoolStatus {
        self.status.borrow().clone()
    }

    pub fn functions(&self) -> Vec<FunctionMeta> {
        self.functions.lock().map(|f| f.clone()).unwrap_or_default()
    }

    /// One function as its worker reported it.
    pub fn function(&self, name: &str) -> Option<FunctionMeta> {
        let functions = self.functions.lock().ok()?;
        functions.iter().find(|f| f.name == name).cloned()
    }

    /// Whether calls to this pool bind an object body as MetaCall FaaS does (seed 000): by the
    /// order of its values when its keys are not all parameter names.
    pub fn metacall_binding(&self) -> bool {
        self.p.metacall
    }

    /// Instances serving now: (ready, starting). Draining ones are in neither.
    pub fn counts(&self) -> (usize, usize) {
        let ready = self
            .slots
            .iter()
            .filter(|s| s.worker.lock().map(|w| w.is_some()).unwrap_or(false))
            .count();
        let active = self
            .runs
            .lock()
            .map(|r| {
                r.iter()
                    .filter(|r| r.as_ref().is_some_and(SlotRun::serving))
                    .count()
            })
            .unwrap_or(0);
        (ready, active.saturating_sub(ready))
    }

    /// Waits until at least one instance is ready, or the pool failed, or `limit` passed.
    pub async fn wait_ready(&self, limit: Duration) -> Result<(), String> {
        let mut rx = self.status.clone();
        let res = tokio::time::timeout(limit, async {
            loop {
                {
                    let s = rx.borrow_and_update();
                    if s.ready > 0 {
                        return Ok(());
                    }
                    if let Some(f) = &s.failed {
                        return Err(f.clone());
                    }
                }
                if rx.changed().await.is_err() {
                    return Err("pool stopped".to_owned());
                }
            }
        })
        .await;
        res.unwrap_or_else(|_| Err(format!("no instance became ready within {limit:?}")))
    }

    /// A ready worker with a free slot, round-robin. Takes only per-slot locks. When the pool
    /// is at `workers_max` and every instance is ready (it cannot grow, and no starting
    /// instance will take waiting calls), a busy ready worker is returned if none is free: the
    /// call then queues on that worker's own slots, first come first served.
    fn pick_free(&self) -> Option<(usize, Worker)> {
        let n = self.slots.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut busy = None;
        for i in 0..n {
            let idx = (start + i) % n;
            let Ok(guard) = self.slots[idx].worker.lock() else {
                continue;
            };
            if let Some(w) = guard.as_ref().filter(|w| w.is_alive()) {
                if w.free_slots() > 0 {
                    return Some((idx, w.clone()));
                }
                if busy.is_none() {
                    busy = Some((idx, w.clone()));
                }
            }
        }
        busy.filter(|_| {
            let active = self.active.load(Ordering::SeqCst);
            active >= n && self.ready.load(Ordering::SeqCst) >= active
        })
    }

    /// Waits, within the deadline, for a ready worker with a free slot. While it waits the
    /// call counts in `waiting`, which is what makes the scaler start instances.
    async fn wait_for_worker(
        &self,
        start: tokio::time::Instant,
        deadline: Duration,
    ) -> Result<(usize, Worker), CallError> {
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.waiting);
        self.wake_scaler.notify_one();
        loop {
            let notified = self.freed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(found) = self.pick_free() {
                return Ok(found);
            }
            if self.status.borrow().failed.is_some() {
                // The failure itself (a traceback, server paths, stderr) is for the app's
                // owner: it is in the app's log and `morel ps`, never in a public answer.
                return Err(CallError::NoInstance {
                    resource: self.resource.clone(),
                    reason: ": it failed to start or crashed repeatedly (`morel logs` and \
                             `morel ps` say why)"
                        .into(),
                });
            }
            if self.stopping.load(Ordering::SeqCst) {
                return Err(CallError::NoInstance {
                    resource: self.resource.clone(),
                    reason: ": it is being stopped".into(),
                });
            }
            let remaining = deadline.saturating_sub(start.elapsed());
            if remaining.is_zero() {
                let (ready, starting) = self.counts();
                return Err(CallError::WaitTimeout {
                    resource: self.resource.clone(),
                    waited: start.elapsed(),
                    ready,
                    starting,
                });
            }
            let _ = tokio::time::timeout(remaining, notified).await;
        }
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn notify_freed(&self) {
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.freed.notify_waiters();
        }
    }

    /// Runs a call on a ready instance with a free slot. If there is none, waits (within the
    /// call's deadline) while the scaler starts one, up to `workers_max`; else for a slot to free.
    pub async fn invoke(
        &self,
        call: &morel_runtime_process::Call<'_>,
        deadline: Duration,
    ) -> Result<morel_runtime_process::Returned, CallError> {
        let start = tokio::time::Instant::now();
        loop {
            let (idx, worker) = match self.pick_free() {
                Some(found) => found,
                None => self.wait_for_worker(start, deadline).await?,
            };
            let remaining = deadline.saturating_sub(start.elapsed());
            let out = worker.invoke(call, remaining).await;
            self.slots[idx]
                .last_used
                .store(self.now_ms(), Ordering::Relaxed);
            self.notify_freed();
            match out {
                // The scaler retired this idle worker between our pick and our call: the call
                // was never sent, so it goes to another instance.
                Err(InvokeError::WorkerDied(_)) if worker.retired_idle() => continue,
                other => return Ok(other?),
            }
        }
    }

    /// Stops every instance (letting in-flight calls finish within the grace period) and
    /// deletes their rows.
    pub async fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        if let Some(h) = self.scaler.lock().ok().and_then(|mut s| s.take()) {
            h.abort();
        }
        let runs: Vec<SlotRun> = self
            .runs
            .lock()
            .map(|mut r| r.iter_mut().filter_map(Option::take).collect())
            .unwrap_or_default();
        for r in &runs {
            let _ = r.stop.send(Some(StopReason::Retire));
        }
        for r in runs {
            let _ = r.handle.await;
        }
        // Stopped-by-idle slots have no supervisor left to delete their rows.
        for s in &self.slots {
            let _ = self.p.store.delete_instance(s.id).await;
        }
        self.freed.notify_waiters();
    }

    /// Kills one running worker, as a crash would (tests and `morel` chaos checks use it).
    pub fn kill_one(&self) -> Option<u32> {
        let (_, w) = self.pick_free()?;
        w.kill();
        Some(w.pid())
    }

    pub fn instance_ids(&self) -> Vec<InstanceId> {
        self.slots.iter().map(|s| s.id).collect()
    }
}

struct Supervisor {
    pool: std::sync::Weak<ResourcePool>,
    slot: Arc<Slot>,
    p: Arc<PoolParams>,
    stop: watch::Receiver<Option<StopReason>>,
    status: Arc<watch::Sender<PoolStatus>>,
}

impl Supervisor {
    fn stop_reason(&self) -> Option<StopReason> {
        *self.stop.borrow()
    }

    async fn run(self) {
        let pool = self.pool.clone();
        self.supervise().await;
        if let Some(pool) = pool.upgrade() {
            pool.active.fetch_sub(1, Ordering::SeqCst);
            // Waiting calls re-check: the pool may be able to grow again.
            pool.wake_scaler.notify_one();
            pool.freed.notify_waiters();
        }
    }

    async fn supervise(mut self) {
        let p = self.p.clone();
        let now = morel_core::time::now_ms();
        let mut row = InstanceRow {
            id: self.slot.id,
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
        let mut fast_failures = 0u32;
        let mut backoff = BACKOFF_START;
        loop {
            if self.stop_reason().is_some() {
                break;
            }
            row.pid = None;
            self.set_state(&mut row, InstanceState::Launching, None)
                .await;
            let source = self.slot.id.to_string();
            let sink: LogSink = {
                let logs = p.logs.clone();
                let app = p.app.clone();
                Arc::new(move |is_err, line| {
                    logs.push(
                        &app,
                        if is_err {
                            LogStream::Stderr
                        } else {
                            LogStream::Stdout
                        },
                        &source,
                        line,
                    )
                })
            };
            let started = tokio::time::Instant::now();
            // The worker's cgroup (none with rlimits): its init joins it before it forks, and
            // it is removed when this iteration ends, the worker gone.
            let cgroup = match p.backend.instance(&self.slot.id.to_string(), &p.resources) {
                Ok(c) => c,
                Err(e) => {
                    let msg = format!("cannot create its cgroup: {e}");
                    p.logs.event(
                        &p.app,
                        format!("instance {} of {} failed: {msg}", self.slot.id, p.resource),
                    );
                    self.set_state(&mut row, InstanceState::Failed, Some(msg.clone()))
                        .await;
                    self.fail(msg);
                    return;
                }
            };
            let confined;
            let spec = match &cgroup {
                Some(c) => {
                    let mut s = p.spec.clone();
                    c.confine(&mut s.jail);
                    confined = s;
                    &confined
                }
                None => &p.spec,
            };
            let spawned = tokio::select! {
                s = Worker::spawn(spec, sink) => Some(s),
                _ = self.stop.changed() => None,
            };
            let Some(spawned) = spawned else {
                // Stopped while loading; dropping the half-started worker kills it.
                break;
            };
            let failure = match spawned {
                Ok(worker) => {
                    row.pid = Some(worker.pid() as i64);
                    if let Some(pool) = self.pool.upgrade() {
                        pool.loaded.store(true, Ordering::SeqCst);
                        if let Ok(mut f) = pool.functions.lock()
                            && f.is_empty()
                        {
                            *f = worker.functions().to_vec();
                        }
                        self.slot.last_used.store(pool.now_ms(), Ordering::Relaxed);
                    }
                    if let Ok(mut w) = self.slot.worker.lock() {
                        *w = Some(worker.clone());
                    }
                    row.started_at = morel_core::time::now_ms();
                    morel_metrics::global().instance_started(
                        p.app.namespace.as_str(),
                        p.app.name.as_str(),
                        &p.resource,
                        started.elapsed(),
                    );
                    self.set_state(&mut row, InstanceState::Ready, None).await;
                    self.bump_ready(1);
                    self.notify_pool();
                    let mut stuck = worker.stuck();
                    let mut ready = true;
                    let exit = loop {
                        tokio::select! {
                            exit = worker.exited() => break Some(exit),
                            _ = self.stop.changed() => break None,
                            Ok(()) = stuck.changed() => {
                                // Every slot held by a call past its deadline: not ready (no
                                // call can run) until one stops or the worker is recycled.
                                let now_stuck = *stuck.borrow_and_update();
                                if now_stuck == ready {
                                    ready = !now_stuck;
                                    self.bump_ready(if ready { 1 } else { -1 });
                                    let state = if ready {
                                        InstanceState::Ready
                                    } else {
                                        p.logs.event(
                                            &p.app,
                                            format!(
                                                "instance {} of {}: every slot is held by a call \
                                                 past its deadline; it takes no call until one \
                                                 stops (recycled otherwise)",
                                                self.slot.id, p.resource
                                            ),
                                        );
                                        InstanceState::Draining
                                    };
                                    self.set_state(&mut row, state, None).await;
                                    self.notify_pool();
                                }
                            }
                        }
                    };
                    if let Ok(mut w) = self.slot.worker.lock() {
                        *w = None;
                    }
                    if ready {
                        self.bump_ready(-1);
                    }
                    match exit {
                        None => {
                            self.set_state(&mut row, InstanceState::Draining, None)
                                .await;
                            // Calls in flight run to their end: within their deadline.
                            worker.stop(p.timeout.max(STOP_GRACE)).await;
                            break;
                        }
                        Some(exit) => {
                            let tail = worker.stderr_tail();
                            // Killed by its cgroup's OOM killer, or a runtime that ran out
                            // of memory and says so on stderr: name the limit that stopped it.
                            let oom = cgroup.as_ref().is_some_and(|c| c.oom_killed())
                                || out_of_memory(&tail);
                            let exit = match (oom, p.resources.memory_mb) {
                                (true, Some(mb)) => {
                                    format!("{exit}: stopped by its memory limit of {mb} MiB")
                                }
                                _ => exit,
                            };
                            let tail = tail[tail.len().saturating_sub(5)..].join("\n");
                            let msg = if tail.is_empty() {
                                format!("worker exited ({exit})")
                            } else {
                                format!("worker exited ({exit}); last stderr:\n{tail}")
                            };
                            p.logs.event(
                                &p.app,
                                format!(
                                    "instance {} of {} crashed: {exit}",
                                    self.slot.id, p.resource
                                ),
                            );
                            msg
                        }
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    let loaded = self
                        .pool
                        .upgrade()
                        .is_some_and(|pool| pool.loaded.load(Ordering::SeqCst));
                    if !loaded {
                        // A deploy whose worker cannot even load is broken; retrying hides that.
                        p.logs.event(
                            &p.app,
                            format!(
                                "instance {} of {} failed to start: {msg}",
                                self.slot.id, p.resource
                            ),
                        );
                        self.set_state(&mut row, InstanceState::Failed, Some(msg.clone()))
                            .await;
                        self.fail(msg);
                        return;
                    }
                    msg
                }
            };
            if started.elapsed() >= HEALTHY_AFTER {
                fast_failures = 0;
                backoff = BACKOFF_START;
            }
            fast_failures += 1;
            row.restarts += 1;
            if fast_failures >= MAX_FAST_FAILURES {
                let msg = format!("crash loop: {fast_failures} failures in a row; {failure}");
                p.logs.event(
                    &p.app,
                    format!(
                        "instance {} of {} marked failed: {msg}",
                        self.slot.id, p.resource
                    ),
                );
                self.set_state(&mut row, InstanceState::Failed, Some(msg.clone()))
                    .await;
                self.fail(msg);
                return;
            }
            row.last_error = Some(failure);
            let wait = backoff;
            backoff = (backoff * 2).min(BACKOFF_MAX);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.stop.changed() => break,
            }
        }
        row.pid = None;
        match self.stop_reason() {
            Some(StopReason::Idle) => {
                p.logs.event(
                    &p.app,
                    format!(
                        "instance {} of {} stopped after being idle",
                        self.slot.id, p.resource
                    ),
                );
                self.set_state(&mut row, InstanceState::Stopped, None).await;
            }
            _ => {
                row.state = InstanceState::Stopped;
                let _ = p.store.delete_instance(row.id).await;
            }
        }
    }

    fn notify_pool(&self) {
        if let Some(pool) = self.pool.upgrade() {
            pool.freed.notify_waiters();
        }
    }

    fn bump_ready(&self, delta: isize) {
        if let Some(pool) = self.pool.upgrade() {
            if delta > 0 {
                pool.ready.fetch_add(1, Ordering::SeqCst);
            } else {
                pool.ready.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.status
            .send_modify(|s| s.ready = (s.ready as isize + delta).max(0) as usize);
    }

    fn fail(&self, msg: String) {
        self.status.send_modify(|s| {
            if s.failed.is_none() {
                s.failed = Some(msg);
            }
        });
        self.notify_pool();
    }

    async fn set_state(&self, row: &mut InstanceRow, state: InstanceState, error: Option<String>) {
        row.state = state;
        if error.is_some() {
            row.last_error = error;
        }
        row.updated_at = morel_core::time::now_ms();
        if let Err(e) = self.p.store.upsert_instance(row).await {
            tracing::warn!(error = %format!("{e:#}"), "could not persist instance state");
        }
    }
}

/// Whether a worker's last stderr lines say it ran out of memory (Python's `MemoryError`,
/// V8's "heap out of memory", a failed allocation in C).
fn out_of_memory(tail: &[String]) -> bool {
    tail.iter().any(|l| {
        l.contains("MemoryError")
            || l.contains("heap out of memory")
            || l.contains("Cannot allocate memory")
            || l.contains("std::bad_alloc")
    })
}
