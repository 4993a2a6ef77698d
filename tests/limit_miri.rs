//! The limit layer's `unsafe` under Miri: the `Acquire<'static>` / `Permit<'static>` borrows
//! extended to the limiter's `Arc`-shared state, and the pin projections of the wait future.
//! Runtime-free (manual polling, `futures::executor::block_on`, std threads), so Miri can run
//! it; every case ends with the limiter at rest, and several drop the last `Arc` from inside
//! an acquire future or a permit, where a wrong field drop order would be a use-after-free.
//!
//! ```text
//! MIRIFLAGS="-Zmiri-disable-isolation -Zmiri-strict-provenance" \
//!     cargo +nightly miri test --features limit --test limit_miri
//! ```
#![cfg(not(loom))]

use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use fairgate::limit::{LimitPermit, Limiter, Mode, RejectReason, Rejected};

/// A waker that counts its wakes.
#[derive(Default)]
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn waker() -> (Arc<CountingWaker>, Waker) {
    let counter = Arc::new(CountingWaker::default());
    (counter.clone(), Waker::from(counter))
}

fn poll_once<F: Future + ?Sized>(fut: Pin<&mut F>, waker: &Waker) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(waker))
}

fn granted(poll: Poll<Result<LimitPermit, Rejected>>) -> LimitPermit {
    match poll {
        Poll::Ready(Ok(permit)) => permit,
        Poll::Ready(Err(rejected)) => panic!("refused: {rejected}"),
        Poll::Pending => panic!("still pending"),
    }
}

fn assert_at_rest(limiter: &Limiter, n: usize) {
    assert_eq!((limiter.in_flight(), limiter.waiting()), (0, 0));
    assert_eq!(limiter.__debt(), 0, "debt left over");
    assert_eq!(limiter.__total_permits(), n, "permits leaked or invented");
}

#[test]
fn acquire_wait_grant_drop() {
    let limiter = Limiter::builder("grant").capacity(1).build().unwrap();
    let held = limiter.try_acquire().unwrap();
    let (wakes, waker) = waker();
    let mut queued = pin!(limiter.acquire());
    assert!(poll_once(queued.as_mut(), &waker).is_pending());
    assert!(poll_once(queued.as_mut(), &waker).is_pending(), "re-poll");
    assert_eq!(limiter.waiting(), 1);
    drop(held);
    assert_eq!(
        wakes.0.load(Ordering::SeqCst),
        1,
        "the release woke the waiter"
    );
    let permit = granted(poll_once(queued.as_mut(), &waker));
    assert_eq!((limiter.in_flight(), limiter.waiting()), (1, 0));
    drop(permit);
    assert_at_rest(&limiter, 1);
}

#[test]
fn block_on_with_release_from_another_thread() {
    let limiter = Limiter::builder("threads").capacity(1).build().unwrap();
    let held = limiter.try_acquire().unwrap();
    let releaser = std::thread::spawn(move || drop(held));
    let permit = futures::executor::block_on(limiter.acquire()).unwrap();
    releaser.join().unwrap();
    // The permit crosses threads too and is released there.
    std::thread::spawn(move || drop(permit)).join().unwrap();
    assert_at_rest(&limiter, 1);
}

#[test]
fn cancel_of_a_queued_waiter() {
    let limiter = Limiter::builder("cancel").capacity(1).build().unwrap();
    let held = limiter.try_acquire().unwrap();
    let (_, waker) = waker();
    let mut first = Box::pin(limiter.acquire());
    let mut second = Box::pin(limiter.acquire());
    assert!(poll_once(first.as_mut(), &waker).is_pending());
    assert!(poll_once(second.as_mut(), &waker).is_pending());
    assert_eq!(limiter.waiting(), 2);
    drop(first); // canceled while queued, nothing granted yet
    assert_eq!(limiter.waiting(), 1);
    drop(held);
    let permit = granted(poll_once(second.as_mut(), &waker));
    drop(second);
    drop(permit);
    assert_at_rest(&limiter, 1);
}

#[test]
fn cancel_after_grant_passes_the_permit_on() {
    let limiter = Limiter::builder("cancel-granted")
        .capacity(1)
        .build()
        .unwrap();
    let held = limiter.try_acquire().unwrap();
    let (_, waker) = waker();
    let mut first = Box::pin(limiter.acquire());
    let mut second = Box::pin(limiter.acquire());
    assert!(poll_once(first.as_mut(), &waker).is_pending());
    assert!(poll_once(second.as_mut(), &waker).is_pending());
    drop(held); // handed to `first`, which never sees it
    drop(first);
    let permit = granted(poll_once(second.as_mut(), &waker));
    assert_eq!(limiter.in_flight(), 1);
    drop(permit);
    drop(second);
    assert_at_rest(&limiter, 1);
}

#[test]
fn never_polled_acquire_moves_and_drops() {
    let limiter = Limiter::builder("unpolled").capacity(0).build().unwrap();
    let fut = limiter.acquire();
    let moved = Box::new(fut); // not pinned yet: moving it is allowed
    drop(moved);
    assert_eq!(limiter.waiting(), 0);
}

#[test]
fn permit_outlives_every_limiter_handle() {
    let limiter = Limiter::builder("orphan").capacity(1).build().unwrap();
    let permit = limiter.try_acquire().unwrap();
    drop(limiter);
    // The permit holds the last `Arc`: its semaphore permit must go back before it is freed.
    assert_eq!(permit.limiter_name(), "orphan");
    drop(permit);
}

#[test]
fn queued_acquire_holds_the_last_arc() {
    let limiter = Limiter::builder("orphan-queued")
        .capacity(1)
        .build()
        .unwrap();
    let held = limiter.try_acquire().unwrap();
    let (_, waker) = waker();
    let mut queued = Box::pin(limiter.acquire());
    assert!(poll_once(queued.as_mut(), &waker).is_pending());
    drop(limiter);
    // Granted to `queued`, not yet polled. Dropping the future cancels the waiter (which
    // still borrows the semaphore), then frees the shared state: `wait` must go first.
    drop(held);
    drop(queued);
}

#[test]
fn granted_waiter_outlives_the_limiter() {
    let limiter = Limiter::builder("orphan-granted")
        .capacity(1)
        .build()
        .unwrap();
    let held = limiter.try_acquire().unwrap();
    let (_, waker) = waker();
    let mut queued = Box::pin(limiter.acquire());
    assert!(poll_once(queued.as_mut(), &waker).is_pending());
    drop(limiter);
    drop(held);
    let permit = granted(poll_once(queued.as_mut(), &waker));
    drop(queued);
    drop(permit); // the last `Arc`, after its semaphore permit went back
}

#[test]
fn stack_pinned_waiter_dropped_while_queued_with_last_arc() {
    let limiter = Limiter::builder("orphan-stack")
        .capacity(1)
        .build()
        .unwrap();
    let held = limiter.try_acquire().unwrap();
    let (_, waker) = waker();
    {
        let queued = limiter.clone().acquire();
        drop(limiter);
        let mut queued = pin!(queued);
        assert!(poll_once(queued.as_mut(), &waker).is_pending());
        // `queued` and `held` now hold the only `Arc`s; the future drops first.
    }
    drop(held);
}

#[test]
fn set_capacity_with_waiters() {
    let limiter = Limiter::builder("resize").capacity(2).build().unwrap();
    let a = limiter.try_acquire().unwrap();
    let b = limiter.try_acquire().unwrap();
    let (_, waker) = waker();
    let mut queued = Box::pin(limiter.acquire());
    assert!(poll_once(queued.as_mut(), &waker).is_pending());
    limiter.set_capacity(1).unwrap();
    drop(a); // absorbed by the shrink, not handed to the waiter
    assert!(poll_once(queued.as_mut(), &waker).is_pending());
    assert_eq!(limiter.in_flight(), 1);
    limiter.set_capacity(3).unwrap(); // grows by 2: the waiter is served first
    let c = granted(poll_once(queued.as_mut(), &waker));
    assert_eq!(limiter.in_flight(), 2);
    // Shrink while a waiter's grant is in flight, then drop the waiter unpolled: the grant
    // goes back through the capacity and pays the debt.
    let d = limiter.try_acquire().unwrap();
    let mut late = Box::pin(limiter.acquire());
    assert!(poll_once(late.as_mut(), &waker).is_pending());
    drop(b); // granted to `late`
    limiter.set_capacity(2).unwrap();
    drop(late); // its permit is absorbed by the debt
    assert_eq!(limiter.__debt(), 0);
    drop((c, d));
    assert_at_rest(&limiter, 2);
    limiter.set_capacity(0).unwrap(); // passthrough
    let many: Vec<_> = (0..8).map(|_| limiter.try_acquire().unwrap()).collect();
    limiter.set_capacity(1).unwrap();
    drop(many);
    assert_eq!(limiter.__debt(), 0);
    assert_at_rest(&limiter, 1);
}

#[test]
fn close_refuses_a_queued_waiter() {
    let limiter = Limiter::builder("close").capacity(1).build().unwrap();
    let held = limiter.try_acquire().unwrap();
    let (_, waker) = waker();
    let mut queued = Box::pin(limiter.acquire());
    assert!(poll_once(queued.as_mut(), &waker).is_pending());
    limiter.close();
    match poll_once(queued.as_mut(), &waker) {
        Poll::Ready(Err(rejected)) => assert_eq!(rejected.reason(), RejectReason::Closed),
        other => panic!("expected Closed, got {:?}", other.map(|r| r.map(|_| ()))),
    }
    assert_eq!(limiter.waiting(), 0);
    drop(queued);
    drop(held);
}

#[test]
fn soft_mode_counts_only() {
    let limiter = Limiter::builder("soft")
        .capacity(1)
        .mode(Mode::Soft)
        .build()
        .unwrap();
    let permits: Vec<_> = (0..3)
        .map(|_| futures::executor::block_on(limiter.acquire()).unwrap())
        .collect();
    assert_eq!(limiter.in_flight(), 3);
    drop(limiter.clone());
    let name = permits[0].limiter_name().to_owned();
    assert_eq!(name, "soft");
    drop(limiter);
    drop(permits);
}
