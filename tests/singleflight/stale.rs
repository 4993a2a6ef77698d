//! T9–T15: serving stale data: refresh in flight, throttled, TTL boundaries
//! and jitter, stale-if-error bounded by `max_stale`, recovery, the
//! foreground refresh band.

use crate::rig::*;
use fairgate::singleflight::{Backoff, ManualClock, Policy, Source, StaleCache, StaleReason};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn t09_t10_stale_with_refresh_in_flight_is_immediate() {
    bounded(|| {
        let (rig, clock, cache) = setup();
        populate(&rig, &cache, 1, 1);
        clock.advance(Duration::from_secs(10));
        let mut trigger = get(&cache, 1);
        assert!(
            poll_once(&mut trigger).is_pending(),
            "no spawner: the trigger drives"
        );
        assert_eq!(rig.calls(), 2);
        for _ in 0..10_000 {
            let h = now(cache.get(&1)).unwrap();
            assert_eq!(h.source, Source::Stale(StaleReason::Revalidating));
        }
        // T10: the go-micro gap: past min_refresh_interval with the refresh
        // still running, callers still get stale at once and never join.
        clock.advance(Duration::from_secs(30));
        for _ in 0..100 {
            let h = now(cache.get(&1)).unwrap();
            assert_eq!(h.source, Source::Stale(StaleReason::Revalidating));
            assert_eq!(h.age, Duration::from_secs(40));
        }
        assert_eq!(rig.calls(), 2);
        rig.release(Reply::Ok(2));
        let h = futures::executor::block_on(trigger).unwrap();
        assert_eq!((*h.value, h.source), (2, Source::Loaded));
        assert_eq!(now(cache.get(&1)).unwrap().source, Source::Fresh);
    });
}

#[test]
fn t11_stale_throttled_age_preserved() {
    bounded(|| {
        let (rig, clock, cache) = setup();
        populate(&rig, &cache, 1, 1);
        clock.advance(Duration::from_secs(10));
        rig.set_auto(Some(Reply::Err("down")));
        let h = now(cache.get(&1)).unwrap();
        assert_eq!(h.source, Source::Stale(StaleReason::LoadFailed));
        assert_eq!(rig.calls(), 2);
        for i in 0..5u64 {
            let h = now(cache.get(&1)).unwrap();
            assert_eq!(h.source, Source::Stale(StaleReason::LoadFailed));
            assert_eq!(
                h.age,
                Duration::from_secs(10 + i),
                "serving stale never resets age"
            );
            clock.advance(Duration::from_secs(1));
        }
        assert_eq!(rig.calls(), 2);
        // Past the window (5 s after the attempt started): exactly one more call.
        let h = now(cache.get(&1)).unwrap();
        assert_eq!(h.source, Source::Stale(StaleReason::LoadFailed));
        assert_eq!(rig.calls(), 3);
        assert_eq!(now(cache.get(&1)).unwrap().age, Duration::from_secs(15));
        assert_eq!(rig.calls(), 3);
    });
}

#[test]
fn t12_ttl_boundaries() {
    bounded(|| {
        let (rig, clock, cache) = setup();
        populate(&rig, &cache, 1, 1);
        clock.advance(Duration::from_secs(10) - Duration::from_nanos(1));
        assert_eq!(now(cache.get(&1)).unwrap().source, Source::Fresh);
        clock.advance(Duration::from_nanos(1)); // age == ttl: stale (>= rule)
        rig.set_auto(Some(Reply::Ok(2)));
        let h = now(cache.get(&1)).unwrap();
        assert_eq!((*h.value, h.source), (2, Source::Loaded));
        assert_eq!(h.age, Duration::ZERO, "stored_at reset by a real load");
        let h = now(cache.get(&1)).unwrap();
        assert_eq!(h.source, Source::Fresh);
        assert_eq!(rig.calls(), 2);
    });
}

/// T12, jitter half: `ttl_jitter` spreads expiry within `[ttl - jitter, ttl]`,
/// for inserted and for loaded values, and is reproducible for a fixed seed.
/// Fails if the jitter is ignored (then every key is still fresh at 75 s).
#[test]
fn t12_ttl_jitter_spreads_expiry_deterministically() {
    bounded(|| {
        const N: u32 = 200;
        let build = |seed: u64, clock: &ManualClock| {
            StaleCache::builder(|k: &u32, _p: Option<Arc<u32>>| {
                let k = *k;
                async move { Ok::<_, ()>(k) }
            })
            .policy(Policy {
                ttl: Duration::from_secs(100),
                ttl_jitter: Duration::from_secs(50),
                max_stale: Duration::from_secs(3600),
                min_refresh_interval: Duration::ZERO,
                ..policy()
            })
            .clock(clock.clone())
            .jitter_seed(seed)
            .build()
        };
        // Half the keys inserted, half loaded through `get`, all at t = 0.
        let populated = |seed: u64| {
            let clock = ManualClock::new();
            let cache = build(seed, &clock);
            for k in 0..N {
                if k % 2 == 0 {
                    cache.insert(k, k);
                } else {
                    let h = now(cache.get(&k)).unwrap();
                    assert_eq!(h.source, Source::Loaded);
                }
            }
            (clock, cache)
        };
        // The keys still fresh `at` seconds later.
        let fresh_at = |seed: u64, at: u64| -> Vec<u32> {
            let (clock, cache) = populated(seed);
            clock.advance(Duration::from_secs(at));
            (0..N)
                .filter(|k| {
                    let h = cache.peek(k).expect("within max_stale");
                    h.source == Source::Fresh
                })
                .collect()
        };
        // Never jittered beyond the bounds.
        assert_eq!(
            fresh_at(7, 50).len(),
            N as usize,
            "all fresh before ttl - jitter"
        );
        assert!(fresh_at(7, 100).is_empty(), "none fresh at ttl");
        // Spread inside the window, for both insert and load.
        let mid = fresh_at(7, 75);
        let (even, odd) = (
            mid.iter().filter(|k| *k % 2 == 0).count(),
            mid.iter().filter(|k| *k % 2 == 1).count(),
        );
        assert!(
            (20..80).contains(&even),
            "inserted keys spread: {even}/100 fresh"
        );
        assert!(
            (20..80).contains(&odd),
            "loaded keys spread: {odd}/100 fresh"
        );
        // Deterministic for a seed, different for another.
        assert_eq!(fresh_at(7, 75), mid);
        assert_ne!(fresh_at(8, 75), mid);
        // `get` agrees with `peek`, and a refresh draws a new expiry that is
        // still within bounds.
        let (clock, cache) = populated(7);
        clock.advance(Duration::from_secs(75));
        for k in 0..N {
            let h = now(cache.get(&k)).unwrap();
            let fresh = mid.contains(&k);
            assert_eq!(h.source == Source::Fresh, fresh, "key {k}");
            if !fresh {
                // Past its jittered expiry: this caller refreshed it.
                assert_eq!(h.source, Source::Loaded);
                assert_eq!(h.age, Duration::ZERO);
            }
        }
        clock.advance(Duration::from_secs(50) - Duration::from_nanos(1));
        let refreshed: Vec<u32> = (0..N).filter(|k| !mid.contains(k)).collect();
        for k in &refreshed {
            assert_eq!(cache.peek(k).unwrap().source, Source::Fresh, "key {k}");
        }
    });
}

#[test]
fn t13_stale_if_error_bounded_by_max_stale() {
    bounded(|| {
        let p = Policy {
            max_stale: Duration::from_secs(60),
            failure_backoff: Backoff {
                initial: Duration::from_secs(4),
                multiplier: 2.0,
                max: Duration::from_secs(16),
            },
            ..policy()
        };
        let (rig, clock, cache) = rig_with(p);
        populate(&rig, &cache, 1, 1);
        let t0 = rig.call_times.lock().unwrap()[0];
        rig.set_auto(Some(Reply::Err("down")));
        clock.advance(Duration::from_secs(10));
        let mut served_stale_until = Duration::ZERO;
        for _ in 10..80 {
            match now(cache.get(&1)) {
                Ok(h) => {
                    assert!(h.is_stale());
                    assert!(h.age < Duration::from_secs(60));
                    served_stale_until = h.age;
                }
                Err(_) => assert!(clock.elapsed() >= Duration::from_secs(60)),
            }
            clock.advance(Duration::from_secs(1));
        }
        assert_eq!(served_stale_until, Duration::from_secs(59));
        let times: Vec<Duration> = rig
            .call_times
            .lock()
            .unwrap()
            .iter()
            .map(|t| *t - t0)
            .collect();
        // Attempts while stale: backoff 4, 8, 16, 16 s after each failure (>= 5 s interval).
        let gaps: Vec<u64> = times
            .windows(2)
            .skip(1)
            .map(|w| (w[1] - w[0]).as_secs())
            .collect();
        assert!(gaps.iter().all(|g| *g >= 5), "gaps {gaps:?}");
        assert_eq!(&gaps[..3], &[5, 8, 16], "times {times:?}");
    });
}

#[test]
fn t14_recovery_resets_failures() {
    bounded(|| {
        let (rig, clock, cache) = setup();
        populate(&rig, &cache, 1, 1);
        clock.advance(Duration::from_secs(10));
        rig.set_auto(Some(Reply::Err("down")));
        for _ in 0..3 {
            assert!(now(cache.get(&1)).unwrap().is_stale());
            clock.advance(Duration::from_secs(20));
        }
        assert_eq!(rig.calls(), 4);
        rig.set_auto(Some(Reply::Ok(2)));
        let h = now(cache.get(&1)).unwrap();
        assert_eq!((*h.value, h.source), (2, Source::Loaded));
        assert_eq!(now(cache.get(&1)).unwrap().source, Source::Fresh);
        // Normal interval again: at ttl the next refresh is allowed at once.
        clock.advance(Duration::from_secs(10));
        rig.set_auto(Some(Reply::Ok(3)));
        assert_eq!(now(cache.get(&1)).unwrap().source, Source::Loaded);
        assert_eq!(rig.calls(), 6);
    });
}

#[test]
fn t15_foreground_refresh_band() {
    bounded(|| {
        let p = Policy {
            stale_while_revalidate: Duration::from_secs(5),
            ..policy()
        };
        let (rig, clock, cache) = rig_with(p);
        populate(&rig, &cache, 1, 1);
        clock.advance(Duration::from_secs(20)); // beyond ttl + swr
        let mut initiator = get(&cache, 1);
        assert!(poll_once(&mut initiator).is_pending(), "initiator waits");
        for _ in 0..10 {
            let h = now(cache.get(&1)).unwrap();
            assert_eq!(h.source, Source::Stale(StaleReason::Revalidating));
        }
        rig.release(Reply::Err("down"));
        let h = futures::executor::block_on(initiator).unwrap();
        assert_eq!(
            (*h.value, h.source),
            (1, Source::Stale(StaleReason::LoadFailed))
        );
        assert_eq!(rig.calls(), 2);
    });
}
