//! `Group` (coalescing only), a flight wake-up regression, and a
//! multi-thread stress of mixed operations.

use crate::rig::*;
use fairgate::singleflight::{Group, GroupError, Policy};
use futures::channel::oneshot;
use futures::future::join_all;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

#[test]
fn group_coalesces_and_shares_errors() {
    bounded(|| {
        let g: Group<u32, u64, Boom> = Group::new();
        let calls = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = oneshot::channel::<Result<u64, Boom>>();
        let rx = Arc::new(Mutex::new(Some(rx)));
        let mut futs: Vec<_> = (0..100)
            .map(|_| {
                let calls = calls.clone();
                let rx = rx.clone();
                Box::pin(g.work(1, move || {
                    calls.fetch_add(1, Ordering::SeqCst);
                    let rx = rx.lock().unwrap().take().unwrap();
                    async move { rx.await.unwrap() }
                }))
            })
            .collect();
        for f in &mut futs {
            assert!(poll_once(f).is_pending());
        }
        assert_eq!(g.in_flight(), 1);
        tx.send(Err(Boom("x"))).unwrap();
        let rs = futures::executor::block_on(join_all(futs));
        let first = match &rs[0] {
            Err(GroupError::Failed(e)) => e.clone(),
            r => panic!("{r:?}"),
        };
        assert!(rs
            .iter()
            .all(|r| matches!(r, Err(GroupError::Failed(e)) if Arc::ptr_eq(e, &first))));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(g.in_flight(), 0);
        // Not cached: the next call runs again.
        let r = futures::executor::block_on(g.work(1, || async { Ok(3) }));
        assert_eq!(r.unwrap(), 3);
    });
}

#[test]
fn group_leader_drop_park_panic_cancel() {
    bounded(|| {
        let g: Group<u32, u64, Boom> = Group::new();
        let (tx, rx) = oneshot::channel::<u64>();
        let mut leader = Box::pin(g.work(1, move || async move { Ok(rx.await.unwrap()) }));
        assert!(poll_once(&mut leader).is_pending());
        let mut f1 = Box::pin(g.work(1, || async { Ok(99) }));
        let mut f2 = Box::pin(g.work(1, || async { Ok(98) }));
        assert!(poll_once(&mut f1).is_pending());
        assert!(poll_once(&mut f2).is_pending());
        drop(leader);
        tx.send(5).unwrap();
        assert_eq!(futures::executor::block_on(f1).unwrap(), 5);
        // f2 is parked now; the result is there when polled.
        assert_eq!(now(f2).unwrap(), 5);

        // Panic -> error for every waiter, key usable afterwards.
        let (ptx, prx) = oneshot::channel::<()>();
        let mut a = Box::pin(g.work(2, move || async move {
            let _ = prx.await;
            panic!("boom")
        }));
        assert!(poll_once(&mut a).is_pending());
        let mut b = Box::pin(g.work(2, || async { Ok(1) }));
        assert!(poll_once(&mut b).is_pending(), "b joined a's call");
        ptx.send(()).unwrap();
        let ra = futures::executor::block_on(&mut a);
        let rb = futures::executor::block_on(&mut b);
        assert!(matches!(ra, Err(GroupError::Panicked(_))), "{ra:?}");
        assert!(matches!(rb, Err(GroupError::Panicked(_))), "{rb:?}");
        assert_eq!(
            futures::executor::block_on(g.work(2, || async { Ok(4) })).unwrap(),
            4
        );

        // Cancel: all waiters dropped -> removed; the next call starts fresh.
        let mut c = Box::pin(g.work(3, futures::future::pending::<Result<u64, Boom>>));
        assert!(poll_once(&mut c).is_pending());
        drop(c);
        assert_eq!(g.in_flight(), 0);
        assert_eq!(
            futures::executor::block_on(g.work(3, || async { Ok(6) })).unwrap(),
            6
        );
    });
}

/// Regression (found by the stress test): a waiter that registers while
/// another waiter is polling the shared future, when the shared future wakes
/// itself during that poll and the poller is then dropped, must still be woken.
#[test]
fn regression_wakeup_not_lost_when_poller_is_dropped() {
    struct Flag(AtomicBool);
    impl std::task::Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    type GroupFut = Pin<Box<dyn Future<Output = Result<u64, GroupError<Boom>>> + Send>>;
    bounded(|| {
        let g: Group<u32, u64, Boom> = Group::new();
        let g2 = g.clone();
        let slot: Arc<Mutex<Option<GroupFut>>> = Arc::new(Mutex::new(Some(Box::pin(async move {
            g2.work(1, || async { Ok(0) }).await
        }))));
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let (slot2, flag2) = (slot.clone(), flag.clone());
        let mut a = Box::pin(g.work(1, move || {
            let mut first = true;
            futures::future::poll_fn(move |cx| {
                if !first {
                    return Poll::Ready(Ok(7));
                }
                first = false;
                cx.waker().wake_by_ref(); // the shared future wakes itself mid-poll
                let mut b = slot2.lock().unwrap().take().unwrap();
                let w = std::task::Waker::from(flag2.clone());
                // B joins while A is polling the shared future.
                assert!(b.as_mut().poll(&mut Context::from_waker(&w)).is_pending());
                *slot2.lock().unwrap() = Some(b);
                Poll::Pending
            })
        }));
        assert!(poll_once(&mut a).is_pending());
        drop(a);
        assert!(
            flag.0.load(Ordering::SeqCst),
            "B must be woken to drive the flight"
        );
        let b = slot.lock().unwrap().take().unwrap();
        assert_eq!(futures::executor::block_on(b).unwrap(), 7);
    });
}

// ---------------------------------------------------------------- stress

#[test]
fn stress_multithread_mixed_operations() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (rig, clock, cache) = rig_with(Policy {
            ttl: Duration::from_millis(3),
            max_stale: Duration::from_millis(50),
            min_refresh_interval: Duration::from_millis(1),
            max_entries: 16,
            negative_ttl: Some(Duration::from_millis(2)),
            ..policy()
        });
        rig.set_auto(Some(Reply::YieldOk(1, 2)));
        let cache = Arc::new(cache);
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let stop = stop.clone();
            let clock = clock.clone();
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    clock.advance(Duration::from_millis(1));
                    tokio::task::yield_now().await;
                }
            })
        };
        let workers: Vec<_> = (0..16u32)
            .map(|w| {
                let c = cache.clone();
                tokio::spawn(async move {
                    for i in 0..500u32 {
                        let k = (i * 7 + w) % 24;
                        match i % 11 {
                            0 => c.invalidate(&k),
                            1 => c.insert(k, 9),
                            2 => c.mark_stale(&k),
                            3 => {
                                // cancel mid-flight
                                let mut f = Box::pin(c.get(&k));
                                let _ = poll_once(&mut f);
                            }
                            _ => {
                                let _ = c.get(&k).await;
                            }
                        }
                    }
                })
            })
            .collect();
        tokio::time::timeout(Duration::from_secs(30), async {
            for w in workers {
                w.await.unwrap();
            }
        })
        .await
        .expect("stress hung");
        stop.store(true, Ordering::SeqCst);
        ticker.await.unwrap();
        assert_eq!(cache.stats().in_flight, 0);
        assert!(cache.len() <= 16);
        assert_eq!(rig.active.load(Ordering::SeqCst), 0);
    });
}
