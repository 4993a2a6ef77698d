//! Instrumentation of the handoff pass for its checks: the counters the loom models assert the
//! wake and helping bounds with, and the fault hook of the unit test that proves a panic inside
//! a pass aborts. Nothing here exists in a normal build.

#[cfg(loom)]
use crate::sync::Ordering::Relaxed;

/// Per-semaphore counters that the loom models assert the wake and helping bounds with.
/// Untracked atomics: statistics, never synchronisation.
#[cfg(loom)]
#[derive(Debug, Default)]
pub(crate) struct PassStats {
    /// Passes started while the holder's batch held a waker not yet woken.
    passes_with_unwoken: crate::sync::untracked::AtomicUsize,
    /// The most passes one tenure ran while the word showed no deposit.
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

    /// (passes started with an unwoken waker, most request-only passes in one tenure).
    pub(crate) fn snapshot(&self) -> (usize, usize) {
        (
            self.passes_with_unwoken.load(Relaxed),
            self.max_request_passes.load(Relaxed),
        )
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
