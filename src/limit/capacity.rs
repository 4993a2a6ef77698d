//! A resizable capacity over a [`Semaphore`] whose permits may be out.
//!
//! The semaphore's total permits minus a `debt` is the effective capacity. Growing pays the
//! debt down first and adds the rest as permits (the semaphore hands them to its queued
//! waiters first). Shrinking records the whole decrease as debt *before* removing any free
//! permit, then forgets as many free permits as it can and pays the debt down with them. A
//! returning permit that finds debt (a CAS decrement succeeds) is forgotten instead of
//! released, so after a shrink below the in-flight count nobody new is admitted until
//! in-flight work falls under the new capacity.
//!
//! Recording the debt first closes the window in which a permit released concurrently with
//! the shrink could reach a waiter: once the debt is visible, releases are absorbed. If
//! releases paid part of the debt while the shrink was forgetting free permits, the shrink
//! forgot too many and gives the surplus back with `add_permits`, so the capacity may dip
//! below the target for an instant but never exceeds it.
//!
//! Capacity 0 is a passthrough: its effective capacity is [`PASSTHROUGH_PERMITS`], a virtual
//! capacity no workload reaches. A switch to 0 therefore admits every queued waiter, and a
//! switch back to `n` turns everything still in flight into debt, exactly like any shrink.
//! Concurrent calls to `set` commute: each applies the delta between the target it replaced
//! and the one it installed.

use crate::sync::{AtomicUsize, Ordering::AcqRel, Ordering::Acquire, Ordering::Relaxed};
use crate::{Permit, Semaphore};

/// The virtual capacity behind a capacity of 0 (passthrough). Four of these plus
/// [`MAX_CAPACITY`](super::MAX_CAPACITY) fit in the semaphore, so even several concurrent,
/// reordered switches to 0 cannot overflow it.
pub(crate) const PASSTHROUGH_PERMITS: usize = Semaphore::MAX_PERMITS / 5;

/// The permits a configured capacity stands for.
fn effective(capacity: usize) -> usize {
    if capacity == 0 {
        PASSTHROUGH_PERMITS
    } else {
        capacity
    }
}

/// The configured capacity, the semaphore that enforces it, and the debt of a shrink.
#[derive(Debug)]
pub(crate) struct Capacity {
    /// The configured capacity (0 = passthrough): what `Limiter::capacity` reports.
    target: AtomicUsize,
    /// Permits to absorb: returning permits are forgotten while this is positive.
    debt: AtomicUsize,
    /// Enforces the capacity (hard mode). Soft limiters never touch it. Held inline (not in
    /// an `Arc` of its own): permits and waiters borrow it from the limiter's shared state,
    /// which they keep alive, so a permit costs one reference count, not two.
    sem: Semaphore,
    /// Soft limiters only store the target.
    enforced: bool,
}

impl Capacity {
    pub(crate) fn new(capacity: usize, enforced: bool) -> Self {
        let permits = if enforced { effective(capacity) } else { 0 };
        Capacity {
            target: AtomicUsize::new(capacity),
            debt: AtomicUsize::new(0),
            sem: Semaphore::new(permits),
            enforced,
        }
    }

    pub(crate) fn get(&self) -> usize {
        self.target.load(Relaxed)
    }

    pub(crate) fn semaphore(&self) -> &Semaphore {
        &self.sem
    }

    /// Permits still owed by a shrink (approximate under contention).
    pub(crate) fn debt(&self) -> usize {
        self.debt.load(Relaxed)
    }

    /// Installs capacity `n` (already validated) and applies the change to the semaphore.
    pub(crate) fn set(&self, n: usize) {
        let old = self.target.swap(n, AcqRel);
        if !self.enforced {
            return;
        }
        let (from, to) = (effective(old), effective(n));
        if to > from {
            self.grow(to - from);
        } else if from > to {
            self.shrink(from - to);
        }
    }

    fn grow(&self, by: usize) {
        let paid = take_up_to(&self.debt, by);
        let rest = by - paid;
        if rest > 0 {
            self.add(rest);
        }
    }

    fn shrink(&self, by: usize) {
        // Debt first: from here on, returning permits are absorbed rather than handed out.
        self.debt.fetch_add(by, AcqRel);
        let want = by.min(self.debt.load(Acquire));
        self.absorb_free(want);
    }

    /// Forgets up to `n` free permits and pays the debt with them. If releases paid part of
    /// the debt meanwhile, more was removed than owed: the surplus goes back.
    fn absorb_free(&self, n: usize) {
        let forgotten = self.sem.forget_permits(n);
        if forgotten > 0 {
            let paid = take_up_to(&self.debt, forgotten);
            if forgotten > paid {
                self.add(forgotten - paid);
            }
        }
    }

    fn add(&self, n: usize) {
        // Only reordered, concurrent switches to passthrough could overflow (see
        // PASSTHROUGH_PERMITS); the overflow is transient, so wait for the shrink in flight.
        while self.sem.try_add_permits(n).is_err() {
            std::thread::yield_now();
        }
    }

    /// Returns a permit: absorbed (forgotten) while there is debt, released otherwise.
    #[inline]
    pub(crate) fn give_back(&self, permit: Permit<'_>) {
        if take_up_to(&self.debt, 1) == 1 {
            permit.forget();
            return;
        }
        drop(permit);
        // A shrink that recorded its debt after the check above may have looked for free
        // permits before this one was released, and missed it: the permit would then sit
        // free above the capacity, with nobody left to pay the debt. Reading the debt with
        // a read-modify-write orders the read after the release against the shrink's own
        // read-modify-write of the debt: either the shrink's search saw this permit, or this
        // sees the shrink's debt and takes a free permit back itself.
        if self.debt.fetch_add(0, AcqRel) > 0 {
            self.absorb_free(1);
        }
    }
}

/// Decrements `counter` by up to `n` without going below zero; returns the amount taken.
/// Inlined: on a release it is the debt pre-check, one load when there is no debt.
#[inline]
fn take_up_to(counter: &AtomicUsize, n: usize) -> usize {
    let mut current = counter.load(Relaxed);
    loop {
        if current == 0 {
            return 0;
        }
        let take = current.min(n);
        match counter.compare_exchange_weak(current, current - take, AcqRel, Relaxed) {
            Ok(_) => return take,
            Err(actual) => current = actual,
        }
    }
}
