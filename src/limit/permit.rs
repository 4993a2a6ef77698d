//! [`LimitPermit`]: one admission, released exactly once by `Drop`.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::limiter::Shared;
use crate::sync::Ordering::Release;
use crate::Permit;

/// One admitted unit of work. Released exactly once, when dropped: the slot goes straight to
/// the oldest waiter (or is absorbed by a pending shrink). Each acquisition yields a fresh
/// permit; there is no shared "released" flag anywhere, so retries that re-acquire cannot
/// double-release or leak.
///
/// `Send + Sync + 'static`: it keeps its limiter's state alive, so it can outlive every
/// [`Limiter`](super::Limiter) handle.
///
/// ```
/// let limiter = fairgate::limit::Limiter::builder("db").capacity(1).build()?;
/// let permit = limiter.try_acquire().unwrap();
/// assert_eq!(permit.limiter_name(), "db");
/// assert!(permit.waited().is_zero());
/// assert_eq!(limiter.in_flight(), 1);
/// drop(permit);
/// assert_eq!(limiter.in_flight(), 0);
/// # Ok::<(), fairgate::limit::ConfigError>(())
/// ```
#[must_use = "dropping a permit releases it at once"]
#[clippy::has_significant_drop]
pub struct LimitPermit {
    /// The semaphore permit (hard mode); `None` for soft limiters, which only count. It
    /// borrows the semaphore inside `shared`'s allocation (checked in `new`), so it is
    /// declared before `shared`: fields drop in order, and `Drop` takes it out even earlier.
    permit: Option<Permit<'static>>,
    shared: Arc<Shared>,
    waited: Duration,
    /// When the permit was granted; read only if an observer wants the hold time.
    granted_at: Option<Instant>,
}

impl LimitPermit {
    /// Wraps an admission (already counted, in soft mode). `permit` must come from `shared`'s
    /// own semaphore; that is checked, since the permit's borrow is extended to the lifetime
    /// of the `Arc` held beside it.
    #[inline]
    pub(crate) fn new(
        shared: Arc<Shared>,
        permit: Option<Permit<'_>>,
        waited: Duration,
        granted_at: Option<Instant>,
    ) -> Self {
        let permit = permit.map(|p| {
            assert!(
                std::ptr::eq(p.semaphore(), shared.capacity.semaphore()),
                "fairgate: a permit of another semaphore"
            );
            // Why extending the borrow is sound: a `Permit` only borrows its semaphore, and
            // the assert proves it is the one inside `shared`'s allocation. The `Arc` stored
            // beside it keeps that
            // allocation alive at a fixed address (nothing reaches a `Shared` mutably, and
            // `shared` is never reassigned), and the permit goes first: `Drop` takes it out
            // before anything else, and on an unwind fields drop in declaration order,
            // `permit` before `shared`. It is private: `LimitPermit` has no accessor, no
            // `Clone`, and (being `Drop`) cannot be destructured, so nothing separates the
            // permit from the `Arc`; leaking a `LimitPermit` leaks the `Arc` with it.
            // SAFETY: the `Arc` beside the permit outlives it, as argued above.
            unsafe { std::mem::transmute::<Permit<'_>, Permit<'static>>(p) }
        });
        LimitPermit {
            shared,
            permit,
            waited,
            granted_at,
        }
    }

    /// How long the acquisition waited in the queue (zero when admitted at once).
    ///
    /// ```
    /// let limiter = fairgate::limit::Limiter::builder("db").capacity(1).build()?;
    /// assert!(limiter.try_acquire().unwrap().waited().is_zero());
    /// # Ok::<(), fairgate::limit::ConfigError>(())
    /// ```
    pub fn waited(&self) -> Duration {
        self.waited
    }

    /// The name of the limiter this permit belongs to.
    ///
    /// ```
    /// let limiter = fairgate::limit::Limiter::builder("db").build()?;
    /// assert_eq!(limiter.try_acquire().unwrap().limiter_name(), "db");
    /// # Ok::<(), fairgate::limit::ConfigError>(())
    /// ```
    pub fn limiter_name(&self) -> &str {
        &self.shared.config.name
    }
}

impl Drop for LimitPermit {
    #[inline]
    fn drop(&mut self) {
        match self.permit.take() {
            // Hard mode: the semaphore's own count is `in_flight`.
            Some(permit) => self.shared.capacity.give_back(permit),
            // Soft mode only counts.
            None => {
                self.shared.in_flight.fetch_sub(1, Release);
            }
        }
        if let Some(observer) = &self.shared.observer {
            let held = self.granted_at.map(|t| t.elapsed()).unwrap_or_default();
            self.shared.observe_released(observer.as_ref(), held);
        }
    }
}

impl fmt::Debug for LimitPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimitPermit")
            .field("limiter", &self.limiter_name())
            .field("waited", &self.waited)
            .finish_non_exhaustive()
    }
}
