//! Permits: once-only RAII tokens. Dropping one releases its permits exactly once; there is
//! no other way to release (no `Clone`, no explicit release).

use core::fmt;

use super::Semaphore;

/// Permits borrowed from a [`Semaphore`]; released when dropped.
///
/// # Examples
/// ```
/// let sem = fairgate::Semaphore::new(4);
/// let mut p = sem.try_acquire_many(4).unwrap();
/// let q = p.split(1).unwrap();
/// assert_eq!((p.num_permits(), q.num_permits()), (3, 1));
/// p.merge(q);
/// assert_eq!(p.num_permits(), 4);
/// drop(p);
/// assert_eq!(sem.available_permits(), 4);
/// ```
#[must_use = "dropping a permit releases it at once"]
#[clippy::has_significant_drop]
#[doc(alias = "SemaphorePermit")]
pub struct Permit<'a> {
    sem: &'a Semaphore,
    permits: usize,
}

impl<'a> Permit<'a> {
    pub(crate) fn new(sem: &'a Semaphore, permits: usize) -> Self {
        Self { sem, permits }
    }

    /// How many permits this token holds.
    ///
    /// ```
    /// let sem = fairgate::Semaphore::new(2);
    /// assert_eq!(sem.try_acquire_many(2).unwrap().num_permits(), 2);
    /// ```
    pub fn num_permits(&self) -> usize {
        self.permits
    }

    /// The semaphore the permits came from.
    ///
    /// ```
    /// let sem = fairgate::Semaphore::new(1);
    /// let p = sem.try_acquire().unwrap();
    /// assert!(std::ptr::eq(p.semaphore(), &sem));
    /// ```
    pub fn semaphore(&self) -> &'a Semaphore {
        self.sem
    }

    /// Consumes the token without releasing: its permits leave the semaphore for good.
    ///
    /// ```
    /// let sem = fairgate::Semaphore::new(2);
    /// sem.try_acquire().unwrap().forget();
    /// assert_eq!(sem.total_permits(), 1);
    /// ```
    pub fn forget(mut self) {
        self.sem.forget_held(core::mem::take(&mut self.permits));
    }

    /// Moves `n` permits into a new token. Returns `None` (changing nothing) if this token
    /// holds fewer than `n`.
    ///
    /// ```
    /// let sem = fairgate::Semaphore::new(3);
    /// let mut p = sem.try_acquire_many(3).unwrap();
    /// let one = p.split(1).unwrap();
    /// assert!(p.split(5).is_none());
    /// assert_eq!((p.num_permits(), one.num_permits()), (2, 1));
    /// drop(one);
    /// assert_eq!(sem.available_permits(), 1);
    /// # drop(p);
    /// ```
    pub fn split(&mut self, n: usize) -> Option<Self> {
        self.permits = self.permits.checked_sub(n)?;
        Some(Self::new(self.sem, n))
    }

    /// Absorbs `other`'s permits into this token.
    ///
    /// # Panics
    /// If `other` belongs to a different semaphore (before anything changes).
    ///
    /// ```
    /// let sem = fairgate::Semaphore::new(3);
    /// let mut p = sem.try_acquire().unwrap();
    /// p.merge(sem.try_acquire_many(2).unwrap());
    /// assert_eq!(p.num_permits(), 3);
    /// # drop(p);
    /// ```
    pub fn merge(&mut self, mut other: Self) {
        assert!(
            core::ptr::eq(self.sem, other.sem),
            "fairgate: Permit::merge: permits belong to different semaphores"
        );
        // Cannot overflow: both counts are part of the semaphore's total ≤ MAX_PERMITS.
        self.permits = self
            .permits
            .checked_add(core::mem::take(&mut other.permits))
            .expect("permit counts are bounded by MAX_PERMITS");
    }
}

impl Drop for Permit<'_> {
    #[inline]
    fn drop(&mut self) {
        self.sem.release(self.permits);
    }
}

impl fmt::Debug for Permit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("permits", &self.permits)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "alloc")]
pub use owned::OwnedPermit;

#[cfg(feature = "alloc")]
mod owned {
    use alloc::sync::Arc;
    use core::fmt;

    use super::Semaphore;

    /// Permits owned together with an `Arc` of their [`Semaphore`]: `'static`, so they can
    /// move into spawned tasks. Released when dropped.
    ///
    /// # Examples
    /// ```
    /// use std::sync::Arc;
    /// let sem = Arc::new(fairgate::Semaphore::new(1));
    /// let permit = sem.clone().try_acquire_owned().unwrap();
    /// std::thread::spawn(move || drop(permit)).join().unwrap();
    /// assert_eq!(sem.available_permits(), 1);
    /// ```
    #[must_use = "dropping a permit releases it at once"]
    #[clippy::has_significant_drop]
    #[doc(alias = "OwnedSemaphorePermit")]
    pub struct OwnedPermit {
        sem: Arc<Semaphore>,
        permits: usize,
    }

    impl OwnedPermit {
        pub(crate) fn new(sem: Arc<Semaphore>, permits: usize) -> Self {
            Self { sem, permits }
        }

        /// How many permits this token holds.
        ///
        /// ```
        /// let sem = std::sync::Arc::new(fairgate::Semaphore::new(2));
        /// assert_eq!(sem.try_acquire_many_owned(2).unwrap().num_permits(), 2);
        /// ```
        pub fn num_permits(&self) -> usize {
            self.permits
        }

        /// The semaphore the permits came from.
        ///
        /// ```
        /// use std::sync::Arc;
        /// let sem = Arc::new(fairgate::Semaphore::new(1));
        /// let p = sem.clone().try_acquire_owned().unwrap();
        /// assert!(Arc::ptr_eq(p.semaphore(), &sem));
        /// ```
        pub fn semaphore(&self) -> &Arc<Semaphore> {
            &self.sem
        }

        /// Consumes the token without releasing: its permits leave the semaphore for good.
        ///
        /// ```
        /// use std::sync::Arc;
        /// let sem = Arc::new(fairgate::Semaphore::new(2));
        /// sem.clone().try_acquire_owned().unwrap().forget();
        /// assert_eq!((sem.total_permits(), sem.available_permits()), (1, 1));
        /// ```
        pub fn forget(mut self) {
            self.sem.forget_held(core::mem::take(&mut self.permits));
        }

        /// Moves `n` permits into a new token (sharing the semaphore). Returns `None`
        /// (changing nothing) if this token holds fewer than `n`.
        ///
        /// ```
        /// use std::sync::Arc;
        /// let sem = Arc::new(fairgate::Semaphore::new(3));
        /// let mut p = sem.clone().try_acquire_many_owned(3).unwrap();
        /// let one = p.split(1).unwrap();
        /// std::thread::spawn(move || drop(one)).join().unwrap();
        /// assert_eq!((p.num_permits(), sem.available_permits()), (2, 1));
        /// assert!(p.split(3).is_none());
        /// # drop(p);
        /// ```
        pub fn split(&mut self, n: usize) -> Option<Self> {
            self.permits = self.permits.checked_sub(n)?;
            Some(Self::new(Arc::clone(&self.sem), n))
        }

        /// Absorbs `other`'s permits into this token.
        ///
        /// # Panics
        /// If `other` belongs to a different semaphore (before anything changes).
        ///
        /// ```
        /// use std::sync::Arc;
        /// let sem = Arc::new(fairgate::Semaphore::new(3));
        /// let mut p = sem.clone().try_acquire_owned().unwrap();
        /// p.merge(sem.clone().try_acquire_many_owned(2).unwrap());
        /// assert_eq!(p.num_permits(), 3);
        /// drop(p);
        /// assert_eq!(sem.available_permits(), 3);
        /// ```
        pub fn merge(&mut self, mut other: Self) {
            assert!(
                Arc::ptr_eq(&self.sem, &other.sem),
                "fairgate: OwnedPermit::merge: permits belong to different semaphores"
            );
            self.permits = self
                .permits
                .checked_add(core::mem::take(&mut other.permits))
                .expect("permit counts are bounded by MAX_PERMITS");
        }
    }

    impl Drop for OwnedPermit {
        #[inline]
        fn drop(&mut self) {
            self.sem.release(self.permits);
        }
    }

    impl fmt::Debug for OwnedPermit {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("OwnedPermit")
                .field("permits", &self.permits)
                .finish_non_exhaustive()
        }
    }
}
