//! The client middleware: [`ClientLimitLayer`] → [`ClientLimit`] → [`ResponseFuture`].

mod future;
mod layer;
mod service;

pub use future::ResponseFuture;
pub use layer::ClientLimitLayer;
pub use service::ClientLimit;
