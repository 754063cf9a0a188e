//! The scaler of one resource pool: decides which slots run, off the call path.
//!
//! - **Up:** while calls wait for a free slot (`ResourcePool::waiting`), start instances until
//!   the ones already starting could absorb the waiting calls (`concurrency` each), up to
//!   `workers_max`. A waiting call wakes the scaler at once; it does not wait for a tick.
//! - **Down:** a ready instance with no call running and none ended for `idle_timeout_s` is
//!   retired (atomically: `Worker::try_retire_idle`, so no call is lost), down to
//!   `workers_min`, which may be 0. Its instance row stays, as `stopped`.
//!
//! The scaler reads only atomics and per-slot locks; it never touches the store itself (the
//! slots' supervisors persist their states).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::pool::{ResourcePool, SlotRun, StopReason};

/// How often idle instances are looked for: a quarter of the idle timeout, within these bounds.
const TICK_MIN: Duration = Duration::from_millis(100);
const TICK_MAX: Duration = Duration::from_secs(1);

pub(crate) async fn run(pool: Weak<ResourcePool>) {
    let tick = match pool.upgrade() {
        Some(p) => (p.limits.idle_timeout / 4).clamp(TICK_MIN, TICK_MAX),
        None => return,
    };
    loop {
        let Some(p) = pool.upgrade() else { return };
        if p.stopping.load(Ordering::SeqCst) {
            return;
        }
        let failed = p.status().failed.is_some();
        if !failed {
            scale_up(&p);
            scale_down(&p);
        }
        // Sleep without a strong reference, so a pool dropped without `stop` ends this task.
        // (`notify_one` keeps a permit when nobody waits, so a wake-up is not lost here.)
        let wake = p.wake_scaler.clone();
        drop(p);
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(tick) => {}
        }
    }
}

/// Which slots serve (starting or ready, not stopping). A slot still draining after a
/// scale-down is not counted, so it is never retired twice nor counted toward `workers_min`.
fn active_slots(p: &ResourcePool) -> Vec<bool> {
    p.runs
        .lock()
        .map(|r| {
            r.iter()
                .map(|r| r.as_ref().is_some_and(SlotRun::serving))
                .collect()
        })
        .unwrap_or_default()
}

fn scale_up(p: &Arc<ResourcePool>) {
    let waiting = p.waiting.load(Ordering::SeqCst);
    let active = active_slots(p);
    let running = active.iter().filter(|a| **a).count();
    let (_, starting) = p.counts();
    let mut need = if waiting == 0 {
        0
    } else {
        let absorbed = starting * p.limits.concurrency;
        waiting
            .saturating_sub(absorbed)
            .div_ceil(p.limits.concurrency.max(1))
    };
    // `workers_min` instances always run (a crashed-out slot is restarted by its supervisor;
    // this covers slots that ended).
    need = need.max(p.limits.min.saturating_sub(running));
    for (i, is_active) in active.iter().enumerate() {
        if need == 0 {
            break;
        }
        if !is_active && p.start_slot(i) {
            tracing::info!(app = %p.app, resource = %p.resource, waiting, "scaling up");
            need -= 1;
        }
    }
}

fn scale_down(p: &ResourcePool) {
    let active = active_slots(p);
    let mut running = active.iter().filter(|a| **a).count();
    if running <= p.limits.min || p.waiting.load(Ordering::SeqCst) > 0 {
        return;
    }
    let now = p.now_ms();
    let idle_ms = p.limits.idle_timeout.as_millis() as u64;
    // Retire the highest slots first, so the low ones keep the warm instances.
    for i in (0..p.slots.len()).rev() {
        if running <= p.limits.min {
            break;
        }
        if !active[i] {
            continue;
        }
        let slot = &p.slots[i];
        if now.saturating_sub(slot.last_used.load(Ordering::Relaxed)) < idle_ms {
            continue;
        }
        let retired = {
            let Ok(mut w) = slot.worker.lock() else {
                continue;
            };
            match w.as_ref() {
                Some(worker) if worker.is_idle() && worker.try_retire_idle() => {
                    *w = None;
                    true
                }
                _ => false,
            }
        };
        if !retired {
            continue;
        }
        if let Ok(runs) = p.runs.lock()
            && let Some(run) = &runs[i]
        {
            let _ = run.stop.send(Some(StopReason::Idle));
        }
        tracing::info!(app = %p.app, resource = %p.resource, instance = %slot.id, "scaling down (idle)");
        running -= 1;
    }
}
