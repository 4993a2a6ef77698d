//! tonic (gRPC) adapters over [`fairgate::limit`](crate::limit) (feature `tonic`): the
//! permit lives until the end of the **response stream**, refusals are gRPC statuses, and
//! the caller's `grpc-timeout` bounds the queue wait.
//!
//! | middleware | side | a refusal is |
//! |---|---|---|
//! | [`ClientLimitLayer`] → [`ClientLimit`] | client, around a `tonic::transport::Channel` | an `Err` holding a `tonic::Status` (the caller sees the status) |
//! | [`ServerLimitLayer`] → [`ServerLimit`] | server, `Server::builder().layer(..)` (server-wide) or around one service (keeps `NamedService`) | a Trailers-Only status **response** |
//!
//! Both take permits from a shared [`Limiter`](crate::limit::Limiter): clone it (or the
//! layer) to cap several channels or services together; its `in_flight()`, `waiting()` and
//! `capacity()` are the observable state, and a capacity of 0 is a passthrough.
//!
//! With feature `redis`, `ClientLimitLayer::fleet` / `ServerLimitLayer::fleet` take
//! fleet-wide permits from a [`FleetLimiter`](crate::fleet::FleetLimiter) instead (the
//! local fair queue, then a Redis lease): the response stream holds the whole fleet permit
//! — local permit **and** lease — to its end, so a streaming RPC counts against the fleet
//! cap while it streams; the `grpc-timeout` bounds the wait for both.
//!
//! # Why the response stream
//! tonic returns the response head as soon as a handler returns its stream, so tower's
//! `ConcurrencyLimit`, tonic's `concurrency_limit_per_connection` and
//! `Endpoint::concurrency_limit` all release their permit before the first message of a
//! server stream is sent (tonic issue #1656): a streaming RPC runs with no slot held. Here
//! the permit moves into the response body (a [`LimitedBody`]) and is released exactly once
//! on the first of: the trailers (the end of every gRPC response), the end of the stream,
//! an error, or the body being dropped (on the client: the `tonic::Streaming` dropped; on
//! the server: the client cancelled). [`Release::ResponseFuture`] restores tower's
//! behaviour.
//!
//! # Status codes
//! See [`rejection_status`]: queue full → `RESOURCE_EXHAUSTED`; queue timeout →
//! `RESOURCE_EXHAUSTED` (configurable `UNAVAILABLE`, [`QueueTimeoutCode`]); the caller's
//! deadline ran out while queued → `DEADLINE_EXCEEDED`; closed, or a fleet limiter whose
//! Redis is unreachable (fail closed) → `UNAVAILABLE`. The reason
//! is in the [`REJECT_REASON_KEY`] metadata. The layers build these statuses themselves:
//! tonic turns any other error type into `UNKNOWN` (client) or a stream reset seen as
//! `INTERNAL` (server).
//!
//! # Deadlines
//! A request's `grpc-timeout` header (set by `tonic::Request::set_timeout`) bounds its wait
//! in the queue ([`Limiter::acquire_until`](crate::limit::Limiter::acquire_until)). The
//! client layer sits outside the channel, whose own timeout would restart the full budget
//! after the queue wait, so an admitted call that waited has its `grpc-timeout` rewritten to
//! the budget left. `Endpoint::timeout` applies inside the channel, after admission.
//!
//! # Retries
//! Inside a `tower::retry` layer every attempt takes and returns its own permit (a failed
//! attempt's response is dropped, and its permit with it); outside it, one permit spans all
//! attempts.
//!
//! # Example: a streaming call holds its client slot
//! ```
//! use fairgate::limit::Limiter;
//! use fairgate::tonic::ClientLimitLayer;
//! use http_body_util::BodyExt;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let limiter = Limiter::builder("rpc").capacity(1).max_queue(Some(0)).build()?;
//! // Stands in for a `Channel`: answers every call with a two-message stream.
//! let transport = service_fn(|_req: http::Request<tonic::body::Body>| async {
//!     let frames = futures::stream::iter([
//!         Ok::<_, tonic::Status>(http_body::Frame::data(bytes::Bytes::from_static(b"\0\0\0\0\0"))),
//!         Ok(http_body::Frame::data(bytes::Bytes::from_static(b"\0\0\0\0\0"))),
//!     ]);
//!     Ok::<_, tonic::Status>(http::Response::new(tonic::body::Body::new(
//!         http_body_util::StreamBody::new(frames),
//!     )))
//! });
//! let client = ServiceBuilder::new().layer(ClientLimitLayer::new(limiter.clone())).service(transport);
//!
//! let mut body = client.clone().oneshot(http::Request::default()).await?.into_body();
//! body.frame().await.unwrap()?; // the first message arrived...
//! assert_eq!(limiter.in_flight(), 1); // ...and the call still holds its slot
//!
//! let refused = client.clone().oneshot(http::Request::default()).await.unwrap_err();
//! let status = refused.downcast::<tonic::Status>().unwrap();
//! assert_eq!(status.code(), tonic::Code::ResourceExhausted);
//!
//! drop(body); // the caller abandons the stream: the slot is free again
//! assert_eq!(limiter.in_flight(), 0);
//! # Ok(())
//! # }
//! ```

mod admitting;
mod client;
mod grpc_timeout;
mod server;
mod source;
mod status;

pub use crate::http::{LimitedBody, Release};
pub use client::{ClientLimit, ClientLimitLayer, ClientResponseFuture};
pub use server::{ServerLimit, ServerLimitLayer, ServerResponseFuture};
pub use status::{rejection_status, QueueTimeoutCode, REJECT_REASON_KEY};

/// What both layers are configured with.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settings {
    queue_timeout: QueueTimeoutCode,
    honor_deadline: bool,
    release: Release,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            queue_timeout: QueueTimeoutCode::ResourceExhausted,
            honor_deadline: true,
            release: Release::BodyEnd,
        }
    }
}
