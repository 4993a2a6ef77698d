//! Tests for `fairgate::singleflight`: the research checklist T1–T24 plus
//! `Group` tests and multi-thread stress.
//!
//! Rig: a manual clock and a gated loader whose every call waits on a oneshot
//! the test controls. "Immediately" is asserted as "ready on the first poll"
//! (`now_or_never`), never with wall-clock timing. Most tests run on
//! `futures::executor`; every test is bounded in time (`bounded` or
//! `tokio::time::timeout`).
#![cfg(not(loom))]

use fairgate::singleflight::{
    Backoff, CacheError, Group, GroupError, Loader, ManualClock, Policy, Source, StaleCache,
    StaleReason,
};
use futures::channel::oneshot;
use futures::future::{join_all, BoxFuture};
use futures::task::noop_waker;
use futures::FutureExt;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- rig

#[derive(Debug, PartialEq, Eq)]
struct Boom(&'static str);

#[derive(Clone, Copy, Debug)]
enum Reply {
    Ok(u64),
    Err(&'static str),
    Panic,
    /// Return `Ok(v)` after yielding this many times (for multi-thread tests).
    YieldOk(u64, u32),
}

#[derive(Default)]
struct Rig {
    calls: AtomicUsize,
    active: AtomicUsize,
    max_active: AtomicUsize,
    pending: Mutex<VecDeque<oneshot::Sender<Reply>>>,
    auto: Mutex<Option<Reply>>,
    panic_in_call: AtomicBool,
    call_times: Mutex<Vec<Instant>>,
    clock: Mutex<Option<ManualClock>>,
}

impl Rig {
    fn new() -> Arc<Self> {
        Arc::new(Rig::default())
    }
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
    fn set_auto(&self, r: Option<Reply>) {
        *self.auto.lock().unwrap() = r;
    }
    fn pending(&self) -> usize {
        self.pending.lock().unwrap().len()
    }
    /// Answers the oldest gated call. Returns false if none was waiting (or it was dropped).
    fn release(&self, r: Reply) -> bool {
        let tx = self.pending.lock().unwrap().pop_front();
        tx.map(|tx| tx.send(r).is_ok()).unwrap_or(false)
    }
    fn release_all(&self, r: Reply) {
        while self.pending() > 0 {
            self.release(r);
        }
    }
}

struct ActiveGuard(Arc<Rig>);
impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

struct YieldN(u32);
impl Future for YieldN {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 == 0 {
            Poll::Ready(())
        } else {
            self.0 -= 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

#[derive(Clone)]
struct Gated(Arc<Rig>);

impl Loader<u32, u64> for Gated {
    type Error = Boom;
    type Future = BoxFuture<'static, Result<u64, Boom>>;
    fn load(&self, _key: &u32, _previous: Option<Arc<u64>>) -> Self::Future {
        let rig = Arc::clone(&self.0);
        rig.calls.fetch_add(1, Ordering::SeqCst);
        let a = rig.active.fetch_add(1, Ordering::SeqCst) + 1;
        rig.max_active.fetch_max(a, Ordering::SeqCst);
        if let Some(c) = rig.clock.lock().unwrap().as_ref() {
            use fairgate::singleflight::Clock;
            rig.call_times.lock().unwrap().push(c.now());
        }
        let guard = ActiveGuard(Arc::clone(&rig));
        if rig.panic_in_call.load(Ordering::SeqCst) {
            drop(guard);
            panic!("loader panicked synchronously");
        }
        let auto = *rig.auto.lock().unwrap();
        let rx = match auto {
            Some(r) => {
                let (tx, rx) = oneshot::channel();
                tx.send(r).unwrap();
                rx
            }
            None => {
                let (tx, rx) = oneshot::channel();
                rig.pending.lock().unwrap().push_back(tx);
                rx
            }
        };
        Box::pin(async move {
            let _guard = guard;
            match rx.await {
                Ok(Reply::Ok(v)) => Ok(v),
                Ok(Reply::Err(m)) => Err(Boom(m)),
                Ok(Reply::Panic) => panic!("loader panicked in poll"),
                Ok(Reply::YieldOk(v, n)) => {
                    YieldN(n).await;
                    Ok(v)
                }
                Err(_) => futures::future::pending().await,
            }
        })
    }
}

type Cache = StaleCache<u32, u64, Gated>;

fn policy() -> Policy {
    Policy {
        ttl: Duration::from_secs(10),
        ttl_jitter: Duration::ZERO,
        stale_while_revalidate: Duration::MAX,
        max_stale: Duration::from_secs(100),
        min_refresh_interval: Duration::from_secs(5),
        failure_backoff: Backoff {
            initial: Duration::from_secs(1),
            multiplier: 2.0,
            max: Duration::from_secs(20),
        },
        negative_ttl: Some(Duration::from_secs(5)),
        max_entries: 1000,
        max_concurrent_loads: None,
    }
}

fn rig_with(p: Policy) -> (Arc<Rig>, ManualClock, Cache) {
    let rig = Rig::new();
    let clock = ManualClock::new();
    *rig.clock.lock().unwrap() = Some(clock.clone());
    let cache = StaleCache::builder(Gated(Arc::clone(&rig)))
        .policy(p)
        .clock(clock.clone())
        .build();
    (rig, clock, cache)
}

fn setup() -> (Arc<Rig>, ManualClock, Cache) {
    rig_with(policy())
}

type GetFut<'a> = Pin<
    Box<
        dyn Future<Output = Result<fairgate::singleflight::Hit<u64>, CacheError<Boom>>> + Send + 'a,
    >,
>;

fn get(cache: &Cache, k: u32) -> GetFut<'_> {
    let k = Box::new(k);
    Box::pin(async move { cache.get(&k).await })
}

/// Polls once with a no-op waker.
fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    let w = noop_waker();
    let mut cx = Context::from_waker(&w);
    Pin::new(f).poll(&mut cx)
}

/// Ready on the first poll, or the test fails.
fn now<T>(f: impl Future<Output = T>) -> T {
    f.now_or_never()
        .expect("expected the call to be ready on its first poll")
}

/// Runs `body` on its own thread and fails the test if it takes over 20 s.
fn bounded(body: impl FnOnce() + Send + 'static) {
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        body();
        let _ = tx.send(());
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(()) => h.join().unwrap(),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(p) = h.join() {
                std::panic::resume_unwind(p)
            }
        }
        Err(_) => panic!("test timed out (hang)"),
    }
}

/// Populates key `k` with `v` at the current clock time.
fn populate(rig: &Rig, cache: &Cache, k: u32, v: u64) {
    rig.set_auto(Some(Reply::Ok(v)));
    let hit = now(cache.get(&k)).unwrap();
    assert!(matches!(hit.source, Source::Loaded | Source::Fresh));
    rig.set_auto(None);
}

fn src(r: &Result<fairgate::singleflight::Hit<u64>, CacheError<Boom>>) -> Source {
    r.as_ref().expect("expected a value").source
}

// ---------------------------------------------------------------- T1–T4

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

// ---------------------------------------------------------------- T9–T15

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

// ---------------------------------------------------------------- T16–T19

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

// ---------------------------------------------------------------- T20–T22

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

// ---------------------------------------------------------------- Group

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
