//! `Limiter` admission behaviour: capacity, FIFO, queue bound, queue timeout, soft mode,
//! passthrough, cancellation, close. Every test is bounded in time.
#![cfg(not(loom))]

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fairgate::limit::{Limiter, Mode, RejectReason};

/// Fails the test instead of hanging it.
async fn bounded<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .expect("test exceeded its time bound")
}

/// Yields until `cond` holds (a signal-free wait for another task's progress, bounded by
/// the caller's `bounded`).
async fn until(cond: impl Fn() -> bool) {
    while !cond() {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_is_never_exceeded_under_concurrency() {
    bounded(async {
        let limiter = Limiter::builder("cap").capacity(3).build().unwrap();
        let current = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let (limiter, current, peak) = (limiter.clone(), current.clone(), peak.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..20 {
                    let _permit = limiter.acquire().await.unwrap();
                    let now = current.fetch_add(1, SeqCst) + 1;
                    peak.fetch_max(now, SeqCst);
                    assert!(limiter.in_flight() <= 3);
                    tokio::task::yield_now().await;
                    current.fetch_sub(1, SeqCst);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let peak = peak.load(SeqCst);
        assert!((1..=3).contains(&peak), "peak {peak}");
        assert_eq!((limiter.in_flight(), limiter.waiting()), (0, 0));
    })
    .await;
}

#[tokio::test]
async fn waiters_complete_in_fifo_order() {
    bounded(async {
        let limiter = Limiter::builder("fifo").capacity(1).build().unwrap();
        let held = limiter.acquire().await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..16 {
            let (l, order) = (limiter.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _permit = l.acquire().await.unwrap();
                order.lock().unwrap().push(i);
                tokio::task::yield_now().await;
            }));
            // Queue them in a known order.
            until(|| limiter.waiting() == i + 1).await;
        }
        drop(held);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), (0..16).collect::<Vec<_>>());
    })
    .await;
}

#[tokio::test]
async fn a_full_queue_rejects_at_once_and_leaves_no_trace() {
    bounded(async {
        let limiter = Limiter::builder("q")
            .capacity(1)
            .max_queue(Some(2))
            .build()
            .unwrap();
        let held = limiter.acquire().await.unwrap();
        let mut a = Box::pin(limiter.acquire());
        let mut b = Box::pin(limiter.acquire());
        assert!(futures::poll!(&mut a).is_pending());
        assert!(futures::poll!(&mut b).is_pending());
        assert_eq!(limiter.waiting(), 2);

        let started = Instant::now();
        let err = limiter.acquire().await.unwrap_err();
        assert_eq!(err.reason(), RejectReason::QueueFull);
        assert!(err.waited().is_zero());
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(
            limiter.try_acquire().unwrap_err().reason(),
            RejectReason::QueueFull
        );
        assert_eq!(limiter.waiting(), 2, "a rejected acquirer leaves no trace");

        drop(held);
        drop(a.await.unwrap());
        drop(b.await.unwrap());
        assert_eq!((limiter.in_flight(), limiter.waiting()), (0, 0));
    })
    .await;
}

#[tokio::test]
async fn max_queue_zero_sheds_when_no_permit_is_free() {
    bounded(async {
        let limiter = Limiter::builder("shed")
            .capacity(2)
            .max_queue(Some(0))
            .build()
            .unwrap();
        let a = limiter.acquire().await.unwrap();
        let _b = limiter.acquire().await.unwrap();
        assert_eq!(
            limiter.acquire().await.unwrap_err().reason(),
            RejectReason::QueueFull
        );
        drop(a);
        assert!(limiter.acquire().await.is_ok());
    })
    .await;
}

#[tokio::test]
async fn queue_timeout_rejects_and_empties_the_queue() {
    bounded(async {
        let limiter = Limiter::builder("t")
            .capacity(1)
            .queue_timeout(Duration::from_millis(50))
            .build()
            .unwrap();
        let _held = limiter.acquire().await.unwrap();
        let waiter = tokio::spawn({
            let l = limiter.clone();
            async move { l.acquire().await }
        });
        until(|| limiter.waiting() == 1).await;
        let err = waiter.await.unwrap().unwrap_err();
        assert_eq!(err.reason(), RejectReason::QueueTimeout);
        assert!(
            err.waited() >= Duration::from_millis(50),
            "{:?}",
            err.waited()
        );
        assert_eq!(err.limiter(), "t");
        assert_eq!((limiter.waiting(), limiter.in_flight()), (0, 1));
    })
    .await;
}

#[tokio::test]
async fn a_waiter_granted_before_its_timeout_is_admitted() {
    bounded(async {
        let limiter = Limiter::builder("t")
            .capacity(1)
            .queue_timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let held = limiter.acquire().await.unwrap();
        let waiter = tokio::spawn({
            let l = limiter.clone();
            async move { l.acquire().await.map(|p| p.waited()) }
        });
        until(|| limiter.waiting() == 1).await;
        drop(held);
        let waited = waiter.await.unwrap().unwrap();
        assert!(waited < Duration::from_secs(10));
        assert_eq!((limiter.waiting(), limiter.in_flight()), (0, 0));
    })
    .await;
}

#[tokio::test]
async fn the_earlier_of_deadline_and_queue_timeout_decides_the_reason() {
    bounded(async {
        let limiter = Limiter::builder("d")
            .capacity(1)
            .queue_timeout(Duration::from_millis(400))
            .build()
            .unwrap();
        let _held = limiter.acquire().await.unwrap();
        let soon = Instant::now() + Duration::from_millis(30);
        let err = limiter.acquire_until(soon).await.unwrap_err();
        assert_eq!(err.reason(), RejectReason::DeadlineExceeded);
        let late = Instant::now() + Duration::from_secs(60);
        let err = limiter.acquire_until(late).await.unwrap_err();
        assert_eq!(err.reason(), RejectReason::QueueTimeout);
        // A deadline already past never queues.
        let err = limiter.acquire_until(Instant::now()).await.unwrap_err();
        assert_eq!(err.reason(), RejectReason::DeadlineExceeded);
        assert!(err.waited().is_zero());
        assert_eq!(limiter.waiting(), 0);
    })
    .await;
}

#[tokio::test]
async fn a_past_deadline_still_takes_a_free_permit() {
    bounded(async {
        let limiter = Limiter::builder("d").capacity(1).build().unwrap();
        assert!(limiter.acquire_until(Instant::now()).await.is_ok());
    })
    .await;
}

#[tokio::test]
async fn soft_mode_never_blocks_but_counts() {
    bounded(async {
        let limiter = Limiter::builder("soft")
            .capacity(2)
            .mode(Mode::Soft)
            .build()
            .unwrap();
        let mut permits = Vec::new();
        for _ in 0..10 {
            permits.push(limiter.acquire().await.unwrap());
        }
        permits.push(limiter.try_acquire().unwrap());
        assert_eq!(limiter.in_flight(), 11);
        assert_eq!(limiter.waiting(), 0);
        assert_eq!(limiter.capacity(), 2);
        permits.truncate(4);
        assert_eq!(limiter.in_flight(), 4);
        drop(permits);
        assert_eq!(limiter.in_flight(), 0);
    })
    .await;
}

#[tokio::test]
async fn capacity_zero_passes_everything_through_and_counts() {
    bounded(async {
        let limiter = Limiter::builder("pass").build().unwrap();
        assert_eq!(limiter.capacity(), 0);
        let mut permits = Vec::new();
        for _ in 0..1000 {
            permits.push(limiter.acquire().await.unwrap());
        }
        permits.push(limiter.try_acquire().unwrap());
        assert_eq!((limiter.in_flight(), limiter.waiting()), (1001, 0));
        drop(permits);
        assert_eq!(limiter.in_flight(), 0);
    })
    .await;
}

#[tokio::test]
async fn a_dropped_queued_acquire_leaves_the_queue() {
    bounded(async {
        let limiter = Limiter::builder("drop")
            .capacity(1)
            .max_queue(Some(1))
            .build()
            .unwrap();
        let held = limiter.acquire().await.unwrap();
        let mut queued = Box::pin(limiter.acquire());
        assert!(futures::poll!(&mut queued).is_pending());
        assert_eq!(limiter.waiting(), 1);
        assert_eq!(
            limiter.try_acquire().unwrap_err().reason(),
            RejectReason::QueueFull
        );
        drop(queued);
        assert_eq!(limiter.waiting(), 0);
        // Its slot is free again, and the released permit goes to the next waiter, not to
        // the dropped one.
        let mut next = Box::pin(limiter.acquire());
        assert!(futures::poll!(&mut next).is_pending());
        drop(held);
        drop(next.await.unwrap());
        assert_eq!((limiter.in_flight(), limiter.waiting()), (0, 0));
        assert!(limiter.try_acquire().is_ok());
    })
    .await;
}

#[tokio::test]
async fn a_granted_but_unpolled_acquire_passes_its_permit_on_when_dropped() {
    bounded(async {
        let limiter = Limiter::builder("handoff").capacity(1).build().unwrap();
        let held = limiter.acquire().await.unwrap();
        let mut first = Box::pin(limiter.acquire());
        let mut second = Box::pin(limiter.acquire());
        assert!(futures::poll!(&mut first).is_pending());
        assert!(futures::poll!(&mut second).is_pending());
        drop(held); // granted to `first`, which is never polled again
        drop(first);
        drop(second.await.unwrap());
        assert_eq!((limiter.in_flight(), limiter.waiting()), (0, 0));
        assert!(limiter.try_acquire().is_ok());
    })
    .await;
}

/// xorshift: deterministic "random" choices without a dependency.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_randomly_cancelled_acquires_leak_nothing() {
    bounded(async {
        let limiter = Limiter::builder("chaos")
            .capacity(3)
            .max_queue(Some(40))
            .queue_timeout(Duration::from_millis(30))
            .build()
            .unwrap();
        let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
        let mut tasks = Vec::new();
        for _ in 0..400 {
            let l = limiter.clone();
            let give_up = Duration::from_micros(next(&mut seed) % 3000);
            let hold = Duration::from_micros(next(&mut seed) % 2000);
            let task = tokio::spawn(async move {
                // Cancelled by the caller's own timeout, by abort, or done.
                let _ = tokio::time::timeout(give_up, async {
                    if let Ok(_permit) = l.acquire().await {
                        tokio::time::sleep(hold).await;
                    }
                })
                .await;
            });
            if next(&mut seed) % 4 == 0 {
                task.abort();
            }
            tasks.push(task);
            if next(&mut seed) % 8 == 0 {
                tokio::task::yield_now().await;
            }
        }
        for t in tasks {
            let _ = t.await;
        }
        assert_eq!((limiter.in_flight(), limiter.waiting()), (0, 0));
        // Every permit is back: capacity 3 is available in full.
        let permits: Vec<_> = (0..3).map(|_| limiter.try_acquire().unwrap()).collect();
        assert!(limiter.try_acquire().is_err());
        drop(permits);
    })
    .await;
}

#[tokio::test]
async fn close_rejects_waiters_and_newcomers_but_keeps_permits_valid() {
    bounded(async {
        let limiter = Limiter::builder("c").capacity(1).build().unwrap();
        let held = limiter.acquire().await.unwrap();
        let waiter = tokio::spawn({
            let l = limiter.clone();
            async move { l.acquire().await }
        });
        until(|| limiter.waiting() == 1).await;
        limiter.close();
        assert_eq!(
            waiter.await.unwrap().unwrap_err().reason(),
            RejectReason::Closed
        );
        assert_eq!(
            limiter.acquire().await.unwrap_err().reason(),
            RejectReason::Closed
        );
        assert_eq!((limiter.in_flight(), limiter.waiting()), (1, 0));
        assert!(limiter.snapshot().closed);
        drop(held);
        assert_eq!(limiter.in_flight(), 0);

        let soft = Limiter::builder("s").mode(Mode::Soft).build().unwrap();
        soft.close();
        assert_eq!(
            soft.try_acquire().unwrap_err().reason(),
            RejectReason::Closed
        );
    })
    .await;
}

#[tokio::test]
async fn permits_outlive_every_handle_and_each_acquisition_is_fresh() {
    bounded(async {
        let limiter = Limiter::builder("fresh").capacity(2).build().unwrap();
        let observer = limiter.clone();
        // A retry-like loop: each attempt takes and returns its own permit.
        for _ in 0..100 {
            let permit = limiter.acquire().await.unwrap();
            assert_eq!(observer.in_flight(), 1);
            drop(permit);
        }
        let permit = limiter.acquire().await.unwrap();
        drop(limiter);
        assert_eq!(observer.in_flight(), 1);
        let moved = std::thread::spawn(move || drop(permit));
        moved.join().unwrap();
        assert_eq!(observer.in_flight(), 0);
        assert!(observer.same_limiter(&observer.clone()));
    })
    .await;
}

#[test]
fn acquire_needs_no_runtime_without_a_timeout() {
    let limiter = Limiter::builder("rt-free").capacity(1).build().unwrap();
    let held = limiter.try_acquire().unwrap();
    let waiter = std::thread::spawn({
        let l = limiter.clone();
        move || futures::executor::block_on(l.acquire()).map(|p| p.waited())
    });
    while limiter.waiting() == 0 {
        std::thread::yield_now();
    }
    drop(held);
    assert!(waiter.join().unwrap().is_ok());
    assert_eq!((limiter.in_flight(), limiter.waiting()), (0, 0));
}

/// The timer of a wait with a timeout panics outside a tokio runtime (documented). The
/// panic must not leak the queue slot reserved just before: a caught panic (a tokio task,
/// `catch_unwind`) would otherwise shrink the queue bound for good.
#[test]
fn a_timer_panic_outside_a_runtime_returns_the_queue_slot() {
    let limiter = Limiter::builder("no-rt")
        .capacity(1)
        .max_queue(Some(1))
        .queue_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let held = limiter.try_acquire().unwrap();
    for _ in 0..2 {
        let mut fut = Box::pin(limiter.acquire());
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let poll = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            fut.as_mut().poll(&mut cx).is_pending()
        }));
        assert!(poll.is_err(), "the timer needs a runtime");
        drop(fut);
        assert_eq!(limiter.waiting(), 0, "queue slot leaked by the panic");
    }
    drop(held);
    assert_eq!(limiter.in_flight(), 0);
}

#[test]
fn handles_futures_permits_and_errors_are_thread_safe() {
    fn send_static<T: Send + 'static>() {}
    fn send_sync_static<T: Send + Sync + 'static>() {}
    fn error<T: std::error::Error + Send + Sync + Clone + 'static>() {}
    send_static::<fairgate::limit::Acquire>();
    send_sync_static::<fairgate::limit::LimitPermit>();
    send_sync_static::<Limiter>();
    send_sync_static::<fairgate::limit::LimiterConfig>();
    error::<fairgate::limit::Rejected>();
    error::<fairgate::limit::ConfigError>();
    // A rejection boxes into the usual error type and downcasts back.
    let limiter = Limiter::builder("e")
        .capacity(1)
        .max_queue(Some(0))
        .build()
        .unwrap();
    let _held = limiter.try_acquire().unwrap();
    let boxed: Box<dyn std::error::Error + Send + Sync> = limiter.try_acquire().unwrap_err().into();
    let back = boxed.downcast::<fairgate::limit::Rejected>().unwrap();
    assert_eq!(back.reason(), RejectReason::QueueFull);
}
