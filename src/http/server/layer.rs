//! [`ServerLimitLayer`]: wraps HTTP services in [`ServerLimit`].

use core::hash::Hash;

use tower_layer::Layer;

use super::service::ServerLimit;
use crate::http::{Keyed, RejectionResponse, Release};
use crate::limit::{Limiter, LimiterManager};

/// Wraps HTTP services in [`ServerLimit`]: each request is admitted (FIFO, bounded queue,
/// queue timeout) before the handler runs, the permit is held until the end of the response
/// **body**, and a refused request is answered with a 429/503/504 JSON **response**.
///
/// The scope is explicit: every service this layer wraps shares its limiter (or its
/// manager, for [`keyed`](Self::keyed)), however many times a framework calls `layer()`.
///
/// # Example
/// ```
/// use bytes::Bytes;
/// use fairgate::http::ServerLimitLayer;
/// use fairgate::limit::Limiter;
/// use http::{Request, Response};
/// use http_body_util::{BodyExt, Full};
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let limiter = Limiter::builder("api").capacity(1).max_queue(Some(0)).build()?;
/// let svc = ServiceBuilder::new()
///     .layer(ServerLimitLayer::new(limiter.clone()))
///     .service(service_fn(|_req: Request<()>| async {
///         Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from("hello"))))
///     }));
///
/// let response = svc.clone().oneshot(Request::new(())).await?;
/// assert_eq!(limiter.in_flight(), 1); // the body has not been read yet: still held
///
/// // Capacity 1 and no queue: a second request is answered with a 429, not an error.
/// let refused = svc.clone().oneshot(Request::new(())).await?;
/// assert_eq!(refused.status(), 429);
/// let json = refused.into_body().collect().await?.to_bytes();
/// assert!(json.starts_with(br#"{"error":{"type":"queue_full""#));
///
/// assert_eq!(response.into_body().collect().await?.to_bytes(), "hello");
/// assert_eq!(limiter.in_flight(), 0); // released at the end of the body
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct ServerLimitLayer<A = Limiter> {
    admit: A,
    release: Release,
    rejection: RejectionResponse,
}

impl ServerLimitLayer<Limiter> {
    /// Admits every request through `limiter`, with the default [`RejectionResponse`]
    /// (429 JSON, no `Retry-After`) and [`Release::BodyEnd`].
    ///
    /// ```
    /// use fairgate::http::ServerLimitLayer;
    /// let layer = ServerLimitLayer::new(fairgate::limit::Limiter::builder("api").capacity(8).build().unwrap());
    /// assert_eq!(layer.limiter().capacity(), 8);
    /// ```
    pub fn new(limiter: Limiter) -> Self {
        ServerLimitLayer::with_admission(limiter)
    }

    /// The limiter shared by every service this layer wraps.
    ///
    /// ```
    /// use fairgate::http::ServerLimitLayer;
    /// let layer = ServerLimitLayer::new(fairgate::limit::Limiter::builder("api").build().unwrap());
    /// assert_eq!(layer.limiter().name(), "api");
    /// ```
    pub fn limiter(&self) -> &Limiter {
        &self.admit
    }
}

#[cfg(feature = "redis")]
impl ServerLimitLayer<crate::fleet::FleetLimiter> {
    /// Admits every request through a fleet-wide [`FleetLimiter`](crate::fleet::FleetLimiter):
    /// the local fair queue, then a Redis lease. The permit — local permit **and** lease —
    /// is held to the end of the response body (with the default [`Release::BodyEnd`]), so
    /// a streaming response counts against the fleet cap until it ends. Redis unreachable
    /// under [`FailMode::Closed`](crate::fleet::FailMode::Closed) is a 503 JSON response of type `unavailable`.
    ///
    /// ```no_run
    /// # fn run(limiter: fairgate::fleet::FleetLimiter) {
    /// use fairgate::http::ServerLimitLayer;
    /// let layer = ServerLimitLayer::fleet(limiter);
    /// assert!(layer.admission().cap() > 0);
    /// # }
    /// ```
    pub fn fleet(limiter: crate::fleet::FleetLimiter) -> Self {
        ServerLimitLayer::with_admission(limiter)
    }
}

impl<K, F> ServerLimitLayer<Keyed<K, F>>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// Admits each request through the limiter of its key, `key_fn(&request)` (e.g. the
    /// channel a gateway's router picked), from `manager`.
    ///
    /// ```
    /// use fairgate::http::ServerLimitLayer;
    /// use fairgate::limit::{LimiterConfig, LimiterManager};
    ///
    /// let manager = LimiterManager::new("channels", |channel: &String| {
    ///     LimiterConfig::builder(channel.as_str()).capacity(4).config().unwrap()
    /// });
    /// let layer = ServerLimitLayer::keyed(manager, |req: &http::Request<()>| {
    ///     req.uri().path().trim_start_matches('/').to_string()
    /// });
    /// assert_eq!(layer.admission().manager().name(), "channels");
    /// ```
    pub fn keyed<B>(manager: LimiterManager<K>, key_fn: F) -> Self
    where
        F: Fn(&http::Request<B>) -> K,
    {
        ServerLimitLayer::with_admission(Keyed::new(manager, key_fn))
    }
}

impl<A> ServerLimitLayer<A> {
    /// The one constructor behind `new`, `fleet` and `keyed`: the default release mode and
    /// rejection responses.
    fn with_admission(admit: A) -> Self {
        ServerLimitLayer {
            admit,
            release: Release::default(),
            rejection: RejectionResponse::default(),
        }
    }

    /// When the permit is released: at the end of the response body
    /// ([`Release::BodyEnd`], the default) or when the response future completes
    /// ([`Release::ResponseFuture`], tower's behaviour: limits handler execution only).
    ///
    /// ```
    /// use fairgate::http::{Release, ServerLimitLayer};
    /// let layer = ServerLimitLayer::new(fairgate::limit::Limiter::builder("api").build().unwrap())
    ///     .release(Release::ResponseFuture);
    /// assert_eq!(layer.release_mode(), Release::ResponseFuture);
    /// ```
    pub fn release(mut self, release: Release) -> Self {
        self.release = release;
        self
    }

    /// How refused requests are answered (statuses per reason, `Retry-After`).
    ///
    /// ```
    /// use fairgate::http::{RejectionResponse, ServerLimitLayer};
    /// use fairgate::limit::RejectReason;
    /// let layer = ServerLimitLayer::new(fairgate::limit::Limiter::builder("api").build().unwrap())
    ///     .rejection(RejectionResponse::service_unavailable());
    /// assert_eq!(layer.rejection_response().status_for(RejectReason::QueueFull), 503);
    /// ```
    pub fn rejection(mut self, rejection: RejectionResponse) -> Self {
        self.rejection = rejection;
        self
    }

    /// The release mode.
    ///
    /// ```
    /// use fairgate::http::{Release, ServerLimitLayer};
    /// let layer = ServerLimitLayer::new(fairgate::limit::Limiter::builder("api").build().unwrap());
    /// assert_eq!(layer.release_mode(), Release::BodyEnd);
    /// ```
    pub fn release_mode(&self) -> Release {
        self.release
    }

    /// The rejection responses.
    ///
    /// ```
    /// use fairgate::http::{RejectionResponse, ServerLimitLayer};
    /// let layer = ServerLimitLayer::new(fairgate::limit::Limiter::builder("api").build().unwrap());
    /// assert_eq!(*layer.rejection_response(), RejectionResponse::default());
    /// ```
    pub fn rejection_response(&self) -> &RejectionResponse {
        &self.rejection
    }

    /// Where permits come from: the [`Limiter`], or [`Keyed`] (its manager).
    ///
    /// ```
    /// use fairgate::http::ServerLimitLayer;
    /// let layer = ServerLimitLayer::new(fairgate::limit::Limiter::builder("api").build().unwrap());
    /// assert_eq!(layer.admission().name(), "api");
    /// ```
    pub fn admission(&self) -> &A {
        &self.admit
    }
}

impl<A: Clone, S> Layer<S> for ServerLimitLayer<A> {
    type Service = ServerLimit<S, A>;

    fn layer(&self, inner: S) -> Self::Service {
        ServerLimit::new(
            inner,
            self.admit.clone(),
            self.release,
            self.rejection.clone(),
        )
    }
}
