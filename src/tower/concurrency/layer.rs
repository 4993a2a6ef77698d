//! [`ConcurrencyLimitLayer`]: wraps services in [`ConcurrencyLimit`] over one shared limiter.

use tower_layer::Layer;

use super::service::ConcurrencyLimit;
use crate::limit::Limiter;

/// Wraps services in [`ConcurrencyLimit`], all admitted through the **same** [`Limiter`].
///
/// Unlike `tower::limit::ConcurrencyLimitLayer` (a new semaphore per `layer()` call), the
/// scope is explicit: the layer holds a limiter handle, and every service it wraps shares
/// it, however many times a framework calls `layer()`. For one limiter per service, build
/// one layer per service.
///
/// # Example
/// ```
/// use fairgate::limit::{Limiter, RejectReason, Rejected};
/// use fairgate::tower::ConcurrencyLimitLayer;
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), fairgate::tower::BoxError> {
/// let limiter = Limiter::builder("upstream").capacity(4).max_queue(Some(16)).build()?;
/// let layer = ConcurrencyLimitLayer::new(limiter);
/// let svc = ServiceBuilder::new()
///     .layer(layer.clone())
///     .service(service_fn(|name: &'static str| async move {
///         Ok::<_, std::convert::Infallible>(format!("hello {name}"))
///     }));
/// assert_eq!(svc.oneshot("tower").await?, "hello tower");
///
/// // A closed limiter rejects with a typed, downcastable error.
/// layer.limiter().close();
/// let svc = layer.layer_service(service_fn(|()| async { Ok::<_, std::convert::Infallible>(()) }));
/// let err = svc.oneshot(()).await.unwrap_err();
/// let rejected = err.downcast_ref::<Rejected>().expect("a Rejected");
/// assert_eq!(rejected.reason(), RejectReason::Closed);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct ConcurrencyLimitLayer {
    limiter: Limiter,
}

impl ConcurrencyLimitLayer {
    /// A layer admitting through `limiter` (a shared handle: clone it to keep watching it).
    ///
    /// ```
    /// # use fairgate::limit::Limiter;
    /// # use fairgate::tower::ConcurrencyLimitLayer;
    /// let layer = ConcurrencyLimitLayer::new(Limiter::builder("api").capacity(8).build().unwrap());
    /// assert_eq!(layer.limiter().in_flight(), 0);
    /// ```
    pub fn new(limiter: Limiter) -> Self {
        ConcurrencyLimitLayer { limiter }
    }

    /// The limiter shared by every service this layer wraps.
    ///
    /// ```
    /// # use fairgate::limit::Limiter;
    /// # use fairgate::tower::ConcurrencyLimitLayer;
    /// let layer = ConcurrencyLimitLayer::new(Limiter::builder("api").capacity(8).build().unwrap());
    /// assert_eq!(layer.limiter().capacity(), 8);
    /// ```
    pub fn limiter(&self) -> &Limiter {
        &self.limiter
    }

    /// Wraps `inner` (the same as [`Layer::layer`], callable without importing the trait).
    ///
    /// ```
    /// # use fairgate::limit::Limiter;
    /// # use fairgate::tower::ConcurrencyLimitLayer;
    /// let layer = ConcurrencyLimitLayer::new(Limiter::builder("api").capacity(8).build().unwrap());
    /// let a = layer.layer_service(());
    /// let b = layer.layer_service(());
    /// assert!(a.limiter().same_limiter(b.limiter())); // one limiter for both
    /// ```
    pub fn layer_service<S>(&self, inner: S) -> ConcurrencyLimit<S> {
        ConcurrencyLimit::new(inner, self.limiter.clone())
    }
}

impl<S> Layer<S> for ConcurrencyLimitLayer {
    type Service = ConcurrencyLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        self.layer_service(inner)
    }
}
