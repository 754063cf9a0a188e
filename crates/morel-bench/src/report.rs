//! The report: the rows the issue asks for, each computed from raw measurements of one run, and
//! written as `latest.json` (a list of rows) and `latest.md` (a table).
//!
//! Raw measurements are files in one directory, written by `bench/run` and the `load`/`spawn`
//! subcommands: `KEY.load.json` (a [`LoadResult`]), `KEY.samples` (one µs figure per line),
//! `KEY.value` (one number) and `KEY.skip` (why a step did not run); `ROW_ID.note` is text added
//! to that row's note (what was measured, when `bench/run` knows more than the figures say).
//! `meta.json` describes the run.
//! A row whose measurement is missing is still written, with null values and a note saying why.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::BenchError;
use crate::load::LoadResult;
use crate::stats::median;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GoalOp {
    AtLeast,
    AtMost,
}

impl GoalOp {
    fn symbol(self) -> &'static str {
        match self {
            GoalOp::AtLeast => ">=",
            GoalOp::AtMost => "<=",
        }
    }
    fn met(self, value: f64, goal: f64) -> bool {
        match self {
            GoalOp::AtLeast => value >= goal,
            GoalOp::AtMost => value <= goal,
        }
    }
}

/// What the goal is compared with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GoalOn {
    /// `morel_value / reference_value`.
    Ratio,
    /// `morel_value` itself (an absolute bound such as KiB per function or failed requests).
    Value,
}

/// How a row's figures come from raw measurements (arguments are raw keys).
#[derive(Clone, Copy, Debug)]
pub enum Measure {
    /// Successful requests/s of two loads; ratio = Morel / reference.
    Throughput {
        morel: &'static str,
        reference: &'static str,
    },
    /// Median of cold first-call latencies over the warm p50 at one connection.
    ColdOverWarm {
        cold: &'static str,
        warm: &'static str,
    },
    /// Median durations (samples in µs, reported in ms); ratio = Morel / reference.
    Durations {
        morel: &'static str,
        reference: &'static str,
    },
    /// p50 through Morel minus p50 direct, in µs (loads at one connection).
    AddedP50 {
        morel: &'static str,
        reference: &'static str,
    },
    /// Failed requests of one load.
    Failures { load: &'static str },
    /// Resident memory: `(many − one) / (count − 1)` KiB per extra function.
    MemoryPerFunction {
        one: &'static str,
        many: &'static str,
        count: &'static str,
    },
}

/// One row of the report, as the issue lists them.
#[derive(Clone, Copy, Debug)]
pub struct RowDef {
    pub id: &'static str,
    pub path: &'static str,
    pub reference: &'static str,
    pub unit: &'static str,
    pub goal_op: GoalOp,
    pub goal: f64,
    pub goal_on: GoalOn,
    pub measure: Measure,
    /// Why Morel's side cannot be measured yet: the feature does not exist.
    pub pending: Option<&'static str>,
    /// Why the reference cannot be measured yet.
    pub reference_pending: Option<&'static str>,
}

/// Every row, in the order.
pub const ROWS: &[RowDef] = &[
    RowDef {
        id: "wasm_core",
        path: "wasm function call through the gateway, core ABI",
        reference: "minimal hyper server answering the same body",
        unit: "req/s",
        goal_op: GoalOp::AtLeast,
        goal: 0.40,
        goal_on: GoalOn::Ratio,
        measure: Measure::Throughput {
            morel: "wasm_core",
            reference: "ref_hyper_core",
        },
        pending: None,
        reference_pending: None,
    },
    RowDef {
        id: "wasm_wasi",
        path: "wasm function call, WASI command ABI (C)",
        reference: "minimal hyper server answering the same body",
        unit: "req/s",
        goal_op: GoalOp::AtLeast,
        goal: 0.20,
        goal_on: GoalOn::Ratio,
        measure: Measure::Throughput {
            morel: "wasm_wasi",
            reference: "ref_hyper_wasi",
        },
        pending: None,
        reference_pending: None,
    },
    RowDef {
        id: "node",
        path: "Node function call through the gateway",
        reference: "bare Node http server calling the same function",
        unit: "req/s",
        goal_op: GoalOp::AtLeast,
        goal: 1.5,
        goal_on: GoalOn::Ratio,
        measure: Measure::Throughput {
            morel: "node",
            reference: "ref_node",
        },
        pending: None,
        reference_pending: None,
    },
    RowDef {
        id: "python",
        path: "Python function call through the gateway",
        reference: "uvicorn (uvloop, httptools) + bare ASGI app calling the same function",
        unit: "req/s",
        goal_op: GoalOp::AtLeast,
        goal: 2.0,
        goal_on: GoalOn::Ratio,
        measure: Measure::Throughput {
            morel: "python",
            reference: "ref_uvicorn",
        },
        pending: None,
        reference_pending: None,
    },
    RowDef {
        id: "http_service",
        path: "HTTP service behind the edge",
        reference: "nginx reverse-proxying to the same backend, same core count",
        unit: "req/s",
        goal_op: GoalOp::AtLeast,
        goal: 1.0,
        goal_on: GoalOn::Ratio,
        measure: Measure::Throughput {
            morel: "http_service",
            reference: "ref_nginx",
        },
        pending: None,
        reference_pending: None,
    },
    RowDef {
        id: "edge_latency",
        path: "added latency of the edge at 1 connection (p50)",
        reference: "direct to the backend",
        unit: "µs",
        goal_op: GoalOp::AtMost,
        goal: 100.0,
        goal_on: GoalOn::Value,
        measure: Measure::AddedP50 {
            morel: "edge_1conn",
            reference: "backend_1conn",
        },
        pending: None,
        reference_pending: None,
    },
    RowDef {
        id: "wasm_cold",
        path: "wasm cold call (first call after deploy, module cached)",
        reference: "a warm call (p50, 1 connection)",
        unit: "µs",
        goal_op: GoalOp::AtMost,
        goal: 20.0,
        goal_on: GoalOn::Ratio,
        measure: Measure::ColdOverWarm {
            cold: "wasm_cold",
            warm: "wasm_warm",
        },
        pending: None,
        reference_pending: None,
    },
    RowDef {
        id: "python_cold_start",
        path: "Python instance cold start (scale from zero to first answer)",
        reference: "python3 -c pass",
        unit: "ms",
        goal_op: GoalOp::AtMost,
        goal: 3.0,
        goal_on: GoalOn::Ratio,
        measure: Measure::Durations {
            morel: "python_cold_start",
            reference: "ref_python_start",
        },
        pending: None,
        reference_pending: None,
    },
    RowDef {
        id: "node_cold_start",
        path: "Node instance cold start (scale from zero to first answer)",
        reference: "node -e 0",
        unit: "ms",
        goal_op: GoalOp::AtMost,
        goal: 3.0,
        goal_on: GoalOn::Ratio,
        measure: Measure::Durations {
            morel: "node_cold_start",
            reference: "ref_node_start",
        },
        pending: None,
        reference_pending: None,
    },
    RowDef {
        id: "python_redeploy",
        path: "redeploy of an unchanged-dependency Python app until it answers",
        reference: "the same app's cold start",
        unit: "ms",
        goal_op: GoalOp::AtMost,
        goal: 4.0,
        goal_on: GoalOn::Ratio,
        measure: Measure::Durations {
            morel: "python_redeploy",
            reference: "python_redeploy_cold",
        },
        pending: None,
        reference_pending: None,
    },
    RowDef {
        id: "jobs_sqlite",
        path: "async jobs end to end (enqueue → completed), SQLite",
        reference: "raw queue operations on the same store (send+read+delete)",
        unit: "jobs/s",
        goal_op: GoalOp::AtLeast,
        goal: 0.5,
        goal_on: GoalOn::Ratio,
        measure: Measure::Throughput {
            morel: "jobs_sqlite",
            reference: "queue_sqlite",
        },
        pending: None,
        reference_pending: None,
    },
    RowDef {
        id: "jobs_postgres",
        path: "async jobs end to end (enqueue → completed), PostgreSQL",
        reference: "raw queue operations on the same store (send+read+delete)",
        unit: "jobs/s",
        goal_op: GoalOp::AtLeast,
        goal: 0.5,
        goal_on: GoalOn::Ratio,
        measure: Measure::Throughput {
            morel: "jobs_postgres",
            reference: "queue_postgres",
        },
        pending: None,
        reference_pending: None,
    },
    RowDef {
        id: "wasm_many_throughput",
        path: "1,000 deployed wasm functions: call throughput (calls spread over all of them)",
        reference: "1 deployed function",
        unit: "req/s",
        goal_op: GoalOp::AtLeast,
        goal: 0.9,
        goal_on: GoalOn::Ratio,
        measure: Measure::Throughput {
            morel: "wasm_many",
            reference: "wasm_one",
        },
        pending: None,
        reference_pending: None,
    },
    RowDef {
        id: "wasm_many_memory",
        path: "1,000 deployed wasm functions: resident memory per extra function",
        reference: "resident memory with 1 deployed function",
        unit: "KiB",
        goal_op: GoalOp::AtMost,
        goal: 200.0,
        goal_on: GoalOn::Value,
        measure: Measure::MemoryPerFunction {
            one: "rss_one_kib",
            many: "rss_many_kib",
            count: "many_count",
        },
        pending: None,
        reference_pending: None,
    },
    RowDef {
        id: "bluegreen",
        path: "blue/green redeploy under load",
        reference: "—",
        unit: "failed requests",
        goal_op: GoalOp::AtMost,
        goal: 0.0,
        goal_on: GoalOn::Value,
        measure: Measure::Failures { load: "bluegreen" },
        pending: None,
        reference_pending: None,
    },
    // The cost of workload containment: the same Morel with it off (`MOREL_CONTAINMENT=0`) is
    // the reference.
    RowDef {
        id: "containment_python_call",
        path: "containment cost: Python function call through the gateway, containment on",
        reference: "the same Morel with containment off (MOREL_CONTAINMENT=0)",
        unit: "req/s",
        goal_op: GoalOp::AtLeast,
        goal: 0.95,
        goal_on: GoalOn::Ratio,
        measure: Measure::Throughput {
            morel: "python_contained",
            reference: "python_bare",
        },
        pending: None,
        reference_pending: None,
    },
    RowDef {
        id: "containment_python_cold_start",
        path: "containment cost: Python instance cold start (scale from zero to first answer), containment on",
        reference: "the same Morel with containment off (MOREL_CONTAINMENT=0)",
        unit: "ms",
        goal_op: GoalOp::AtMost,
        goal: 1.2,
        goal_on: GoalOn::Ratio,
        measure: Measure::Durations {
            morel: "python_cold_contained",
            reference: "python_cold_bare",
        },
        pending: None,
        reference_pending: None,
    },
];

/// One row of `latest.json`. The first eleven fields are the issue's; the rest explain them.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Row {
    pub path: String,
    pub reference: String,
    pub reference_value: Option<f64>,
    pub morel_value: Option<f64>,
    pub unit: String,
    pub ratio: Option<f64>,
    pub goal_op: String,
    pub goal: f64,
    pub p50_us: Option<u64>,
    pub p99_us: Option<u64>,
    /// Stable identifier of the row.
    pub id: String,
    /// `"ratio"` or `"value"`: what `goal` is compared with.
    pub goal_on: String,
    /// Whether the goal is met; null when not measured.
    pub met: Option<bool>,
    pub reference_p50_us: Option<u64>,
    pub reference_p99_us: Option<u64>,
    /// Failed requests during Morel's measurement, for loads.
    pub errors: Option<u64>,
    /// "not measured: why", or details of the figures.
    pub note: Option<String>,
    /// When the run started (UTC, RFC 3339).
    pub run: String,
}

/// What `bench/run` records about the run (`meta.json`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Meta {
    pub date: String,
    pub mode: String,
    #[serde(default)]
    pub command: String,
    #[serde(default)]
    pub commit: String,
    #[serde(default)]
    pub machine: String,
    #[serde(default)]
    pub settings: String,
    #[serde(default)]
    pub seconds: Option<f64>,
}

struct Raw {
    dir: PathBuf,
}

impl Raw {
    fn path(&self, key: &str, ext: &str) -> PathBuf {
        self.dir.join(format!("{key}.{ext}"))
    }
    fn load(&self, key: &str) -> Result<Option<LoadResult>, BenchError> {
        let path = self.path(key, "load.json");
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| BenchError::Json { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(BenchError::io("cannot read", path)(e)),
        }
    }
    fn numbers(&self, key: &str, ext: &str) -> Result<Option<Vec<f64>>, BenchError> {
        let path = self.path(key, ext);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let mut out = Vec::new();
                for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
                    out.push(line.parse::<f64>().map_err(|e| {
                        BenchError::Usage(format!(
                            "{}: {line:?} is not a number: {e}",
                            path.display()
                        ))
                    })?);
                }
                Ok((!out.is_empty()).then_some(out))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(BenchError::io("cannot read", path)(e)),
        }
    }
    fn samples_us(&self, key: &str) -> Result<Option<Vec<u64>>, BenchError> {
        Ok(self
            .numbers(key, "samples")?
            .map(|v| v.into_iter().map(|x| x.max(0.0) as u64).collect()))
    }
    fn value(&self, key: &str) -> Result<Option<f64>, BenchError> {
        Ok(self.numbers(key, "value")?.and_then(|v| v.last().copied()))
    }
    fn text(&self, key: &str, ext: &str) -> Option<String> {
        std::fs::read_to_string(self.path(key, ext))
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    }
    fn skip(&self, key: &str) -> Option<String> {
        self.text(key, "skip")
    }
    /// Why `key` has no measurement.
    fn why_missing(&self, key: &str, pending: Option<&str>) -> String {
        if let Some(p) = pending {
            return p.to_owned();
        }
        self.skip(key).unwrap_or_else(|| {
            format!("no measurement `{key}` in this run (the step failed; see the run's output)")
        })
    }
}

/// Builds every row from the raw measurements in `raw_dir`.
pub fn build_rows(raw_dir: &Path, run: &str) -> Result<Vec<Row>, BenchError> {
    let raw = Raw {
        dir: raw_dir.to_owned(),
    };
    ROWS.iter().map(|def| build_row(&raw, def, run)).collect()
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

fn build_row(raw: &Raw, def: &RowDef, run: &str) -> Result<Row, BenchError> {
    let mut row = Row {
        path: def.path.to_owned(),
        reference: def.reference.to_owned(),
        reference_value: None,
        morel_value: None,
        unit: def.unit.to_owned(),
        ratio: None,
        goal_op: def.goal_op.symbol().to_owned(),
        goal: def.goal,
        p50_us: None,
        p99_us: None,
        id: def.id.to_owned(),
        goal_on: match def.goal_on {
            GoalOn::Ratio => "ratio",
            GoalOn::Value => "value",
        }
        .to_owned(),
        met: None,
        reference_p50_us: None,
        reference_p99_us: None,
        errors: None,
        note: None,
        run: run.to_owned(),
    };
    let mut notes: Vec<String> = Vec::new();
    let mut missing_morel: Option<String> = None;
    let mut missing_ref: Option<String> = None;
    match def.measure {
        Measure::Throughput { morel, reference } => {
            match raw.load(morel)? {
                Some(l) => {
                    row.morel_value = Some(round(l.rps, 1));
                    row.p50_us = l.p50_us;
                    row.p99_us = l.p99_us;
                    row.errors = Some(l.errors);
                    if l.errors > 0 {
                        notes.push(format!(
                            "{} of {} requests failed ({:?})",
                            l.errors, l.requests, l.statuses
                        ));
                    }
                }
                None => missing_morel = Some(raw.why_missing(morel, def.pending)),
            }
            match raw.load(reference)? {
                Some(l) => {
                    row.reference_value = Some(round(l.rps, 1));
                    row.reference_p50_us = l.p50_us;
                    row.reference_p99_us = l.p99_us;
                    if l.errors > 0 {
                        notes.push(format!(
                            "reference: {} of {} requests failed",
                            l.errors, l.requests
                        ));
                    }
                }
                None => missing_ref = Some(raw.why_missing(reference, def.reference_pending)),
            }
            if morel == "wasm_many"
                && let Some(n) = raw.value("many_count")?
            {
                let took = raw
                    .value("many_deploy_ms")?
                    .map(|ms| format!(", deployed in {ms} ms"))
                    .unwrap_or_default();
                notes.push(format!("{n} functions in one app{took}"));
            }
        }
        Measure::ColdOverWarm { cold, warm } => {
            match raw.samples_us(cold)? {
                Some(s) => {
                    row.morel_value = median(&s).map(|m| m as f64);
                    row.p50_us = median(&s);
                    row.p99_us = s.iter().max().copied();
                    notes.push(format!("median of {} first calls, each after its own deploy; p99 column shows the slowest", s.len()));
                }
                None => missing_morel = Some(raw.why_missing(cold, def.pending)),
            }
            match raw.load(warm)? {
                Some(l) => {
                    row.reference_value = l.p50_us.map(|v| v as f64);
                    row.reference_p50_us = l.p50_us;
                    row.reference_p99_us = l.p99_us;
                }
                None => missing_ref = Some(raw.why_missing(warm, def.reference_pending)),
            }
        }
        Measure::Durations { morel, reference } => {
            match raw.samples_us(morel)? {
                Some(s) => {
                    row.morel_value = median(&s).map(|m| round(m as f64 / 1000.0, 2));
                    notes.push(format!("median of {} runs", s.len()));
                }
                None => missing_morel = Some(raw.why_missing(morel, def.pending)),
            }
            match raw.samples_us(reference)? {
                Some(s) => row.reference_value = median(&s).map(|m| round(m as f64 / 1000.0, 2)),
                None => missing_ref = Some(raw.why_missing(reference, def.reference_pending)),
            }
        }
        Measure::AddedP50 { morel, reference } => {
            let m = raw.load(morel)?;
            let r = raw.load(reference)?;
            match &m {
                Some(l) => {
                    row.p50_us = l.p50_us;
                    row.p99_us = l.p99_us;
                }
                None => missing_morel = Some(raw.why_missing(morel, def.pending)),
            }
            match &r {
                Some(l) => {
                    row.reference_value = l.p50_us.map(|v| v as f64);
                    row.reference_p50_us = l.p50_us;
                    row.reference_p99_us = l.p99_us;
                }
                None => missing_ref = Some(raw.why_missing(reference, def.reference_pending)),
            }
            if let (Some(Some(a)), Some(Some(b))) = (m.map(|l| l.p50_us), r.map(|l| l.p50_us)) {
                row.morel_value = Some(a as f64 - b as f64);
            }
        }
        Measure::Failures { load } => match raw.load(load)? {
            Some(l) => {
                row.morel_value = Some((l.errors + l.connect_errors) as f64);
                row.p50_us = l.p50_us;
                row.p99_us = l.p99_us;
                row.errors = Some(l.errors + l.connect_errors);
                let redeploys = raw.value("bluegreen_redeploys")?.unwrap_or(0.0);
                notes.push(format!(
                    "{} requests at {} connections during {redeploys} redeploys; statuses {:?}",
                    l.requests, l.conns, l.statuses
                ));
            }
            None => missing_morel = Some(raw.why_missing(load, def.pending)),
        },
        Measure::MemoryPerFunction { one, many, count } => {
            let one_v = raw.value(one)?;
            let many_v = raw.value(many)?;
            let n = raw.value(count)?;
            row.reference_value = one_v;
            if one_v.is_none() {
                missing_ref = Some(raw.why_missing(one, def.reference_pending));
            }
            match (one_v, many_v, n) {
                (Some(a), Some(b), Some(n)) if n > 1.0 => {
                    row.morel_value = Some(round((b - a) / (n - 1.0), 1));
                    notes.push(format!("RSS of `morel up`: {a} KiB with 1 function, {b} KiB with {n} (after a load over all of them)"));
                }
                _ => missing_morel = Some(raw.why_missing(many, def.pending)),
            }
        }
    }
    if let (Some(m), Some(r)) = (row.morel_value, row.reference_value)
        && r != 0.0
        && def.goal_on == GoalOn::Ratio
    {
        row.ratio = Some(round(m / r, 3));
    }
    let judged = match def.goal_on {
        GoalOn::Ratio => row.ratio,
        GoalOn::Value => row.morel_value,
    };
    row.met = judged.map(|v| def.goal_op.met(v, def.goal));
    let mut lead = Vec::new();
    if let Some(why) = missing_morel {
        lead.push(format!("not measured: {why}"));
    }
    if let Some(why) = missing_ref {
        if lead.first().is_some_and(|l| l.ends_with(&why)) {
            lead[0].push_str(" (nor its reference)");
        } else {
            lead.push(format!("reference not measured: {why}"));
        }
    }
    lead.extend(notes);
    lead.extend(raw.text(def.id, "note"));
    row.note = (!lead.is_empty()).then(|| lead.join("; "));
    Ok(row)
}

/// Writes `latest.json` and `latest.md` into `out_dir`.
pub fn write(out_dir: &Path, rows: &[Row], meta: &Meta) -> Result<(), BenchError> {
    std::fs::create_dir_all(out_dir).map_err(BenchError::io("cannot create", out_dir))?;
    let json_path = out_dir.join("latest.json");
    let mut json = serde_json::to_vec_pretty(rows).map_err(|source| BenchError::Json {
        path: json_path.clone(),
        source,
    })?;
    json.push(b'\n');
    std::fs::write(&json_path, json).map_err(BenchError::io("cannot write", &json_path))?;
    let md_path = out_dir.join("latest.md");
    std::fs::write(&md_path, markdown(rows, meta))
        .map_err(BenchError::io("cannot write", &md_path))?;
    Ok(())
}

fn fmt_value(v: Option<f64>, unit: &str) -> String {
    let Some(v) = v else {
        return "—".into();
    };
    match unit {
        "req/s" | "jobs/s" => format!("{} {unit}", group(v.round() as i64)),
        "µs" => format!("{} µs", group(v.round() as i64)),
        "ms" => format!("{v:.1} ms"),
        "KiB" => format!("{v:.1} KiB"),
        _ => format!("{} {unit}", v),
    }
}

fn group(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

fn fmt_lat(p50: Option<u64>, p99: Option<u64>) -> String {
    match (p50, p99) {
        (Some(a), Some(b)) => format!("{} / {} µs", group(a as i64), group(b as i64)),
        _ => "—".into(),
    }
}

fn fmt_goal(row: &Row) -> String {
    let op = if row.goal_op == ">=" { "≥" } else { "≤" };
    if row.goal_on == "ratio" {
        format!("{op} {}×", row.goal)
    } else if row.unit == "µs" {
        format!("{op} +{} µs", row.goal)
    } else {
        format!("{op} {} {}", row.goal, row.unit)
    }
}

/// The markdown report.
pub fn markdown(rows: &[Row], meta: &Meta) -> String {
    let mut s = String::new();
    s.push_str("# Morel benchmarks: latest run\n\n");
    s.push_str(&format!("- date: {}\n", meta.date));
    s.push_str(&format!(
        "- command: `{}` (mode {})\n",
        meta.command, meta.mode
    ));
    if !meta.commit.is_empty() {
        s.push_str(&format!("- commit: {}\n", meta.commit));
    }
    if !meta.machine.is_empty() {
        s.push_str(&format!("- machine: {}\n", meta.machine));
    }
    if !meta.settings.is_empty() {
        s.push_str(&format!("- loads: {}\n", meta.settings));
    }
    if let Some(secs) = meta.seconds {
        s.push_str(&format!("- run time: {secs:.0} s\n"));
    }
    s.push_str(
        "\nEvery reference was measured in the same run as the Morel figure it is compared with. ",
    );
    s.push_str(
        "Ratios are Morel / reference. p50 / p99 are per-request latencies under the same load. ",
    );
    s.push_str(
        "See `bench/README.md` for what each row measures and `bench/NOTES.md` for findings.\n\n",
    );
    s.push_str("| path | reference | reference value | Morel | ratio | Morel p50 / p99 | reference p50 / p99 | goal | met? |\n");
    s.push_str("|---|---|---|---|---|---|---|---|---|\n");
    for r in rows {
        let ratio = r.ratio.map_or("—".into(), |x| format!("{x:.3}×"));
        let met = match r.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "not measured",
        };
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.path,
            r.reference,
            fmt_value(r.reference_value, &r.unit),
            fmt_value(r.morel_value, &r.unit),
            ratio,
            fmt_lat(r.p50_us, r.p99_us),
            fmt_lat(r.reference_p50_us, r.reference_p99_us),
            fmt_goal(r),
            met
        ));
    }
    s.push_str("\n## Notes per row\n\n");
    for r in rows {
        if let Some(n) = &r.note {
            s.push_str(&format!("- **{}**: {}\n", r.path, n));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_load(dir: &Path, key: &str, rps: f64, p50: u64) {
        let l = LoadResult {
            target: "x".into(),
            conns: 1,
            requests: 100,
            errors: 0,
            connect_errors: 0,
            seconds: 1.0,
            rps,
            slices_rps: Vec::new(),
            p50_us: Some(p50),
            p90_us: Some(p50),
            p99_us: Some(p50 * 2),
            max_us: Some(p50 * 3),
            statuses: [(200, 100)].into_iter().collect(),
            sample_body: None,
        };
        std::fs::write(
            dir.join(format!("{key}.load.json")),
            serde_json::to_vec(&l).unwrap(),
        )
        .unwrap();
    }

    #[test]
    #[allow(clippy::unwrap_used)]
    fn rows_from_raw_measurements() {
        let dir = std::env::temp_dir().join(format!("morel-bench-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        write_load(&dir, "wasm_core", 500.0, 100);
        write_load(&dir, "ref_hyper_core", 1000.0, 50);
        write_load(&dir, "wasm_warm", 10.0, 100);
        std::fs::write(dir.join("wasm_cold.samples"), "3000\n1000\n2000\n").unwrap();
        std::fs::write(dir.join("ref_python_start.samples"), "20000\n").unwrap();
        std::fs::write(dir.join("rss_one_kib.value"), "1000").unwrap();
        std::fs::write(dir.join("rss_many_kib.value"), "11000").unwrap();
        std::fs::write(dir.join("many_count.value"), "11").unwrap();
        std::fs::write(dir.join("ref_node.skip"), "node is not installed").unwrap();
        write_load(&dir, "python_contained", 960.0, 100);
        write_load(&dir, "python_bare", 1000.0, 90);
        std::fs::write(dir.join("containment_python_call.note"), "on: uid 200000\n").unwrap();
        std::fs::write(dir.join("python_cold_contained.samples"), "110000\n").unwrap();
        std::fs::write(dir.join("python_cold_bare.samples"), "100000\n").unwrap();
        for key in ["jobs_postgres", "queue_postgres"] {
            std::fs::write(
                dir.join(format!("{key}.skip")),
                "no PostgreSQL answers at postgres://x",
            )
            .unwrap();
        }
        let rows = build_rows(&dir, "2025-01-01T00:00:00Z").unwrap();
        let by = |id: &str| rows.iter().find(|r| r.id == id).unwrap().clone();
        let core = by("wasm_core");
        assert_eq!((core.ratio, core.met), (Some(0.5), Some(true)));
        let cold = by("wasm_cold");
        assert_eq!(
            (cold.morel_value, cold.ratio, cold.met),
            (Some(2000.0), Some(20.0), Some(true))
        );
        let contained = by("containment_python_call");
        assert_eq!(
            (contained.ratio, contained.met, contained.note.as_deref()),
            (Some(0.96), Some(true), Some("on: uid 200000"))
        );
        let cold_contained = by("containment_python_cold_start");
        assert_eq!(
            (
                cold_contained.morel_value,
                cold_contained.ratio,
                cold_contained.met
            ),
            (Some(110.0), Some(1.1), Some(true))
        );
        let mem = by("wasm_many_memory");
        assert_eq!((mem.morel_value, mem.met), (Some(1000.0), Some(false)));
        let py = by("python_cold_start");
        assert_eq!(
            (py.reference_value, py.morel_value, py.met),
            (Some(20.0), None, None)
        );
        assert!(py.note.unwrap().starts_with("not measured: no measurement"));
        let pg = by("jobs_postgres");
        assert_eq!(
            pg.note.as_deref(),
            Some("not measured: no PostgreSQL answers at postgres://x (nor its reference)")
        );
        assert!(
            by("node")
                .note
                .unwrap()
                .contains("reference not measured: node is not installed")
        );
        assert_eq!(rows.len(), ROWS.len());
        let md = markdown(&rows, &Meta::default());
        assert!(md.contains("| wasm function call through the gateway, core ABI |"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
