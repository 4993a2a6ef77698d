//! [`StaleCache`]: request coalescing plus a cache that serves stale data
//! instead of making callers wait on a slow or failing backend.

use std::boxed::Box;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};
use std::vec::Vec;

use super::clock::{saturating_nanos as nanos, Clock, InstantParts, Spawn, SystemClock};
use super::flight::{lock, Abort, BoxFut, Flight, Waiter};
use super::hash::{HashedKey, KeyState, Lookup, PassThrough};
use super::limiter::Limiter;

/// Fetches the value for a key from the backend. Registered once, up front,
/// so background refreshes need no caller-supplied closure.
///
/// Any `Fn(&K, Option<Arc<V>>) -> impl Future<Output = Result<V, E>>` closure
/// is a loader. The returned future must own what it uses (clone the key).
///
/// `previous` is the value currently cached, if any, for conditional
/// revalidation or merging.
pub trait Loader<K, V>: Send + Sync + 'static {
    /// The backend's error type. Shared with every waiter as `Arc<Error>`.
    type Error: Send + Sync + 'static;
    /// The future returned by [`Loader::load`].
    type Future: Future<Output = Result<V, Self::Error>> + Send + 'static;
    /// Starts one backend call for `key`.
    fn load(&self, key: &K, previous: Option<Arc<V>>) -> Self::Future;
}

impl<K, V, E, F, Fut> Loader<K, V> for F
where
    F: Fn(&K, Option<Arc<V>>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<V, E>> + Send + 'static,
    E: Send + Sync + 'static,
{
    type Error = E;
    type Future = Fut;
    fn load(&self, key: &K, previous: Option<Arc<V>>) -> Fut {
        self(key, previous)
    }
}

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
    pub fn delay(&self, failures: u32) -> Duration {
        if failures == 0 {
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
///   served at once while one refresh runs;
/// * `ttl + stale_while_revalidate <= age < max_stale` → stale; the caller that
///   starts a refresh waits for it (and still gets the stale value if it
///   fails); everyone else gets the stale value at once;
/// * `age >= max_stale` → never served; treated like a missing value.
///
/// The boundaries use `>=`: at exactly `age == ttl` the value is stale.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// How long a stored value is fresh. Default 60 s.
    pub ttl: Duration,
    /// Spreads expiry: each stored value (every load and every `insert`) is
    /// fresh for `ttl - j`, with `j` in `[0, min(ttl_jitter, ttl)]` drawn
    /// from a hash of the key, the store's sequence number and the cache's
    /// jitter seed ([`Builder::jitter_seed`]; random per cache by default).
    /// Keys loaded together therefore do not all expire, and refresh,
    /// together. `ttl` stays an upper bound on freshness; the
    /// `stale_while_revalidate` band starts at the jittered expiry;
    /// `max_stale` is not jittered. Default `Duration::ZERO` (off).
    pub ttl_jitter: Duration,
    /// Non-blocking stale window after `ttl`. Default `Duration::MAX`
    /// (nobody holding usable stale data ever waits).
    pub stale_while_revalidate: Duration,
    /// Absolute bound on the age of anything served, including stale-if-error.
    /// Default 1 hour. `Duration::MAX` serves stale data forever (go-micro).
    pub max_stale: Duration,
    /// Minimum spacing between the starts of two backend attempts on one key
    /// (except the first load of a key, `invalidate` and `mark_stale`).
    /// Default 5 s.
    pub min_refresh_interval: Duration,
    /// Extra spacing after consecutive failures.
    pub failure_backoff: Backoff,
    /// Negative caching for keys with nothing servable: after a failed load,
    /// callers get [`CacheError::Throttled`] at once, without a backend call,
    /// until `max(negative_ttl, backoff)` after the failure. `None` disables
    /// it (a new caller retries at once; errors are then shared but never
    /// remembered). Default `Some(5 s)`.
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

/// A value handed back by the cache, with where it came from and how old it is.
#[derive(Debug)]
pub struct Hit<V> {
    /// The value, shared with the cache and every other caller.
    pub value: Arc<V>,
    /// The path that produced it.
    pub source: Source,
    /// Time since the value was stored (never reset by serving it).
    pub age: Duration,
}

impl<V> Clone for Hit<V> {
    fn clone(&self) -> Self {
        Hit {
            value: Arc::clone(&self.value),
            source: self.source,
            age: self.age,
        }
    }
}

impl<V> Hit<V> {
    /// True if the value was served past its `ttl`.
    pub fn is_stale(&self) -> bool {
        matches!(self.source, Source::Stale(_))
    }
}

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

/// Why [`StaleCache::get`] produced no value.
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

/// Counters for every path through the cache. See [`StaleCache::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Fresh hits.
    pub fresh: u64,
    /// Stale values served while a refresh was in flight.
    pub stale_revalidating: u64,
    /// Stale values served because a refresh was not yet allowed.
    pub stale_throttled: u64,
    /// Stale values served because the last attempt failed.
    pub stale_load_failed: u64,
    /// Results returned to the caller that started the load.
    pub loaded: u64,
    /// Results returned to callers that joined someone else's load.
    pub joined: u64,
    /// `Throttled` errors returned (negative cache hits).
    pub throttled_errors: u64,
    /// Backend calls started (foreground and background).
    pub loads_started: u64,
    /// Backend calls that returned `Ok`.
    pub loads_succeeded: u64,
    /// Backend calls that returned `Err`.
    pub loads_failed: u64,
    /// Backend calls that panicked.
    pub loads_panicked: u64,
    /// Loads dropped because every waiter went away.
    pub loads_abandoned: u64,
    /// Successful loads not stored because newer data arrived meanwhile.
    pub loads_discarded: u64,
    /// Keys evicted to respect `max_entries`.
    pub evictions: u64,
    /// Loads currently in flight (a gauge, not a counter).
    pub in_flight: u64,
}

/// Counters bumped outside any shard lock (atomics, shared).
#[derive(Default)]
struct Counters {
    /// Only the waiting path (`settle`); hits count in [`HitCounts`].
    stale_load_failed: AtomicU64,
    loaded: AtomicU64,
    joined: AtomicU64,
    loads_started: AtomicU64,
    loads_succeeded: AtomicU64,
    loads_failed: AtomicU64,
    loads_panicked: AtomicU64,
    loads_abandoned: AtomicU64,
    loads_discarded: AtomicU64,
    evictions: AtomicU64,
    in_flight: AtomicU64,
}

/// Counters bumped by the decision table while it holds a shard lock: plain
/// integers in the shard, so a hit costs no extra atomic read-modify-write
/// on a cache line every thread shares. [`StaleCache::stats`] sums them.
#[derive(Default, Clone, Copy)]
struct HitCounts {
    fresh: u64,
    stale_revalidating: u64,
    stale_throttled: u64,
    stale_load_failed: u64,
    throttled_errors: u64,
}

#[inline]
fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// What a flight produces: the value and when it was stored (a [`Nanos`]
/// reading), or the error.
type Out<V, E> = Result<(Arc<V>, Nanos), Arc<E>>;

/// A clock reading as whole nanoseconds since the cache's epoch (the clock's
/// reading when the cache was built), or a span in nanoseconds.
///
/// Entries store these instead of `Instant`/`Duration`: 8 bytes instead of 16
/// (`Option<Instant>` included, see [`NEVER`]), and comparing or subtracting
/// them is one instruction where `Instant` arithmetic is a call into std.
/// Every `Instant` and `Duration` the cache handles has nanosecond resolution,
/// so the conversion is exact; spans beyond `u64::MAX` ns (~584 years, e.g.
/// `Duration::MAX`) saturate to `u64::MAX`, which compares as "never ends"
/// exactly as the huge `Duration` did.
type Nanos = u64;

/// The "no deadline" value of `next_attempt` and `negative_until`. Both are
/// only ever tested as `now < t` (0 never is) and `t <= now` (0 always is),
/// so 0 means exactly what `None` meant, in half the space.
const NEVER: Nanos = 0;

/// The cache's clock. The default [`SystemClock`] is a variant of its own,
/// so the hit path reads it with a direct, inlined call instead of through a
/// vtable.
enum TimeSource {
    /// The epoch's parts once [`InstantParts::calibrate`] has vouched for
    /// them (set at build).
    System(Option<InstantParts>),
    Custom(Arc<dyn Clock>),
}

impl TimeSource {
    fn of<C: Clock>(clock: C) -> Self {
        // `SystemClock` is a unit struct: nothing is lost by dropping it.
        if std::any::TypeId::of::<C>() == std::any::TypeId::of::<SystemClock>() {
            TimeSource::System(None)
        } else {
            TimeSource::Custom(Arc::new(clock))
        }
    }

    fn now(&self) -> Instant {
        match self {
            TimeSource::System(_) => SystemClock.now(),
            TimeSource::Custom(c) => c.now(),
        }
    }

    #[inline]
    fn nanos_since(&self, origin: Instant) -> Nanos {
        match self {
            TimeSource::System(Some(epoch)) => match InstantParts::of(Instant::now()) {
                Some(now) => now.nanos_since(*epoch),
                None => SystemClock.nanos_since(origin),
            },
            TimeSource::System(None) => SystemClock.nanos_since(origin),
            TimeSource::Custom(c) => c.nanos_since(origin),
        }
    }
}

struct Entry<V, E> {
    value: Option<Arc<V>>,
    stored_at: Nanos,
    /// `ttl` minus this value's jitter.
    fresh_for: Nanos,
    generation: u64,
    flight: Option<Arc<Flight<Out<V, E>>>>,
    /// Earliest start of the next refresh while servable stale data exists
    /// ([`NEVER`]: none).
    next_attempt: Nanos,
    /// Negative cache: cold callers fail fast until then ([`NEVER`]: off).
    negative_until: Nanos,
    last_error: Option<Arc<E>>,
    failures: u32,
    marked_stale: bool,
    referenced: bool,
}

impl<V, E> Entry<V, E> {
    fn empty(now: Nanos, generation: u64) -> Self {
        Entry {
            value: None,
            stored_at: now,
            fresh_for: 0,
            marked_stale: false,
            generation,
            flight: None,
            next_attempt: NEVER,
            negative_until: NEVER,
            failures: 0,
            last_error: None,
            referenced: true,
        }
    }

    /// The live flight, dropping a cancelled one.
    fn live_flight(&mut self) -> Option<&Arc<Flight<Out<V, E>>>> {
        if self.flight.as_ref().is_some_and(|f| f.is_cancelled()) {
            self.flight = None;
        }
        self.flight.as_ref()
    }

    fn removable(&self, now: Nanos) -> bool {
        self.value.is_none() && self.flight.is_none() && self.negative_until <= now
    }
}

struct Shard<K, V, E> {
    /// Keys carry the hash that also picked the shard, so a lookup hashes
    /// the key once, not twice (see `hash.rs`).
    map: HashMap<HashedKey<K>, Entry<V, E>, PassThrough>,
    hits: HitCounts,
    /// Second-chance (CLOCK) eviction order. May hold keys that were removed
    /// or duplicates; those are skipped and compacted away.
    order: VecDeque<HashedKey<K>>,
    cap: usize,
}

impl<K: Hash + Eq + Clone, V, E> Shard<K, V, E> {
    /// Evicts until fewer than `limit` keys remain or nothing is evictable.
    fn evict_to(&mut self, limit: usize, counters: &Counters) {
        let mut budget = 2 * self.order.len() + 1;
        while self.map.len() > limit && budget > 0 {
            budget -= 1;
            let Some(k) = self.order.pop_front() else {
                break;
            };
            match self.map.get_mut(&k) {
                None => {}
                Some(e) if e.flight.is_some() || e.referenced => {
                    e.referenced = false;
                    self.order.push_back(k);
                }
                Some(_) => {
                    self.map.remove(&k);
                    bump(&counters.evictions);
                }
            }
        }
    }

    fn insert_new(
        &mut self,
        key: HashedKey<K>,
        entry: Entry<V, E>,
        counters: &Counters,
    ) -> &mut Entry<V, E> {
        self.evict_to(self.cap.saturating_sub(1), counters);
        if self.order.len() > 2 * self.map.len() + 32 {
            self.order = self.map.keys().cloned().collect();
        }
        self.order.push_back(key.clone());
        self.map.entry(key).or_insert(entry)
    }
}

type ShardLock<K, V, E> = Mutex<Shard<K, V, E>>;
type Shards<K, V, E> = Box<[ShardLock<K, V, E>]>;

struct Inner<K, V, L: Loader<K, V>> {
    loader: L,
    policy: Policy,
    /// The policy's spans the decision table compares, converted once.
    limits: Limits,
    clock: TimeSource,
    /// The clock's reading at build time; [`Nanos`] count from here.
    epoch: Instant,
    spawner: Option<Arc<dyn Spawn>>,
    /// Seeds the per-store TTL jitter (deterministic for a given seed).
    jitter: KeyState,
    shards: Shards<K, V, L::Error>,
    /// Picks the shard and hashes keys inside every shard map.
    hasher: KeyState,
    counters: Counters,
    next_id: AtomicU64,
    limiter: Option<Arc<Limiter>>,
}

/// [`Policy`] spans in [`Nanos`], so the hit path converts nothing.
struct Limits {
    ttl: Nanos,
    stale_while_revalidate: Nanos,
    max_stale: Nanos,
}

/// Configures and builds a [`StaleCache`]. Created by [`StaleCache::builder`].
pub struct Builder<K, V, L> {
    loader: L,
    policy: Policy,
    clock: TimeSource,
    spawner: Option<Arc<dyn Spawn>>,
    jitter_seed: Option<u64>,
    _marker: std::marker::PhantomData<fn(K) -> V>,
}

impl<K, V, L> Builder<K, V, L>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Send + Sync + 'static,
    L: Loader<K, V>,
{
    /// Sets the policy (default: [`Policy::default`]).
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Sets the clock (default: [`SystemClock`]).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = TimeSource::of(clock);
        self
    }

    /// Sets a spawner: loads and background refreshes then run detached.
    pub fn spawner(mut self, spawner: impl Spawn) -> Self {
        self.spawner = Some(Arc::new(spawner));
        self
    }

    /// Fixes the seed of the TTL jitter ([`Policy::ttl_jitter`]): with the
    /// same seed, the same keys and the same sequence of loads and inserts
    /// expire at the same times (tests with a [`ManualClock`] stay
    /// deterministic). Without it every cache draws a random seed, so a
    /// fleet of processes loading the same keys does not refresh in step.
    ///
    /// [`ManualClock`]: super::ManualClock
    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.jitter_seed = Some(seed);
        self
    }

    /// Builds the cache.
    pub fn build(self) -> StaleCache<K, V, L> {
        let cap = self.policy.max_entries.max(1);
        let n = (cap / 64).clamp(1, 16).next_power_of_two().min(16);
        let hasher = KeyState::new();
        let shards = (0..n)
            .map(|i| {
                Mutex::new(Shard {
                    map: HashMap::with_hasher(PassThrough),
                    hits: HitCounts::default(),
                    order: VecDeque::new(),
                    cap: cap / n + usize::from(i < cap % n),
                })
            })
            .collect::<Vec<_>>()
            .into_boxed_slice();
        let limiter = self
            .policy
            .max_concurrent_loads
            .map(|n| Limiter::new(n.max(1)));
        let epoch = self.clock.now();
        let p = &self.policy;
        let limits = Limits {
            ttl: nanos(p.ttl),
            stale_while_revalidate: nanos(p.stale_while_revalidate),
            max_stale: nanos(p.max_stale),
        };
        StaleCache {
            inner: Arc::new(Inner {
                loader: self.loader,
                policy: self.policy,
                limits,
                epoch,
                clock: match self.clock {
                    TimeSource::System(_) => TimeSource::System(InstantParts::calibrate(epoch)),
                    c => c,
                },
                spawner: self.spawner,
                jitter: self
                    .jitter_seed
                    .map_or_else(KeyState::new, KeyState::with_seed),
                shards,
                hasher,
                counters: Counters::default(),
                next_id: AtomicU64::new(1),
                limiter,
            }),
        }
    }
}

/// A cache that coalesces loads per key and serves stale data instead of
/// making callers wait on a slow or failing backend.
///
/// Decision table for [`get`](StaleCache::get) (`age` = time since stored):
///
/// | State | Load in flight | Throttled | Result |
/// |---|---|---|---|
/// | fresh | any | any | value, [`Source::Fresh`] |
/// | stale, `age < max_stale` | yes | any | stale at once, [`StaleReason::Revalidating`] (never joins) |
/// | stale, `age < max_stale` | no | yes | stale at once, `Throttled` / `LoadFailed` |
/// | stale, `age < ttl + swr` | no | no | start a refresh; with a spawner return stale at once, otherwise this caller drives the refresh and waits |
/// | stale, `age >= ttl + swr` | no | no | start a refresh and wait; on failure return stale (`LoadFailed`) |
/// | none / too old | yes | any | join the load ([`Source::Joined`]) |
/// | none / too old | no | yes | fail fast: [`CacheError::Throttled`] |
/// | none / too old | no | no | start a load and wait ([`Source::Loaded`]) |
///
/// At most one backend call per key runs at a time (the only exceptions are
/// explicit: [`invalidate`](StaleCache::invalidate) and
/// [`mark_stale`](StaleCache::mark_stale) detach the running call). No lock is
/// held across an `.await`. Without a spawner, every waiter of a load can drive
/// it, so a waiter that is parked (alive but never polled) or dropped never
/// blocks the others; dropping the last waiter cancels the load.
///
/// Cloning is cheap and shares the cache.
///
/// ```
/// use fairgate::singleflight::{Policy, Source, StaleCache};
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// let cache = StaleCache::builder(|key: &String, _prev: Option<Arc<usize>>| {
///     let len = key.len();
///     async move { Ok::<_, std::io::Error>(len) }
/// })
/// .policy(Policy { ttl: Duration::from_secs(30), ..Policy::default() })
/// .build();
///
/// futures::executor::block_on(async {
///     let hit = cache.get(&"etcd".to_string()).await.unwrap();
///     assert_eq!((*hit.value, hit.source), (4, Source::Loaded));
///     let hit = cache.get(&"etcd".to_string()).await.unwrap();
///     assert_eq!(hit.source, Source::Fresh);
/// });
/// ```
pub struct StaleCache<K, V, L: Loader<K, V>> {
    inner: Arc<Inner<K, V, L>>,
}

impl<K, V, L: Loader<K, V>> Clone for StaleCache<K, V, L> {
    fn clone(&self) -> Self {
        StaleCache {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K, V, L: Loader<K, V>> fmt::Debug for StaleCache<K, V, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaleCache")
            .field("policy", &self.inner.policy)
            .finish_non_exhaustive()
    }
}

/// The future returned by [`StaleCache::get`]. Hand-written rather than an
/// `async fn` so that the first poll runs the decision table and returns a
/// hit straight into the poll's result (no generator state, no intermediate
/// enum to move it through).
///
/// Three words, all plain fields: a caller moves the future at least once
/// before polling it (`now_or_never`, `pin!`, `.await` into a state machine),
/// and LLVM then reads the fields one by one. A bigger future, or a two-word
/// enum, was copied with wide loads spanning the constructor's separate
/// stores, which the CPU cannot forward (~15–25 ns per hit).
struct Get<'a, K, V, L: Loader<K, V>> {
    inner: &'a Arc<Inner<K, V, L>>,
    key: &'a K,
    /// Set once this caller waits on a flight. Boxed: only the (already
    /// allocating) waiting path needs this state.
    wait: Option<Box<Wait<V, L::Error>>>,
}

/// What a caller that waits on a flight keeps between polls.
struct Wait<V, E> {
    waiter: Waiter<Out<V, E>>,
    /// This caller started the flight (`Loaded`, not `Joined`).
    leader: bool,
    /// The stale value (and when it was stored) to serve if the refresh fails.
    fallback: Option<(Arc<V>, Nanos)>,
}

impl<K, V, L> Future for Get<'_, K, V, L>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Send + Sync + 'static,
    L: Loader<K, V>,
{
    type Output = Result<Hit<V>, CacheError<L::Error>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        // Neither branch hands out a pointer into `this` (only into the
        // box, or to a local): if the future's address escaped, LLVM would
        // copy the whole future with wide loads wherever the caller moved it,
        // instead of reading its three fields into registers.
        if let Some(w) = this.wait.as_deref_mut() {
            let r = this.inner.poll_wait(w, cx);
            if r.is_ready() {
                // Done: a later poll decides afresh.
                this.wait = None;
            }
            return r;
        }
        let mut wait = None;
        let r = this.inner.decide(this.key, &mut wait, cx);
        if wait.is_some() {
            this.wait = wait;
        }
        r
    }
}

/// The slow path's outcome, produced under the shard lock.
enum Decision<V, E> {
    Ready(Result<Hit<V>, CacheError<E>>),
    Wait {
        waiter: Waiter<Out<V, E>>,
        leader: bool,
        fallback: Option<(Arc<V>, Nanos)>,
    },
}

impl<V, E> Decision<V, E> {
    fn wait(waiter: Waiter<Out<V, E>>, leader: bool, fallback: Option<(Arc<V>, Nanos)>) -> Self {
        Decision::Wait {
            waiter,
            leader,
            fallback,
        }
    }
}

impl<K, V, L> StaleCache<K, V, L>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Send + Sync + 'static,
    L: Loader<K, V>,
{
    /// Starts configuring a cache around `loader`.
    pub fn builder(loader: L) -> Builder<K, V, L> {
        Builder {
            loader,
            policy: Policy::default(),
            clock: TimeSource::System(None),
            spawner: None,
            jitter_seed: None,
            _marker: std::marker::PhantomData,
        }
    }

    /// A cache with the default policy, system clock and no spawner.
    pub fn new(loader: L) -> Self {
        Self::builder(loader).build()
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// Gets the value for `key`, following the decision table in the type
    /// documentation. Every path that does not wait returns on the first poll.
    ///
    /// Cancel-safe: dropping the future at any point leaves the cache
    /// consistent. If it was the last waiter of a load (and there is no
    /// spawner) the load is cancelled and the next caller starts afresh.
    pub fn get<'a>(
        &'a self,
        key: &'a K,
    ) -> impl Future<Output = Result<Hit<V>, CacheError<L::Error>>> + Send + 'a {
        Get {
            inner: &self.inner,
            key,
            wait: None,
        }
    }
    /// The cached value, if one may be served, without loading or waiting.
    pub fn peek(&self, key: &K) -> Option<Hit<V>> {
        let inner = &*self.inner;
        let now = inner.now();
        let (shard, at) = inner.locate(key);
        let mut shard = lock(shard);
        let e = shard.map.get_mut(at.view())?;
        let value = e.value.clone()?;
        let age = now.saturating_sub(e.stored_at);
        let source = if !e.marked_stale && age < e.fresh_for {
            Source::Fresh
        } else if age < inner.limits.max_stale {
            Source::Stale(if e.live_flight().is_some() {
                StaleReason::Revalidating
            } else if e.failures > 0 {
                StaleReason::LoadFailed
            } else {
                StaleReason::Throttled
            })
        } else {
            return None;
        };
        Some(Hit {
            value,
            source,
            age: Duration::from_nanos(age),
        })
    }

    /// Stores `value` (a push or watch update). It is fresh from now on,
    /// failure state is cleared, and any load already running will not
    /// overwrite it.
    pub fn insert(&self, key: K, value: V) {
        let inner = &*self.inner;
        let now = inner.now();
        let generation = inner.next_id.fetch_add(1, Ordering::Relaxed);
        let value = Arc::new(value);
        let fresh_for = inner.fresh_for(&key, generation);
        let (shard, at) = inner.locate(&key);
        let mut shard = lock(shard);
        let e = match shard.map.get_mut(at.view()) {
            Some(e) => e,
            None => {
                let key = HashedKey::new(at.hash, key);
                shard.insert_new(key, Entry::empty(now, generation), &inner.counters)
            }
        };
        e.value = Some(value);
        e.stored_at = now;
        e.fresh_for = fresh_for;
        e.marked_stale = false;
        e.generation = generation;
        e.failures = 0;
        e.last_error = None;
        e.negative_until = NEVER;
        e.referenced = true;
    }

    /// Forgets `key` entirely (value, failure and throttle state). A load
    /// already running keeps serving the callers waiting on it but its result
    /// is not stored; the next `get` starts a new load at once.
    pub fn invalidate(&self, key: &K) {
        let inner = &*self.inner;
        let (shard, at) = inner.locate(key);
        lock(shard).map.remove(at.view());
    }

    /// Keeps the value as a fallback but makes the next `get` refresh it at
    /// once (no throttle). A load already running is detached and its result
    /// will not be stored.
    pub fn mark_stale(&self, key: &K) {
        let inner = &*self.inner;
        let generation = inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (shard, at) = inner.locate(key);
        if let Some(e) = lock(shard).map.get_mut(at.view()) {
            e.marked_stale = true;
            e.generation = generation;
            e.flight = None;
            e.next_attempt = NEVER;
            e.negative_until = NEVER;
        }
    }

    /// Number of keys held (values, negative entries, keys being loaded).
    pub fn len(&self) -> usize {
        self.inner.shards.iter().map(|s| lock(s).map.len()).sum()
    }

    /// True if no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        let c = &self.inner.counters;
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut h = HitCounts::default();
        for s in self.inner.shards.iter() {
            let s = lock(s).hits;
            h.fresh += s.fresh;
            h.stale_revalidating += s.stale_revalidating;
            h.stale_throttled += s.stale_throttled;
            h.stale_load_failed += s.stale_load_failed;
            h.throttled_errors += s.throttled_errors;
        }
        Stats {
            fresh: h.fresh,
            stale_revalidating: h.stale_revalidating,
            stale_throttled: h.stale_throttled,
            stale_load_failed: h.stale_load_failed + r(&c.stale_load_failed),
            loaded: r(&c.loaded),
            joined: r(&c.joined),
            throttled_errors: h.throttled_errors,
            loads_started: r(&c.loads_started),
            loads_succeeded: r(&c.loads_succeeded),
            loads_failed: r(&c.loads_failed),
            loads_panicked: r(&c.loads_panicked),
            loads_abandoned: r(&c.loads_abandoned),
            loads_discarded: r(&c.loads_discarded),
            evictions: r(&c.evictions),
            in_flight: r(&c.in_flight),
        }
    }
}

impl<K, V, L> Inner<K, V, L>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Send + Sync + 'static,
    L: Loader<K, V>,
{
    /// The clock's reading as [`Nanos`] since the epoch (earlier readings,
    /// from a clock that went backwards, count as the epoch).
    #[inline]
    fn now(&self) -> Nanos {
        self.clock.nanos_since(self.epoch)
    }

    /// How long a value stored for `key` by store number `seq` (a flight id
    /// or an insert's generation, both unique per cache) stays fresh.
    #[inline]
    fn fresh_for(&self, key: &K, seq: u64) -> Nanos {
        let p = &self.policy;
        if p.ttl_jitter.is_zero() {
            return self.limits.ttl;
        }
        let span = p.ttl_jitter.min(p.ttl);
        let span_nanos = nanos(span);
        let h = self.jitter.hash_one((key, seq));
        // Uniform in [0, span]: the high half of h * (span + 1).
        let j = (u128::from(h) * (u128::from(span_nanos) + 1)) >> 64;
        nanos(p.ttl - Duration::from_nanos(j as u64))
    }

    /// Hashes `key` (once per operation) and picks its shard.
    #[inline]
    fn locate<'k>(&self, key: &'k K) -> (&ShardLock<K, V, L::Error>, Lookup<'k, K>) {
        let at = Lookup::new(&self.hasher, key);
        // Bits 40..44 of the hash the shard map then uses as is: hashbrown
        // takes its bucket index from the low bits and its tag from the top 7,
        // so the shard choice does not thin out either within a shard.
        let n = self.shards.len();
        (&self.shards[(at.hash >> 40) as usize & (n - 1)], at)
    }

    /// The first poll of a [`Get`]: serves a hit (the rows of the decision
    /// table that only read the entry) inline, and leaves everything else
    /// to [`decide_slow`](Self::decide_slow).
    ///
    /// The hit is built directly in the returned `Poll`, which is the poll's
    /// own result: nothing is moved through an intermediate enum, and the
    /// slow path's code stays out of line.
    #[inline]
    fn decide(
        self: &Arc<Self>,
        key: &K,
        wait: &mut Option<Box<Wait<V, L::Error>>>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Hit<V>, CacheError<L::Error>>> {
        let now = self.now();
        let (shard, at) = self.locate(key);
        let mut guard = lock(shard);
        let shard = &mut *guard;
        if let Some(e) = shard.map.get_mut(at.view()) {
            e.referenced = true;
            if e.value.is_some() {
                let age = now.saturating_sub(e.stored_at);
                let h = &mut shard.hits;
                let (source, counter) = if !e.marked_stale && age < e.fresh_for {
                    (Source::Fresh, &mut h.fresh)
                } else if age >= self.limits.max_stale {
                    return self.decide_slow(guard, at, now, wait, cx);
                } else if e.flight.is_some() && e.live_flight().is_some() {
                    (
                        Source::Stale(StaleReason::Revalidating),
                        &mut h.stale_revalidating,
                    )
                } else if now < e.next_attempt {
                    if e.failures > 0 {
                        (
                            Source::Stale(StaleReason::LoadFailed),
                            &mut h.stale_load_failed,
                        )
                    } else {
                        (
                            Source::Stale(StaleReason::Throttled),
                            &mut h.stale_throttled,
                        )
                    }
                } else {
                    return self.decide_slow(guard, at, now, wait, cx);
                };
                if let Some(v) = &e.value {
                    *counter += 1;
                    return Poll::Ready(Ok(Hit {
                        value: Arc::clone(v),
                        source,
                        age: Duration::from_nanos(age),
                    }));
                }
            }
        }
        self.decide_slow(guard, at, now, wait, cx)
    }

    /// Everything but a hit: runs the whole decision table under the lock
    /// `decide` already holds, releases it, hands a background waiter (if the
    /// table asked for one) to the spawner, and polls this caller's waiter.
    #[inline(never)]
    fn decide_slow(
        self: &Arc<Self>,
        mut guard: MutexGuard<'_, Shard<K, V, L::Error>>,
        at: Lookup<'_, K>,
        now: Nanos,
        wait: &mut Option<Box<Wait<V, L::Error>>>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Hit<V>, CacheError<L::Error>>> {
        let mut bg = None;
        let decision = self.decide_locked(&mut guard, at, now, &mut bg);
        drop(guard);
        if let Some(bg) = bg {
            self.spawn_waiter(bg);
        }
        match decision {
            Decision::Ready(r) => Poll::Ready(r),
            Decision::Wait {
                waiter,
                leader,
                fallback,
            } => {
                let mut w = Box::new(Wait {
                    waiter,
                    leader,
                    fallback,
                });
                let r = self.poll_wait(&mut w, cx);
                if r.is_pending() {
                    *wait = Some(w);
                }
                r
            }
        }
    }

    /// Polls the flight this caller waits on; on completion turns its
    /// output into the caller's result (the caller then drops `w`).
    fn poll_wait(
        &self,
        w: &mut Wait<V, L::Error>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Hit<V>, CacheError<L::Error>>> {
        let out = ready!(Pin::new(&mut w.waiter).poll(cx));
        Poll::Ready(self.settle(out, w.leader, w.fallback.take()))
    }

    #[cold]
    fn spawn_waiter(&self, bg: Waiter<Out<V, L::Error>>) {
        if let Some(sp) = &self.spawner {
            sp.spawn(Box::pin(async move {
                let _ = bg.await;
            }));
        }
    }

    /// Runs the decision table under the shard lock. `bg` receives a waiter
    /// to hand to the spawner once the lock is released.
    fn decide_locked(
        self: &Arc<Self>,
        shard: &mut Shard<K, V, L::Error>,
        at: Lookup<'_, K>,
        now: Nanos,
        bg: &mut Option<Waiter<Out<V, L::Error>>>,
    ) -> Decision<V, L::Error> {
        let key = at.key;
        let l = &self.limits;
        let c = &self.counters;
        let e = match shard.map.get_mut(at.view()) {
            Some(e) => e,
            None => {
                let generation = self.next_id.fetch_add(1, Ordering::Relaxed);
                let hk = HashedKey::new(at.hash, key.clone());
                let e = shard.insert_new(hk, Entry::empty(now, generation), c);
                let waiter = self.start_flight(e, key, now, false);
                if self.spawner.is_some() {
                    *bg = e.flight.as_ref().and_then(|f| f.join());
                }
                return Decision::wait(waiter, true, None);
            }
        };
        e.referenced = true;
        if let Some(v) = &e.value {
            let age = now.saturating_sub(e.stored_at);
            if !e.marked_stale && age < e.fresh_for {
                shard.hits.fresh += 1;
                return Decision::Ready(Ok(Hit {
                    value: Arc::clone(v),
                    source: Source::Fresh,
                    age: Duration::from_nanos(age),
                }));
            }
            if age < l.max_stale {
                let v = Arc::clone(v);
                let hits = &mut shard.hits;
                let stale = |value, reason, counter: &mut u64| {
                    *counter += 1;
                    Decision::Ready(Ok(Hit {
                        value,
                        source: Source::Stale(reason),
                        age: Duration::from_nanos(age),
                    }))
                };
                if e.live_flight().is_some() {
                    return stale(v, StaleReason::Revalidating, &mut hits.stale_revalidating);
                }
                if now < e.next_attempt {
                    return if e.failures > 0 {
                        stale(v, StaleReason::LoadFailed, &mut hits.stale_load_failed)
                    } else {
                        stale(v, StaleReason::Throttled, &mut hits.stale_throttled)
                    };
                }
                let stored_at = e.stored_at;
                let waiter = self.start_flight(e, key, now, true);
                let non_blocking = age < e.fresh_for.saturating_add(l.stale_while_revalidate);
                if self.spawner.is_some() {
                    *bg = e.flight.as_ref().and_then(|f| f.join());
                    if non_blocking {
                        drop(waiter);
                        return stale(v, StaleReason::Revalidating, &mut hits.stale_revalidating);
                    }
                }
                return Decision::wait(waiter, true, Some((v, stored_at)));
            }
        }
        // Nothing servable.
        if let Some(f) = e.live_flight() {
            if let Some(waiter) = f.join() {
                return Decision::wait(waiter, false, None);
            }
        }
        if now < e.negative_until {
            shard.hits.throttled_errors += 1;
            return Decision::Ready(Err(CacheError::Throttled {
                retry_in: Duration::from_nanos(e.negative_until - now),
                last_error: e.last_error.clone(),
            }));
        }
        let waiter = self.start_flight(e, key, now, false);
        if self.spawner.is_some() {
            *bg = e.flight.as_ref().and_then(|f| f.join());
        }
        Decision::wait(waiter, true, None)
    }

    /// Installs a new flight in `e` (attempt time recorded now) and returns
    /// the initiator's waiter.
    fn start_flight(
        self: &Arc<Self>,
        e: &mut Entry<V, L::Error>,
        key: &K,
        now: Nanos,
        with_previous: bool,
    ) -> Waiter<Out<V, L::Error>> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let generation = e.generation;
        e.next_attempt = self
            .deadline(now, self.policy.min_refresh_interval)
            .unwrap_or(NEVER);
        bump(&self.counters.loads_started);
        self.counters.in_flight.fetch_add(1, Ordering::Relaxed);

        let previous = if with_previous { e.value.clone() } else { None };
        let inner = Arc::clone(self);
        let k = key.clone();
        let fut: BoxFut<Out<V, L::Error>> = Box::pin(async move {
            let permit = match &inner.limiter {
                Some(l) => Some(l.acquire().await),
                None => None,
            };
            let res = inner.loader.load(&k, previous).await;
            drop(permit);
            inner.finish(&k, id, generation, now, res)
        });
        let weak: Weak<Self> = Arc::downgrade(self);
        let k = key.clone();
        let hook = Box::new(move |abort: Abort| {
            if let Some(inner) = weak.upgrade() {
                inner.aborted(&k, id, generation, now, abort);
            }
        });
        let flight = Flight::new(id, fut, hook);
        let waiter = flight.join().expect("a new flight is never cancelled");
        e.flight = Some(flight);
        waiter
    }

    /// `now + d` as a deadline. `None` exactly where the same sum on
    /// `Instant`s overflows (spans near `Duration::MAX`), which is what the
    /// callers' rules were written against; a sum past `u64::MAX` ns that
    /// `Instant` could still represent saturates (it never arrives either way).
    fn deadline(&self, now: Nanos, d: Duration) -> Option<Nanos> {
        self.epoch
            .checked_add(Duration::from_nanos(now))?
            .checked_add(d)?;
        Some(now.saturating_add(nanos(d)))
    }

    fn record_failure(
        &self,
        e: &mut Entry<V, L::Error>,
        started: Nanos,
        now: Nanos,
        err: Option<Arc<L::Error>>,
    ) {
        let p = &self.policy;
        e.failures = e.failures.saturating_add(1);
        e.last_error = err;
        let backoff = p.failure_backoff.delay(e.failures);
        let by_interval = self.deadline(started, p.min_refresh_interval);
        let by_backoff = self.deadline(now, backoff);
        e.next_attempt = match (by_interval, by_backoff) {
            (Some(a), Some(b)) => a.max(b),
            _ => far_future(now),
        };
        e.negative_until = p.negative_ttl.map_or(NEVER, |d| {
            self.deadline(now, d.max(backoff))
                .unwrap_or_else(|| far_future(now))
        });
    }

    fn finish(
        &self,
        key: &K,
        id: u64,
        generation: u64,
        started: Nanos,
        res: Result<V, L::Error>,
    ) -> Out<V, L::Error> {
        let c = &self.counters;
        let now = self.now();
        let (shard, at) = self.locate(key);
        let mut shard = lock(shard);
        c.in_flight.fetch_sub(1, Ordering::Relaxed);
        let entry = shard.map.get_mut(at.view());
        let out = match res {
            Ok(v) => {
                bump(&c.loads_succeeded);
                let v = Arc::new(v);
                if let Some(e) = entry {
                    if e.flight.as_ref().is_some_and(|f| f.id() == id) {
                        e.flight = None;
                    }
                    if e.generation == generation {
                        e.value = Some(Arc::clone(&v));
                        e.stored_at = now;
                        e.fresh_for = self.fresh_for(key, id);
                        e.marked_stale = false;
                        e.failures = 0;
                        e.last_error = None;
                        e.negative_until = NEVER;
                    } else {
                        bump(&c.loads_discarded);
                    }
                } else {
                    bump(&c.loads_discarded);
                }
                Ok((v, now))
            }
            Err(err) => {
                bump(&c.loads_failed);
                let err = Arc::new(err);
                if let Some(e) = entry {
                    if e.flight.as_ref().is_some_and(|f| f.id() == id) {
                        e.flight = None;
                    }
                    if e.generation == generation {
                        self.record_failure(e, started, now, Some(Arc::clone(&err)));
                    }
                }
                Err(err)
            }
        };
        let cap = shard.cap;
        shard.evict_to(cap, c);
        out
    }

    fn aborted(&self, key: &K, id: u64, generation: u64, started: Nanos, abort: Abort) {
        let c = &self.counters;
        let now = self.now();
        let (shard, at) = self.locate(key);
        let mut shard = lock(shard);
        c.in_flight.fetch_sub(1, Ordering::Relaxed);
        match abort {
            Abort::Cancelled => bump(&c.loads_abandoned),
            Abort::Panicked => bump(&c.loads_panicked),
        }
        let Some(e) = shard.map.get_mut(at.view()) else {
            return;
        };
        if e.flight.as_ref().is_some_and(|f| f.id() == id) {
            e.flight = None;
        }
        if matches!(abort, Abort::Panicked) && e.generation == generation {
            self.record_failure(e, started, now, None);
        }
        if e.removable(now) {
            shard.map.remove(at.view());
        }
        let cap = shard.cap;
        shard.evict_to(cap, c);
    }

    fn settle(
        &self,
        out: Result<Out<V, L::Error>, Arc<str>>,
        leader: bool,
        fallback: Option<(Arc<V>, Nanos)>,
    ) -> Result<Hit<V>, CacheError<L::Error>> {
        let c = &self.counters;
        let now = self.now();
        let err = match out {
            Ok(Ok((value, at))) => {
                bump(if leader { &c.loaded } else { &c.joined });
                return Ok(Hit {
                    value,
                    source: if leader {
                        Source::Loaded
                    } else {
                        Source::Joined
                    },
                    age: Duration::from_nanos(now.saturating_sub(at)),
                });
            }
            Ok(Err(e)) => CacheError::Load(e),
            Err(msg) => CacheError::LoaderPanicked(msg),
        };
        if let Some((value, at)) = fallback {
            let age = now.saturating_sub(at);
            if age < self.limits.max_stale {
                bump(&c.stale_load_failed);
                return Ok(Hit {
                    value,
                    source: Source::Stale(StaleReason::LoadFailed),
                    age: Duration::from_nanos(age),
                });
            }
        }
        Err(err)
    }
}

/// A reading so far ahead it never arrives in practice (for saturated sums).
fn far_future(now: Nanos) -> Nanos {
    now.saturating_add(nanos(Duration::from_secs(100 * 365 * 24 * 3600)))
}

#[cfg(test)]
mod tests {
    use super::*;

    type L = fn(&u64, Option<Arc<u64>>) -> std::future::Ready<Result<u64, ()>>;

    /// The hit path's layout budget (see DESIGN.md, "Hit path cost"): a
    /// `(HashedKey<u64>, Entry)` bucket in 88 bytes and a three-word `get` future.
    #[test]
    fn hit_path_sizes() {
        use std::mem::size_of;
        assert_eq!(size_of::<(HashedKey<u64>, Entry<u64, ()>)>(), 88);
        assert_eq!(size_of::<Get<'_, u64, u64, L>>(), 3 * size_of::<usize>());
    }

    #[test]
    fn nanos_saturate() {
        assert_eq!(nanos(Duration::new(2, 5)), 2_000_000_005);
        assert_eq!(nanos(Duration::MAX), u64::MAX);
        assert_eq!(
            nanos(Duration::from_secs(u64::MAX / 1_000_000_000 + 1)),
            u64::MAX
        );
    }
}
