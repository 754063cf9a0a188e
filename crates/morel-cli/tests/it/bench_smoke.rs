//! The benchmark harness still runs against the current binary: `bench/run --smoke` with the
//! debug `morel`, a few hundred requests per path. Speeds are never asserted (STYLE: a benchmark
//! measures, a test asserts behaviour); only that every row is there and measured where it can be.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::bin;

/// Rows `--smoke` measures on both sides (Morel and reference), with positive figures.
const BOTH_SIDES: &[&str] = &[
    "wasm_core",
    "node",
    "wasm_cold",
    "wasm_many_throughput",
    // Both sides are Morel: containment on, and off (MOREL_CONTAINMENT=0).
    "containment_python_call",
];
/// Rows where only Morel's side runs in `--smoke` (the reference needs a pip or apt install).
const MOREL_ONLY: &[&str] = &["python", "http_service"];
/// Rows measured on both sides whose figures are not loads (durations, batches): both values
/// and the ratio are positive.
const BOTH_VALUES: &[&str] = &[
    "python_cold_start",
    "node_cold_start",
    "python_redeploy",
    "jobs_sqlite",
    // The test suite's PostgreSQL (MOREL_TEST_DATABASE_URL, started by scripts/test).
    "jobs_postgres",
    "containment_python_cold_start",
];
/// Every row the issue asks for, in order.
const ALL: &[&str] = &[
    "wasm_core",
    "wasm_wasi",
    "node",
    "python",
    "http_service",
    "edge_latency",
    "wasm_cold",
    "python_cold_start",
    "node_cold_start",
    "python_redeploy",
    "jobs_sqlite",
    "jobs_postgres",
    "wasm_many_throughput",
    "wasm_many_memory",
    "bluegreen",
    "containment_python_call",
    "containment_python_cold_start",
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn positive(row: &Value, field: &str) -> bool {
    row[field].as_f64().is_some_and(|v| v > 0.0)
}

#[test]
fn bench_run_smoke_writes_every_row() {
    let out = tempfile::tempdir().unwrap();
    let mut child = Command::new(repo_root().join("bench/run"))
        .arg("--smoke")
        .arg("--bin")
        .arg(bin())
        .arg("--out")
        .arg(out.path())
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run bench/run");
    // Bounded: the smoke run takes seconds once morel-bench is built (a first build takes longer).
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(900) {
            let _ = child.kill();
            panic!("bench/run --smoke did not finish within 15 minutes");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let output = child.wait_with_output().unwrap();
    let log = format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(status.success(), "bench/run --smoke failed\n{log}");

    let json = std::fs::read_to_string(out.path().join("latest.json")).unwrap();
    let rows: Vec<Value> = serde_json::from_str(&json).unwrap();
    let ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ALL, "{log}");
    let row = |id: &str| rows.iter().find(|r| r["id"] == id).unwrap();
    for r in &rows {
        for key in [
            "path",
            "reference",
            "reference_value",
            "morel_value",
            "unit",
            "ratio",
            "goal_op",
            "goal",
            "p50_us",
            "p99_us",
        ] {
            assert!(r.get(key).is_some(), "row {} lacks {key}: {r}", r["id"]);
        }
        assert!(matches!(r["goal_op"].as_str(), Some(">=" | "<=")), "{r}");
    }
    for id in BOTH_SIDES {
        let r = row(id);
        assert!(
            positive(r, "morel_value") && positive(r, "reference_value"),
            "{r}\n{log}"
        );
        assert!(positive(r, "ratio"), "{r}");
        assert!(positive(r, "p50_us") && positive(r, "p99_us"), "{r}");
    }
    for id in MOREL_ONLY {
        let r = row(id);
        assert!(positive(r, "morel_value"), "{r}\n{log}");
    }
    for id in BOTH_VALUES {
        let r = row(id);
        assert!(
            positive(r, "morel_value") && positive(r, "reference_value") && positive(r, "ratio"),
            "{r}\n{log}"
        );
    }
    // The edge's added latency: both loads ran (the difference itself may be any sign).
    let edge = row("edge_latency");
    assert!(
        positive(edge, "reference_value") && positive(edge, "p50_us"),
        "{edge}\n{log}"
    );
    assert!(edge["morel_value"].is_number(), "{edge}");
    let memory = row("wasm_many_memory");
    assert!(positive(memory, "reference_value"), "{memory}");
    assert!(memory["morel_value"].is_number(), "{memory}");
    let bluegreen = row("bluegreen");
    assert!(bluegreen["morel_value"].is_number(), "{bluegreen}");
    let md = std::fs::read_to_string(out.path().join("latest.md")).unwrap();
    assert!(
        md.contains("| wasm function call through the gateway, core ABI |"),
        "{md}"
    );
}
