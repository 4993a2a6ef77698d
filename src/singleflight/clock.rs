//! Time sources and spawners that the cache can be given.

use std::boxed::Box;
use std::future::Future;
use std::hash::{Hash, Hasher};
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
    /// `base`'s parts, if std's `Instant` layout checked out.
    base_parts: Option<InstantParts>,
    offset_nanos: AtomicU64,
}

impl ManualClock {
    /// A clock frozen at the moment of creation.
    pub fn new() -> Self {
        let base = Instant::now();
        ManualClock {
            inner: Arc::new(ManualInner {
                base,
                base_parts: InstantParts::calibrate(base),
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
        Duration::from_nanos(self.inner.offset_nanos.load(Ordering::SeqCst))
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

    /// The advanced nanoseconds plus the base's distance from `origin`: no
    /// `Instant` is built, and with std's layout checked (see
    /// `InstantParts`) no call into std is made. Exactly `now() − origin`,
    /// saturating.
    #[inline]
    fn nanos_since(&self, origin: Instant) -> u64 {
        let off = self.inner.offset_nanos.load(Ordering::SeqCst);
        let base = self.inner.base;
        // now − origin = off + (base − origin).
        match (self.inner.base_parts, InstantParts::of(origin)) {
            (Some(b), Some(o)) if o <= b => off.saturating_add(b.nanos_since(o)),
            (Some(b), Some(o)) => off.saturating_sub(o.nanos_since(b)),
            _ => match base.checked_duration_since(origin) {
                Some(ahead) => off.saturating_add(saturating_nanos(ahead)),
                None => off.saturating_sub(saturating_nanos(origin - base)),
            },
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

/// An `Instant` as the `(seconds, nanoseconds)` pair its `Hash` impl writes.
///
/// std offers no cheaper way from an `Instant` to a number than
/// `duration_since`, three calls into std (~57 instructions, ~10 ns here).
/// On Unix, `Instant` is a `timespec` whose derived `Hash` writes `tv_sec`
/// as an `i64` and then `tv_nsec` as a `u32`; that impl is generic over the
/// hasher, so with [`Capture`] it inlines to two field reads. The layout is
/// not a documented guarantee, so it is never trusted blindly:
/// [`InstantParts::calibrate`] checks it against std's own subtraction
/// before the cache uses it, and the cache falls back to `duration_since`
/// if it does not match (other platforms, a future std).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct InstantParts {
    secs: i64,
    nanos: u32,
}

/// A `Hasher` that records exactly one `write_i64` followed by one
/// `write_u32`; any other sequence marks it `BAD`.
struct Capture {
    secs: i64,
    nanos: u32,
    seen: u8,
}

const BAD: u8 = u8::MAX;

impl Hasher for Capture {
    fn finish(&self) -> u64 {
        0
    }
    #[inline]
    fn write(&mut self, _: &[u8]) {
        self.seen = BAD;
    }
    #[inline]
    fn write_i64(&mut self, v: i64) {
        if self.seen == 0 {
            self.secs = v;
            self.seen = 1;
        } else {
            self.seen = BAD;
        }
    }
    #[inline]
    fn write_u32(&mut self, v: u32) {
        if self.seen == 1 {
            self.nanos = v;
            self.seen = 2;
        } else {
            self.seen = BAD;
        }
    }
}

impl InstantParts {
    /// `t`'s parts, if its `Hash` writes the expected shape.
    #[inline]
    pub(crate) fn of(t: Instant) -> Option<Self> {
        let mut c = Capture {
            secs: 0,
            nanos: 0,
            seen: 0,
        };
        t.hash(&mut c);
        (c.seen == 2 && c.nanos < 1_000_000_000).then_some(InstantParts {
            secs: c.secs,
            nanos: c.nanos,
        })
    }

    /// Whole nanoseconds from `origin` to `self`, saturating like
    /// `saturating_nanos(self.saturating_duration_since(origin))`.
    #[inline]
    pub(crate) fn nanos_since(self, origin: InstantParts) -> u64 {
        if self < origin {
            return 0;
        }
        // `self >= origin`, so the true difference fits in a u64.
        let mut secs = self.secs.wrapping_sub(origin.secs) as u64;
        let nanos = if self.nanos >= origin.nanos {
            self.nanos - origin.nanos
        } else {
            secs -= 1;
            self.nanos + 1_000_000_000 - origin.nanos
        };
        secs.checked_mul(1_000_000_000)
            .and_then(|s| s.checked_add(u64::from(nanos)))
            .unwrap_or(u64::MAX)
    }

    /// `origin`'s parts if, around `origin`, [`nanos_since`] on parts agrees
    /// with std's subtraction (both ways, across a carry, near the second
    /// boundary); `None` means "use `duration_since`".
    ///
    /// [`nanos_since`]: InstantParts::nanos_since
    pub(crate) fn calibrate(origin: Instant) -> Option<Self> {
        let o = Self::of(origin)?;
        const SPANS: [(u64, u32); 7] = [
            (0, 0),
            (0, 1),
            (0, 999_999_999),
            (1, 0),
            (1, 1),
            (2, 500_000_001),
            (86_400, 999_999_999),
        ];
        for (s, n) in SPANS {
            let d = Duration::new(s, n);
            for t in [origin.checked_add(d)?, origin.checked_sub(d)?] {
                let want = saturating_nanos(t.saturating_duration_since(origin));
                if Self::of(t)?.nanos_since(o) != want {
                    return None;
                }
            }
        }
        Some(o)
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
    fn instant_parts_agree_with_std() {
        let t0 = Instant::now();
        let o = InstantParts::calibrate(t0);
        #[cfg(unix)]
        assert!(
            o.is_some(),
            "std's Instant layout changed: hit path falls back"
        );
        let Some(o) = o else { return };
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let d = Duration::from_nanos(x % 10_000_000_000_000);
            for t in [t0 + d, t0.checked_sub(d).unwrap_or(t0)] {
                let p = InstantParts::of(t).unwrap();
                assert_eq!(
                    p.nanos_since(o),
                    saturating_nanos(t.saturating_duration_since(t0))
                );
                assert_eq!(
                    o.nanos_since(p),
                    saturating_nanos(t0.saturating_duration_since(t))
                );
            }
        }
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
