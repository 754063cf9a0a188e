//! The host → worker pipe, written by the calling tasks themselves.
//!
//! A call writes its frame to the pipe on its own task when no other write is in progress; a
//! frame that arrives while one is in progress is appended to a shared buffer, and the task
//! doing the write sends that buffer next, before it lets go. Under load this batches the
//! frames of concurrent calls into one `write` (as a writer task would) without waking a task
//! per frame. When the pipe is full, a task spawned for it waits until the pipe is writable
//! and drains the buffer; frames keep queueing behind it in order.
//!
//! Dropping the last handle closes the pipe: the worker reads end of file and exits.

use std::sync::{Arc, Mutex};

use tokio::net::unix::pipe;

pub(crate) struct Outbox {
    pipe: pipe::Sender,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// A task is writing (or waiting to write) to the pipe; newcomers append to `queued`.
    writing: bool,
    queued: Vec<u8>,
    /// A write failed: the worker is gone, further frames are dropped.
    broken: bool,
}

impl Outbox {
    pub(crate) fn new(pipe: pipe::Sender) -> Arc<Outbox> {
        Arc::new(Outbox {
            pipe,
            state: Mutex::new(State::default()),
        })
    }

    /// Sends `frame` (already encoded), or queues it behind the write in progress.
    pub(crate) fn send(self: &Arc<Self>, frame: &[u8]) {
        {
            let mut s = self.lock();
            if s.broken {
                return;
            }
            if s.writing {
                s.queued.extend_from_slice(frame);
                return;
            }
            s.writing = true;
        }
        let mut pending = frame;
        let mut owned = Vec::new();
        loop {
            match self.write_now(pending) {
                Ok(n) if n == pending.len() => {}
                Ok(n) => {
                    // The pipe is full: the rest goes first, ahead of anything queued since.
                    let rest = pending[n..].to_vec();
                    self.hand_off(rest);
                    return;
                }
                Err(()) => return,
            }
            let mut s = self.lock();
            if s.queued.is_empty() {
                s.writing = false;
                return;
            }
            owned.clear();
            std::mem::swap(&mut owned, &mut s.queued);
            drop(s);
            pending = &owned;
        }
    }

    /// Writes as much of `buf` as the pipe takes without waiting. `Err` when the pipe broke.
    fn write_now(&self, buf: &[u8]) -> Result<usize, ()> {
        let mut done = 0;
        while done < buf.len() {
            match self.pipe.try_write(&buf[done..]) {
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.mark_broken();
                    return Err(());
                }
            }
        }
        Ok(done)
    }

    /// Drains `first`, then the queue, on a task of its own that waits for the pipe.
    fn hand_off(self: &Arc<Self>, first: Vec<u8>) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut pending = first;
            loop {
                let mut done = 0;
                while done < pending.len() {
                    if me.pipe.writable().await.is_err() {
                        me.mark_broken();
                        return;
                    }
                    match me.write_now(&pending[done..]) {
                        Ok(n) => done += n,
                        Err(()) => return,
                    }
                }
                let mut s = me.lock();
                if s.queued.is_empty() {
                    s.writing = false;
                    return;
                }
                pending = std::mem::take(&mut s.queued);
            }
        });
    }

    fn mark_broken(&self) {
        let mut s = self.lock();
        s.broken = true;
        s.writing = false;
        s.queued = Vec::new();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// Frames sent while the pipe is full are neither lost nor reordered, and all of them
    /// arrive once the reader drains the pipe.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn frames_keep_their_order_through_a_full_pipe() {
        let (rx_fd, tx_fd) = crate::spawn::pipe().unwrap();
        let outbox = Outbox::new(pipe::Sender::from_owned_fd(tx_fd).unwrap());
        let mut rx = pipe::Receiver::from_owned_fd(rx_fd).unwrap();
        // 4,000 frames of 100 bytes: several times a pipe's 64 KiB, with nobody reading yet.
        let senders: Vec<_> = (0..4u8)
            .map(|t| {
                let outbox = outbox.clone();
                tokio::spawn(async move {
                    for i in 0..1000u32 {
                        let mut frame = vec![t; 100];
                        frame[1..5].copy_from_slice(&i.to_be_bytes());
                        outbox.send(&frame);
                        if i % 100 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                })
            })
            .collect();
        for s in senders {
            s.await.unwrap();
        }
        let mut got = vec![0u8; 4000 * 100];
        rx.read_exact(&mut got).await.unwrap();
        // Per sender, frames arrive in the order sent; every frame arrives whole, once.
        let mut next = [0u32; 4];
        for frame in got.chunks(100) {
            let t = frame[0] as usize;
            let i = u32::from_be_bytes(frame[1..5].try_into().unwrap());
            assert_eq!(i, next[t], "sender {t}: frame {i} out of order");
            assert!(frame[5..].iter().all(|&b| b as usize == t));
            next[t] += 1;
        }
        assert_eq!(next, [1000; 4]);
        drop(outbox);
        // The last handle gone, the reader sees end of file.
        let mut rest = Vec::new();
        rx.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    }
}
