//! [`ServerLimitLayer`] → [`ServerLimit`]: admission control for a tonic server, server-wide
//! or per service.

use core::future::Future;
use core::mem;
use core::pin::Pin;
use core::task::{ready, Context, Poll};

use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tonic::server::NamedService;
use tower_layer::Layer;
use tower_service::Service;

use super::admitting::{Admitting, OnAdmit};
use super::source::Source;
use super::{rejection_status, QueueTimeoutCode, Settings};
use crate::http::{LimitedBody, Release};
use crate::limit::Limiter;

/// Admission control for a tonic server: every call takes a permit of the shared
/// [`Limiter`] before its handler runs and holds it until the response stream ends.
///
/// * **Server-wide**: `Server::builder().layer(ServerLimitLayer::new(limiter))` — tonic
///   applies the layer once and clones the service per connection, so every connection
///   shares the limiter (unlike `concurrency_limit_per_connection`).
/// * **Per service**: `ServerLimitLayer::new(limiter).layer(FooServer::new(..))` and
///   `add_service` the result: [`ServerLimit`] keeps the service's `NamedService` name and
///   its `Infallible` error.
/// * The permit is released exactly once, when the response body ends (the trailers, the
///   end or an error) or is dropped (the client cancelled or went away), so a
///   server-streaming call holds its slot while it streams.
/// * A refusal is a **response**, a Trailers-Only gRPC status ([`rejection_status`]):
///   `RESOURCE_EXHAUSTED` for a full queue or a queue timeout (or `UNAVAILABLE`, see
///   [`queue_timeout_code`](Self::queue_timeout_code)), `UNAVAILABLE` for a closed limiter,
///   and `DEADLINE_EXCEEDED` when the caller's `grpc-timeout` runs out while queued, with
///   the reason in the [`REJECT_REASON_KEY`](super::REJECT_REASON_KEY) metadata.
///
/// ```no_run
/// use fairgate::limit::Limiter;
/// use fairgate::tonic::ServerLimitLayer;
///
/// # async fn demo<S>(svc: S) -> Result<(), Box<dyn std::error::Error>>
/// # where S: tower::Service<http::Request<tonic::body::Body>, Response = http::Response<tonic::body::Body>, Error = std::convert::Infallible>
/// #     + tonic::server::NamedService + Clone + Send + Sync + 'static, S::Future: Send + 'static {
/// let limiter = Limiter::builder("grpc-server").capacity(64).max_queue(Some(256)).build()?;
/// tonic::transport::Server::builder()
///     .layer(ServerLimitLayer::new(limiter.clone()))
///     .add_service(svc) // e.g. a generated `GreeterServer::new(..)`
///     .serve("127.0.0.1:50051".parse()?)
///     .await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct ServerLimitLayer {
    source: Source,
    settings: Settings,
}

impl ServerLimitLayer {
    /// A layer taking permits from `limiter` (deadline-aware, permit held to the end of the
    /// response stream, queue timeouts as `RESOURCE_EXHAUSTED`).
    ///
    /// ```
    /// let limiter = fairgate::limit::Limiter::builder("srv").capacity(4).build().unwrap();
    /// let layer = fairgate::tonic::ServerLimitLayer::new(limiter);
    /// assert_eq!(layer.limiter().capacity(), 4);
    /// ```
    pub fn new(limiter: Limiter) -> Self {
        ServerLimitLayer {
            source: Source::Local(limiter),
            settings: Settings::default(),
        }
    }

    /// A layer taking fleet-wide permits from `limiter` (feature `redis`): each call waits
    /// in the local fair queue, then for a Redis lease, and holds both — the local permit
    /// **and** the lease — until the end of the response stream (or its drop), exactly as
    /// [`new`](Self::new) holds a local permit. The caller's `grpc-timeout` bounds the whole
    /// wait (`DEADLINE_EXCEEDED`); Redis unreachable under
    /// [`FailMode::Closed`](crate::fleet::FailMode::Closed) is `UNAVAILABLE` (reason
    /// `unavailable`). [`limiter`](Self::limiter) is the fleet limiter's local limiter.
    ///
    /// ```no_run
    /// # async fn run(fleet: fairgate::fleet::FleetLimiter) {
    /// let layer = fairgate::tonic::ServerLimitLayer::fleet(fleet.clone());
    /// assert!(layer.limiter().same_limiter(fleet.local()));
    /// # }
    /// ```
    #[cfg(feature = "redis")]
    pub fn fleet(limiter: crate::fleet::FleetLimiter) -> Self {
        ServerLimitLayer {
            source: Source::Fleet(limiter),
            settings: Settings::default(),
        }
    }

    /// The code of a call refused by the limiter's `queue_timeout` (default
    /// `RESOURCE_EXHAUSTED`).
    ///
    /// ```
    /// use fairgate::tonic::{QueueTimeoutCode, ServerLimitLayer};
    /// let limiter = fairgate::limit::Limiter::builder("srv").capacity(4).build().unwrap();
    /// let layer = ServerLimitLayer::new(limiter).queue_timeout_code(QueueTimeoutCode::Unavailable);
    /// # let _ = layer;
    /// ```
    pub fn queue_timeout_code(mut self, code: QueueTimeoutCode) -> Self {
        self.settings.queue_timeout = code;
        self
    }

    /// Whether a request's `grpc-timeout` bounds its queue wait (default `true`; a call
    /// whose deadline passes while queued is answered `DEADLINE_EXCEEDED` and leaves the
    /// queue).
    ///
    /// ```
    /// let limiter = fairgate::limit::Limiter::builder("srv").capacity(4).build().unwrap();
    /// let layer = fairgate::tonic::ServerLimitLayer::new(limiter).honor_deadline(false);
    /// # let _ = layer;
    /// ```
    pub fn honor_deadline(mut self, honor: bool) -> Self {
        self.settings.honor_deadline = honor;
        self
    }

    /// When the permit is released: at the end of the response stream (the default) or
    /// when the handler returns the response head ([`Release::ResponseFuture`], tower's
    /// behaviour: limits handler execution only).
    ///
    /// ```
    /// use fairgate::http::Release;
    /// let limiter = fairgate::limit::Limiter::builder("srv").capacity(4).build().unwrap();
    /// let layer = fairgate::tonic::ServerLimitLayer::new(limiter).release(Release::ResponseFuture);
    /// # let _ = layer;
    /// ```
    pub fn release(mut self, release: Release) -> Self {
        self.settings.release = release;
        self
    }

    /// The shared limiter (`in_flight()`, `waiting()`, `capacity()`, `set_capacity()`).
    ///
    /// ```
    /// let limiter = fairgate::limit::Limiter::builder("srv").capacity(4).build().unwrap();
    /// let layer = fairgate::tonic::ServerLimitLayer::new(limiter.clone());
    /// assert!(layer.limiter().same_limiter(&limiter));
    /// ```
    pub fn limiter(&self) -> &Limiter {
        self.source.limiter()
    }
}

impl<S> Layer<S> for ServerLimitLayer {
    type Service = ServerLimit<S>;

    fn layer(&self, inner: S) -> ServerLimit<S> {
        ServerLimit {
            inner,
            source: self.source.clone(),
            settings: self.settings,
        }
    }
}

/// A tonic service (a router or one generated service) whose calls are admitted by a
/// [`Limiter`]; built by [`ServerLimitLayer`] (see there).
///
/// `poll_ready` forwards the inner service's readiness only; the wait happens in the
/// [`ServerResponseFuture`], so a client that cancels (RST_STREAM) leaves the queue, and
/// tonic's `Server::timeout` covers the wait. The error type is the inner one (a refusal is
/// a response), so an `Infallible` service stays `Infallible`, and the response body is a
/// [`LimitedBody`] of the inner body, which must be `Default` (the empty body of a
/// Trailers-Only refusal; tonic's `Body` is).
#[derive(Clone, Debug)]
pub struct ServerLimit<S> {
    inner: S,
    source: Source,
    settings: Settings,
}

impl<S> ServerLimit<S> {
    /// The shared limiter.
    ///
    /// ```
    /// use tower::Layer;
    /// let limiter = fairgate::limit::Limiter::builder("srv").capacity(4).build().unwrap();
    /// let svc = fairgate::tonic::ServerLimitLayer::new(limiter).layer(());
    /// assert_eq!(svc.limiter().name(), "srv");
    /// ```
    pub fn limiter(&self) -> &Limiter {
        self.source.limiter()
    }

    /// The inner service.
    ///
    /// ```
    /// use tower::Layer;
    /// let limiter = fairgate::limit::Limiter::builder("srv").capacity(4).build().unwrap();
    /// let svc = fairgate::tonic::ServerLimitLayer::new(limiter).layer(7);
    /// assert_eq!(*svc.get_ref(), 7);
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the inner service.
    ///
    /// ```
    /// use tower::Layer;
    /// let limiter = fairgate::limit::Limiter::builder("srv").capacity(4).build().unwrap();
    /// let svc = fairgate::tonic::ServerLimitLayer::new(limiter).layer(7);
    /// assert_eq!(svc.into_inner(), 7);
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// Keeps the wrapped service routable by name (`Router::add_service`).
impl<S: NamedService> NamedService for ServerLimit<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for ServerLimit<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
    ResB: Body + Default,
{
    type Response = Response<LimitedBody<ResB>>;
    type Error = S::Error;
    type Future = ServerResponseFuture<S, ReqB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        let fresh = self.inner.clone();
        let readied = mem::replace(&mut self.inner, fresh);
        ServerResponseFuture {
            admitting: Admitting::new(&self.source, self.settings, OnAdmit::Keep, readied, request),
            queue_timeout: self.settings.queue_timeout,
        }
    }
}

pin_project! {
    /// The response future of [`ServerLimit`]: waits for a permit, then runs the handler.
    /// Dropping it (the client cancelled) leaves the queue or drops the handler and its
    /// permit.
    pub struct ServerResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        admitting: Admitting<S, B>,
        queue_timeout: QueueTimeoutCode,
    }
}

impl<S, B, ResB> Future for ServerResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    ResB: Body + Default,
{
    type Output = Result<Response<LimitedBody<ResB>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        Poll::Ready(match ready!(this.admitting.poll(cx)) {
            Ok(result) => result,
            // Trailers-Only: HTTP 200, `grpc-status` in the headers, an empty body.
            Err(rejected) => Ok(rejection_status(&rejected, *this.queue_timeout)
                .into_http::<ResB>()
                .map(LimitedBody::unheld)),
        })
    }
}

impl<S, B> core::fmt::Debug for ServerResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ServerResponseFuture")
            .finish_non_exhaustive()
    }
}
