//! [`StaleCache`]: request coalescing plus a cache that serves stale data
//! instead of making callers wait on a slow or failing backend.

use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::builder::Builder;
use super::clock::{saturating_nanos as nanos, Spawn};
use super::flight::lock;
use super::get::Get;
use super::hash::{HashedKey, KeyState, Lookup};
use super::hit::{GetResult, Hit, Source, StaleReason};
use super::loader::{FromFn, Loader};
use super::policy::Policy;
use super::shard::{Entry, ShardLock, Shards};
use super::stats::{Counters, HitCounts, Stats};
use super::time::{Nanos, TimeSource, NEVER};
use crate::Semaphore;

pub(super) struct Inner<K, V, L: Loader<K, V>> {
    pub(super) loader: L,
    pub(super) policy: Policy,
    /// The policy's spans the decision table compares, converted once.
    pub(super) limits: Limits,
    pub(super) clock: TimeSource,
    /// The clock's reading at build time; [`Nanos`] count from here.
    pub(super) epoch: Instant,
    pub(super) spawner: Option<Arc<dyn Spawn>>,
    /// Seeds the per-store TTL jitter (deterministic for a given seed).
    pub(super) jitter: KeyState,
    pub(super) shards: Shards<K, V, L::Error>,
    /// Picks the shard and hashes keys inside every shard map.
    pub(super) hasher: KeyState,
    pub(super) counters: Counters,
    pub(super) next_id: AtomicU64,
    /// `Policy::max_concurrent_loads` as a FIFO semaphore: every load takes
    /// an owned permit before it calls the backend.
    pub(super) load_permits: Option<Arc<Semaphore>>,
}

/// [`Policy`] spans in [`Nanos`], so the hit path converts nothing.
pub(super) struct Limits {
    pub(super) ttl: Nanos,
    pub(super) stale_while_revalidate: Nanos,
    pub(super) max_stale: Nanos,
}

/// A cache that coalesces loads per key and serves stale data instead of
/// making callers wait on a slow or failing backend.
///
/// **Give it a spawner** ([`Builder::spawner`]). Without one, refreshes run
/// inside callers' `get`s: the caller that starts a refresh waits for the
/// whole backend call even when it holds usable stale data, and a caller that
/// gives up early (a short deadline) cancels the refresh for everyone if
/// nobody else is waiting on it. With a spawner, every caller holding usable
/// stale data is answered at once and refreshes run to completion.
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
/// | none / too old | no | yes | fail fast: [`CacheError::Throttled`](super::CacheError::Throttled) |
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
    pub(super) inner: Arc<Inner<K, V, L>>,
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

impl<K, V, L> StaleCache<K, V, L>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Send + Sync + 'static,
    L: Loader<K, V>,
{
    /// Starts configuring a cache around `loader`.
    pub fn builder(loader: L) -> Builder<K, V, L> {
        Builder::new(loader)
    }

    /// A cache with the default policy, system clock and no spawner.
    ///
    /// ```
    /// use fairgate::singleflight::StaleCache;
    /// use std::sync::Arc;
    ///
    /// let cache = StaleCache::new(|k: &u8, _prev: Option<Arc<u8>>| {
    ///     let k = *k;
    ///     async move { Ok::<_, ()>(k + 1) }
    /// });
    /// assert_eq!(*futures::executor::block_on(cache.get(&1)).unwrap().value, 2);
    /// ```
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
    ) -> impl Future<Output = GetResult<V, L::Error>> + Send + 'a {
        Get {
            inner: &self.inner,
            key,
            wait: None,
        }
    }

    /// The cached value, if one may be served, without loading or waiting:
    /// `None` when the key holds no value or only one older than
    /// `max_stale`. A stale value reports [`StaleReason::Revalidating`] while
    /// a refresh runs, otherwise [`StaleReason::LoadFailed`] (with
    /// [`Hit::error`]) if the last attempt failed, else
    /// [`StaleReason::Throttled`]. Counts in no statistic.
    ///
    /// ```
    /// use fairgate::singleflight::{Source, StaleCache};
    ///
    /// let cache = StaleCache::from_fn(|k: &u8| {
    ///     let k = *k;
    ///     async move { Ok::<_, ()>(k) }
    /// })
    /// .build();
    /// assert!(cache.peek(&1).is_none());
    /// cache.insert(1, 10);
    /// let hit = cache.peek(&1).unwrap();
    /// assert_eq!((*hit.value, hit.source), (10, Source::Fresh));
    /// ```
    pub fn peek(&self, key: &K) -> Option<Hit<V, L::Error>> {
        let inner = &*self.inner;
        let now = inner.now();
        let (shard, at) = inner.locate(key);
        let mut shard = lock(shard);
        let e = shard.map.get_mut(at.view())?;
        let value = e.value.clone()?;
        let age = now.saturating_sub(e.stored_at);
        let mut error = None;
        let source = if !e.marked_stale && age < e.fresh_for {
            Source::Fresh
        } else if age < inner.limits.max_stale {
            Source::Stale(if e.live_flight().is_some() {
                StaleReason::Revalidating
            } else if e.failures > 0 {
                error = e.last_error.clone();
                StaleReason::LoadFailed
            } else {
                StaleReason::Throttled
            })
        } else {
            return None;
        };
        Some(Hit::new(value, source, Duration::from_nanos(age), error))
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
        let mut hits = HitCounts::default();
        for s in self.inner.shards.iter() {
            hits.add(&lock(s).hits);
        }
        self.inner.counters.snapshot(&hits)
    }
}

impl<K, V, E, F, Fut> StaleCache<K, V, FromFn<F>>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Send + Sync + 'static,
    E: Send + Sync + 'static,
    F: Fn(&K) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<V, E>> + Send + 'static,
{
    /// Starts configuring a cache around a key-only loader: the simple form,
    /// with no `previous` argument (see [`Loader`] for the full form).
    ///
    /// ```
    /// use fairgate::singleflight::StaleCache;
    ///
    /// let cache = StaleCache::from_fn(|name: &String| {
    ///     let name = name.clone();
    ///     async move { Ok::<_, std::io::Error>(name.len()) }
    /// })
    /// .build();
    /// let hit = futures::executor::block_on(cache.get(&"etcd".to_string())).unwrap();
    /// assert_eq!(*hit.value, 4);
    /// ```
    pub fn from_fn(f: F) -> Builder<K, V, FromFn<F>> {
        Builder::new(super::loader::from_fn(f))
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
    pub(super) fn now(&self) -> Nanos {
        self.clock.nanos_since(self.epoch)
    }

    /// How long a value stored for `key` by store number `seq` (a flight id
    /// or an insert's generation, both unique per cache) stays fresh.
    #[inline]
    pub(super) fn fresh_for(&self, key: &K, seq: u64) -> Nanos {
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
    pub(super) fn locate<'k>(&self, key: &'k K) -> (&ShardLock<K, V, L::Error>, Lookup<'k, K>) {
        let at = Lookup::new(&self.hasher, key);
        // Bits 40..44 of the hash the shard map then uses as is: hashbrown
        // takes its bucket index from the low bits and its tag from the top 7,
        // so the shard choice does not thin out either within a shard.
        let n = self.shards.len();
        (&self.shards[(at.hash >> 40) as usize & (n - 1)], at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type L = fn(&u64, Option<Arc<u64>>) -> std::future::Ready<Result<u64, ()>>;

    /// The hit path's layout budget (see `src/singleflight/DESIGN.md`, "Hit path cost"): a
    /// `(HashedKey<u64>, Entry)` bucket in 88 bytes and a three-word `get` future.
    #[test]
    pub(super) fn hit_path_sizes() {
        use std::mem::size_of;
        assert_eq!(size_of::<(HashedKey<u64>, Entry<u64, ()>)>(), 88);
        assert_eq!(size_of::<Get<'_, u64, u64, L>>(), 3 * size_of::<usize>());
    }

    #[test]
    pub(super) fn nanos_saturate() {
        assert_eq!(nanos(Duration::new(2, 5)), 2_000_000_005);
        assert_eq!(nanos(Duration::MAX), u64::MAX);
        assert_eq!(
            nanos(Duration::from_secs(u64::MAX / 1_000_000_000 + 1)),
            u64::MAX
        );
    }
}
