//! Endpoint leases: how long a ready http instance stays routable without a heartbeat.
//!
//! The supervisor renews an instance's lease on every successful heartbeat (a health probe of
//! the ready process); the edge reads it lock-free on every pick and skips an instance whose
//! lease ran out, so a hung or unreachable instance stops receiving traffic within the TTL.
//! Times are monotonic milliseconds since a process-wide origin, so wall-clock jumps never
//! expire or extend a lease.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

/// Milliseconds on the monotonic clock since this process first asked (always ≥ 1).
pub fn mono_ms() -> i64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    let origin = *ORIGIN.get_or_init(Instant::now);
    i64::try_from(origin.elapsed().as_millis()).unwrap_or(i64::MAX) + 1
}

/// A deadline until which an endpoint may be routed to; 0 means no lease (never routable).
#[derive(Debug, Default)]
pub struct Lease {
    until_ms: AtomicI64,
}

impl Lease {
    /// Extends the lease to `ttl` from now.
    pub fn renew(&self, ttl: Duration) {
        self.renew_at(mono_ms(), ttl);
    }

    fn renew_at(&self, now: i64, ttl: Duration) {
        let ttl = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        self.until_ms
            .store(now.saturating_add(ttl), Ordering::Release);
    }

    /// Drops the lease: the endpoint is not routable until the next renewal.
    pub fn revoke(&self) {
        self.until_ms.store(0, Ordering::Release);
    }

    /// Whether the lease is still running now.
    pub fn is_live(&self) -> bool {
        self.is_live_at(mono_ms())
    }

    fn is_live_at(&self, now: i64) -> bool {
        now < self.until_ms.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_runs_for_its_ttl_and_a_renewal_extends_it() {
        let lease = Lease::default();
        assert!(!lease.is_live_at(1), "no lease before the first renewal");
        lease.renew_at(1_000, Duration::from_secs(3));
        assert!(lease.is_live_at(1_000));
        assert!(lease.is_live_at(3_999));
        assert!(!lease.is_live_at(4_000), "expired after the ttl");
        lease.renew_at(4_500, Duration::from_secs(3));
        assert!(lease.is_live_at(7_499), "a renewal brings it back");
        lease.revoke();
        assert!(!lease.is_live_at(4_600), "revoked at once");
    }

    #[test]
    fn the_monotonic_clock_starts_above_zero_and_never_goes_back() {
        let a = mono_ms();
        let b = mono_ms();
        assert!(a >= 1 && b >= a);
    }
}
