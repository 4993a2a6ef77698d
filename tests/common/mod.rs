//! Test helpers: counting wakers and manual polling.
#![allow(dead_code)]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

/// A waker that counts how often it was woken.
#[derive(Default)]
pub struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A counting waker and a handle on its count.
pub struct Counter {
    pub count: Arc<CountingWaker>,
    pub waker: Waker,
}

impl Counter {
    pub fn new() -> Self {
        let count = Arc::new(CountingWaker::default());
        let waker = Waker::from(count.clone());
        Self { count, waker }
    }

    pub fn wakes(&self) -> usize {
        self.count.0.load(Ordering::SeqCst)
    }

    pub fn poll<F: Future>(&self, fut: Pin<&mut F>) -> Poll<F::Output> {
        fut.poll(&mut Context::from_waker(&self.waker))
    }
}

impl Default for Counter {
    fn default() -> Self {
        Self::new()
    }
}
