//! What a downstream crate's loom suite looks like: code built on fairgate's public API,
//! checked by loom against a loom-instrumented fairgate (the crate swaps its atomics for
//! loom's whenever it is built with `--cfg loom`; nothing else to enable).
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test --release --test loom_downstream`
#![cfg(loom)]

use std::sync::Arc;

use fairgate::Semaphore;
use loom::future::block_on;
use loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use loom::thread;

/// A downstream type: a connection pool that lends at most `size` connections.
struct Pool {
    limit: Semaphore,
    lent: AtomicUsize,
}

impl Pool {
    fn new(size: usize) -> Self {
        Self {
            limit: Semaphore::new(size),
            lent: AtomicUsize::new(0),
        }
    }

    async fn with_connection(&self, work: impl FnOnce(usize)) {
        let _permit = self.limit.acquire().await.expect("pool never closes");
        let now = self.lent.fetch_add(1, SeqCst) + 1;
        work(now);
        self.lent.fetch_sub(1, SeqCst);
    }
}

#[test]
fn pool_never_lends_more_than_its_size() {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound.get_or_insert(2);
    builder.check(|| {
        let pool = Arc::new(Pool::new(1));
        let other = pool.clone();
        let t = thread::spawn(move || {
            block_on(other.with_connection(|lent| assert_eq!(lent, 1)));
        });
        block_on(pool.with_connection(|lent| assert_eq!(lent, 1)));
        t.join().unwrap();
        assert_eq!(pool.limit.available_permits(), 1);
    });
}
