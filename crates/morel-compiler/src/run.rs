//! Running one external compiler: argument array (never a shell), its own process group,
//! bounded output capture, and a deadline that kills the whole group.

use std::ffi::OsString;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process_group};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

/// How much of a tool's stdout and stderr is kept; the rest is read and dropped so the tool
/// never blocks on a full pipe.
pub(crate) const CAPTURE_LIMIT: usize = 16 * 1024;

/// What a finished tool left behind.
#[derive(Debug)]
pub(crate) struct ToolOutput {
    pub status: ExitStatus,
    pub stdout: Captured,
    pub stderr: Captured,
}

/// The first [`CAPTURE_LIMIT`] bytes of a stream, and whether more followed.
#[derive(Debug, Default)]
pub(crate) struct Captured {
    pub bytes: Vec<u8>,
    pub truncated: bool,
}

#[derive(Debug)]
pub(crate) enum RunError {
    /// The program (or the interpreter named in its `#!` line) does not exist.
    NotFound(std::io::Error),
    /// Spawning or waiting failed for another reason.
    Io(std::io::Error),
    /// The deadline passed; the process group was killed.
    TimedOut,
}

/// Runs `program args…` in `dir` (also its `TMPDIR`, so every temporary file lands in the
/// scratch directory) with stdin closed, and waits for it and its output streams.
pub(crate) async fn run_tool(
    program: &Path,
    args: &[OsString],
    dir: &Path,
    timeout: Duration,
) -> Result<ToolOutput, RunError> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(dir)
        .env("TMPDIR", dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    let mut child = cmd.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            RunError::NotFound(e)
        } else {
            RunError::Io(e)
        }
    })?;
    // The child leads a new group whose id is its pid; compilers start helpers (clang runs
    // wasm-ld, asc runs node workers), and a deadline must stop all of them.
    let mut group = GroupGuard {
        pgid: child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .and_then(Pid::from_raw),
    };
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();

    let outcome = tokio::time::timeout(timeout, async {
        let (status, stdout, stderr) = tokio::join!(
            child.wait(),
            capture(stdout, CAPTURE_LIMIT),
            capture(stderr, CAPTURE_LIMIT)
        );
        Ok::<_, std::io::Error>(ToolOutput {
            status: status?,
            stdout: stdout?,
            stderr: stderr?,
        })
    })
    .await;

    match outcome {
        Ok(Ok(output)) => {
            group.disarm();
            Ok(output)
        }
        Ok(Err(e)) => Err(RunError::Io(e)),
        Err(_elapsed) => {
            group.kill();
            // Also kill the leader directly (should the group kill have failed), and reap
            // it now rather than leaving a zombie to tokio's best effort.
            let _ = child.start_kill();
            let _ = child.wait().await;
            Err(RunError::TimedOut)
        }
    }
}

/// Reads a stream to its end, keeping at most `limit` bytes.
async fn capture<R: AsyncRead + Unpin>(
    stream: Option<R>,
    limit: usize,
) -> std::io::Result<Captured> {
    let mut out = Captured::default();
    let Some(mut stream) = stream else {
        return Ok(out);
    };
    let mut buf = [0u8; 8192];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(out);
        }
        let room = limit.saturating_sub(out.bytes.len());
        let keep = n.min(room);
        out.bytes.extend_from_slice(&buf[..keep]);
        if keep < n {
            out.truncated = true;
        }
    }
}

/// Kills the tool's process group unless disarmed: on a deadline, and when the compile
/// future is dropped half-way (the caller gave up), so no compiler outlives its request.
struct GroupGuard {
    pgid: Option<Pid>,
}

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            // ESRCH (the group is already gone) is the expected, harmless case.
            let _ = kill_process_group(pgid, Signal::KILL);
        }
    }

    fn disarm(&mut self) {
        self.pgid = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn capture_keeps_a_bounded_prefix() {
        let data = vec![b'x'; 40_000];
        let got = capture(Some(&data[..]), 1000).await.unwrap();
        assert_eq!(got.bytes.len(), 1000);
        assert!(got.truncated);
        let got = capture(Some(&b"short"[..]), 1000).await.unwrap();
        assert_eq!(got.bytes, b"short");
        assert!(!got.truncated);
    }

    #[tokio::test]
    async fn runs_with_argument_array_in_dir() {
        let dir = tempfile::tempdir().unwrap();
        let out = run_tool(
            Path::new("sh"),
            &[
                "-c".into(),
                "pwd; echo \"$TMPDIR\"; echo err >&2; exit 3".into(),
            ],
            dir.path(),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert_eq!(out.status.code(), Some(3));
        let stdout = String::from_utf8(out.stdout.bytes).unwrap();
        let canonical = dir.path().canonicalize().unwrap();
        assert!(stdout.contains(canonical.to_str().unwrap()), "{stdout}");
        assert_eq!(out.stderr.bytes, b"err\n");
    }

    #[tokio::test]
    async fn missing_program_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let err = run_tool(
            Path::new("/nonexistent/morel-tool"),
            &[],
            dir.path(),
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, RunError::NotFound(_)), "{err:?}");
    }
}
