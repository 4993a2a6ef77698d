//! Serving limited services with hyper 1 and hyper-util (feature `hyper`).
//!
//! * [`Server`]: an accept loop over a tokio [`TcpListener`](tokio::net::TcpListener) that
//!   serves a tower service (for example one wrapped in
//!   [`ServerLimitLayer`](crate::http::ServerLimitLayer)) over HTTP/1 and HTTP/2 with
//!   hyper-util's auto connection builder, one task per connection.
//! * **A connection limiter** ([`Server::connection_limit`]): neither hyper nor hyper-util
//!   bounds accepted connections. Here a permit is taken from a
//!   [`Limiter`](crate::limit::Limiter) *before* `accept`, and moved into the connection's
//!   task, which drops it when the connection ends. While every slot is taken the server
//!   does not accept, so new connections wait in the kernel's backlog (FIFO), not in memory.
//!
//! Requests and connections are limited separately: a request limiter bounds work, a
//! connection limiter bounds sockets, buffers and tasks.
//!
//! # Example
//! ```no_run
//! use bytes::Bytes;
//! use fairgate::http::ServerLimitLayer;
//! use fairgate::hyper::Server;
//! use fairgate::limit::Limiter;
//! use http_body_util::Full;
//! use tower::{service_fn, ServiceBuilder};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let requests = Limiter::builder("requests").capacity(64).max_queue(Some(256)).build()?;
//! let connections = Limiter::builder("connections").capacity(1024).build()?;
//! let app = ServiceBuilder::new()
//!     .layer(ServerLimitLayer::new(requests))
//!     .service(service_fn(|_req: http::Request<hyper::body::Incoming>| async {
//!         Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from("hi"))))
//!     }));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! Server::new(listener).connection_limit(connections).serve(app).await?;
//! # Ok(())
//! # }
//! ```

mod server;

pub use server::{serve, Server};
