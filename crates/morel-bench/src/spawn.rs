//! Process start times: how long a command takes from spawn to exit (e.g. `python3 -c pass`),
//! the floor under any scale-from-zero figure.

use std::process::{Command, Stdio};
use std::time::Instant;

use crate::BenchError;

/// Runs `program args…` `runs` times, one after another, and returns each wall time in µs.
/// Every run must exit successfully.
pub fn time_runs(program: &str, args: &[String], runs: usize) -> Result<Vec<u64>, BenchError> {
    let mut out = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t0 = Instant::now();
        let status = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(BenchError::io("cannot run", program))?;
        let us = t0.elapsed().as_micros() as u64;
        if !status.success() {
            return Err(BenchError::Usage(format!(
                "{program} {args:?} exited with {status}"
            )));
        }
        out.push(us);
    }
    Ok(out)
}
