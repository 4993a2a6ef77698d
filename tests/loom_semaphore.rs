//! Loom models: every race in DESIGN.md §9. Each model ends by dropping everything and
//! asserting that every permit is back (loom does not check permit leaks by itself).
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test --release --test loom_semaphore`
#![cfg(loom)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use fairgate::{AcquireError, AcquireOwned, Semaphore, TryAcquireError};
use loom::future::block_on;
use loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use loom::thread;

/// Runs a model with a preemption bound and a branch limit (`LOOM_MAX_PREEMPTIONS` and
/// `LOOM_MAX_BRANCHES` override them). Bounds are set per model as high as CI can afford:
/// 3 for two-thread models, 2 for three-thread ones (DESIGN.md §9).
fn model_cfg(bound: usize, branches: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(bound);
    }
    if std::env::var_os("LOOM_MAX_BRANCHES").is_none() {
        builder.max_branches = branches;
    }
    builder.check(f);
}

/// A two-thread model: preemption bound 3.
fn model(f: impl Fn() + Sync + Send + 'static) {
    model_cfg(3, 1_000, f)
}

/// A three-thread model: preemption bound 2, and room for its longer schedules.
fn model3(f: impl Fn() + Sync + Send + 'static) {
    model_cfg(2, 20_000, f)
}

fn poll_once<F: Future + ?Sized>(f: Pin<&mut F>) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(Waker::noop()))
}

/// An owned acquire that has been polled once and is queued.
fn queued(sem: &Arc<Semaphore>, n: usize) -> Pin<Box<AcquireOwned>> {
    let mut fut = Box::pin(sem.clone().acquire_many_owned(n));
    assert!(poll_once(fut.as_mut()).is_pending(), "expected to queue");
    fut
}

/// Everything returned: no waiter left, all permits free.
fn assert_all_back(sem: &Semaphore, total: usize) {
    assert_eq!(sem.total_permits(), total, "total changed");
    assert_eq!(sem.available_permits(), total, "permits lost or duplicated");
    assert_eq!(sem.waiters(), 0, "waiter stranded");
}

#[test]
fn basic_contention() {
    model(|| {
        let sem = Arc::new(Semaphore::new(1));
        let active = Arc::new(AtomicUsize::new(0));
        let worker = |sem: Arc<Semaphore>, active: Arc<AtomicUsize>| {
            move || {
                let permit = block_on(sem.acquire()).unwrap();
                assert_eq!(active.fetch_add(1, SeqCst), 0, "two holders of one permit");
                active.fetch_sub(1, SeqCst);
                drop(permit);
            }
        };
        let t = thread::spawn(worker(sem.clone(), active.clone()));
        worker(sem.clone(), active)();
        t.join().unwrap();
        assert_all_back(&sem, 1);
    });
}

#[test]
fn release_vs_enqueue() {
    // A release racing with a waiter's enqueue must never be lost (deadlock = lost wake-up).
    model(|| {
        let sem = Arc::new(Semaphore::new(1));
        let held = sem.clone().try_acquire_owned().unwrap();
        let s = sem.clone();
        let t = thread::spawn(move || drop(block_on(s.acquire()).unwrap()));
        drop(held);
        t.join().unwrap();
        assert_all_back(&sem, 1);
    });
}

#[test]
fn concurrent_releases() {
    model(|| {
        let sem = Arc::new(Semaphore::new(2));
        let mut a = sem.clone().try_acquire_many_owned(2).unwrap();
        let b = a.split(1).unwrap();
        let waiter = queued(&sem, 2);
        let t = thread::spawn(move || drop(b));
        drop(a);
        let p = block_on(waiter).unwrap();
        assert_eq!(p.num_permits(), 2);
        t.join().unwrap();
        drop(p);
        assert_all_back(&sem, 2);
    });
}

/// A release races `add_permits`, whose pass serves the only waiter and clears `QUEUED`: whether
/// the release lands as a deposit before that pass exits or as a free permit after it, its permit
/// must come back free, not strand as a deposit nobody collects or start a second holder.
#[test]
fn queued_release_vs_emptying_pass() {
    model(|| {
        let sem = Arc::new(Semaphore::new(1));
        let held = sem.clone().try_acquire_owned().unwrap();
        let waiter = queued(&sem, 1);
        let t = thread::spawn(move || drop(held));
        sem.add_permits(1);
        let p = block_on(waiter).unwrap();
        t.join().unwrap();
        drop(p);
        assert_all_back(&sem, 2);
    });
}

#[test]
fn handoff_vs_cancel_head() {
    model(|| {
        let sem = Arc::new(Semaphore::new(1));
        let held = sem.clone().try_acquire_owned().unwrap();
        let head = queued(&sem, 1);
        let t = thread::spawn(move || drop(head));
        drop(held);
        t.join().unwrap();
        assert_all_back(&sem, 1);
    });
}

#[test]
fn handoff_vs_cancel_middle() {
    model(|| {
        let sem = Arc::new(Semaphore::new(0));
        let first = queued(&sem, 1);
        let middle = queued(&sem, 1);
        let last = queued(&sem, 1);
        let t = thread::spawn(move || drop(middle));
        sem.add_permits(1);
        let p = block_on(first).unwrap();
        t.join().unwrap();
        drop(p); // goes to `last`, skipping the cancelled middle
        let q = block_on(last).unwrap();
        drop(q);
        assert_all_back(&sem, 1);
    });
}

#[test]
fn handoff_vs_cancel_tail() {
    model(|| {
        let sem = Arc::new(Semaphore::new(0));
        let first = queued(&sem, 1);
        let tail = queued(&sem, 1);
        let t = thread::spawn(move || drop(tail));
        sem.add_permits(1);
        let p = block_on(first).unwrap();
        t.join().unwrap();
        drop(p);
        assert_all_back(&sem, 1);
    });
}

#[test]
fn cancel_granted_unpolled() {
    // The first waiter may be granted (and woken) before it is dropped unpolled: its permit
    // must flow to the second.
    model(|| {
        let sem = Arc::new(Semaphore::new(0));
        let first = queued(&sem, 1);
        let second = queued(&sem, 1);
        let s = sem.clone();
        let t = thread::spawn(move || s.add_permits(1));
        drop(first);
        let p = block_on(second).unwrap();
        t.join().unwrap();
        drop(p);
        assert_all_back(&sem, 1);
    });
}

#[test]
fn partial_assignment_then_cancel() {
    // The head holds 1 of the 2 it wants; when it leaves, that permit serves the next waiter.
    model(|| {
        let sem = Arc::new(Semaphore::new(1));
        let big = queued(&sem, 2);
        let small = queued(&sem, 1);
        let t = thread::spawn(move || drop(big));
        let p = block_on(small).unwrap();
        t.join().unwrap();
        drop(p);
        assert_all_back(&sem, 1);
    });
}

#[test]
fn repoll_new_waker_vs_release() {
    // The future first registered a no-op waker; `block_on` re-polls with its own while the
    // permit arrives. The wake must reach the new waker (or the re-poll must see the grant).
    model(|| {
        let sem = Arc::new(Semaphore::new(0));
        let fut = queued(&sem, 1);
        let s = sem.clone();
        let t = thread::spawn(move || s.add_permits(1));
        let p = block_on(fut).unwrap();
        t.join().unwrap();
        drop(p);
        assert_all_back(&sem, 1);
    });
}

#[test]
fn close_vs_enqueue_vs_fast_acquire() {
    model(|| {
        let sem = Arc::new(Semaphore::new(1));
        let s1 = sem.clone();
        let t1 = thread::spawn(move || {
            let r = block_on(s1.acquire_many(2));
            assert_eq!(
                r.unwrap_err(),
                AcquireError::Closed,
                "2 of 1 can only close out"
            );
        });
        let s2 = sem.clone();
        let t2 = thread::spawn(move || match s2.try_acquire() {
            Ok(p) => drop(p),
            Err(e) => assert!(matches!(
                e,
                TryAcquireError::Closed | TryAcquireError::NoPermits
            )),
        });
        sem.close();
        t1.join().unwrap();
        t2.join().unwrap();
        assert!(sem.is_closed());
        assert_eq!(sem.available_permits(), 1);
        assert_eq!(sem.waiters(), 0);
    });
}

#[test]
fn close_wakes_queued() {
    model(|| {
        let sem = Arc::new(Semaphore::new(0));
        let s = sem.clone();
        let t = thread::spawn(move || {
            assert_eq!(block_on(s.acquire()).unwrap_err(), AcquireError::Closed);
        });
        sem.close();
        t.join().unwrap();
        assert_eq!(sem.waiters(), 0);
    });
}

#[test]
fn close_with_partial_assignment() {
    model(|| {
        let sem = Arc::new(Semaphore::new(1));
        let big = queued(&sem, 2);
        let s = sem.clone();
        let t = thread::spawn(move || s.close());
        sem.add_permits(1);
        match block_on(big) {
            Ok(p) => drop(p),
            Err(e) => assert_eq!(e, AcquireError::Closed),
        }
        t.join().unwrap();
        assert_all_back(&sem, 2);
    });
}

#[test]
fn add_permits_vs_enqueue() {
    model(|| {
        let sem = Arc::new(Semaphore::new(0));
        let s = sem.clone();
        let t = thread::spawn(move || drop(block_on(s.acquire_many(2)).unwrap()));
        sem.add_permits(1);
        sem.add_permits(1);
        t.join().unwrap();
        assert_all_back(&sem, 2);
    });
}

#[test]
fn forget_permits_keeps_closed() {
    model(|| {
        let sem = Arc::new(Semaphore::new(2));
        let s = sem.clone();
        let t = thread::spawn(move || s.close());
        let forgotten = sem.forget_permits(1);
        t.join().unwrap();
        assert_eq!(forgotten, 1);
        assert!(sem.is_closed(), "forget_permits reopened the semaphore");
        assert_eq!(sem.try_acquire().unwrap_err(), TryAcquireError::Closed);
        assert_eq!(sem.available_permits(), 1);
        assert_eq!(sem.total_permits(), 1);
    });
}

#[test]
fn split_merge_accounting() {
    model(|| {
        let sem = Arc::new(Semaphore::new(3));
        let mut p = sem.clone().try_acquire_many_owned(3).unwrap();
        let q = p.split(1).unwrap();
        let s = sem.clone();
        let t = thread::spawn(move || drop(block_on(s.acquire_many(2)).unwrap()));
        let r = p.split(1).unwrap();
        p.merge(r);
        drop(q);
        drop(p);
        t.join().unwrap();
        assert_all_back(&sem, 3);
    });
}

#[test]
fn owned_permits_across_threads() {
    model(|| {
        let sem = Arc::new(Semaphore::new(1));
        let p = sem.clone().try_acquire_owned().unwrap();
        let t = thread::spawn(move || drop(p));
        let q = block_on(sem.clone().acquire_owned()).unwrap();
        t.join().unwrap();
        drop(q);
        assert_all_back(&sem, 1);
    });
}

#[test]
fn try_acquire_no_barging() {
    model(|| {
        let sem = Arc::new(Semaphore::new(1));
        let held = sem.clone().try_acquire_owned().unwrap();
        let waiter = queued(&sem, 1);
        let t = thread::spawn(move || drop(held));
        // The waiter queued before the release: the permit can never be taken by a newcomer.
        assert_eq!(sem.try_acquire().unwrap_err(), TryAcquireError::NoPermits);
        t.join().unwrap();
        assert_eq!(sem.try_acquire().unwrap_err(), TryAcquireError::NoPermits);
        drop(block_on(waiter).unwrap());
        assert_all_back(&sem, 1);
    });
}

#[test]
fn fifo_two_waiters() {
    model(|| {
        let sem = Arc::new(Semaphore::new(0));
        let mut first = queued(&sem, 1);
        let mut second = queued(&sem, 1);
        let s = sem.clone();
        let t = thread::spawn(move || s.add_permits(1));
        t.join().unwrap();
        assert!(
            poll_once(second.as_mut()).is_pending(),
            "second served before first"
        );
        let p = match poll_once(first.as_mut()) {
            Poll::Ready(Ok(p)) => p,
            other => panic!("first not served: {other:?}"),
        };
        let t = thread::spawn(move || drop(p));
        drop(block_on(second).unwrap());
        t.join().unwrap();
        drop(first);
        assert_all_back(&sem, 1);
    });
}

/// Bound 1 in CI: at bound 2 this model alone runs for more than 12 minutes on 2 cores (with
/// the code before and after the wake-bound change alike); `FAIRGATE_LOOM_DEEP=1 .ci/run` runs
/// it at a higher bound.
#[test]
fn concurrent_cancels() {
    model_cfg(1, 20_000, || {
        let sem = Arc::new(Semaphore::new(0));
        let a = queued(&sem, 1);
        let b = queued(&sem, 1);
        let c = queued(&sem, 1);
        let ta = thread::spawn(move || drop(a));
        let tb = thread::spawn(move || drop(b));
        sem.add_permits(1);
        drop(block_on(c).unwrap());
        ta.join().unwrap();
        tb.join().unwrap();
        assert_all_back(&sem, 1);
    });
}

#[test]
fn permit_drop_vs_waiter_drop() {
    model(|| {
        let sem = Arc::new(Semaphore::new(1));
        let held = sem.clone().try_acquire_owned().unwrap();
        let waiter = queued(&sem, 1);
        let t = thread::spawn(move || drop(held));
        drop(waiter);
        t.join().unwrap();
        assert_all_back(&sem, 1);
    });
}

#[test]
fn release_vs_cancel_pass() {
    // A cancel that becomes the handoff holder while a release deposits permits.
    model(|| {
        let sem = Arc::new(Semaphore::new(0));
        let first = queued(&sem, 1);
        let second = queued(&sem, 1);
        let t = thread::spawn(move || drop(first));
        sem.add_permits(2);
        drop(block_on(second).unwrap());
        t.join().unwrap();
        assert_all_back(&sem, 2);
    });
}

#[test]
fn blocking_acquire_vs_release() {
    model(|| {
        let sem = Arc::new(Semaphore::new(1));
        let held = sem.clone().try_acquire_owned().unwrap();
        let s = sem.clone();
        let t = thread::spawn(move || drop(s.blocking_acquire().unwrap()));
        drop(held);
        t.join().unwrap();
        assert_all_back(&sem, 1);
    });
}

#[test]
fn deposit_vs_holder_exit() {
    // Two deposits race with each other's handoff passes: the `fetch_add` release leaves the
    // deposit in the word and only then decides whether to take the role; neither permit may
    // be stranded in the word with waiters queued and no holder.
    model(|| {
        let sem = Arc::new(Semaphore::new(0));
        let first = queued(&sem, 1);
        let second = queued(&sem, 1);
        let s = sem.clone();
        let t = thread::spawn(move || s.add_permits(1));
        sem.add_permits(1);
        t.join().unwrap();
        drop(block_on(first).unwrap());
        drop(block_on(second).unwrap());
        assert_all_back(&sem, 2);
    });
}

#[test]
fn two_enqueues_vs_release() {
    // Two threads enqueue while a third releases: both served, one after the other.
    model3(|| {
        let sem = Arc::new(Semaphore::new(1));
        let held = sem.clone().try_acquire_owned().unwrap();
        let s1 = sem.clone();
        let t1 = thread::spawn(move || drop(block_on(s1.acquire()).unwrap()));
        let s2 = sem.clone();
        let t2 = thread::spawn(move || drop(block_on(s2.acquire()).unwrap()));
        drop(held);
        t1.join().unwrap();
        t2.join().unwrap();
        assert_all_back(&sem, 1);
    });
}

#[test]
fn lazy_enqueue_vs_emptying_pass() {
    // An enqueue that finds no holder and no deposit leaves its request on the stack without
    // a pass (DESIGN §4.2). Here it races with the pass that grants the only queued waiter and
    // empties the list: whichever way it goes, the new waiter must be served by the next
    // release, after the first waiter (FIFO), and `waiters()` must come back to zero.
    model(|| {
        let sem = Arc::new(Semaphore::new(1));
        let held = sem.clone().try_acquire_owned().unwrap();
        let first = queued(&sem, 1);
        let t = thread::spawn(move || drop(held));
        let second = queued(&sem, 1);
        let p1 = block_on(first).unwrap();
        assert_eq!(sem.available_permits(), 0, "second waiter barged past");
        drop(p1);
        let p2 = block_on(second).unwrap();
        t.join().unwrap();
        drop(p2);
        assert_all_back(&sem, 1);
    });
}

#[test]
fn lazy_enqueue_then_cancel_vs_release() {
    // Two waiters sit on the request stack with no pass run; the first is dropped while the
    // permit is released. The cancel's pass must drain both enqueues before the cancel, and
    // the permit must reach the second waiter, never be lost in the cancelled node.
    model(|| {
        let sem = Arc::new(Semaphore::new(1));
        let held = sem.clone().try_acquire_owned().unwrap();
        let first = queued(&sem, 1);
        let second = queued(&sem, 1);
        assert_eq!(sem.waiters(), 2);
        let t = thread::spawn(move || drop(first));
        drop(held);
        t.join().unwrap();
        drop(block_on(second).unwrap());
        assert_all_back(&sem, 1);
    });
}

#[test]
fn fifo_enqueue_during_release_pass() {
    // A waiter enqueued while `add_permits` runs the pass for an earlier one must not be served
    // first, and nobody may take the permit past it. (Catches an enqueue that skips its state
    // CAS when the word looks unchanged.)
    model(|| {
        let sem = Arc::new(Semaphore::new(0));
        let first = queued(&sem, 1);
        let s = sem.clone();
        let t = thread::spawn(move || s.add_permits(1));
        let mut second = queued(&sem, 1);
        t.join().unwrap();
        assert!(
            poll_once(second.as_mut()).is_pending(),
            "second served first"
        );
        assert_eq!(sem.try_acquire().unwrap_err(), TryAcquireError::NoPermits);
        drop(block_on(first).unwrap());
        drop(block_on(second).unwrap());
        assert_all_back(&sem, 1);
    });
}

#[test]
fn cancel_lazy_vs_release_vs_enqueue() {
    // A lazily enqueued waiter is dropped while the permit is released and a third thread
    // enqueues: the permit must reach the newcomer, whichever order the three take.
    model3(|| {
        let sem = Arc::new(Semaphore::new(1));
        let held = sem.clone().try_acquire_owned().unwrap();
        let a = queued(&sem, 1);
        let s = sem.clone();
        let t = thread::spawn(move || drop(block_on(s.acquire()).unwrap()));
        let r = thread::spawn(move || drop(held));
        drop(a);
        r.join().unwrap();
        t.join().unwrap();
        assert_all_back(&sem, 1);
    });
}

#[test]
fn lazy_then_close_vs_cancel() {
    // Two lazy waiters; one is dropped while the semaphore closes: the other is closed out and
    // the count of waiters returns to zero.
    model(|| {
        let sem = Arc::new(Semaphore::new(0));
        let w = queued(&sem, 1);
        let keep = queued(&sem, 1);
        let s = sem.clone();
        let t = thread::spawn(move || s.close());
        drop(w);
        t.join().unwrap();
        assert_eq!(block_on(keep).unwrap_err(), AcquireError::Closed);
        assert_eq!(sem.waiters(), 0);
    });
}

#[test]
fn waiters_never_underflow() {
    // The holder uncounts a waiter only after the enqueuer counted it: a concurrent reader never
    // sees the counter wrap.
    model(|| {
        let sem = Arc::new(Semaphore::new(0));
        let s = sem.clone();
        let t = thread::spawn(move || drop(block_on(s.acquire()).unwrap()));
        let s2 = sem.clone();
        let r = thread::spawn(move || {
            for _ in 0..2 {
                assert!(s2.waiters() <= 1, "waiters() = {}", s2.waiters());
            }
        });
        sem.add_permits(1);
        t.join().unwrap();
        r.join().unwrap();
        assert_all_back(&sem, 1);
    });
}

#[test]
fn batch_full_vs_lazy_enqueue() {
    // Under loom the wake batch holds two wakers: granting three waiters makes the pass stop
    // with a full batch, give the role back with the leftover deposit, wake, and retake the
    // role, while a fourth waiter enqueues. Nobody may barge or be stranded.
    model(|| {
        let sem = Arc::new(Semaphore::new(0));
        let a = queued(&sem, 1);
        let b = queued(&sem, 1);
        let c = queued(&sem, 1);
        let s = sem.clone();
        let t = thread::spawn(move || s.add_permits(3));
        let mut d = queued(&sem, 1);
        t.join().unwrap();
        assert!(poll_once(d.as_mut()).is_pending(), "d barged");
        let (pa, pb, pc) = (
            block_on(a).unwrap(),
            block_on(b).unwrap(),
            block_on(c).unwrap(),
        );
        drop(pa);
        drop(block_on(d).unwrap());
        drop((pb, pc));
        assert_all_back(&sem, 3);
    });
}
