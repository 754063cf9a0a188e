//! One worker process and the calls multiplexed over its pipes.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::value::RawValue;
use tokio::io::BufReader;
use tokio::net::unix::pipe;
use tokio::sync::{Semaphore, oneshot, watch};

use crate::frame;
use crate::outbox::Outbox;
use crate::protocol::{FunctionMeta, HostMessage, LoadFunction, RaisedError, WorkerFrame};
use crate::spawn;

/// The runtimes replies are read on (see [`read_replies_on`]); empty: the spawning one.
static REPLY_HOMES: std::sync::OnceLock<Vec<tokio::runtime::Handle>> = std::sync::OnceLock::new();

thread_local! {
    /// This thread's index in [`REPLY_HOMES`], when it is one of them.
    static HOME_INDEX: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// Reads workers' replies on these runtimes (the server's serving threads, one worker after
/// another). A worker started on a serving thread reads its replies there. Set once per
/// process; each serving thread then calls [`serve_replies_here`] with its index.
pub fn read_replies_on(handles: Vec<tokio::runtime::Handle>) {
    let _ = REPLY_HOMES.set(handles);
}

/// Marks the calling thread as the runtime `read_replies_on` listed at `index`.
pub fn serve_replies_here(index: usize) {
    HOME_INDEX.with(|h| h.set(Some(index)));
}

/// The calling thread's index among the serving threads, when it is one of them.
pub fn serving_thread() -> Option<usize> {
    HOME_INDEX.with(|h| h.get())
}

tokio::task_local! {
    /// Set by [`Worker::invoke`] inside [`noting_reply_thread`]: the serving thread that read
    /// the reply of the task's last call.
    static REPLY_THREAD: std::cell::Cell<Option<usize>>;
}

/// Runs `call` and says which serving thread read the reply of the last worker call it made
/// (`None`: no worker call, or a reader that is not a serving thread). A caller on another
/// serving thread was woken from that one; the lane uses this to move a connection whose calls
/// keep going to one worker to the thread that reads the worker's replies.
pub async fn noting_reply_thread<F: std::future::Future>(call: F) -> (F::Output, Option<usize>) {
    REPLY_THREAD
        .scope(std::cell::Cell::new(None), async move {
            let out = call.await;
            (out, REPLY_THREAD.with(|t| t.get()))
        })
        .await
}

static NEXT_HOME: AtomicU64 = AtomicU64::new(0);

/// Where a new worker's replies are read: the next serving thread in turn (with its index),
/// or `None` (the current runtime) when there are none or the current runtime is one.
fn replies_home() -> Option<(usize, tokio::runtime::Handle)> {
    let current = tokio::runtime::Handle::current();
    if current.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread {
        return None;
    }
    let homes = REPLY_HOMES.get().filter(|h| !h.is_empty())?;
    let i = NEXT_HOME.fetch_add(1, Ordering::Relaxed) as usize % homes.len();
    Some((i, homes[i].clone()))
}

/// Where a worker's stdout/stderr lines go: `(is_stderr, line)`.
pub type LogSink = Arc<dyn Fn(bool, String) + Send + Sync>;

/// Everything needed to start one worker: resolved before the process starts.
#[derive(Clone, Debug)]
pub struct WorkerSpec {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// The app's extracted bundle; also the `root` of `Load`.
    pub cwd: PathBuf,
    pub env: Vec<(String, String)>,
    pub app: String,
    pub resource: String,
    pub concurrency: u32,
    /// `(name, file, attr)` of each function to load.
    pub functions: Vec<(String, String, String)>,
    pub load_timeout: Duration,
    /// What the worker is confined to (see [`crate::sandbox`]); its scratch directory is added
    /// per process.
    pub jail: crate::Jail,
    /// Where each worker process gets its scratch directory (`HOME`, `TMPDIR`), removed when
    /// the worker is gone; `None`: the system's temporary directory.
    pub scratch: Option<PathBuf>,
    /// Run before each start; an error fails the start (the release's files were changed).
    pub pre_start: Option<PreStart>,
}

/// A check run before each start of a workload process: the agent's check that the release's
/// files are still the signed ones. It runs inline (a walk of the tree's metadata).
#[derive(Clone)]
pub struct PreStart(pub Arc<dyn Fn() -> Result<(), String> + Send + Sync>);

impl std::fmt::Debug for PreStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PreStart")
    }
}

static NEXT_SCRATCH: AtomicU64 = AtomicU64::new(1);

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("could not start {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("worker failed to load: {0}")]
    Load(String),
    #[error("worker exited during load ({status}){tail}")]
    ExitedDuringLoad { status: String, tail: String },
    #[error("worker did not finish loading within {0:?}")]
    LoadTimeout(Duration),
    #[error("worker protocol error: {0}")]
    Protocol(String),
}

/// Why a call did not produce a result.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("{message}")]
    Raised {
        message: String,
        kind: String,
        traceback: Option<String>,
        /// Names this error in the app's log, where its traceback is; the answer carries it.
        id: String,
    },
    #[error("function {0:?} is not loaded in this worker")]
    NotFound(String),
    #[error("call exceeded its deadline of {0:?}")]
    Timeout(Duration),
    #[error("worker died during the call: {0}")]
    WorkerDied(String),
    /// The function returned a response the runner described in a shape the host cannot
    /// read (a runner bug, or a status out of range).
    #[error("the function's response is not valid: {0}")]
    InvalidResponse(String),
}

/// One call: the function, its bound arguments and, for a function that takes it, the request.
#[derive(Clone, Copy, Debug)]
pub struct Call<'a> {
    pub name: &'a str,
    /// A JSON array.
    pub args: &'a RawValue,
    /// A JSON object.
    pub kwargs: &'a RawValue,
    /// `Invoke`'s `request` ([`crate::protocol::RequestInfo`]); `None` for most calls.
    pub request: Option<&'a RawValue>,
}

/// What a call returned: its JSON result and, when the function returned an SDK response,
/// the status and headers it asked for.
#[derive(Debug)]
pub struct Returned {
    pub result: Box<RawValue>,
    pub response: Option<crate::protocol::ResponseMeta>,
}

type Reply = Result<Returned, InvokeError>;

/// A call in flight: where its reply goes, and the slot it holds. The reader frees the slot as
/// soon as the reply is read, before the caller runs again, so that a call waiting for a slot
/// is sent to the worker one thread wake-up sooner.
struct Waiter {
    reply: oneshot::Sender<Reply>,
    slot: tokio::sync::OwnedSemaphorePermit,
}

struct Inner {
    pid: u32,
    outbox: Arc<Outbox>,
    pending: Mutex<HashMap<u64, Waiter>>,
    next_id: AtomicU64,
    slots: Arc<Semaphore>,
    /// The semaphore's size: calls this worker runs at once.
    concurrency: u32,
    /// Set by [`Worker::try_retire_idle`]: no call was ever sent after it closed the slots.
    retired_idle: AtomicBool,
    alive: AtomicBool,
    /// Set once by the wait task when the process has exited; read by anyone waiting on exit.
    exit: watch::Receiver<Option<String>>,
    /// The last lines of stderr, written by the stderr pump, read for error messages.
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    functions: Vec<FunctionMeta>,
    /// The serving thread that reads the replies, when they are read on one.
    reply_thread: Option<usize>,
    /// Removed when the worker is gone.
    _scratch: Option<crate::Scratch>,
    /// Calls answered 504 whose reply has not come yet, by id: the function's name and the
    /// slot it still holds (the worker is still running it). One still here [`OVERDUE_GRACE`]
    /// after its deadline gets the worker recycled.
    overdue: Mutex<HashMap<u64, (String, tokio::sync::OwnedSemaphorePermit)>>,
    /// True while every slot is held by an overdue call: the worker can take no call.
    stuck: watch::Sender<bool>,
    /// The app's log, for what the host says about the worker.
    sink: LogSink,
}

impl Inner {
    /// Says whether `overdue` calls hold every slot.
    fn note_stuck(&self, overdue: usize) {
        let stuck = overdue >= self.concurrency as usize;
        self.stuck
            .send_if_modified(|s| std::mem::replace(s, stuck) != stuck);
    }
}

/// How long a call past its deadline may keep running in the worker (it was cancelled; an
/// `async` call stops at once) before the worker is killed and respawned to free its slot.
pub const OVERDUE_GRACE: Duration = Duration::from_secs(2);

/// A running worker. Cheap to clone; the process is killed when the last clone is stopped or dropped.
#[derive(Clone)]
pub struct Worker {
    inner: Arc<Inner>,
}

const TAIL_LINES: usize = 20;

impl Worker {
    /// Starts the process, sends `Load`, and waits for `MetaData`.
    pub async fn spawn(spec: &WorkerSpec, sink: LogSink) -> Result<Worker, WorkerError> {
        let spawn_err = |source| WorkerError::Spawn {
            program: spec.program.display().to_string(),
            source,
        };
        if let Some(check) = &spec.pre_start {
            (check.0)().map_err(WorkerError::Load)?;
        }
        let sandbox = crate::Sandbox::current();
        let scratch = match &spec.scratch {
            Some(base) => {
                let name = format!(
                    "{}.{}.{}.{}",
                    spec.app,
                    spec.resource,
                    std::process::id(),
                    NEXT_SCRATCH.fetch_add(1, Ordering::Relaxed)
                );
                Some(crate::Scratch::create(base, &name, spec.jail.uid).map_err(spawn_err)?)
            }
            None => None,
        };
        let mut jail = spec.jail.clone();
        let home = match &scratch {
            Some(s) => {
                jail.write.push(s.path().to_path_buf());
                s.path().to_path_buf()
            }
            None => std::env::temp_dir(),
        };
        let (child_in, host_out) = spawn::pipe().map_err(spawn_err)?;
        let (host_in, child_out) = spawn::pipe().map_err(spawn_err)?;
        let mut cmd = sandbox.command(&spec.program, &spec.args, &jail);
        cmd.current_dir(&spec.cwd)
            .env_clear()
            .envs(crate::sandbox::base_env(&home))
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        spawn::map_protocol_fds(&mut cmd, &child_in, &child_out);
        let mut child = sandbox.spawn(cmd).await.map_err(spawn_err)?;
        drop(child_in);
        drop(child_out);
        let pid = child.id().unwrap_or(0);

        let writer = pipe::Sender::from_owned_fd(host_out).map_err(spawn_err)?;
        let reader = pipe::Receiver::from_owned_fd(host_in).map_err(spawn_err)?;

        let tail = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(out) = child.stdout.take() {
            tokio::spawn(pump_lines(out, false, sink.clone(), None));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(pump_lines(err, true, sink.clone(), Some(tail.clone())));
        }

        // Calls write their frames to the pipe themselves (see `outbox`).
        let outbox = Outbox::new(writer);

        let load = HostMessage::Load {
            app: &spec.app,
            resource: &spec.resource,
            root: &spec.cwd.to_string_lossy(),
            concurrency: spec.concurrency,
            functions: spec
                .functions
                .iter()
                .map(|(n, f, a)| LoadFunction {
                    name: n,
                    file: f,
                    attr: a,
                })
                .collect(),
        };
        send(&outbox, &load);

        let (exit_tx, exit_rx) = watch::channel(None);
        let mut reader = BufReader::with_capacity(64 * 1024, reader);
        let mut buf = Vec::new();
        let first =
            tokio::time::timeout(spec.load_timeout, frame::read(&mut reader, &mut buf)).await;
        let tail_text = |tail: &Mutex<VecDeque<String>>| {
            let t = tail
                .lock()
                .map(|t| t.iter().cloned().collect::<Vec<_>>().join("\n"))
                .unwrap_or_default();
            if t.is_empty() {
                String::new()
            } else {
                format!(":\n{t}")
            }
        };
        let functions = match first {
            Err(_) => {
                spawn::kill_group(pid, libc::SIGKILL);
                return Err(WorkerError::LoadTimeout(spec.load_timeout));
            }
            Ok(Err(e)) => return Err(WorkerError::Protocol(e.to_string())),
            Ok(Ok(None)) => {
                let status = match tokio::time::timeout(Duration::from_secs(2), child.wait()).await
                {
                    Ok(Ok(s)) => s.to_string(),
                    _ => "unknown status".into(),
                };
                // Let the stderr pump catch up with the last lines.
                tokio::time::sleep(Duration::from_millis(50)).await;
                return Err(WorkerError::ExitedDuringLoad {
                    status,
                    tail: tail_text(&tail),
                });
            }
            Ok(Ok(Some(()))) => match serde_json::from_slice::<WorkerFrame>(&buf) {
                Ok(f) if f.kind == "MetaData" => f.functions,
                Ok(f) if f.kind == "LoadError" => {
                    spawn::kill_group(pid, libc::SIGKILL);
                    let msg = match f.error {
                        Some(serde_json::Value::String(s)) => s,
                        Some(other) => other.to_string(),
                        None => "unknown load error".into(),
                    };
                    return Err(WorkerError::Load(msg));
                }
                Ok(f) => {
                    return Err(WorkerError::Protocol(format!(
                        "expected MetaData, got {}",
                        f.kind
                    )));
                }
                Err(e) => {
                    return Err(WorkerError::Protocol(format!(
                        "unreadable first message: {e}"
                    )));
                }
            },
        };

        // Replies are read on a serving thread (in turn), or where the worker was started
        // from when that is a serving thread.
        let home = replies_home().filter(|_| reader.buffer().is_empty());
        let reply_thread = match &home {
            Some((i, _)) => Some(*i),
            None => serving_thread(),
        };
        let inner = Arc::new(Inner {
            pid,
            outbox,
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            slots: Arc::new(Semaphore::new(spec.concurrency.max(1) as usize)),
            concurrency: spec.concurrency.max(1),
            retired_idle: AtomicBool::new(false),
            alive: AtomicBool::new(true),
            exit: exit_rx,
            stderr_tail: tail,
            functions,
            reply_thread,
            _scratch: scratch,
            overdue: Mutex::new(HashMap::new()),
            stuck: watch::channel(false).0,
            sink: sink.clone(),
        });
        // Reader: routes replies to their callers.
        let weak = Arc::downgrade(&inner);
        match home {
            Some((_, home)) => match reader.into_inner().into_nonblocking_fd() {
                Ok(fd) => {
                    home.spawn(async move {
                        match pipe::Receiver::from_owned_fd(fd) {
                            Ok(rx) => {
                                read_replies(BufReader::with_capacity(64 * 1024, rx), weak).await
                            }
                            Err(e) => tracing::error!(error = %e, "cannot read a worker's replies"),
                        }
                    });
                }
                Err(e) => tracing::error!(error = %e, "cannot move a worker's reply pipe"),
            },
            None => {
                tokio::spawn(read_replies(reader, weak));
            }
        }

        // Waiter: when the process exits, fail everything in flight at once.
        let weak = Arc::downgrade(&inner);
        tokio::spawn(async move {
            let status = match child.wait().await {
                Ok(s) => describe_exit(s),
                Err(e) => format!("wait failed: {e}"),
            };
            if let Some(inner) = weak.upgrade() {
                inner.alive.store(false, Ordering::SeqCst);
                let waiters: Vec<_> = inner
                    .pending
                    .lock()
                    .map(|mut p| p.drain().collect())
                    .unwrap_or_default();
                for (_, w) in waiters {
                    let _ = w.reply.send(Err(InvokeError::WorkerDied(status.clone())));
                }
            }
            let _ = exit_tx.send(Some(status));
        });

        Ok(Worker { inner })
    }

    pub fn pid(&self) -> u32 {
        self.inner.pid
    }

    pub fn functions(&self) -> &[FunctionMeta] {
        &self.inner.functions
    }

    pub fn is_alive(&self) -> bool {
        self.inner.alive.load(Ordering::SeqCst)
    }

    /// Calls available right now without waiting.
    pub fn free_slots(&self) -> usize {
        self.inner.slots.available_permits()
    }

    /// True when no call is running or waiting on this worker.
    pub fn is_idle(&self) -> bool {
        self.inner.slots.available_permits() == self.inner.concurrency as usize
    }

    /// Closes the worker to new calls if, and only if, no call is running: takes every slot at
    /// once, so a call cannot slip in between the check and the close. A caller that picked the
    /// worker just before gets `WorkerDied` with [`Worker::retired_idle`] true, and can safely
    /// go elsewhere: its call was never sent.
    pub fn try_retire_idle(&self) -> bool {
        match self.inner.slots.try_acquire_many(self.inner.concurrency) {
            Ok(permits) => {
                self.inner.retired_idle.store(true, Ordering::SeqCst);
                self.inner.slots.close();
                permits.forget();
                true
            }
            Err(_) => false,
        }
    }

    /// See [`Worker::try_retire_idle`].
    pub fn retired_idle(&self) -> bool {
        self.inner.retired_idle.load(Ordering::SeqCst)
    }

    /// The last lines the worker wrote to stderr.
    pub fn stderr_tail(&self) -> Vec<String> {
        self.inner
            .stderr_tail
            .lock()
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Resolves with a description of the exit once the process has exited.
    pub async fn exited(&self) -> String {
        let mut rx = self.inner.exit.clone();
        loop {
            if let Some(s) = rx.borrow().clone() {
                return s;
            }
            if rx.changed().await.is_err() {
                return "exited".into();
            }
        }
    }

    /// Runs one call. The deadline covers waiting for a free slot and the call itself.
    pub async fn invoke(
        &self,
        call: &Call<'_>,
        deadline: Duration,
    ) -> Result<Returned, InvokeError> {
        let name = call.name;
        let start = tokio::time::Instant::now();
        let permit =
            match tokio::time::timeout(deadline, self.inner.slots.clone().acquire_owned()).await {
                Ok(Ok(p)) => p,
                Ok(Err(_)) => return Err(InvokeError::WorkerDied("worker stopped".into())),
                Err(_) => return Err(InvokeError::Timeout(deadline)),
            };
        if !self.is_alive() {
            return Err(InvokeError::WorkerDied(
                self.inner
                    .exit
                    .borrow()
                    .clone()
                    .unwrap_or_else(|| "worker is not running".into()),
            ));
        }
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.inner.pending.lock() {
            p.insert(
                id,
                Waiter {
                    reply: tx,
                    slot: permit,
                },
            );
        }
        let remaining = deadline.saturating_sub(start.elapsed());
        send(
            &self.inner.outbox,
            &HostMessage::Invoke {
                id,
                name,
                args: call.args,
                kwargs: call.kwargs,
                timeout_ms: remaining.as_millis() as u64,
                request: call.request,
            },
        );
        match tokio::time::timeout(remaining, rx).await {
            Ok(Ok(reply)) => {
                let _ = REPLY_THREAD.try_with(|t| t.set(self.inner.reply_thread));
                reply
            }
            Ok(Err(_)) => Err(InvokeError::WorkerDied(
                self.inner
                    .exit
                    .borrow()
                    .clone()
                    .unwrap_or_else(|| "worker exited".into()),
            )),
            Err(_) => {
                let waiter = self
                    .inner
                    .pending
                    .lock()
                    .ok()
                    .and_then(|mut p| p.remove(&id));
                // The worker is still running the call: it keeps its slot until it stops.
                if let Some(Waiter { slot, .. }) = waiter
                    && let Ok(mut o) = self.inner.overdue.lock()
                {
                    o.insert(id, (name.to_owned(), slot));
                    self.inner.note_stuck(o.len());
                }
                send(&self.inner.outbox, &HostMessage::Cancel { id });
                // A call that does not stop holds one of the worker's threads for good: past
                // the grace the worker is recycled (its supervisor respawns it).
                let weak = Arc::downgrade(&self.inner);
                tokio::spawn(async move {
                    tokio::time::sleep(OVERDUE_GRACE).await;
                    let Some(inner) = weak.upgrade() else { return };
                    let still = inner.overdue.lock().ok().and_then(|mut o| o.remove(&id));
                    if let Some((function, _slot)) = still
                        && inner.alive.load(Ordering::SeqCst)
                    {
                        let msg = format!(
                            "morel: call {id} of {function} passed its deadline of {deadline:?} \
                             and was still running {OVERDUE_GRACE:?} later; recycling the worker \
                             (pid {}) to free its slot",
                            inner.pid
                        );
                        tracing::warn!("{msg}");
                        (inner.sink)(true, msg);
                        spawn::kill_group(inner.pid, libc::SIGKILL);
                    }
                });
                Err(InvokeError::Timeout(deadline))
            }
        }
    }

    /// Turns true while every slot is held by a call past its deadline (the worker can take
    /// no call until one stops, or it is recycled after [`OVERDUE_GRACE`]), false again after.
    pub fn stuck(&self) -> watch::Receiver<bool> {
        self.inner.stuck.subscribe()
    }

    /// Stops the worker: closes its input (the runner exits on EOF), then signals the group.
    /// Calls in flight are answered first (for up to `grace`); SIGKILL follows a SIGTERM left
    /// unanswered for a second.
    pub async fn stop(&self, grace: Duration) {
        self.inner.slots.close();
        let deadline = tokio::time::Instant::now() + grace;
        // A closed semaphore still takes back the permits of the calls that end (a worker
        // retired idle holds them all itself: no call is in flight).
        while self.is_alive()
            && !self.retired_idle()
            && self.inner.slots.available_permits() < self.inner.concurrency as usize
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        spawn::kill_group(self.inner.pid, libc::SIGTERM);
        if tokio::time::timeout(Duration::from_secs(1), self.exited())
            .await
            .is_err()
        {
            spawn::kill_group(self.inner.pid, libc::SIGKILL);
            let _ = tokio::time::timeout(Duration::from_secs(2), self.exited()).await;
        }
    }

    /// Kills the worker at once (tests use this to simulate a crash).
    pub fn kill(&self) {
        spawn::kill_group(self.inner.pid, libc::SIGKILL);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.alive.load(Ordering::SeqCst) {
            spawn::kill_group(self.pid, libc::SIGKILL);
        }
    }
}

/// Routes the worker's replies to their callers until the pipe closes or the worker is dropped.
async fn read_replies(mut reader: BufReader<pipe::Receiver>, weak: std::sync::Weak<Inner>) {
    let mut buf = Vec::new();
    while let Ok(Some(())) = frame::read(&mut reader, &mut buf).await {
        let Some(inner) = weak.upgrade() else { break };
        match serde_json::from_slice::<WorkerFrame>(&buf) {
            Ok(WorkerFrame {
                kind,
                id,
                ok,
                result,
                error,
                response,
                ..
            }) if kind == "InvokeResult" => {
                let waiter = inner.pending.lock().ok().and_then(|mut p| p.remove(&id));
                if waiter.is_none()
                    && let Ok(mut o) = inner.overdue.lock()
                {
                    // A late reply: the call did stop, and frees its slot.
                    o.remove(&id);
                    inner.note_stuck(o.len());
                }
                if let Some(Waiter { reply: tx, slot }) = waiter {
                    drop(slot);
                    let reply = if ok {
                        returned(result, response)
                    } else {
                        let e: RaisedError = error
                            .and_then(|v| serde_json::from_value(v).ok())
                            .unwrap_or(RaisedError {
                                message: "unknown error".into(),
                                kind: "Error".into(),
                                traceback: None,
                            });
                        if e.kind == "NotFound" {
                            Err(InvokeError::NotFound(e.message))
                        } else {
                            // The traceback is for the app's owner: it goes to the app's log
                            // under an id the answer carries, never into the answer.
                            let error_id = format!("{:x}-{id}", inner.pid);
                            (inner.sink)(
                                true,
                                format!(
                                    "morel: error {error_id}: a call raised {}: {}",
                                    e.kind, e.message
                                ),
                            );
                            if let Some(tb) = &e.traceback {
                                for line in tb.lines() {
                                    (inner.sink)(true, format!("morel: error {error_id}: {line}"));
                                }
                            }
                            Err(InvokeError::Raised {
                                message: e.message,
                                kind: e.kind,
                                traceback: e.traceback,
                                id: error_id,
                            })
                        }
                    };
                    let _ = tx.send(reply);
                }
            }
            Ok(other) => {
                tracing::warn!(pid = inner.pid, kind = %other.kind, "unexpected worker message")
            }
            Err(e) => {
                tracing::warn!(pid = inner.pid, error = %e, "unreadable worker message")
            }
        }
    }
}

/// A successful reply: its result, and the response the function asked for, if it is one.
fn returned(result: Option<Box<RawValue>>, response: Option<serde_json::Value>) -> Reply {
    let response = match response {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => Some(
            serde_json::from_value::<crate::protocol::ResponseMeta>(v)
                .map_err(|e| InvokeError::InvalidResponse(e.to_string()))?,
        ),
    };
    Ok(Returned {
        result: result.unwrap_or_else(null_raw),
        response,
    })
}

fn null_raw() -> Box<RawValue> {
    RawValue::from_string("null".into()).unwrap_or_else(|_| unreachable_raw())
}

fn unreachable_raw() -> Box<RawValue> {
    // "null" is always valid JSON; this only exists to avoid a panic path in library code.
    serde_json::value::to_raw_value(&serde_json::Value::Null).unwrap_or_default()
}

fn send(outbox: &Arc<Outbox>, msg: &HostMessage<'_>) {
    let mut out = Vec::with_capacity(256);
    if frame::encode(msg, &mut out).is_ok() {
        outbox.send(&out);
    }
}

fn describe_exit(s: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => s.to_string(),
    }
}

async fn pump_lines<R: tokio::io::AsyncRead + Unpin>(
    r: R,
    is_stderr: bool,
    sink: LogSink,
    tail: Option<Arc<Mutex<VecDeque<String>>>>,
) {
    let mut lines = crate::loglines::LogLines::new(BufReader::new(r));
    while let Some(line) = lines.next_line().await {
        if let Some(tail) = &tail
            && let Ok(mut t) = tail.lock()
        {
            if t.len() == TAIL_LINES {
                t.pop_front();
            }
            t.push_back(line.clone());
        }
        sink(is_stderr, line);
    }
}
