//! Process runtimes: Python and Node workers speaking Morel's worker protocol (DESIGN §5),
//! and the dependency installs (pip, npm) they need.
//!
//! A [`Worker`] is one child process. The host writes length-prefixed JSON frames to the
//! child's fd 3 and reads replies from its fd 4; the child's stdout and stderr are its log.
//! Calls are multiplexed by id, so one worker serves many calls at once, up to its
//! concurrency. This crate does not decide how many workers run or where: the agent does.

pub mod deps;
mod frame;
pub mod loglines;
mod outbox;
pub mod protocol;
mod runners;
pub mod sandbox;
mod spawn;
mod worker;

pub use deps::{DepsError, Installer};
pub use runners::RunnerFiles;
pub use sandbox::{Jail, Sandbox, Scratch};
pub use worker::{
    Call, InvokeError, LogSink, PreStart, Returned, Worker, WorkerError, WorkerSpec,
    noting_reply_thread, read_replies_on, serve_replies_here, serving_thread,
};

/// Reads one frame (a 4-byte big-endian length, then that many bytes) from `r` into `buf`
/// with the code the host reads its workers' replies with, and its 64 MiB limit; `Ok(None)`
/// at a clean end of stream. Public for the fuzz targets in `morel-fuzz`.
pub async fn read_frame_for_fuzzing<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<()>> {
    frame::read(r, buf).await
}
