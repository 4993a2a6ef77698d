//! What a lookup hands back: [`Hit`] with its [`Source`], or a [`CacheError`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A value handed back by the cache, with where it came from and how old it
/// is. `E` is the loader's error type ([`Loader::Error`]): a stale value
/// served because the backend failed carries that failure ([`Hit::error`]).
///
/// [`Loader::Error`]: super::Loader::Error
pub struct Hit<V, E> {
    /// The value, shared with the cache and every other caller.
    pub value: Arc<V>,
    /// The path that produced it.
    pub source: Source,
    /// Time since the value was stored (never reset by serving it).
    pub age: Duration,
    /// The failure behind a [`StaleReason::LoadFailed`] hit.
    error: Option<Arc<E>>,
}

impl<V, E> Clone for Hit<V, E> {
    fn clone(&self) -> Self {
        Hit {
            value: Arc::clone(&self.value),
            source: self.source,
            age: self.age,
            error: self.error.clone(),
        }
    }
}

impl<V: fmt::Debug, E: fmt::Debug> fmt::Debug for Hit<V, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Hit");
        d.field("value", &self.value)
            .field("source", &self.source)
            .field("age", &self.age);
        if let Some(e) = &self.error {
            d.field("error", e);
        }
        d.finish()
    }
}

impl<V, E> Hit<V, E> {
    #[inline]
    pub(super) fn new(value: Arc<V>, source: Source, age: Duration, error: Option<Arc<E>>) -> Self {
        Hit {
            value,
            source,
            age,
            error,
        }
    }

    /// True if the value was served past its `ttl` (any [`Source::Stale`]).
    ///
    /// ```
    /// use fairgate::singleflight::{ManualClock, Policy, StaleCache};
    /// use futures::FutureExt;
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new();
    /// let cache = StaleCache::from_fn(|k: &u8| {
    ///     let k = *k;
    ///     async move { Ok::<_, ()>(k) }
    /// })
    /// .policy(Policy { ttl: Duration::from_secs(1), ..Policy::default() })
    /// .clock(clock.clone())
    /// .build();
    /// assert!(!cache.get(&1).now_or_never().unwrap().unwrap().is_stale());
    /// clock.advance(Duration::from_secs(2));
    /// assert!(cache.peek(&1).unwrap().is_stale());
    /// ```
    pub fn is_stale(&self) -> bool {
        matches!(self.source, Source::Stale(_))
    }

    /// The backend's error, when this is a stale value served because the
    /// most recent attempt on the key failed ([`StaleReason::LoadFailed`]):
    /// this caller's own refresh, or an earlier one still inside its retry
    /// window. `None` for every other source, and after a loader panic
    /// (the panic message went to [`CacheError::LoaderPanicked`] of the
    /// callers that waited on it).
    ///
    /// ```
    /// use fairgate::singleflight::{ManualClock, Policy, Source, StaleCache, StaleReason};
    /// use futures::FutureExt;
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::time::Duration;
    ///
    /// let up = std::sync::Arc::new(AtomicBool::new(true));
    /// let u = up.clone();
    /// let clock = ManualClock::new();
    /// let cache = StaleCache::from_fn(move |_k: &u8| {
    ///     let ok = u.load(Ordering::SeqCst);
    ///     async move { if ok { Ok(1) } else { Err("registry down") } }
    /// })
    /// .policy(Policy { ttl: Duration::from_secs(1), ..Policy::default() })
    /// .clock(clock.clone())
    /// .build();
    /// let hit = cache.get(&0).now_or_never().unwrap().unwrap();
    /// assert!(hit.error().is_none());
    ///
    /// up.store(false, Ordering::SeqCst);
    /// clock.advance(Duration::from_secs(6)); // past ttl and min_refresh_interval
    /// let hit = cache.get(&0).now_or_never().unwrap().unwrap();
    /// assert_eq!(hit.source, Source::Stale(StaleReason::LoadFailed));
    /// assert_eq!(hit.error().map(|e| **e), Some("registry down"));
    /// ```
    pub fn error(&self) -> Option<&Arc<E>> {
        self.error.as_ref()
    }
}

/// What a `get` resolves to.
pub(super) type GetResult<V, E> = Result<Hit<V, E>, CacheError<E>>;

/// Where a [`Hit`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// A cached value younger than `ttl`.
    Fresh,
    /// This caller started the backend call that produced it.
    Loaded,
    /// This caller joined a backend call someone else started.
    Joined,
    /// A cached value older than `ttl`, served without waiting.
    Stale(StaleReason),
}

/// Why a stale value was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StaleReason {
    /// A refresh is in flight (or was just started in the background).
    Revalidating,
    /// A refresh is not allowed yet (`min_refresh_interval`) and the last
    /// attempt did not fail.
    Throttled,
    /// The most recent attempt failed (possibly this caller's own); served
    /// as stale-if-error while `age < max_stale`.
    LoadFailed,
}

/// Why [`StaleCache::get`](super::StaleCache::get) produced no value.
pub enum CacheError<E> {
    /// The backend call this caller waited on failed. Every waiter of that
    /// call gets the same `Arc`.
    Load(Arc<E>),
    /// Nothing servable, and the key may not be retried yet.
    Throttled {
        /// Time until the next attempt is allowed.
        retry_in: Duration,
        /// The error of the last failed attempt (`None` after a panic).
        last_error: Option<Arc<E>>,
    },
    /// The loader panicked; the panic message.
    LoaderPanicked(Arc<str>),
}

impl<E> Clone for CacheError<E> {
    fn clone(&self) -> Self {
        match self {
            CacheError::Load(e) => CacheError::Load(Arc::clone(e)),
            CacheError::Throttled {
                retry_in,
                last_error,
            } => CacheError::Throttled {
                retry_in: *retry_in,
                last_error: last_error.clone(),
            },
            CacheError::LoaderPanicked(m) => CacheError::LoaderPanicked(Arc::clone(m)),
        }
    }
}

impl<E: fmt::Debug> fmt::Debug for CacheError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheError::Load(e) => f.debug_tuple("Load").field(e).finish(),
            CacheError::Throttled {
                retry_in,
                last_error,
            } => f
                .debug_struct("Throttled")
                .field("retry_in", retry_in)
                .field("last_error", last_error)
                .finish(),
            CacheError::LoaderPanicked(m) => f.debug_tuple("LoaderPanicked").field(m).finish(),
        }
    }
}

impl<E: fmt::Display> fmt::Display for CacheError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheError::Load(e) => write!(f, "load failed: {e}"),
            CacheError::Throttled {
                retry_in,
                last_error: Some(e),
            } => write!(f, "throttled for {retry_in:?} after failure: {e}"),
            CacheError::Throttled { retry_in, .. } => write!(f, "throttled for {retry_in:?}"),
            CacheError::LoaderPanicked(m) => write!(f, "loader panicked: {m}"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for CacheError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CacheError::Load(e) => Some(&**e),
            CacheError::Throttled {
                last_error: Some(e),
                ..
            } => Some(&**e),
            _ => None,
        }
    }
}
