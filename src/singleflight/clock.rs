//! Time sources and spawners that the cache can be given.

use std::boxed::Box;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A source of monotonic time.
///
/// The cache reads the clock once per call; everything it decides (fresh or
/// stale, throttled or not) is relative to that reading. Tests inject a
/// [`ManualClock`] so nothing ever depends on wall-clock sleeps.
pub trait Clock: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> Instant;

    /// Whole nanoseconds from `origin`, an earlier reading of this clock's
    /// [`now`](Clock::now), to now: 0 if the clock reads earlier than
    /// `origin`, `u64::MAX` for spans of more than about 584 years.
    ///
    /// This is the reading the cache takes on every call (`origin` is the
    /// clock's reading when the cache was built), so it is the one to make
    /// cheap. The default is `now()` minus `origin`; implement it when a clock
    /// can count nanoseconds without building an `Instant` first, as
    /// [`ManualClock`] does. It must agree with `now()`: the cache turns its
    /// deadlines back into `Instant`s (`Throttled::retry_in`, the overflow
    /// rules of the policy's spans) relative to `origin`.
    ///
    /// ```
    /// use fairgate::singleflight::{Clock, ManualClock, SystemClock};
    /// use std::time::{Duration, Instant};
    ///
    /// // A clock that keeps its own nanosecond count needs only `now`, but
    /// // can answer `nanos_since` without any `Instant` arithmetic.
    /// struct Stepped { base: Instant, nanos: u64 }
    /// impl Clock for Stepped {
    ///     fn now(&self) -> Instant {
    ///         self.base + Duration::from_nanos(self.nanos)
    ///     }
    ///     fn nanos_since(&self, origin: Instant) -> u64 {
    ///         if origin == self.base {
    ///             self.nanos
    ///         } else {
    ///             // Not our own origin: fall back to the definition.
    ///             let d = self.now().saturating_duration_since(origin);
    ///             u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
    ///         }
    ///     }
    /// }
    /// let base = Instant::now();
    /// let c = Stepped { base, nanos: 1_500 };
    /// assert_eq!(c.nanos_since(base), 1_500);
    ///
    /// let m = ManualClock::new();
    /// let origin = m.now();
    /// m.advance(Duration::from_micros(3));
    /// assert_eq!(m.nanos_since(origin), 3_000);
    /// assert_eq!(m.nanos_since(m.now() + Duration::from_secs(1)), 0);
    ///
    /// let origin = SystemClock.now();
    /// assert!(SystemClock.nanos_since(origin) < 60_000_000_000);
    /// ```
    #[inline]
    fn nanos_since(&self, origin: Instant) -> u64 {
        saturating_nanos(self.now().saturating_duration_since(origin))
    }
}

/// `d` in whole nanoseconds, saturating at `u64::MAX` (no `u128`).
#[inline]
pub(crate) fn saturating_nanos(d: Duration) -> u64 {
    d.as_secs()
        .checked_mul(1_000_000_000)
        .and_then(|s| s.checked_add(u64::from(d.subsec_nanos())))
        .unwrap_or(u64::MAX)
}

/// The default clock: [`std::time::Instant::now`].
///
/// The cache reads it as `epoch.elapsed()` (an `Instant` taken when the cache
/// was built): only documented std behaviour, one `clock_gettime` (vDSO) read
/// and std's `Instant` subtraction per call.
///
/// A faster clock is an explicit choice: implement [`Clock`] (its
/// [`nanos_since`](Clock::nanos_since) is the per-call reading) over a clock
/// you trust, e.g. a TSC-based one such as the `quanta` crate, and pass it to
/// [`Builder::clock`](super::Builder::clock).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[inline]
    fn now(&self) -> Instant {
        Instant::now()
    }

    /// `origin.elapsed()`: one call into std for the read and the
    /// subtraction together.
    #[inline]
    fn nanos_since(&self, origin: Instant) -> u64 {
        saturating_nanos(origin.elapsed())
    }
}

/// A clock that only moves when told to. Clones share the same time.
///
/// ```
/// use fairgate::singleflight::{Clock, ManualClock};
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let t0 = clock.now();
/// clock.advance(Duration::from_secs(5));
/// assert_eq!(clock.now() - t0, Duration::from_secs(5));
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    inner: Arc<ManualInner>,
}

#[derive(Debug)]
struct ManualInner {
    base: Instant,
    offset_nanos: AtomicU64,
}

impl ManualClock {
    /// A clock frozen at the moment of creation.
    pub fn new() -> Self {
        let base = Instant::now();
        ManualClock {
            inner: Arc::new(ManualInner {
                base,
                offset_nanos: AtomicU64::new(0),
            }),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.inner.offset_nanos.fetch_add(nanos, Ordering::SeqCst);
    }

    /// How far the clock has been advanced since creation.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.advanced())
    }

    /// [`elapsed`](ManualClock::elapsed) in whole nanoseconds.
    #[inline]
    pub(super) fn advanced(&self) -> u64 {
        self.inner.offset_nanos.load(Ordering::SeqCst)
    }

    /// `now()` together with the advance it was computed from (one read,
    /// so the pair is consistent under a concurrent `advance`).
    pub(super) fn reading(&self) -> (Instant, u64) {
        let off = self.advanced();
        (self.inner.base + Duration::from_nanos(off), off)
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.inner.base + self.elapsed()
    }

    /// The advanced nanoseconds plus the base's distance from `origin`
    /// (`Instant::checked_duration_since`, documented std): no `Instant` is
    /// built for the reading. Exactly `now() − origin`, saturating.
    #[inline]
    fn nanos_since(&self, origin: Instant) -> u64 {
        let off = self.inner.offset_nanos.load(Ordering::SeqCst);
        let base = self.inner.base;
        // now − origin = off + (base − origin).
        match base.checked_duration_since(origin) {
            Some(ahead) => off.saturating_add(saturating_nanos(ahead)),
            None => off.saturating_sub(saturating_nanos(origin - base)),
        }
    }
}

/// A boxed future handed to a [`Spawn`] implementation.
pub type SpawnedFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Runs futures detached from the caller (an executor handle).
///
/// Optional. With a spawner, loads keep running when every caller has gone
/// away, and a stale hit refreshes in the background so even the caller that
/// triggered the refresh gets the stale value at once. Any `Fn(SpawnedFuture)`
/// closure is a spawner, e.g. `|f| { tokio::spawn(f); }`.
pub trait Spawn: Send + Sync + 'static {
    /// Starts `fut` and lets it run to completion on its own.
    fn spawn(&self, fut: SpawnedFuture);
}

impl<F> Spawn for F
where
    F: Fn(SpawnedFuture) + Send + Sync + 'static,
{
    fn spawn(&self, fut: SpawnedFuture) {
        self(fut)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default `nanos_since`, by definition.
    fn reference(c: &impl Clock, origin: Instant) -> u64 {
        saturating_nanos(c.now().saturating_duration_since(origin))
    }

    #[test]
    fn clocks_nanos_since_match_the_definition() {
        let m = ManualClock::new();
        let before = m.now();
        m.advance(Duration::new(3, 999_999_999));
        let mid = m.now();
        m.advance(Duration::from_nanos(2));
        for origin in [
            before,
            mid,
            m.now(),
            m.now() + Duration::from_nanos(1),
            before - Duration::from_nanos(7),
            mid + Duration::from_secs(100),
        ] {
            assert_eq!(m.nanos_since(origin), reference(&m, origin));
        }
        let origin = Instant::now();
        let a = SystemClock.nanos_since(origin);
        let b = reference(&SystemClock, origin);
        assert!(a <= b);
        assert_eq!(SystemClock.nanos_since(origin + Duration::from_secs(60)), 0);
    }
}
