//! A bounded ring of a function's most recent calls, kept in memory only.
//!
//! App function calls are not written to the database (the call path does no database
//! access), so the dashboard's execution history of an app function comes from here: the last
//! [`RECENT_CALLS`] calls per function, lost on restart. Compiled (seed 001) functions and
//! async runs keep their durable execution rows in the store as before.

use std::collections::VecDeque;
use std::sync::Mutex;
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

pub(crate) struct Ring {
    cap: usize,
    calls: Mutex<VecDeque<RecentCall>>,
}

impl Ring {
    pub(crate) fn new(cap: usize) -> Self {
        Ring {
            cap,
            calls: Mutex::new(VecDeque::with_capacity(cap)),
        }
    }

    pub(crate) fn push(&self, status: u16, took: Duration, error: Option<&str>) {
        let at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let call = RecentCall {
            at,
            duration_us: u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            status,
            error: error.map(truncate),
        };
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        if calls.len() == self.cap {
            calls.pop_front();
        }
        calls.push_back(call);
    }

    /// Newest first.
    pub(crate) fn snapshot(&self) -> Vec<RecentCall> {
        let calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        calls.iter().rev().cloned().collect()
    }
}

fn truncate(s: &str) -> String {
    if s.len() <= MAX_ERROR_BYTES {
        return s.to_owned();
    }
    let mut end = MAX_ERROR_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_newest_calls() {
        let ring = Ring::new(3);
        for i in 0..5u64 {
            ring.push(200, Duration::from_micros(i), None);
        }
        let got: Vec<u64> = ring.snapshot().iter().map(|c| c.duration_us).collect();
        assert_eq!(got, vec![4, 3, 2]);
    }

    #[test]
    fn long_errors_are_cut_on_a_char_boundary() {
        let ring = Ring::new(1);
        let msg = "é".repeat(400);
        ring.push(500, Duration::ZERO, Some(&msg));
        let err = ring.snapshot()[0].error.clone().unwrap_or_default();
        assert!(err.len() <= MAX_ERROR_BYTES + '…'.len_utf8());
        assert!(err.ends_with('…'));
    }
}
