//! The response future of [`KeyedLimit`](super::KeyedLimit).

use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tower_service::Service;

use crate::limit::manager::Lease;
use crate::tower::concurrency;
use crate::tower::BoxError;

pin_project! {
    /// The future returned by [`KeyedLimit::call`](super::KeyedLimit): the key's limiter
    /// admits the request exactly as [`concurrency::ResponseFuture`] does, or the manager
    /// refused the key ([`RejectReason::TooManyKeys`](crate::limit::RejectReason)).
    ///
    /// While this future lives, its key counts as busy and is never evicted.
    ///
    /// # Errors
    /// A [`BoxError`] holding a [`Rejected`](crate::limit::Rejected) (downcastable) for a
    /// refused key or a refused acquisition; otherwise the inner service's error, converted.
    pub struct ResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        inner: concurrency::ResponseFuture<S, Req>,
        // Keeps the key's entry busy (not evictable) until the response is done, including
        // the instants inside a grant where the limiter counts neither a waiter nor a permit.
        lease: Option<Lease>,
    }
}

impl<S, Req> ResponseFuture<S, Req>
where
    S: Service<Req>,
{
    pub(crate) fn new(lease: Option<Lease>, inner: concurrency::ResponseFuture<S, Req>) -> Self {
        ResponseFuture { inner, lease }
    }
}

impl<S, Req> Future for ResponseFuture<S, Req>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let output = ready!(this.inner.poll(cx));
        *this.lease = None;
        Poll::Ready(output)
    }
}

impl<S, Req> fmt::Debug for ResponseFuture<S, Req>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("inner", &self.inner)
            .field("leased", &self.lease.is_some())
            .finish()
    }
}
