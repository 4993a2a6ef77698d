//! T16–T19: generations, who drives a refresh, per-key isolation, the global
//! load cap, the memory bound.

use crate::rig::*;
use fairgate::singleflight::{ManualClock, Policy, Source, StaleCache, StaleReason};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

#[test]
fn t16_generation_safety() {
    bounded(|| {
        // insert during a load
        let (rig, _clock, cache) = setup();
        let mut f = get(&cache, 1);
        assert!(poll_once(&mut f).is_pending());
        cache.insert(1, 100);
        rig.release(Reply::Ok(1));
        let h = futures::executor::block_on(f).unwrap();
        assert_eq!(*h.value, 1, "waiters of the old load get its result");
        assert_eq!(*cache.peek(&1).unwrap().value, 100, "never goes backwards");
        assert_eq!(cache.stats().loads_discarded, 1);

        // invalidate during a load
        let (rig, _clock, cache) = setup();
        let mut f = get(&cache, 1);
        assert!(poll_once(&mut f).is_pending());
        cache.invalidate(&1);
        rig.release(Reply::Ok(1));
        futures::executor::block_on(f).unwrap();
        assert!(cache.peek(&1).is_none());

        // mark_stale during a refresh: detached; next get refreshes at once
        let (rig, clock, cache) = setup();
        populate(&rig, &cache, 1, 1);
        clock.advance(Duration::from_secs(10));
        let mut f = get(&cache, 1);
        assert!(poll_once(&mut f).is_pending());
        cache.mark_stale(&1);
        rig.set_auto(Some(Reply::Ok(3)));
        let h = now(cache.get(&1)).unwrap();
        assert_eq!((*h.value, h.source), (3, Source::Loaded));
        rig.release(Reply::Ok(2));
        futures::executor::block_on(f).unwrap();
        assert_eq!(*cache.peek(&1).unwrap().value, 3);
    });
}

#[test]
fn t17_no_spawner_trigger_drives_and_drop_clears_flag() {
    bounded(|| {
        let (rig, clock, cache) = setup();
        populate(&rig, &cache, 1, 1);
        clock.advance(Duration::from_secs(10));
        let mut trigger = get(&cache, 1);
        assert!(poll_once(&mut trigger).is_pending());
        assert_eq!(
            now(cache.get(&1)).unwrap().source,
            Source::Stale(StaleReason::Revalidating)
        );
        drop(trigger);
        assert_eq!(cache.stats().in_flight, 0);
        assert_eq!(cache.stats().loads_abandoned, 1);
        // The attempt was recorded when it started: throttled until +5 s.
        assert_eq!(
            now(cache.get(&1)).unwrap().source,
            Source::Stale(StaleReason::Throttled)
        );
        clock.advance(Duration::from_secs(5));
        rig.set_auto(Some(Reply::Ok(2)));
        assert_eq!(now(cache.get(&1)).unwrap().source, Source::Loaded);
        assert_eq!(rig.calls(), 3);
    });
}

#[test]
fn t17_spawner_refreshes_in_background() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let rig = Rig::new();
        let clock = ManualClock::new();
        let cache = StaleCache::builder(Gated(rig.clone()))
            .policy(policy())
            .clock(clock.clone())
            .spawner(|f| {
                tokio::spawn(f);
            })
            .build();
        rig.set_auto(Some(Reply::Ok(1)));
        tokio::time::timeout(Duration::from_secs(5), cache.get(&1))
            .await
            .unwrap()
            .unwrap();
        rig.set_auto(None);
        clock.advance(Duration::from_secs(10));
        // Even the trigger gets the stale value at once.
        let h = now(cache.get(&1)).unwrap();
        assert_eq!(h.source, Source::Stale(StaleReason::Revalidating));
        tokio::time::timeout(Duration::from_secs(5), async {
            while !rig.release(Reply::Ok(2)) {
                tokio::task::yield_now().await;
            }
            while cache.peek(&1).map(|h| *h.value) != Some(2) {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("background refresh never landed");
        assert_eq!(rig.calls(), 2);
    });
}

#[test]
fn t18_per_key_isolation_and_global_load_cap() {
    bounded(|| {
        let (rig, _clock, cache) = setup();
        let mut hung = get(&cache, 1);
        assert!(poll_once(&mut hung).is_pending());
        rig.set_auto(Some(Reply::Ok(2)));
        assert_eq!(*now(cache.get(&2)).unwrap().value, 2);
        drop(hung);
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (rig, _clock, cache) = rig_with(Policy {
            max_concurrent_loads: Some(4),
            ..policy()
        });
        rig.set_auto(Some(Reply::YieldOk(1, 20)));
        let cache = Arc::new(cache);
        let tasks: Vec<_> = (0..100u32)
            .map(|k| {
                let c = cache.clone();
                tokio::spawn(async move { c.get(&k).await.map(|h| *h.value) })
            })
            .collect();
        tokio::time::timeout(Duration::from_secs(10), async {
            for t in tasks {
                assert_eq!(t.await.unwrap().unwrap(), 1);
            }
        })
        .await
        .expect("hung");
        assert_eq!(rig.calls(), 100);
        assert!(rig.max_active.load(Ordering::SeqCst) <= 4);
    });
}

#[test]
fn t19_memory_bound() {
    bounded(|| {
        let (rig, _clock, cache) = rig_with(Policy {
            max_entries: 100,
            ..policy()
        });
        for k in 0..1000 {
            cache.insert(k, k as u64);
            assert!(cache.len() <= 100);
        }
        assert_eq!(cache.len(), 100);
        assert!(cache.stats().evictions >= 900);
        // Churn: cancelled loads, failed loads (negative entries), successes.
        for k in 1000..2000u32 {
            match k % 3 {
                0 => {
                    let mut f = get(&cache, k);
                    let _ = poll_once(&mut f);
                }
                1 => {
                    rig.set_auto(Some(Reply::Err("x")));
                    let _ = now(cache.get(&k));
                }
                _ => {
                    rig.set_auto(Some(Reply::Ok(1)));
                    let _ = now(cache.get(&k));
                }
            }
            rig.set_auto(None);
            assert!(cache.len() <= 100, "len {}", cache.len());
        }
        assert_eq!(cache.stats().in_flight, 0);
        assert_eq!(rig.active.load(Ordering::SeqCst), 0);
    });
}
