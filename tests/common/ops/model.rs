//! The sequential reference model of a fair FIFO semaphore with direct handoff (DESIGN.md §4).

use std::collections::VecDeque;
use std::task::Poll;

use fairgate::{AcquireError, TryAcquireError};

use super::MAX_PERMITS;

// ------------------------------------------------------------------------------------------
// The reference model
// ------------------------------------------------------------------------------------------

/// A queued waiter in the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MWaiter {
    pub id: u64,
    pub requested: usize,
    /// Permits partially assigned while at the head (head-of-line).
    pub assigned: usize,
}

/// How a waiter left the queue, before its owner polled it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolved {
    /// All requested permits were handed over; the owner's next poll returns them.
    Granted(usize),
    /// The semaphore closed; the owner's next poll returns `Err(Closed)`.
    ClosedOut,
}

/// Sequential reference model of a strictly fair FIFO semaphore with direct handoff and
/// head-of-line partial assignment. Every operation is atomic here; waiters are ids.
#[derive(Clone, Debug, Default)]
pub struct Model {
    /// Free permits; always 0 while the queue is non-empty (they would have gone to the head).
    pub free: usize,
    /// Permits in existence.
    pub total: usize,
    pub closed: bool,
    /// Permits held by live permit tokens.
    pub held: usize,
    /// The FIFO; only the head may have `assigned > 0`.
    pub queue: VecDeque<MWaiter>,
    /// Resolved waiters whose owner has not yet polled them.
    pub resolved: Vec<(u64, Resolved)>,
    /// Waiters resolved by someone other than their owner, in resolve order: each must be woken.
    pub wakes: Vec<u64>,
    /// Every grant in order (for diagnostics).
    pub grants: Vec<u64>,
}

impl Model {
    pub fn new(initial: usize) -> Self {
        Self {
            free: initial,
            total: initial,
            ..Self::default()
        }
    }

    /// What `available_permits()` must return: free permits, but 0 while anyone is queued.
    pub fn available(&self) -> usize {
        if self.queue.is_empty() {
            self.free
        } else {
            0
        }
    }

    /// Permits promised to waiters: partial assignments plus granted-but-not-polled.
    pub fn assigned(&self) -> usize {
        let partial: usize = self.queue.iter().map(|w| w.assigned).sum();
        let granted: usize = self
            .resolved
            .iter()
            .map(|(_, r)| match r {
                Resolved::Granted(n) => *n,
                Resolved::ClosedOut => 0,
            })
            .sum();
        partial + granted
    }

    /// The handoff pass: hand `pool` to the head of the queue (partially if it needs more), or
    /// close everyone out. `me` is the waiter whose own poll runs this pass (it needs no wake).
    fn pass(&mut self, mut pool: usize, me: Option<u64>) {
        if self.closed {
            for w in self.queue.drain(..) {
                pool += w.assigned;
                self.resolved.push((w.id, Resolved::ClosedOut));
                if Some(w.id) != me {
                    self.wakes.push(w.id);
                }
            }
        }
        while pool > 0 {
            let Some(head) = self.queue.front_mut() else {
                break;
            };
            let needed = head.requested - head.assigned;
            if pool < needed {
                head.assigned += pool;
                pool = 0;
            } else {
                pool -= needed;
                let w = self.queue.pop_front().expect("head exists");
                self.resolved.push((w.id, Resolved::Granted(w.requested)));
                self.grants.push(w.id);
                if Some(w.id) != me {
                    self.wakes.push(w.id);
                }
            }
        }
        if self.queue.is_empty() {
            self.free += pool;
        } else {
            assert_eq!(pool, 0, "model: pool left while the head could take it");
        }
    }

    /// Permits come back (a release, a refund, new permits): straight to the head if queued.
    fn give(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        if self.queue.is_empty() {
            self.free += n;
        } else {
            self.pass(n, None);
        }
    }

    fn take_resolved(&mut self, id: u64) -> Option<Resolved> {
        let pos = self.resolved.iter().position(|(i, _)| *i == id)?;
        Some(self.resolved.remove(pos).1)
    }

    /// The first poll of an acquire of `n` with waiter id `id`.
    pub fn first_poll(&mut self, id: u64, n: usize) -> Poll<Result<usize, AcquireError>> {
        if n > MAX_PERMITS {
            return Poll::Ready(Err(AcquireError::TooManyPermits { requested: n }));
        }
        if self.closed {
            return Poll::Ready(Err(AcquireError::Closed));
        }
        if n == 0 {
            return Poll::Ready(Ok(0));
        }
        if self.queue.is_empty() && self.free >= n {
            self.free -= n;
            self.held += n;
            return Poll::Ready(Ok(n));
        }
        // Queue: free permits (only possible with an empty queue) become deposits for the
        // new head; its own pass hands them over.
        let pool = core::mem::take(&mut self.free);
        self.queue.push_back(MWaiter {
            id,
            requested: n,
            assigned: 0,
        });
        self.pass(pool, Some(id));
        self.poll(id)
    }

    /// A later poll of waiter `id`.
    pub fn poll(&mut self, id: u64) -> Poll<Result<usize, AcquireError>> {
        match self.take_resolved(id) {
            Some(Resolved::Granted(n)) => {
                self.held += n;
                Poll::Ready(Ok(n))
            }
            Some(Resolved::ClosedOut) => Poll::Ready(Err(AcquireError::Closed)),
            None => {
                assert!(
                    self.queue.iter().any(|w| w.id == id),
                    "model: polled unknown waiter {id}"
                );
                Poll::Pending
            }
        }
    }

    /// The owner drops waiter `id` (a future that was polled and has not returned `Ready`).
    pub fn cancel(&mut self, id: u64) {
        if let Some(pos) = self.queue.iter().position(|w| w.id == id) {
            let w = self.queue.remove(pos).expect("position is valid");
            // Partial permits go to the next head; an emptied queue frees everything.
            self.pass(w.assigned, None);
            return;
        }
        match self.take_resolved(id) {
            // Woken but never polled: the permits were the owner's; they flow on.
            Some(Resolved::Granted(n)) => self.give(n),
            Some(Resolved::ClosedOut) => {}
            None => panic!("model: cancelled unknown waiter {id}"),
        }
    }

    pub fn try_acquire(&mut self, n: usize) -> Result<usize, TryAcquireError> {
        if n > MAX_PERMITS {
            return Err(TryAcquireError::TooManyPermits { requested: n });
        }
        if self.closed {
            return Err(TryAcquireError::Closed);
        }
        if n == 0 {
            return Ok(0);
        }
        if !self.queue.is_empty() || self.free < n {
            return Err(TryAcquireError::NoPermits);
        }
        self.free -= n;
        self.held += n;
        Ok(n)
    }

    /// A permit token of `n` is dropped.
    pub fn release(&mut self, n: usize) {
        self.held -= n;
        self.give(n);
    }

    /// A permit token of `n` is forgotten.
    pub fn forget_held(&mut self, n: usize) {
        self.held -= n;
        self.total -= n;
    }

    /// Returns whether the add succeeded (it fails, changing nothing, past `MAX_PERMITS`).
    pub fn add_permits(&mut self, n: usize) -> bool {
        if n > MAX_PERMITS - self.total {
            return false;
        }
        self.total += n;
        self.give(n);
        true
    }

    /// Removes up to `n` free permits; none while anyone is queued.
    pub fn forget_permits(&mut self, n: usize) -> usize {
        if !self.queue.is_empty() {
            return 0;
        }
        let take = n.min(self.free);
        self.free -= take;
        self.total -= take;
        take
    }

    pub fn close(&mut self) {
        self.closed = true;
        if !self.queue.is_empty() {
            self.pass(0, None);
        }
    }

    /// The model's own invariants.
    pub fn check(&self) {
        assert_eq!(
            self.free + self.held + self.assigned(),
            self.total,
            "model: conservation broken: {self:?}"
        );
        if !self.queue.is_empty() {
            assert_eq!(self.free, 0, "model: free permits while queued: {self:?}");
            assert!(!self.closed, "model: queue survives close: {self:?}");
        }
        for (k, w) in self.queue.iter().enumerate() {
            assert!(w.assigned < w.requested, "model: over-assigned {w:?}");
            assert!(k == 0 || w.assigned == 0, "model: non-head assigned {w:?}");
        }
    }
}
