//! Morel's Prometheus metrics and the in-memory record of recent calls.
//!
//! One process-wide [`Metrics`] (see [`global`]), like the tracing subscriber: the gateway,
//! the agent and the control plane each report into it without threading a handle through
//! every constructor, and `GET /metrics` encodes it.
//!
//! The call path pays almost nothing. A function's counters, latency histogram and recent-call
//! ring ([`FnStats`]) are resolved once, when its route is installed, and held next to the
//! route entry; a call then takes one uncontended lock and, under it, adds to two counters and
//! the latency sum and writes one ring slot: no map lookup, no label formatting, no allocation
//! on success and no database write (DESIGN §8). The call series are encoded from those
//! counters at scrape time.
//!
//! Gauges that describe state kept elsewhere (instances by state, queue depths) are not
//! tracked here as they change: the scrape handler reads them from the store and sets them
//! just before encoding, via [`Metrics::set_instances`] and [`Metrics::set_queue`].
//!
//! This crate does no I/O and knows nothing of HTTP.

mod recent;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

pub use recent::{RECENT_CALLS, RecentCall};

/// The content type of [`Metrics::encode`]'s output (OpenMetrics text, which Prometheus
/// scrapes natively).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The HTTP statuses a call can end with; each gets a counter resolved up front.
const CALL_STATUSES: [u16; 8] = [200, 400, 404, 413, 500, 502, 503, 504];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FnLabels {
    namespace: String,
    app: String,
    function: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    namespace: String,
    app: String,
    function: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResourceLabels {
    namespace: String,
    app: String,
    resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InstanceLabels {
    namespace: String,
    app: String,
    resource: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

type HistFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Call latency buckets: upper bounds of 100 µs × 2^i for i below this (100 µs to about 26 s),
/// then one for everything slower.
const LATENCY_BOUNDS: usize = 19;
/// The first latency bucket's upper bound, in ns.
const FIRST_BOUND_NS: u64 = 100_000;

/// Instance starts and deploys: 10 ms to about 80 min.
fn slow_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 19))
}

/// How a deploy (release rollout) or a compile job ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Failed,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
        }
    }
}

/// Every metric Morel exports.
pub struct Metrics {
    registry: Registry,
    /// Every function ever routed, encoded by [`CallSeries`]'s collector; kept after its app is
    /// deleted, because Prometheus counters only go up.
    series: Arc<Mutex<HashMap<FnLabels, Arc<FnStats>>>>,
    unrouted_calls: Counter,
    connections_moved: Counter,
    instance_starts: Family<ResourceLabels, Counter>,
    instance_start_seconds: HistFamily<ResourceLabels>,
    instances: Family<InstanceLabels, Gauge>,
    queue_depth: Family<QueueLabels, Gauge>,
    queue_oldest_age: Family<QueueLabels, Gauge>,
    compile_jobs: Family<OutcomeLabels, Counter>,
    deploy_seconds: HistFamily<OutcomeLabels>,
    log_lines_dropped: Gauge,
    /// The functions of apps that exist: the same handles as in `series`, so a redeploy keeps
    /// counting into the same series and the same recent-call ring. Written when routes are
    /// installed, read by the executions API.
    functions: Mutex<HashMap<FnLabels, Arc<FnStats>>>,
    /// Held by a scrape while it replaces the store-backed gauges and encodes, so two
    /// concurrent scrapes never see each other's half-cleared gauges.
    scrape: Mutex<()>,
}

/// The process-wide metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("morel");
        let series = Arc::new(Mutex::new(HashMap::new()));
        registry.register_collector(Box::new(CallSeries(series.clone())));
        let unrouted_calls = Counter::default();
        registry.register(
            "unrouted_calls",
            "Calls to an app, version or function that is not deployed (404 before any function runs)",
            unrouted_calls.clone(),
        );
        let connections_moved = Counter::default();
        registry.register(
            "connections_moved",
            "Keep-alive connections moved to the serving thread that reads their worker's replies",
            connections_moved.clone(),
        );
        let instance_starts = Family::<ResourceLabels, Counter>::default();
        registry.register(
            "instance_starts",
            "Worker processes started and ready (cold starts), first starts and restarts alike",
            instance_starts.clone(),
        );
        let instance_start_seconds: HistFamily<ResourceLabels> =
            Family::new_with_constructor(slow_histogram);
        registry.register_with_unit(
            "instance_start_duration",
            "Time from spawning a worker to its being ready (cold start latency)",
            Unit::Seconds,
            instance_start_seconds.clone(),
        );
        let instances = Family::<InstanceLabels, Gauge>::default();
        registry.register(
            "instances",
            "Instances by state, as recorded in the store at scrape time",
            instances.clone(),
        );
        let queue_depth = Family::<QueueLabels, Gauge>::default();
        registry.register(
            "queue_depth",
            "Messages waiting or in flight on each durable queue",
            queue_depth.clone(),
        );
        let queue_oldest_age = Family::<QueueLabels, Gauge>::default();
        registry.register_with_unit(
            "queue_oldest_message_age",
            "Age of the oldest message on each durable queue (0 when empty)",
            Unit::Seconds,
            queue_oldest_age.clone(),
        );
        let compile_jobs = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "compile_jobs",
            "Compile results applied to compiled functions, by outcome",
            compile_jobs.clone(),
        );
        let deploy_seconds: HistFamily<OutcomeLabels> =
            Family::new_with_constructor(slow_histogram);
        registry.register_with_unit(
            "deploy_duration",
            "Time to roll out a release (install, start, switch routes), by outcome",
            Unit::Seconds,
            deploy_seconds.clone(),
        );
        let log_lines_dropped = Gauge::default();
        registry.register(
            "log_lines_dropped",
            "Worker log lines dropped because the log queue was full, since start",
            log_lines_dropped.clone(),
        );
        Metrics {
            registry,
            series,
            unrouted_calls,
            connections_moved,
            instance_starts,
            instance_start_seconds,
            instances,
            queue_depth,
            queue_oldest_age,
            compile_jobs,
            deploy_seconds,
            log_lines_dropped,
            functions: Mutex::new(HashMap::new()),
            scrape: Mutex::new(()),
        }
    }

    /// The handle a function's route holds. The same function of the same app gets the same
    /// handle on every release, so its counters and recent calls carry over a redeploy.
    pub fn function(&self, namespace: &str, app: &str, function: &str) -> Arc<FnStats> {
        let key = FnLabels {
            namespace: namespace.to_owned(),
            app: app.to_owned(),
            function: function.to_owned(),
        };
        let mut fns = self.functions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(stats) = fns.get(&key) {
            return stats.clone();
        }
        let stats = self
            .series
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.clone())
            .or_insert_with(|| Arc::new(FnStats::new(RECENT_CALLS)))
            .clone();
        fns.insert(key, stats.clone());
        stats
    }

    /// The handle of a function that has been routed at least once, without creating one.
    pub fn existing_function(
        &self,
        namespace: &str,
        app: &str,
        function: &str,
    ) -> Option<Arc<FnStats>> {
        let key = FnLabels {
            namespace: namespace.to_owned(),
            app: app.to_owned(),
            function: function.to_owned(),
        };
        let fns = self.functions.lock().unwrap_or_else(|e| e.into_inner());
        fns.get(&key).cloned()
    }

    /// Drops the recent calls of a deleted app's functions, so a new app of the same name
    /// starts with an empty history. Its counters stay: Prometheus counters only go up.
    pub fn forget_app(&self, namespace: &str, app: &str) {
        let mut fns = self.functions.lock().unwrap_or_else(|e| e.into_inner());
        fns.retain(|k, stats| {
            let keep = !(k.namespace == namespace && k.app == app);
            if !keep {
                stats.lock().recent.clear();
            }
            keep
        });
    }

    /// A call that found no function to run (unknown app, version or function).
    pub fn unrouted_call(&self) {
        self.unrouted_calls.inc();
    }

    /// A connection moved to another serving thread (the lane's `Move`).
    pub fn connection_moved(&self) {
        self.connections_moved.inc();
    }

    /// A worker of `resource` became ready `took` after it was spawned.
    pub fn instance_started(&self, namespace: &str, app: &str, resource: &str, took: Duration) {
        let labels = ResourceLabels {
            namespace: namespace.to_owned(),
            app: app.to_owned(),
            resource: resource.to_owned(),
        };
        self.instance_starts.get_or_create(&labels).inc();
        self.instance_start_seconds
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// A compile result was applied.
    pub fn compile_job(&self, outcome: Outcome) {
        self.compile_jobs
            .get_or_create(&OutcomeLabels {
                outcome: outcome.label(),
            })
            .inc();
    }

    /// A release rollout finished.
    pub fn deploy_finished(&self, outcome: Outcome, took: Duration) {
        self.deploy_seconds
            .get_or_create(&OutcomeLabels {
                outcome: outcome.label(),
            })
            .observe(took.as_secs_f64());
    }

    /// Taken by a scrape around setting the store-backed gauges and [`Metrics::encode`].
    pub fn scrape_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.scrape.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the instance gauges with counts of `(namespace, app, resource, state)`.
    pub fn set_instances<'a>(&self, instances: impl IntoIterator<Item = InstanceCount<'a>>) {
        let mut counts: HashMap<InstanceLabels, i64> = HashMap::new();
        for i in instances {
            *counts
                .entry(InstanceLabels {
                    namespace: i.namespace.to_owned(),
                    app: i.app.to_owned(),
                    resource: i.resource.to_owned(),
                    state: i.state.to_owned(),
                })
                .or_default() += 1;
        }
        // Clear first so a state no instance is in any more reads as absent, not stale.
        self.instances.clear();
        for (labels, n) in counts {
            self.instances.get_or_create(&labels).set(n);
        }
    }

    /// Sets a queue's depth and the age of its oldest message.
    pub fn set_queue(&self, queue: &str, depth: i64, oldest_age: Duration) {
        let labels = QueueLabels {
            queue: queue.to_owned(),
        };
        self.queue_depth.get_or_create(&labels).set(depth);
        self.queue_oldest_age
            .get_or_create(&labels)
            .set(oldest_age.as_secs() as i64);
    }

    pub fn set_log_lines_dropped(&self, n: u64) {
        self.log_lines_dropped
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Everything, in OpenMetrics text ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// One instance as the scrape handler counts it.
pub struct InstanceCount<'a> {
    pub namespace: &'a str,
    pub app: &'a str,
    pub resource: &'a str,
    pub state: &'a str,
}

/// One function's call counts by status, latency histogram and recent calls, resolved once
/// and held by its route.
///
/// Everything sits behind one lock, laid out so that a successful call touches three cache
/// lines: the first (the lock, the latency sum, the ring's cursor and the count of 200s), one
/// latency bucket and one ring slot. With a thousand functions called in turn each of those is
/// a cache miss; separate atomics and a ring with its own lock cost twice as many
/// (bench/NOTES.md, tenth session). The lock is held for a few adds and one slot write.
#[repr(align(64))]
pub struct FnStats {
    record: Mutex<Record>,
}

/// In this order (`repr(C)`), after the lock's word: see [`FnStats`].
#[repr(C)]
struct Record {
    /// Sum of all latencies, in ns.
    sum_ns: u64,
    recent: recent::Ring,
    /// Calls that ended with each status of [`CALL_STATUSES`], in that order.
    by_status: [u64; CALL_STATUSES.len()],
    /// Calls per latency bucket (not cumulative): [`LATENCY_BOUNDS`] bounded ones, then +Inf.
    buckets: [u64; LATENCY_BOUNDS + 1],
    /// Calls that ended with any other status (the gateway produces none today).
    other_statuses: BTreeMap<u16, u64>,
}

impl FnStats {
    fn new(recent_calls: usize) -> Self {
        FnStats {
            record: Mutex::new(Record {
                sum_ns: 0,
                recent: recent::Ring::new(recent_calls),
                by_status: [0; CALL_STATUSES.len()],
                buckets: [0; LATENCY_BOUNDS + 1],
                other_statuses: BTreeMap::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records one finished call: its HTTP status, how long it took, and for a failure what
    /// went wrong (kept in the recent-call ring, truncated).
    pub fn record(&self, status: u16, took: Duration, error: Option<&str>) {
        let entry = recent::Ring::entry(status, took, error);
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let bucket = latency_bucket(ns);
        let mut r = self.lock();
        match CALL_STATUSES.iter().position(|s| *s == status) {
            Some(i) => r.by_status[i] += 1,
            None => *r.other_statuses.entry(status).or_default() += 1,
        }
        r.buckets[bucket] += 1;
        r.sum_ns = r.sum_ns.saturating_add(ns);
        r.recent.push(entry);
    }

    /// The most recent calls, newest first.
    pub fn recent(&self) -> Vec<RecentCall> {
        self.lock().recent.snapshot()
    }
}

/// The bucket of a latency of `ns`: the first `i` with `ns ≤ 100 µs × 2^i`, or the +Inf bucket.
fn latency_bucket(ns: u64) -> usize {
    // The smallest power of two at least ns / 100 µs (rounded up) is 2^i.
    let hundreds_of_us = ns.div_ceil(FIRST_BOUND_NS);
    let i = match hundreds_of_us {
        0 | 1 => 0,
        n => (u64::BITS - (n - 1).leading_zeros()) as usize,
    };
    i.min(LATENCY_BOUNDS)
}

/// Encodes `morel_calls_total` and `morel_call_duration_seconds` from every function's
/// [`FnStats`] at scrape time.
struct CallSeries(Arc<Mutex<HashMap<FnLabels, Arc<FnStats>>>>);

impl std::fmt::Debug for CallSeries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallSeries")
    }
}

/// What a scrape copies out of one function's record, so it holds each lock only briefly.
struct Counts {
    statuses: Vec<(u16, u64)>,
    buckets: [u64; LATENCY_BOUNDS + 1],
    sum_ns: u64,
}

impl Collector for CallSeries {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let series: Vec<(FnLabels, Counts)> = {
            let all: Vec<(FnLabels, Arc<FnStats>)> = {
                let all = self.0.lock().unwrap_or_else(|e| e.into_inner());
                all.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
            };
            all.into_iter()
                .map(|(k, stats)| {
                    let r = stats.lock();
                    let known = CALL_STATUSES.iter().copied().zip(r.by_status);
                    let other = r.other_statuses.iter().map(|(s, n)| (*s, *n));
                    let counts = Counts {
                        statuses: known.chain(other).collect(),
                        buckets: r.buckets,
                        sum_ns: r.sum_ns,
                    };
                    (k, counts)
                })
                .collect()
        };
        let mut calls = encoder.encode_descriptor(
            "calls",
            "Function calls through the gateway, by the HTTP status they ended with",
            None,
            MetricType::Counter,
        )?;
        for (labels, s) in &series {
            for &(status, n) in &s.statuses {
                let labels = CallLabels {
                    status,
                    ..labels.for_call()
                };
                ConstCounter::new(n).encode(calls.encode_family(&labels)?)?;
            }
        }
        let mut latency = encoder.encode_descriptor(
            "call_duration",
            "Time from the request body being read to the function's result, per function",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for (labels, s) in &series {
            let buckets: Vec<(f64, u64)> = s
                .buckets
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    let bound = match i {
                        LATENCY_BOUNDS => f64::INFINITY,
                        i => (FIRST_BOUND_NS << i) as f64 / 1e9,
                    };
                    (bound, *n)
                })
                .collect();
            let count = buckets.iter().map(|(_, n)| n).sum();
            let sum = s.sum_ns as f64 / 1e9;
            latency
                .encode_family(labels)?
                .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
        }
        Ok(())
    }
}

impl FnLabels {
    fn for_call(&self) -> CallLabels {
        CallLabels {
            namespace: self.namespace.clone(),
            app: self.app.clone(),
            function: self.function.clone(),
            status: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(text: &str, prefix: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn calls_are_counted_per_status_and_survive_a_new_handle() {
        let m = Metrics::new();
        let f = m.function("default", "shop", "buy");
        f.record(200, Duration::from_millis(2), None);
        f.record(200, Duration::from_millis(3), None);
        f.record(500, Duration::from_millis(1), Some("ValueError: no"));
        // A redeploy resolves the handle again: same series, same ring.
        let again = m.function("default", "shop", "buy");
        again.record(418, Duration::from_millis(1), Some("odd"));
        let text = m.encode();
        let base = r#"morel_calls_total{namespace="default",app="shop",function="buy",status="#;
        assert_eq!(
            sample(&text, &format!("{base}\"200\"}}")),
            Some(2.0),
            "{text}"
        );
        assert_eq!(sample(&text, &format!("{base}\"500\"}}")), Some(1.0));
        assert_eq!(sample(&text, &format!("{base}\"418\"}}")), Some(1.0));
        assert_eq!(sample(&text, &format!("{base}\"504\"}}")), Some(0.0));
        assert_eq!(
            sample(
                &text,
                r#"morel_call_duration_seconds_count{namespace="default",app="shop",function="buy"}"#
            ),
            Some(4.0)
        );
        let recent = again.recent();
        assert_eq!(recent.len(), 3 + 1);
        assert_eq!(recent[0].status, 418);
        assert_eq!(recent[1].error.as_deref(), Some("ValueError: no"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn latencies_fall_in_the_first_bucket_whose_bound_they_do_not_exceed() {
        let us = |n: u64| latency_bucket(n * 1000);
        assert_eq!(latency_bucket(0), 0);
        assert_eq!(us(100), 0);
        assert_eq!(latency_bucket(100_001), 1);
        assert_eq!(us(200), 1);
        assert_eq!(us(201), 2);
        assert_eq!(us(400), 2);
        assert_eq!(us(100 << 18), 18);
        assert_eq!(us((100 << 18) + 1), LATENCY_BOUNDS);
        assert_eq!(latency_bucket(u64::MAX), LATENCY_BOUNDS);
    }

    #[test]
    fn the_latency_histogram_is_cumulative_with_bounds_in_seconds() {
        let m = Metrics::new();
        let f = m.function("default", "shop", "buy");
        for ms in [0.05, 0.3, 0.3, 30_000.0] {
            f.record(200, Duration::from_secs_f64(ms / 1000.0), None);
        }
        let text = m.encode();
        let bucket = |le: &str| {
            sample(
                &text,
                &format!(
                    r#"morel_call_duration_seconds_bucket{{le="{le}",namespace="default",app="shop",function="buy"}}"#
                ),
            )
        };
        assert_eq!(bucket("0.0001"), Some(1.0), "{text}");
        assert_eq!(bucket("0.0002"), Some(1.0));
        assert_eq!(bucket("0.0004"), Some(3.0));
        assert_eq!(bucket("26.2144"), Some(3.0));
        assert_eq!(bucket("+Inf"), Some(4.0));
        let sum = sample(
            &text,
            r#"morel_call_duration_seconds_sum{namespace="default",app="shop",function="buy"}"#,
        )
        .unwrap_or_default();
        assert!((sum - 30.00065).abs() < 1e-9, "{sum}");
    }

    #[test]
    fn a_deleted_app_forgets_its_recent_calls_but_keeps_counting() {
        let m = Metrics::new();
        m.function("default", "a", "f")
            .record(200, Duration::from_millis(1), None);
        m.function("default", "b", "f")
            .record(200, Duration::from_millis(1), None);
        m.forget_app("default", "a");
        assert!(m.existing_function("default", "a", "f").is_none());
        assert_eq!(
            m.existing_function("default", "b", "f")
                .map(|f| f.recent().len()),
            Some(1)
        );
        let again = m.function("default", "a", "f");
        assert!(again.recent().is_empty());
        again.record(200, Duration::from_millis(1), None);
        let text = m.encode();
        assert_eq!(
            sample(
                &text,
                r#"morel_calls_total{namespace="default",app="a",function="f",status="200"}"#
            ),
            Some(2.0)
        );
    }

    #[test]
    fn instance_gauges_are_replaced_not_accumulated() {
        let m = Metrics::new();
        let inst = |state| InstanceCount {
            namespace: "default",
            app: "a",
            resource: "r",
            state,
        };
        m.set_instances([inst("ready"), inst("ready"), inst("launching")]);
        m.set_instances([inst("ready")]);
        let text = m.encode();
        let base = r#"morel_instances{namespace="default",app="a",resource="r",state="#;
        assert_eq!(sample(&text, &format!("{base}\"ready\"}}")), Some(1.0));
        assert_eq!(sample(&text, &format!("{base}\"launching\"}}")), None);
    }
}
