//! [`HeldPermit`]: what a request holds once admitted, whatever the admission source.

use core::fmt;

#[cfg(feature = "redis")]
use std::boxed::Box;

#[cfg(feature = "redis")]
use crate::fleet::FleetPermit;
use crate::limit::LimitPermit;

/// The permit of one admitted request, held by the response future and then by the
/// [`LimitedBody`](super::LimitedBody); dropping it releases it (a fleet permit releases its
/// local permit at once and hands its lease to the background releaser).
///
/// An enum rather than a boxed trait object so that the local path (a [`Limiter`] or a keyed
/// manager) allocates nothing. The fleet permit is boxed: it is several times the size of a
/// [`LimitPermit`], and unboxed it would grow every [`LimitedBody`](super::LimitedBody) of
/// the local path too; its admission costs a Redis round trip, next to which one allocation
/// does not show.
///
/// [`Limiter`]: crate::limit::Limiter
pub(crate) enum HeldPermit {
    Local(LimitPermit),
    #[cfg(feature = "redis")]
    Fleet(Box<FleetPermit>),
}

#[cfg(feature = "tonic")]
impl HeldPermit {
    /// How long the request waited for this permit.
    pub(crate) fn waited(&self) -> core::time::Duration {
        match self {
            HeldPermit::Local(permit) => permit.waited(),
            #[cfg(feature = "redis")]
            HeldPermit::Fleet(permit) => permit.waited(),
        }
    }

    /// The name of the (local) limiter that granted it.
    pub(crate) fn limiter_name(&self) -> &str {
        match self {
            HeldPermit::Local(permit) => permit.limiter_name(),
            #[cfg(feature = "redis")]
            HeldPermit::Fleet(permit) => permit.limiter_name(),
        }
    }
}

impl From<LimitPermit> for HeldPermit {
    fn from(permit: LimitPermit) -> Self {
        HeldPermit::Local(permit)
    }
}

#[cfg(feature = "redis")]
impl From<FleetPermit> for HeldPermit {
    fn from(permit: FleetPermit) -> Self {
        HeldPermit::Fleet(Box::new(permit))
    }
}

impl fmt::Debug for HeldPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeldPermit::Local(permit) => permit.fmt(f),
            #[cfg(feature = "redis")]
            HeldPermit::Fleet(permit) => permit.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send_sync<T: Send + Sync + 'static>() {}

    /// `LimitedBody` keeps its auto traits whatever the features.
    #[test]
    fn held_permit_is_send_sync() {
        send_sync::<HeldPermit>();
    }

    /// The local path pays no size for the fleet variant beyond the discriminant.
    #[test]
    fn local_path_stays_small() {
        assert!(
            core::mem::size_of::<Option<HeldPermit>>()
                <= core::mem::size_of::<LimitPermit>() + core::mem::size_of::<usize>(),
            "{} vs {}",
            core::mem::size_of::<Option<HeldPermit>>(),
            core::mem::size_of::<LimitPermit>()
        );
    }
}
