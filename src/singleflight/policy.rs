//! [`Policy`] and [`Backoff`]: how long values stay fresh, how long stale
//! values may be served, and how often the backend may be asked.

use std::time::Duration;

/// Exponential backoff applied to consecutive failed attempts on one key.
///
/// After `n` consecutive failures the next attempt waits at least
/// `min(max, initial * multiplier^(n-1))` measured from the end of the failed
/// attempt (and never less than `Policy::min_refresh_interval` from its start).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Delay after the first failure.
    pub initial: Duration,
    /// Growth factor per further failure (values below 1.0 are treated as 1.0).
    pub multiplier: f64,
    /// Upper bound on the delay.
    pub max: Duration,
}

impl Default for Backoff {
    /// 1 s, doubling, capped at 60 s.
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(1),
            multiplier: 2.0,
            max: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// The delay after `failures` consecutive failures (0 → zero).
    ///
    /// ```
    /// use fairgate::singleflight::Backoff;
    /// use std::time::Duration;
    ///
    /// let b = Backoff::default(); // 1 s, doubling, capped at 60 s
    /// assert_eq!(b.delay(0), Duration::ZERO);
    /// assert_eq!(b.delay(3), Duration::from_secs(4));
    /// assert_eq!(b.delay(10), Duration::from_secs(60));
    /// ```
    pub fn delay(&self, failures: u32) -> Duration {
        // A zero `initial` stays zero: `0 * inf` (a factor that overflowed)
        // would otherwise be NaN and read as "the maximum".
        if failures == 0 || self.initial.is_zero() {
            return Duration::ZERO;
        }
        let mult = if self.multiplier.is_finite() && self.multiplier > 1.0 {
            self.multiplier
        } else {
            1.0
        };
        let exp = i32::try_from(failures - 1).unwrap_or(i32::MAX);
        let factor = mult.powi(exp);
        let secs = self.initial.as_secs_f64() * factor;
        if !secs.is_finite() || secs >= self.max.as_secs_f64() {
            self.max
        } else {
            Duration::from_secs_f64(secs).min(self.max)
        }
    }
}

/// How long values stay fresh, how long stale values may be served, and how
/// often the backend may be asked.
///
/// Ages are measured from when the value was stored. With
/// `age = now - stored_at`:
///
/// * `age < ttl` → fresh;
/// * `ttl <= age < ttl + stale_while_revalidate` (and `< max_stale`) → stale,
///   served at once while one refresh runs; *with a spawner* the caller that
///   starts the refresh is served at once too, without one it waits for the
///   refresh (see [`stale_while_revalidate`](Policy::stale_while_revalidate));
/// * `ttl + stale_while_revalidate <= age < max_stale` → stale; the caller that
///   starts a refresh waits for it (and still gets the stale value if it
///   fails); everyone else gets the stale value at once;
/// * `age >= max_stale` → never served; treated like a missing value.
///
/// The boundaries use `>=`: at exactly `age == ttl` the value is stale.
///
/// Backend calls on one key are spaced by `min_refresh_interval` (and
/// `failure_backoff`) while stale data can be served, and by `negative_ttl`
/// once nothing can be; see each field.
///
/// ```
/// use fairgate::singleflight::Policy;
/// use std::time::Duration;
///
/// let p = Policy {
///     ttl: Duration::from_secs(30),
///     max_stale: Duration::from_secs(600),
///     max_concurrent_loads: Some(8),
///     ..Policy::default()
/// };
/// assert_eq!(p.min_refresh_interval, Duration::from_secs(5));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// How long a stored value is fresh. Default 60 s.
    pub ttl: Duration,
    /// Spreads expiry: each stored value (every load and every `insert`) is
    /// fresh for `ttl - j`, with `j` in `[0, min(ttl_jitter, ttl)]` drawn
    /// from a hash of the key, the store's sequence number and the cache's
    /// jitter seed ([`Builder::jitter_seed`](super::Builder::jitter_seed); random per cache by default).
    /// Keys loaded together therefore do not all expire, and refresh,
    /// together. `ttl` stays an upper bound on freshness; the
    /// `stale_while_revalidate` band starts at the jittered expiry;
    /// `max_stale` is not jittered. Default `Duration::ZERO` (off).
    pub ttl_jitter: Duration,
    /// Non-blocking stale window after `ttl`. Default `Duration::MAX`.
    ///
    /// **Non-blocking for everyone only with a spawner**
    /// ([`Builder::spawner`], the recommended setup). Inside the window,
    /// callers that find a refresh running get the stale value at once. The
    /// caller that *starts* the refresh is different:
    ///
    /// * with a spawner, the refresh runs detached and that caller also gets
    ///   the stale value at once;
    /// * without one, that caller drives the refresh inside its own `get` and
    ///   waits for the whole backend call (then gets the new value, or the
    ///   stale one if the call failed). If it gives up first (a timeout, a
    ///   dropped request) and nobody else waits on the refresh, the refresh is
    ///   cancelled for everyone, and the next caller past the
    ///   `min_refresh_interval` starts another.
    ///
    /// [`Builder::spawner`]: super::Builder::spawner
    pub stale_while_revalidate: Duration,
    /// Absolute bound on the age of anything served, including stale-if-error.
    /// Default 1 hour. `Duration::MAX` serves stale data forever (go-micro).
    pub max_stale: Duration,
    /// Minimum spacing between the starts of two backend attempts on one key
    /// **while the key holds a servable value** (the stale rows of the
    /// decision table): a caller with stale data inside the interval gets it
    /// at once ([`StaleReason::Throttled`], or [`StaleReason::LoadFailed`]
    /// after a failure) and starts nothing. Default 5 s.
    ///
    /// It does not hold back a caller with *nothing* servable (no value, or
    /// one older than `max_stale`): that caller loads at once (or joins the
    /// running load), unless negative caching ([`negative_ttl`]) answers it
    /// with [`CacheError::Throttled`] after a failure. Refusing such a caller
    /// a load would turn a healthy backend into an error. `invalidate` and
    /// `mark_stale` also allow the next attempt at once.
    ///
    /// [`StaleReason::Throttled`]: super::StaleReason::Throttled
    /// [`StaleReason::LoadFailed`]: super::StaleReason::LoadFailed
    /// [`negative_ttl`]: Policy::negative_ttl
    /// [`CacheError::Throttled`]: super::CacheError::Throttled
    pub min_refresh_interval: Duration,
    /// Extra spacing after consecutive failures.
    pub failure_backoff: Backoff,
    /// Negative caching for keys with nothing servable: after a failed load,
    /// callers get [`CacheError::Throttled`](super::CacheError::Throttled) at once, without a backend call,
    /// until `max(negative_ttl, backoff)` after the failure. This is the only
    /// spacing for callers with nothing servable (see
    /// [`min_refresh_interval`](Policy::min_refresh_interval)). `None`
    /// disables it (a new caller retries at once; errors are then shared but
    /// never remembered). Default `Some(5 s)`.
    pub negative_ttl: Option<Duration>,
    /// Maximum number of keys held (values, negative entries and keys with a
    /// load in flight). Keys with a load in flight are never evicted, so the
    /// bound can be exceeded by the number of concurrent loads. Default 10 000.
    pub max_entries: usize,
    /// Global cap on concurrently running backend calls across all keys.
    /// Default `None` (unbounded).
    pub max_concurrent_loads: Option<usize>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            ttl: Duration::from_secs(60),
            ttl_jitter: Duration::ZERO,
            stale_while_revalidate: Duration::MAX,
            max_stale: Duration::from_secs(3600),
            min_refresh_interval: Duration::from_secs(5),
            failure_backoff: Backoff::default(),
            negative_ttl: Some(Duration::from_secs(5)),
            max_entries: 10_000,
            max_concurrent_loads: None,
        }
    }
}
