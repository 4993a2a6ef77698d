//! Sequential behaviour of the semaphore, driven by hand with counting wakers: FIFO order, no
//! barging, direct handoff, cancellation at every stage, close, counts and sizes.
#![cfg(not(loom))]

mod common;

use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;

use common::Counter;
use fairgate::{AcquireError, Semaphore, TryAcquireError};

const MAX_PERMITS: usize = Semaphore::MAX_PERMITS;

#[test]
fn fast_path_acquire_and_release() {
    let sem = Semaphore::new(2);
    let c = Counter::new();
    let mut a = pin!(sem.acquire());
    let p = match c.poll(a.as_mut()) {
        Poll::Ready(Ok(p)) => p,
        other => panic!("expected a permit, got {other:?}"),
    };
    assert_eq!(sem.available_permits(), 1);
    drop(p);
    assert_eq!(sem.available_permits(), 2);
    assert_eq!(c.wakes(), 0);
}

#[test]
fn waiters_are_served_in_fifo_order() {
    let sem = Semaphore::new(1);
    let held = sem.try_acquire().unwrap();
    let (c1, c2, c3) = (Counter::new(), Counter::new(), Counter::new());
    let mut a1 = pin!(sem.acquire());
    let mut a2 = pin!(sem.acquire());
    let mut a3 = pin!(sem.acquire());
    assert!(c1.poll(a1.as_mut()).is_pending());
    assert!(c2.poll(a2.as_mut()).is_pending());
    assert!(c3.poll(a3.as_mut()).is_pending());
    assert_eq!(sem.waiters(), 3);

    drop(held);
    assert_eq!((c1.wakes(), c2.wakes(), c3.wakes()), (1, 0, 0));
    assert_eq!(sem.available_permits(), 0, "handed off, not freed");
    let p1 = match c1.poll(a1.as_mut()) {
        Poll::Ready(Ok(p)) => p,
        other => panic!("{other:?}"),
    };
    assert!(c2.poll(a2.as_mut()).is_pending());
    drop(p1);
    assert_eq!((c2.wakes(), c3.wakes()), (1, 0));
    let p2 = match c2.poll(a2.as_mut()) {
        Poll::Ready(Ok(p)) => p,
        other => panic!("{other:?}"),
    };
    drop(p2);
    assert_eq!(c3.wakes(), 1);
    assert!(matches!(c3.poll(a3.as_mut()), Poll::Ready(Ok(_))));
    assert_eq!(sem.available_permits(), 1);
    assert_eq!(sem.waiters(), 0);
}

#[test]
fn try_acquire_never_barges_past_a_waiter() {
    let sem = Semaphore::new(1);
    let held = sem.try_acquire_many(1).unwrap();
    let c = Counter::new();
    let mut waiter = pin!(sem.acquire());
    assert!(c.poll(waiter.as_mut()).is_pending());
    drop(held);
    // The permit went to the waiter, not back to the pool.
    assert_eq!(
        sem.try_acquire().unwrap_err(),
        TryAcquireError::NoPermits,
        "a newcomer took a permit owed to a waiter"
    );
    assert_eq!(sem.available_permits(), 0);
    assert!(matches!(c.poll(waiter.as_mut()), Poll::Ready(Ok(_))));
}

#[test]
fn newcomer_async_acquire_queues_behind_waiter_even_with_partial_permits() {
    let sem = Semaphore::new(2);
    let c_big = Counter::new();
    let mut big = pin!(sem.acquire_many(3));
    assert!(c_big.poll(big.as_mut()).is_pending(), "needs 3 of 2");
    // The 2 free permits are now assigned to the head; a 1-permit newcomer must queue.
    let c_small = Counter::new();
    let mut small = pin!(sem.acquire());
    assert!(c_small.poll(small.as_mut()).is_pending());
    assert_eq!(sem.available_permits(), 0);
    sem.add_permits(1);
    assert_eq!(c_big.wakes(), 1);
    assert_eq!(
        c_small.wakes(),
        0,
        "head-of-line: the big request goes first"
    );
    let p = match c_big.poll(big.as_mut()) {
        Poll::Ready(Ok(p)) => p,
        other => panic!("{other:?}"),
    };
    assert_eq!(p.num_permits(), 3);
    drop(p);
    assert_eq!(c_small.wakes(), 1);
    assert!(matches!(c_small.poll(small.as_mut()), Poll::Ready(Ok(_))));
    assert_eq!(sem.available_permits(), 3);
}

#[test]
fn cancelled_head_with_partial_permits_passes_them_on_and_wakes_next() {
    let sem = Semaphore::new(2);
    let (c1, c2) = (Counter::new(), Counter::new());
    let mut big = Box::pin(sem.acquire_many(3));
    assert!(c1.poll(big.as_mut()).is_pending());
    let mut small = pin!(sem.acquire_many(2));
    assert!(c2.poll(small.as_mut()).is_pending());
    drop(big); // had 2 assigned
    assert_eq!(
        c2.wakes(),
        1,
        "next waiter must be woken when the head leaves"
    );
    let p = match c2.poll(small.as_mut()) {
        Poll::Ready(Ok(p)) => p,
        other => panic!("{other:?}"),
    };
    drop(p);
    assert_eq!(sem.available_permits(), 2);
}

#[test]
fn cancel_of_granted_but_unpolled_waiter_returns_permits() {
    let sem = Semaphore::new(1);
    let held = sem.try_acquire().unwrap();
    let (c1, c2) = (Counter::new(), Counter::new());
    let mut first = Box::pin(sem.acquire());
    let mut second = pin!(sem.acquire());
    assert!(c1.poll(first.as_mut()).is_pending());
    assert!(c2.poll(second.as_mut()).is_pending());
    drop(held);
    assert_eq!(c1.wakes(), 1);
    drop(first); // woken, never polled again
    assert_eq!(c2.wakes(), 1);
    assert!(matches!(c2.poll(second.as_mut()), Poll::Ready(Ok(_))));
    assert_eq!(sem.available_permits(), 1);
}

#[test]
fn cancel_of_middle_and_tail_waiters_keeps_order() {
    let sem = Semaphore::new(0);
    let cs: Vec<Counter> = (0..4).map(|_| Counter::new()).collect();
    let mut futs: Vec<_> = (0..4).map(|_| Box::pin(sem.acquire())).collect();
    for (c, f) in cs.iter().zip(futs.iter_mut()) {
        assert!(c.poll(f.as_mut()).is_pending());
    }
    let tail = futs.pop().unwrap();
    drop(tail);
    let middle = futs.remove(1);
    drop(middle);
    sem.add_permits(1);
    assert_eq!((cs[0].wakes(), cs[2].wakes()), (1, 0));
    sem.add_permits(1);
    assert_eq!(cs[2].wakes(), 1);
    assert_eq!(cs[1].wakes() + cs[3].wakes(), 0);
    assert!(matches!(cs[0].poll(futs[0].as_mut()), Poll::Ready(Ok(_))));
    assert!(matches!(cs[2].poll(futs[1].as_mut()), Poll::Ready(Ok(_))));
    assert_eq!(sem.available_permits(), 2);
}

#[test]
fn repoll_with_a_new_waker_gets_the_wake() {
    let sem = Semaphore::new(0);
    let (old, new) = (Counter::new(), Counter::new());
    let mut a = pin!(sem.acquire());
    assert!(old.poll(a.as_mut()).is_pending());
    assert!(new.poll(a.as_mut()).is_pending());
    sem.add_permits(1);
    assert_eq!((old.wakes(), new.wakes()), (0, 1));
    assert!(matches!(new.poll(a.as_mut()), Poll::Ready(Ok(_))));
}

#[test]
fn close_wakes_every_waiter_with_an_error_and_refunds_partials() {
    let sem = Semaphore::new(1);
    let cs: Vec<Counter> = (0..3).map(|_| Counter::new()).collect();
    let mut big = pin!(sem.acquire_many(2));
    let mut a = pin!(sem.acquire());
    let mut b = pin!(sem.acquire());
    assert!(cs[0].poll(big.as_mut()).is_pending());
    assert!(cs[1].poll(a.as_mut()).is_pending());
    assert!(cs[2].poll(b.as_mut()).is_pending());
    sem.close();
    assert!(cs.iter().all(|c| c.wakes() == 1));
    assert_eq!(
        cs[0].poll(big.as_mut()).map(|r| r.err()),
        Poll::Ready(Some(AcquireError::Closed))
    );
    assert_eq!(
        cs[1].poll(a.as_mut()).map(|r| r.err()),
        Poll::Ready(Some(AcquireError::Closed))
    );
    assert_eq!(
        cs[2].poll(b.as_mut()).map(|r| r.err()),
        Poll::Ready(Some(AcquireError::Closed))
    );
    assert_eq!(sem.available_permits(), 1, "the partial permit came back");
    assert_eq!(sem.try_acquire().unwrap_err(), TryAcquireError::Closed);
}

#[test]
fn close_with_more_waiters_than_a_batch_closes_out_everyone() {
    // The close's pass fills its 16-waker batch with nothing deposited; it must take the role
    // again for the rest because the word shows CLOSED.
    let sem = Semaphore::new(0);
    let cs: Vec<Counter> = (0..20).map(|_| Counter::new()).collect();
    let mut futs: Vec<_> = (0..20).map(|_| Box::pin(sem.acquire())).collect();
    for (c, f) in cs.iter().zip(futs.iter_mut()) {
        assert!(c.poll(f.as_mut()).is_pending());
    }
    sem.close();
    assert!(
        cs.iter().all(|c| c.wakes() == 1),
        "a waiter past the batch was not woken"
    );
    for (c, f) in cs.iter().zip(futs.iter_mut()) {
        assert!(matches!(
            c.poll(f.as_mut()),
            Poll::Ready(Err(AcquireError::Closed))
        ));
    }
    assert_eq!(sem.waiters(), 0);
}

#[test]
fn acquire_after_close_fails_even_with_permits() {
    let sem = Semaphore::new(5);
    sem.close();
    let c = Counter::new();
    let mut a = pin!(sem.acquire());
    assert!(matches!(
        c.poll(a.as_mut()),
        Poll::Ready(Err(AcquireError::Closed))
    ));
}

#[test]
fn zero_and_oversized_requests_resolve_at_once() {
    let sem = Semaphore::new(0);
    let c = Counter::new();
    let mut zero = pin!(sem.acquire_many(0));
    assert!(matches!(c.poll(zero.as_mut()), Poll::Ready(Ok(p)) if p.num_permits() == 0));
    let mut huge = pin!(sem.acquire_many(MAX_PERMITS + 1));
    assert_eq!(
        c.poll(huge.as_mut()).map(|r| r.err()),
        Poll::Ready(Some(AcquireError::TooManyPermits {
            requested: MAX_PERMITS + 1
        }))
    );
    assert_eq!(
        sem.try_acquire_many(usize::MAX).unwrap_err(),
        TryAcquireError::TooManyPermits {
            requested: usize::MAX
        }
    );
}

#[test]
fn add_permits_overflow_is_rejected_before_any_change() {
    let sem = Semaphore::new(MAX_PERMITS - 1);
    let held = sem.try_acquire_many(MAX_PERMITS - 1).unwrap();
    let err = sem.try_add_permits(2).unwrap_err();
    assert_eq!(err.total, MAX_PERMITS - 1);
    sem.add_permits(1);
    assert_eq!(sem.total_permits(), MAX_PERMITS);
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sem.add_permits(1)));
    assert!(panicked.is_err());
    assert_eq!(sem.available_permits(), 1, "state intact after the panic");
    drop(held);
    assert_eq!(sem.available_permits(), MAX_PERMITS);
}

#[test]
fn partial_assignment_of_max_request_is_refunded() {
    // The largest partial assignment must fit the node's `assigned` field: a request for
    // MAX_PERMITS that receives MAX_PERMITS - 1 and is then dropped returns all of them.
    let sem = Semaphore::new(0);
    let c = Counter::new();
    let mut big = Box::pin(sem.acquire_many(MAX_PERMITS));
    assert!(c.poll(big.as_mut()).is_pending());
    sem.add_permits(MAX_PERMITS - 1);
    assert_eq!(sem.available_permits(), 0, "assigned to the head, not free");
    drop(big);
    assert_eq!(sem.available_permits(), MAX_PERMITS - 1);
    assert_eq!(sem.total_permits(), MAX_PERMITS - 1);
}

#[test]
fn forget_permits_takes_only_free_permits_and_keeps_closed() {
    let sem = Semaphore::new(3);
    sem.close();
    assert_eq!(sem.forget_permits(2), 2);
    assert!(
        sem.is_closed(),
        "forgetting permits must not reopen the semaphore"
    );
    assert_eq!(sem.available_permits(), 1);
    assert_eq!(sem.total_permits(), 1);
}

#[test]
fn permit_split_merge_forget_accounting() {
    let sem = Semaphore::new(5);
    let mut p = sem.try_acquire_many(5).unwrap();
    assert!(p.split(6).is_none());
    assert_eq!(p.num_permits(), 5);
    let q = p.split(2).unwrap();
    q.forget();
    assert_eq!(sem.total_permits(), 3);
    let r = p.split(1).unwrap();
    drop(r);
    assert_eq!(sem.available_permits(), 1);
    let r2 = sem.try_acquire().unwrap();
    p.merge(r2);
    assert_eq!(p.num_permits(), 3);
    drop(p);
    assert_eq!(sem.available_permits(), 3);
}

#[test]
#[should_panic(expected = "different semaphores")]
fn merging_permits_of_different_semaphores_panics() {
    let (a, b) = (Semaphore::new(1), Semaphore::new(1));
    let mut pa = a.try_acquire().unwrap();
    pa.merge(b.try_acquire().unwrap());
}

#[test]
fn owned_permits_and_split_merge() {
    let sem = Arc::new(Semaphore::new(3));
    let mut p = sem.clone().try_acquire_many_owned(3).unwrap();
    let q = p.split(1).unwrap();
    let handle = std::thread::spawn(move || drop(q));
    handle.join().unwrap();
    assert_eq!(sem.available_permits(), 1);
    let other = sem.clone().try_acquire_owned().unwrap();
    p.merge(other);
    assert_eq!(p.num_permits(), 3);
    drop(p);
    assert_eq!(sem.available_permits(), 3);
}

#[test]
fn wake_batch_overflow_serves_everyone() {
    // More waiters than one wake batch (16) become satisfiable in a single release.
    let sem = Semaphore::new(0);
    let cs: Vec<Counter> = (0..40).map(|_| Counter::new()).collect();
    let mut futs: Vec<_> = (0..40).map(|_| Box::pin(sem.acquire())).collect();
    for (c, f) in cs.iter().zip(futs.iter_mut()) {
        assert!(c.poll(f.as_mut()).is_pending());
    }
    sem.add_permits(45);
    assert!(cs.iter().all(|c| c.wakes() == 1));
    assert_eq!(sem.available_permits(), 5);
    for (c, f) in cs.iter().zip(futs.iter_mut()) {
        assert!(matches!(c.poll(f.as_mut()), Poll::Ready(Ok(_))));
    }
    drop(futs);
    assert_eq!(sem.available_permits(), 45);
}

/// A waker whose `wake` panics (an executor bug).
struct PanickingWake;

impl std::task::Wake for PanickingWake {
    fn wake(self: Arc<Self>) {
        panic!("test waker panicked");
    }
}

/// `n` queued waiters, the first with a panicking waker, then one more queued waiter; `n`
/// permits arrive. The panic reaches the releasing call after the role was given back, the
/// rest of the batch is still woken, and a later drop of a queued acquire neither wedges nor
/// leaves anything behind: its pass serves what the unwinding holder left.
fn panicking_waker_case(n: usize) {
    use std::future::Future;
    const BATCH: usize = 16;
    let sem = Arc::new(Semaphore::new(0));
    let bad = std::task::Waker::from(Arc::new(PanickingWake));
    let mut first = Box::pin(sem.acquire());
    let mut cx = std::task::Context::from_waker(&bad);
    assert!(first.as_mut().poll(&mut cx).is_pending());
    let cs: Vec<Counter> = (1..n).map(|_| Counter::new()).collect();
    let mut futs: Vec<_> = (1..n).map(|_| Box::pin(sem.acquire())).collect();
    for (c, f) in cs.iter().zip(futs.iter_mut()) {
        assert!(c.poll(f.as_mut()).is_pending());
    }
    let mut late = Box::pin(sem.clone().acquire_owned());
    assert!(Counter::new().poll(late.as_mut()).is_pending());
    assert_eq!(sem.waiters(), n + 1);

    let released = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sem.add_permits(n)));
    assert!(
        released.is_err(),
        "the waker's panic reaches the releasing call"
    );
    let in_batch = n.min(BATCH);
    assert!(
        cs[..in_batch - 1].iter().all(|c| c.wakes() == 1),
        "batch not woken"
    );

    // A later queued drop must not wedge (a thread, so a wedge fails instead of hanging).
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(late);
        done_tx.send(()).unwrap();
    });
    done_rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("a queued drop wedged after a waker panicked");
    assert!(
        cs.iter().all(|c| c.wakes() == 1),
        "waiters past the batch not served"
    );
    assert_eq!(sem.waiters(), 0);

    let mut noop = std::task::Context::from_waker(std::task::Waker::noop());
    assert!(matches!(first.as_mut().poll(&mut noop), Poll::Ready(Ok(_))));
    for (c, f) in cs.iter().zip(futs.iter_mut()) {
        assert!(matches!(c.poll(f.as_mut()), Poll::Ready(Ok(_))));
    }
    drop((first, futs));
    assert_eq!(sem.available_permits(), n);
    assert_eq!(sem.total_permits(), n);
}

#[test]
fn panicking_waker_with_three_waiters_wedges_nothing() {
    panicking_waker_case(3);
}

#[test]
fn panicking_waker_with_more_than_a_batch_wedges_nothing() {
    panicking_waker_case(20);
}

#[test]
fn dropping_a_finished_future_after_its_permit() {
    let sem = Semaphore::new(0);
    let c = Counter::new();
    let mut a = Box::pin(sem.acquire());
    assert!(c.poll(a.as_mut()).is_pending());
    sem.add_permits(1);
    let p = match c.poll(a.as_mut()) {
        Poll::Ready(Ok(p)) => p,
        other => panic!("{other:?}"),
    };
    drop(a);
    assert_eq!(sem.available_permits(), 0);
    drop(p);
    assert_eq!(sem.available_permits(), 1);
}

#[test]
#[should_panic(expected = "polled after it completed")]
fn polling_after_completion_panics() {
    let sem = Semaphore::new(1);
    let c = Counter::new();
    let mut a = pin!(sem.acquire());
    let _p = c.poll(a.as_mut());
    let _ = c.poll(a.as_mut());
}

/// The same after a queued wait: the node's state after `Ready` (woken after the pass, then
/// polled) still says the future completed.
#[test]
#[should_panic(expected = "polled after it completed")]
fn polling_a_served_waiter_again_panics() {
    let sem = Semaphore::new(1);
    let c = Counter::new();
    let held = sem.try_acquire().unwrap();
    let mut a = pin!(sem.acquire());
    assert!(c.poll(a.as_mut()).is_pending());
    drop(held);
    assert!(matches!(c.poll(a.as_mut()), Poll::Ready(Ok(_))));
    let _ = c.poll(a.as_mut());
}

#[test]
fn static_semaphore_is_const() {
    static S: Semaphore = Semaphore::new(3);
    assert_eq!(S.try_acquire_many(3).unwrap().num_permits(), 3);
}

/// The sizes BENCHMARKS.md reports, and how they compare with tokio's: the acquire future (one
/// per waiting task) is smaller, the semaphore and the permit are no larger.
#[cfg(target_pointer_width = "64")]
#[test]
fn sizes_against_tokio() {
    use std::mem::{size_of, size_of_val};
    let sem = Semaphore::new(1);
    let tokio_sem = tokio::sync::Semaphore::new(1);
    assert_eq!(size_of::<Semaphore>(), 40);
    assert!(size_of::<Semaphore>() <= size_of::<tokio::sync::Semaphore>());
    assert_eq!(size_of_val(&sem.acquire()), 64);
    assert!(size_of_val(&sem.acquire()) < size_of_val(&tokio_sem.acquire()));
    assert_eq!(size_of::<fairgate::Permit<'_>>(), 16);
    assert!(size_of::<fairgate::Permit<'_>>() <= size_of::<tokio::sync::SemaphorePermit<'_>>());
    assert_eq!(size_of::<fairgate::OwnedPermit>(), 16);
}

/// What a log line shows: each error's message names the cause and the numbers, and the
/// `Debug` output of the semaphore and of both acquire futures carries their counts.
#[test]
fn errors_and_debug_output_say_what_happened() {
    assert_eq!(AcquireError::Closed.to_string(), "semaphore closed");
    assert_eq!(
        AcquireError::TooManyPermits { requested: 7 }.to_string(),
        format!("requested 7 permits, more than MAX_PERMITS ({MAX_PERMITS})")
    );
    assert_eq!(TryAcquireError::Closed.to_string(), "semaphore closed");
    assert_eq!(
        TryAcquireError::NoPermits.to_string(),
        "no permits available"
    );
    assert_eq!(
        TryAcquireError::TooManyPermits { requested: 9 }.to_string(),
        format!("requested 9 permits, more than MAX_PERMITS ({MAX_PERMITS})")
    );
    let sem = Arc::new(Semaphore::new(MAX_PERMITS - 1));
    let err = sem.try_add_permits(2).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "adding 2 permits to a semaphore with {} in total would exceed MAX_PERMITS ({MAX_PERMITS})",
            MAX_PERMITS - 1
        )
    );

    let sem = Arc::new(Semaphore::new(2));
    let held = sem.try_acquire().unwrap();
    assert_eq!(
        format!("{sem:?}"),
        "Semaphore { available_permits: 1, total_permits: 2, waiters: 0, closed: false }"
    );
    drop(held);
    let acquire = sem.acquire_many(3);
    assert_eq!(acquire.num_permits(), 3);
    assert_eq!(format!("{acquire:?}"), "Acquire { permits: 3, .. }");
    let owned = sem.clone().acquire_many_owned(2);
    assert_eq!(owned.num_permits(), 2);
    assert_eq!(format!("{owned:?}"), "AcquireOwned { permits: 2, .. }");
    drop((acquire, owned));
    let permit = sem.try_acquire_many(2).unwrap();
    assert_eq!(format!("{permit:?}"), "Permit { permits: 2, .. }");
    drop(permit);
    let permit = sem.clone().try_acquire_owned().unwrap();
    assert_eq!(format!("{permit:?}"), "OwnedPermit { permits: 1, .. }");
}

/// `PollSemaphore` hands back the semaphore it polls, not another one.
#[test]
fn poll_semaphore_gives_back_its_semaphore() {
    let sem = Arc::new(Semaphore::new(1));
    let poll_sem = fairgate::PollSemaphore::new(sem.clone());
    assert!(Arc::ptr_eq(poll_sem.semaphore(), &sem));
    assert!(Arc::ptr_eq(&poll_sem.clone_inner(), &sem));
    assert!(Arc::ptr_eq(&poll_sem.into_inner(), &sem));
}
