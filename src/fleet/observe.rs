//! Fleet counters (always on, cheap atomics) and the [`FleetObserver`] hook.

// The crate is `no_std` with `std` linked: bring std's prelude and macros in.
#[allow(unused_imports)]
use std::prelude::rust_2021::*;
#[allow(unused_imports)]
use std::{format, vec};

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Fleet events, for metrics or logs. All methods default to no-ops; `key` is the
/// limiter key. Called from request tasks and from the background tasks: keep them cheap.
pub trait FleetObserver: Send + Sync + 'static {
    /// A request was admitted with a global lease after `waited` and `round_trips` acquire
    /// calls by its head.
    fn on_admitted(&self, key: &str, waited: Duration, round_trips: u32) {
        let _ = (key, waited, round_trips);
    }
    /// A request was admitted on the local limiter alone because Redis is unreachable
    /// (fail open).
    fn on_degraded(&self, key: &str) {
        let _ = key;
    }
    /// One script call took `rtt`.
    fn on_round_trip(&self, key: &str, rtt: Duration) {
        let _ = (key, rtt);
    }
    /// A call failed (error or timeout).
    fn on_backend_error(&self, key: &str, error: &str) {
        let _ = (key, error);
    }
    /// A held lease was found gone on renewal. It is never re-acquired silently; the permit
    /// reports [`is_lost`](super::FleetPermit::is_lost).
    fn on_lease_lost(&self, key: &str, lease_id: &str, fence: u64) {
        let _ = (key, lease_id, fence);
    }
    /// After a detected reset (epoch change) `count` held leases were re-asserted.
    fn on_reasserted(&self, key: &str, count: u64) {
        let _ = (key, count);
    }
    /// A request was refused because Redis was unreachable (fail closed).
    fn on_unavailable(&self, key: &str) {
        let _ = key;
    }
}

/// The no-op observer.
pub(crate) struct NoFleetObserver;
impl FleetObserver for NoFleetObserver {}

/// A copy of the limiter's counters since it was built (this process only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FleetCounters {
    /// Requests admitted with a global lease.
    pub admitted: u64,
    /// Acquire script calls (round trips on the admission path).
    pub acquire_calls: u64,
    /// Requests admitted on the local limiter alone while Redis was unreachable.
    pub degraded: u64,
    /// Leases found gone on renewal.
    pub leases_lost: u64,
    /// Leases re-asserted after a detected reset.
    pub leases_reasserted: u64,
    /// Failed or timed-out calls.
    pub backend_errors: u64,
    /// Acquire answers "quarantined after a reset".
    pub quarantined: u64,
    /// Requests refused because Redis was unreachable (fail closed).
    pub unavailable: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) admitted: AtomicU64,
    pub(crate) acquire_calls: AtomicU64,
    pub(crate) degraded: AtomicU64,
    pub(crate) leases_lost: AtomicU64,
    pub(crate) leases_reasserted: AtomicU64,
    pub(crate) backend_errors: AtomicU64,
    pub(crate) quarantined: AtomicU64,
    pub(crate) unavailable: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> FleetCounters {
        FleetCounters {
            admitted: self.admitted.load(Relaxed),
            acquire_calls: self.acquire_calls.load(Relaxed),
            degraded: self.degraded.load(Relaxed),
            leases_lost: self.leases_lost.load(Relaxed),
            leases_reasserted: self.leases_reasserted.load(Relaxed),
            backend_errors: self.backend_errors.load(Relaxed),
            quarantined: self.quarantined.load(Relaxed),
            unavailable: self.unavailable.load(Relaxed),
        }
    }
}

/// The fleet events through the [`metrics`](https://docs.rs/metrics) facade (feature
/// `metrics`), on the same [`MetricsObserver`](crate::limit::MetricsObserver) as the local
/// limiter's; label `key` = the limiter key:
///
/// | name | kind | extra labels |
/// |---|---|---|
/// | `fairgate_fleet_admissions_total` | counter | `result` = `leased` / `degraded` / `unavailable` |
/// | `fairgate_fleet_wait_seconds` | histogram | |
/// | `fairgate_fleet_acquire_round_trips` | histogram | (acquire calls per leased admission) |
/// | `fairgate_fleet_round_trip_seconds` | histogram | |
/// | `fairgate_fleet_backend_errors_total` | counter | |
/// | `fairgate_fleet_leases_lost_total` | counter | |
/// | `fairgate_fleet_leases_reasserted_total` | counter | |
#[cfg(feature = "metrics")]
impl FleetObserver for crate::limit::MetricsObserver {
    fn on_admitted(&self, key: &str, waited: Duration, round_trips: u32) {
        let key = key.to_owned();
        metrics::counter!("fairgate_fleet_admissions_total", "key" => key.clone(), "result" => "leased")
            .increment(1);
        metrics::histogram!("fairgate_fleet_wait_seconds", "key" => key.clone())
            .record(waited.as_secs_f64());
        metrics::histogram!("fairgate_fleet_acquire_round_trips", "key" => key)
            .record(f64::from(round_trips));
    }
    fn on_degraded(&self, key: &str) {
        metrics::counter!("fairgate_fleet_admissions_total", "key" => key.to_owned(), "result" => "degraded")
            .increment(1);
    }
    fn on_unavailable(&self, key: &str) {
        metrics::counter!("fairgate_fleet_admissions_total", "key" => key.to_owned(), "result" => "unavailable")
            .increment(1);
    }
    fn on_round_trip(&self, key: &str, rtt: Duration) {
        metrics::histogram!("fairgate_fleet_round_trip_seconds", "key" => key.to_owned())
            .record(rtt.as_secs_f64());
    }
    fn on_backend_error(&self, key: &str, _error: &str) {
        metrics::counter!("fairgate_fleet_backend_errors_total", "key" => key.to_owned())
            .increment(1);
    }
    fn on_lease_lost(&self, key: &str, _lease_id: &str, _fence: u64) {
        metrics::counter!("fairgate_fleet_leases_lost_total", "key" => key.to_owned()).increment(1);
    }
    fn on_reasserted(&self, key: &str, count: u64) {
        metrics::counter!("fairgate_fleet_leases_reasserted_total", "key" => key.to_owned())
            .increment(count);
    }
}
