//! tower middleware over [`fairgate::limit`](crate::limit) (feature `tower`).
//!
//! | middleware | admits through | module |
//! |---|---|---|
//! | [`ConcurrencyLimitLayer`] → [`ConcurrencyLimit`] | one shared [`Limiter`](crate::limit::Limiter) | [`concurrency`] |
//! | [`KeyedLimitLayer`] → [`KeyedLimit`] | the limiter of the request's key, from a [`LimiterManager`](crate::limit::LimiterManager) | [`keyed`] |
//!
//! Both differ from `tower::limit::ConcurrencyLimit` in the same ways:
//!
//! * **`poll_ready` never takes a permit.** It forwards the inner service's readiness. An
//!   idle, ready service (or clone, or keep-alive connection) holds nothing.
//! * **`call` admits, refuses, or queues.** A free permit admits the request at once; a
//!   full queue or a closed limiter refuses it at once; otherwise it joins the FIFO queue
//!   right in `call`, so requests are admitted **in the order they were called**, however
//!   their futures are spawned and polled. The wait happens in the response future: an outer
//!   `tower::timeout::Timeout` or `tokio::time::timeout` covers it, and dropping the request
//!   removes its waiter.
//! * **A queued request carries the readied inner service**, leaving a clone behind, as
//!   tower's contract requires of a service that calls its inner service later. The inner
//!   service must therefore be `Clone` (wrap it in `tower::buffer::Buffer` if it is not).
//! * **Typed rejections.** A bounded queue (`max_queue`), a queue timeout, a closed limiter
//!   or a refused key fail the request with a [`BoxError`] holding a
//!   [`Rejected`](crate::limit::Rejected): `err.downcast_ref::<Rejected>()` gives its
//!   [`reason()`](crate::limit::Rejected::reason) (`queue_full`, `queue_timeout`,
//!   `deadline_exceeded`, `closed`, `too_many_keys`).
//! * **Capacity 0 is a passthrough**, not "block forever".
//! * **The permit is released when the response future completes or is dropped.** Layered
//!   inside `tower::retry::Retry`, each attempt takes and returns its own permit; outside it,
//!   one permit spans every attempt. Nothing is shared between attempts, so a retry cannot
//!   leak or double-release a permit.
//!
//! With a `queue_timeout`, `call` must run inside a tokio runtime: it may start the queue
//! timer.

pub mod concurrency;
pub mod keyed;

pub use concurrency::{ConcurrencyLimit, ConcurrencyLimitLayer};
pub use keyed::{KeyedLimit, KeyedLimitLayer};

/// The error type of the middleware here: the same type as `tower::BoxError`.
pub type BoxError = std::boxed::Box<dyn std::error::Error + Send + Sync>;
