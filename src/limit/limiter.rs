//! [`Limiter`]: the shared handle, its state, counts and [`Snapshot`].

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::acquire::Acquire;
use super::capacity::Capacity;
use super::config::{check_capacity, ConfigError, LimiterBuilder, LimiterConfig, Mode};
use super::observer::Observer;
use super::permit::LimitPermit;
use super::rejected::{RejectReason, Rejected};
use crate::sync::{AtomicUsize, Ordering::AcqRel, Ordering::Acquire as Acq, Ordering::Relaxed};
use crate::{Permit, TryAcquireError};

/// State shared by every handle, acquire future and permit of one limiter.
pub(crate) struct Shared {
    /// The configuration as built; its `capacity` is the initial one (see `capacity`).
    pub(crate) config: LimiterConfig,
    pub(crate) capacity: Capacity,
    /// Soft mode's permits out: incremented when one is granted, decremented when it is
    /// dropped. Hard mode leaves it at zero: the semaphore already counts its permits out
    /// (see [`Shared::in_flight`]), and counting twice would double the atomics per request.
    pub(crate) in_flight: AtomicUsize,
    /// Queue slots reserved: taken by CAS before waiting, returned when the wait ends.
    pub(crate) waiting: AtomicUsize,
    pub(crate) observer: Option<Arc<dyn Observer>>,
}

impl Shared {
    /// Permits out: soft mode's counter; in hard mode the semaphore's permits that are
    /// neither free nor forgotten (held, or granted to a waiter that has not yet run).
    /// The total is read first: it changes only when the capacity changes, so between
    /// resizes the result is exact as of the read of the free permits.
    pub(crate) fn in_flight(&self) -> usize {
        if self.config.mode == Mode::Soft {
            return self.in_flight.load(Acq);
        }
        let sem = self.capacity.semaphore();
        let total = sem.total_permits();
        total.saturating_sub(sem.available_permits())
    }

    /// Counts a grant (soft mode) and wraps it in a fresh permit.
    #[inline]
    pub(crate) fn admit(
        self: &Arc<Self>,
        permit: Option<Permit<'_>>,
        waited: Duration,
    ) -> LimitPermit {
        if permit.is_none() {
            self.in_flight.fetch_add(1, Relaxed);
        }
        // One check of the observer for both the event and the hold-time clock read.
        let granted_at = match &self.observer {
            None => None,
            Some(observer) => self.observe_acquired(observer.as_ref(), waited),
        };
        LimitPermit::new(Arc::clone(self), permit, waited, granted_at)
    }

    // The observer calls live out of line: without an observer the admission and release
    // paths are a never-taken, well-predicted branch on a field that never changes.
    #[cold]
    #[inline(never)]
    fn observe_acquired(&self, observer: &dyn Observer, waited: Duration) -> Option<Instant> {
        observer.on_acquired(&self.config.name, waited);
        self.report_counts(observer);
        Some(Instant::now())
    }

    #[cold]
    #[inline(never)]
    pub(crate) fn observe_released(&self, observer: &dyn Observer, held: Duration) {
        observer.on_released(&self.config.name, held);
        self.report_counts(observer);
    }

    /// Reports a refusal and builds its error.
    pub(crate) fn reject(&self, reason: RejectReason, waited: Duration) -> Rejected {
        #[cfg(feature = "tracing")]
        tracing::debug!(
            limiter = &*self.config.name,
            reason = reason.as_str(),
            waited_ms = waited.as_secs_f64() * 1e3,
            "fairgate: acquisition rejected"
        );
        if let Some(observer) = &self.observer {
            observer.on_rejected(&self.config.name, reason, waited);
            self.report_counts(observer.as_ref());
        }
        Rejected::new(reason, waited, Arc::clone(&self.config.name))
    }

    /// Reports a queued acquisition its caller dropped.
    pub(crate) fn cancel(&self, waited: Duration) {
        if let Some(observer) = &self.observer {
            observer.on_canceled(&self.config.name, waited);
            self.report_counts(observer.as_ref());
        }
    }

    pub(crate) fn report_counts(&self, observer: &dyn Observer) {
        observer.on_counts(
            &self.config.name,
            self.in_flight(),
            self.waiting.load(Relaxed),
            self.capacity.get(),
        );
    }

    /// Reserves a queue slot, or refuses with `QueueFull`. The CAS never moves the count
    /// past the bound, so at no instant are more than `max_queue` slots taken, and a refused
    /// acquirer changes nothing.
    pub(crate) fn reserve_queue_slot(&self) -> bool {
        match self.config.max_queue {
            None => {
                self.waiting.fetch_add(1, Acq);
                true
            }
            Some(bound) => {
                let mut current = self.waiting.load(Relaxed);
                loop {
                    if current >= bound {
                        return false;
                    }
                    match self
                        .waiting
                        .compare_exchange_weak(current, current + 1, AcqRel, Relaxed)
                    {
                        Ok(_) => return true,
                        Err(actual) => current = actual,
                    }
                }
            }
        }
    }

    /// Returns a queue slot (after the wait ended: granted, refused or dropped).
    pub(crate) fn release_queue_slot(&self) {
        self.waiting.fetch_sub(1, AcqRel);
    }

    /// The non-waiting part of every acquisition: `Ok(Some)` admitted, `Ok(None)` must wait,
    /// `Err` refused (closed). No clock read, no allocation.
    #[inline(always)]
    pub(crate) fn try_admit(self: &Arc<Self>) -> Result<Option<LimitPermit>, Rejected> {
        let sem = self.capacity.semaphore();
        if self.config.mode == Mode::Soft {
            if sem.is_closed() {
                return Err(self.reject(RejectReason::Closed, Duration::ZERO));
            }
            return Ok(Some(self.admit(None, Duration::ZERO)));
        }
        match sem.try_acquire() {
            Ok(permit) => Ok(Some(self.admit(Some(permit), Duration::ZERO))),
            Err(TryAcquireError::Closed) => Err(self.reject(RejectReason::Closed, Duration::ZERO)),
            // One permit never exceeds the semaphore's maximum; treat it as "must wait".
            Err(TryAcquireError::NoPermits | TryAcquireError::TooManyPermits { .. }) => Ok(None),
        }
    }
}

/// An admission-control limiter: a capacity, a bounded FIFO queue in front of it, an
/// optional queue timeout, hard or soft mode. A cheap, clonable handle; clones share one
/// limiter. See the [module docs](super) for the model.
///
/// ```
/// # futures::executor::block_on(async {
/// use fairgate::limit::{Limiter, RejectReason};
///
/// let limiter = Limiter::builder("upstream").capacity(1).max_queue(Some(0)).build()?;
/// let permit = limiter.acquire().await?;            // admitted at once
/// let full = limiter.acquire().await.unwrap_err();  // nobody may queue: refused at once
/// assert_eq!(full.reason(), RejectReason::QueueFull);
/// drop(permit);
/// assert!(limiter.try_acquire().is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct Limiter {
    inner: Arc<Shared>,
}

impl Limiter {
    /// A limiter for a validated configuration, without an observer.
    ///
    /// ```
    /// use fairgate::limit::{Limiter, LimiterConfig};
    /// let limiter = Limiter::new(LimiterConfig::builder("db").capacity(2).config()?);
    /// assert_eq!(limiter.capacity(), 2);
    /// # Ok::<(), fairgate::limit::ConfigError>(())
    /// ```
    pub fn new(config: LimiterConfig) -> Limiter {
        Self::from_parts(config, None)
    }

    /// A limiter that reports its events to `observer`.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fairgate::limit::{Limiter, LimiterConfig, Observer};
    /// struct Quiet;
    /// impl Observer for Quiet {}
    /// let config = LimiterConfig::builder("db").capacity(2).config()?;
    /// let limiter = Limiter::with_observer(config, Arc::new(Quiet));
    /// # Ok::<(), fairgate::limit::ConfigError>(())
    /// ```
    pub fn with_observer(config: LimiterConfig, observer: Arc<dyn Observer>) -> Limiter {
        Self::from_parts(config, Some(observer))
    }

    fn from_parts(config: LimiterConfig, observer: Option<Arc<dyn Observer>>) -> Limiter {
        let capacity = Capacity::new(config.capacity, config.mode == Mode::Hard);
        Limiter {
            inner: Arc::new(Shared {
                config,
                capacity,
                in_flight: AtomicUsize::new(0),
                waiting: AtomicUsize::new(0),
                observer,
            }),
        }
    }

    /// Starts a [`LimiterBuilder`]; same as [`LimiterConfig::builder`].
    ///
    /// ```
    /// let limiter = fairgate::limit::Limiter::builder("db").capacity(2).build()?;
    /// assert_eq!(limiter.name(), "db");
    /// # Ok::<(), fairgate::limit::ConfigError>(())
    /// ```
    pub fn builder(name: impl Into<Arc<str>>) -> LimiterBuilder {
        LimiterConfig::builder(name)
    }

    /// Waits for a permit: admitted at once if one is free and nobody queues; otherwise
    /// queued (FIFO) if the queue bound allows, refused with `QueueFull` if not. With a
    /// `queue_timeout` the wait is bounded (needs a tokio runtime with its timer).
    ///
    /// Cancel-safe: dropping the future leaves the queue at once and loses no permit (one
    /// granted in the meantime goes to the next waiter).
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let limiter = fairgate::limit::Limiter::builder("db").capacity(1).build()?;
    /// let permit = limiter.acquire().await?;
    /// assert_eq!(limiter.in_flight(), 1);
    /// # drop(permit);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn acquire(&self) -> Acquire {
        Acquire::new(Arc::clone(&self.inner), None)
    }

    /// Like [`acquire`](Self::acquire), but gives up with
    /// [`DeadlineExceeded`](RejectReason::DeadlineExceeded) when `deadline` passes before a
    /// permit is granted (the limiter's `queue_timeout` still applies; whichever ends first
    /// decides the reason). A permit that is free at once is granted even if the deadline
    /// has passed; a deadline already past never queues.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::{Duration, Instant};
    /// use fairgate::limit::{Limiter, RejectReason};
    /// let limiter = Limiter::builder("db").capacity(1).build().unwrap();
    /// let _held = limiter.try_acquire().unwrap();
    /// let deadline = Instant::now() + Duration::from_millis(20);
    /// let err = limiter.acquire_until(deadline).await.unwrap_err();
    /// assert_eq!(err.reason(), RejectReason::DeadlineExceeded);
    /// assert_eq!(limiter.waiting(), 0);
    /// # }
    /// ```
    #[cfg(feature = "timeout")]
    pub fn acquire_until(&self, deadline: std::time::Instant) -> Acquire {
        Acquire::new(Arc::clone(&self.inner), Some(deadline))
    }

    /// Takes a permit only if one is free at once; never waits. Refuses with `QueueFull`
    /// (no free permit, or others are queued: no barging) or `Closed`.
    ///
    /// ```
    /// use fairgate::limit::{Limiter, RejectReason};
    /// let limiter = Limiter::builder("db").capacity(1).build()?;
    /// let held = limiter.try_acquire().unwrap();
    /// assert_eq!(limiter.try_acquire().unwrap_err().reason(), RejectReason::QueueFull);
    /// # Ok::<(), fairgate::limit::ConfigError>(())
    /// ```
    pub fn try_acquire(&self) -> Result<LimitPermit, Rejected> {
        match self.inner.try_admit()? {
            Some(permit) => Ok(permit),
            None => Err(self.inner.reject(RejectReason::QueueFull, Duration::ZERO)),
        }
    }

    /// The non-waiting part of an acquisition, for the tower layer's fast path: `Ok(Some)`
    /// admitted, `Ok(None)` must wait (build an [`Acquire`]), `Err` refused (closed).
    #[cfg(feature = "tower")]
    #[inline]
    pub(crate) fn try_admit(&self) -> Result<Option<LimitPermit>, Rejected> {
        self.inner.try_admit()
    }

    /// Permits out right now. Between resizes it is exact as of one atomic read, so under
    /// contention it may be stale by the grants and releases racing with it. In hard mode a
    /// permit already granted to a queued waiter that has not run yet counts too, and while
    /// a [`set_capacity`](Self::set_capacity) is under way a concurrent read can be off by
    /// up to the size of the change (see the module docs: which counts are exact). It can
    /// exceed [`capacity`](Self::capacity) after a shrink (work admitted before it).
    ///
    /// ```
    /// let limiter = fairgate::limit::Limiter::builder("db").capacity(2).build()?;
    /// let _p = limiter.try_acquire().unwrap();
    /// assert_eq!(limiter.in_flight(), 1);
    /// # Ok::<(), fairgate::limit::ConfigError>(())
    /// ```
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight()
    }

    /// Acquisitions waiting right now (queue slots taken). Never exceeds `max_queue`; under
    /// contention a waiter that was just granted may still be counted until its future runs.
    ///
    /// ```
    /// let limiter = fairgate::limit::Limiter::builder("db").capacity(2).build()?;
    /// assert_eq!(limiter.waiting(), 0);
    /// # Ok::<(), fairgate::limit::ConfigError>(())
    /// ```
    pub fn waiting(&self) -> usize {
        self.inner.waiting.load(Acq)
    }

    /// The configured capacity (0 = passthrough); reflects [`set_capacity`](Self::set_capacity)
    /// at once, while the permits follow as work drains (see the module docs).
    ///
    /// ```
    /// let limiter = fairgate::limit::Limiter::builder("db").capacity(2).build()?;
    /// assert_eq!(limiter.capacity(), 2);
    /// # Ok::<(), fairgate::limit::ConfigError>(())
    /// ```
    pub fn capacity(&self) -> usize {
        self.inner.capacity.get()
    }

    /// The queue bound (`None` = unbounded).
    ///
    /// ```
    /// let limiter = fairgate::limit::Limiter::builder("db").capacity(2).max_queue(Some(5)).build()?;
    /// assert_eq!(limiter.max_queue(), Some(5));
    /// # Ok::<(), fairgate::limit::ConfigError>(())
    /// ```
    pub fn max_queue(&self) -> Option<usize> {
        self.inner.config.max_queue
    }

    /// Hard or soft.
    ///
    /// ```
    /// use fairgate::limit::{Limiter, Mode};
    /// let limiter = Limiter::builder("db").build()?;
    /// assert_eq!(limiter.mode(), Mode::Hard);
    /// # Ok::<(), fairgate::limit::ConfigError>(())
    /// ```
    pub fn mode(&self) -> Mode {
        self.inner.config.mode
    }

    /// The limiter's name.
    ///
    /// ```
    /// let limiter = fairgate::limit::Limiter::builder("db").build()?;
    /// assert_eq!(limiter.name(), "db");
    /// # Ok::<(), fairgate::limit::ConfigError>(())
    /// ```
    pub fn name(&self) -> &str {
        &self.inner.config.name
    }

    /// The current configuration: as built, with the current capacity.
    ///
    /// ```
    /// let limiter = fairgate::limit::Limiter::builder("db").capacity(2).build()?;
    /// limiter.set_capacity(5)?;
    /// assert_eq!(limiter.config().capacity(), 5);
    /// # Ok::<(), fairgate::limit::ConfigError>(())
    /// ```
    pub fn config(&self) -> LimiterConfig {
        let mut config = self.inner.config.clone();
        config.capacity = self.capacity();
        config
    }

    /// All counts at once (each read separately: approximate under contention).
    ///
    /// ```
    /// let limiter = fairgate::limit::Limiter::builder("db").capacity(2).build()?;
    /// let _p = limiter.try_acquire().unwrap();
    /// let snap = limiter.snapshot();
    /// assert_eq!((snap.in_flight, snap.waiting, snap.capacity, snap.closed), (1, 0, 2, false));
    /// # Ok::<(), fairgate::limit::ConfigError>(())
    /// ```
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            name: Arc::clone(&self.inner.config.name),
            mode: self.mode(),
            capacity: self.capacity(),
            in_flight: self.in_flight(),
            waiting: self.waiting(),
            max_queue: self.max_queue(),
            closed: self.is_closed(),
        }
    }

    /// Changes the capacity at run time, lock-free. Growing hands the new permits to queued
    /// waiters first (FIFO). Shrinking below the in-flight count admits nobody new until
    /// in-flight work falls under the new capacity: returning permits are absorbed. `0`
    /// makes the limiter a passthrough (every queued waiter is admitted at once, newcomers
    /// never wait; the queue settings lie dormant), and a later `n > 0` limits again, with
    /// the work admitted meanwhile counted against `n`. On a soft limiter only the reported
    /// capacity changes. Concurrent calls commute; the last to install its value wins. A
    /// release racing the shrink may hand its permit on once more; the module docs bound
    /// that effect.
    ///
    /// Fails with [`ConfigError::CapacityTooLarge`] (changing nothing) above
    /// [`MAX_CAPACITY`](super::MAX_CAPACITY).
    ///
    /// ```
    /// let limiter = fairgate::limit::Limiter::builder("db").capacity(2).build()?;
    /// let (a, b) = (limiter.try_acquire().unwrap(), limiter.try_acquire().unwrap());
    /// limiter.set_capacity(1)?;
    /// drop(a); // absorbed by the shrink: still one in flight, capacity 1
    /// assert!(limiter.try_acquire().is_err());
    /// drop(b);
    /// assert!(limiter.try_acquire().is_ok());
    /// # Ok::<(), fairgate::limit::ConfigError>(())
    /// ```
    pub fn set_capacity(&self, n: usize) -> Result<(), ConfigError> {
        check_capacity(n)?;
        self.inner.capacity.set(n);
        if let Some(observer) = &self.inner.observer {
            self.inner.report_counts(observer.as_ref());
        }
        Ok(())
    }

    /// Closes the limiter: queued and future acquisitions are refused with
    /// [`Closed`](RejectReason::Closed); permits already out stay valid. Irreversible.
    ///
    /// ```
    /// use fairgate::limit::{Limiter, RejectReason};
    /// let limiter = Limiter::builder("db").capacity(2).build()?;
    /// limiter.close();
    /// assert!(limiter.is_closed());
    /// assert_eq!(limiter.try_acquire().unwrap_err().reason(), RejectReason::Closed);
    /// # Ok::<(), fairgate::limit::ConfigError>(())
    /// ```
    pub fn close(&self) {
        self.inner.capacity.semaphore().close();
    }

    /// Whether [`close`](Self::close) was called.
    ///
    /// ```
    /// let limiter = fairgate::limit::Limiter::builder("db").build()?;
    /// assert!(!limiter.is_closed());
    /// # Ok::<(), fairgate::limit::ConfigError>(())
    /// ```
    pub fn is_closed(&self) -> bool {
        self.inner.capacity.semaphore().is_closed()
    }

    /// Whether both handles are the same limiter (clones of one another).
    ///
    /// ```
    /// use fairgate::limit::Limiter;
    /// let a = Limiter::builder("db").build()?;
    /// let b = Limiter::builder("db").build()?;
    /// assert!(a.same_limiter(&a.clone()));
    /// assert!(!a.same_limiter(&b));
    /// # Ok::<(), fairgate::limit::ConfigError>(())
    /// ```
    pub fn same_limiter(&self, other: &Limiter) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Permits a shrink still has to absorb (for tests and diagnostics).
    #[doc(hidden)]
    pub fn __debt(&self) -> usize {
        self.inner.capacity.debt()
    }

    /// The underlying semaphore's total permits (for tests and diagnostics).
    #[doc(hidden)]
    pub fn __total_permits(&self) -> usize {
        self.inner.capacity.semaphore().total_permits()
    }
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Limiter").field(&self.snapshot()).finish()
    }
}

/// A limiter's counts at one moment (each read separately; see [`Limiter::snapshot`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Snapshot {
    /// The limiter's name.
    pub name: Arc<str>,
    /// Hard or soft.
    pub mode: Mode,
    /// The configured capacity (0 = passthrough).
    pub capacity: usize,
    /// Permits out.
    pub in_flight: usize,
    /// Acquisitions queued.
    pub waiting: usize,
    /// The queue bound (`None` = unbounded).
    pub max_queue: Option<usize>,
    /// Whether the limiter is closed.
    pub closed: bool,
}
