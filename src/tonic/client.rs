//! [`ClientLimitLayer`] → [`ClientLimit`]: caps the in-flight RPCs of a tonic client.

use core::future::Future;
use core::mem;
use core::pin::Pin;
use core::task::{ready, Context, Poll};
use std::boxed::Box;

use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::admitting::{Admitting, OnAdmit};
use super::source::Source;
use super::{rejection_status, QueueTimeoutCode, Settings};
use crate::http::{LimitedBody, Release};
use crate::limit::Limiter;
use crate::tower::BoxError;

/// Caps the in-flight RPCs of a tonic client: wrap a `Channel` (or any gRPC transport
/// service) and hand the result to a generated `FooClient::new` or `tonic::client::Grpc::new`.
///
/// * Each call waits for a permit of the shared [`Limiter`] before it enters the channel,
///   in FIFO order, until one frees or the caller gives up (drops the call: it leaves the
///   queue at once).
/// * A call with a `grpc-timeout` (`tonic::Request::set_timeout`) whose deadline passes
///   while queued fails with `DEADLINE_EXCEEDED`; an admitted call that waited has its
///   `grpc-timeout` rewritten to the budget left, so the queue wait counts against the
///   caller's deadline (the channel's own timeout would restart the full budget).
/// * The permit is held until the response stream ends (the trailers, the end or an
///   error) or the `tonic::Streaming` / response is dropped — for a unary call, the end of
///   the call; for a server stream, until it is drained or dropped. Released exactly once.
/// * Refusals are `tonic::Status`es ([`rejection_status`]): queue full →
///   `RESOURCE_EXHAUSTED`, queue timeout → `RESOURCE_EXHAUSTED` (or `UNAVAILABLE`, see
///   [`queue_timeout_code`](Self::queue_timeout_code)), closed → `UNAVAILABLE`, with the
///   reason in the [`REJECT_REASON_KEY`](super::REJECT_REASON_KEY) metadata.
/// * A limiter of capacity 0 is a passthrough (counts, never waits).
///
/// Clone the layer (or the limiter) to cap several channels together.
///
/// ```no_run
/// use fairgate::limit::Limiter;
/// use fairgate::tonic::ClientLimitLayer;
/// use tower::ServiceBuilder;
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let limiter = Limiter::builder("billing-client").capacity(8).build()?;
/// let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:50051").connect().await?;
/// let limited = ServiceBuilder::new()
///     .layer(ClientLimitLayer::new(limiter.clone()))
///     .service(channel);
/// let mut grpc = tonic::client::Grpc::new(limited); // or a generated `FooClient::new(limited)`
/// # let _ = &mut grpc;
/// println!("{} of {} in flight", limiter.in_flight(), limiter.capacity());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct ClientLimitLayer {
    source: Source,
    settings: Settings,
}

impl ClientLimitLayer {
    /// A layer taking permits from `limiter` (deadline-aware, permit held to the end of the
    /// response stream, queue timeouts as `RESOURCE_EXHAUSTED`).
    ///
    /// ```
    /// let limiter = fairgate::limit::Limiter::builder("rpc").capacity(4).build().unwrap();
    /// let layer = fairgate::tonic::ClientLimitLayer::new(limiter);
    /// assert_eq!(layer.limiter().capacity(), 4);
    /// ```
    pub fn new(limiter: Limiter) -> Self {
        ClientLimitLayer {
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
    /// let layer = fairgate::tonic::ClientLimitLayer::fleet(fleet.clone());
    /// assert!(layer.limiter().same_limiter(fleet.local()));
    /// # }
    /// ```
    #[cfg(feature = "redis")]
    pub fn fleet(limiter: crate::fleet::FleetLimiter) -> Self {
        ClientLimitLayer {
            source: Source::Fleet(limiter),
            settings: Settings::default(),
        }
    }

    /// The code of a call refused by the limiter's `queue_timeout` (default
    /// `RESOURCE_EXHAUSTED`).
    ///
    /// ```
    /// use fairgate::tonic::{ClientLimitLayer, QueueTimeoutCode};
    /// let limiter = fairgate::limit::Limiter::builder("rpc").capacity(4).build().unwrap();
    /// let layer = ClientLimitLayer::new(limiter).queue_timeout_code(QueueTimeoutCode::Unavailable);
    /// # let _ = layer;
    /// ```
    pub fn queue_timeout_code(mut self, code: QueueTimeoutCode) -> Self {
        self.settings.queue_timeout = code;
        self
    }

    /// Whether a request's `grpc-timeout` bounds its queue wait and is rewritten to the
    /// budget left on admission (default `true`).
    ///
    /// ```
    /// let limiter = fairgate::limit::Limiter::builder("rpc").capacity(4).build().unwrap();
    /// let layer = fairgate::tonic::ClientLimitLayer::new(limiter).honor_deadline(false);
    /// # let _ = layer;
    /// ```
    pub fn honor_deadline(mut self, honor: bool) -> Self {
        self.settings.honor_deadline = honor;
        self
    }

    /// When the permit is released: at the end of the response stream (the default) or
    /// when the response head arrives ([`Release::ResponseFuture`], tower's behaviour: a
    /// streaming call then runs without a permit).
    ///
    /// ```
    /// use fairgate::http::Release;
    /// let limiter = fairgate::limit::Limiter::builder("rpc").capacity(4).build().unwrap();
    /// let layer = fairgate::tonic::ClientLimitLayer::new(limiter).release(Release::ResponseFuture);
    /// # let _ = layer;
    /// ```
    pub fn release(mut self, release: Release) -> Self {
        self.settings.release = release;
        self
    }

    /// The shared limiter (`in_flight()`, `waiting()`, `capacity()`, `set_capacity()`).
    ///
    /// ```
    /// let limiter = fairgate::limit::Limiter::builder("rpc").capacity(4).build().unwrap();
    /// let layer = fairgate::tonic::ClientLimitLayer::new(limiter.clone());
    /// assert!(layer.limiter().same_limiter(&limiter));
    /// ```
    pub fn limiter(&self) -> &Limiter {
        self.source.limiter()
    }
}

impl<S> Layer<S> for ClientLimitLayer {
    type Service = ClientLimit<S>;

    fn layer(&self, inner: S) -> ClientLimit<S> {
        ClientLimit {
            inner,
            source: self.source.clone(),
            settings: self.settings,
        }
    }
}

/// A tonic client transport whose calls are admitted by a [`Limiter`]; built by
/// [`ClientLimitLayer`] (see there).
///
/// `poll_ready` forwards the inner service's readiness only: the wait for a permit happens
/// in the [`ClientResponseFuture`], so dropping a call leaves the queue and nothing is
/// hoarded by an idle clone. The error type is `BoxError`: a refusal is a boxed
/// `tonic::Status` (tonic's client surfaces it unchanged), the inner service's errors pass
/// through.
#[derive(Clone, Debug)]
pub struct ClientLimit<S> {
    inner: S,
    source: Source,
    settings: Settings,
}

impl<S> ClientLimit<S> {
    /// The shared limiter.
    ///
    /// ```
    /// use tower::Layer;
    /// let limiter = fairgate::limit::Limiter::builder("rpc").capacity(4).build().unwrap();
    /// let svc = fairgate::tonic::ClientLimitLayer::new(limiter).layer(());
    /// assert_eq!(svc.limiter().name(), "rpc");
    /// ```
    pub fn limiter(&self) -> &Limiter {
        self.source.limiter()
    }

    /// The inner service.
    ///
    /// ```
    /// use tower::Layer;
    /// let limiter = fairgate::limit::Limiter::builder("rpc").capacity(4).build().unwrap();
    /// let svc = fairgate::tonic::ClientLimitLayer::new(limiter).layer(7);
    /// assert_eq!(*svc.get_ref(), 7);
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the inner service.
    ///
    /// ```
    /// use tower::Layer;
    /// let limiter = fairgate::limit::Limiter::builder("rpc").capacity(4).build().unwrap();
    /// let svc = fairgate::tonic::ClientLimitLayer::new(limiter).layer(7);
    /// assert_eq!(svc.into_inner(), 7);
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for ClientLimit<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
    S::Error: Into<BoxError>,
    ResB: Body,
{
    type Response = Response<LimitedBody<ResB>>;
    type Error = BoxError;
    type Future = ClientResponseFuture<S, ReqB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        // The readied service goes with the request; a fresh clone stays for the next call.
        let fresh = self.inner.clone();
        let readied = mem::replace(&mut self.inner, fresh);
        ClientResponseFuture {
            admitting: Admitting::new(
                &self.source,
                self.settings,
                OnAdmit::RewriteTimeout,
                readied,
                request,
            ),
            queue_timeout: self.settings.queue_timeout,
        }
    }
}

pin_project! {
    /// The response future of [`ClientLimit`]: waits for a permit, then sends the call.
    /// Dropping it leaves the queue (or, once sent, drops the call and its permit).
    pub struct ClientResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        admitting: Admitting<S, B>,
        queue_timeout: QueueTimeoutCode,
    }
}

impl<S, B, ResB> Future for ClientResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
    ResB: Body,
{
    type Output = Result<Response<LimitedBody<ResB>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        Poll::Ready(match ready!(this.admitting.poll(cx)) {
            Ok(result) => result.map_err(Into::into),
            Err(rejected) => Err(Box::new(rejection_status(&rejected, *this.queue_timeout))),
        })
    }
}

impl<S, B> core::fmt::Debug for ClientResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ClientResponseFuture")
            .finish_non_exhaustive()
    }
}
