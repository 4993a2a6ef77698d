//! [`LimitedBody`]: a response body that holds its request's permit until the body ends.

use core::fmt;
use core::pin::Pin;
use core::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::held::HeldPermit;
#[cfg(feature = "redis")]
use crate::fleet::FleetPermit;
use crate::limit::LimitPermit;

pin_project! {
    /// A response body holding its request's permit until the body is over: a
    /// [`LimitPermit`], or with feature `redis` a fleet permit (local permit **and** fleet
    /// lease, so the lease too is held to the end of a streaming body).
    ///
    /// The permit is released exactly once, on the first of:
    /// * the body yields its end (`None`), an error, or a trailers frame;
    /// * the body reports [`is_end_stream`](Body::is_end_stream) — checked when the body is
    ///   wrapped (an empty body, a `HEAD` or `204` response releases at once) and after each
    ///   data frame (the last frame of a sized body releases as it is handed over, even if
    ///   the consumer never polls again);
    /// * the body is dropped (the client went away, the connection closed, the consumer
    ///   stopped reading).
    ///
    /// The permit is a field taken once (`Option::take`): there is no shared "released" flag.
    /// [`size_hint`](Body::size_hint) and [`is_end_stream`](Body::is_end_stream) are the
    /// wrapped body's.
    ///
    /// The server layer also answers rejections with this type (a small JSON body, no
    /// permit); that is why the [`Body`] impl asks for `B::Data: From<Bytes>` (true of every
    /// `Bytes`-based body: hyper's `Incoming`, `http_body_util::Full`, tonic's `Body`, ...).
    ///
    /// # Example
    /// ```
    /// use fairgate::http::LimitedBody;
    /// use fairgate::limit::Limiter;
    /// use http_body_util::BodyExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let limiter = Limiter::builder("upstream").capacity(1).build()?;
    /// let chunks = http_body_util::StreamBody::new(futures::stream::iter([
    ///     Ok::<_, std::convert::Infallible>(http_body::Frame::data(bytes::Bytes::from("a"))),
    ///     Ok(http_body::Frame::data(bytes::Bytes::from("b"))),
    /// ]));
    /// let mut body = LimitedBody::new(chunks, limiter.try_acquire()?);
    /// assert_eq!(limiter.in_flight(), 1);
    /// body.frame().await.unwrap()?; // "a": still streaming, still held
    /// assert_eq!(limiter.in_flight(), 1);
    /// body.frame().await.unwrap()?; // "b"
    /// assert!(body.frame().await.is_none()); // the end releases the permit
    /// assert_eq!(limiter.in_flight(), 0);
    /// # Ok(())
    /// # }
    /// ```
    pub struct LimitedBody<B> {
        #[pin]
        kind: Kind<B>,
        permit: Option<HeldPermit>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        // A rejection rendered by the server layer: one data frame, then the end.
        Rejection { data: Option<Bytes> },
    }
}

impl<B: Body> LimitedBody<B> {
    /// Wraps `body` so that it holds `permit` until it ends, fails, yields trailers or is
    /// dropped. A body that is already at its end releases the permit at once.
    ///
    /// ```
    /// use fairgate::http::LimitedBody;
    /// let limiter = fairgate::limit::Limiter::builder("api").capacity(1).build().unwrap();
    /// let empty = LimitedBody::new(http_body_util::Empty::<bytes::Bytes>::new(), limiter.try_acquire().unwrap());
    /// assert!(!empty.holds_permit()); // nothing to stream: released at once
    /// assert_eq!(limiter.in_flight(), 0);
    /// ```
    pub fn new(body: B, permit: LimitPermit) -> Self {
        Self::holding(body, HeldPermit::from(permit))
    }

    /// Wraps `body` so that it holds a fleet permit — its local permit and its fleet-wide
    /// lease — until it ends, fails, yields trailers or is dropped, exactly as
    /// [`new`](Self::new) does for a local permit. What the http layers do for a
    /// [`FleetLimiter`](crate::fleet::FleetLimiter) admission source; use it to keep a
    /// lease taken with [`FleetLimiter::acquire`](crate::fleet::FleetLimiter::acquire) for
    /// a body you build yourself.
    ///
    /// ```no_run
    /// # async fn run(limiter: fairgate::fleet::FleetLimiter) -> Result<(), Box<dyn std::error::Error>> {
    /// use fairgate::http::LimitedBody;
    /// let permit = limiter.acquire().await?;
    /// let body = LimitedBody::with_fleet_permit(http_body_util::Full::new(bytes::Bytes::from("x")), permit);
    /// assert!(body.holds_permit());
    /// assert_eq!(limiter.held_leases(), 1);
    /// drop(body); // releases the local permit and hands the lease to the releaser
    /// assert_eq!(limiter.held_leases(), 0);
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "redis")]
    pub fn with_fleet_permit(body: B, permit: FleetPermit) -> Self {
        Self::holding(body, HeldPermit::from(permit))
    }

    /// Wraps `body` holding `permit`; released at once if the body is already at its end.
    pub(crate) fn holding(body: B, permit: HeldPermit) -> Self {
        let permit = if body.is_end_stream() {
            drop(permit);
            None
        } else {
            Some(permit)
        };
        LimitedBody {
            kind: Kind::Inner { body },
            permit,
        }
    }
}

impl<B> LimitedBody<B> {
    /// Wraps `body` without a permit (the `Release::ResponseFuture` mode).
    pub(crate) fn unheld(body: B) -> Self {
        LimitedBody {
            kind: Kind::Inner { body },
            permit: None,
        }
    }

    /// A rejection body: `data`, then the end.
    pub(crate) fn rejection(data: Bytes) -> Self {
        LimitedBody {
            kind: Kind::Rejection { data: Some(data) },
            permit: None,
        }
    }

    /// Whether this body still holds its permit.
    ///
    /// ```
    /// use fairgate::http::LimitedBody;
    /// let limiter = fairgate::limit::Limiter::builder("api").capacity(1).build().unwrap();
    /// let body = LimitedBody::new(http_body_util::Full::new(bytes::Bytes::from("x")), limiter.try_acquire().unwrap());
    /// assert!(body.holds_permit());
    /// drop(body); // dropping the body releases it
    /// assert_eq!(limiter.in_flight(), 0);
    /// ```
    pub fn holds_permit(&self) -> bool {
        self.permit.is_some()
    }
}

impl<B> Body for LimitedBody<B>
where
    B: Body,
    B::Data: From<Bytes>,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        match this.kind.project() {
            KindProj::Inner { mut body } => {
                let polled = body.as_mut().poll_frame(cx);
                let over = match &polled {
                    Poll::Pending => false,
                    // End, error or trailers: the response is over.
                    Poll::Ready(None) | Poll::Ready(Some(Err(_))) => true,
                    Poll::Ready(Some(Ok(frame))) => frame.is_trailers() || body.is_end_stream(),
                };
                if over {
                    // Released before the frame is handed over: the slot is free even if
                    // the consumer keeps this (finished) body around.
                    drop(this.permit.take());
                }
                polled
            }
            KindProj::Rejection { data } => {
                Poll::Ready(data.take().map(|bytes| Ok(Frame::data(bytes.into()))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Rejection { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Rejection { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

impl<B: fmt::Debug> fmt::Debug for LimitedBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("LimitedBody");
        match &self.kind {
            Kind::Inner { body } => s.field("body", body),
            Kind::Rejection { data } => s.field("rejection", data),
        };
        s.field("holds_permit", &self.permit.is_some()).finish()
    }
}
