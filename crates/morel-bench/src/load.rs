//! A closed-loop load generator: `conns` keep-alive connections, each sending its next request
//! as soon as the previous response has fully arrived. Every request's latency (from the first
//! byte written to the last byte read) is recorded after the warm-up, so requests/s and the
//! percentiles come from the same requests. Connection setup is never inside a latency.
//!
//! Bounded in time (`warmup + duration`), optionally in count (`max_requests`), and by a stop
//! file that the bash script creates to end a load early (the blue/green redeploy run).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::BenchError;
use crate::http1;
use crate::stats::{median_f64, percentile};

/// How long one request may take before it counts as failed and its connection is dropped.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause after a failed connect, so a dead server does not turn the client into a busy loop.
const RECONNECT_PAUSE: Duration = Duration::from_millis(20);
/// How much of the first response body the result keeps, to show what was answered.
const SAMPLE_BODY_BYTES: usize = 300;

/// What to send, how hard and for how long.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    pub addr: SocketAddr,
    /// Request paths; connection `i` starts at path `i` and goes round them all in order.
    pub paths: Vec<String>,
    pub method: String,
    pub body: Vec<u8>,
    pub conns: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// Stop after this many measured requests (the time bound still applies).
    pub max_requests: Option<u64>,
    /// Stop as soon as this file exists (checked every 20 ms).
    pub stop_file: Option<PathBuf>,
}

/// The outcome of one load run, as written to `<key>.load.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LoadResult {
    pub target: String,
    pub conns: usize,
    /// Requests completed after the warm-up, whatever their status.
    pub requests: u64,
    /// Measured requests that failed: a status outside 2xx, a broken connection, a timeout.
    pub errors: u64,
    /// Connections that could not be opened (after the warm-up).
    pub connect_errors: u64,
    pub seconds: f64,
    /// Successful (2xx) requests per second: over the measured window for one load; for loads
    /// in slices (`alternate`), the median of the slices' rates, so that one slice caught in a
    /// dip of the machine's speed does not move the figure.
    pub rps: f64,
    /// Successful requests per second of each slice, in the order they ran.
    #[serde(default)]
    pub slices_rps: Vec<f64>,
    pub p50_us: Option<u64>,
    pub p90_us: Option<u64>,
    pub p99_us: Option<u64>,
    pub max_us: Option<u64>,
    /// How many responses had each status.
    pub statuses: BTreeMap<u16, u64>,
    /// The start of the first response body seen (warm-up included).
    pub sample_body: Option<String>,
}

#[derive(Default)]
struct ConnStats {
    latencies_us: Vec<u64>,
    errors: u64,
    connect_errors: u64,
    statuses: BTreeMap<u16, u64>,
    sample_body: Option<Vec<u8>>,
}

/// What one load run recorded, before it is summarized (runs of the same target can be merged).
#[derive(Default)]
pub struct Collected {
    latencies_us: Vec<u64>,
    errors: u64,
    connect_errors: u64,
    statuses: BTreeMap<u16, u64>,
    sample_body: Option<Vec<u8>>,
    seconds: f64,
}

/// Runs the load and returns what it measured. Fails only when the target never answered.
pub async fn run(spec: LoadSpec) -> Result<LoadResult, BenchError> {
    let addr = spec.addr;
    let conns = spec.conns;
    let collected = collect(spec).await?;
    summarize(addr, conns, vec![collected])
}

/// Runs the load and keeps every latency.
pub async fn collect(spec: LoadSpec) -> Result<Collected, BenchError> {
    if spec.paths.is_empty() || spec.conns == 0 {
        return Err(BenchError::Usage(
            "need at least one path and one connection".into(),
        ));
    }
    let host = spec.addr.to_string();
    let requests: Arc<Vec<Vec<u8>>> = Arc::new(
        spec.paths
            .iter()
            .map(|p| http1::render_request(&spec.method, &host, p, &spec.body))
            .collect(),
    );
    let start = Instant::now();
    let measure_from = start + spec.warmup;
    let end = measure_from + spec.duration;
    let issued = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));

    let watcher = spec.stop_file.clone().map(|file| {
        let stop = stop.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if file.exists() {
                    stop.store(true, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    });

    let mut tasks = Vec::with_capacity(spec.conns);
    for conn in 0..spec.conns {
        let ctx = Conn {
            addr: spec.addr,
            requests: requests.clone(),
            first: conn,
            measure_from,
            end,
            max_requests: spec.max_requests,
            issued: issued.clone(),
            stop: stop.clone(),
        };
        tasks.push(tokio::spawn(ctx.drive()));
    }
    let mut all = Collected::default();
    for task in tasks {
        let s = task.await.map_err(|e| BenchError::Target {
            addr: host.clone(),
            message: format!("a connection task failed: {e}"),
        })?;
        all.latencies_us.extend(s.latencies_us);
        all.errors += s.errors;
        all.connect_errors += s.connect_errors;
        for (k, v) in s.statuses {
            *all.statuses.entry(k).or_default() += v;
        }
        if all.sample_body.is_none() {
            all.sample_body = s.sample_body;
        }
    }
    let finished = Instant::now();
    stop.store(true, Ordering::Relaxed);
    if let Some(w) = watcher {
        let _ = w.await;
    }
    all.seconds = finished
        .saturating_duration_since(measure_from)
        .as_secs_f64()
        .max(1e-6);
    Ok(all)
}

/// One result from one or more runs against the same target: requests/s over their summed
/// measured time, percentiles over all their latencies.
pub fn summarize(
    addr: SocketAddr,
    conns: usize,
    runs: Vec<Collected>,
) -> Result<LoadResult, BenchError> {
    let host = addr.to_string();
    let mut all = Collected::default();
    let slices_rps: Vec<f64> = runs
        .iter()
        .map(|r| ok_count(&r.statuses) as f64 / r.seconds.max(1e-6))
        .collect();
    for r in runs {
        all.latencies_us.extend(r.latencies_us);
        all.errors += r.errors;
        all.connect_errors += r.connect_errors;
        for (k, v) in r.statuses {
            *all.statuses.entry(k).or_default() += v;
        }
        if all.sample_body.is_none() {
            all.sample_body = r.sample_body;
        }
        all.seconds += r.seconds;
    }
    let seconds = all.seconds.max(1e-6);
    let mut lat = all.latencies_us;
    lat.sort_unstable();
    let requests_done = lat.len() as u64;
    if requests_done == 0 {
        return Err(BenchError::Target {
            addr: host,
            message: format!(
                "no request completed ({} failed, {} connects failed)",
                all.errors, all.connect_errors
            ),
        });
    }
    // One run is its own median: its successful requests over its measured window.
    let rps = median_f64(&slices_rps);
    Ok(LoadResult {
        target: host,
        conns,
        requests: requests_done,
        errors: all.errors,
        connect_errors: all.connect_errors,
        seconds,
        rps,
        slices_rps,
        p50_us: percentile(&lat, 50.0),
        p90_us: percentile(&lat, 90.0),
        p99_us: percentile(&lat, 99.0),
        max_us: lat.last().copied(),
        statuses: all.statuses,
        sample_body: all.sample_body.map(|b| {
            let cut = &b[..b.len().min(SAMPLE_BODY_BYTES)];
            String::from_utf8_lossy(cut).into_owned()
        }),
    })
}

fn ok_count(statuses: &BTreeMap<u16, u64>) -> u64 {
    statuses
        .iter()
        .filter(|(s, _)| (200..300).contains(*s))
        .map(|(_, n)| n)
        .sum()
}

/// Loads two targets in alternating slices (A, B, A, B, …), so that whatever else the machine
/// is doing weighs on both alike. The first slice of each gets `first_warmup`, later ones
/// `warmup` (connections are reopened each slice; connecting is never timed).
pub async fn alternate(
    a: LoadSpec,
    b: LoadSpec,
    rounds: usize,
    first_warmup: Duration,
) -> Result<(LoadResult, LoadResult), BenchError> {
    let (mut ra, mut rb) = (Vec::new(), Vec::new());
    for round in 0..rounds.max(1) {
        for (spec, out) in [(&a, &mut ra), (&b, &mut rb)] {
            let mut s = spec.clone();
            if round == 0 {
                s.warmup = first_warmup;
            }
            out.push(collect(s).await?);
        }
    }
    Ok((
        summarize(a.addr, a.conns, ra)?,
        summarize(b.addr, b.conns, rb)?,
    ))
}

struct Conn {
    addr: SocketAddr,
    requests: Arc<Vec<Vec<u8>>>,
    first: usize,
    measure_from: Instant,
    end: Instant,
    max_requests: Option<u64>,
    issued: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Conn {
    async fn drive(self) -> ConnStats {
        let mut stats = ConnStats::default();
        let mut stream: Option<TcpStream> = None;
        let mut buf: Vec<u8> = Vec::with_capacity(16 << 10);
        let mut next = self.first;
        loop {
            let now = Instant::now();
            if now >= self.end || self.stop.load(Ordering::Relaxed) {
                break;
            }
            let measuring = now >= self.measure_from;
            let conn = match stream.as_mut() {
                Some(s) => s,
                None => match TcpStream::connect(self.addr).await {
                    Ok(s) => {
                        let _ = s.set_nodelay(true);
                        stream.insert(s)
                    }
                    Err(_) => {
                        if measuring {
                            stats.connect_errors += 1;
                        }
                        tokio::time::sleep(RECONNECT_PAUSE).await;
                        continue;
                    }
                },
            };
            if measuring
                && let Some(max) = self.max_requests
                && self.issued.fetch_add(1, Ordering::Relaxed) >= max
            {
                break;
            }
            let request = &self.requests[next % self.requests.len()];
            next += 1;
            let t0 = Instant::now();
            let want_body = stats.sample_body.is_none();
            let outcome = tokio::time::timeout(
                REQUEST_TIMEOUT,
                exchange(conn, request, &mut buf, want_body),
            )
            .await;
            let us = t0.elapsed().as_micros() as u64;
            match outcome {
                Ok(Ok(done)) => {
                    if measuring {
                        stats.latencies_us.push(us);
                        *stats.statuses.entry(done.status).or_default() += 1;
                        if !(200..300).contains(&done.status) {
                            stats.errors += 1;
                        }
                    }
                    if want_body {
                        stats.sample_body = Some(done.body);
                    }
                    if done.close {
                        stream = None;
                    }
                }
                Ok(Err(_)) | Err(_) => {
                    if measuring {
                        stats.errors += 1;
                    }
                    stream = None;
                }
            }
        }
        stats
    }
}

struct Exchanged {
    status: u16,
    close: bool,
    /// The start of the body, copied only when asked for (a connection's first response), so
    /// the hot loop makes no copies.
    body: Vec<u8>,
}

/// Writes one request and reads its whole response.
async fn exchange(
    stream: &mut TcpStream,
    request: &[u8],
    buf: &mut Vec<u8>,
    want_body: bool,
) -> std::io::Result<Exchanged> {
    stream.write_all(request).await?;
    buf.clear();
    let bad = |e: http1::Malformed| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
    let mut head = None;
    let mut eof = false;
    loop {
        if head.is_none() {
            head = http1::parse_head(buf).map_err(bad)?;
        }
        if let Some(h) = &head
            && let Some(done) = http1::complete(buf, h, eof).map_err(bad)?
        {
            let body = match &done.body {
                _ if !want_body => Vec::new(),
                Some(range) => {
                    buf[range.start..range.end.min(range.start + SAMPLE_BODY_BYTES)].to_vec()
                }
                None => http1::dechunk(buf, h),
            };
            return Ok(Exchanged {
                status: done.status,
                close: done.close || eof,
                body,
            });
        }
        if eof {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed mid-response",
            ));
        }
        buf.reserve(8 << 10);
        if stream.read_buf(buf).await? == 0 {
            eof = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(ok: u64, seconds: f64) -> Collected {
        Collected {
            latencies_us: vec![100; ok as usize],
            statuses: [(200, ok)].into_iter().collect(),
            seconds,
            ..Collected::default()
        }
    }

    #[test]
    fn slices_count_by_their_median_rate() {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        // 1000/s, 1000/s and a 100/s dip: the median ignores the dip, the total would not.
        let r = summarize(
            addr,
            1,
            vec![slice(1000, 1.0), slice(100, 1.0), slice(2000, 2.0)],
        )
        .expect("summary");
        assert_eq!(r.slices_rps, [1000.0, 100.0, 1000.0]);
        assert_eq!(r.rps, 1000.0);
        assert_eq!(r.requests, 3100);
        assert_eq!(r.seconds, 4.0);
        // An even count takes the mean of the middle two; one load is its own window.
        let r = summarize(addr, 1, vec![slice(100, 1.0), slice(300, 1.0)]).expect("summary");
        assert_eq!(r.rps, 200.0);
        let r = summarize(addr, 1, vec![slice(500, 2.0)]).expect("summary");
        assert_eq!(r.rps, 250.0);
        assert_eq!(r.slices_rps, [250.0]);
    }
}
