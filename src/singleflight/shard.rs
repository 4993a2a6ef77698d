//! One shard of the cache: its map of entries, the eviction order, and the
//! per-shard hit counters.

use std::boxed::Box;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use super::flight::Flight;
use super::hash::{HashedKey, PassThrough};
use super::stats::{bump, Counters, HitCounts};
use super::time::{Nanos, NEVER};

/// What a flight produces: the value and when it was stored (a [`Nanos`]
/// reading), or the error.
pub(super) type Out<V, E> = Result<(Arc<V>, Nanos), Arc<E>>;

pub(super) struct Entry<V, E> {
    pub(super) value: Option<Arc<V>>,
    pub(super) stored_at: Nanos,
    /// `ttl` minus this value's jitter.
    pub(super) fresh_for: Nanos,
    pub(super) generation: u64,
    pub(super) flight: Option<Arc<Flight<Out<V, E>>>>,
    /// Earliest start of the next refresh while servable stale data exists
    /// ([`NEVER`]: none).
    pub(super) next_attempt: Nanos,
    /// Negative cache: cold callers fail fast until then ([`NEVER`]: off).
    pub(super) negative_until: Nanos,
    pub(super) last_error: Option<Arc<E>>,
    pub(super) failures: u32,
    pub(super) marked_stale: bool,
    pub(super) referenced: bool,
}

impl<V, E> Entry<V, E> {
    pub(super) fn empty(now: Nanos, generation: u64) -> Self {
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
    pub(super) fn live_flight(&mut self) -> Option<&Arc<Flight<Out<V, E>>>> {
        if self.flight.as_ref().is_some_and(|f| f.is_cancelled()) {
            self.flight = None;
        }
        self.flight.as_ref()
    }

    pub(super) fn removable(&self, now: Nanos) -> bool {
        self.value.is_none() && self.flight.is_none() && self.negative_until <= now
    }
}

pub(super) struct Shard<K, V, E> {
    /// Keys carry the hash that also picked the shard, so a lookup hashes
    /// the key once, not twice (see `hash.rs`).
    pub(super) map: HashMap<HashedKey<K>, Entry<V, E>, PassThrough>,
    pub(super) hits: HitCounts,
    /// Second-chance (CLOCK) eviction order. May hold keys that were removed
    /// or duplicates; those are skipped and compacted away.
    pub(super) order: VecDeque<HashedKey<K>>,
    pub(super) cap: usize,
}

impl<K: Hash + Eq + Clone, V, E> Shard<K, V, E> {
    /// Evicts until at most `limit` keys remain or nothing is evictable.
    ///
    /// Never evicts a key with a load in flight (its result would be lost)
    /// and gives a key read since the last sweep a second chance. Two passes
    /// over `order` suffice: the first clears every `referenced` mark, the
    /// second finds every key without a load in flight.
    pub(super) fn evict_to(&mut self, limit: usize, counters: &Counters) {
        let mut budget = 2 * self.order.len();
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

    pub(super) fn insert_new(
        &mut self,
        key: HashedKey<K>,
        entry: Entry<V, E>,
        counters: &Counters,
    ) -> &mut Entry<V, E> {
        // Room for the new key.
        self.evict_to(self.cap.saturating_sub(1), counters);
        // `invalidate` and removals leave their keys in `order`; rebuild it
        // before it outgrows the map, or a churn of keys that never fills
        // the shard would grow it without bound.
        if self.order.len() > 2 * self.map.len() + 32 {
            self.order = self.map.keys().cloned().collect();
        }
        self.order.push_back(key.clone());
        self.map.entry(key).or_insert(entry)
    }
}

pub(super) type ShardLock<K, V, E> = Mutex<Shard<K, V, E>>;
pub(super) type Shards<K, V, E> = Box<[ShardLock<K, V, E>]>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::singleflight::hash::{KeyState, Lookup};

    fn shard(cap: usize) -> Shard<u64, u64, ()> {
        Shard {
            map: HashMap::with_hasher(PassThrough),
            hits: HitCounts::default(),
            order: VecDeque::new(),
            cap,
        }
    }

    /// Keys inserted and removed again (as `invalidate` does) without ever
    /// filling the shard do not pile up in the eviction order, next to a
    /// resident set of keys and after that set shrinks.
    #[test]
    fn order_stays_bounded_under_churn() {
        let hasher = KeyState::new();
        let counters = Counters::default();
        let mut s = shard(1000);
        let insert = |s: &mut Shard<u64, u64, ()>, k: u64| {
            let at = Lookup::new(&hasher, &k);
            s.insert_new(HashedKey::new(at.hash, k), Entry::empty(0, k), &counters);
            at.hash
        };
        for k in 0..100 {
            insert(&mut s, k);
        }
        for round in 0..2u64 {
            for k in 1_000..5_000 {
                let k = k + round * 10_000;
                let hash = insert(&mut s, k);
                s.map.remove(&HashedKey::new(hash, k));
                let bound = 2 * s.map.len() + 33;
                assert!(s.order.len() <= bound, "order {} > {bound}", s.order.len());
            }
            // The resident set shrinks: the bound drops below `order`.
            for k in 0..50 {
                let k = k + round * 50;
                let at = Lookup::new(&hasher, &k);
                s.map.remove(at.view());
            }
        }
        assert_eq!(s.map.len(), 0);
    }
}
