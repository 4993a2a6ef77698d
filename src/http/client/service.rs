//! [`ClientLimit`]: admits each outgoing HTTP request before it is sent.

use core::task::{Context, Poll};

use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use super::future::ResponseFuture;
use crate::http::admitted::Admitted;
use crate::http::{Admit, LimitedBody, Release};
use crate::tower::BoxError;

/// Admits every outgoing request before sending it through the inner client, and holds the
/// permit until the end of the response body.
///
/// Built by [`ClientLimitLayer`](super::ClientLimitLayer) (see there for an example).
///
/// * `poll_ready` forwards the inner client's readiness only; the wait for a permit happens
///   in the [`ResponseFuture`], so the caller's timeout covers it and dropping the request
///   leaves the queue.
/// * The response body is a [`LimitedBody`] holding the permit (with
///   [`Release::ResponseFuture`], holding nothing).
/// * A refusal fails the request with a [`BoxError`] holding a
///   [`Rejected`](crate::limit::Rejected) (downcastable); the request is not sent. Errors of
///   the inner client are converted into [`BoxError`] unchanged.
///
/// Placed inside a retry layer, every attempt takes its own permit; outside it, one permit
/// spans all attempts.
#[derive(Clone, Debug)]
pub struct ClientLimit<S, A> {
    inner: S,
    admit: A,
    release: Release,
}

impl<S, A> ClientLimit<S, A> {
    pub(crate) fn new(inner: S, admit: A, release: Release) -> Self {
        ClientLimit {
            inner,
            admit,
            release,
        }
    }

    /// Where permits come from.
    ///
    /// ```
    /// use fairgate::http::ClientLimitLayer;
    /// use tower::Layer;
    /// let svc = ClientLimitLayer::new(fairgate::limit::Limiter::builder("up").build().unwrap()).layer(());
    /// assert_eq!(svc.admission().name(), "up");
    /// ```
    pub fn admission(&self) -> &A {
        &self.admit
    }

    /// The inner client.
    ///
    /// ```
    /// use fairgate::http::ClientLimitLayer;
    /// use tower::Layer;
    /// let svc = ClientLimitLayer::new(fairgate::limit::Limiter::builder("up").build().unwrap()).layer(3);
    /// assert_eq!(*svc.get_ref(), 3);
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the inner client.
    ///
    /// ```
    /// use fairgate::http::ClientLimitLayer;
    /// use tower::Layer;
    /// let svc = ClientLimitLayer::new(fairgate::limit::Limiter::builder("up").build().unwrap()).layer(3);
    /// assert_eq!(svc.into_inner(), 3);
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, A, ReqB, ResB> Service<Request<ReqB>> for ClientLimit<S, A>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
    S::Error: Into<BoxError>,
    A: Admit<Request<ReqB>>,
    ResB: Body,
{
    type Response = Response<LimitedBody<ResB>>;
    type Error = BoxError;
    type Future = ResponseFuture<S, ReqB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        ResponseFuture::new(Admitted::start(
            &self.admit,
            &mut self.inner,
            request,
            self.release,
        ))
    }
}
