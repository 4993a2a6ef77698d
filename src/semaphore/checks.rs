//! Instrumentation of the handoff pass for its checks: the counters the loom models assert the
//! wake and helping bounds with, and the fault hook of the unit test that proves a panic inside
//! a pass aborts. In a normal build only `RequestPasses` exists, zero-sized and free.

#[cfg(loom)]
use crate::sync::Ordering::Relaxed;

/// Per-semaphore counters that the loom models assert the wake and helping bounds with.
/// Untracked atomics: statistics, never synchronisation.
#[cfg(loom)]
#[derive(Debug, Default)]
pub(crate) struct PassStats {
    /// Passes started while the holder's batch held a waker not yet woken.
    passes_with_unwoken: crate::sync::untracked::AtomicUsize,
    /// The longest run of passes without a deposit in one `run_handoff` call ([`RequestPasses`]).
    max_request_passes: crate::sync::untracked::AtomicUsize,
}

#[cfg(loom)]
impl PassStats {
    pub(super) fn pass_started(&self, batch_holds_wakers: bool) {
        if batch_holds_wakers {
            self.passes_with_unwoken.fetch_add(1, Relaxed);
        }
    }

    pub(super) fn request_passes(&self, n: usize) {
        self.max_request_passes.fetch_max(n, Relaxed);
    }

    /// (passes started with an unwoken waker, the longest run of request-only passes in one
    /// `run_handoff` call).
    pub(crate) fn snapshot(&self) -> (usize, usize) {
        (
            self.passes_with_unwoken.load(Relaxed),
            self.max_request_passes.load(Relaxed),
        )
    }
}

/// The helping-bound counter of one `run_handoff` call: passes in a row since the last pass
/// that had a reason other than requests to run (a deposit or a close: I10), that pass
/// included, carried across the call's tenures so that giving the role back and taking it again
/// at once cannot hide extra helping from the model. The helping bound says it never exceeds
/// `REQUEST_PASSES`. Zero-sized and free outside loom.
#[derive(Default)]
pub(super) struct RequestPasses {
    #[cfg(loom)]
    in_a_row: usize,
}

impl RequestPasses {
    /// A pass is about to run with `pool` permits in hand and `word` the state word its holder
    /// last read: deposits in either, or a close, start a new run of passes; anything else
    /// extends it. Keeps the longest run any call had.
    #[inline(always)]
    pub(super) fn pass(&mut self, sem: &super::Semaphore, pool: usize, word: usize) {
        #[cfg(loom)]
        {
            use super::state::{permits, CLOSED};
            let more_than_requests = pool != 0 || permits(word) != 0 || word & CLOSED != 0;
            self.in_a_row = if more_than_requests {
                1
            } else {
                self.in_a_row + 1
            };
            sem.pass_stats.request_passes(self.in_a_row);
        }
        #[cfg(not(loom))]
        let _ = (sem, pool, word);
    }
}

/// The counters themselves: a bound model that asserts "at most N" passes also when nothing is
/// counted, so what is counted is pinned here. Run with the loom models (`--lib`).
#[cfg(all(test, loom))]
mod pass_stats_tests {
    use super::PassStats;

    #[test]
    fn counts_passes_started_with_an_unwoken_waker() {
        let stats = PassStats::default();
        stats.pass_started(false);
        assert_eq!(stats.snapshot(), (0, 0));
        stats.pass_started(true);
        stats.pass_started(true);
        assert_eq!(stats.snapshot(), (2, 0));
    }

    #[test]
    fn a_deposit_or_a_close_starts_a_new_run_of_passes() {
        use crate::semaphore::state::{from_permits, CLOSED, QUEUED};
        // A semaphore holds loom atomics, which exist only inside a model.
        loom::model(|| {
            let sem = crate::Semaphore::new(0);
            let mut passes = super::RequestPasses::default();
            passes.pass(&sem, 0, QUEUED);
            passes.pass(&sem, 0, QUEUED);
            assert_eq!(sem.loom_pass_stats().1, 2);
            passes.pass(&sem, 0, QUEUED | from_permits(3));
            passes.pass(&sem, 0, QUEUED);
            assert_eq!(
                sem.loom_pass_stats().1,
                2,
                "a deposit in the word restarts the count"
            );
            passes.pass(&sem, 2, QUEUED);
            passes.pass(&sem, 0, QUEUED);
            assert_eq!(
                sem.loom_pass_stats().1,
                2,
                "a pool in hand restarts the count"
            );
            passes.pass(&sem, 0, QUEUED | CLOSED);
            passes.pass(&sem, 0, QUEUED);
            assert_eq!(sem.loom_pass_stats().1, 2, "a close restarts the count");
            passes.pass(&sem, 0, QUEUED);
            assert_eq!(sem.loom_pass_stats().1, 3);
        });
    }

    #[test]
    fn a_lone_request_pass_counts_one() {
        use core::future::Future;
        use core::task::{Context, Waker};
        loom::model(|| {
            let sem = crate::Semaphore::new(0);
            let mut acquire = std::boxed::Box::pin(sem.acquire());
            let mut cx = Context::from_waker(Waker::noop());
            assert!(acquire.as_mut().poll(&mut cx).is_pending());
            // The enqueue left its request on the stack; the cancel runs one pass for it alone.
            drop(acquire);
            assert_eq!(sem.loom_pass_stats().1, 1);
        });
    }

    #[test]
    fn keeps_the_longest_run_of_any_call() {
        let stats = PassStats::default();
        stats.request_passes(1);
        assert_eq!(stats.snapshot(), (0, 1));
        stats.request_passes(3);
        stats.request_passes(2);
        assert_eq!(stats.snapshot(), (0, 3));
    }
}

/// Fault injection for the unit test that proves a panic in a pass aborts.
#[cfg(all(test, not(loom)))]
pub(crate) mod test_hooks {
    use crate::sync::untracked::{AtomicBool, Ordering::Relaxed};

    pub(crate) static FAIL_IN_PASS: AtomicBool = AtomicBool::new(false);

    pub(crate) fn maybe_fail() {
        if FAIL_IN_PASS.load(Relaxed) {
            panic!("fairgate test: injected panic inside a handoff pass");
        }
    }
}

#[cfg(all(test, not(loom), feature = "std"))]
mod tests {
    use std::process::{Command, Stdio};
    use std::string::String;
    use std::time::{Duration, Instant};

    /// A panic while the role is held aborts the process (`AbortOnUnwind`) instead of leaving
    /// `HANDOFF` set for ever. Runs the child below in a subprocess, since it must abort.
    #[test]
    fn panic_in_pass_aborts() {
        let exe = std::env::current_exe().unwrap();
        let mut child = Command::new(exe)
            .args([
                "--exact",
                "semaphore::checks::tests::panic_in_pass_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("FAIRGATE_PANIC_IN_PASS_CHILD", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Without the guard the child unwinds with HANDOFF set, and dropping its queued
        // acquire then spins for ever: bound the wait so that this fails instead of hanging.
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                child.kill().unwrap();
                panic!("the child wedged: a panic inside a pass left the role held");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "child survived: {stderr}");
        assert!(
            stderr.contains("injected panic inside a handoff pass")
                && stderr.contains("panic while holding the semaphore's handoff role"),
            "unexpected child output: {stderr}"
        );
        // Aborted, not a test failure: a failing test exits with code 101.
        assert_ne!(out.status.code(), Some(101), "child unwound: {stderr}");
    }

    #[test]
    fn panic_in_pass_child() {
        if std::env::var_os("FAIRGATE_PANIC_IN_PASS_CHILD").is_none() {
            return;
        }
        let sem = crate::Semaphore::new(0);
        let mut waiting = core::pin::pin!(sem.acquire());
        let mut cx = core::task::Context::from_waker(core::task::Waker::noop());
        assert!(core::future::Future::poll(waiting.as_mut(), &mut cx).is_pending());
        super::test_hooks::FAIL_IN_PASS.store(true, core::sync::atomic::Ordering::Relaxed);
        sem.add_permits(1); // runs a pass: the injected panic must abort, not unwind
        unreachable!("the pass should have aborted the process");
    }
}
