//! The response future of [`ClientLimit`](super::ClientLimit).

use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{ready, Context, Poll};

use std::boxed::Box;

use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::http::admitted::Admitted;
use crate::http::LimitedBody;
use crate::tower::BoxError;

pin_project! {
    /// The future of [`ClientLimit::call`](super::ClientLimit): waits for a permit, sends the
    /// request, and resolves to the response with the permit moved into its body. Dropping it
    /// while queued leaves the queue; dropping it in flight releases the permit.
    ///
    /// # Errors
    /// A [`BoxError`] holding a [`Rejected`](crate::limit::Rejected) when the limiter refuses
    /// (the request is not sent); otherwise the inner client's error, converted.
    pub struct ResponseFuture<S, ReqB>
    where
        S: Service<Request<ReqB>>,
    {
        #[pin]
        inner: Admitted<S, ReqB>,
    }
}

impl<S, ReqB> ResponseFuture<S, ReqB>
where
    S: Service<Request<ReqB>>,
{
    pub(crate) fn new(inner: Admitted<S, ReqB>) -> Self {
        ResponseFuture { inner }
    }
}

impl<S, ReqB, ResB> Future for ResponseFuture<S, ReqB>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
    ResB: Body,
{
    type Output = Result<Response<LimitedBody<ResB>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(match ready!(self.project().inner.poll(cx)) {
            Ok(output) => output.map_err(Into::into),
            Err(rejected) => Err(Box::new(rejected)),
        })
    }
}

impl<S, ReqB> fmt::Debug for ResponseFuture<S, ReqB>
where
    S: Service<Request<ReqB>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("state", &self.inner.stage())
            .finish()
    }
}
