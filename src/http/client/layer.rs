//! [`ClientLimitLayer`]: wraps HTTP clients in [`ClientLimit`].

use core::hash::Hash;

use tower_layer::Layer;

use super::service::ClientLimit;
use crate::http::{Keyed, Release};
use crate::limit::{Limiter, LimiterManager};

/// Wraps an HTTP client service (e.g. hyper-util's legacy `Client`) in [`ClientLimit`]: each
/// request waits for a permit before it is sent, the permit is held until the end of the
/// response **body**, and a refusal is an error holding a
/// [`Rejected`](crate::limit::Rejected).
///
/// # Example
/// ```
/// use bytes::Bytes;
/// use fairgate::http::ClientLimitLayer;
/// use fairgate::limit::{Limiter, RejectReason, Rejected};
/// use http::{Request, Response};
/// use http_body_util::{BodyExt, Full};
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let limiter = Limiter::builder("upstream").capacity(1).max_queue(Some(0)).build()?;
/// // Stands in for a real client (hyper_util::client::legacy::Client).
/// let client = service_fn(|_req: Request<()>| async {
///     Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from("pong"))))
/// });
/// let client = ServiceBuilder::new().layer(ClientLimitLayer::new(limiter.clone())).service(client);
///
/// let response = client.clone().oneshot(Request::new(())).await?;
/// let err = client.clone().oneshot(Request::new(())).await.unwrap_err();
/// assert_eq!(err.downcast_ref::<Rejected>().unwrap().reason(), RejectReason::QueueFull);
///
/// assert_eq!(response.into_body().collect().await?.to_bytes(), "pong");
/// assert_eq!(limiter.in_flight(), 0);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct ClientLimitLayer<A = Limiter> {
    admit: A,
    release: Release,
}

impl ClientLimitLayer<Limiter> {
    /// Admits every request through `limiter`, released at the end of the response body.
    ///
    /// ```
    /// use fairgate::http::ClientLimitLayer;
    /// let layer = ClientLimitLayer::new(fairgate::limit::Limiter::builder("up").capacity(2).build().unwrap());
    /// assert_eq!(layer.limiter().capacity(), 2);
    /// ```
    pub fn new(limiter: Limiter) -> Self {
        ClientLimitLayer::with_admission(limiter)
    }

    /// The limiter shared by every service this layer wraps.
    ///
    /// ```
    /// use fairgate::http::ClientLimitLayer;
    /// let layer = ClientLimitLayer::new(fairgate::limit::Limiter::builder("up").build().unwrap());
    /// assert_eq!(layer.limiter().name(), "up");
    /// ```
    pub fn limiter(&self) -> &Limiter {
        &self.admit
    }
}

#[cfg(feature = "redis")]
impl ClientLimitLayer<crate::fleet::FleetLimiter> {
    /// Admits every request through a fleet-wide [`FleetLimiter`](crate::fleet::FleetLimiter):
    /// the local fair queue, then a Redis lease. The permit — local permit **and** lease —
    /// is held to the end of the response body (with the default [`Release::BodyEnd`]), so
    /// a streaming response counts against the fleet cap until it ends. Redis unreachable
    /// under [`FailMode::Closed`](crate::fleet::FailMode::Closed) is an error holding a [`Rejected`](crate::limit::Rejected) of reason [`Unavailable`](crate::limit::RejectReason::Unavailable).
    ///
    /// ```no_run
    /// # fn run(limiter: fairgate::fleet::FleetLimiter) {
    /// use fairgate::http::ClientLimitLayer;
    /// let layer = ClientLimitLayer::fleet(limiter);
    /// assert!(layer.admission().cap() > 0);
    /// # }
    /// ```
    pub fn fleet(limiter: crate::fleet::FleetLimiter) -> Self {
        ClientLimitLayer::with_admission(limiter)
    }
}

impl<K, F> ClientLimitLayer<Keyed<K, F>>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// Admits each request through the limiter of its key, `key_fn(&request)` (e.g. the
    /// upstream host), from `manager`.
    ///
    /// ```
    /// use fairgate::http::ClientLimitLayer;
    /// use fairgate::limit::{LimiterConfig, LimiterManager};
    /// let manager = LimiterManager::new("hosts", |host: &String| {
    ///     LimiterConfig::builder(host.as_str()).capacity(16).config().unwrap()
    /// });
    /// let layer = ClientLimitLayer::keyed(manager, |req: &http::Request<()>| {
    ///     req.uri().host().unwrap_or_default().to_string()
    /// });
    /// assert_eq!(layer.admission().manager().name(), "hosts");
    /// ```
    pub fn keyed<B>(manager: LimiterManager<K>, key_fn: F) -> Self
    where
        F: Fn(&http::Request<B>) -> K,
    {
        ClientLimitLayer::with_admission(Keyed::new(manager, key_fn))
    }
}

impl<A> ClientLimitLayer<A> {
    /// The one constructor behind `new`, `fleet` and `keyed`: the default release mode.
    fn with_admission(admit: A) -> Self {
        ClientLimitLayer {
            admit,
            release: Release::default(),
        }
    }

    /// When the permit is released: at the end of the response body (the default) or when
    /// the response future completes.
    ///
    /// ```
    /// use fairgate::http::{ClientLimitLayer, Release};
    /// let layer = ClientLimitLayer::new(fairgate::limit::Limiter::builder("up").build().unwrap())
    ///     .release(Release::ResponseFuture);
    /// assert_eq!(layer.release_mode(), Release::ResponseFuture);
    /// ```
    pub fn release(mut self, release: Release) -> Self {
        self.release = release;
        self
    }

    /// The release mode.
    ///
    /// ```
    /// use fairgate::http::{ClientLimitLayer, Release};
    /// let layer = ClientLimitLayer::new(fairgate::limit::Limiter::builder("up").build().unwrap());
    /// assert_eq!(layer.release_mode(), Release::BodyEnd);
    /// ```
    pub fn release_mode(&self) -> Release {
        self.release
    }

    /// Where permits come from: the [`Limiter`], or [`Keyed`] (its manager).
    ///
    /// ```
    /// use fairgate::http::ClientLimitLayer;
    /// let layer = ClientLimitLayer::new(fairgate::limit::Limiter::builder("up").build().unwrap());
    /// assert_eq!(layer.admission().name(), "up");
    /// ```
    pub fn admission(&self) -> &A {
        &self.admit
    }
}

impl<A: Clone, S> Layer<S> for ClientLimitLayer<A> {
    type Service = ClientLimit<S, A>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientLimit::new(inner, self.admit.clone(), self.release)
    }
}
