//! [`ServerLimit`]: admits each HTTP request before its handler runs.

use core::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use super::future::ResponseFuture;
use crate::http::admitted::Admitted;
use crate::http::{Admit, LimitedBody, RejectionResponse, Release};

/// Admits every HTTP request before calling the inner service, holds the permit until the
/// end of the response body, and answers a refusal with a response.
///
/// Built by [`ServerLimitLayer`](super::ServerLimitLayer) (see there for an example).
///
/// * `poll_ready` forwards the inner service's readiness only: no permit is taken there, so
///   an idle keep-alive connection or a ready clone holds nothing.
/// * `call` moves the readied inner service into the [`ResponseFuture`] (leaving a clone
///   behind); the future waits for a permit in the limiter's FIFO queue, then calls the
///   handler. A client that goes away drops the future: a queued request leaves the queue,
///   a running one releases its permit.
/// * The response body is a [`LimitedBody`] holding the permit (see there for exactly when
///   it is released), or, with [`Release::ResponseFuture`], holding nothing.
/// * A refusal (`queue_full`, `queue_timeout`, `closed`, ...) is `Ok(response)` rendered by
///   the [`RejectionResponse`]; the handler is not called. Errors of the inner service pass
///   through unchanged.
#[derive(Clone, Debug)]
pub struct ServerLimit<S, A> {
    inner: S,
    admit: A,
    release: Release,
    rejection: RejectionResponse,
}

impl<S, A> ServerLimit<S, A> {
    pub(crate) fn new(inner: S, admit: A, release: Release, rejection: RejectionResponse) -> Self {
        ServerLimit {
            inner,
            admit,
            release,
            rejection,
        }
    }

    /// Where permits come from: the [`Limiter`](crate::limit::Limiter), or
    /// [`Keyed`](crate::http::Keyed).
    ///
    /// ```
    /// use fairgate::http::ServerLimitLayer;
    /// use tower::Layer;
    /// let svc = ServerLimitLayer::new(fairgate::limit::Limiter::builder("api").build().unwrap()).layer(());
    /// assert_eq!(svc.admission().name(), "api");
    /// ```
    pub fn admission(&self) -> &A {
        &self.admit
    }

    /// The inner service.
    ///
    /// ```
    /// use fairgate::http::ServerLimitLayer;
    /// use tower::Layer;
    /// let svc = ServerLimitLayer::new(fairgate::limit::Limiter::builder("api").build().unwrap()).layer(7);
    /// assert_eq!(*svc.get_ref(), 7);
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the inner service.
    ///
    /// ```
    /// use fairgate::http::ServerLimitLayer;
    /// use tower::Layer;
    /// let svc = ServerLimitLayer::new(fairgate::limit::Limiter::builder("api").build().unwrap()).layer(7);
    /// assert_eq!(svc.into_inner(), 7);
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, A, ReqB, ResB> Service<Request<ReqB>> for ServerLimit<S, A>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
    A: Admit<Request<ReqB>>,
    ResB: Body,
    ResB::Data: From<Bytes>,
{
    type Response = Response<LimitedBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        // Readiness of the inner service only: the permit is taken in the response future.
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        ResponseFuture::new(
            Admitted::start(&self.admit, &mut self.inner, request, self.release),
            self.rejection.clone(),
        )
    }
}
