//! HTTP middleware over [`fairgate::limit`](crate::limit) (feature `http`): the permit lives
//! until the end of the **response body**, not just the response head.
//!
//! | middleware | side | a refusal is | module |
//! |---|---|---|---|
//! | [`ServerLimitLayer`] → [`ServerLimit`] | server (hyper via `TowerToHyperService`, axum, tower-http stacks) | a 429/503/504 JSON **response** ([`RejectionResponse`]) | [`server`] |
//! | [`ClientLimitLayer`] → [`ClientLimit`] | client (hyper-util's legacy `Client`, any tower HTTP client) | `Err(BoxError)` holding a [`Rejected`](crate::limit::Rejected) | [`client`] |
//!
//! # Admission sources
//! Both take permits from an [`Admit`] source:
//! * one shared [`Limiter`](crate::limit::Limiter) (`new`);
//! * the limiter of each request's key in a [`LimiterManager`](crate::limit::LimiterManager)
//!   ([`Keyed`], built by `keyed` with a key extractor `Fn(&Request<B>) -> K` such as the
//!   channel a gateway's router picked);
//! * with feature `redis`, a fleet-wide [`FleetLimiter`](crate::fleet::FleetLimiter)
//!   (`fleet`): the local fair queue, then a Redis lease. The body holds the whole fleet
//!   permit — local permit **and** lease — so a streaming response counts against the fleet
//!   cap until it ends; Redis unreachable under fail-closed is refused as
//!   [`Unavailable`](crate::limit::RejectReason::Unavailable) (a 503 JSON response of type
//!   `unavailable` from the server layer).
//!
//! The local path allocates nothing per request for this choice: the held permit is an
//! enum, not a boxed trait object.
//!
//! # Why the body
//! `tower::limit::ConcurrencyLimit` (and fairgate's own [`tower`](crate::tower) layer)
//! release the permit when the response future completes, which for HTTP is the response
//! **head**: a streaming body (an LLM completion, a download, a gRPC stream) then runs with
//! no permit held, and the limit does not bound the work it was meant to bound. Here the
//! permit moves into the response body, a [`LimitedBody`], and is released exactly once on
//! the first of: end of stream, an error, a trailers frame, the body reporting
//! `is_end_stream` (at once for `HEAD`, `204` or an empty body), or the body being dropped
//! (client gone). [`Release::ResponseFuture`] restores tower's behaviour for users who want
//! to limit handler execution only.
//!
//! # Readiness and cancellation
//! `poll_ready` only forwards the inner service's readiness; the permit is awaited inside
//! the response future, before the handler is called (server) or the request is sent
//! (client). So an idle keep-alive connection holds nothing, an outer timeout covers the
//! queue wait, and a client that disconnects removes its waiter (hyper drops the future).
//!
//! # Example: a server whose streaming responses hold their permit
//! ```
//! use std::convert::Infallible;
//! use bytes::Bytes;
//! use fairgate::http::ServerLimitLayer;
//! use fairgate::limit::Limiter;
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, StreamBody};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let limiter = Limiter::builder("completions").capacity(2).max_queue(Some(8)).build()?;
//! let svc = ServiceBuilder::new()
//!     .layer(ServerLimitLayer::new(limiter.clone()))
//!     .service(service_fn(|_req: Request<()>| async {
//!         let chunks = futures::stream::iter(["one ", "two ", "three"])
//!             .map(|s| Ok::<_, Infallible>(http_body::Frame::data(Bytes::from(s))));
//!         Ok::<_, Infallible>(Response::new(StreamBody::new(chunks)))
//!     }));
//! # use futures::StreamExt;
//!
//! let mut body = svc.oneshot(Request::new(())).await?.into_body();
//! body.frame().await.unwrap()?; // the head has been answered, the body streams...
//! assert_eq!(limiter.in_flight(), 1); // ...and the permit is still held
//! while body.frame().await.is_some() {}
//! assert_eq!(limiter.in_flight(), 0);
//! # Ok(())
//! # }
//! ```

mod admit;
pub(crate) mod admitted;
mod body;
pub mod client;
mod held;
mod response;
pub mod server;

pub use admit::{Admission, Admit, Keyed};
pub use body::LimitedBody;
pub use client::{ClientLimit, ClientLimitLayer};
#[cfg(feature = "tonic")]
pub(crate) use held::HeldPermit;
pub use response::RejectionResponse;
pub use server::{ServerLimit, ServerLimitLayer};

/// When the permit of a request is released.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Release {
    /// When the response body ends, fails, yields trailers or is dropped (the default).
    #[default]
    BodyEnd,
    /// When the response future completes, i.e. at the response head, as
    /// `tower::limit::ConcurrencyLimit` does: limits handler execution only, not streaming.
    ResponseFuture,
}
