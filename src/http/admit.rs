//! Where a request's permit comes from: one shared [`Limiter`], the limiter of the
//! request's key in a [`LimiterManager`] ([`Keyed`]), or (feature `redis`) a fleet-wide
//! [`FleetLimiter`](crate::fleet::FleetLimiter).

use core::fmt;
use core::hash::Hash;
use core::pin::Pin;
use core::task::{ready, Context, Poll};
use std::sync::Arc;

use http::Request;
use pin_project_lite::pin_project;

use super::held::HeldPermit;
use crate::limit::manager::Lease;
use crate::limit::{Acquire, Limiter, LimiterManager, Rejected};

mod sealed {
    pub trait Sealed {}
}

/// A source of admissions for requests of type `Req`: a [`Limiter`] (every request through
/// the same limiter), [`Keyed`] (the limiter of the request's key) or, with feature
/// `redis`, a [`FleetLimiter`](crate::fleet::FleetLimiter) (the local fair queue, then a
/// fleet-wide Redis lease). Sealed: the implementations here are the only ones.
///
/// Whatever the source, the layers hold the resulting permit (for a fleet limiter: the
/// local permit **and** the lease) until the end of the response body.
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

pin_project! {
    /// A started admission: the acquire future of the request's limiter (not yet polled), a
    /// fleet limiter's acquisition, or a refusal decided at once (a keyed manager out of
    /// keys).
    pub struct Admission {
        #[pin]
        pub(crate) state: AdmissionState,
    }
}

pin_project! {
    #[project = AdmissionProj]
    pub(crate) enum AdmissionState {
        Acquire {
            #[pin]
            acquire: Acquire,
            // Keeps a keyed limiter's entry busy (never evicted) until the permit is held.
            lease: Option<Lease>,
        },
        Fleet { acquire: FleetAcquire },
        Refused { rejected: Option<Rejected> },
    }
}

impl Admission {
    /// The local path of a caller that built the acquire future itself (the tonic layers'
    /// deadline-aware `acquire_until`): no keyed lease, no allocation.
    #[cfg(feature = "tonic")]
    pub(crate) fn local(acquire: Acquire) -> Self {
        Admission {
            state: AdmissionState::Acquire {
                acquire,
                lease: None,
            },
        }
    }

    /// A fleet acquisition built by the caller (the tonic layers bound the fleet's acquire
    /// by the caller's deadline). `acquire` must be cancel-safe, as `FleetLimiter::acquire`
    /// is: dropping the admission drops it.
    #[cfg(all(feature = "redis", feature = "tonic"))]
    pub(crate) fn fleet(
        acquire: impl core::future::Future<
                Output = Result<crate::fleet::FleetPermit, crate::fleet::FleetRejected>,
            > + Send
            + 'static,
    ) -> Self {
        Admission {
            state: AdmissionState::Fleet {
                acquire: FleetAcquire(std::boxed::Box::pin(acquire)),
            },
        }
    }

    pub(crate) fn refused(rejected: Rejected) -> Self {
        Admission {
            state: AdmissionState::Refused {
                rejected: Some(rejected),
            },
        }
    }

    /// True when the admission was refused before any wait (polling it yields the refusal).
    pub(crate) fn is_refused(&self) -> bool {
        matches!(self.state, AdmissionState::Refused { .. })
    }

    /// Waits for the permit. Polled again after it resolved, it panics.
    pub(crate) fn poll_admit(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<HeldPermit, Rejected>> {
        match self.project().state.project() {
            AdmissionProj::Acquire { acquire, lease } => {
                let outcome = ready!(core::future::Future::poll(acquire, cx));
                // The permit (or the refusal) settles the key: its entry need not be pinned.
                drop(lease.take());
                Poll::Ready(outcome.map(HeldPermit::from))
            }
            AdmissionProj::Fleet { acquire } => acquire.poll(cx),
            AdmissionProj::Refused { rejected } => Poll::Ready(Err(rejected
                .take()
                .expect("admission polled after completion"))),
        }
    }
}

impl fmt::Debug for Admission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.state {
            AdmissionState::Acquire { .. } => f.write_str("Admission::Acquire"),
            AdmissionState::Fleet { .. } => f.write_str("Admission::Fleet"),
            AdmissionState::Refused { rejected } => {
                f.debug_tuple("Admission::Refused").field(rejected).finish()
            }
        }
    }
}

/// A fleet limiter's acquisition, boxed (its future is an unnameable `async` type). Without
/// feature `redis` it is uninhabited, so the variant costs nothing and needs no `cfg`.
#[cfg(feature = "redis")]
pub(crate) struct FleetAcquire(
    Pin<
        std::boxed::Box<
            dyn core::future::Future<
                    Output = Result<crate::fleet::FleetPermit, crate::fleet::FleetRejected>,
                > + Send,
        >,
    >,
);

/// Uninhabited without feature `redis`.
#[cfg(not(feature = "redis"))]
pub(crate) enum FleetAcquire {}

impl FleetAcquire {
    #[cfg(feature = "redis")]
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<HeldPermit, Rejected>> {
        let outcome = ready!(self.0.as_mut().poll(cx));
        Poll::Ready(
            outcome
                .map(HeldPermit::from)
                .map_err(crate::fleet::FleetRejected::into_rejected),
        )
    }

    #[cfg(not(feature = "redis"))]
    fn poll(&mut self, _cx: &mut Context<'_>) -> Poll<Result<HeldPermit, Rejected>> {
        match *self {}
    }
}

#[cfg(feature = "redis")]
// Why `Sync` is sound: it only grants `&FleetAcquire` to several threads, and a shared reference
// reaches nothing: the boxed future sits in a field private to this module, used only by
// `poll(&mut self)` and by drop (also `&mut`); there is no `&self` method, no `Debug` or
// `Clone` impl, and `Admission`'s `Debug` prints a constant for this variant (the
// `sync_wrapper` argument). Moving it between threads needs only `Send`, which the boxed
// future is. This keeps `Admission` (and the layers' response futures) `Sync` as they are
// without feature `redis`.
// SAFETY: no `&self` access reaches the future, as argued above.
unsafe impl Sync for FleetAcquire {}

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
        match self.manager.lease(&key) {
            Ok(lease) => Admission {
                state: AdmissionState::Acquire {
                    acquire: lease.limiter().acquire(),
                    lease: Some(lease),
                },
            },
            Err(error) => Admission::refused(error.to_rejected(self.manager.shared_name().clone())),
        }
    }
}

#[cfg(feature = "redis")]
impl sealed::Sealed for crate::fleet::FleetLimiter {}

/// Every request through the fleet limiter: it waits in the local fair queue, then (as the
/// head of it) for a fleet-wide lease. The layers hold the [`FleetPermit`] (local permit and
/// lease, renewed in the background) until the end of the response body.
///
/// A [`FleetRejected`] becomes a [`Rejected`] ([`FleetRejected::into_rejected`]): the local
/// reasons unchanged, Redis unreachable under
/// [`FailMode::Closed`](crate::fleet::FailMode::Closed) as
/// [`RejectReason::Unavailable`](crate::limit::RejectReason::Unavailable) (a 503
/// `unavailable` response from the server layer). The fleet's own counters and observer see
/// the refusal as well.
///
/// [`FleetPermit`]: crate::fleet::FleetPermit
/// [`FleetRejected`]: crate::fleet::FleetRejected
/// [`FleetRejected::into_rejected`]: crate::fleet::FleetRejected::into_rejected
#[cfg(feature = "redis")]
impl<Req> Admit<Req> for crate::fleet::FleetLimiter {
    /// ```no_run
    /// # async fn run(limiter: fairgate::fleet::FleetLimiter) {
    /// use fairgate::http::Admit;
    /// let admission = limiter.admit(&http::Request::new(()));
    /// assert_eq!(limiter.local().in_flight(), 0); // nothing taken until it is polled
    /// # drop(admission); }
    /// ```
    fn admit(&self, _request: &Req) -> Admission {
        Admission {
            state: AdmissionState::Fleet {
                acquire: FleetAcquire(std::boxed::Box::pin(self.acquire())),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send_sync<T: Send + Sync>() {}

    /// Features are additive: the fleet variant must not take `Sync` away.
    #[test]
    fn admission_is_send_sync() {
        send_sync::<Admission>();
    }
}
