//! The acquire futures. Each one carries its waiter node inline, so queueing allocates nothing.

use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use super::error::AcquireError;
use super::permit::Permit;
use super::waiter::Waiter;
use super::Semaphore;

/// Future returned by [`Semaphore::acquire`] and [`Semaphore::acquire_many`].
///
/// # Cancel safety
/// Cancel-safe: dropping it at any point loses nothing. If it was queued it leaves the queue;
/// permits already handed to it (partially, or fully but not yet polled) go to the next waiter.
/// Dropping a future that is still queued may wait briefly for a concurrent handoff pass to
/// finish with its node (see DESIGN.md §7); no other operation ever waits.
///
/// Polling again after it returned `Ready` panics.
#[must_use = "futures do nothing unless polled"]
pub struct Acquire<'a> {
    sem: &'a Semaphore,
    waiter: Waiter,
}

impl<'a> Acquire<'a> {
    pub(crate) fn new(sem: &'a Semaphore, n: usize) -> Self {
        Self {
            sem,
            waiter: Waiter::new(n),
        }
    }

    /// The number of permits this future asks for.
    ///
    /// ```
    /// let sem = fairgate::Semaphore::new(0);
    /// assert_eq!(sem.acquire_many(3).num_permits(), 3);
    /// ```
    pub fn num_permits(&self) -> usize {
        self.waiter.requested()
    }
}

impl<'a> Future for Acquire<'a> {
    type Output = Result<Permit<'a>, AcquireError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Only a shared reference is ever made to the pinned future.
        let this = self.into_ref().get_ref();
        if let Some(n) = this.waiter.try_fast(this.sem) {
            return Poll::Ready(Ok(Permit::new(this.sem, n)));
        }
        // SAFETY: `this` is pinned (we came from `Pin<&mut Self>`) and always uses `this.sem`.
        let poll = unsafe { this.waiter.poll_acquire(this.sem, cx) };
        poll.map(|r| r.map(|n| Permit::new(this.sem, n)))
    }
}

impl Drop for Acquire<'_> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: a future that was polled was pinned, and `Drop` runs before its memory is
        // reused; one that was never polled was never published, which `cancel` detects.
        unsafe { self.waiter.cancel(self.sem) };
    }
}

impl fmt::Debug for Acquire<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acquire")
            .field("permits", &self.num_permits())
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "alloc")]
pub use owned::AcquireOwned;

#[cfg(feature = "alloc")]
mod owned {
    use alloc::sync::Arc;
    use core::fmt;
    use core::future::Future;
    use core::pin::Pin;
    use core::task::{Context, Poll};

    use super::Semaphore;
    use crate::semaphore::error::{AcquireError, TryAcquireError};
    use crate::semaphore::permit::OwnedPermit;
    use crate::semaphore::waiter::Waiter;

    /// Future returned by [`Semaphore::acquire_owned`]: like [`Acquire`](crate::Acquire) but
    /// holds an `Arc` of the semaphore, so it and its permit are `'static`.
    ///
    /// # Cancel safety
    /// As for [`Acquire`](crate::Acquire): dropping it loses nothing and gives up its place.
    #[must_use = "futures do nothing unless polled"]
    pub struct AcquireOwned {
        sem: Arc<Semaphore>,
        waiter: Waiter,
    }

    impl AcquireOwned {
        /// The number of permits this future asks for.
        ///
        /// ```
        /// let sem = std::sync::Arc::new(fairgate::Semaphore::new(0));
        /// assert_eq!(sem.acquire_many_owned(3).num_permits(), 3);
        /// ```
        pub fn num_permits(&self) -> usize {
            self.waiter.requested()
        }
    }

    impl Future for AcquireOwned {
        type Output = Result<OwnedPermit, AcquireError>;

        #[inline]
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            let this = self.into_ref().get_ref();
            if let Some(n) = this.waiter.try_fast(&this.sem) {
                return Poll::Ready(Ok(OwnedPermit::new(Arc::clone(&this.sem), n)));
            }
            // SAFETY: `this` is pinned and always uses the same semaphore.
            let poll = unsafe { this.waiter.poll_acquire(&this.sem, cx) };
            poll.map(|r| r.map(|n| OwnedPermit::new(Arc::clone(&this.sem), n)))
        }
    }

    impl Drop for AcquireOwned {
        #[inline]
        fn drop(&mut self) {
            // SAFETY: as for `Acquire`: pinned if ever polled, and `cancel` handles the rest.
            unsafe { self.waiter.cancel(&self.sem) };
        }
    }

    impl fmt::Debug for AcquireOwned {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("AcquireOwned")
                .field("permits", &self.num_permits())
                .finish_non_exhaustive()
        }
    }

    /// Owned (`Arc`) variants. Available with the `alloc` feature.
    impl Semaphore {
        /// Waits for one permit owned together with an `Arc` of the semaphore.
        ///
        /// # Cancel safety
        /// As for [`acquire`](Semaphore::acquire).
        ///
        /// ```
        /// # futures::executor::block_on(async {
        /// use std::sync::Arc;
        /// let sem = Arc::new(fairgate::Semaphore::new(1));
        /// let permit = sem.clone().acquire_owned().await.unwrap();
        /// assert_eq!(permit.num_permits(), 1);
        /// # });
        /// ```
        pub fn acquire_owned(self: Arc<Self>) -> AcquireOwned {
            self.acquire_many_owned(1)
        }

        /// Waits for `n` permits owned together with an `Arc` of the semaphore.
        ///
        /// # Cancel safety
        /// As for [`acquire_many`](Semaphore::acquire_many).
        ///
        /// # Examples
        /// ```
        /// # futures::executor::block_on(async {
        /// use std::sync::Arc;
        /// let sem = Arc::new(fairgate::Semaphore::new(3));
        /// let permit = sem.clone().acquire_many_owned(2).await.unwrap();
        /// let task = std::thread::spawn(move || drop(permit)); // 'static: it can move
        /// task.join().unwrap();
        /// assert_eq!(sem.available_permits(), 3);
        /// # });
        /// ```
        pub fn acquire_many_owned(self: Arc<Self>, n: usize) -> AcquireOwned {
            AcquireOwned {
                sem: self,
                waiter: Waiter::new(n),
            }
        }

        /// Takes one owned permit if one is free and nobody is queued.
        ///
        /// ```
        /// use std::sync::Arc;
        /// use fairgate::{Semaphore, TryAcquireError};
        /// let sem = Arc::new(Semaphore::new(1));
        /// let permit = sem.clone().try_acquire_owned().unwrap();
        /// assert_eq!(sem.clone().try_acquire_owned().unwrap_err(), TryAcquireError::NoPermits);
        /// # drop(permit);
        /// ```
        pub fn try_acquire_owned(self: Arc<Self>) -> Result<OwnedPermit, TryAcquireError> {
            self.try_acquire_many_owned(1)
        }

        /// Takes `n` owned permits if they are free and nobody is queued.
        ///
        /// ```
        /// use std::sync::Arc;
        /// let sem = Arc::new(fairgate::Semaphore::new(3));
        /// let permit = sem.clone().try_acquire_many_owned(3).unwrap();
        /// assert_eq!((permit.num_permits(), sem.available_permits()), (3, 0));
        /// # drop(permit);
        /// ```
        pub fn try_acquire_many_owned(
            self: Arc<Self>,
            n: usize,
        ) -> Result<OwnedPermit, TryAcquireError> {
            self.try_take_checked(n)?;
            Ok(OwnedPermit::new(self, n))
        }
    }
}
