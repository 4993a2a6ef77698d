//! T20–T24: late joiners, cancel-safety fuzz, `Send` futures without a
//! runtime, provenance and counters, go-micro parity.

use crate::rig::*;
use fairgate::singleflight::{CacheError, Group, Policy, Source, StaleReason};
use futures::future::join_all;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

#[test]
fn t20_late_joiner_never_hangs() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (rig, _clock, cache) = rig_with(Policy {
            ttl: Duration::ZERO,
            max_stale: Duration::ZERO,
            min_refresh_interval: Duration::ZERO,
            negative_ttl: None,
            ..policy()
        });
        rig.set_auto(Some(Reply::YieldOk(7, 1)));
        let cache = Arc::new(cache);
        tokio::time::timeout(Duration::from_secs(60), async {
            for _ in 0..2500 {
                let tasks: Vec<_> = (0..4)
                    .map(|_| {
                        let c = cache.clone();
                        tokio::spawn(async move { c.get(&1).await.map(|h| *h.value) })
                    })
                    .collect();
                for t in tasks {
                    assert_eq!(t.await.unwrap().unwrap(), 7);
                }
            }
        })
        .await
        .expect("a late joiner hung");
        assert!(rig.max_active.load(Ordering::SeqCst) <= 1);
        assert_eq!(cache.stats().in_flight, 0);
    });
}

#[test]
fn t21_cancel_safety_fuzz() {
    bounded(|| {
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut rnd = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _round in 0..300 {
            let (rig, clock, cache) = rig_with(Policy {
                negative_ttl: None,
                ..policy()
            });
            let mut futs: Vec<GetFut<'_>> = Vec::new();
            for _step in 0..40 {
                match rnd(6) {
                    0 | 1 => futs.push(get(&cache, 1)),
                    2 if !futs.is_empty() => {
                        let i = rnd(futs.len() as u64) as usize;
                        if poll_once(&mut futs[i]).is_ready() {
                            drop(futs.swap_remove(i));
                        }
                    }
                    3 if !futs.is_empty() => {
                        let i = rnd(futs.len() as u64) as usize;
                        drop(futs.swap_remove(i));
                    }
                    4 => {
                        let r = if rnd(2) == 0 {
                            Reply::Ok(1)
                        } else {
                            Reply::Err("x")
                        };
                        rig.release(r);
                    }
                    _ => clock.advance(Duration::from_secs(rnd(12))),
                }
                assert!(
                    rig.active.load(Ordering::SeqCst) <= 1,
                    "two backend calls at once"
                );
                assert!(cache.stats().in_flight <= 1);
            }
            drop(futs);
            assert_eq!(cache.stats().in_flight, 0, "in-flight table drains");
            assert_eq!(rig.active.load(Ordering::SeqCst), 0);
            clock.advance(Duration::from_secs(100));
            rig.set_auto(Some(Reply::Ok(2)));
            assert!(futures::executor::block_on(cache.get(&1)).is_ok());
        }
    });
}

#[test]
fn t22_futures_are_send_and_no_runtime_needed() {
    fn assert_send<T: Send>(_: &T) {}
    let (rig, _clock, cache) = setup();
    let f = cache.get(&1);
    assert_send(&f);
    drop(f);
    let g: Group<u32, u64, Boom> = Group::new();
    let w = g.work(1, || async { Ok(1) });
    assert_send(&w);
    drop(w);
    // A whole load on a bare executor from the futures crate.
    rig.set_auto(Some(Reply::Ok(1)));
    let h = futures::executor::block_on(cache.get(&1)).unwrap();
    assert_eq!(h.source, Source::Loaded);
    let mut pool = futures::executor::LocalPool::new();
    assert_eq!(pool.run_until(cache.get(&1)).unwrap().source, Source::Fresh);
}

// ---------------------------------------------------------------- T23–T24

#[test]
fn t23_provenance_and_counters() {
    bounded(|| {
        let (rig, clock, cache) = setup();
        rig.set_auto(Some(Reply::Ok(1)));
        assert_eq!(src(&now(cache.get(&1))), Source::Loaded);
        assert_eq!(src(&now(cache.get(&1))), Source::Fresh);
        clock.advance(Duration::from_secs(10));
        rig.set_auto(None);
        let mut trigger = get(&cache, 1);
        assert!(poll_once(&mut trigger).is_pending());
        assert_eq!(
            src(&now(cache.get(&1))),
            Source::Stale(StaleReason::Revalidating)
        );
        let mut joiner = get(&cache, 2);
        assert!(poll_once(&mut joiner).is_pending());
        let mut joiner2 = get(&cache, 2);
        assert!(poll_once(&mut joiner2).is_pending());
        rig.release(Reply::Err("down")); // key 1 refresh fails
        rig.release(Reply::Err("down")); // key 2 load fails
        assert_eq!(
            src(&futures::executor::block_on(trigger)),
            Source::Stale(StaleReason::LoadFailed)
        );
        assert!(matches!(
            futures::executor::block_on(joiner),
            Err(CacheError::Load(_))
        ));
        assert!(matches!(
            futures::executor::block_on(joiner2),
            Err(CacheError::Load(_))
        ));
        assert_eq!(
            src(&now(cache.get(&1))),
            Source::Stale(StaleReason::LoadFailed)
        );
        assert!(matches!(
            now(cache.get(&2)),
            Err(CacheError::Throttled { .. })
        ));
        // Throttled without a failure.
        rig.set_auto(Some(Reply::Ok(5)));
        now(cache.get(&3)).unwrap();
        clock.advance(Duration::from_secs(10));
        cache.insert(3, 6); // fresh again via push
        assert_eq!(src(&now(cache.get(&3))), Source::Fresh);
        let s = cache.stats();
        assert_eq!(s.loaded, 2);
        assert_eq!(s.fresh, 2);
        assert_eq!(s.stale_revalidating, 1);
        assert_eq!(s.stale_load_failed, 2);
        assert_eq!(s.joined, 0);
        assert_eq!(s.loads_failed, 2);
        assert_eq!(s.throttled_errors, 1);
        assert_eq!(s.loads_started, 4);
        assert_eq!(s.loads_succeeded, 2);
        assert_eq!(s.in_flight, 0);
        // Stale(Throttled): refresh attempted recently and succeeded... then expired
        let (rig, clock, cache) = setup();
        populate(&rig, &cache, 1, 1);
        cache.insert(1, 1);
        clock.advance(Duration::from_secs(3));
        cache.mark_stale(&1);
        rig.set_auto(Some(Reply::Ok(2)));
        assert_eq!(src(&now(cache.get(&1))), Source::Loaded);
        clock.advance(Duration::from_secs(1));
        cache.mark_stale(&1);
        rig.set_auto(None);
        let mut t = get(&cache, 1);
        assert!(poll_once(&mut t).is_pending());
        rig.release(Reply::Ok(3));
        assert_eq!(src(&futures::executor::block_on(t)), Source::Loaded);
        let s = cache.stats();
        assert_eq!((s.loaded, s.joined), (3, 0));
    });
}

/// Port of go-micro's registry cache test list with a manual clock.
#[test]
fn t24_go_micro_parity() {
    bounded(|| {
        // Stampede: 10 concurrent lookups -> 1 call.
        let (rig, _c, cache) = setup();
        let mut futs: Vec<_> = (0..10).map(|_| get(&cache, 1)).collect();
        futs.iter_mut()
            .for_each(|f| assert!(poll_once(f).is_pending()));
        rig.release(Reply::Ok(1));
        assert!(futures::executor::block_on(join_all(futs))
            .iter()
            .all(|r| r.is_ok()));
        assert_eq!(rig.calls(), 1);

        // Shared error: 10 lookups on a failing registry -> 1 call, all error.
        let (rig, _c, cache) = setup();
        let mut futs: Vec<_> = (0..10).map(|_| get(&cache, 1)).collect();
        futs.iter_mut()
            .for_each(|f| assert!(poll_once(f).is_pending()));
        rig.release(Reply::Err("etcd"));
        assert!(futures::executor::block_on(join_all(futs))
            .iter()
            .all(|r| matches!(r, Err(CacheError::Load(_)))));
        assert_eq!(rig.calls(), 1);

        // Stale on error.
        let (rig, clock, cache) = setup();
        populate(&rig, &cache, 1, 1);
        clock.advance(Duration::from_secs(11));
        rig.set_auto(Some(Reply::Err("etcd")));
        let h = now(cache.get(&1)).unwrap();
        assert_eq!(
            (*h.value, h.source),
            (1, Source::Stale(StaleReason::LoadFailed))
        );

        // Penetration: 50 lookups on expired data, failing registry, inside the
        // window -> 0 extra calls, all succeed with stale data.
        let before = rig.calls();
        for _ in 0..50 {
            assert!(now(cache.get(&1)).unwrap().is_stale());
        }
        assert_eq!(rig.calls(), before);

        // Throttling without stale: immediate retry -> error, no call; after
        // the interval exactly one more call.
        let (rig, clock, cache) = setup();
        rig.set_auto(Some(Reply::Err("etcd")));
        assert!(matches!(now(cache.get(&1)), Err(CacheError::Load(_))));
        assert!(matches!(
            now(cache.get(&1)),
            Err(CacheError::Throttled { .. })
        ));
        assert_eq!(rig.calls(), 1);
        clock.advance(Duration::from_secs(5));
        assert!(matches!(now(cache.get(&1)), Err(CacheError::Load(_))));
        assert_eq!(rig.calls(), 2);

        // Batched throttling: batches of 20 concurrent lookups.
        for batch in 0..3 {
            let mut futs: Vec<_> = (0..20).map(|_| get(&cache, 1)).collect();
            let results: Vec<_> = futs.iter_mut().map(poll_once).collect();
            assert!(results
                .iter()
                .all(|r| matches!(r, Poll::Ready(Err(CacheError::Throttled { .. })))));
            assert_eq!(rig.calls(), 2, "batch {batch}");
        }
    });
}
