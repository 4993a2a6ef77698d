//! The semaphore: its words, the one-RMW fast paths, and the public API.

use core::fmt;

pub(crate) mod acquire;
mod checks;
pub(crate) mod error;
pub(crate) mod handoff;
pub(crate) mod permit;
pub(crate) mod state;
pub(crate) mod waiter;
mod wake;

#[cfg(feature = "std")]
pub(crate) mod blocking;
#[cfg(feature = "alloc")]
pub(crate) mod poll;

#[cfg(doc)]
use self::error::AcquireError;
use self::error::{AddPermitsError, TryAcquireError};
use self::handoff::{push_cancel, push_enqueue, ParkedList};
use self::permit::Permit;
use self::state::MAX_PERMITS;
use self::state::{StateWord, CLOSED, DIRTY, HANDOFF, QUEUED};
use self::waiter::Waiter;
use crate::sync::{const_unless_loom, fence, AtomicPtr, AtomicUsize, Ordering::*};
use crate::Acquire;

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
/// # Memory ordering
/// Acquiring permits synchronises with the release that supplied them, as a mutex does: what
/// a thread wrote before dropping a [`Permit`] (or before [`add_permits`](Self::add_permits))
/// is visible to the thread that acquires those permits, whether it took them on the fast path
/// or was handed them in the queue. [`close`](Self::close) synchronises with every outcome it
/// causes: a thread that gets [`AcquireError::Closed`] or [`TryAcquireError::Closed`], or sees
/// [`is_closed`](Self::is_closed) return `true`, sees every write made before `close()`.
/// [`TryAcquireError::NoPermits`] carries no ordering. (The same guarantees as tokio's
/// semaphore, which code ported from tokio relies on.)
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
    /// `permits << 4 | DIRTY | HANDOFF | QUEUED | CLOSED` (DESIGN.md §2).
    pub(crate) state: StateWord,
    /// Permits in existence; bounds every count by `MAX_PERMITS` (invariant I4).
    total: AtomicUsize,
    /// Tagged Treiber stack of enqueue and cancel requests.
    pub(crate) requests: AtomicPtr<Waiter>,
    /// Waiters enqueued and not yet unlinked by a handoff pass (a statistic).
    pub(crate) waiters: AtomicUsize,
    /// Head (oldest node) of the waiter list between passes. Only the thread holding
    /// `HANDOFF` touches it, and only `handoff.rs` can (DESIGN.md §2).
    pub(crate) list: ParkedList,
    /// Wake and helping bounds, asserted by the loom models.
    #[cfg(loom)]
    pub(crate) pass_stats: checks::PassStats,
}

// `list` is the only field that is not an atomic; the pointers it holds are links into pinned
// waiter nodes, not ownership.
// SAFETY: only the thread holding `HANDOFF` touches `list`, and `HANDOFF` passes between threads
// through AcqRel RMWs on `state`, so every access happens-after the previous holder's last one
// (I2).
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
                state: StateWord::new(state::from_permits(permits)),
                total: AtomicUsize::new(permits),
                requests: AtomicPtr::new(core::ptr::null_mut()),
                waiters: AtomicUsize::new(0),
                list: ParkedList::new(),
                #[cfg(loom)]
                pass_stats: checks::PassStats::default(),
            }
        }
    }

    /// Waits for one permit.
    ///
    /// Resolves to `Err(AcquireError::Closed)` if the semaphore is closed before the permit is
    /// granted.
    ///
    /// # Cancel safety
    /// Cancel-safe, and fair across cancellation: dropping the future gives up its place in the
    /// queue and passes on any permits already handed to it; nothing is lost and no other
    /// waiter is held up. Dropping a future that is still queued may wait briefly for the
    /// thread running a handoff pass to finish with its node (or runs that pass itself).
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
    /// # Cancel safety
    /// As for [`acquire`](Self::acquire): a dropped request passes on the permits it had been
    /// partially assigned while at the head of the queue.
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
    ///
    /// # Examples
    /// ```
    /// use fairgate::{Semaphore, TryAcquireError};
    /// let sem = Semaphore::new(3);
    /// let two = sem.try_acquire_many(2).unwrap();
    /// assert_eq!(sem.try_acquire_many(2).unwrap_err(), TryAcquireError::NoPermits);
    /// assert!(matches!(
    ///     sem.try_acquire_many(Semaphore::MAX_PERMITS + 1),
    ///     Err(TryAcquireError::TooManyPermits { .. })
    /// ));
    /// drop(two);
    /// assert_eq!(sem.available_permits(), 3);
    /// ```
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
                // The word was read `Relaxed` (success needs no more). `CLOSED` is never
                // cleared and every write to the word is an RMW, so the value read belongs to
                // the release sequence of `close()`'s `fetch_or`: this fence makes the caller
                // see every write made before `close()` (the "Memory ordering" contract). It
                // costs no instruction on x86. Loom: `closed_error_sees_writes_before_close`.
                fence(Acquire);
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
    ///
    /// Also called by a dropping waiter while it waits for `DONE`: a holder may have given the
    /// role back leaving its cancel request on the stack (the helping bound, DESIGN.md §5), and
    /// then the dropper runs the pass itself. Returns whether it ran one.
    #[cold]
    pub(crate) fn after_deposit(&self) -> bool {
        let mut s = self.state.load(Relaxed);
        while s & (QUEUED | HANDOFF) == QUEUED {
            match self.state.compare_exchange_weak(
                s,
                state::with_permits(s, 0) | HANDOFF,
                AcqRel,
                Relaxed,
            ) {
                Ok(_) => {
                    self.run_handoff(core::ptr::null(), state::permits(s));
                    return true;
                }
                Err(actual) => s = actual,
            }
        }
        false
    }

    /// After pushing a request, or after `close`: make sure a handoff pass will see the work
    /// (invariant I3). Take the role and run the pass, or leave the work to the active holder
    /// (`DIRTY`). An enqueue (`is_enqueue`) allows one more case, which saves a whole pass per
    /// waiter (DESIGN.md §3): if no thread holds the role, nothing is deposited and the
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
            // follow this one in the word's order so that it sees our push (DESIGN.md §3). The
            // Release half is what lets a holder's Relaxed pre-load in `drain` see the push
            // (DESIGN.md §8).
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
        // SAFETY: forwarded from this function's contract.
        unsafe { push_enqueue(&self.requests, node) };
        self.kick(node, true);
    }

    /// Asks the handoff holder to unlink a cancelled waiter.
    ///
    /// # Safety
    /// `node` is queued, has CANCELLED set, and stays alive until it observes DONE.
    pub(crate) unsafe fn request_cancel(&self, node: *mut Waiter) {
        // SAFETY: forwarded from this function's contract.
        unsafe { push_cancel(&self.requests, node) };
        // A cancelled node needs no wake, so it is not passed as `me`.
        self.kick(core::ptr::null(), false);
    }

    /// Adds `n` permits, handing them to queued waiters first (FIFO).
    ///
    /// # Panics
    /// If the semaphore's total would exceed [`MAX_PERMITS`](Self::MAX_PERMITS); the panic
    /// happens before any state changes. Use [`try_add_permits`](Self::try_add_permits) to get
    /// an error instead.
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
    /// [`MAX_PERMITS`](Self::MAX_PERMITS).
    ///
    /// # Examples
    /// ```
    /// use fairgate::Semaphore;
    /// let sem = Semaphore::new(1);
    /// assert!(sem.try_add_permits(2).is_ok());
    /// let err = sem.try_add_permits(Semaphore::MAX_PERMITS).unwrap_err();
    /// assert_eq!((err.added, err.total), (Semaphore::MAX_PERMITS, 3));
    /// assert_eq!(sem.total_permits(), 3);
    /// ```
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

    /// Whether [`close`](Self::close) was called. `true` synchronises with `close()` (see
    /// "Memory ordering" on [`Semaphore`]).
    ///
    /// ```
    /// let sem = fairgate::Semaphore::new(1);
    /// assert!(!sem.is_closed());
    /// sem.close();
    /// assert!(sem.is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        self.state.load(Acquire) & CLOSED != 0
    }

    /// Free permits a newcomer could take right now: zero while anyone is queued (no barging).
    ///
    /// ```
    /// let sem = fairgate::Semaphore::new(3);
    /// let p = sem.try_acquire().unwrap();
    /// assert_eq!(sem.available_permits(), 2);
    /// # drop(p);
    /// ```
    pub fn available_permits(&self) -> usize {
        let s = self.state.load(Acquire);
        if s & QUEUED != 0 {
            0
        } else {
            state::permits(s)
        }
    }

    /// All permits the semaphore has: free, held and promised to waiters.
    ///
    /// ```
    /// let sem = fairgate::Semaphore::new(3);
    /// let p = sem.try_acquire().unwrap();
    /// assert_eq!((sem.available_permits(), sem.total_permits()), (2, 3));
    /// p.forget(); // gone for good
    /// assert_eq!(sem.total_permits(), 2);
    /// ```
    pub fn total_permits(&self) -> usize {
        self.total.load(Relaxed)
    }

    /// How many acquirers are queued: counted when a waiter joins the queue, uncounted at the
    /// end of the handoff pass that grants, closes out or removes it. Exact when no operation
    /// is in flight; while other threads acquire or release it is a snapshot that may already
    /// be stale.
    ///
    /// It can lag an operation that has returned: a [`Permit`] drop (or `add_permits`) that
    /// finds another thread running a handoff pass leaves its permits to that pass and returns
    /// at once, and the waiter they go to stays counted until that pass ends. A call that ran
    /// the pass itself (no other thread was running one) has updated the count when it
    /// returns. Dropping a queued acquire returns once the pass is done with its node, which
    /// can be just before that pass uncounts it.
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

/// Model-only statistics (not part of the API).
#[cfg(loom)]
impl Semaphore {
    /// `(passes started while a granted waiter was not yet woken, the longest run of passes one
    /// handoff call ran for requests alone)`: the wake and helping bounds (DESIGN.md §5).
    #[doc(hidden)]
    pub fn loom_pass_stats(&self) -> (usize, usize) {
        self.pass_stats.snapshot()
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
