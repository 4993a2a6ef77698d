//! Where a request's permit comes from: one shared [`Limiter`], or the limiter of the
//! request's key in a [`LimiterManager`] ([`Keyed`]).

use core::fmt;
use core::hash::Hash;
use std::sync::Arc;

use http::Request;

use crate::limit::manager::Lease;
use crate::limit::{Acquire, Limiter, LimiterManager, Rejected};

mod sealed {
    pub trait Sealed {}
}

/// A source of admissions for requests of type `Req`: a [`Limiter`] (every request through
/// the same limiter) or [`Keyed`] (the limiter of the request's key). Sealed: the two
/// implementations here are the only ones.
pub trait Admit<Req>: sealed::Sealed {
    /// Starts the admission of `request`. Never waits: the wait happens when the response
    /// future polls the returned [`Admission`].
    ///
    /// ```
    /// use fairgate::http::Admit;
    /// use fairgate::limit::Limiter;
    ///
    /// let limiter = Limiter::builder("api").capacity(1).build().unwrap();
    /// let admission = limiter.admit(&http::Request::new(()));
    /// assert_eq!(limiter.in_flight(), 0); // nothing taken until the response future runs
    /// # drop(admission);
    /// ```
    fn admit(&self, request: &Req) -> Admission;
}

/// A started admission: the acquire future of the request's limiter (not yet polled), or a
/// refusal decided at once (a keyed manager out of keys).
pub struct Admission {
    pub(crate) state: AdmissionState,
}

pub(crate) enum AdmissionState {
    Acquire {
        acquire: Acquire,
        /// Keeps a keyed limiter's entry busy (never evicted) until the permit is held.
        lease: Option<Lease>,
    },
    Refused(Rejected),
}

impl fmt::Debug for Admission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.state {
            AdmissionState::Acquire { .. } => f.write_str("Admission::Acquire"),
            AdmissionState::Refused(rejected) => {
                f.debug_tuple("Admission::Refused").field(rejected).finish()
            }
        }
    }
}

impl sealed::Sealed for Limiter {}

impl<Req> Admit<Req> for Limiter {
    fn admit(&self, _request: &Req) -> Admission {
        Admission {
            state: AdmissionState::Acquire {
                acquire: self.acquire(),
                lease: None,
            },
        }
    }
}

/// Admission through the limiter of each request's key: `key_fn(&request)` picks the key
/// (a channel chosen by a router, a tenant header, a peer), the [`LimiterManager`] supplies
/// (or creates) the key's limiter. A key the manager refuses (`max_keys` reached, every key
/// busy) is a [`Rejected`] of reason
/// [`TooManyKeys`](crate::limit::RejectReason::TooManyKeys).
///
/// Built by the `keyed` constructors of the layers, e.g.
/// [`ServerLimitLayer::keyed`](crate::http::ServerLimitLayer::keyed).
pub struct Keyed<K, F> {
    manager: LimiterManager<K>,
    key_fn: Arc<F>,
}

impl<K, F> Keyed<K, F> {
    pub(crate) fn new(manager: LimiterManager<K>, key_fn: F) -> Self {
        Keyed {
            manager,
            key_fn: Arc::new(key_fn),
        }
    }

    /// The manager holding the per-key limiters.
    ///
    /// ```
    /// use fairgate::http::ServerLimitLayer;
    /// use fairgate::limit::{LimiterConfig, LimiterManager};
    ///
    /// let manager = LimiterManager::new("channels", |_: &u8| LimiterConfig::builder("c").config().unwrap());
    /// let layer = ServerLimitLayer::keyed(manager, |_: &http::Request<()>| 0u8);
    /// assert!(layer.admission().manager().is_empty());
    /// ```
    pub fn manager(&self) -> &LimiterManager<K> {
        &self.manager
    }
}

impl<K, F> Clone for Keyed<K, F> {
    fn clone(&self) -> Self {
        Keyed {
            manager: self.manager.clone(),
            key_fn: self.key_fn.clone(),
        }
    }
}

impl<K, F> fmt::Debug for Keyed<K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyed")
            .field("manager", &self.manager)
            .finish_non_exhaustive()
    }
}

impl<K, F> sealed::Sealed for Keyed<K, F> {}

impl<K, F, B> Admit<Request<B>> for Keyed<K, F>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    F: Fn(&Request<B>) -> K,
{
    fn admit(&self, request: &Request<B>) -> Admission {
        let key = (self.key_fn)(request);
        let state = match self.manager.lease(&key) {
            Ok(lease) => AdmissionState::Acquire {
                acquire: lease.limiter().acquire(),
                lease: Some(lease),
            },
            Err(error) => {
                AdmissionState::Refused(error.to_rejected(self.manager.shared_name().clone()))
            }
        };
        Admission { state }
    }
}
