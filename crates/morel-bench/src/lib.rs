//! The tools behind `bench/run`: a small closed-loop HTTP/1.1 load generator ([`load`]), a
//! process start timer ([`spawn`]), a generator of many-function wasm apps ([`wasmgen`]) and the
//! report writer ([`report`]) that turns raw measurements into `bench/results/latest.{md,json}`.
//!
//! It measures and reports; it does not start or stop Morel (the bash script does) and it makes
//! no judgement beyond comparing each figure with its goal. The load generator speaks just
//! enough HTTP/1.1 (keep-alive, `Content-Length` or chunked responses) to drive Morel and the
//! reference servers with the least client-side cost, so that on a small machine the client
//! takes as little CPU as possible from the server under test.

pub mod error;
pub mod http1;
pub mod jobs;
pub mod load;
pub mod report;
pub mod spawn;
pub mod stats;
pub mod wasmgen;

pub use error::BenchError;
