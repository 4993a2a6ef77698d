//! Loom models of the enqueue side: an enqueue that leaves its request on the stack for a later
//! pass (lazy enqueue), enqueues that race a pass or each other, the batch-full retake, and the
//! waiter count. Each model ends by asserting that every permit is back. DESIGN.md §9 lists the
//! races and the bound of each model.
//!
//! Run: `RUSTFLAGS="--cfg loom -C debug-assertions" cargo test --release --test loom_enqueue`
#![cfg(loom)]

use std::sync::Arc;

use fairgate::{AcquireError, Semaphore, TryAcquireError};
use loom::future::block_on;
use loom::thread;

mod loom_support;
use loom_support::{assert_all_back, model, model3, poll_once, queued};

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

#[test]
fn enqueue_during_pass_leaves_queued_set() {
    // A release's pass serves the first of two waiters while a third enqueues. Two waiters are
    // still queued when the pass ends, so the word must still say `QUEUED`: the next release is
    // a deposit for them, never a free permit that `try_acquire` could take past them.
    model(|| {
        let sem = Arc::new(Semaphore::new(0));
        let a = queued(&sem, 1);
        let b = queued(&sem, 1);
        let s = sem.clone();
        let t = thread::spawn(move || s.add_permits(1));
        let c = queued(&sem, 1);
        t.join().unwrap();
        drop(block_on(a).unwrap());
        assert!(
            matches!(sem.try_acquire(), Err(TryAcquireError::NoPermits)),
            "a released permit was free while two waiters were queued"
        );
        drop(block_on(b).unwrap());
        drop(block_on(c).unwrap());
        assert_all_back(&sem, 1);
    });
}
