//! The per-store memory cap: wasmtime's `StoreLimits`, plus a record of whether the cap was hit.

use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};

/// The limiter each call's store uses.
///
/// `StoreLimits` with `trap_on_grow_failure` turns a `memory.grow` past the cap into a trap, but
/// its error text does not say why; `exceeded` records it so the caller can report
/// [`WasmError::MemoryLimit`](crate::WasmError::MemoryLimit) without parsing messages.
/// Written by wasmtime (through [`ResourceLimiter`]) on the calling thread; read by the same
/// thread after the call returns.
pub(crate) struct GuestLimits {
    inner: StoreLimits,
    cap: usize,
    exceeded: bool,
}

impl GuestLimits {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            inner: StoreLimitsBuilder::new()
                .memory_size(cap)
                .trap_on_grow_failure(true)
                .build(),
            cap,
            exceeded: false,
        }
    }

    /// Whether the guest asked for more memory than the cap.
    pub(crate) fn exceeded(&self) -> bool {
        self.exceeded
    }
}

impl ResourceLimiter for GuestLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.cap {
            self.exceeded = true;
        }
        self.inner.memory_growing(current, desired, maximum)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: usize = 64 << 10;

    #[test]
    fn growth_within_the_cap_is_allowed() {
        let mut limits = GuestLimits::new(4 * PAGE);
        assert!(
            limits
                .memory_growing(PAGE, 4 * PAGE, None)
                .is_ok_and(|ok| ok)
        );
        assert!(!limits.exceeded());
    }

    #[test]
    fn growth_past_the_cap_traps_and_is_recorded() {
        let mut limits = GuestLimits::new(4 * PAGE);
        assert!(limits.memory_growing(PAGE, 5 * PAGE, None).is_err());
        assert!(limits.exceeded());
    }
}
