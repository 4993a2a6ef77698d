//! The response future of [`KeyedLimit`](super::KeyedLimit).

use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tower_service::Service;

use crate::limit::manager::Lease;
use crate::limit::Rejected;
use crate::tower::concurrency;
use crate::tower::BoxError;

pin_project! {
    /// The future returned by [`KeyedLimit::call`](super::KeyedLimit): the key's limiter
    /// admits the request exactly as [`concurrency::ResponseFuture`] does, or the manager
    /// refused the key ([`RejectReason::TooManyKeys`](crate::limit::RejectReason)).
    ///
    /// While this future lives, the key counts as busy and is never evicted.
    ///
    /// # Errors
    /// A [`BoxError`] holding a [`Rejected`] (downcastable) for a refused key or a refused
    /// acquisition; otherwise the inner service's error, converted.
    pub struct ResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        admitted: Option<concurrency::ResponseFuture<S, Req>>,
        refused: Option<Rejected>,
        // Keeps the key's entry busy (not evictable) until the response is done.
        lease: Option<Lease>,
    }
}

impl<S, Req> ResponseFuture<S, Req>
where
    S: Service<Req>,
{
    pub(crate) fn admitted(lease: Lease, inner: concurrency::ResponseFuture<S, Req>) -> Self {
        ResponseFuture {
            admitted: Some(inner),
            refused: None,
            lease: Some(lease),
        }
    }

    pub(crate) fn refused(rejected: Rejected) -> Self {
        ResponseFuture {
            admitted: None,
            refused: Some(rejected),
            lease: None,
        }
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
        match this.admitted.as_pin_mut() {
            Some(admitted) => {
                let output = ready!(admitted.poll(cx));
                *this.lease = None;
                Poll::Ready(output)
            }
            None => {
                let rejected = this
                    .refused
                    .take()
                    .expect("ResponseFuture polled after completion");
                Poll::Ready(Err(rejected.into()))
            }
        }
    }
}

impl<S, Req> fmt::Debug for ResponseFuture<S, Req>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("admitted", &self.admitted)
            .field("refused", &self.refused)
            .finish()
    }
}
