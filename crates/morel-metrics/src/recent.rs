//! A bounded ring of a function's most recent calls, kept in memory only.
//!
//! App function calls are not written to the database (the call path does no database
//! access), so the dashboard's execution history of an app function comes from here: the last
//! [`RECENT_CALLS`] calls per function, lost on restart. Compiled (seed 001) functions and
//! async runs keep their durable execution rows in the store as before.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// How many calls each function remembers.
pub const RECENT_CALLS: usize = 50;

/// Longest error message kept per call, in bytes.
const MAX_ERROR_BYTES: usize = 500;

/// One finished call.
#[derive(Clone, Debug, Serialize)]
pub struct RecentCall {
    /// When it finished, in ms since the Unix epoch.
    pub at: i64,
    /// How long it took, in microseconds.
    pub duration_us: u64,
    /// The HTTP status it ended with.
    pub status: u16,
    /// What went wrong, for a failed call (truncated).
    pub error: Option<String>,
}

/// A call as the ring keeps it: 40 bytes, the error boxed only when there is one.
struct Slot {
    at: i64,
    duration_us: u64,
    status: u16,
    error: Option<Box<str>>,
}

/// A function's last `cap` calls, the oldest overwritten first. It has no lock of its own: it
/// lives in its function's record, under that record's lock, so a call takes one lock for its
/// counters and its ring together.
pub(crate) struct Ring {
    cap: u32,
    /// Where the next call goes once the ring is full: the oldest call.
    next: u32,
    /// Allocated on the first call, at exactly `cap`.
    calls: Vec<Slot>,
}

impl Ring {
    pub(crate) fn new(cap: usize) -> Self {
        Ring {
            cap: u32::try_from(cap.max(1)).unwrap_or(u32::MAX),
            next: 0,
            calls: Vec::new(),
        }
    }

    /// What [`Ring::push`] stores, prepared before the record's lock is taken: the clock read
    /// and the error's copy.
    pub(crate) fn entry(status: u16, took: Duration, error: Option<&str>) -> Entry {
        let at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Entry(Slot {
            at,
            duration_us: u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            status,
            error: error.map(truncate),
        })
    }

    pub(crate) fn push(&mut self, Entry(slot): Entry) {
        let cap = self.cap as usize;
        if self.calls.len() < cap {
            if self.calls.capacity() == 0 {
                self.calls.reserve_exact(cap);
            }
            self.calls.push(slot);
            return;
        }
        let at = self.next as usize;
        self.calls[at] = slot;
        self.next = ((at + 1) % cap) as u32;
    }

    /// Newest first.
    pub(crate) fn snapshot(&self) -> Vec<RecentCall> {
        // Once full, the slots before `next` were written last; those from it on, first.
        let (newer, older) = self.calls.split_at(self.next as usize);
        newer
            .iter()
            .rev()
            .chain(older.iter().rev())
            .map(|s| RecentCall {
                at: s.at,
                duration_us: s.duration_us,
                status: s.status,
                error: s.error.as_deref().map(str::to_owned),
            })
            .collect()
    }

    /// Forgets every call and frees the slots.
    pub(crate) fn clear(&mut self) {
        self.next = 0;
        self.calls = Vec::new();
    }
}

/// One call, ready to be pushed.
pub(crate) struct Entry(Slot);

fn truncate(s: &str) -> Box<str> {
    if s.len() <= MAX_ERROR_BYTES {
        return s.into();
    }
    let mut end = MAX_ERROR_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end]).into_boxed_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_newest_calls() {
        let mut ring = Ring::new(3);
        let durations =
            |ring: &Ring| -> Vec<u64> { ring.snapshot().iter().map(|c| c.duration_us).collect() };
        assert!(durations(&ring).is_empty());
        ring.push(Ring::entry(200, Duration::from_micros(0), None));
        ring.push(Ring::entry(200, Duration::from_micros(1), None));
        assert_eq!(durations(&ring), vec![1, 0]);
        for i in 2..8u64 {
            ring.push(Ring::entry(200, Duration::from_micros(i), None));
            let want: Vec<u64> = (i.saturating_sub(2)..=i).rev().collect();
            assert_eq!(durations(&ring), want, "after {i}");
        }
        ring.clear();
        assert!(durations(&ring).is_empty());
        ring.push(Ring::entry(404, Duration::from_micros(9), None));
        assert_eq!(durations(&ring), vec![9]);
    }

    #[test]
    fn long_errors_are_cut_on_a_char_boundary() {
        let mut ring = Ring::new(1);
        let msg = "é".repeat(400);
        ring.push(Ring::entry(500, Duration::ZERO, Some(&msg)));
        let err = ring.snapshot()[0].error.clone().unwrap_or_default();
        assert!(err.len() <= MAX_ERROR_BYTES + '…'.len_utf8());
        assert!(err.ends_with('…'));
    }
}
