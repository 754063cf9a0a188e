//! Bounded in-memory capture of a WASI guest's stdout and stderr.
//!
//! wasmtime-wasi's `MemoryOutputPipe` traps a guest that writes past its capacity and gives no
//! way to keep the *end* of a stream, so stdout and stderr use this small pipe instead:
//! stdout keeps the head and marks overflow (the call then fails with a clear message), stderr
//! keeps the tail and never fails a write (a chatty guest must not crash because of its logs).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

/// How many bytes the guest may hand over per write permit. Never zero: a zero permit makes
/// wasmtime-wasi's blocking write wait forever, out of reach of the epoch deadline.
const WRITE_PERMIT: usize = 64 << 10;

/// Which part of an over-long stream is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Keep {
    /// The first `limit` bytes; further writes fail with a closed stream.
    Head,
    /// The last `limit` bytes; writes always succeed.
    Tail,
}

#[derive(Debug)]
struct Buffer {
    bytes: Vec<u8>,
    limit: usize,
    keep: Keep,
    overflowed: bool,
}

impl Buffer {
    /// Takes `data`; returns false if the stream is closed because the head is full.
    fn push(&mut self, data: &[u8]) -> bool {
        match self.keep {
            Keep::Head => {
                if self.overflowed {
                    return false;
                }
                let room = self.limit - self.bytes.len();
                if data.len() > room {
                    self.overflowed = true;
                }
                self.bytes.extend_from_slice(&data[..data.len().min(room)]);
                true
            }
            Keep::Tail => {
                self.bytes.extend_from_slice(data);
                // Trim only when twice over, so a stream of small writes costs amortized O(1).
                if self.bytes.len() > 2 * self.limit {
                    let excess = self.bytes.len() - self.limit;
                    self.bytes.drain(..excess);
                    self.overflowed = true;
                }
                true
            }
        }
    }
}

/// One captured stream. Clones share the buffer: the WASI context holds one, the caller keeps
/// another to read the result after the call. Written by the guest's thread during the call,
/// read by the same thread afterwards.
#[derive(Clone, Debug)]
pub(crate) struct Capture(Arc<Mutex<Buffer>>);

impl Capture {
    /// Keeps the first `limit` bytes (stdout).
    pub(crate) fn head(limit: usize) -> Self {
        Self::new(limit, Keep::Head)
    }

    /// Keeps the last `limit` bytes (stderr).
    pub(crate) fn tail(limit: usize) -> Self {
        Self::new(limit, Keep::Tail)
    }

    fn new(limit: usize, keep: Keep) -> Self {
        Self(Arc::new(Mutex::new(Buffer {
            bytes: Vec::new(),
            limit,
            keep,
            overflowed: false,
        })))
    }

    fn lock(&self) -> MutexGuard<'_, Buffer> {
        // A panic while holding the lock leaves plain bytes behind, still fine to read.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether more was written than `limit`.
    pub(crate) fn overflowed(&self) -> bool {
        self.lock().overflowed
    }

    /// The kept bytes (for a tail, at most `limit` of the most recent).
    pub(crate) fn contents(&self) -> Vec<u8> {
        let buf = self.lock();
        let start = buf.bytes.len().saturating_sub(buf.limit);
        buf.bytes[start..].to_vec()
    }

    /// The kept bytes as text, invalid UTF-8 replaced.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.contents()).into_owned()
    }
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Capture {
    async fn ready(&mut self) {}
}

impl OutputStream for Capture {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        if self.lock().push(&bytes) {
            Ok(())
        } else {
            Err(StreamError::Closed)
        }
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        let buf = self.lock();
        if buf.keep == Keep::Head && buf.overflowed {
            Err(StreamError::Closed)
        } else {
            Ok(WRITE_PERMIT)
        }
    }
}

impl AsyncWrite for Capture {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.lock().push(data) {
            Poll::Ready(Ok(data.len()))
        } else {
            Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()))
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_keeps_the_start_and_closes_after_overflow() {
        let mut out = Capture::head(5);
        assert!(out.write(Bytes::from_static(b"abc")).is_ok());
        assert!(!out.overflowed());
        assert!(out.write(Bytes::from_static(b"defg")).is_ok());
        assert!(out.overflowed());
        assert_eq!(out.contents(), b"abcde");
        assert!(matches!(out.check_write(), Err(StreamError::Closed)));
        assert!(matches!(
            out.write(Bytes::from_static(b"h")),
            Err(StreamError::Closed)
        ));
    }

    #[test]
    fn tail_keeps_the_end_and_never_refuses() {
        let mut err = Capture::tail(4);
        for chunk in [b"one ".as_slice(), b"two ", b"three"] {
            assert!(err.write(Bytes::copy_from_slice(chunk)).is_ok());
            assert!(err.check_write().is_ok_and(|n| n > 0));
        }
        assert_eq!(err.contents(), b"hree");
        assert_eq!(err.text(), "hree");
    }
}
