//! [`KeyedLimit`]: admits each request through the limiter of its key.

use core::fmt;
use core::hash::Hash;
use core::task::{Context, Poll};
use std::sync::Arc;

use tower_service::Service;

use super::future::ResponseFuture;
use crate::limit::LimiterManager;
use crate::tower::concurrency::{self, admit, AcquireSlot};
use crate::tower::BoxError;

/// Admits every request through the limiter of its key: `key_fn(&request)` picks the key,
/// the [`LimiterManager`] supplies (or creates) the key's limiter.
///
/// Readiness, admission in `call` (at once, refused, or queued in call order with the readied
/// inner service moved into the future), the wait and the release are exactly those of
/// [`ConcurrencyLimit`](crate::tower::ConcurrencyLimit). A key
/// the manager refuses (`max_keys` reached, every key busy) fails at once with a
/// [`Rejected`](crate::limit::Rejected) of reason
/// [`TooManyKeys`](crate::limit::RejectReason::TooManyKeys); the inner service is then not
/// called and stays ready.
///
/// Built by [`KeyedLimitLayer`](super::KeyedLimitLayer); see there for an example.
pub struct KeyedLimit<S, K, F> {
    inner: S,
    manager: LimiterManager<K>,
    key_fn: Arc<F>,
    // Reused for every call of this instance (across keys); a clone starts without one.
    slot: AcquireSlot,
}

impl<S, K, F> KeyedLimit<S, K, F> {
    pub(crate) fn new(inner: S, manager: LimiterManager<K>, key_fn: Arc<F>) -> Self {
        KeyedLimit {
            inner,
            manager,
            key_fn,
            slot: None,
        }
    }

    /// The manager holding the per-key limiters.
    ///
    /// ```
    /// # use fairgate::limit::{LimiterConfig, LimiterManager};
    /// # use fairgate::tower::KeyedLimitLayer;
    /// # use tower::Layer;
    /// let manager = LimiterManager::new("t", |_: &u8| LimiterConfig::builder("t").config().unwrap());
    /// let svc = KeyedLimitLayer::new(manager, |req: &(u8, String)| req.0).layer(());
    /// assert!(svc.manager().is_empty());
    /// ```
    pub fn manager(&self) -> &LimiterManager<K> {
        &self.manager
    }

    /// The inner service.
    ///
    /// ```
    /// # use fairgate::limit::{LimiterConfig, LimiterManager};
    /// # use fairgate::tower::KeyedLimitLayer;
    /// # use tower::Layer;
    /// let manager = LimiterManager::new("t", |_: &u8| LimiterConfig::builder("t").config().unwrap());
    /// let svc = KeyedLimitLayer::new(manager, |req: &u8| *req).layer(5u8);
    /// assert_eq!(*svc.get_ref(), 5);
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    ///
    /// ```
    /// # use fairgate::limit::{LimiterConfig, LimiterManager};
    /// # use fairgate::tower::KeyedLimitLayer;
    /// # use tower::Layer;
    /// let manager = LimiterManager::new("t", |_: &u8| LimiterConfig::builder("t").config().unwrap());
    /// let mut svc = KeyedLimitLayer::new(manager, |req: &u8| *req).layer(5u8);
    /// *svc.get_mut() = 6;
    /// assert_eq!(svc.into_inner(), 6);
    /// ```
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    ///
    /// ```
    /// # use fairgate::limit::{LimiterConfig, LimiterManager};
    /// # use fairgate::tower::KeyedLimitLayer;
    /// # use tower::Layer;
    /// let manager = LimiterManager::new("t", |_: &u8| LimiterConfig::builder("t").config().unwrap());
    /// let svc = KeyedLimitLayer::new(manager, |req: &u8| *req).layer("inner");
    /// assert_eq!(svc.into_inner(), "inner");
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, K, F> Clone for KeyedLimit<S, K, F> {
    fn clone(&self) -> Self {
        KeyedLimit::new(
            self.inner.clone(),
            self.manager.clone(),
            self.key_fn.clone(),
        )
    }
}

impl<S: fmt::Debug, K, F> fmt::Debug for KeyedLimit<S, K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedLimit")
            .field("inner", &self.inner)
            .field("manager", &self.manager)
            .finish_non_exhaustive()
    }
}

impl<S, K, F, Req> Service<Req> for KeyedLimit<S, K, F>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    K: Hash + Eq + Clone + Send + Sync + 'static,
    F: Fn(&Req) -> K,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Readiness of the inner service only: the permit is taken in the response future.
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let key = (self.key_fn)(&request);
        match self.manager.lease(&key) {
            Ok(lease) => {
                let admitted = admit(lease.limiter(), &mut self.slot, &mut self.inner, request);
                ResponseFuture::new(Some(lease), admitted)
            }
            Err(error) => {
                let rejected = error.to_rejected(self.manager.shared_name().clone());
                ResponseFuture::new(None, concurrency::ResponseFuture::refused(rejected))
            }
        }
    }
}
