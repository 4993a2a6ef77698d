//! The wake batch: wakers collected while the handoff role is held, woken only after it is
//! given back (invariant I7), in grant order.

use core::mem::MaybeUninit;
use core::task::Waker;

/// How many wakers one pass collects before it gives the role back and wakes them.
#[cfg(not(loom))]
const WAKE_BATCH: usize = 16;
/// Under loom, two: the models then also explore the path where a pass stops because its
/// batch is full (with 16 no model would queue enough waiters to reach it).
#[cfg(loom)]
const WAKE_BATCH: usize = 2;

/// Wakers collected during a pass, woken after the role is given back. Slots `next..len` are
/// initialised; the array is never zeroed or dropped as a whole (a measured cost per pass).
pub(crate) struct WakeBatch {
    wakers: [MaybeUninit<Waker>; WAKE_BATCH],
    len: usize,
    next: usize,
}

impl WakeBatch {
    pub(crate) fn new() -> Self {
        Self {
            wakers: [const { MaybeUninit::uninit() }; WAKE_BATCH],
            len: 0,
            next: 0,
        }
    }

    /// No waker waits to be woken.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == self.next
    }

    pub(crate) fn is_full(&self) -> bool {
        self.len == WAKE_BATCH
    }

    pub(crate) fn push(&mut self, waker: Waker) {
        assert!(!self.is_full(), "wake batch overflow");
        self.wakers[self.len].write(waker);
        self.len += 1;
    }

    /// Wakes in grant (FIFO) order.
    pub(crate) fn wake_all(&mut self) {
        while self.next < self.len {
            // SAFETY: slots `next..len` are initialised, and `next` moves past this slot
            // before the waker is used, so it is read exactly once even if `wake` panics.
            let waker = unsafe { self.wakers[self.next].assume_init_read() };
            self.next += 1;
            waker.wake();
        }
        self.len = 0;
        self.next = 0;
    }
}

impl Drop for WakeBatch {
    fn drop(&mut self) {
        // Only non-empty when a wake panicked: the remaining waiters were granted and must
        // still be woken while unwinding.
        self.wake_all();
    }
}
