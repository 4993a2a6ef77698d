//! A poll-style acquire for code that implements `poll_*` methods (tower's `poll_ready`, say)
//! and cannot hold a future across calls. One heap slot is allocated on first use and reused
//! for every later acquire: no allocation per request.

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::pin::Pin;
use core::task::{Context, Poll};

use super::acquire::AcquireOwned;
use super::error::AcquireError;
use super::permit::OwnedPermit;
use super::Semaphore;

/// Drives acquires from `poll` methods with a reusable, pinned acquire slot.
///
/// A pending request keeps its place in the queue between calls. Dropping the
/// `PollSemaphore` (or asking for a different number of permits) gives the place up, passing on
/// any permits already handed to it.
///
/// Cloning gives a handle on the same semaphore with no request of its own (as tokio's
/// `PollSemaphore` does): each clone queues separately.
///
/// # Cancel safety
/// Not calling `poll_acquire` again loses nothing: the request keeps its place (and any
/// permits granted to it) until it is polled, replaced or dropped.
///
/// # Examples
/// ```
/// use std::{future::poll_fn, sync::Arc};
/// use fairgate::{PollSemaphore, Semaphore};
///
/// # futures::executor::block_on(async {
/// let mut poll_sem = PollSemaphore::new(Arc::new(Semaphore::new(1)));
/// let permit = poll_fn(|cx| poll_sem.poll_acquire(cx)).await.unwrap();
/// assert_eq!(permit.num_permits(), 1);
/// # });
/// ```
#[derive(Debug)]
pub struct PollSemaphore {
    sem: Arc<Semaphore>,
    /// The reusable slot, and whether it holds a live (polled, unfinished) request.
    slot: Option<Pin<Box<AcquireOwned>>>,
    armed: bool,
}

impl PollSemaphore {
    /// Wraps a shared semaphore.
    ///
    /// ```
    /// use std::sync::Arc;
    /// let sem = Arc::new(fairgate::Semaphore::new(1));
    /// let poll_sem = fairgate::PollSemaphore::new(sem.clone());
    /// assert!(Arc::ptr_eq(poll_sem.semaphore(), &sem));
    /// ```
    pub fn new(sem: Arc<Semaphore>) -> Self {
        Self {
            sem,
            slot: None,
            armed: false,
        }
    }

    /// The semaphore this polls.
    ///
    /// ```
    /// use std::sync::Arc;
    /// let poll_sem = fairgate::PollSemaphore::new(Arc::new(fairgate::Semaphore::new(2)));
    /// assert_eq!(poll_sem.semaphore().available_permits(), 2);
    /// ```
    pub fn semaphore(&self) -> &Arc<Semaphore> {
        &self.sem
    }

    /// A new `Arc` of the semaphore this polls.
    ///
    /// ```
    /// use std::sync::Arc;
    /// let sem = Arc::new(fairgate::Semaphore::new(1));
    /// let poll_sem = fairgate::PollSemaphore::new(sem.clone());
    /// assert!(Arc::ptr_eq(&poll_sem.clone_inner(), &sem));
    /// ```
    pub fn clone_inner(&self) -> Arc<Semaphore> {
        Arc::clone(&self.sem)
    }

    /// Unwraps the semaphore. A pending request is dropped (it gives up its place and passes
    /// on any permits already handed to it).
    ///
    /// ```
    /// use std::sync::Arc;
    /// let sem = Arc::new(fairgate::Semaphore::new(1));
    /// let poll_sem = fairgate::PollSemaphore::new(sem.clone());
    /// assert!(Arc::ptr_eq(&poll_sem.into_inner(), &sem));
    /// ```
    pub fn into_inner(self) -> Arc<Semaphore> {
        self.sem
    }

    /// Polls for one permit.
    ///
    /// # Cancel safety
    /// See [`PollSemaphore`]: the request stays queued between calls.
    ///
    /// ```
    /// use std::future::poll_fn;
    /// use std::sync::Arc;
    /// # futures::executor::block_on(async {
    /// let mut poll_sem = fairgate::PollSemaphore::new(Arc::new(fairgate::Semaphore::new(1)));
    /// let permit = poll_fn(|cx| poll_sem.poll_acquire(cx)).await.unwrap();
    /// assert_eq!(permit.num_permits(), 1);
    /// # });
    /// ```
    pub fn poll_acquire(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<OwnedPermit, AcquireError>> {
        self.poll_acquire_many(cx, 1)
    }

    /// Polls for `n` permits. Keep asking for the same `n` until it is `Ready`; a different
    /// `n` restarts the request at the back of the queue.
    ///
    /// ```
    /// use std::future::poll_fn;
    /// use std::sync::Arc;
    /// # futures::executor::block_on(async {
    /// let mut poll_sem = fairgate::PollSemaphore::new(Arc::new(fairgate::Semaphore::new(3)));
    /// let permit = poll_fn(|cx| poll_sem.poll_acquire_many(cx, 3)).await.unwrap();
    /// assert_eq!(permit.num_permits(), 3);
    /// # });
    /// ```
    pub fn poll_acquire_many(
        &mut self,
        cx: &mut Context<'_>,
        n: usize,
    ) -> Poll<Result<OwnedPermit, AcquireError>> {
        let rearm = !self.armed || self.slot.as_ref().is_some_and(|s| s.num_permits() != n);
        if rearm {
            let fresh = Arc::clone(&self.sem).acquire_many_owned(n);
            match &mut self.slot {
                // Drops the previous request in place (leaving the queue if it was queued).
                Some(slot) => slot.set(fresh),
                None => self.slot = Some(Box::pin(fresh)),
            }
            self.armed = true;
        }
        let slot = self.slot.as_mut().expect("armed above");
        let poll = slot.as_mut().poll(cx);
        if poll.is_ready() {
            self.armed = false;
        }
        poll
    }
}

impl Clone for PollSemaphore {
    /// A handle on the same semaphore without the pending request (it stays with `self`).
    fn clone(&self) -> Self {
        Self::new(Arc::clone(&self.sem))
    }
}

use core::future::Future as _;
