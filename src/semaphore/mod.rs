//! The semaphore: its words, the one-RMW fast paths, and the public API.

use core::fmt;

pub(crate) mod acquire;
pub(crate) mod error;
pub(crate) mod handoff;
pub(crate) mod permit;
pub(crate) mod state;
pub(crate) mod waiter;

#[cfg(feature = "std")]
pub(crate) mod blocking;
#[cfg(feature = "alloc")]
pub(crate) mod poll;

use self::error::{AddPermitsError, TryAcquireError};
use self::handoff::{push_request, tag, tagged};
use self::permit::Permit;
use self::state::{CLOSED, DIRTY, HANDOFF, QUEUED};
use self::waiter::Waiter;
use crate::sync::{const_unless_loom, AtomicPtr, AtomicUsize, Ordering::*, UnsafeCell};
use crate::{Acquire, MAX_PERMITS};

/// A strictly fair (FIFO) async semaphore with direct permit handoff.
///
/// * **Fair:** waiters are served in the order they queued. A released permit goes straight to
///   the oldest waiter; while anyone waits, newcomers (including
///   [`try_acquire`](Self::try_acquire)) see zero free permits and cannot barge.
/// * **Lock-free:** acquiring, releasing, adding permits and closing never take a lock and
///   never wait for another thread. The waiter node lives inside the [`Acquire`] future, so
///   waiting allocates nothing.
/// * **Once-only permits:** a [`Permit`] releases its permits exactly once, when dropped.
///
/// # Head-of-line behaviour
/// A request for many permits at the head of the queue collects permits as they are released
/// and holds them until it has all it asked for; smaller requests behind it wait even if the
/// semaphore could serve them. This is what keeps large requests from starving.
///
/// # Examples
/// ```
/// use fairgate::Semaphore;
///
/// # futures::executor::block_on(async {
/// let sem = Semaphore::new(2);
/// let a = sem.acquire().await.unwrap();
/// let b = sem.acquire().await.unwrap();
/// assert_eq!(sem.available_permits(), 0);
/// assert!(sem.try_acquire().is_err());
/// drop(a);
/// assert_eq!(sem.available_permits(), 1);
/// # drop(b);
/// # });
/// ```
pub struct Semaphore {
    /// `permits << 4 | DIRTY | HANDOFF | QUEUED | CLOSED` (DESIGN.md §3.1).
    pub(crate) state: AtomicUsize,
    /// Permits in existence; bounds every count by `MAX_PERMITS` (invariant I4).
    total: AtomicUsize,
    /// Tagged Treiber stack of enqueue and cancel requests.
    pub(crate) requests: AtomicPtr<Waiter>,
    /// Waiters enqueued and not yet unlinked by a handoff pass (a statistic).
    pub(crate) waiters: AtomicUsize,
    /// Head (oldest node) of the waiter list between passes; null when the list is empty.
    /// Read and written only by the thread holding `HANDOFF` (DESIGN.md §3.3).
    pub(crate) list: UnsafeCell<*mut Waiter>,
}

// `list` is the only field that is not an atomic; the pointers it holds are links into pinned
// waiter nodes, not ownership.
// SAFETY: only the thread holding `HANDOFF` touches `list`, and `HANDOFF` passes between threads
// through AcqRel RMWs on `state`, so every access happens-after the previous holder's last one (I2).
unsafe impl Sync for Semaphore {}
// SAFETY: as above; moving the semaphore moves no thread-bound data.
unsafe impl Send for Semaphore {}

impl Semaphore {
    /// The largest number of permits a semaphore can hold: `usize::MAX >> 7`
    /// (2^57 − 1 on 64-bit targets, 2^25 − 1 on 32-bit ones).
    pub const MAX_PERMITS: usize = MAX_PERMITS;

    const_unless_loom! {
        /// Creates a semaphore with `permits` free permits. `const`, so it can be a `static`.
        ///
        /// # Panics
        /// If `permits > MAX_PERMITS` (at compile time in a `const` context).
        ///
        /// # Examples
        /// ```
        /// use fairgate::Semaphore;
        /// static LIMIT: Semaphore = Semaphore::new(8);
        /// assert_eq!(LIMIT.available_permits(), 8);
        /// ```
        pub fn new(permits: usize) -> Semaphore {
            assert!(permits <= MAX_PERMITS, "fairgate: Semaphore::new: permits exceed MAX_PERMITS");
            Semaphore {
                state: AtomicUsize::new(state::from_permits(permits)),
                total: AtomicUsize::new(permits),
                requests: AtomicPtr::new(core::ptr::null_mut()),
                waiters: AtomicUsize::new(0),
                list: UnsafeCell::new(core::ptr::null_mut()),
            }
        }
    }

    /// Waits for one permit.
    ///
    /// Resolves to `Err(AcquireError::Closed)` if the semaphore is closed before the permit is
    /// granted. Dropping the future gives up its place in the queue and passes on any permits
    /// already handed to it.
    ///
    /// # Examples
    /// ```
    /// # futures::executor::block_on(async {
    /// let sem = fairgate::Semaphore::new(1);
    /// let permit = sem.acquire().await.unwrap();
    /// assert_eq!(permit.num_permits(), 1);
    /// # });
    /// ```
    pub fn acquire(&self) -> Acquire<'_> {
        Acquire::new(self, 1)
    }

    /// Waits for `n` permits at once (FIFO; see the head-of-line note on [`Semaphore`]).
    ///
    /// `n == 0` succeeds at once (unless closed). `n > MAX_PERMITS` resolves at once to
    /// [`AcquireError::TooManyPermits`].
    ///
    /// # Examples
    /// ```
    /// # futures::executor::block_on(async {
    /// let sem = fairgate::Semaphore::new(5);
    /// let permit = sem.acquire_many(3).await.unwrap();
    /// assert_eq!(sem.available_permits(), 2);
    /// # drop(permit);
    /// # });
    /// ```
    pub fn acquire_many(&self, n: usize) -> Acquire<'_> {
        Acquire::new(self, n)
    }

    /// Takes one permit if one is free and nobody is queued.
    ///
    /// # Examples
    /// ```
    /// use fairgate::{Semaphore, TryAcquireError};
    /// let sem = Semaphore::new(1);
    /// let p = sem.try_acquire().unwrap();
    /// assert_eq!(sem.try_acquire().unwrap_err(), TryAcquireError::NoPermits);
    /// drop(p);
    /// sem.close();
    /// assert_eq!(sem.try_acquire().unwrap_err(), TryAcquireError::Closed);
    /// ```
    #[inline]
    pub fn try_acquire(&self) -> Result<Permit<'_>, TryAcquireError> {
        self.try_acquire_many(1)
    }

    /// Takes `n` permits if they are free and nobody is queued. Never queues.
    #[inline]
    pub fn try_acquire_many(&self, n: usize) -> Result<Permit<'_>, TryAcquireError> {
        self.try_take_checked(n)?;
        Ok(Permit::new(self, n))
    }

    #[inline]
    pub(crate) fn try_take_checked(&self, n: usize) -> Result<(), TryAcquireError> {
        if n > MAX_PERMITS {
            return Err(TryAcquireError::TooManyPermits { requested: n });
        }
        if n == 0 {
            return if self.is_closed() {
                Err(TryAcquireError::Closed)
            } else {
                Ok(())
            };
        }
        self.try_take(n)
    }

    /// The fast path: one CAS taking `n` (1 ≤ n ≤ MAX_PERMITS) free permits.
    #[inline]
    pub(crate) fn try_take(&self, n: usize) -> Result<(), TryAcquireError> {
        let mut s = self.state.load(Relaxed);
        loop {
            if s & CLOSED != 0 {
                return Err(TryAcquireError::Closed);
            }
            if s & QUEUED != 0 || state::permits(s) < n {
                return Err(TryAcquireError::NoPermits);
            }
            match self
                .state
                .compare_exchange_weak(s, s - state::from_permits(n), Acquire, Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(actual) => s = actual,
            }
        }
    }

    /// Returns `n` permits: free them, or deposit them for the queue and run a handoff pass if
    /// no thread is running one. Called only by permit drops and refunds.
    #[inline]
    pub(crate) fn release(&self, n: usize) {
        if n == 0 {
            return;
        }
        // One RMW. Cannot overflow: permits field ≤ total ≤ MAX_PERMITS (invariant I4). With
        // `QUEUED` clear the permits are free at once; with it set they are a deposit.
        let prev = self.state.fetch_add(state::from_permits(n), Release);
        if prev & QUEUED != 0 {
            self.after_deposit();
        }
    }

    /// A deposit was made while waiters were queued: make sure a handoff pass takes it
    /// (invariant I3). If a holder is active, our deposit changed the word its exit CAS
    /// compares, so it runs another pass; if `QUEUED` was cleared since, the holder that cleared
    /// it turned our deposit into free permits. Otherwise take the role, and with it every
    /// deposit in the word, in one CAS (no holder means no `DIRTY` to keep).
    #[cold]
    fn after_deposit(&self) {
        let mut s = self.state.load(Relaxed);
        while s & (QUEUED | HANDOFF) == QUEUED {
            match self.state.compare_exchange_weak(
                s,
                state::with_permits(s, 0) | HANDOFF,
                AcqRel,
                Relaxed,
            ) {
                Ok(_) => return self.run_handoff(core::ptr::null(), state::permits(s)),
                Err(actual) => s = actual,
            }
        }
    }

    /// After pushing a request, or after `close`: make sure a handoff pass will see the work
    /// (invariant I3). Take the role and run the pass, or leave the work to the active holder
    /// (`DIRTY`). An enqueue (`is_enqueue`) allows one more case, which saves a whole pass per
    /// waiter (DESIGN §4.2): if no thread holds the role, nothing is deposited and the
    /// semaphore is open, no pass could serve the new waiter now, so only `QUEUED` is set and
    /// the request stays on the stack; the next release (or `add_permits`) deposits and runs
    /// the pass that drains it, and a cancel or `close` kicks one.
    fn kick(&self, me: *const Waiter, is_enqueue: bool) {
        let mut s = self.state.load(Relaxed);
        loop {
            let (new, take_role) = if s & HANDOFF != 0 {
                (s | QUEUED | DIRTY, false)
            } else if is_enqueue && state::permits(s) == 0 && s & CLOSED == 0 {
                (s | QUEUED, false)
            } else {
                (s | QUEUED | HANDOFF, true)
            };
            // Always an RMW, even when `new == s`: the decision must be made on the latest
            // word (the load above may be stale), and the next holder's role-taking CAS must
            // follow this one in the word's order so that it sees our push (DESIGN §4.2). The
            // Release half is what lets a holder's Relaxed pre-load in `drain` see the push
            // (DESIGN §8).
            match self.state.compare_exchange_weak(s, new, AcqRel, Relaxed) {
                Ok(_) if take_role => return self.run_handoff(me, 0),
                Ok(_) => return,
                Err(actual) => s = actual,
            }
        }
    }

    /// Publishes a waiter and makes sure a pass will queue it.
    ///
    /// # Safety
    /// `node` is pinned, alive until it observes DONE, never published before, and its
    /// `requested`, `waker` and `state` fields are initialised.
    pub(crate) unsafe fn enqueue(&self, node: *mut Waiter) {
        // Counted before the push, so the holder that unlinks the node cannot decrement first.
        self.waiters.fetch_add(1, Relaxed);
        // SAFETY: `next` is the enqueue link and belongs to this thread until drained.
        unsafe { push_request(&self.requests, tagged(node, tag::ENQUEUE), &(*node).next) };
        self.kick(node, true);
    }

    /// Asks the handoff holder to unlink a cancelled waiter.
    ///
    /// # Safety
    /// `node` is queued, has CANCELLED set, and stays alive until it observes DONE.
    pub(crate) unsafe fn request_cancel(&self, node: *mut Waiter) {
        // SAFETY: `cancel_next` is written only by the owner before this push.
        unsafe {
            push_request(
                &self.requests,
                tagged(node, tag::CANCEL),
                &(*node).cancel_next,
            )
        };
        // A cancelled node needs no wake, so it is not passed as `me`.
        self.kick(core::ptr::null(), false);
    }

    /// Adds `n` permits, handing them to queued waiters first (FIFO).
    ///
    /// # Panics
    /// If the semaphore's total would exceed [`MAX_PERMITS`]; the panic happens before any
    /// state changes. Use [`try_add_permits`](Self::try_add_permits) to get an error instead.
    ///
    /// # Examples
    /// ```
    /// let sem = fairgate::Semaphore::new(0);
    /// sem.add_permits(3);
    /// assert_eq!(sem.available_permits(), 3);
    /// ```
    pub fn add_permits(&self, n: usize) {
        if let Err(e) = self.try_add_permits(n) {
            panic!("fairgate: add_permits: {e}");
        }
    }

    /// Adds `n` permits, or returns an error (changing nothing) if the total would exceed
    /// [`MAX_PERMITS`].
    pub fn try_add_permits(&self, n: usize) -> Result<(), AddPermitsError> {
        let mut total = self.total.load(Relaxed);
        loop {
            if n > MAX_PERMITS - total {
                return Err(AddPermitsError { added: n, total });
            }
            match self
                .total
                .compare_exchange_weak(total, total + n, Relaxed, Relaxed)
            {
                Ok(_) => break,
                Err(actual) => total = actual,
            }
        }
        self.release(n);
        Ok(())
    }

    /// Removes up to `n` *free* permits for good and returns how many were removed. Permits
    /// that are held, or promised to queued waiters, are not touched. Keeps a closed semaphore
    /// closed.
    ///
    /// # Examples
    /// ```
    /// let sem = fairgate::Semaphore::new(5);
    /// assert_eq!(sem.forget_permits(3), 3);
    /// assert_eq!(sem.forget_permits(3), 2);
    /// assert_eq!(sem.available_permits(), 0);
    /// ```
    pub fn forget_permits(&self, n: usize) -> usize {
        let mut s = self.state.load(Relaxed);
        let taken = loop {
            if s & QUEUED != 0 {
                return 0;
            }
            let take = n.min(state::permits(s));
            if take == 0 {
                return 0;
            }
            // Rebuilt from the word we read: every flag bit (CLOSED above all) survives.
            match self.state.compare_exchange_weak(
                s,
                s - state::from_permits(take),
                Acquire,
                Relaxed,
            ) {
                Ok(_) => break take,
                Err(actual) => s = actual,
            }
        };
        self.total.fetch_sub(taken, Relaxed);
        taken
    }

    /// Permits that vanished with a forgotten permit token.
    pub(crate) fn forget_held(&self, n: usize) {
        if n != 0 {
            self.total.fetch_sub(n, Relaxed);
        }
    }

    /// Closes the semaphore: every queued and future acquire fails with
    /// [`AcquireError::Closed`], queued waiters are woken. Permits already held stay valid and
    /// are returned as usual when dropped.
    ///
    /// # Examples
    /// ```
    /// # futures::executor::block_on(async {
    /// let sem = fairgate::Semaphore::new(0);
    /// sem.close();
    /// assert!(sem.is_closed());
    /// assert_eq!(sem.acquire().await.unwrap_err(), fairgate::AcquireError::Closed);
    /// # });
    /// ```
    pub fn close(&self) {
        let s = self.state.fetch_or(CLOSED, AcqRel);
        if s & QUEUED != 0 {
            self.kick(core::ptr::null(), false);
        }
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.state.load(Acquire) & CLOSED != 0
    }

    /// Free permits a newcomer could take right now: zero while anyone is queued (no barging).
    pub fn available_permits(&self) -> usize {
        let s = self.state.load(Acquire);
        if s & QUEUED != 0 {
            0
        } else {
            state::permits(s)
        }
    }

    /// All permits the semaphore has: free, held and promised to waiters.
    pub fn total_permits(&self) -> usize {
        self.total.load(Relaxed)
    }

    /// How many acquirers are queued: counted when a waiter joins the queue, uncounted at the
    /// end of the handoff pass that grants, closes out or removes it. Exact when no operation
    /// is in flight; while other threads acquire or release it is a snapshot that may already
    /// be stale (a waiter that was just granted can still be counted for a moment).
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use std::pin::pin;
    /// use std::task::{Context, Waker};
    /// use std::future::Future;
    ///
    /// let sem = fairgate::Semaphore::new(0);
    /// let mut waiting = pin!(sem.acquire());
    /// assert!(waiting.as_mut().poll(&mut Context::from_waker(Waker::noop())).is_pending());
    /// assert_eq!(sem.waiters(), 1);
    /// sem.add_permits(1); // handed straight to the waiter
    /// assert_eq!(sem.waiters(), 0);
    /// assert!(waiting.await.is_ok());
    /// # });
    /// ```
    pub fn waiters(&self) -> usize {
        self.waiters.load(Relaxed)
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("available_permits", &self.available_permits())
            .field("total_permits", &self.total_permits())
            .field("waiters", &self.waiters())
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Default for Semaphore {
    /// A semaphore with no permits.
    fn default() -> Self {
        Self::new(0)
    }
}
