//! The waiter node that lives inside every `Acquire` future, and the owner's side of its
//! protocol: publishing it, re-registering wakers, observing the handoff, and cancelling.
//! DESIGN.md §2–§3.

use core::marker::PhantomPinned;
use core::ptr;
use core::task::{Context, Poll, Waker};

use super::error::AcquireError;
use super::handoff::Links;
use super::state::MAX_PERMITS;
use super::Semaphore;
use crate::sync::{const_unless_loom, AtomicUsize, Backoff, Ordering::*, UnsafeCell};

/// Node state flags (DESIGN.md §2). The upper bits hold the permits partially assigned to
/// the node while it is at the head of the queue.
pub(crate) mod flags {
    /// Published in the request stack; owned by the queue until resolved or cancelled.
    pub(crate) const WAITING: usize = 1 << 0;
    /// The owner is writing the waker slot; the holder must not read it.
    pub(crate) const REGISTERING: usize = 1 << 1;
    /// All requested permits belong to the owner; the node is off the list.
    pub(crate) const GRANTED: usize = 1 << 2;
    /// The semaphore closed while the node was queued; partial permits were refunded.
    pub(crate) const CLOSED_OUT: usize = 1 << 3;
    /// The owner is dropping the node; the holder must unlink it and refund `assigned`.
    pub(crate) const CANCELLED: usize = 1 << 4;
    /// The handoff holder will never touch the node again.
    pub(crate) const DONE: usize = 1 << 5;
    /// The future has returned `Ready` (owner-private).
    pub(crate) const FINISHED: usize = 1 << 6;

    pub(crate) const RESOLVED: usize = GRANTED | CLOSED_OUT;
    pub(crate) const ASSIGNED_SHIFT: u32 = 7;

    #[inline(always)]
    pub(crate) const fn assigned(state: usize) -> usize {
        state >> ASSIGNED_SHIFT
    }
}

use flags::*;

/// An intrusive waiter. Every field another thread can reach is an atomic or an `UnsafeCell`,
/// and the node is `!Unpin`, so the owner's `&mut` to its future never claims uniqueness over
/// memory the handoff holder reads through raw pointers.
#[derive(Debug)]
pub(crate) struct Waiter {
    pub(crate) state: AtomicUsize,
    /// Permits asked for. Written by the owner before publication, read by the holder while
    /// queued; immutable in between.
    pub(crate) requested: UnsafeCell<usize>,
    /// The waker to call when resolved. See the `REGISTERING` protocol.
    pub(crate) waker: UnsafeCell<Option<Waker>>,
    /// Request-stack and list links; private to `handoff.rs`, which owns their protocol.
    pub(super) links: Links,
    _pinned: PhantomPinned,
}

// SAFETY: every field shared between threads is an atomic or an `UnsafeCell` whose accesses
// follow the ownership protocol in DESIGN.md §2 (owner before publication, holder while it
// holds HANDOFF, owner again after observing DONE). The raw pointers are links, not ownership.
unsafe impl Send for Waiter {}
// SAFETY: as above; shared access only goes through atomics and protocol-guarded cells.
unsafe impl Sync for Waiter {}

impl Waiter {
    const_unless_loom! {
        #[inline]
        pub(crate) fn new(requested: usize) -> Waiter {
            Waiter {
                state: AtomicUsize::new(0),
                requested: UnsafeCell::new(requested),
                waker: UnsafeCell::new(None),
                links: Links::new(),
                _pinned: PhantomPinned,
            }
        }
    }

    #[inline]
    fn as_ptr(&self) -> *mut Waiter {
        ptr::from_ref(self).cast_mut()
    }

    /// The number of permits this waiter asks for.
    ///
    /// Only the owner calls this, and only when the holder cannot be writing (the field is
    /// never written after publication), so the read cannot race.
    #[inline]
    pub(crate) fn requested(&self) -> usize {
        // SAFETY: `requested` is written only before publication (by the owner, on this
        // thread); afterwards every access is a read.
        self.requested.with(|p| unsafe { *p })
    }

    /// The uncontended first poll, kept small so it inlines into `poll`: takes the permits
    /// if the node was never published and they are free. Anything else (a re-poll, zero or
    /// oversized requests, a closed or busy semaphore) returns `None` for the full path.
    #[inline]
    pub(crate) fn try_fast(&self, sem: &Semaphore) -> Option<usize> {
        // A zero state means the node was never published: only this thread has touched it.
        if self.state.load(Relaxed) != 0 {
            return None;
        }
        let n = self.requested();
        if n.wrapping_sub(1) >= MAX_PERMITS || sem.try_take(n).is_err() {
            return None;
        }
        self.state.store(FINISHED, Relaxed);
        Some(n)
    }

    /// Polls the acquire this node belongs to.
    ///
    /// # Safety
    /// `self` must be pinned (it stays at this address until dropped), and `sem` must be the
    /// same semaphore on every call for this node.
    #[inline]
    pub(crate) unsafe fn poll_acquire(
        &self,
        sem: &Semaphore,
        cx: &mut Context<'_>,
    ) -> Poll<Result<usize, AcquireError>> {
        let state = self.state.load(Acquire);
        if state == 0 {
            // SAFETY: forwarded from this function's contract.
            return unsafe { self.poll_first(sem, cx) };
        }
        assert!(
            state & FINISHED == 0,
            "fairgate: `Acquire` polled after it completed"
        );
        if state & RESOLVED != 0 {
            return Poll::Ready(self.finish(state));
        }
        self.reregister(cx)
    }

    /// First poll: the fast path, or publish the node and enqueue it.
    #[inline]
    unsafe fn poll_first(
        &self,
        sem: &Semaphore,
        cx: &mut Context<'_>,
    ) -> Poll<Result<usize, AcquireError>> {
        let n = self.requested();
        let outcome = if n > MAX_PERMITS {
            Some(Err(AcquireError::TooManyPermits { requested: n }))
        } else if n == 0 {
            Some(if sem.is_closed() {
                Err(AcquireError::Closed)
            } else {
                Ok(0)
            })
        } else {
            match sem.try_take(n) {
                Ok(()) => Some(Ok(n)),
                Err(crate::TryAcquireError::Closed) => Some(Err(AcquireError::Closed)),
                Err(_) => None,
            }
        };
        if let Some(result) = outcome {
            // Never published: nobody else can see the node.
            self.state.store(FINISHED, Relaxed);
            return Poll::Ready(result);
        }
        // SAFETY: the node is not published yet, so this thread is the only one with access.
        self.waker
            .with_mut(|w| unsafe { *w = Some(cx.waker().clone()) });
        self.state.store(WAITING, Relaxed);
        // SAFETY: the node is pinned and was never published; `enqueue` publishes it with
        // Release ordering so the fields written above are visible to the holder.
        unsafe { sem.enqueue(self.as_ptr()) };
        let state = self.state.load(Acquire);
        if state & RESOLVED != 0 {
            return Poll::Ready(self.finish(state));
        }
        Poll::Pending
    }

    /// Completes a resolved node: hands its permits to the caller or reports the close.
    fn finish(&self, state: usize) -> Result<usize, AcquireError> {
        if state & DONE != 0 {
            // The holder is finished with the node, so nobody else writes its state: a plain
            // store saves an RMW on the common path (woken after the pass, then polled).
            // `state` may be a value read before this thread cleared REGISTERING; the flag
            // must not come back.
            self.state.store((state & !REGISTERING) | FINISHED, Relaxed);
        } else {
            // The holder may still be between its resolve CAS and its DONE store (it reads
            // only the waker there), so FINISHED must not overwrite that DONE: an RMW.
            self.state.fetch_or(FINISHED, Relaxed);
        }
        if state & GRANTED != 0 {
            Ok(self.requested())
        } else {
            Err(AcquireError::Closed)
        }
    }

    /// A re-poll while queued: swap in the new waker if it changed, under `REGISTERING`.
    fn reregister(&self, cx: &mut Context<'_>) -> Poll<Result<usize, AcquireError>> {
        // Cloned before REGISTERING is set: a clone that panics must not leave the flag set
        // (the holder would then skip the wake, believing the owner is running).
        let fresh = cx.waker().clone();
        let mut state = self.state.load(Acquire);
        loop {
            if state & RESOLVED != 0 {
                return Poll::Ready(self.finish(state));
            }
            match self
                .state
                .compare_exchange_weak(state, state | REGISTERING, Acquire, Acquire)
            {
                Ok(_) => break,
                Err(actual) => state = actual,
            }
        }
        // SAFETY: REGISTERING is set and the node is unresolved, so the holder will not touch
        // the waker slot until we clear the flag (it resolves without reading it instead).
        let old = self.waker.with_mut(|w| unsafe {
            match &*w {
                Some(current) if current.will_wake(&fresh) => Some(fresh),
                _ => (*w).replace(fresh),
            }
        });
        let mut state = self.state.load(Acquire);
        loop {
            match self
                .state
                .compare_exchange_weak(state, state & !REGISTERING, AcqRel, Acquire)
            {
                Ok(_) => break,
                Err(actual) => state = actual,
            }
        }
        // The old (or unused fresh) waker may run arbitrary code when dropped; do it outside
        // the flag.
        drop(old);
        if state & RESOLVED != 0 {
            return Poll::Ready(self.finish(state));
        }
        Poll::Pending
    }

    /// Waits until the handoff holder has finished with this node (DESIGN.md §7). If no thread
    /// holds the role, a holder gave it back leaving this node's cancel request on the stack
    /// (the helping bound): take the role and run the pass here.
    fn wait_done(&self, sem: &Semaphore) {
        let mut backoff = Backoff::new();
        while self.state.load(Acquire) & DONE == 0 {
            if !sem.after_deposit() {
                backoff.snooze();
            }
        }
    }

    /// Called from the owning future's `Drop`: makes sure nothing is lost and that no other
    /// thread can reach the node once this returns.
    ///
    /// # Safety
    /// `self` must be pinned and `sem` the semaphore it was polled with.
    #[inline]
    pub(crate) unsafe fn cancel(&self, sem: &Semaphore) {
        // Never published (or finished on the fast path), or completed with the holder done
        // with it (the common end of a queued acquire): nothing to do. The Acquire load makes
        // the holder's last accesses happen-before the node is freed (I6); for a node that was
        // never published only this thread wrote the state.
        let state = self.state.load(Acquire);
        if state & WAITING == 0 || state & (FINISHED | DONE) == FINISHED | DONE {
            return;
        }
        // SAFETY: forwarded from this function's contract.
        unsafe { self.cancel_published(sem) }
    }

    /// # Safety
    /// As for `cancel`, and the node was published.
    #[cold]
    unsafe fn cancel_published(&self, sem: &Semaphore) {
        let mut state = self.state.load(Acquire);
        loop {
            if state & RESOLVED != 0 {
                if state & (GRANTED | FINISHED) == GRANTED {
                    // Woken but never polled: the permits are ours; pass them on.
                    sem.release(self.requested());
                }
                self.wait_done(sem);
                return;
            }
            match self
                .state
                .compare_exchange_weak(state, state | CANCELLED, AcqRel, Acquire)
            {
                Ok(_) => break,
                Err(actual) => state = actual,
            }
        }
        // SAFETY: the node is pinned and stays alive until `wait_done` returns; the holder
        // unlinks it, refunds its partial permits and then sets DONE.
        unsafe { sem.request_cancel(self.as_ptr()) };
        self.wait_done(sem);
    }
}
