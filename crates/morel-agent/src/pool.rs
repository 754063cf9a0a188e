//! A resource's running instances and the supervisor that keeps each one alive.
//!
//! Each instance slot has a supervisor task: spawn → ready → wait for exit → respawn with
//! exponential backoff. Five failures in a row that each lived under [`HEALTHY_AFTER`] mark the
//! instance `failed` (crash loop) with the last stderr lines as its error. A worker that fails
//! to load on its very first start fails at once: that is a broken deploy, not a crash.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use morel_core::{InstanceId, InstanceState};
use morel_runtime_process::protocol::FunctionMeta;
use morel_runtime_process::{InvokeError, LogSink, Worker, WorkerSpec};
use morel_store::{AppKey, InstanceRow, LogStream, Store};
use serde_json::value::RawValue;
use tokio::sync::watch;

use crate::LogHub;

const MAX_FAST_FAILURES: u32 = 5;
const HEALTHY_AFTER: Duration = Duration::from_secs(10);
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
const STOP_GRACE: Duration = Duration::from_secs(5);

/// What the pool's callers can observe: how many instances are ready, and whether the pool
/// has given up (its first start failed, or every instance is in a crash loop).
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
    #[error("no ready instance of resource {resource} within {waited:?}{reason}")]
    NoInstance {
        resource: String,
        waited: Duration,
        reason: String,
    },
}

struct Slot {
    id: InstanceId,
    /// Written by the slot's supervisor, read by callers picking a worker.
    worker: Mutex<Option<Worker>>,
}

pub struct ResourcePool {
    pub app: AppKey,
    pub resource: String,
    pub release: i64,
    pub timeout: Duration,
    slots: Vec<Arc<Slot>>,
    next: AtomicUsize,
    status: watch::Receiver<PoolStatus>,
    status_tx: Arc<watch::Sender<PoolStatus>>,
    stop: watch::Sender<bool>,
    supervisors: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Functions as the first ready worker reported them (`MetaData`).
    functions: Mutex<Vec<FunctionMeta>>,
}

pub(crate) struct PoolParams {
    pub app: AppKey,
    pub resource: String,
    pub release: i64,
    pub digest: morel_core::Digest,
    pub node: String,
    pub instances: usize,
    pub timeout: Duration,
    pub spec: WorkerSpec,
    pub store: Arc<dyn Store>,
    pub logs: LogHub,
}

impl ResourcePool {
    pub(crate) fn start(p: PoolParams) -> Arc<ResourcePool> {
        let (status_tx, status) = watch::channel(PoolStatus::default());
        let (stop, _) = watch::channel(false);
        let slots: Vec<Arc<Slot>> = (0..p.instances.max(1))
            .map(|_| {
                Arc::new(Slot {
                    id: InstanceId::new(),
                    worker: Mutex::new(None),
                })
            })
            .collect();
        let pool = Arc::new(ResourcePool {
            app: p.app.clone(),
            resource: p.resource.clone(),
            release: p.release,
            timeout: p.timeout,
            slots: slots.clone(),
            next: AtomicUsize::new(0),
            status,
            status_tx: Arc::new(status_tx),
            stop,
            supervisors: Mutex::new(Vec::new()),
            functions: Mutex::new(Vec::new()),
        });
        let p = Arc::new(p);
        let handles = slots
            .into_iter()
            .map(|slot| {
                let sup = Supervisor {
                    pool: Arc::downgrade(&pool),
                    slot,
                    p: p.clone(),
                    stop: pool.stop.subscribe(),
                    status: pool.status_tx.clone(),
                };
                tokio::spawn(sup.run())
            })
            .collect();
        if let Ok(mut s) = pool.supervisors.lock() {
            *s = handles;
        }
        pool
    }

    pub fn status(&self) -> PoolStatus {
        self.status.borrow().clone()
    }

    pub fn functions(&self) -> Vec<FunctionMeta> {
        self.functions.lock().map(|f| f.clone()).unwrap_or_default()
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

    fn pick(&self) -> Option<Worker> {
        let n = self.slots.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        // Prefer a ready worker with a free slot; else any ready worker (its queue absorbs the call).
        let mut fallback = None;
        for i in 0..n {
            let slot = &self.slots[(start + i) % n];
            let Ok(guard) = slot.worker.lock() else {
                continue;
            };
            if let Some(w) = guard.as_ref().filter(|w| w.is_alive()) {
                if w.free_slots() > 0 {
                    return Some(w.clone());
                }
                fallback.get_or_insert_with(|| w.clone());
            }
        }
        fallback
    }

    /// Runs a call on a ready instance, waiting (within the call's deadline) for one if none is ready.
    pub async fn invoke(
        &self,
        name: &str,
        args: &RawValue,
        kwargs: &RawValue,
        deadline: Duration,
    ) -> Result<Box<RawValue>, CallError> {
        let start = tokio::time::Instant::now();
        let worker = match self.pick() {
            Some(w) => w,
            None => {
                let mut rx = self.status.clone();
                loop {
                    if let Some(w) = self.pick() {
                        break w;
                    }
                    let failed = rx.borrow().failed.clone();
                    let remaining = deadline.saturating_sub(start.elapsed());
                    if failed.is_some()
                        || remaining.is_zero()
                        || tokio::time::timeout(remaining, rx.changed()).await.is_err()
                    {
                        let reason = failed.map(|f| format!(": {f}")).unwrap_or_default();
                        return Err(CallError::NoInstance {
                            resource: self.resource.clone(),
                            waited: start.elapsed(),
                            reason,
                        });
                    }
                }
            }
        };
        let remaining = deadline.saturating_sub(start.elapsed());
        Ok(worker.invoke(name, args, kwargs, remaining).await?)
    }

    /// Stops every instance (letting in-flight calls finish within the grace period).
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let handles: Vec<_> = self
            .supervisors
            .lock()
            .map(|mut h| h.drain(..).collect())
            .unwrap_or_default();
        for h in handles {
            let _ = h.await;
        }
    }

    /// Kills one running worker, as a crash would (tests and `morel` chaos checks use it).
    pub fn kill_one(&self) -> Option<u32> {
        let w = self.pick()?;
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
    stop: watch::Receiver<bool>,
    status: Arc<watch::Sender<PoolStatus>>,
}

impl Supervisor {
    async fn run(mut self) {
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
        let mut ever_ready = false;
        let mut backoff = BACKOFF_START;
        loop {
            if *self.stop.borrow() {
                break;
            }
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
            let failure = match Worker::spawn(&p.spec, sink).await {
                Ok(worker) => {
                    row.pid = Some(worker.pid() as i64);
                    if let Some(pool) = self.pool.upgrade()
                        && let Ok(mut f) = pool.functions.lock()
                        && f.is_empty()
                    {
                        *f = worker.functions().to_vec();
                    }
                    if let Ok(mut w) = self.slot.worker.lock() {
                        *w = Some(worker.clone());
                    }
                    ever_ready = true;
                    morel_metrics::global().instance_started(
                        p.app.namespace.as_str(),
                        p.app.name.as_str(),
                        &p.resource,
                        started.elapsed(),
                    );
                    self.set_state(&mut row, InstanceState::Ready, None).await;
                    self.bump_ready(1);
                    let exit = tokio::select! {
                        exit = worker.exited() => Some(exit),
                        _ = self.stop.changed() => None,
                    };
                    if let Ok(mut w) = self.slot.worker.lock() {
                        *w = None;
                    }
                    self.bump_ready(-1);
                    match exit {
                        None => {
                            self.set_state(&mut row, InstanceState::Draining, None)
                                .await;
                            worker.stop(STOP_GRACE).await;
                            break;
                        }
                        Some(exit) => {
                            let tail = worker.stderr_tail();
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
                    if !ever_ready {
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
        self.set_state(&mut row, InstanceState::Stopped, None).await;
        let _ = p.store.delete_instance(row.id).await;
    }

    fn bump_ready(&self, delta: isize) {
        self.status
            .send_modify(|s| s.ready = (s.ready as isize + delta).max(0) as usize);
    }

    fn fail(&self, msg: String) {
        self.status.send_modify(|s| {
            if s.failed.is_none() {
                s.failed = Some(msg);
            }
        });
    }

    async fn set_state(&self, row: &mut InstanceRow, state: InstanceState, error: Option<String>) {
        row.state = state;
        if error.is_some() {
            row.last_error = error;
        }
        row.updated_at = morel_core::time::now_ms();
        if state != InstanceState::Stopped
            && let Err(e) = self.p.store.upsert_instance(row).await
        {
            tracing::warn!(error = %format!("{e:#}"), "could not persist instance state");
        }
    }
}
