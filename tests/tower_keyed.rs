//! `fairgate::tower::KeyedLimitLayer` over a `LimiterManager`, with real tower services on
//! tokio: per-key limits, configuration changes with work in flight (swap, resize,
//! 0 → n → 0 → n), a key flood under `max_keys`, and busy keys never evicted.
#![cfg(not(loom))]

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use fairgate::limit::{KeyState, LimiterConfig, LimiterManager, RejectReason, Rejected, Update};
use fairgate::tower::{BoxError, KeyedLimit, KeyedLimitLayer};
use futures::{poll, FutureExt};
use tokio::sync::{mpsc, oneshot};
use tower::util::BoxCloneService;
use tower::{service_fn, Layer, Service, ServiceExt};

async fn bounded<F: Future>(fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .expect("test timed out (a permit leaked or a waiter was stranded?)")
}

async fn until(mut cond: impl FnMut() -> bool) {
    bounded(async {
        while !cond() {
            tokio::task::yield_now().await;
        }
    })
    .await
}

fn reason(err: &BoxError) -> RejectReason {
    err.downcast_ref::<Rejected>()
        .unwrap_or_else(|| panic!("expected a Rejected, got {err}"))
        .reason()
}

struct Req {
    key: u32,
    id: u32,
    release: Option<oneshot::Receiver<()>>,
}

fn req(key: u32, id: u32) -> Req {
    Req {
        key,
        id,
        release: None,
    }
}

fn held(key: u32, id: u32) -> (Req, oneshot::Sender<()>) {
    let (tx, rx) = oneshot::channel();
    (
        Req {
            key,
            id,
            release: Some(rx),
        },
        tx,
    )
}

fn config(capacity: usize) -> LimiterConfig {
    LimiterConfig::builder("key")
        .capacity(capacity)
        .config()
        .unwrap()
}

type Svc = KeyedLimit<BoxCloneService<Req, u32, Infallible>, u32, fn(&Req) -> u32>;

/// A keyed service whose jobs report their id when they start and wait for their release
/// signal (if any); `running` counts jobs inside the service.
fn keyed(
    manager: &LimiterManager<u32>,
    started: mpsc::UnboundedSender<u32>,
    running: Arc<AtomicUsize>,
) -> Svc {
    let inner = service_fn(move |r: Req| {
        let started = started.clone();
        let running = running.clone();
        async move {
            running.fetch_add(1, SeqCst);
            let _ = started.send(r.id);
            if let Some(release) = r.release {
                let _ = release.await;
            }
            running.fetch_sub(1, SeqCst);
            Ok(r.id)
        }
    });
    let key_of: fn(&Req) -> u32 = |r| r.key;
    KeyedLimitLayer::new(manager.clone(), key_of).layer(BoxCloneService::new(inner))
}

fn harness(manager: &LimiterManager<u32>) -> (Svc, mpsc::UnboundedReceiver<u32>, Arc<AtomicUsize>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let running = Arc::new(AtomicUsize::new(0));
    (keyed(manager, tx, running.clone()), rx, running)
}

/// Active and draining (capacity, in_flight, waiting) of one key, active first.
fn states(manager: &LimiterManager<u32>, key: u32) -> Vec<(KeyState, usize, usize, usize)> {
    let mut out: Vec<_> = manager
        .snapshot()
        .into_iter()
        .filter(|s| s.key == key)
        .map(|s| {
            (
                s.state,
                s.limiter.capacity,
                s.limiter.in_flight,
                s.limiter.waiting,
            )
        })
        .collect();
    out.sort_by_key(|s| (s.0 == KeyState::Draining, s.1, s.2, s.3));
    out
}

#[tokio::test]
async fn keys_are_limited_independently() {
    let manager = LimiterManager::new("tenants", |_: &u32| config(1));
    let (svc, mut started, _) = harness(&manager);
    let (a, release_a) = held(1, 10);
    let head = tokio::spawn(svc.clone().oneshot(a));
    assert_eq!(bounded(started.recv()).await, Some(10));
    // Key 1 is full; key 2 is not affected.
    let queued = tokio::spawn(svc.clone().oneshot(req(1, 11)));
    until(|| manager.get(&1).unwrap().waiting() == 1).await;
    assert_eq!(bounded(svc.clone().oneshot(req(2, 20))).await.unwrap(), 20);
    release_a.send(()).unwrap();
    bounded(head).await.unwrap().unwrap();
    assert_eq!(bounded(queued).await.unwrap().unwrap(), 11);
    assert_eq!(manager.len(), 2);
}

#[tokio::test]
async fn a_config_change_mid_flight_orphans_nothing() {
    let manager = LimiterManager::new("channels", |_: &u32| config(2));
    let (svc, mut started, running) = harness(&manager);
    let old = manager.limiter(&7).unwrap();
    let (mut releases, mut tasks) = (Vec::new(), Vec::new());
    for id in 0..3 {
        let (r, release) = held(7, id);
        releases.push(release);
        tasks.push(tokio::spawn(svc.clone().oneshot(r)));
    }
    until(|| old.in_flight() == 2 && old.waiting() == 1).await;

    // A queue setting changes: a new limiter takes over, the old one drains.
    let queued = LimiterConfig::builder("key")
        .capacity(2)
        .max_queue(Some(4))
        .config()
        .unwrap();
    assert_eq!(manager.update(7, queued).unwrap(), Update::Replaced);
    assert_eq!(
        states(&manager, 7),
        [(KeyState::Active, 2, 0, 0), (KeyState::Draining, 2, 2, 1)]
    );
    // New work goes to the new limiter, beside the old limiter's work.
    let (r, release_new) = held(7, 100);
    let new_task = tokio::spawn(svc.clone().oneshot(r));
    until(|| manager.get(&7).unwrap().in_flight() == 1).await;
    assert_eq!(running.load(SeqCst), 3);

    // The old limiter's permits return to it; its queued request runs on it.
    for release in releases {
        let _ = release.send(());
    }
    for t in tasks {
        bounded(t).await.unwrap().unwrap();
    }
    assert_eq!((old.in_flight(), old.waiting()), (0, 0));
    release_new.send(()).unwrap();
    bounded(new_task).await.unwrap().unwrap();
    let mut seen = Vec::new();
    while let Ok(id) = started.try_recv() {
        seen.push(id);
    }
    seen.sort();
    assert_eq!(seen, [0, 1, 2, 100]);
    // Idle now: the old limiter is no longer reported.
    assert_eq!(states(&manager, 7), [(KeyState::Active, 2, 0, 0)]);
}

#[tokio::test]
async fn a_resize_keeps_in_flight_work() {
    let manager = LimiterManager::new("channels", |_: &u32| config(3));
    let (svc, mut started, running) = harness(&manager);
    let mut releases = Vec::new();
    let mut tasks = Vec::new();
    for id in 0..3 {
        let (r, release) = held(1, id);
        releases.push(release);
        tasks.push(tokio::spawn(svc.clone().oneshot(r)));
    }
    for _ in 0..3 {
        bounded(started.recv()).await.unwrap();
    }
    let limiter = manager.get(&1).unwrap();
    assert_eq!(
        manager.update(1, config(1)).unwrap(),
        Update::Resized { from: 3, to: 1 }
    );
    assert!(manager.get(&1).unwrap().same_limiter(&limiter));
    assert_eq!((running.load(SeqCst), limiter.in_flight()), (3, 3));

    // A new request waits until in-flight work falls under the new capacity.
    let late = tokio::spawn(svc.clone().oneshot(req(1, 50)));
    until(|| limiter.waiting() == 1).await;
    let mut releases = releases.into_iter();
    for _ in 0..2 {
        releases.next().unwrap().send(()).unwrap();
        bounded(tasks.remove(0)).await.unwrap().unwrap();
    }
    assert_eq!((limiter.in_flight(), limiter.waiting()), (1, 1));
    assert!(
        started.try_recv().is_err(),
        "admitted above the new capacity"
    );
    releases.next().unwrap().send(()).unwrap();
    bounded(tasks.remove(0)).await.unwrap().unwrap();
    assert_eq!(bounded(late).await.unwrap().unwrap(), 50);
    assert_eq!((limiter.in_flight(), limiter.waiting()), (0, 0));
    assert_eq!(states(&manager, 1), [(KeyState::Active, 1, 0, 0)]);
}

#[tokio::test]
async fn zero_n_zero_n_with_work_in_flight() {
    let manager = LimiterManager::new("channels", |_: &u32| config(0));
    let (svc, mut started, running) = harness(&manager);
    let mut releases = Vec::new();
    let mut tasks = Vec::new();
    let mut spawn = |id: u32, releases: &mut Vec<oneshot::Sender<()>>| {
        let (r, release) = held(9, id);
        releases.push(release);
        tasks.push(tokio::spawn(svc.clone().oneshot(r)));
    };

    // 0: a passthrough; four requests run at once.
    for id in 0..4 {
        spawn(id, &mut releases);
    }
    for _ in 0..4 {
        bounded(started.recv()).await.unwrap();
    }
    let passthrough = manager.get(&9).unwrap();
    assert_eq!(passthrough.in_flight(), 4);

    // → 2: a new limiter limits new work; the passthrough work drains on the old one.
    assert_eq!(manager.update(9, config(2)).unwrap(), Update::Replaced);
    let two = manager.get(&9).unwrap();
    for id in 10..13 {
        spawn(id, &mut releases);
    }
    until(|| two.in_flight() == 2 && two.waiting() == 1).await;
    assert_eq!(running.load(SeqCst), 6);
    assert_eq!(
        states(&manager, 9),
        [(KeyState::Active, 2, 2, 1), (KeyState::Draining, 0, 4, 0)]
    );

    // → 0: passthrough again; the old limiter's queued request is admitted at once.
    assert_eq!(manager.update(9, config(0)).unwrap(), Update::Replaced);
    until(|| two.in_flight() == 3 && two.waiting() == 0).await;
    for id in 20..23 {
        spawn(id, &mut releases);
    }
    until(|| running.load(SeqCst) == 10).await;

    // → 2 again, with everything above still in flight.
    assert_eq!(manager.update(9, config(2)).unwrap(), Update::Replaced);
    let two_again = manager.get(&9).unwrap();
    for id in 30..33 {
        spawn(id, &mut releases);
    }
    until(|| two_again.in_flight() == 2 && two_again.waiting() == 1).await;
    assert_eq!(running.load(SeqCst), 12);
    assert_eq!(
        states(&manager, 9),
        [
            (KeyState::Active, 2, 2, 1),
            (KeyState::Draining, 0, 3, 0),
            (KeyState::Draining, 0, 3, 0),
            (KeyState::Draining, 0, 4, 0),
        ]
    );

    for release in releases {
        let _ = release.send(());
    }
    for t in tasks {
        bounded(t).await.unwrap().unwrap();
    }
    assert_eq!(running.load(SeqCst), 0);
    // Every drained limiter is gone from the reports; one active limiter remains.
    assert_eq!(states(&manager, 9), [(KeyState::Active, 2, 0, 0)]);
    for l in [&passthrough, &two, &two_again] {
        assert_eq!((l.in_flight(), l.waiting()), (0, 0));
    }
}

#[tokio::test]
async fn a_key_flood_stays_within_max_keys() {
    let manager = LimiterManager::builder("peers", |_: &u32| config(2))
        .max_keys(16)
        .build()
        .unwrap();
    let (svc, _started, _) = harness(&manager);
    for key in 0..1000 {
        assert_eq!(
            bounded(svc.clone().oneshot(req(key, key))).await.unwrap(),
            key
        );
        assert!(manager.len() <= 16);
    }
    assert_eq!(manager.len(), 16);
    // The survivors are the most recent keys.
    let mut keys: Vec<_> = manager.snapshot().into_iter().map(|s| s.key).collect();
    keys.sort();
    assert_eq!(keys, (984..1000).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_key_flood_stays_within_max_keys_and_leaks_nothing() {
    let manager = LimiterManager::builder("peers", |_: &u32| config(1))
        .max_keys(8)
        .build()
        .unwrap();
    let (svc, _started, running) = harness(&manager);
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let mut tasks = Vec::new();
    for id in 0..400 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let key = (rng % 64) as u32;
        let svc = svc.clone();
        tasks.push(tokio::spawn(async move {
            let r = svc.oneshot(req(key, id)).await;
            tokio::task::yield_now().await;
            r
        }));
    }
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        match bounded(t).await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => {
                assert_eq!(reason(&e), RejectReason::TooManyKeys);
                refused += 1;
            }
        }
        assert!(manager.len() <= 8);
    }
    assert_eq!(ok + refused, 400);
    assert!(ok > 0);
    assert_eq!(running.load(SeqCst), 0);
    for s in manager.snapshot() {
        assert_eq!(
            (s.state, s.limiter.in_flight, s.limiter.waiting),
            (KeyState::Active, 0, 0)
        );
    }
}

#[tokio::test]
async fn busy_keys_are_never_evicted() {
    let manager = LimiterManager::builder("tenants", |_: &u32| config(1))
        .max_keys(4)
        .build()
        .unwrap();
    let (svc, mut started, _) = harness(&manager);
    let mut releases = Vec::new();
    let mut tasks = Vec::new();
    for key in 0..4 {
        let (r, release) = held(key, key);
        releases.push(release);
        tasks.push(tokio::spawn(svc.clone().oneshot(r)));
        bounded(started.recv()).await.unwrap();
    }
    let before: Vec<_> = (0..4).map(|k| manager.get(&k).unwrap()).collect();

    // Every key is busy: a fifth is refused at once, with a typed reason.
    let err = bounded(svc.clone().oneshot(req(4, 4))).await.unwrap_err();
    assert_eq!(reason(&err), RejectReason::TooManyKeys);
    assert_eq!(err.downcast_ref::<Rejected>().unwrap().limiter(), "tenants");
    for (k, l) in before.iter().enumerate() {
        assert!(manager.get(&(k as u32)).unwrap().same_limiter(l));
    }

    // Key 2 goes idle: the fifth key takes its place, and only its place.
    releases.remove(2).send(()).unwrap();
    bounded(tasks.remove(2)).await.unwrap().unwrap();
    assert_eq!(bounded(svc.clone().oneshot(req(4, 4))).await.unwrap(), 4);
    assert!(manager.get(&2).is_none());
    for k in [0, 1, 3] {
        assert!(manager.get(&k).unwrap().same_limiter(&before[k as usize]));
    }
    drop(releases);
    for t in tasks {
        bounded(t).await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn a_called_request_keeps_its_key() {
    let manager = LimiterManager::builder("tenants", |_: &u32| config(1))
        .max_keys(1)
        .build()
        .unwrap();
    let (mut svc, _started, _) = harness(&manager);
    // Key 1's request is called (admitted in `call`) but its future is not polled yet.
    svc.ready().await.unwrap();
    let mut first = Box::pin(svc.call(req(1, 1)));
    let limiter = manager.get(&1).unwrap();
    assert_eq!((limiter.in_flight(), limiter.waiting()), (1, 0));
    svc.ready().await.unwrap();
    let err = svc.call(req(2, 2)).now_or_never().unwrap().unwrap_err();
    assert_eq!(reason(&err), RejectReason::TooManyKeys);
    assert!(manager.get(&1).unwrap().same_limiter(&limiter));
    assert!(matches!(
        poll!(first.as_mut()),
        std::task::Poll::Ready(Ok(1))
    ));
    drop(first);
    // Done: the key is idle and may now be evicted.
    assert_eq!(bounded(svc.clone().oneshot(req(2, 2))).await.unwrap(), 2);
    assert!(manager.get(&1).is_none());
}
