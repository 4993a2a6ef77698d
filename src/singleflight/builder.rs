//! [`Builder`]: configures and builds a [`StaleCache`].

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::vec::Vec;

use super::cache::{Inner, Limits, StaleCache};
use super::clock::{saturating_nanos as nanos, Clock, Spawn};
use super::hash::{KeyState, PassThrough};
use super::loader::Loader;
use super::policy::Policy;
use super::shard::Shard;
use super::stats::{Counters, HitCounts};
use super::time::TimeSource;
use crate::Semaphore;

/// Configures and builds a [`StaleCache`]. Created by [`StaleCache::builder`].
pub struct Builder<K, V, L> {
    loader: L,
    policy: Policy,
    clock: TimeSource,
    spawner: Option<Arc<dyn Spawn>>,
    jitter_seed: Option<u64>,
    _marker: std::marker::PhantomData<fn(K) -> V>,
}

impl<K, V, L> Builder<K, V, L> {
    pub(super) fn new(loader: L) -> Self {
        Builder {
            loader,
            policy: Policy::default(),
            clock: TimeSource::System,
            spawner: None,
            jitter_seed: None,
            _marker: std::marker::PhantomData,
        }
    }
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

    /// Sets the clock (default: [`SystemClock`](super::SystemClock)).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = TimeSource::of(clock);
        self
    }

    /// Sets a spawner: loads and background refreshes then run detached.
    ///
    /// **The recommended setup** whenever an executor is at hand. Without a
    /// spawner, the caller that starts a refresh drives it inside its own
    /// `get` and waits for the whole backend call (inside the
    /// `stale_while_revalidate` band too), and if that caller gives up (a
    /// short deadline, a dropped request) and nobody else is waiting, the
    /// refresh is cancelled for everyone. With a spawner every caller holding
    /// usable stale data is answered at once, and a refresh runs to its end
    /// whoever goes away.
    ///
    /// ```
    /// use fairgate::singleflight::{Source, StaleCache, StaleReason};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let cache = StaleCache::from_fn(|name: &String| {
    ///     let name = name.clone();
    ///     async move { Ok::<_, std::io::Error>(format!("{name}: 10.0.0.1:8080")) }
    /// })
    /// .spawner(|f| {
    ///     tokio::spawn(f);
    /// })
    /// .build();
    ///
    /// let hit = cache.get(&"db".to_string()).await.unwrap();
    /// assert_eq!(hit.source, Source::Loaded);
    /// # }
    /// ```
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
        let n = shard_count(cap);
        let hasher = KeyState::new();
        let shards = (0..n)
            .map(|i| {
                Mutex::new(Shard {
                    map: HashMap::with_hasher(PassThrough),
                    hits: HitCounts::default(),
                    order: VecDeque::new(),
                    cap: shard_cap(cap, n, i),
                })
            })
            .collect::<Vec<_>>()
            .into_boxed_slice();
        // The crate's own FIFO semaphore: loads waiting for the cap start in
        // the order they asked, and a released permit wakes exactly the next
        // one (owned permits, so the permit lives inside the load's future).
        let load_permits = self
            .policy
            .max_concurrent_loads
            .map(|n| Arc::new(Semaphore::new(n.clamp(1, Semaphore::MAX_PERMITS))));
        let mut clock = self.clock;
        let epoch = clock.take_epoch();
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
                clock,
                spawner: self.spawner,
                jitter: self
                    .jitter_seed
                    .map_or_else(KeyState::new, KeyState::with_seed),
                shards,
                hasher,
                counters: Counters::default(),
                next_id: AtomicU64::new(1),
                load_permits,
            }),
        }
    }
}

/// Shards for a cache of `cap` keys: one per 64 keys, a power of two, 1 to 16.
/// Every shard then holds at least 64 keys (or all of them), so evicting
/// within one shard stays close to evicting across the cache.
pub(super) fn shard_count(cap: usize) -> usize {
    (cap / 64).clamp(1, 16).next_power_of_two().min(16)
}

/// The key bound of shard `i` of `n`: `cap` split as evenly as possible.
pub(super) fn shard_cap(cap: usize, n: usize, i: usize) -> usize {
    cap / n + usize::from(i < cap % n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_the_bound_exactly() {
        for (cap, n) in [
            (1, 1),
            (127, 1),
            (128, 2),
            (191, 2),
            (192, 4),
            (256, 4),
            (1023, 16),
        ] {
            assert_eq!(shard_count(cap), n, "cap {cap}");
        }
        for cap in [1, 100, 1000, 1023, 1024, 1025, 10_000, 100_000] {
            let n = shard_count(cap);
            assert!(n.is_power_of_two() && n <= 16);
            let caps: Vec<usize> = (0..n).map(|i| shard_cap(cap, n, i)).collect();
            assert_eq!(caps.iter().sum::<usize>(), cap, "cap {cap}");
            assert!(caps.iter().max().unwrap() - caps.iter().min().unwrap() <= 1);
        }
        assert_eq!(shard_count(10_000), 16);
    }
}
