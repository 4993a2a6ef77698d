//! What [`LimiterManager`](super::LimiterManager) reports: the outcome of an update, the state
//! of a key, and its errors.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::limit::{RejectReason, Rejected, Snapshot};

/// What [`LimiterManager::update`](super::LimiterManager::update) did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Update {
    /// The key had no limiter: one was created from the given configuration.
    Created,
    /// The key's configuration was already equal: nothing changed.
    Unchanged,
    /// Only the capacity changed (both old and new capacity positive): the key's limiter was
    /// resized in place. Work in flight keeps its permits and counts against the new
    /// capacity.
    Resized {
        /// The capacity before.
        from: usize,
        /// The capacity now.
        to: usize,
    },
    /// Anything else changed (mode, queue settings, name, or a switch to or from capacity 0):
    /// a new limiter took over the key, and the old one drains (reported as
    /// [`KeyState::Draining`] until it is idle).
    Replaced,
}

/// Whether a limiter in a [`KeySnapshot`] is the key's current one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyState {
    /// The limiter new requests for the key are admitted through.
    Active,
    /// A limiter that was replaced or removed and still has permits out or waiters queued.
    /// It is reported until it is idle, then never again.
    Draining,
}

impl KeyState {
    /// `"active"` or `"draining"` (a stable label, e.g. for metrics).
    ///
    /// ```
    /// assert_eq!(fairgate::limit::KeyState::Draining.as_str(), "draining");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Active => "active",
            KeyState::Draining => "draining",
        }
    }
}

/// One limiter of a [`LimiterManager`](super::LimiterManager): its key, whether it is active or
/// draining, and its counts.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct KeySnapshot<K> {
    /// The key.
    pub key: K,
    /// Active (the key's limiter) or draining (replaced or removed, not yet idle).
    pub state: KeyState,
    /// The limiter's own snapshot (name, mode, capacity, in-flight, waiting, ...).
    pub limiter: Snapshot,
}

/// A [`LimiterManager`](super::LimiterManager) refused a request or a setting.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ManagerError {
    /// A new key needed a limiter, the manager already holds `max_keys` keys, and none of
    /// them is idle (every one has permits out, waiters queued, or requests of the keyed
    /// layer on their way to it), so none could be evicted.
    TooManyKeys {
        /// The manager's bound.
        max_keys: usize,
    },
    /// `max_keys(0)`: a manager that can hold no key would refuse every request.
    ZeroMaxKeys,
}

impl ManagerError {
    /// This error as a [`Rejected`] from the manager called `manager` (what the keyed tower
    /// layer returns): `TooManyKeys` maps to [`RejectReason::TooManyKeys`].
    ///
    /// ```
    /// use fairgate::limit::{ManagerError, RejectReason};
    /// let rejected = ManagerError::TooManyKeys { max_keys: 2 }.to_rejected("tenants".into());
    /// assert_eq!(rejected.reason(), RejectReason::TooManyKeys);
    /// assert_eq!(rejected.limiter(), "tenants");
    /// ```
    pub fn to_rejected(&self, manager: Arc<str>) -> Rejected {
        match self {
            // A configuration error never reaches a request; map it to the closest reason.
            ManagerError::TooManyKeys { .. } | ManagerError::ZeroMaxKeys => {
                Rejected::new(RejectReason::TooManyKeys, Duration::ZERO, manager)
            }
        }
    }
}

impl fmt::Display for ManagerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManagerError::TooManyKeys { max_keys } => write!(
                f,
                "too many keys: {max_keys} keys are in use and none is idle enough to evict"
            ),
            ManagerError::ZeroMaxKeys => {
                f.write_str("max_keys is 0: the manager could hold no key")
            }
        }
    }
}

impl std::error::Error for ManagerError {}
