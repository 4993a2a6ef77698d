//! Encoding of the semaphore's state word (DESIGN.md §2).
//!
//! `permits << PERMIT_SHIFT | DIRTY | HANDOFF | QUEUED | CLOSED`

use crate::sync::{const_unless_loom, AtomicUsize, Ordering};

/// `close()` was called. Never cleared.
pub(crate) const CLOSED: usize = 1 << 0;
/// The queue may be non-empty: the permit field holds deposits for waiters, not free permits.
pub(crate) const QUEUED: usize = 1 << 1;
/// Some thread holds the handoff role and owns the private waiter list.
pub(crate) const HANDOFF: usize = 1 << 2;
/// Work was pushed while `HANDOFF` was held: the holder must run another pass.
pub(crate) const DIRTY: usize = 1 << 3;

pub(crate) const PERMIT_SHIFT: u32 = 4;
pub(crate) const FLAG_MASK: usize = (1 << PERMIT_SHIFT) - 1;

/// The largest number of permits a semaphore can hold, and the largest request:
/// `usize::MAX >> 7` (2^57 − 1 on 64-bit targets, 2^25 − 1 on 32-bit ones).
///
/// Bounded by the waiter node's `assigned` field (7 flag bits below it), which must hold any
/// partial assignment of a request; the state word (4 flag bits) has room to spare.
pub(crate) const MAX_PERMITS: usize = usize::MAX >> super::waiter::flags::ASSIGNED_SHIFT;

const _: () = assert!(MAX_PERMITS <= usize::MAX >> PERMIT_SHIFT);

#[inline(always)]
pub(crate) const fn permits(state: usize) -> usize {
    state >> PERMIT_SHIFT
}

#[inline(always)]
pub(crate) const fn with_permits(state: usize, permits: usize) -> usize {
    (state & FLAG_MASK) | (permits << PERMIT_SHIFT)
}

#[inline(always)]
pub(crate) const fn from_permits(permits: usize) -> usize {
    permits << PERMIT_SHIFT
}

/// The state word. It has no `store`: every write is a read-modify-write, so every write after
/// a Release RMW continues that RMW's release sequence. The protocol depends on it: a role-taking
/// CAS synchronises with every earlier pusher's and depositor's RMW, and an Acquire load that
/// sees `CLOSED` synchronises with `close()` (DESIGN.md §8). A plain store would cut the chain.
#[derive(Debug)]
#[repr(transparent)]
pub(crate) struct StateWord(AtomicUsize);

impl StateWord {
    const_unless_loom! {
        #[inline]
        pub(crate) fn new(value: usize) -> StateWord {
            StateWord(AtomicUsize::new(value))
        }
    }

    #[inline(always)]
    pub(crate) fn load(&self, order: Ordering) -> usize {
        self.0.load(order)
    }

    #[inline(always)]
    pub(crate) fn fetch_add(&self, value: usize, order: Ordering) -> usize {
        self.0.fetch_add(value, order)
    }

    #[inline(always)]
    pub(crate) fn fetch_or(&self, value: usize, order: Ordering) -> usize {
        self.0.fetch_or(value, order)
    }

    #[inline(always)]
    pub(crate) fn compare_exchange(
        &self,
        current: usize,
        new: usize,
        success: Ordering,
        failure: Ordering,
    ) -> Result<usize, usize> {
        self.0.compare_exchange(current, new, success, failure)
    }

    #[inline(always)]
    pub(crate) fn compare_exchange_weak(
        &self,
        current: usize,
        new: usize,
        success: Ordering,
        failure: Ordering,
    ) -> Result<usize, usize> {
        self.0.compare_exchange_weak(current, new, success, failure)
    }
}
