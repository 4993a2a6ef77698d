//! One limiter for every request: [`ConcurrencyLimitLayer`] → [`ConcurrencyLimit`] →
//! [`ResponseFuture`].

mod future;
mod layer;
mod service;

pub use future::ResponseFuture;
pub(crate) use future::{admit, AcquireSlot};
pub use layer::ConcurrencyLimitLayer;
pub use service::ConcurrencyLimit;
