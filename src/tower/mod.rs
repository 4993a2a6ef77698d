//! tower middleware over [`fairgate::limit`](crate::limit) (feature `tower`).
//!
//! | middleware | admits through | module |
//! |---|---|---|
//! | [`ConcurrencyLimitLayer`] → [`ConcurrencyLimit`] | one shared [`Limiter`](crate::limit::Limiter) | [`concurrency`] |
//! | [`KeyedLimitLayer`] → [`KeyedLimit`] | the limiter of the request's key, from a [`LimiterManager`](crate::limit::LimiterManager) | [`keyed`] |
//!
//! Both differ from `tower::limit::ConcurrencyLimit` in the same ways:
//!
//! * **`poll_ready` never takes a permit.** It forwards the inner service's readiness; the
//!   wait for a permit happens inside the response future. An idle, ready service (or clone,
//!   or keep-alive connection) holds nothing; an outer `tower::timeout::Timeout` or
//!   `tokio::time::timeout` covers the queue wait; dropping a request removes its waiter.
//! * **`call` moves the readied inner service into the response future** and leaves a clone
//!   behind, as tower's contract requires of a service that calls its inner service later.
//!   The inner service must therefore be `Clone` (wrap it in `tower::buffer::Buffer` if it
//!   is not).
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
//! FIFO: requests are admitted in the order their response futures first reach the
//! limiter's queue (the first poll), and a released permit goes straight to the oldest
//! waiter.

pub mod concurrency;
pub mod keyed;

pub use concurrency::{ConcurrencyLimit, ConcurrencyLimitLayer};
pub use keyed::{KeyedLimit, KeyedLimitLayer};

/// The error type of the middleware here: the same type as `tower::BoxError`.
pub type BoxError = std::boxed::Box<dyn std::error::Error + Send + Sync>;
