//! [`Source`]: where the tonic layers take permits from — a local [`Limiter`] or (feature
//! `redis`) a [`FleetLimiter`](crate::fleet::FleetLimiter) — and how the caller's deadline
//! bounds the wait for either.

use std::time::Instant;

use crate::http::Admission;
use crate::limit::Limiter;

/// The admission source of a tonic layer. An enum, not a trait object: the local path
/// builds its acquire future in place, as before, and allocates nothing.
#[derive(Clone, Debug)]
pub(crate) enum Source {
    Local(Limiter),
    #[cfg(feature = "redis")]
    Fleet(crate::fleet::FleetLimiter),
}

impl Source {
    /// The local limiter (a fleet limiter's local fair queue).
    pub(crate) fn limiter(&self) -> &Limiter {
        match self {
            Source::Local(limiter) => limiter,
            #[cfg(feature = "redis")]
            Source::Fleet(fleet) => fleet.local(),
        }
    }

    /// Starts an admission whose wait ends at `deadline` at the latest (then refused as
    /// `DeadlineExceeded`).
    pub(crate) fn admission(&self, deadline: Option<Instant>) -> Admission {
        match self {
            Source::Local(limiter) => Admission::local(match deadline {
                Some(deadline) => limiter.acquire_until(deadline),
                None => limiter.acquire(),
            }),
            #[cfg(feature = "redis")]
            Source::Fleet(fleet) => fleet_admission(fleet, deadline),
        }
    }
}

/// The fleet's acquire has no deadline of its own, so the caller's deadline is a timer
/// around it. On expiry the acquire future is dropped, which is cancel-safe (no ticket or
/// lease is left behind, a lease granted meanwhile goes to the releaser).
#[cfg(feature = "redis")]
fn fleet_admission(fleet: &crate::fleet::FleetLimiter, deadline: Option<Instant>) -> Admission {
    use crate::fleet::FleetRejected;
    use crate::limit::{RejectReason, Rejected};

    let acquire = fleet.acquire();
    let Some(deadline) = deadline else {
        return Admission::fleet(acquire);
    };
    let fleet = fleet.clone();
    let start = Instant::now();
    Admission::fleet(async move {
        match tokio::time::timeout_at(deadline.into(), acquire).await {
            Ok(outcome) => outcome,
            Err(_elapsed) => Err(FleetRejected::Local(Rejected::new(
                RejectReason::DeadlineExceeded,
                start.elapsed(),
                std::sync::Arc::from(fleet.local().name()),
            ))),
        }
    })
}
