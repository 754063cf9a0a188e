//! The log hub: instance output and platform events go through one bounded channel to a
//! task that writes them to the store in batches and prunes old lines. Producers never wait:
//! when the channel is full a line is dropped and counted, so a chatty worker cannot slow
//! calls down. Each app's output is also held to a rate ([`LogRate`]): past it, lines are
//! dropped and counted, and the app's log says so (platform events are never dropped).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use morel_store::{AppKey, LogStream, NewLogLine, Store};
use tokio::sync::mpsc;

/// Lines kept per app, and their maximum age.
pub const KEEP_LINES: i64 = 10_000;
pub const KEEP_AGE_MS: i64 = 7 * 24 * 3600 * 1000;

/// How many lines of output an app may write: `per_second` on average, `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LogRate {
    pub per_second: f64,
    pub burst: f64,
}

impl LogRate {
    /// `MOREL_LOG_RATE` lines per second (default 1000), with bursts of five seconds' worth.
    pub fn from_env() -> LogRate {
        let per_second = std::env::var(morel_core::env_vars::MOREL_LOG_RATE)
            .ok()
            .and_then(|v| v.trim().parse::<u32>().ok())
            .filter(|n| *n > 0)
            .unwrap_or(1000);
        LogRate::new(per_second)
    }

    pub fn new(per_second: u32) -> LogRate {
        LogRate {
            per_second: f64::from(per_second),
            burst: f64::from(per_second) * 5.0,
        }
    }
}

/// One app's allowance of output lines (a token bucket), and what it dropped since it last
/// said so.
struct Allowance {
    lines: f64,
    at: Instant,
    dropped: u64,
}

/// What the rate limit makes of one line.
#[derive(Debug, PartialEq)]
enum Verdict {
    Pass,
    /// Passes; before it, the log says this many lines were dropped.
    PassAfterDropping(u64),
    /// Dropped: the first of a run of dropped lines (the log says so once).
    DropFirst,
    Drop,
}

impl Allowance {
    fn new(rate: &LogRate, now: Instant) -> Allowance {
        Allowance {
            lines: rate.burst,
            at: now,
            dropped: 0,
        }
    }

    fn take(&mut self, rate: &LogRate, now: Instant) -> Verdict {
        let earned = now.duration_since(self.at).as_secs_f64() * rate.per_second;
        self.lines = (self.lines + earned).min(rate.burst);
        self.at = now;
        if self.lines >= 1.0 {
            self.lines -= 1.0;
            match std::mem::take(&mut self.dropped) {
                0 => Verdict::Pass,
                n => Verdict::PassAfterDropping(n),
            }
        } else {
            self.dropped += 1;
            if self.dropped == 1 {
                Verdict::DropFirst
            } else {
                Verdict::Drop
            }
        }
    }
}

#[derive(Clone)]
pub struct LogHub {
    tx: mpsc::Sender<NewLogLine>,
    dropped: Arc<AtomicU64>,
    rate: LogRate,
    allowances: Arc<Mutex<HashMap<AppKey, Allowance>>>,
}

impl LogHub {
    pub fn start(store: Arc<dyn Store>) -> Self {
        let (tx, mut rx) = mpsc::channel::<NewLogLine>(16_384);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(512);
            let mut writes_per_app: HashMap<AppKey, u32> = HashMap::new();
            loop {
                let Some(first) = rx.recv().await else { break };
                batch.push(first);
                // Gather what else arrives within a short window, up to a batch.
                let deadline = tokio::time::Instant::now() + Duration::from_millis(50);
                while batch.len() < 512 {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(l)) => batch.push(l),
                        _ => break,
                    }
                }
                if let Err(e) = store.append_logs(&batch).await {
                    tracing::warn!(error = %format!("{e:#}"), lines = batch.len(), "dropping log lines");
                }
                for l in batch.drain(..) {
                    *writes_per_app.entry(l.app).or_default() += 1;
                }
                for (app, n) in writes_per_app.iter_mut() {
                    if *n >= 1000 {
                        *n = 0;
                        let min_ts = morel_core::time::now_ms() - KEEP_AGE_MS;
                        let _ = store.prune_logs(app, KEEP_LINES, min_ts).await;
                    }
                }
            }
        });
        LogHub {
            tx,
            dropped: Arc::default(),
            rate: LogRate::from_env(),
            allowances: Arc::default(),
        }
    }

    /// A line of an app's output (held to the app's [`LogRate`]).
    pub fn push(&self, app: &AppKey, stream: LogStream, source: &str, line: String) {
        if stream != LogStream::Event {
            let verdict = {
                let now = Instant::now();
                let mut allowances = self.allowances.lock().unwrap_or_else(|e| e.into_inner());
                allowances
                    .entry(app.clone())
                    .or_insert_with(|| Allowance::new(&self.rate, now))
                    .take(&self.rate, now)
            };
            match verdict {
                Verdict::Pass => {}
                Verdict::PassAfterDropping(n) => self.event(
                    app,
                    format!("{n} lines of output were dropped (over the log rate limit)"),
                ),
                Verdict::DropFirst => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    self.event(
                        app,
                        format!(
                            "output is over the log rate limit of {} lines/s: dropping lines \
                             (MOREL_LOG_RATE)",
                            self.rate.per_second
                        ),
                    );
                    return;
                }
                Verdict::Drop => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
        self.send(app, stream, source, line);
    }

    fn send(&self, app: &AppKey, stream: LogStream, source: &str, line: String) {
        let l = NewLogLine {
            app: app.clone(),
            ts: morel_core::time::now_ms(),
            stream,
            source: source.to_owned(),
            line,
        };
        if self.tx.try_send(l).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Lines another machine's agent read and held to its own rate limit (shipped to a
    /// server): written as they are, in the same batches.
    pub fn append_shipped(&self, lines: Vec<NewLogLine>) {
        for l in lines {
            if self.tx.try_send(l).is_err() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A platform event (deploy step, instance state change) in the app's log.
    pub fn event(&self, app: &AppKey, line: impl Into<String>) {
        self.send(app, LogStream::Event, "platform", line.into());
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_past_the_rate_is_dropped_counted_and_said_once() {
        let rate = LogRate::new(10);
        let t0 = Instant::now();
        let mut a = Allowance::new(&rate, t0);
        // A burst of five seconds' worth passes at once.
        for _ in 0..50 {
            assert_eq!(a.take(&rate, t0), Verdict::Pass);
        }
        assert_eq!(a.take(&rate, t0), Verdict::DropFirst);
        for _ in 0..9 {
            assert_eq!(a.take(&rate, t0), Verdict::Drop);
        }
        // A tenth of a second later one line's worth is earned: it passes, with the count.
        let later = t0 + Duration::from_millis(100);
        assert_eq!(a.take(&rate, later), Verdict::PassAfterDropping(10));
        assert_eq!(a.take(&rate, later), Verdict::DropFirst);
        // Quiet for long: the allowance refills to the burst, no more.
        let much_later = later + Duration::from_secs(60);
        assert_eq!(a.take(&rate, much_later), Verdict::PassAfterDropping(1));
        for _ in 1..50 {
            assert_eq!(a.take(&rate, much_later), Verdict::Pass);
        }
        assert_eq!(a.take(&rate, much_later), Verdict::DropFirst);
    }
}
