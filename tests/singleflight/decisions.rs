//! The decision table, pinned row by row: the retry window's two stale
//! reasons, the error a stale-if-error hit carries, the exact `retry_in` of
//! a throttled error, the spacing of backend calls (§6: `min_refresh_interval`
//! while stale data is servable, negative caching once nothing is), and every
//! hit counter of `stats()`, summed across shards.

use crate::rig::*;
use fairgate::singleflight::{
    CacheError, ManualClock, Policy, Source, SpawnedFuture, StaleCache, StaleReason, Stats,
};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

/// Inside the retry window after a failed refresh, stale hits say
/// `LoadFailed` and carry the failure; inside the window after a successful
/// attempt they say `Throttled` and carry nothing. Fails if the choice
/// `failures > 0` is turned into `>= 0`, `== 0` or `< 0`.
#[test]
fn retry_window_tells_load_failed_from_throttled() {
    bounded(|| {
        let (rig, clock, cache) = setup();
        populate(&rig, &cache, 1, 1); // attempt at t0: next allowed at t5
        clock.advance(Duration::from_secs(10));
        let mut trigger = get(&cache, 1);
        assert!(poll_once(&mut trigger).is_pending());
        assert!(rig.release(Reply::Err("down")));
        // The refreshing caller's own stale-if-error hit carries the error.
        let hit = now(trigger).unwrap();
        assert_eq!(hit.source, Source::Stale(StaleReason::LoadFailed));
        assert_eq!(hit.error().map(|e| e.0), Some("down"));
        // Later callers inside the window (t10..t15): the same, at once.
        clock.advance(Duration::from_secs(4));
        let hit = now(cache.get(&1)).unwrap();
        assert_eq!(hit.source, Source::Stale(StaleReason::LoadFailed));
        assert_eq!(hit.error().map(|e| e.0), Some("down"));
        let peeked = cache.peek(&1).unwrap();
        assert_eq!(peeked.source, Source::Stale(StaleReason::LoadFailed));
        assert_eq!(peeked.error().map(|e| e.0), Some("down"));
        assert_eq!(rig.calls(), 2);

        // No failure: a stale value inside the window is `Throttled`.
        let (rig, clock, cache) = rig_with(Policy {
            ttl: Duration::from_secs(2),
            ..policy()
        });
        populate(&rig, &cache, 1, 1); // attempt at t0: next allowed at t5
        clock.advance(Duration::from_secs(3));
        let hit = now(cache.get(&1)).unwrap();
        assert_eq!(hit.source, Source::Stale(StaleReason::Throttled));
        assert!(hit.error().is_none());
        assert!(hit.is_stale());
        let peeked = cache.peek(&1).unwrap();
        assert_eq!(peeked.source, Source::Stale(StaleReason::Throttled));
        assert!(peeked.error().is_none());
        assert_eq!(rig.calls(), 1);
    });
}

/// A stale hit served because the refresh *panicked* carries no error (the
/// message went to `LoaderPanicked`), and a fresh or loaded hit never does.
#[test]
fn only_failed_refreshes_put_an_error_on_a_hit() {
    bounded(|| {
        let (rig, clock, cache) = setup();
        rig.set_auto(Some(Reply::Ok(1)));
        let hit = now(cache.get(&1)).unwrap();
        assert_eq!(hit.source, Source::Loaded);
        assert!(hit.error().is_none() && !hit.is_stale());
        let hit = now(cache.get(&1)).unwrap();
        assert_eq!(hit.source, Source::Fresh);
        assert!(hit.error().is_none() && !hit.is_stale());
        rig.set_auto(Some(Reply::Panic));
        clock.advance(Duration::from_secs(10));
        let hit = now(cache.get(&1)).unwrap();
        assert_eq!(hit.source, Source::Stale(StaleReason::LoadFailed));
        assert!(hit.error().is_none());
        assert_eq!(cache.stats().loads_panicked, 1);
    });
}

/// `retry_in` of a throttled error is exactly the time left until the
/// negative cache lets the next load start. Fails on `-` → `+` (or `/`).
#[test]
fn throttled_error_retry_in_is_exact() {
    bounded(|| {
        let (rig, clock, cache) = setup();
        rig.set_auto(Some(Reply::Err("x")));
        assert!(matches!(now(cache.get(&9)), Err(CacheError::Load(_))));
        rig.set_auto(None);
        // Failed at t0: negative until t0 + max(negative_ttl 5 s, backoff 1 s).
        clock.advance(Duration::from_secs(2));
        match now(cache.get(&9)) {
            Err(CacheError::Throttled {
                retry_in,
                last_error,
            }) => {
                assert_eq!(retry_in, Duration::from_secs(3));
                assert_eq!(last_error.map(|e| e.0), Some("x"));
            }
            other => panic!("expected Throttled, got {other:?}"),
        }
        clock.advance(Duration::from_millis(2_999));
        match now(cache.get(&9)) {
            Err(CacheError::Throttled { retry_in, .. }) => {
                assert_eq!(retry_in, Duration::from_millis(1))
            }
            other => panic!("expected Throttled, got {other:?}"),
        }
        clock.advance(Duration::from_millis(1));
        let mut retry = get(&cache, 9);
        assert!(poll_once(&mut retry).is_pending());
        assert_eq!(rig.calls(), 2);
        assert!(rig.release(Reply::Ok(1)));
        assert_eq!(now(retry).unwrap().source, Source::Loaded);
    });
}

/// §6: what `min_refresh_interval` promises, and what it does not. While a
/// value is servable, attempts start at least the interval apart (callers in
/// between get the stale value). Once the value is older than `max_stale`,
/// nothing is servable: without negative caching the next caller loads at
/// once, inside the interval; with it, callers get `Throttled` until the
/// negative entry ends.
#[test]
fn refresh_spacing_holds_while_stale_and_yields_to_max_stale() {
    bounded(|| {
        let p = Policy {
            ttl: Duration::from_secs(10),
            max_stale: Duration::from_secs(20),
            min_refresh_interval: Duration::from_secs(5),
            negative_ttl: None,
            ..policy()
        };
        let (rig, clock, cache) = rig_with(p.clone());
        populate(&rig, &cache, 1, 1);
        clock.advance(Duration::from_secs(16));
        let mut trigger = get(&cache, 1);
        assert!(poll_once(&mut trigger).is_pending());
        assert!(rig.release(Reply::Err("down"))); // attempt at t16 fails
        assert!(now(trigger).unwrap().is_stale());
        // Servable (age < 20): no attempt before t21.
        for _ in 0..3 {
            clock.advance(Duration::from_secs(1));
            assert_eq!(
                now(cache.get(&1)).unwrap().source,
                Source::Stale(StaleReason::LoadFailed)
            );
        }
        assert_eq!(rig.calls(), 2);
        // t20: the value is too old to serve; nothing holds a caller back.
        clock.advance(Duration::from_secs(1));
        assert!(cache.peek(&1).is_none());
        let mut cold = get(&cache, 1);
        assert!(poll_once(&mut cold).is_pending());
        assert_eq!(rig.calls(), 3, "a caller with nothing servable waits");
        assert!(rig.release(Reply::Ok(2)));
        assert_eq!(now(cold).unwrap().source, Source::Loaded);

        // With negative caching the failure holds cold callers back instead.
        let (rig, clock, cache) = rig_with(Policy {
            negative_ttl: Some(Duration::from_secs(5)),
            ..p
        });
        populate(&rig, &cache, 1, 1);
        clock.advance(Duration::from_secs(16));
        let mut trigger = get(&cache, 1);
        assert!(poll_once(&mut trigger).is_pending());
        assert!(rig.release(Reply::Err("down")));
        assert!(now(trigger).unwrap().is_stale());
        clock.advance(Duration::from_secs(4)); // t20: too old, negative until t21
        match now(cache.get(&1)) {
            Err(CacheError::Throttled { retry_in, .. }) => {
                assert_eq!(retry_in, Duration::from_secs(1))
            }
            other => panic!("expected Throttled, got {other:?}"),
        }
        assert_eq!(rig.calls(), 2);
    });
}

/// Every hit counter of `stats()` is exact, with keys spread over the
/// default 16 shards and each counter at a different value, so that a
/// counter summed wrongly, dropped or swapped shows. `stale_load_failed`
/// adds the hit path (5) and the refreshing caller's own fallback (1).
#[test]
fn every_hit_counter_is_exact_across_shards() {
    bounded(|| {
        let (rig, clock, cache) = rig_with(Policy {
            ttl: Duration::from_secs(2),
            ..policy()
        });
        for k in 1..=4 {
            populate(&rig, &cache, k, u64::from(k)); // loaded: 4
        }
        for k in 1..=4 {
            assert_eq!(now(cache.get(&k)).unwrap().source, Source::Fresh);
        }
        clock.advance(Duration::from_secs(3)); // stale, inside the interval
        for k in 1..=3 {
            let hit = now(cache.get(&k)).unwrap();
            assert_eq!(hit.source, Source::Stale(StaleReason::Throttled));
        }
        clock.advance(Duration::from_secs(3)); // t6: refresh allowed
        let mut trigger = get(&cache, 4);
        assert!(poll_once(&mut trigger).is_pending());
        for _ in 0..2 {
            let hit = now(cache.get(&4)).unwrap();
            assert_eq!(hit.source, Source::Stale(StaleReason::Revalidating));
        }
        assert!(rig.release(Reply::Err("down")));
        let hit = now(trigger).unwrap();
        assert_eq!(hit.source, Source::Stale(StaleReason::LoadFailed));
        for _ in 0..5 {
            let hit = now(cache.get(&4)).unwrap();
            assert_eq!(hit.source, Source::Stale(StaleReason::LoadFailed));
        }
        rig.set_auto(Some(Reply::Err("cold")));
        assert!(now(cache.get(&100)).is_err());
        rig.set_auto(None);
        for _ in 0..7 {
            assert!(matches!(
                now(cache.get(&100)),
                Err(CacheError::Throttled { .. })
            ));
        }
        let mut leader = get(&cache, 200);
        let mut joiner = get(&cache, 200);
        assert!(poll_once(&mut leader).is_pending());
        assert!(poll_once(&mut joiner).is_pending());
        assert!(rig.release(Reply::Ok(2)));
        assert_eq!(now(leader).unwrap().source, Source::Loaded);
        assert_eq!(now(joiner).unwrap().source, Source::Joined);
        assert_eq!(
            cache.stats(),
            Stats {
                fresh: 4,
                stale_revalidating: 2,
                stale_throttled: 3,
                stale_load_failed: 6,
                loaded: 5,
                joined: 1,
                throttled_errors: 7,
                loads_started: 7,
                loads_succeeded: 5,
                loads_failed: 2,
                loads_panicked: 0,
                loads_abandoned: 0,
                loads_discarded: 0,
                evictions: 0,
                in_flight: 0,
            }
        );
    });
}

/// Jitter with a zero `ttl`: nothing is ever fresh, and drawing the jitter
/// from an empty span does not fail. Fails if the draw's `span + 1` becomes
/// `span - 1` (underflow).
#[test]
fn jitter_with_zero_ttl_is_always_stale() {
    bounded(|| {
        let (rig, _clock, cache) = rig_with(Policy {
            ttl: Duration::ZERO,
            ttl_jitter: Duration::from_secs(1),
            ..policy()
        });
        cache.insert(1, 1);
        let hit = cache.peek(&1).unwrap();
        assert_eq!(hit.source, Source::Stale(StaleReason::Throttled));
        rig.set_auto(Some(Reply::Ok(2)));
        let hit = now(cache.get(&2)).unwrap();
        assert_eq!(hit.source, Source::Loaded);
        assert!(cache.peek(&2).unwrap().is_stale());
    });
}

/// With a spawner, `stale_while_revalidate` ends exactly at
/// `ttl + stale_while_revalidate`: just before it the trigger gets the stale
/// value at once, at it the trigger waits for the refresh. Fails on `<` →
/// `<=` in the band test.
#[test]
fn swr_band_ends_exactly_at_ttl_plus_swr() {
    bounded(|| {
        for (age_ms, waits) in [(14_999, false), (15_000, true)] {
            let rig = Rig::new();
            let clock = ManualClock::new();
            let spawned: Arc<Mutex<Vec<SpawnedFuture>>> = Arc::default();
            let s = Arc::clone(&spawned);
            let cache = StaleCache::builder(Gated(Arc::clone(&rig)))
                .policy(Policy {
                    stale_while_revalidate: Duration::from_secs(5),
                    ..policy()
                })
                .clock(clock.clone())
                .spawner(move |f| s.lock().unwrap().push(f))
                .build();
            cache.insert(1, 1);
            clock.advance(Duration::from_millis(age_ms));
            let mut trigger = get(&cache, 1);
            match poll_once(&mut trigger) {
                Poll::Ready(r) if !waits => {
                    assert_eq!(src(&r), Source::Stale(StaleReason::Revalidating))
                }
                Poll::Pending if waits => {}
                other => panic!("age {age_ms} ms: waits={waits}, got {:?}", other.is_ready()),
            }
            assert_eq!(
                spawned.lock().unwrap().len(),
                1,
                "the refresh was not spawned"
            );
            // Spawned futures are never run here: only a waiting trigger
            // drives the load itself.
            assert_eq!(rig.calls(), usize::from(waits));
            let counted = cache.stats().stale_revalidating;
            assert_eq!(counted, u64::from(!waits), "the trigger's stale hit counts");
        }
    });
}

/// A refresh that fails just as the stale value reaches `max_stale` does
/// not serve it: `max_stale` bounds stale-if-error too, boundary included.
/// Fails on `<` → `<=` in the fallback's age test.
#[test]
fn stale_if_error_stops_exactly_at_max_stale() {
    bounded(|| {
        let (rig, clock, cache) = setup(); // max_stale 100 s
        populate(&rig, &cache, 1, 1);
        clock.advance(Duration::from_secs(95));
        let mut trigger = get(&cache, 1);
        assert!(poll_once(&mut trigger).is_pending());
        clock.advance(Duration::from_secs(5)); // age 100 when it fails
        assert!(rig.release(Reply::Err("down")));
        match now(trigger) {
            Err(CacheError::Load(e)) => assert_eq!(e.0, "down"),
            other => panic!("expected the load error, got {other:?}"),
        }
    });
}

/// A `min_refresh_interval` too long to represent as a deadline: after a
/// failure the key is not retried for (practically) ever, not at once.
/// Fails if the saturated deadline (`far_future`) is 0 ("no deadline") or
/// spans less than two years.
#[test]
fn unrepresentable_interval_after_failure_means_never() {
    bounded(|| {
        let (rig, clock, cache) = rig_with(Policy {
            max_stale: Duration::MAX,
            min_refresh_interval: Duration::MAX,
            negative_ttl: None,
            ..policy()
        });
        populate(&rig, &cache, 1, 1);
        clock.advance(Duration::from_secs(11));
        let mut trigger = get(&cache, 1);
        assert!(poll_once(&mut trigger).is_pending());
        assert!(rig.release(Reply::Err("down")));
        assert!(now(trigger).unwrap().is_stale());
        clock.advance(Duration::from_secs(2 * 366 * 24 * 3600));
        let hit = now(cache.get(&1)).unwrap();
        assert_eq!(hit.source, Source::Stale(StaleReason::LoadFailed));
        assert_eq!(
            rig.calls(),
            2,
            "retried inside an interval of Duration::MAX"
        );
    });
}
