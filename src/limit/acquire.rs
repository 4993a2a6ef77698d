//! [`Acquire`]: the future of [`Limiter::acquire`](super::Limiter::acquire).
//!
//! The uncontended path is one `try_acquire` on the semaphore and an `Arc` clone (plus a
//! counter in soft mode): no clock read, no allocation. Only an acquisition that must wait reserves a
//! queue slot, reads the clock and (with a timeout) arms a tokio timer, all in place inside
//! this future.

use std::fmt;
use std::future::Future;
use std::marker::PhantomPinned;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use super::limiter::Shared;
use super::permit::LimitPermit;
use super::rejected::{RejectReason, Rejected};
use crate::Acquire as SemaphoreAcquire;

/// The semaphore's acquire future with its borrow extended (see `Acquire::start`).
type StaticWait = SemaphoreAcquire<'static>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Not polled yet: nothing reserved.
    Start,
    /// Holds a queue slot and a semaphore waiter (`wait`).
    Queued,
    /// Resolved; polling again panics.
    Done,
}

/// The future of [`Limiter::acquire`](super::Limiter::acquire) and (feature `timeout`)
/// `Limiter::acquire_until`: resolves to a
/// [`LimitPermit`] or a [`Rejected`].
///
/// `Send + 'static`. Does nothing until polled. Cancel-safe: dropping it while queued
/// leaves the queue at once (the queue slot is returned, a permit granted meanwhile goes to
/// the next waiter) and reports a cancellation to the observer.
///
/// # Panics
/// When polled again after it resolved. Waiting with a timeout (`queue_timeout` or
/// `acquire_until`, feature `timeout`) panics outside a tokio runtime with its timer enabled,
/// as tokio's timers do; an acquisition that needs no wait never touches the timer.
#[must_use = "futures do nothing unless polled"]
pub struct Acquire {
    /// The semaphore waiter while queued. Structurally pinned: never moved, only dropped in
    /// place. It borrows the semaphore inside `shared`'s allocation, so it is declared
    /// before `shared` (fields drop in order; `leave_queue` drops it even earlier).
    wait: Option<SemaphoreAcquire<'static>>,
    shared: Arc<Shared>,
    stage: Stage,
    /// When the acquisition started to wait (read only on the slow path).
    queued_at: Option<Instant>,
    /// The caller's deadline (`acquire_until`).
    #[cfg(feature = "timeout")]
    deadline: Option<Instant>,
    /// The timer bounding the wait and the reason it reports. Structurally pinned like `wait`.
    #[cfg(feature = "timeout")]
    timer: Option<(tokio::time::Sleep, RejectReason)>,
    _pinned: PhantomPinned,
}

impl Acquire {
    pub(crate) fn new(shared: Arc<Shared>, deadline: Option<Instant>) -> Self {
        #[cfg(not(feature = "timeout"))]
        let _ = deadline;
        Acquire {
            wait: None,
            shared,
            stage: Stage::Start,
            queued_at: None,
            #[cfg(feature = "timeout")]
            deadline,
            #[cfg(feature = "timeout")]
            timer: None,
            _pinned: PhantomPinned,
        }
    }

    fn waited(&self) -> Duration {
        self.queued_at.map(|t| t.elapsed()).unwrap_or_default()
    }

    /// The first poll: admit at once, refuse, or join the queue (`Ok(None)`).
    fn start(&mut self) -> Result<Option<LimitPermit>, Rejected> {
        if let Some(permit) = self.shared.try_admit()? {
            return Ok(Some(permit));
        }
        #[cfg(feature = "timeout")]
        let now = Instant::now();
        #[cfg(feature = "timeout")]
        if self.deadline.is_some_and(|d| d <= now) {
            return Err(self
                .shared
                .reject(RejectReason::DeadlineExceeded, Duration::ZERO));
        }
        if !self.shared.reserve_queue_slot() {
            return Err(self.shared.reject(RejectReason::QueueFull, Duration::ZERO));
        }
        #[cfg(feature = "timeout")]
        {
            // Creating the timer panics outside a tokio runtime, while `stage` is still
            // `Start` (so `Drop` returns nothing): the guard gives the slot back on unwind.
            let slot = ReservedSlot(&self.shared);
            let timer = self.timer_from(now);
            std::mem::forget(slot);
            self.queued_at = Some(now);
            self.timer = timer;
        }
        #[cfg(not(feature = "timeout"))]
        {
            self.queued_at = Some(Instant::now());
        }
        let wait = self.shared.capacity.semaphore().acquire();
        // Why extending the borrow is sound: the waiter borrows the semaphore inside
        // `self.shared`'s allocation, and the borrow ends before that allocation can be freed,
        // on every path:
        // - the `Arc` keeps the allocation alive at a fixed address; `shared` is never
        //   reassigned, and nothing reaches a `Shared` mutably (no `Arc::get_mut`,
        //   `make_mut` or `try_unwrap` in the crate), so the semaphore is never moved;
        // - `wait` is dropped before `shared`: `leave_queue` drops it first (from `poll` and
        //   from `Drop`), and should a drop unwind, fields drop in declaration order, `wait`
        //   first. A waiter exists only once `poll` ran, i.e. once the `!Unpin` `Acquire`
        //   is pinned, so its memory is not reused without that drop; leaking the `Acquire`
        //   leaks the `Arc` too, which keeps the semaphore alive for good;
        // - `wait` is private: no method, `Debug` or `Clone` hands it (or a reference) out,
        //   and the `Permit<'static>` it yields goes at once into `Shared::admit` (a
        //   `LimitPermit`, which checks the semaphore and holds its own `Arc`) or
        //   `Capacity::give_back`, while `self.shared` is alive.
        // SAFETY: the `Arc` outlives the borrow on every path above.
        let wait = unsafe { std::mem::transmute::<SemaphoreAcquire<'_>, StaticWait>(wait) };
        self.wait = Some(wait);
        self.stage = Stage::Queued;
        Ok(None)
    }

    /// The earlier of the queue timeout and the caller's deadline, as a tokio timer.
    #[cfg(feature = "timeout")]
    fn timer_from(&self, now: Instant) -> Option<(tokio::time::Sleep, RejectReason)> {
        // A timeout too far out to represent is no timeout.
        let queue_end = self
            .shared
            .config
            .queue_timeout
            .and_then(|t| now.checked_add(t));
        let (end, reason) = match (queue_end, self.deadline) {
            (Some(q), Some(d)) if d <= q => (d, RejectReason::DeadlineExceeded),
            (Some(q), _) => (q, RejectReason::QueueTimeout),
            (None, Some(d)) => (d, RejectReason::DeadlineExceeded),
            (None, None) => return None,
        };
        let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(end));
        Some((sleep, reason))
    }

    /// Ends a wait: drops the semaphore waiter in place, then returns the queue slot, so the
    /// slot count never undercounts the queue.
    fn leave_queue(&mut self) {
        self.wait = None;
        #[cfg(feature = "timeout")]
        {
            self.timer = None;
        }
        self.stage = Stage::Done;
        self.shared.release_queue_slot();
    }
}

/// A queue slot reserved by `start` but not yet owned by a queued `Acquire`: returned if an
/// unwind drops the guard, defused with `mem::forget` once the `Acquire` owns it.
#[cfg(feature = "timeout")]
struct ReservedSlot<'a>(&'a Shared);

#[cfg(feature = "timeout")]
impl Drop for ReservedSlot<'_> {
    fn drop(&mut self) {
        self.0.release_queue_slot();
    }
}

impl Future for Acquire {
    type Output = Result<LimitPermit, Rejected>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Pin projection: `wait` and `timer` are the only structurally pinned fields (every other
        // field is plain data, never pinned), and nothing moves them: they are filled only
        // while `None` (`start`), polled only through `Pin::new_unchecked` and dropped in
        // place by assigning `None` (`leave_queue`, also from `Drop`, which likewise never
        // moves them). `Acquire` is `!Unpin` (`PhantomPinned`, no `Unpin` impl), so
        // `this` is never used to move the `Acquire` itself either.
        // SAFETY: nothing moves out of `this` or its pinned fields, as argued above.
        let this = unsafe { self.get_unchecked_mut() };
        match this.stage {
            Stage::Done => panic!("fairgate: `Acquire` polled after completion"),
            Stage::Start => match this.start() {
                Ok(Some(permit)) => {
                    this.stage = Stage::Done;
                    return Poll::Ready(Ok(permit));
                }
                Err(rejected) => {
                    this.stage = Stage::Done;
                    return Poll::Ready(Err(rejected));
                }
                Ok(None) => {}
            },
            Stage::Queued => {}
        }
        let Some(wait) = this.wait.as_mut() else {
            unreachable!("a queued `Acquire` holds a waiter")
        };
        // SAFETY: `wait` lives inside the pinned `Acquire` and is never moved (see above).
        let wait = unsafe { Pin::new_unchecked(wait) };
        if let Poll::Ready(result) = wait.poll(cx) {
            let waited = this.waited();
            this.leave_queue();
            return Poll::Ready(match result {
                Ok(permit) => Ok(this.shared.admit(Some(permit), waited)),
                Err(_closed) => Err(this.shared.reject(RejectReason::Closed, waited)),
            });
        }
        #[cfg(feature = "timeout")]
        if let Some((sleep, reason)) = this.timer.as_mut() {
            let reason = *reason;
            // SAFETY: `timer` lives inside the pinned `Acquire` and is never moved.
            let sleep = unsafe { Pin::new_unchecked(sleep) };
            if sleep.poll(cx).is_ready() {
                let waited = this.waited();
                this.abandon();
                return Poll::Ready(Err(this.shared.reject(reason, waited)));
            }
        }
        Poll::Pending
    }
}

impl Acquire {
    /// Gives up a wait that did not end in a grant to the caller (timeout, deadline, drop).
    ///
    /// A permit may have been handed to the waiter since it was last polled. Dropping the
    /// waiter would release that permit straight to the next waiter, past a pending shrink;
    /// so it is polled once more and a granted permit goes back through the capacity, which
    /// absorbs it while debt remains.
    fn abandon(&mut self) {
        if let Some(wait) = self.wait.as_mut() {
            // SAFETY: `wait` lives inside the `Acquire`, which is pinned whenever it holds a
            // waiter (the waiter is created only in `poll`); this runs from `poll` or `Drop`,
            // and neither moves `wait` (see `poll`), so it is still where it was pinned.
            let wait = unsafe { Pin::new_unchecked(wait) };
            if let Poll::Ready(Ok(permit)) = wait.poll(&mut Context::from_waker(Waker::noop())) {
                self.shared.capacity.give_back(permit);
            }
        }
        self.leave_queue();
    }
}

impl Drop for Acquire {
    fn drop(&mut self) {
        if self.stage == Stage::Queued {
            let waited = self.waited();
            self.abandon();
            self.shared.cancel(waited);
        }
    }
}

impl fmt::Debug for Acquire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acquire")
            .field("limiter", &&*self.shared.config.name)
            .field("stage", &self.stage)
            .finish_non_exhaustive()
    }
}
