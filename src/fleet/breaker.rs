//! A circuit breaker in front of Redis, so that while it is unreachable every request does
//! not pay the call timeout.

// The crate is `no_std` with `std` linked: bring std's prelude and macros in.
#[allow(unused_imports)]
use std::prelude::rust_2021::*;
#[allow(unused_imports)]
use std::{format, vec};

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Opens after `threshold` consecutive failures; stays open for `cooldown`, then lets calls
/// through again (half-open): one success closes it, one failure re-opens it.
pub(crate) struct Breaker {
    base: Instant,
    threshold: u32,
    cooldown_ms: u64,
    failures: AtomicU32,
    /// Milliseconds since `base` until which the breaker is open (0 = closed).
    open_until: AtomicU64,
}

impl Breaker {
    pub(crate) fn new(threshold: u32, cooldown: Duration) -> Breaker {
        Breaker {
            base: Instant::now(),
            threshold,
            cooldown_ms: cooldown.as_millis() as u64,
            failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.base.elapsed().as_millis() as u64
    }

    /// True while calls should not be attempted.
    pub(crate) fn is_open(&self) -> bool {
        self.now_ms() < self.open_until.load(Relaxed)
    }

    pub(crate) fn success(&self) {
        self.failures.store(0, Relaxed);
        self.open_until.store(0, Relaxed);
    }

    pub(crate) fn failure(&self) {
        let n = self.failures.fetch_add(1, Relaxed) + 1;
        if n >= self.threshold {
            self.open_until
                .store(self.now_ms() + self.cooldown_ms.max(1), Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_closes_on_success() {
        let b = Breaker::new(2, Duration::from_secs(60));
        b.failure();
        assert!(!b.is_open());
        b.failure();
        assert!(b.is_open());
        b.success();
        assert!(!b.is_open());
    }

    #[test]
    fn half_opens_after_cooldown() {
        let b = Breaker::new(1, Duration::from_millis(1));
        b.failure();
        std::thread::sleep(Duration::from_millis(5));
        assert!(!b.is_open());
    }
}
