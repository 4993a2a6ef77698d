//! The semaphore under real executors: a multi-thread tokio runtime, `async-executor` (smol's
//! executor) on several threads, and a minimal hand-written executor. FIFO order, no barging,
//! handoff, cancellation at every stage, close, and conservation of permits.
#![cfg(not(loom))]

mod common;

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Wake, Waker};
use std::time::Duration;

use fairgate::{AcquireError, Semaphore, TryAcquireError};

/// Scales work down under miri, where every step is ~1000× slower.
fn scaled(n: usize) -> usize {
    if cfg!(miri) {
        (n / 1000).max(4)
    } else {
        n
    }
}

/// Waits (bounded, 20 s) until the semaphore reports `n` queued waiters. There is no event
/// for "a task has queued", so this polls the count, yielding in between.
async fn until_waiters(sem: &Semaphore, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        if sem.waiters() == n {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("never saw {n} waiters (saw {})", sem.waiters());
}

/// A tiny deterministic pseudo-random generator (no dependency, reproducible).
fn next_rand(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn tokio_fifo_order_and_no_barging() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(30), async {
            let sem = Arc::new(Semaphore::new(1));
            let order = Arc::new(Mutex::new(Vec::new()));
            let gate = sem.clone().try_acquire_owned().unwrap();
            let mut handles = Vec::new();
            let n = scaled(16).min(16);
            for i in 0..n {
                let (task_sem, order) = (sem.clone(), order.clone());
                handles.push(tokio::spawn(async move {
                    let _p = task_sem.acquire().await.unwrap();
                    order.lock().unwrap().push(i);
                }));
                until_waiters(&sem, i + 1).await;
            }
            assert_eq!(sem.try_acquire().unwrap_err(), TryAcquireError::NoPermits);
            drop(gate);
            for h in handles {
                h.await.unwrap();
            }
            assert_eq!(*order.lock().unwrap(), (0..n).collect::<Vec<_>>());
            assert_eq!(sem.available_permits(), 1);
        })
        .await
        .expect("timed out");
    });
}

/// Many tasks, few permits, random cancellation by timeouts and `select!`; checks the
/// concurrency bound throughout and that every permit is back at the end.
#[test]
fn tokio_stress_with_cancellation() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    const PERMITS: usize = 3;
    let tasks = scaled(64);
    let iters = scaled(400);
    rt.block_on(async {
        let sem = Arc::new(Semaphore::new(PERMITS));
        let active = Arc::new(AtomicUsize::new(0));
        let completed = Arc::new(AtomicUsize::new(0));
        let mut handles = Vec::new();
        for t in 0..tasks {
            let (sem, active, completed) = (sem.clone(), active.clone(), completed.clone());
            handles.push(tokio::spawn(async move {
                let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (t as u64 + 1);
                for _ in 0..iters {
                    let want = 1 + (next_rand(&mut rng) % 2) as usize;
                    let acquire = sem.acquire_many(want);
                    let permit = match next_rand(&mut rng) % 4 {
                        // Cancelled by a very short timeout at whatever stage it reached.
                        0 => match tokio::time::timeout(Duration::from_micros(50), acquire).await {
                            Ok(p) => p.unwrap(),
                            Err(_) => continue,
                        },
                        // Cancelled by losing a select! race against a yield.
                        1 => tokio::select! {
                            p = acquire => p.unwrap(),
                            _ = tokio::task::yield_now() => continue,
                        },
                        _ => acquire.await.unwrap(),
                    };
                    let now = active.fetch_add(want, SeqCst) + want;
                    assert!(now <= PERMITS, "{now} permits in use of {PERMITS}");
                    tokio::task::yield_now().await;
                    active.fetch_sub(want, SeqCst);
                    drop(permit);
                    completed.fetch_add(1, SeqCst);
                }
            }));
        }
        tokio::time::timeout(Duration::from_secs(120), async {
            for h in handles {
                h.await.unwrap();
            }
        })
        .await
        .expect("stress run timed out: a waiter was stranded");
        assert!(completed.load(SeqCst) > 0);
        assert_eq!(
            sem.available_permits(),
            PERMITS,
            "permits lost or duplicated"
        );
        assert_eq!(sem.total_permits(), PERMITS);
        assert_eq!(sem.waiters(), 0);
    });
}

#[test]
fn tokio_close_wakes_everyone() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let sem = Arc::new(Semaphore::new(0));
        let n = scaled(32).min(32);
        let handles: Vec<_> = (0..n)
            .map(|_| {
                let sem = sem.clone();
                tokio::spawn(async move { sem.acquire().await.map(drop) })
            })
            .collect();
        until_waiters(&sem, n).await;
        sem.close();
        tokio::time::timeout(Duration::from_secs(30), async {
            for h in handles {
                assert_eq!(h.await.unwrap(), Err(AcquireError::Closed));
            }
        })
        .await
        .expect("a waiter was not woken by close");
    });
}

#[test]
fn async_executor_stress_and_conservation() {
    const PERMITS: usize = 2;
    let ex = Arc::new(async_executor::Executor::new());
    let sem = Arc::new(Semaphore::new(PERMITS));
    let active = Arc::new(AtomicUsize::new(0));
    // One extra executor thread beside the one below.
    let runner = {
        let ex = ex.clone();
        let (signal, shutdown) = async_channel_like();
        let t = std::thread::spawn(move || {
            futures_lite::future::block_on(ex.run(shutdown));
        });
        (t, signal)
    };
    let tasks: Vec<_> = (0..scaled(32))
        .map(|i| {
            let (sem, active) = (sem.clone(), active.clone());
            ex.spawn(async move {
                for j in 0..scaled(200) {
                    let acquire = sem.acquire();
                    if (i + j) % 5 == 0 {
                        // Poll once, then drop: cancelled at whatever stage it reached.
                        let mut acquire = Box::pin(acquire);
                        let polled = futures_lite::future::poll_once(acquire.as_mut()).await;
                        drop(polled);
                        continue;
                    }
                    let p = acquire.await.unwrap();
                    assert!(active.fetch_add(1, SeqCst) < PERMITS);
                    futures_lite::future::yield_now().await;
                    active.fetch_sub(1, SeqCst);
                    drop(p);
                }
            })
        })
        .collect();
    futures_lite::future::block_on(ex.run(async {
        for t in tasks {
            t.await;
        }
    }));
    runner.1.send();
    runner.0.join().unwrap();
    assert_eq!(sem.available_permits(), PERMITS);
    assert_eq!(sem.waiters(), 0);
}

/// A one-shot signal future usable from any executor (keeps the test free of extra crates).
fn async_channel_like() -> (Signal, impl Future<Output = ()>) {
    let sem = Arc::new(Semaphore::new(0));
    let signal = Signal(sem.clone());
    (signal, async move {
        let _ = sem.acquire().await;
    })
}

struct Signal(Arc<Semaphore>);
impl Signal {
    fn send(&self) {
        self.0.add_permits(1);
    }
}

// --- A minimal hand-written executor: a FIFO run queue of tasks woken by `Arc<Task>`. ---

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

struct Task {
    future: Mutex<Option<BoxFuture>>,
    queue: Arc<Mutex<VecDeque<Arc<Task>>>>,
}

impl Wake for Task {
    fn wake(self: Arc<Self>) {
        let queue = self.queue.clone();
        queue.lock().unwrap().push_back(self);
    }
}

struct MiniExecutor {
    queue: Arc<Mutex<VecDeque<Arc<Task>>>>,
}

impl MiniExecutor {
    fn new() -> Self {
        Self {
            queue: Arc::new(Mutex::new(VecDeque::new())),
        }
    }

    fn spawn(&self, f: impl Future<Output = ()> + Send + 'static) {
        let task = Arc::new(Task {
            future: Mutex::new(Some(Box::pin(f))),
            queue: self.queue.clone(),
        });
        self.queue.lock().unwrap().push_back(task);
    }

    /// Runs until the queue is empty; returns how many polls it made.
    fn run(&self) -> usize {
        let mut polls = 0;
        loop {
            let next = self.queue.lock().unwrap().pop_front();
            let Some(task) = next else { return polls };
            let waker = Waker::from(task.clone());
            let mut slot = task.future.lock().unwrap();
            if let Some(mut fut) = slot.take() {
                polls += 1;
                if fut
                    .as_mut()
                    .poll(&mut Context::from_waker(&waker))
                    .is_pending()
                {
                    *slot = Some(fut);
                }
            }
        }
    }
}

#[test]
fn mini_executor_handoff_fifo_cancel_close() {
    let ex = MiniExecutor::new();
    let sem = Arc::new(Semaphore::new(1));
    let order = Arc::new(Mutex::new(Vec::new()));
    let gate = sem.clone().try_acquire_owned().unwrap();
    for i in 0..5 {
        let (sem, order) = (sem.clone(), order.clone());
        ex.spawn(async move {
            let p = sem.acquire().await.unwrap();
            order.lock().unwrap().push(i);
            drop(p);
        });
    }
    // A task whose acquire is cancelled after it queued.
    let s = sem.clone();
    ex.spawn(async move {
        let mut a = Box::pin(s.acquire());
        assert!(futures_lite::future::poll_once(a.as_mut()).await.is_none());
    });
    ex.run();
    assert_eq!(sem.waiters(), 5);
    drop(gate);
    ex.run();
    assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4]);
    assert_eq!(sem.available_permits(), 1);

    // Close: queued tasks wake with an error.
    let held = sem.clone().try_acquire_owned().unwrap();
    let closed_seen = Arc::new(AtomicUsize::new(0));
    for _ in 0..3 {
        let (sem, closed_seen) = (sem.clone(), closed_seen.clone());
        ex.spawn(async move {
            assert_eq!(sem.acquire().await.unwrap_err(), AcquireError::Closed);
            closed_seen.fetch_add(1, SeqCst);
        });
    }
    ex.run();
    sem.close();
    ex.run();
    assert_eq!(closed_seen.load(SeqCst), 3);
    drop(held);
    assert_eq!(sem.available_permits(), 1);
}

/// Plain threads with the blocking API and try_acquire, ending with every permit back.
/// `FAIRGATE_STRESS_OPS` scales the number of operations (default 1e6 total; CI uses the
/// default, a long run sets e.g. 100000000).
#[test]
fn std_threads_blocking_stress() {
    const PERMITS: usize = 3;
    const THREADS: usize = 4;
    let total_ops: usize = std::env::var("FAIRGATE_STRESS_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let per_thread = scaled(total_ops / THREADS);
    let sem = Arc::new(Semaphore::new(PERMITS));
    let active = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (sem, active) = (sem.clone(), active.clone());
            std::thread::spawn(move || {
                let mut rng = 0xDEAD_BEEF_u64 + t as u64;
                for _ in 0..per_thread {
                    let want = 1 + (next_rand(&mut rng) % 2) as usize;
                    let permit = if next_rand(&mut rng) % 3 == 0 {
                        match sem.try_acquire_many(want) {
                            Ok(p) => p,
                            Err(TryAcquireError::NoPermits) => continue,
                            Err(e) => panic!("{e}"),
                        }
                    } else {
                        sem.blocking_acquire_many(want).unwrap()
                    };
                    let now = active.fetch_add(want, SeqCst) + want;
                    assert!(now <= PERMITS);
                    active.fetch_sub(want, SeqCst);
                    drop(permit);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(sem.available_permits(), PERMITS);
    assert_eq!(sem.waiters(), 0);
}

#[test]
fn poll_semaphore_reuses_its_slot() {
    use fairgate::PollSemaphore;
    use std::future::poll_fn;
    let sem = Arc::new(Semaphore::new(1));
    let mut ps = PollSemaphore::new(sem.clone());
    futures_lite::future::block_on(async {
        for _ in 0..scaled(1000) {
            let p = poll_fn(|cx| ps.poll_acquire(cx)).await.unwrap();
            drop(p);
        }
        // A pending request keeps its place between polls and is served by a release.
        let held = sem.clone().try_acquire_owned().unwrap();
        let waker = Waker::noop();
        assert!(ps
            .poll_acquire(&mut Context::from_waker(waker))
            .is_pending());
        assert_eq!(sem.waiters(), 1);
        drop(held);
        let p = poll_fn(|cx| ps.poll_acquire(cx)).await.unwrap();
        assert_eq!(p.num_permits(), 1);
    });
    drop(ps);
    assert_eq!(sem.available_permits(), 1);
}
