//! The rig: a manual clock and a gated loader whose every call waits on a
//! oneshot the test controls, plus helpers to poll and bound tests.

use fairgate::singleflight::Backoff;
use fairgate::singleflight::{CacheError, Loader, ManualClock, Policy, Source, StaleCache};
use futures::channel::oneshot;
use futures::future::BoxFuture;
use futures::task::noop_waker;
use futures::FutureExt;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};
use std::time::{Duration, Instant};

#[derive(Debug, PartialEq, Eq)]
pub struct Boom(pub &'static str);

#[derive(Clone, Copy, Debug)]
pub enum Reply {
    Ok(u64),
    Err(&'static str),
    Panic,
    /// Return `Ok(v)` after yielding this many times (for multi-thread tests).
    YieldOk(u64, u32),
}

#[derive(Default)]
pub struct Rig {
    pub calls: AtomicUsize,
    pub active: AtomicUsize,
    pub max_active: AtomicUsize,
    pub pending: Mutex<VecDeque<oneshot::Sender<Reply>>>,
    pub auto: Mutex<Option<Reply>>,
    pub panic_in_call: AtomicBool,
    pub call_times: Mutex<Vec<Instant>>,
    pub clock: Mutex<Option<ManualClock>>,
    /// Polls of loader futures (all calls together).
    pub polls: AtomicUsize,
    /// The key of every backend call, in call order.
    pub keys: Mutex<Vec<u32>>,
}

impl Rig {
    pub fn new() -> Arc<Self> {
        Arc::new(Rig::default())
    }
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
    pub fn set_auto(&self, r: Option<Reply>) {
        *self.auto.lock().unwrap() = r;
    }
    pub fn pending(&self) -> usize {
        self.pending.lock().unwrap().len()
    }
    /// Answers the oldest gated call. Returns false if none was waiting (or it was dropped).
    pub fn release(&self, r: Reply) -> bool {
        let tx = self.pending.lock().unwrap().pop_front();
        tx.map(|tx| tx.send(r).is_ok()).unwrap_or(false)
    }
    pub fn release_all(&self, r: Reply) {
        while self.pending() > 0 {
            self.release(r);
        }
    }
}

pub struct ActiveGuard(pub Arc<Rig>);
impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

pub struct YieldN(pub u32);
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
pub struct Gated(pub Arc<Rig>);

impl Loader<u32, u64> for Gated {
    type Error = Boom;
    type Future = BoxFuture<'static, Result<u64, Boom>>;
    fn load(&self, key: &u32, _previous: Option<Arc<u64>>) -> Self::Future {
        let rig = Arc::clone(&self.0);
        rig.calls.fetch_add(1, Ordering::SeqCst);
        rig.keys.lock().unwrap().push(*key);
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
        let counted = Arc::clone(&rig);
        let fut = Box::pin(async move {
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
        });
        Box::pin(Counted {
            rig: counted,
            inner: fut,
        })
    }
}

/// A loader future that counts its polls in `rig.polls`.
struct Counted {
    rig: Arc<Rig>,
    inner: BoxFuture<'static, Result<u64, Boom>>,
}

impl Future for Counted {
    type Output = Result<u64, Boom>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.rig.polls.fetch_add(1, Ordering::SeqCst);
        self.inner.as_mut().poll(cx)
    }
}

pub type Cache = StaleCache<u32, u64, Gated>;

pub fn policy() -> Policy {
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

pub fn rig_with(p: Policy) -> (Arc<Rig>, ManualClock, Cache) {
    let rig = Rig::new();
    let clock = ManualClock::new();
    *rig.clock.lock().unwrap() = Some(clock.clone());
    let cache = StaleCache::builder(Gated(Arc::clone(&rig)))
        .policy(p)
        .clock(clock.clone())
        .build();
    (rig, clock, cache)
}

pub fn setup() -> (Arc<Rig>, ManualClock, Cache) {
    rig_with(policy())
}

pub type GetFut<'a> = Pin<
    Box<
        dyn Future<Output = Result<fairgate::singleflight::Hit<u64, Boom>, CacheError<Boom>>>
            + Send
            + 'a,
    >,
>;

pub fn get(cache: &Cache, k: u32) -> GetFut<'_> {
    let k = Box::new(k);
    Box::pin(async move { cache.get(&k).await })
}

/// Polls once with a no-op waker.
pub fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    let w = noop_waker();
    let mut cx = Context::from_waker(&w);
    Pin::new(f).poll(&mut cx)
}

/// Ready on the first poll, or the test fails.
pub fn now<T>(f: impl Future<Output = T>) -> T {
    f.now_or_never()
        .expect("expected the call to be ready on its first poll")
}

/// Runs `body` on its own thread and fails the test if it takes over 20 s.
pub fn bounded(body: impl FnOnce() + Send + 'static) {
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
pub fn populate(rig: &Rig, cache: &Cache, k: u32, v: u64) {
    rig.set_auto(Some(Reply::Ok(v)));
    let hit = now(cache.get(&k)).unwrap();
    assert!(matches!(hit.source, Source::Loaded | Source::Fresh));
    rig.set_auto(None);
}

pub fn src(r: &Result<fairgate::singleflight::Hit<u64, Boom>, CacheError<Boom>>) -> Source {
    r.as_ref().expect("expected a value").source
}

/// A waker that counts its wakes and its clones (to tell which task a
/// flight woke, and whether re-registering the same waker cloned it).
pub struct Tally {
    pub wakes: AtomicUsize,
    pub clones: AtomicUsize,
}

impl Tally {
    pub fn new() -> Arc<Self> {
        Arc::new(Tally {
            wakes: AtomicUsize::new(0),
            clones: AtomicUsize::new(0),
        })
    }
    pub fn wakes(&self) -> usize {
        self.wakes.load(Ordering::SeqCst)
    }
    pub fn clones(&self) -> usize {
        self.clones.load(Ordering::SeqCst)
    }
    /// A waker for this tally. The waker holds one `Arc` reference.
    pub fn waker(self: &Arc<Self>) -> Waker {
        let ptr = Arc::into_raw(Arc::clone(self)) as *const ();
        // SAFETY: `ptr` comes from `Arc::into_raw` of a `Tally` and the vtable
        // below treats it as exactly that, keeping the reference count right.
        unsafe { Waker::from_raw(RawWaker::new(ptr, &TALLY_VTABLE)) }
    }
}

static TALLY_VTABLE: RawWakerVTable =
    RawWakerVTable::new(tally_clone, tally_wake, tally_wake_by_ref, tally_drop);

unsafe fn tally_clone(p: *const ()) -> RawWaker {
    // SAFETY: `p` is a live `Arc<Tally>` pointer (see `Tally::waker`).
    let t = unsafe { &*(p as *const Tally) };
    t.clones.fetch_add(1, Ordering::SeqCst);
    // SAFETY: as above; the new waker owns one more reference.
    unsafe { Arc::increment_strong_count(p as *const Tally) };
    RawWaker::new(p, &TALLY_VTABLE)
}

unsafe fn tally_wake(p: *const ()) {
    // SAFETY: `p` is a live `Arc<Tally>` pointer; waking consumes it.
    unsafe {
        tally_wake_by_ref(p);
        tally_drop(p);
    }
}

unsafe fn tally_wake_by_ref(p: *const ()) {
    // SAFETY: `p` is a live `Arc<Tally>` pointer (see `Tally::waker`).
    let t = unsafe { &*(p as *const Tally) };
    t.wakes.fetch_add(1, Ordering::SeqCst);
}

unsafe fn tally_drop(p: *const ()) {
    // SAFETY: releases the reference this waker owned.
    unsafe { drop(Arc::from_raw(p as *const Tally)) };
}

/// Polls once with `waker`.
pub fn poll_with<F: Future + Unpin>(f: &mut F, waker: &Waker) -> Poll<F::Output> {
    let mut cx = Context::from_waker(waker);
    Pin::new(f).poll(&mut cx)
}
