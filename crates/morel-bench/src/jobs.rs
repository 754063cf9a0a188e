//! Async jobs end to end against raw queue operations on the same store, in alternating batches.
//!
//! Morel's side: `count` jobs are enqueued with `POST …/run/{fn}` over `conns` keep-alive
//! connections, then every execution is polled (`GET /api/executions/{id}`) until it is
//! finished. A batch counts from the first enqueue to the moment the last job is seen
//! completed; jobs/s = completed jobs / summed batch time. Latency per job is the server's own
//! `duration_ms` (enqueue → completed).
//!
//! The reference: the same number of messages, shaped like a job, through the store's own queue
//! operations (`queue_send`, `queue_read`, `queue_delete`) from `conns` concurrent tasks, on a
//! store of the same kind and settings opened by this process. Which store is a [`QueueStore`]
//! variant, so that another backend is one more variant and one more `--store` value.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use morel_store::{SqlStore, Store};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::BenchError;
use crate::http1;
use crate::load::LoadResult;
use crate::stats::percentile;

/// The longest one batch of jobs may take before the run gives up on it.
const BATCH_LIMIT: Duration = Duration::from_secs(120);
/// Pause between polls of an execution that has not finished yet.
const POLL_PAUSE: Duration = Duration::from_millis(2);
/// The reference's queue: its own name, so it never meets Morel's `jobs` queue.
const REF_QUEUE: &str = "bench";

/// Where the reference's queue lives.
#[derive(Clone, Debug)]
pub enum QueueStore {
    /// A SQLite database file (created if missing), opened like `morel up` opens its own.
    Sqlite(PathBuf),
    /// A PostgreSQL database (`postgres://…`), opened like `morel up --database-url` opens it.
    Postgres(String),
}

impl QueueStore {
    /// Parses `sqlite:PATH` or a `postgres://` URL.
    pub fn parse(s: &str) -> Result<Self, BenchError> {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return Ok(QueueStore::Postgres(s.to_owned()));
        }
        match s.split_once(':') {
            Some(("sqlite", path)) if !path.is_empty() => Ok(QueueStore::Sqlite(path.into())),
            _ => Err(BenchError::Usage(format!(
                "--store {s:?}: expected sqlite:PATH or postgres://USER@HOST:PORT/DB"
            ))),
        }
    }

    /// What the report names as the reference's target.
    fn target(&self) -> String {
        match self {
            QueueStore::Sqlite(p) => format!("sqlite:{}", p.display()),
            QueueStore::Postgres(url) => url.clone(),
        }
    }

    async fn open(&self) -> Result<Arc<dyn Store>, BenchError> {
        match self {
            QueueStore::Sqlite(path) => SqlStore::open_sqlite(path)
                .await
                .map(|s| Arc::new(s) as Arc<dyn Store>)
                .map_err(|e| BenchError::Usage(format!("cannot open {}: {e}", path.display()))),
            QueueStore::Postgres(url) => SqlStore::connect_postgres(url)
                .await
                .map(|s| Arc::new(s) as Arc<dyn Store>)
                .map_err(|e| BenchError::Usage(format!("cannot open {url}: {e}"))),
        }
    }
}

/// What to run: both sides, `rounds` batches of `count` each, alternating.
#[derive(Clone, Debug)]
pub struct JobsSpec {
    pub addr: SocketAddr,
    /// `/{prefix}/{app}/{version}/run/{func}`.
    pub run_path: String,
    pub body: Vec<u8>,
    pub token: String,
    pub store: QueueStore,
    pub count: u64,
    pub conns: usize,
    pub rounds: u32,
}

#[derive(Default)]
struct Side {
    latencies_us: Vec<u64>,
    done: u64,
    errors: u64,
    seconds: f64,
    statuses: BTreeMap<u16, u64>,
    sample: Option<String>,
}

impl Side {
    fn result(mut self, target: String, conns: usize) -> LoadResult {
        self.latencies_us.sort_unstable();
        let l = &self.latencies_us;
        LoadResult {
            target,
            conns,
            requests: self.done + self.errors,
            errors: self.errors,
            connect_errors: 0,
            seconds: self.seconds,
            rps: self.done as f64 / self.seconds.max(1e-6),
            slices_rps: Vec::new(),
            p50_us: percentile(l, 50.0),
            p90_us: percentile(l, 90.0),
            p99_us: percentile(l, 99.0),
            max_us: l.last().copied(),
            statuses: self.statuses,
            sample_body: self.sample,
        }
    }
}

/// Runs both sides; returns (reference, Morel).
pub async fn run(spec: JobsSpec) -> Result<(LoadResult, LoadResult), BenchError> {
    let store = spec.store.open().await?;
    let mut reference = Side::default();
    let mut morel = Side::default();
    for _ in 0..spec.rounds {
        queue_batch(&store, &spec, &mut reference).await?;
        jobs_batch(&spec, &mut morel).await?;
    }
    Ok((
        reference.result(spec.store.target(), spec.conns),
        morel.result(format!("http://{}{}", spec.addr, spec.run_path), spec.conns),
    ))
}

/// A message of the size and shape of a job.
fn job_message(i: u64) -> Value {
    json!({
        "execution_id": format!("0190aaaa-bbbb-7ccc-8ddd-{i:012}"),
        "namespace": "default",
        "app": "bench",
        "function": "add",
        "body": "[1,2]",
    })
}

async fn queue_batch(
    store: &Arc<dyn Store>,
    spec: &JobsSpec,
    side: &mut Side,
) -> Result<(), BenchError> {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..spec.conns {
        let (store, next, count) = (store.clone(), next.clone(), spec.count);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let t = Instant::now();
                let ok = async {
                    store.queue_send(REF_QUEUE, &job_message(0)).await?;
                    let msgs = store.queue_read(REF_QUEUE, 600_000, 1).await?;
                    for m in msgs {
                        store.queue_delete(REF_QUEUE, m.msg_id).await?;
                    }
                    Ok::<_, morel_store::StoreError>(())
                }
                .await;
                match ok {
                    Ok(()) => lat.push(t.elapsed().as_micros() as u64),
                    Err(_) => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    for t in tasks {
        let (lat, errors) = t
            .await
            .map_err(|e| BenchError::Usage(format!("a queue task failed: {e}")))?;
        side.done += lat.len() as u64;
        side.latencies_us.extend(lat);
        side.errors += errors;
    }
    side.seconds += started.elapsed().as_secs_f64();
    *side.statuses.entry(200).or_default() = side.done;
    if side.sample.is_none() {
        side.sample = Some("send+read+delete".into());
    }
    Ok(())
}

/// One keep-alive connection that sends a request and reads its whole answer.
struct Conn {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

impl Conn {
    fn new(addr: SocketAddr) -> Self {
        Conn {
            addr,
            stream: None,
            buf: Vec::with_capacity(4096),
        }
    }

    async fn request(&mut self, req: &[u8]) -> Result<(u16, Vec<u8>), BenchError> {
        let addr = self.addr;
        let fail = |message: String| BenchError::Target {
            addr: addr.to_string(),
            message,
        };
        if self.stream.is_none() {
            let s = TcpStream::connect(addr)
                .await
                .map_err(|e| fail(e.to_string()))?;
            let _ = s.set_nodelay(true);
            self.stream = Some(s);
        }
        let Some(stream) = self.stream.as_mut() else {
            return Err(fail("no connection".into()));
        };
        stream
            .write_all(req)
            .await
            .map_err(|e| fail(e.to_string()))?;
        self.buf.clear();
        let mut chunk = [0u8; 8192];
        loop {
            let n = stream
                .read(&mut chunk)
                .await
                .map_err(|e| fail(e.to_string()))?;
            self.buf.extend_from_slice(&chunk[..n]);
            let head = http1::parse_head(&self.buf).map_err(|e| fail(e.to_string()))?;
            if let Some(head) = head
                && let Some(c) =
                    http1::complete(&self.buf, &head, n == 0).map_err(|e| fail(e.to_string()))?
            {
                let body = match c.body {
                    Some(r) => self.buf[r].to_vec(),
                    None => http1::dechunk(&self.buf, &head),
                };
                if c.close {
                    self.stream = None;
                }
                return Ok((c.status, body));
            }
            if n == 0 {
                self.stream = None;
                return Err(fail("connection closed mid-answer".into()));
            }
        }
    }
}

fn get_with_token(host: &str, path: &str, token: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\r\n")
        .into_bytes()
}

async fn jobs_batch(spec: &JobsSpec, side: &mut Side) -> Result<(), BenchError> {
    let host = spec.addr.to_string();
    let post = Arc::new(http1::render_request(
        "POST",
        &host,
        &spec.run_path,
        &spec.body,
    ));
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..spec.conns {
        let (post, next, count, addr) = (post.clone(), next.clone(), spec.count, spec.addr);
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::new(addr);
            let mut ids = Vec::new();
            let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
            while next.fetch_add(1, Ordering::Relaxed) < count {
                match conn.request(&post).await {
                    Ok((status, body)) => {
                        *statuses.entry(status).or_default() += 1;
                        let id = serde_json::from_slice::<Value>(&body)
                            .ok()
                            .and_then(|v| v["id"].as_str().map(str::to_owned));
                        if let (202, Some(id)) = (status, id) {
                            ids.push(id);
                        }
                    }
                    Err(_) => *statuses.entry(0).or_default() += 1,
                }
            }
            (ids, statuses)
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        let (mut i, statuses) = t
            .await
            .map_err(|e| BenchError::Usage(format!("an enqueue task failed: {e}")))?;
        ids.append(&mut i);
        for (k, v) in statuses {
            if k != 202 {
                *side.statuses.entry(k).or_default() += v;
            }
        }
    }
    side.errors += spec.count - ids.len() as u64;
    // Jobs run roughly in order, so polling them in order mostly waits on the first unfinished.
    ids.sort();
    let mut poll = Conn::new(spec.addr);
    for id in &ids {
        let req = get_with_token(&host, &format!("/api/executions/{id}"), &spec.token);
        loop {
            if started.elapsed() > BATCH_LIMIT {
                return Err(BenchError::Target {
                    addr: host,
                    message: format!("job {id} did not finish within {BATCH_LIMIT:?}"),
                });
            }
            let (status, body) = poll.request(&req).await?;
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            match (status, v["status"].as_str()) {
                (200, Some("QUEUED" | "RUNNING")) => tokio::time::sleep(POLL_PAUSE).await,
                (200, Some("COMPLETED")) => {
                    side.done += 1;
                    *side.statuses.entry(200).or_default() += 1;
                    if let Some(ms) = v["duration_ms"].as_u64() {
                        side.latencies_us.push(ms * 1000);
                    }
                    if side.sample.is_none() {
                        side.sample = Some(v["output"].to_string());
                    }
                    break;
                }
                _ => {
                    side.errors += 1;
                    *side.statuses.entry(500).or_default() += 1;
                    if side.sample.is_none() {
                        side.sample = Some(String::from_utf8_lossy(&body).into_owned());
                    }
                    break;
                }
            }
        }
    }
    side.seconds += started.elapsed().as_secs_f64();
    Ok(())
}
