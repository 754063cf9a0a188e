//! The log hub: instance output and platform events go through one bounded channel to a
//! task that writes them to the store in batches and prunes old lines. Producers never wait:
//! when the channel is full a line is dropped and counted, so a chatty worker cannot slow
//! calls down.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use morel_store::{AppKey, LogStream, NewLogLine, Store};
use tokio::sync::mpsc;

/// Lines kept per app, and their maximum age.
pub const KEEP_LINES: i64 = 10_000;
pub const KEEP_AGE_MS: i64 = 7 * 24 * 3600 * 1000;

#[derive(Clone)]
pub struct LogHub {
    tx: mpsc::Sender<NewLogLine>,
    dropped: Arc<AtomicU64>,
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
        }
    }

    pub fn push(&self, app: &AppKey, stream: LogStream, source: &str, line: String) {
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

    /// A platform event (deploy step, instance state change) in the app's log.
    pub fn event(&self, app: &AppKey, line: impl Into<String>) {
        self.push(app, LogStream::Event, "platform", line.into());
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}
