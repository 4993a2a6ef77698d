//! The fleet limiter's rejection type.

// The crate is `no_std` with `std` linked: bring std's prelude and macros in.
#[allow(unused_imports)]
use std::prelude::rust_2021::*;
#[allow(unused_imports)]
use std::{format, vec};

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::limit::{RejectReason, Rejected};

/// Why a fleet acquire did not produce a permit.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum FleetRejected {
    /// Refused by the local fair limiter or its deadline (queue full, queue timeout, caller
    /// deadline, closed), exactly as a plain [`Limiter`](crate::limit::Limiter) would; a
    /// queue timeout covers the whole wait, the fleet part included.
    Local(Rejected),
    /// Redis could not be reached and the fail mode is
    /// [`FailMode::Closed`](super::FailMode::Closed).
    Unavailable {
        /// The limiter's name.
        limiter: Arc<str>,
        /// How long the request waited.
        waited: Duration,
        /// The last backend error seen (`None` when the circuit breaker refused at once).
        cause: Option<Arc<str>>,
    },
}

impl FleetRejected {
    /// How long the request waited before it was refused.
    pub fn waited(&self) -> Duration {
        match self {
            FleetRejected::Local(r) => r.waited(),
            FleetRejected::Unavailable { waited, .. } => *waited,
        }
    }

    /// As a plain [`Rejected`], for code that handles every limiter's refusals alike (the
    /// [`http`](crate::http) layers do this): a local refusal unchanged,
    /// [`Unavailable`](Self::Unavailable) as reason
    /// [`RejectReason::Unavailable`] with the same limiter name and wait. The backend error
    /// text (`cause`) is not carried over; the fleet's counters and observer have it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fairgate::fleet::FleetRejected;
    /// use fairgate::limit::RejectReason;
    /// let down = FleetRejected::Unavailable {
    ///     limiter: "llm".into(),
    ///     waited: Duration::from_millis(5),
    ///     cause: Some("connection refused".into()),
    /// };
    /// let rejected = down.into_rejected();
    /// assert_eq!(rejected.reason(), RejectReason::Unavailable);
    /// assert_eq!(rejected.limiter(), "llm");
    /// assert_eq!(rejected.waited(), Duration::from_millis(5));
    /// ```
    pub fn into_rejected(self) -> Rejected {
        match self {
            FleetRejected::Local(r) => r,
            FleetRejected::Unavailable {
                limiter, waited, ..
            } => Rejected::new(RejectReason::Unavailable, waited, limiter),
        }
    }

    /// A short label for metrics: the local reason's label, or `"fleet_unavailable"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            FleetRejected::Local(r) => r.reason().as_str(),
            FleetRejected::Unavailable { .. } => "fleet_unavailable",
        }
    }
}

impl fmt::Display for FleetRejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FleetRejected::Local(r) => r.fmt(f),
            FleetRejected::Unavailable {
                limiter,
                waited,
                cause,
            } => {
                write!(
                    f,
                    "fleet limiter {limiter}: redis unavailable after {waited:?}"
                )?;
                if let Some(c) = cause {
                    write!(f, " ({c})")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for FleetRejected {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FleetRejected::Local(r) => Some(r),
            FleetRejected::Unavailable { .. } => None,
        }
    }
}

impl From<Rejected> for FleetRejected {
    fn from(r: Rejected) -> Self {
        FleetRejected::Local(r)
    }
}

impl From<FleetRejected> for Rejected {
    /// [`FleetRejected::into_rejected`].
    fn from(r: FleetRejected) -> Self {
        r.into_rejected()
    }
}
