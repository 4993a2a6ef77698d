//! Why an acquisition was refused: [`Rejected`] and its [`RejectReason`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Why a limiter refused an acquisition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectReason {
    /// The queue was full (`max_queue` reached, or `Some(0)` and no permit free): refused at
    /// once, without waiting.
    QueueFull,
    /// The acquisition waited for the limiter's `queue_timeout` without getting a permit.
    QueueTimeout,
    /// The caller's own deadline (`acquire_until`) ran out while waiting.
    DeadlineExceeded,
    /// The limiter is closed.
    Closed,
    /// A keyed manager refused to create a limiter for a new key (its `max_keys` bound).
    TooManyKeys,
    /// A shared backend the admission depends on could not be reached, e.g. the Redis of a
    /// fleet limiter (feature `redis`) with fail mode `Closed`.
    Unavailable,
}

impl RejectReason {
    /// A stable `snake_case` label: `queue_full`, `queue_timeout`, `deadline_exceeded`,
    /// `closed`, `too_many_keys` or `unavailable` (used as the `result` label of metrics).
    ///
    /// ```
    /// assert_eq!(fairgate::limit::RejectReason::QueueFull.as_str(), "queue_full");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::QueueFull => "queue_full",
            RejectReason::QueueTimeout => "queue_timeout",
            RejectReason::DeadlineExceeded => "deadline_exceeded",
            RejectReason::Closed => "closed",
            RejectReason::TooManyKeys => "too_many_keys",
            RejectReason::Unavailable => "unavailable",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused acquisition: the reason, how long it waited, and which limiter refused it.
///
/// An `std::error::Error + Send + Sync + 'static`, so it boxes into `tower::BoxError` and
/// downcasts back.
///
/// ```
/// use fairgate::limit::{Limiter, RejectReason};
/// let limiter = Limiter::builder("db").capacity(1).max_queue(Some(0)).build()?;
/// let _held = limiter.try_acquire().unwrap();
/// let rejected = limiter.try_acquire().unwrap_err();
/// assert_eq!(rejected.reason(), RejectReason::QueueFull);
/// assert_eq!(rejected.limiter(), "db");
/// assert_eq!(rejected.to_string(), "limiter `db` rejected the request: queue_full");
/// # Ok::<(), fairgate::limit::ConfigError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Rejected {
    reason: RejectReason,
    waited: Duration,
    limiter: Arc<str>,
}

impl Rejected {
    /// A rejection by `limiter` for `reason` after waiting `waited`. Public so that layers
    /// above (a keyed manager, adapters) can report their own refusals the same way.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fairgate::limit::{Rejected, RejectReason};
    /// let r = Rejected::new(RejectReason::TooManyKeys, Duration::ZERO, "tenants".into());
    /// assert_eq!(r.reason().as_str(), "too_many_keys");
    /// ```
    pub fn new(reason: RejectReason, waited: Duration, limiter: Arc<str>) -> Self {
        Rejected {
            reason,
            waited,
            limiter,
        }
    }

    /// Why the acquisition was refused.
    ///
    /// ```
    /// # use fairgate::limit::{Rejected, RejectReason};
    /// let r = Rejected::new(RejectReason::Closed, Default::default(), "db".into());
    /// assert_eq!(r.reason(), RejectReason::Closed);
    /// ```
    pub fn reason(&self) -> RejectReason {
        self.reason
    }

    /// How long the acquisition waited before it was refused (zero if refused at once).
    ///
    /// ```
    /// # use fairgate::limit::{Rejected, RejectReason};
    /// let r = Rejected::new(RejectReason::QueueFull, Default::default(), "db".into());
    /// assert!(r.waited().is_zero());
    /// ```
    pub fn waited(&self) -> Duration {
        self.waited
    }

    /// The name of the limiter that refused it.
    ///
    /// ```
    /// # use fairgate::limit::{Rejected, RejectReason};
    /// let r = Rejected::new(RejectReason::QueueFull, Default::default(), "db".into());
    /// assert_eq!(r.limiter(), "db");
    /// ```
    pub fn limiter(&self) -> &str {
        &self.limiter
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "limiter `{}` rejected the request: {}",
            self.limiter, self.reason
        )?;
        if !self.waited.is_zero() {
            write!(f, " after waiting {:?}", self.waited)?;
        }
        Ok(())
    }
}

impl std::error::Error for Rejected {}
