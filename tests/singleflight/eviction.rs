//! Eviction under `max_entries`: a key flood stays within the bound without
//! ever dropping a load in flight, a recently read key gets its second
//! chance, and the shards together hold exactly `max_entries` keys.

use crate::rig::*;
use fairgate::singleflight::{Policy, Source};
use std::task::Poll;

fn small(max_entries: usize) -> Policy {
    Policy {
        max_entries,
        ..policy()
    }
}

/// Loads in flight survive a flood of inserts that fills the cache many
/// times over: each stores its value when it lands, nothing is discarded,
/// and the cache never holds more than `max_entries` keys. Fails if the
/// eviction guard (`flight.is_some() || referenced`) is replaced by `false`.
#[test]
fn key_flood_stays_within_bound_and_keeps_loads_in_flight() {
    bounded(|| {
        let (rig, _clock, cache) = rig_with(small(8));
        let mut loads: Vec<_> = (1000..1004).map(|k| get(&cache, k)).collect();
        for l in &mut loads {
            assert!(poll_once(l).is_pending());
        }
        for k in 0..1000 {
            cache.insert(k, u64::from(k));
            assert!(cache.len() <= 8, "len {} after insert {k}", cache.len());
        }
        assert!(cache.stats().evictions >= 990);
        rig.release_all(Reply::Ok(77));
        for l in loads {
            assert_eq!(now(l).unwrap().source, Source::Loaded);
        }
        for k in 1000..1004 {
            assert_eq!(
                cache.peek(&k).map(|h| *h.value),
                Some(77),
                "the load for {k} was evicted while in flight"
            );
        }
        assert_eq!(cache.stats().loads_discarded, 0);
        assert!(cache.len() <= 8);
    });
}

/// More loads in flight than the bound: the bound is exceeded only while
/// they run (they cannot be evicted), and is restored as they land, down to
/// exactly `max_entries`. Fails on wrong arithmetic in `evict_to`'s
/// budget or limit (too few evictions leave the cache over its bound).
#[test]
fn bound_is_restored_when_excess_loads_land() {
    bounded(|| {
        let (rig, _clock, cache) = rig_with(small(4));
        let mut loads: Vec<_> = (0..12).map(|k| get(&cache, k)).collect();
        for l in &mut loads {
            assert!(poll_once(l).is_pending());
        }
        assert_eq!(cache.len(), 12, "loads in flight are never evicted");
        rig.release_all(Reply::Ok(1));
        for l in loads {
            assert!(now(l).is_ok());
        }
        assert_eq!(cache.len(), 4);
        assert_eq!(cache.stats().evictions, 8);
        assert_eq!(cache.stats().loads_discarded, 0);
    });
}

/// Second chance: a key read since the last sweep survives the next
/// eviction; the unread key after it goes. Fails if the guard ignores
/// `referenced` (`||` → `&&`, or `false`).
#[test]
fn recently_read_key_gets_a_second_chance() {
    bounded(|| {
        let (_rig, _clock, cache) = rig_with(small(4));
        for k in 0..4 {
            cache.insert(k, u64::from(k));
        }
        // The first sweep clears every mark and evicts the oldest key, 0.
        cache.insert(4, 4);
        assert!(cache.peek(&0).is_none());
        assert_eq!(cache.len(), 4);
        // Key 1 is next in line but was just read: 2 goes instead.
        assert_eq!(now(cache.get(&1)).unwrap().source, Source::Fresh);
        cache.insert(5, 5);
        assert!(
            cache.peek(&1).is_some(),
            "a key read since the sweep was evicted"
        );
        assert!(cache.peek(&2).is_none());
        assert_eq!(cache.len(), 4);
        assert_eq!(cache.stats().evictions, 2);
    });
}

/// The shards' bounds add up to `max_entries` exactly, whatever the shard
/// count: a flood of distinct keys leaves exactly that many. Fails on wrong
/// shard sizing in `build`.
#[test]
fn shards_together_hold_exactly_max_entries() {
    bounded(|| {
        for max in [1, 7, 64, 100, 129, 1000, 1025] {
            let (_rig, _clock, cache) = rig_with(small(max));
            for k in 0..(40 * max as u32 + 2000) {
                cache.insert(k, 0);
            }
            assert_eq!(cache.len(), max, "max_entries {max}");
        }
    });
}

/// `len` and `is_empty` follow inserts, evictions and invalidations.
#[test]
fn len_and_is_empty_follow_the_keys_held() {
    bounded(|| {
        let (rig, _clock, cache) = rig_with(small(2));
        assert!(cache.is_empty());
        assert_eq!(cache.len(), 0);
        cache.insert(1, 1);
        assert!(!cache.is_empty());
        assert_eq!(cache.len(), 1);
        cache.invalidate(&1);
        assert!(cache.is_empty());
        // A key with only a load in flight counts as held.
        let mut load = get(&cache, 3);
        assert!(matches!(poll_once(&mut load), Poll::Pending));
        assert!(!cache.is_empty());
        drop(load);
        assert!(cache.is_empty(), "an abandoned cold load left its key");
        assert_eq!(rig.calls(), 1);
    });
}
