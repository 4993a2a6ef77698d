//! Error types. Each says exactly why an operation did not give permits.

use core::fmt;

use super::state::MAX_PERMITS;

/// Why an [`acquire`](crate::Semaphore::acquire) did not produce a permit.
///
/// Non-exhaustive: match with a wildcard arm, so that new reasons can be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AcquireError {
    /// The semaphore was closed before the permits were granted.
    Closed,
    /// More permits were requested than a semaphore can ever hold
    /// ([`Semaphore::MAX_PERMITS`](crate::Semaphore::MAX_PERMITS)). Reported at once: such a
    /// request could never be satisfied.
    TooManyPermits {
        /// The number of permits asked for.
        requested: usize,
    },
}

impl fmt::Display for AcquireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed => f.write_str("semaphore closed"),
            Self::TooManyPermits { requested } => write!(
                f,
                "requested {requested} permits, more than MAX_PERMITS ({MAX_PERMITS})"
            ),
        }
    }
}

/// Why a [`try_acquire`](crate::Semaphore::try_acquire) did not produce a permit.
///
/// Non-exhaustive: match with a wildcard arm, so that new reasons can be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TryAcquireError {
    /// The semaphore is closed.
    Closed,
    /// Not enough free permits, or other acquirers are queued (newcomers never barge).
    NoPermits,
    /// More permits were requested than a semaphore can ever hold
    /// ([`Semaphore::MAX_PERMITS`](crate::Semaphore::MAX_PERMITS)).
    TooManyPermits {
        /// The number of permits asked for.
        requested: usize,
    },
}

impl fmt::Display for TryAcquireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed => f.write_str("semaphore closed"),
            Self::NoPermits => f.write_str("no permits available"),
            Self::TooManyPermits { requested } => write!(
                f,
                "requested {requested} permits, more than MAX_PERMITS ({MAX_PERMITS})"
            ),
        }
    }
}

/// [`try_add_permits`](crate::Semaphore::try_add_permits) would have pushed the semaphore's
/// total past [`Semaphore::MAX_PERMITS`](crate::Semaphore::MAX_PERMITS). Nothing was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddPermitsError {
    /// The permits asked to be added.
    pub added: usize,
    /// The permits the semaphore had in total (free, held and queued-for) at the time.
    pub total: usize,
}

impl fmt::Display for AddPermitsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "adding {} permits to a semaphore with {} in total would exceed MAX_PERMITS ({MAX_PERMITS})",
            self.added, self.total
        )
    }
}

#[cfg(feature = "std")]
impl std::error::Error for AcquireError {}
#[cfg(feature = "std")]
impl std::error::Error for TryAcquireError {}
#[cfg(feature = "std")]
impl std::error::Error for AddPermitsError {}
