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
}

/// The default clock: [`std::time::Instant::now`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[inline]
    fn now(&self) -> Instant {
        Instant::now()
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
        ManualClock {
            inner: Arc::new(ManualInner {
                base: Instant::now(),
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
