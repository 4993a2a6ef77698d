//! [`ConcurrencyLimit`]: the service that admits each request through a shared [`Limiter`].

use core::fmt;
use core::task::{Context, Poll};

use tower_service::Service;

use super::future::{admit, AcquireSlot, ResponseFuture};
use crate::limit::Limiter;
use crate::tower::BoxError;

/// Admits every request through a [`Limiter`] before calling the inner service.
///
/// Built by [`ConcurrencyLimitLayer`](super::ConcurrencyLimitLayer) or [`ConcurrencyLimit::new`].
///
/// * `poll_ready` forwards the inner service's readiness and nothing else: a ready but idle
///   service (or clone, or keep-alive connection) never holds a permit.
/// * `call` tries the limiter. A free permit admits the request at once and the readied
///   inner service is called right there. Otherwise the request joins the limiter's FIFO
///   queue **in `call`** (so requests are admitted in the order they were called), and the
///   readied inner service moves into the [`ResponseFuture`] with it, leaving a clone behind
///   (which must be polled ready before its own `call`, as tower requires). The wait itself
///   happens in the response future: an outer timeout covers it, and dropping the request
///   removes its waiter. A full queue or a closed limiter fails the future at once.
/// * The permit is released when the response future completes or is dropped. A retry layer
///   *outside* this service therefore takes one permit per attempt; a retry layer *inside* it
///   runs all attempts under one permit.
/// * With a `queue_timeout`, `call` must run inside a tokio runtime (it may start the
///   queue timer), as tower services are.
///
/// Clones share the limiter: it bounds them together.
///
/// # Example
/// ```
/// use fairgate::limit::Limiter;
/// use fairgate::tower::ConcurrencyLimit;
/// use tower::{service_fn, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), fairgate::tower::BoxError> {
/// let limiter = Limiter::builder("db").capacity(2).build()?;
/// let svc = ConcurrencyLimit::new(
///     service_fn(|x: u32| async move { Ok::<_, std::convert::Infallible>(x * 2) }),
///     limiter.clone(),
/// );
/// assert_eq!(svc.oneshot(21).await?, 42);
/// assert_eq!(limiter.in_flight(), 0);
/// # Ok(())
/// # }
/// ```
pub struct ConcurrencyLimit<S> {
    inner: S,
    limiter: Limiter,
    // Reused for every call of this instance; a clone starts without one.
    slot: AcquireSlot,
}

impl<S: Clone> Clone for ConcurrencyLimit<S> {
    fn clone(&self) -> Self {
        ConcurrencyLimit::new(self.inner.clone(), self.limiter.clone())
    }
}

impl<S: fmt::Debug> fmt::Debug for ConcurrencyLimit<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConcurrencyLimit")
            .field("inner", &self.inner)
            .field("limiter", &self.limiter)
            .finish()
    }
}

impl<S> ConcurrencyLimit<S> {
    /// Wraps `inner` so that its calls are admitted through `limiter`.
    ///
    /// ```
    /// # use fairgate::limit::Limiter;
    /// # use fairgate::tower::ConcurrencyLimit;
    /// let limiter = Limiter::builder("api").capacity(8).build().unwrap();
    /// let svc = ConcurrencyLimit::new(tower::service_fn(|()| async { Ok::<_, std::io::Error>(()) }), limiter);
    /// assert_eq!(svc.limiter().capacity(), 8);
    /// ```
    pub fn new(inner: S, limiter: Limiter) -> Self {
        ConcurrencyLimit {
            inner,
            limiter,
            slot: None,
        }
    }

    /// The limiter this service admits through: `in_flight()`, `waiting()`, `capacity()`, ...
    ///
    /// ```
    /// # use fairgate::limit::Limiter;
    /// # use fairgate::tower::ConcurrencyLimit;
    /// let limiter = Limiter::builder("api").capacity(8).build().unwrap();
    /// let svc = ConcurrencyLimit::new((), limiter.clone());
    /// assert!(svc.limiter().same_limiter(&limiter));
    /// ```
    pub fn limiter(&self) -> &Limiter {
        &self.limiter
    }

    /// The inner service.
    ///
    /// ```
    /// # use fairgate::limit::Limiter;
    /// # use fairgate::tower::ConcurrencyLimit;
    /// let svc = ConcurrencyLimit::new(7u8, Limiter::builder("x").capacity(1).build().unwrap());
    /// assert_eq!(*svc.get_ref(), 7);
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    ///
    /// ```
    /// # use fairgate::limit::Limiter;
    /// # use fairgate::tower::ConcurrencyLimit;
    /// let mut svc = ConcurrencyLimit::new(7u8, Limiter::builder("x").capacity(1).build().unwrap());
    /// *svc.get_mut() += 1;
    /// assert_eq!(svc.into_inner(), 8);
    /// ```
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    ///
    /// ```
    /// # use fairgate::limit::Limiter;
    /// # use fairgate::tower::ConcurrencyLimit;
    /// let svc = ConcurrencyLimit::new("inner", Limiter::builder("x").capacity(1).build().unwrap());
    /// assert_eq!(svc.into_inner(), "inner");
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, Req> Service<Req> for ConcurrencyLimit<S>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Readiness of the inner service only: the permit is taken in the response future.
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        admit(&self.limiter, &mut self.slot, &mut self.inner, request)
    }
}
