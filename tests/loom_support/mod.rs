//! What every loom model file shares: the bounded model runner and the small helpers that queue
//! a waiter and check that everything came back.
#![allow(dead_code)] // each model file uses its own subset

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use fairgate::{AcquireOwned, Semaphore};

/// Runs a model with a preemption bound and a branch limit (`LOOM_MAX_PREEMPTIONS` and
/// `LOOM_MAX_BRANCHES` override them). Bounds are set per model as high as CI can afford:
/// 3 for two-thread models, 2 for three-thread ones (DESIGN.md §9).
pub fn model_cfg(bound: usize, branches: usize, f: impl Fn() + Sync + Send + 'static) {
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
pub fn model(f: impl Fn() + Sync + Send + 'static) {
    model_cfg(3, 1_000, f)
}

/// A three-thread model: preemption bound 2, and room for its longer schedules.
pub fn model3(f: impl Fn() + Sync + Send + 'static) {
    model_cfg(2, 20_000, f)
}

/// Polls once with a waker that does nothing.
pub fn poll_once<F: Future + ?Sized>(f: Pin<&mut F>) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(Waker::noop()))
}

/// An owned acquire that has been polled once and is queued.
pub fn queued(sem: &Arc<Semaphore>, n: usize) -> Pin<Box<AcquireOwned>> {
    let mut fut = Box::pin(sem.clone().acquire_many_owned(n));
    assert!(poll_once(fut.as_mut()).is_pending(), "expected to queue");
    fut
}

/// Polls a queued acquire once and expects its permits, because every call that could serve it
/// has returned; drops them.
pub fn assert_served(mut fut: Pin<Box<AcquireOwned>>) {
    match poll_once(fut.as_mut()) {
        Poll::Ready(permit) => drop(permit.unwrap()),
        Poll::Pending => panic!("the permits did not reach the waiter"),
    }
}

/// Everything returned: no waiter left, all permits free.
pub fn assert_all_back(sem: &Semaphore, total: usize) {
    assert_eq!(sem.total_permits(), total, "total changed");
    assert_eq!(sem.available_permits(), total, "permits lost or duplicated");
    assert_eq!(sem.waiters(), 0, "waiter stranded");
}
