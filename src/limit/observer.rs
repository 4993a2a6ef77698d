//! The dependency-free [`Observer`] hook: the same events the `metrics` feature records, for
//! users of any other telemetry.

use std::time::Duration;

use super::rejected::RejectReason;

/// Receives a limiter's events. Every method has an empty default, so an observer implements
/// only what it needs. Calls happen inline on the acquiring or releasing thread: keep them
/// cheap and never block.
///
/// Install one with [`LimiterBuilder::observer`](super::LimiterBuilder::observer) or
/// [`Limiter::with_observer`](super::Limiter::with_observer). Without an observer a limiter
/// does no observation work at all (no clock read on the uncontended path).
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use fairgate::limit::{Limiter, Observer};
///
/// #[derive(Default)]
/// struct Count(AtomicUsize);
/// impl Observer for Count {
///     fn on_acquired(&self, _limiter: &str, _waited: std::time::Duration) {
///         self.0.fetch_add(1, Ordering::Relaxed);
///     }
/// }
///
/// let count = Arc::new(Count::default());
/// let limiter = Limiter::builder("db").capacity(1).observer(count.clone()).build()?;
/// drop(limiter.try_acquire().unwrap());
/// assert_eq!(count.0.load(Ordering::Relaxed), 1);
/// # Ok::<(), fairgate::limit::ConfigError>(())
/// ```
pub trait Observer: Send + Sync + 'static {
    /// A permit was granted after waiting `waited` (zero when granted at once).
    fn on_acquired(&self, limiter: &str, waited: Duration) {
        let _ = (limiter, waited);
    }

    /// An acquisition was refused for `reason` after waiting `waited`.
    fn on_rejected(&self, limiter: &str, reason: RejectReason, waited: Duration) {
        let _ = (limiter, reason, waited);
    }

    /// A queued acquisition was dropped by its caller after waiting `waited`.
    fn on_canceled(&self, limiter: &str, waited: Duration) {
        let _ = (limiter, waited);
    }

    /// A permit was released after being held for `held`.
    fn on_released(&self, limiter: &str, held: Duration) {
        let _ = (limiter, held);
    }

    /// The limiter's counts after an event (for gauges). Approximate under contention: each
    /// count is read separately, after the event.
    fn on_counts(&self, limiter: &str, in_flight: usize, waiting: usize, capacity: usize) {
        let _ = (limiter, in_flight, waiting, capacity);
    }
}
