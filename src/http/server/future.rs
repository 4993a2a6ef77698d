//! The response future of [`ServerLimit`](super::ServerLimit).

use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{ready, Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::http::admitted::Admitted;
use crate::http::{LimitedBody, RejectionResponse};

pin_project! {
    /// The future of [`ServerLimit::call`](super::ServerLimit): waits for a permit, runs the
    /// handler, and resolves to its response with the permit moved into the body — or to the
    /// rejection response if the limiter refused. Dropping it while queued leaves the queue;
    /// dropping it while the handler runs releases the permit.
    ///
    /// # Errors
    /// Only the inner service's own errors; a refusal is a response.
    pub struct ResponseFuture<S, ReqB>
    where
        S: Service<Request<ReqB>>,
    {
        #[pin]
        inner: Admitted<S, ReqB>,
        rejection: RejectionResponse,
    }
}

impl<S, ReqB> ResponseFuture<S, ReqB>
where
    S: Service<Request<ReqB>>,
{
    pub(crate) fn new(inner: Admitted<S, ReqB>, rejection: RejectionResponse) -> Self {
        ResponseFuture { inner, rejection }
    }
}

impl<S, ReqB, ResB> Future for ResponseFuture<S, ReqB>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    ResB: Body,
    ResB::Data: From<Bytes>,
{
    type Output = Result<Response<LimitedBody<ResB>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        Poll::Ready(match ready!(this.inner.poll(cx)) {
            Ok(output) => output,
            Err(rejected) => Ok(this.rejection.render(&rejected).map(LimitedBody::rejection)),
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
