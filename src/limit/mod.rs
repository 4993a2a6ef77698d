//! Admission control: a [`Limiter`] with a capacity, a bounded FIFO queue, a queue timeout
//! and hard or soft mode, built only on the public API of fairgate's [`Semaphore`].
//!
//! # Example
//! ```
//! # futures::executor::block_on(async {
//! use fairgate::limit::{Limiter, RejectReason};
//!
//! // At most 2 requests at once, at most 1 waiting.
//! let limiter = Limiter::builder("upstream-a").capacity(2).max_queue(Some(1)).build()?;
//!
//! let a = limiter.acquire().await?;
//! let b = limiter.acquire().await?;
//! assert_eq!(limiter.in_flight(), 2);
//!
//! // A third request waits (here: a future polled once and parked in the queue) ...
//! let mut queued = Box::pin(limiter.acquire());
//! assert!(futures::poll!(&mut queued).is_pending());
//! assert_eq!(limiter.waiting(), 1);
//! // ... and a fourth finds the queue full: refused at once.
//! let full = limiter.acquire().await.unwrap_err();
//! assert_eq!(full.reason(), RejectReason::QueueFull);
//!
//! // A released slot goes straight to the oldest waiter.
//! drop(a);
//! let c = queued.await?;
//! assert_eq!((limiter.in_flight(), limiter.waiting()), (2, 0));
//! # drop((b, c));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//! With the `timeout` feature, [`LimiterBuilder`]'s `queue_timeout` bounds each wait (see
//! its example).
//!
//! # The model
//! * **Hard mode** enforces the capacity with a [`Semaphore`]: at most `capacity` permits
//!   are out. An acquisition that finds no free permit waits in FIFO order; a released
//!   permit goes straight to the oldest waiter, and nobody barges past the queue (not even
//!   [`Limiter::try_acquire`]).
//! * **Soft mode** admits everything at once and only counts in-flight work (for
//!   load-balancer scoring and gauges). It never waits and never rejects, unless closed.
//! * **Capacity 0 is a passthrough**: everything is admitted at once and counted. (Unlike
//!   `tower::limit::ConcurrencyLimit`, where 0 blocks forever.) Internally it is a virtual
//!   capacity no workload reaches (a fifth of [`Semaphore::MAX_PERMITS`]: about 6.7
//!   million on 32-bit targets, far more on 64-bit), so the admission path is the same as
//!   in hard mode.
//! * **The queue bound** (`max_queue`): `None` unbounded, `Some(0)` refuse at once with
//!   [`QueueFull`](RejectReason::QueueFull) when no permit is free, `Some(k)` at most `k`
//!   waiters. The bound is exact: a waiter first reserves a queue slot by CAS on the waiting
//!   count and never exceeds the bound, also when many acquirers race at `k - 1`; a refused
//!   acquirer changes nothing.
//! * **Queue timeout** (feature `timeout`): an acquisition that waits longer than
//!   `queue_timeout` is refused with [`QueueTimeout`](RejectReason::QueueTimeout);
//!   `Limiter::acquire_until` adds the caller's own deadline
//!   ([`DeadlineExceeded`](RejectReason::DeadlineExceeded)).
//! * **Permits are values.** Every acquisition yields a fresh [`LimitPermit`], released
//!   exactly once when dropped. There is no shared "released" flag, so retries through the
//!   same code path can neither leak nor double-release.
//!
//! # Counts: which are exact
//! * [`Limiter::capacity`] is exact: the value last installed.
//! * [`Limiter::in_flight`]: in soft mode a counter of live permits, incremented just after
//!   a grant and decremented just before the release, so a concurrent reader may see it one
//!   step behind. In hard mode (and in passthrough) it is not counted separately: it is the
//!   semaphore's permits that are neither free nor forgotten (`total − available`, the total
//!   read first), which keeps the admission path at the semaphore's own atomics. Between
//!   resizes that is exact as of one atomic read (the free permits), with two differences
//!   from counting live [`LimitPermit`]s: a permit already handed to a queued waiter whose
//!   future has not run yet counts as in flight (and that waiter still counts as waiting),
//!   and while a [`Limiter::set_capacity`] is under way a concurrent reader can see it off
//!   by up to the size of the change (a switch to or from passthrough moves millions of
//!   virtual permits), until the resize returns. After a shrink it may exceed the capacity
//!   until the excess work finishes.
//! * [`Limiter::waiting`] counts reserved queue slots. It never exceeds `max_queue` at any
//!   instant. A waiter whose permit was just granted stays counted until its future is
//!   polled, so under contention it can over-report briefly.
//! * [`Limiter::snapshot`] reads each count separately: a consistent picture only when
//!   nothing is in flight, an approximation otherwise. Observer gauges read the same way.
//!
//! # Resizing: [`Limiter::set_capacity`]
//! Lock-free; the capacity reported changes at once. Growing pays down any debt left by an
//! earlier shrink and adds the rest as permits, which the semaphore hands to queued waiters
//! first. Shrinking records the decrease as a debt first and then removes free permits; a
//! permit returning while debt remains is absorbed instead of released. So after a shrink
//! below the in-flight count, nobody new is admitted until in-flight work falls under the
//! new capacity, and no permit is ever lost or invented (loom-modelled). `set_capacity(0)`
//! turns a hard limiter into a passthrough: every queued waiter is admitted at once and
//! newcomers never wait (queue settings lie dormant); a later `set_capacity(n)` limits
//! again, counting the work admitted meanwhile against `n`. Concurrent calls commute.
//!
//! One race is inherent in building on the semaphore (whose release cannot also check a
//! debt atomically): a release already under way when a shrink starts may still hand its
//! permit to a waiter or a newcomer once. The shrink's debt then absorbs a later return
//! instead, so permits out can exceed the new capacity by at most the number of releases
//! that overlapped the shrink, and only until that many permits have come back. A release
//! re-checks the debt after handing its permit to the semaphore and takes back a permit
//! left free, so the debt can never be stranded with permits free above the capacity.
//!
//! # Cancel safety
//! Dropping an [`Acquire`] future at any point is safe: a queued acquisition leaves the
//! queue, returns its queue slot and passes on any permit granted to it in the meantime.
//! Observers see it as `canceled`.
//!
//! # Runtime
//! A [`Limiter`] needs no runtime: its futures run on any executor, and without the
//! `timeout` feature it pulls in no dependency. Queue timeouts and `acquire_until` use
//! tokio's timer (feature `timeout`): an acquisition that has to wait with a timeout must
//! be polled inside a tokio runtime with time enabled. The uncontended path reads no clock
//! and allocates nothing: a hard-mode grant and its release are the semaphore's own atomics,
//! one reference count on the limiter's state and one read-modify-write of the shrink debt.
//!
//! # Observability
//! [`Limiter::in_flight`], [`Limiter::waiting`], [`Limiter::capacity`] and
//! [`Limiter::snapshot`] are pull-style. The dependency-free [`Observer`] trait receives
//! every event (acquired, rejected, canceled, released, counts). Feature `metrics` adds
//! `MetricsObserver` (the `metrics` facade: gauges, a requests counter by result and a
//! queue-wait histogram); feature `tracing` emits a `debug` event for every rejection.
//!
//! [`Semaphore`]: crate::Semaphore
//! [`Semaphore::MAX_PERMITS`]: crate::Semaphore::MAX_PERMITS

mod acquire;
mod capacity;
mod config;
mod limiter;
// The keyed manager (tower helper's files): `pub(crate)` for the keyed layer's lease.
pub(crate) mod manager;
#[cfg(feature = "metrics")]
mod metrics;
mod observer;
mod permit;
mod rejected;

pub use acquire::Acquire;
#[cfg(feature = "timeout")]
pub use config::MAX_QUEUE_TIMEOUT;
pub use config::{ConfigError, LimiterBuilder, LimiterConfig, Mode, MAX_CAPACITY, MAX_QUEUE};
pub use limiter::{Limiter, Snapshot};
pub use manager::{
    KeySnapshot, KeyState, LimiterManager, LimiterManagerBuilder, ManagerError, Update,
};
#[cfg(feature = "metrics")]
pub use metrics::MetricsObserver;
pub use observer::Observer;
pub use permit::LimitPermit;
pub use rejected::{RejectReason, Rejected};
