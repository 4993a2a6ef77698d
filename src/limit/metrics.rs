//! [`MetricsObserver`]: records a limiter's events through the `metrics` facade (feature
//! `metrics`).

use std::borrow::ToOwned;
use std::time::Duration;

use metrics::{counter, gauge, histogram};

use super::observer::Observer;
use super::rejected::RejectReason;

/// An [`Observer`] that records through the [`metrics`](https://docs.rs/metrics) facade,
/// into whatever recorder the application installed:
///
/// | name | kind | labels |
/// |---|---|---|
/// | `fairgate_in_flight` | gauge | `limiter` |
/// | `fairgate_waiting` | gauge | `limiter` |
/// | `fairgate_capacity` | gauge | `limiter` |
/// | `fairgate_requests_total` | counter | `limiter`, `result` = `acquired` / `queue_full` / `queue_timeout` / `deadline_exceeded` / `closed` / `canceled` (and `unavailable` from a fleet limiter) |
/// | `fairgate_queue_wait_seconds` | histogram | `limiter`, `result` (as above) |
///
/// The only label is the limiter's name (no per-key label: cardinality). No `metrics` type
/// appears in fairgate's public API, so a `metrics` major release is not a breaking change
/// here.
///
/// ```
/// use std::sync::Arc;
/// use fairgate::limit::{Limiter, MetricsObserver};
/// let limiter = Limiter::builder("upstream")
///     .capacity(4)
///     .observer(Arc::new(MetricsObserver::new()))
///     .build()?;
/// drop(limiter.try_acquire().unwrap()); // counted as `acquired` in the installed recorder
/// # Ok::<(), fairgate::limit::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub struct MetricsObserver;

impl MetricsObserver {
    /// A metrics observer.
    ///
    /// ```
    /// let observer = fairgate::limit::MetricsObserver::new();
    /// ```
    pub fn new() -> Self {
        MetricsObserver
    }
}

fn record(limiter: &str, result: &'static str, waited: Duration) {
    let name = limiter.to_owned();
    counter!("fairgate_requests_total", "limiter" => name.clone(), "result" => result).increment(1);
    histogram!("fairgate_queue_wait_seconds", "limiter" => name, "result" => result)
        .record(waited.as_secs_f64());
}

impl Observer for MetricsObserver {
    fn on_acquired(&self, limiter: &str, waited: Duration) {
        record(limiter, "acquired", waited);
    }

    fn on_rejected(&self, limiter: &str, reason: RejectReason, waited: Duration) {
        record(limiter, reason.as_str(), waited);
    }

    fn on_canceled(&self, limiter: &str, waited: Duration) {
        record(limiter, "canceled", waited);
    }

    fn on_counts(&self, limiter: &str, in_flight: usize, waiting: usize, capacity: usize) {
        let name = limiter.to_owned();
        gauge!("fairgate_in_flight", "limiter" => name.clone()).set(in_flight as f64);
        gauge!("fairgate_waiting", "limiter" => name.clone()).set(waiting as f64);
        gauge!("fairgate_capacity", "limiter" => name).set(capacity as f64);
    }
}
