//! The server middleware: [`ServerLimitLayer`] → [`ServerLimit`] → [`ResponseFuture`].

mod future;
mod layer;
mod service;

pub use future::ResponseFuture;
pub use layer::ServerLimitLayer;
pub use service::ServerLimit;
