//! Blocking acquire for plain threads (feature `std`).

use super::error::AcquireError;
use super::permit::Permit;
use super::Semaphore;

impl Semaphore {
    /// Blocks the current thread until one permit is granted. Same FIFO queue as the async
    /// acquires. Do not call it from inside an async task.
    ///
    /// ```
    /// let sem = fairgate::Semaphore::new(1);
    /// let permit = sem.blocking_acquire().unwrap();
    /// assert_eq!(permit.num_permits(), 1);
    /// ```
    pub fn blocking_acquire(&self) -> Result<Permit<'_>, AcquireError> {
        self.blocking_acquire_many(1)
    }

    /// Blocks the current thread until `n` permits are granted.
    ///
    /// ```
    /// use std::sync::Arc;
    /// let sem = Arc::new(fairgate::Semaphore::new(1));
    /// let held = sem.try_acquire().unwrap();
    /// let s = sem.clone();
    /// let waiter = std::thread::spawn(move || s.blocking_acquire_many(2).unwrap().num_permits());
    /// sem.add_permits(1);
    /// drop(held); // the waiter now has both permits
    /// assert_eq!(waiter.join().unwrap(), 2);
    /// ```
    pub fn blocking_acquire_many(&self, n: usize) -> Result<Permit<'_>, AcquireError> {
        block_on(self.acquire_many(n))
    }
}

#[cfg(not(loom))]
fn block_on<F: core::future::Future>(future: F) -> F::Output {
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};
    use std::thread::{self, Thread};

    struct Unparker(Thread);
    impl Wake for Unparker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }

    let mut future = core::pin::pin!(future);
    let waker = Waker::from(Arc::new(Unparker(thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        // A wake that arrives before park makes park return at once (the token is kept).
        thread::park();
    }
}

#[cfg(loom)]
fn block_on<F: core::future::Future>(future: F) -> F::Output {
    loom::future::block_on(future)
}
