//! One limiter per key: [`KeyedLimitLayer`] → [`KeyedLimit`] → [`ResponseFuture`], over a
//! [`LimiterManager`](crate::limit::LimiterManager).

mod future;
mod layer;
mod service;

pub use future::ResponseFuture;
pub use layer::KeyedLimitLayer;
pub use service::KeyedLimit;
