//! T1–T8: coalescing, shared errors, cold-key throttling, leaders that are
//! dropped or parked, cancellation, loader panics.

use crate::rig::*;
use fairgate::singleflight::{CacheError, Source, StaleCache};
use futures::future::join_all;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

#[test]
fn t01_coalescing_one_call_same_arc() {
    bounded(|| {
        let (rig, _clock, cache) = setup();
        let mut futs: Vec<_> = (0..1000).map(|_| get(&cache, 1)).collect();
        for f in &mut futs {
            assert!(poll_once(f).is_pending());
        }
        assert_eq!(rig.calls(), 1);
        assert!(rig.release(Reply::Ok(42)));
        let results = futures::executor::block_on(join_all(futs));
        let first = results[0].as_ref().unwrap().value.clone();
        let mut loaded = 0;
        let mut joined = 0;
        for r in &results {
            let h = r.as_ref().unwrap();
            assert!(Arc::ptr_eq(&h.value, &first));
            match h.source {
                Source::Loaded => loaded += 1,
                Source::Joined => joined += 1,
                s => panic!("unexpected {s:?}"),
            }
        }
        assert_eq!((loaded, joined), (1, 999));
        let h = now(cache.get(&1)).unwrap();
        assert_eq!(h.source, Source::Fresh);
        assert_eq!(rig.calls(), 1);
        assert_eq!(cache.stats().in_flight, 0);
    });
}

#[test]
fn t02_errors_shared_not_replayed() {
    bounded(|| {
        let (rig, _clock, cache) = setup();
        let mut futs: Vec<_> = (0..1000).map(|_| get(&cache, 1)).collect();
        for f in &mut futs {
            assert!(poll_once(f).is_pending());
        }
        assert!(rig.release(Reply::Err("down")));
        let results = futures::executor::block_on(join_all(futs));
        assert_eq!(rig.calls(), 1);
        let first = match &results[0] {
            Err(CacheError::Load(e)) => e.clone(),
            r => panic!("unexpected {r:?}"),
        };
        assert_eq!(*first, Boom("down"));
        for r in &results {
            match r {
                Err(CacheError::Load(e)) => assert!(Arc::ptr_eq(e, &first)),
                r => panic!("unexpected {r:?}"),
            }
        }
    });
}

#[test]
fn t03_throttled_cold_key_fails_fast() {
    bounded(|| {
        let (rig, clock, cache) = setup();
        let mut f = get(&cache, 1);
        assert!(poll_once(&mut f).is_pending());
        rig.release(Reply::Err("down"));
        let err = match futures::executor::block_on(f) {
            Err(CacheError::Load(e)) => e,
            r => panic!("unexpected {r:?}"),
        };
        match now(cache.get(&1)) {
            Err(CacheError::Throttled {
                retry_in,
                last_error: Some(e),
            }) => {
                assert!(Arc::ptr_eq(&e, &err));
                assert_eq!(retry_in, Duration::from_secs(5));
            }
            r => panic!("unexpected {r:?}"),
        }
        assert_eq!(rig.calls(), 1);
        clock.advance(Duration::from_secs(4));
        assert!(matches!(
            now(cache.get(&1)),
            Err(CacheError::Throttled { .. })
        ));
        clock.advance(Duration::from_secs(1));
        rig.set_auto(Some(Reply::Ok(3)));
        let h = now(cache.get(&1)).unwrap();
        assert_eq!((*h.value, h.source), (3, Source::Loaded));
        assert_eq!(rig.calls(), 2);
    });
}

#[test]
fn t04_cold_key_with_flight_joins() {
    bounded(|| {
        let (rig, clock, cache) = setup();
        let mut a = get(&cache, 1);
        assert!(poll_once(&mut a).is_pending());
        clock.advance(Duration::from_secs(1)); // inside the attempt window
        let mut b = get(&cache, 1);
        assert!(poll_once(&mut b).is_pending());
        assert_eq!(rig.calls(), 1);
        rig.release(Reply::Ok(9));
        let (a, b) = futures::executor::block_on(futures::future::join(a, b));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert!(Arc::ptr_eq(&a.value, &b.value));
        assert_eq!((a.source, b.source), (Source::Loaded, Source::Joined));
    });
}

// ---------------------------------------------------------------- T5–T8

#[test]
fn t05_leader_dropped_follower_continues() {
    bounded(|| {
        let (rig, _clock, cache) = setup();
        let mut leader = get(&cache, 1);
        assert!(poll_once(&mut leader).is_pending());
        let mut followers: Vec<_> = (0..5).map(|_| get(&cache, 1)).collect();
        for f in &mut followers {
            assert!(poll_once(f).is_pending());
        }
        drop(leader);
        rig.release(Reply::Ok(5));
        for r in futures::executor::block_on(join_all(followers)) {
            let h = r.unwrap();
            assert_eq!((*h.value, h.source), (5, Source::Joined));
        }
        assert_eq!(rig.calls(), 1, "shared driving: no extra backend call");
        assert_eq!(cache.stats().in_flight, 0);
    });
}

#[test]
fn t05_leader_abort_race_200x_multithread() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(60), async {
            for i in 0..200u32 {
                let (rig, _clock, cache) = setup();
                let cache = Arc::new(cache);
                let c = cache.clone();
                let leader = tokio::spawn(async move { c.get(&1).await.map(|h| *h.value) });
                while rig.calls() == 0 {
                    tokio::task::yield_now().await;
                }
                let followers: Vec<_> = (0..5)
                    .map(|_| {
                        let c = cache.clone();
                        tokio::spawn(async move { c.get(&1).await.map(|h| *h.value) })
                    })
                    .collect();
                for _ in 0..(i % 7) {
                    tokio::task::yield_now().await;
                }
                leader.abort();
                rig.set_auto(Some(Reply::Ok(2)));
                rig.release_all(Reply::Ok(2));
                for f in followers {
                    let r = tokio::time::timeout(Duration::from_secs(2), f)
                        .await
                        .expect("follower hung")
                        .unwrap();
                    assert_eq!(r.unwrap(), 2);
                }
                assert!(rig.calls() <= 2, "calls = {}", rig.calls());
                assert_eq!(cache.stats().in_flight, 0);
            }
        })
        .await
        .expect("timed out");
    });
}

#[test]
fn t06_parked_leader_never_blocks_followers() {
    bounded(|| {
        let (rig, _clock, cache) = setup();
        let mut leader = get(&cache, 1);
        assert!(poll_once(&mut leader).is_pending()); // polled once, then parked
        let mut follower = get(&cache, 1);
        assert!(poll_once(&mut follower).is_pending());
        rig.release(Reply::Ok(6));
        let h = futures::executor::block_on(follower).unwrap();
        assert_eq!((*h.value, h.source), (6, Source::Joined));
        // The parked leader still gets the result if it is ever polled again.
        let h = now(leader).unwrap();
        assert_eq!(h.source, Source::Loaded);
        assert_eq!(rig.calls(), 1);
    });
}

#[test]
fn t07_last_waiter_dropped_cancels_flight() {
    bounded(|| {
        let (rig, _clock, cache) = setup();
        let mut futs: Vec<_> = (0..3).map(|_| get(&cache, 1)).collect();
        for f in &mut futs {
            assert!(poll_once(f).is_pending());
        }
        drop(futs);
        let s = cache.stats();
        assert_eq!((s.in_flight, s.loads_abandoned), (0, 1));
        assert_eq!(cache.len(), 0);
        assert_eq!(
            rig.active.load(Ordering::SeqCst),
            0,
            "backend future dropped"
        );
        assert!(
            !rig.release(Reply::Ok(1)),
            "cancelled load must not be answered"
        );
        // A new caller starts a new load; it does not inherit the cancelled one.
        let mut f = get(&cache, 1);
        assert!(poll_once(&mut f).is_pending());
        assert_eq!(rig.calls(), 2);
        rig.release(Reply::Ok(8));
        let h = futures::executor::block_on(f).unwrap();
        assert_eq!((*h.value, h.source), (8, Source::Loaded));
    });
}

#[test]
fn t07_detached_with_spawner_populates_cache() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let rig = Rig::new();
        let cache = StaleCache::builder(Gated(rig.clone()))
            .policy(policy())
            .spawner(|f| {
                tokio::spawn(f);
            })
            .build();
        let mut f = get(&cache, 1);
        assert!(poll_once(&mut f).is_pending());
        drop(f);
        assert!(rig.release(Reply::Ok(11)), "detached load still running");
        tokio::time::timeout(Duration::from_secs(5), async {
            while cache.peek(&1).is_none() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("detached load never stored");
        assert_eq!(*cache.peek(&1).unwrap().value, 11);
        assert_eq!(rig.calls(), 1);
        assert_eq!(cache.stats().loads_abandoned, 0);
    });
}

#[test]
fn t08_loader_panics_become_errors_key_not_poisoned() {
    bounded(|| {
        for in_call in [false, true] {
            let (rig, clock, cache) = setup();
            rig.panic_in_call.store(in_call, Ordering::SeqCst);
            let mut futs: Vec<_> = (0..4).map(|_| get(&cache, 1)).collect();
            let mut results = Vec::new();
            futs.retain_mut(|f| match poll_once(f) {
                Poll::Ready(r) => {
                    results.push(r);
                    false
                }
                Poll::Pending => true,
            });
            if in_call {
                // The load is created and polled by the first caller's first
                // poll, so it panics before anyone can join; later callers
                // hit the negative cache (a panic counts as a failure).
                assert_eq!(results.len(), 4);
                assert!(matches!(results[0], Err(CacheError::LoaderPanicked(_))));
                for r in &results[1..] {
                    assert!(
                        matches!(
                            r,
                            Err(CacheError::Throttled {
                                last_error: None,
                                ..
                            })
                        ),
                        "{r:?}"
                    );
                }
            } else {
                assert!(results.is_empty());
                rig.release(Reply::Panic);
                results.extend(futures::executor::block_on(join_all(futs)));
                assert_eq!(results.len(), 4);
                for r in results {
                    assert!(matches!(r, Err(CacheError::LoaderPanicked(_))), "{r:?}");
                }
            }
            assert_eq!(rig.calls(), 1);
            assert_eq!(cache.stats().loads_panicked, 1);
            assert_eq!(cache.stats().in_flight, 0);
            // Counted as a failure: negative cache, then a normal load works.
            assert!(matches!(
                now(cache.get(&1)),
                Err(CacheError::Throttled {
                    last_error: None,
                    ..
                })
            ));
            rig.panic_in_call.store(false, Ordering::SeqCst);
            clock.advance(Duration::from_secs(5));
            rig.set_auto(Some(Reply::Ok(1)));
            assert_eq!(*now(cache.get(&1)).unwrap().value, 1);
        }
    });
}
