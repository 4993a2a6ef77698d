//! tower middleware for a [`FleetLimiter`] (features `redis` and `tower`): the same shape
//! as [`ConcurrencyLimitLayer`](crate::tower::ConcurrencyLimitLayer), with the fleet
//! permit held while the inner call runs.

// The crate is `no_std` with `std` linked: bring std's prelude and macros in.
#[allow(unused_imports)]
use std::prelude::rust_2021::*;

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

use crate::tower::BoxError;

use super::FleetLimiter;

/// Applies a [`FleetLimiter`] to a service: each call waits for a fleet permit (local FIFO
/// queue, then the global lease) and holds it until the inner call's future completes.
///
/// A refusal fails the call with a [`BoxError`] holding a
/// [`FleetRejected`](super::FleetRejected) (use `downcast_ref`). The permit is released when
/// the inner future completes, i.e. at the response head for HTTP: for a response whose
/// body streams after that, use the http layers with the fleet limiter as admission source
/// ([`ServerLimitLayer::fleet`](crate::http::ServerLimitLayer::fleet),
/// [`ClientLimitLayer::fleet`](crate::http::ClientLimitLayer::fleet), feature `http`), which
/// hold the lease to the end of the body, or move a permit from [`FleetLimiter::acquire`]
/// into a [`LimitedBody`](crate::http::LimitedBody) yourself.
///
/// ```no_run
/// # async fn run(limiter: fairgate::fleet::FleetLimiter) {
/// use fairgate::fleet::FleetLimitLayer;
/// use tower::{service_fn, Layer};
/// let svc = FleetLimitLayer::new(limiter).layer(service_fn(|req: u32| async move {
///     Ok::<_, std::convert::Infallible>(req * 2)
/// }));
/// # drop(svc); }
/// ```
#[derive(Clone, Debug)]
pub struct FleetLimitLayer {
    limiter: FleetLimiter,
}

impl FleetLimitLayer {
    /// A layer sharing `limiter` among every service it wraps.
    ///
    /// ```no_run
    /// # fn run(limiter: fairgate::fleet::FleetLimiter) {
    /// let layer = fairgate::fleet::FleetLimitLayer::new(limiter);
    /// # drop(layer); }
    /// ```
    pub fn new(limiter: FleetLimiter) -> Self {
        FleetLimitLayer { limiter }
    }
}

impl<S> Layer<S> for FleetLimitLayer {
    type Service = FleetLimit<S>;
    fn layer(&self, inner: S) -> FleetLimit<S> {
        FleetLimit {
            inner,
            limiter: self.limiter.clone(),
        }
    }
}

/// The service made by [`FleetLimitLayer`].
#[derive(Clone, Debug)]
pub struct FleetLimit<S> {
    inner: S,
    limiter: FleetLimiter,
}

impl<S, Req> Service<Req> for FleetLimit<S>
where
    S: Service<Req> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    Req: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    /// Forwards the inner service's readiness only: admission waits inside the future.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        // The readied service goes into the future; a clone stays for the next call.
        let clone = self.inner.clone();
        let mut inner = core::mem::replace(&mut self.inner, clone);
        let acquire = self.limiter.acquire();
        Box::pin(async move {
            let permit = acquire.await.map_err(|e| Box::new(e) as BoxError)?;
            let out = inner.call(req).await.map_err(Into::into);
            drop(permit);
            out
        })
    }
}
