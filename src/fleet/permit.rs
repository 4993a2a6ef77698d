//! The fleet permit: the local permit plus the global lease.

// The crate is `no_std` with `std` linked: bring std's prelude and macros in.
#[allow(unused_imports)]
use std::prelude::rust_2021::*;
#[allow(unused_imports)]
use std::{format, vec};

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::limit::LimitPermit;

use super::limiter::Inner;

/// One global lease held by this process.
pub(crate) struct LeaseState {
    pub(crate) id: Arc<str>,
    pub(crate) fence: u64,
    pub(crate) lost: AtomicBool,
}

/// Admission through a [`FleetLimiter`](super::FleetLimiter): a local permit and, unless
/// admitted degraded (fail open), a global lease renewed in the background while it is held.
///
/// Dropping it releases both: the local permit at once, the lease through the background
/// releaser (one batched call). If the runtime is gone the lease expires after its TTL.
/// Keep it alive for as long as the work runs, to the end of a streaming body included.
pub struct FleetPermit {
    pub(crate) lease: Option<Arc<LeaseState>>,
    pub(crate) inner: Arc<Inner>,
    pub(crate) waited: Duration,
    // Field order is drop order: the fallback permit, then the local permit. Held only
    // for its drop.
    #[allow(dead_code)]
    pub(crate) fallback: Option<LimitPermit>,
    pub(crate) local: LimitPermit,
}

impl FleetPermit {
    /// The fence number of the lease: strictly increasing per key across the fleet for as
    /// long as the server keeps its counter (for logs, or a resource that checks it). `None`
    /// for a degraded admission. This is not a safety guarantee: see the module docs.
    pub fn fence(&self) -> Option<u64> {
        self.lease.as_ref().map(|l| l.fence)
    }

    /// The lease id (`<process id>:<sequence>`), `None` for a degraded admission.
    pub fn lease_id(&self) -> Option<&str> {
        self.lease.as_ref().map(|l| &*l.id)
    }

    /// True when this request was admitted on the local limiter alone because Redis was
    /// unreachable ([`FailMode::Open`](super::FailMode::Open)).
    pub fn is_degraded(&self) -> bool {
        self.lease.is_none()
    }

    /// True once a renewal found the lease gone (expired during a pause longer than the
    /// TTL, or deleted). The permit is not re-acquired; the work may go on, but the fleet
    /// cap no longer counts it.
    pub fn is_lost(&self) -> bool {
        self.lease
            .as_ref()
            .is_some_and(|l| l.lost.load(Ordering::Relaxed))
    }

    /// How long the request waited for admission (local queue and fleet).
    pub fn waited(&self) -> Duration {
        self.waited
    }

    /// The local permit's limiter name.
    pub fn limiter_name(&self) -> &str {
        self.local.limiter_name()
    }
}

impl Drop for FleetPermit {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take() {
            self.inner.forget_lease(&lease.id);
            self.inner.send_release(Some(lease.id.clone()), None);
        }
    }
}

impl fmt::Debug for FleetPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetPermit")
            .field("lease_id", &self.lease_id())
            .field("fence", &self.fence())
            .field("lost", &self.is_lost())
            .field("waited", &self.waited)
            .finish()
    }
}
