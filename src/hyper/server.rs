//! [`Server`]: an accept loop serving a tower service with hyper-util, with an optional
//! connection limiter.

use core::fmt;
use core::future::{poll_fn, Future};
use core::pin::pin;
use core::task::Poll;
use std::io;
use std::net::SocketAddr;

use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tower_service::Service;

use crate::limit::{Limiter, RejectReason};
use crate::tower::BoxError;

/// Serves `service` on `listener` (HTTP/1 and HTTP/2) until an accept error that is not
/// transient. Shorthand for `Server::new(listener).serve(service)`.
///
/// ```no_run
/// # #[tokio::main]
/// # async fn main() -> std::io::Result<()> {
/// let app = tower::service_fn(|_req: http::Request<hyper::body::Incoming>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(String::from("ok")))
/// });
/// fairgate::hyper::serve(tokio::net::TcpListener::bind("127.0.0.1:0").await?, app).await
/// # }
/// ```
///
/// # Errors
/// The first accept error that is not transient (see [`Server::serve`]).
pub async fn serve<S, B>(listener: TcpListener, service: S) -> io::Result<()>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    Server::new(listener).serve(service).await
}

/// An accept loop on a tokio [`TcpListener`] that serves a tower service with hyper-util's
/// auto (HTTP/1 + HTTP/2) connection builder, one spawned task per connection, optionally
/// bounded by a connection [`Limiter`].
///
/// Each request goes through `hyper_util::service::TowerToHyperService`, which clones the
/// service and calls `poll_ready` once per request, so a limiter layered into the service
/// holds nothing between requests.
///
/// # Example
/// ```
/// use fairgate::hyper::Server;
/// use fairgate::limit::Limiter;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let server = Server::new(listener)
///     .connection_limit(Limiter::builder("connections").capacity(100).build()?);
/// let addr = server.local_addr()?;
/// let app = tower::service_fn(|_req: http::Request<hyper::body::Incoming>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(String::from("ok")))
/// });
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// let running = tokio::spawn(server.serve_with_shutdown(app, async { stopped.await.ok(); }));
/// # let _ = addr;
/// stop.send(()).unwrap();
/// running.await??; // the accept loop ends; connections already accepted finish on their own
/// # Ok(())
/// # }
/// ```
pub struct Server {
    listener: TcpListener,
    connections: Option<Limiter>,
    builder: Builder<TokioExecutor>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("listener", &self.listener)
            .field("connections", &self.connections)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A server on `listener` with hyper-util's default auto builder and no connection limit.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let server = fairgate::hyper::Server::new(tokio::net::TcpListener::bind("127.0.0.1:0").await?);
    /// assert!(server.local_addr()?.ip().is_loopback());
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(listener: TcpListener) -> Self {
        Server {
            listener,
            connections: None,
            builder: Builder::new(TokioExecutor::new()),
        }
    }

    /// Bounds the connections served at once by `limiter`: a permit is taken before each
    /// `accept` and held by the connection's task until the connection ends.
    ///
    /// * While no permit is free, the server does not accept: new connections wait in the
    ///   kernel's listen backlog.
    /// * If the limiter refuses instead of waiting (`max_queue(Some(0))`, or its queue
    ///   timeout ran out), the next connection is accepted and, unless a slot has freed by
    ///   then, closed at once: load shedding at the connection level.
    /// * If the limiter is closed, the accept loop ends (`Ok(())`).
    ///
    /// `limiter.in_flight()` is the number of open connections.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let limiter = fairgate::limit::Limiter::builder("conns").capacity(2).build()?;
    /// let server = fairgate::hyper::Server::new(tokio::net::TcpListener::bind("127.0.0.1:0").await?)
    ///     .connection_limit(limiter.clone());
    /// assert_eq!(limiter.in_flight(), 0);
    /// # drop(server);
    /// # Ok(())
    /// # }
    /// ```
    pub fn connection_limit(mut self, limiter: Limiter) -> Self {
        self.connections = Some(limiter);
        self
    }

    /// The hyper-util connection builder, to tune HTTP/1 and HTTP/2 settings (or restrict
    /// the server to one protocol).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let mut server = fairgate::hyper::Server::new(tokio::net::TcpListener::bind("127.0.0.1:0").await?);
    /// server.builder_mut().http2().max_concurrent_streams(64);
    /// # Ok(())
    /// # }
    /// ```
    pub fn builder_mut(&mut self) -> &mut Builder<TokioExecutor> {
        &mut self.builder
    }

    /// The address the listener is bound to.
    ///
    /// # Errors
    /// As [`TcpListener::local_addr`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let server = fairgate::hyper::Server::new(tokio::net::TcpListener::bind("127.0.0.1:0").await?);
    /// assert_ne!(server.local_addr()?.port(), 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves `service` until an accept error that is not transient (or the connection
    /// limiter is closed). Transient errors (a connection reset or aborted before it was
    /// accepted, an interrupted call) are skipped.
    ///
    /// # Errors
    /// The first accept error that is not transient, e.g. running out of file descriptors.
    ///
    /// ```no_run
    /// # #[tokio::main]
    /// # async fn main() -> std::io::Result<()> {
    /// let app = tower::service_fn(|_req: http::Request<hyper::body::Incoming>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(String::from("ok")))
    /// });
    /// fairgate::hyper::Server::new(tokio::net::TcpListener::bind("127.0.0.1:0").await?).serve(app).await
    /// # }
    /// ```
    pub async fn serve<S, B>(self, service: S) -> io::Result<()>
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        self.serve_with_shutdown(service, core::future::pending::<()>())
            .await
    }

    /// Serves `service` until `shutdown` completes (or as [`serve`](Self::serve) ends). On
    /// shutdown the accept loop stops; connections already accepted run to their end in
    /// their own tasks, each still holding its connection permit.
    ///
    /// # Errors
    /// As [`serve`](Self::serve).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let app = tower::service_fn(|_req: http::Request<hyper::body::Incoming>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(String::from("ok")))
    /// });
    /// let server = fairgate::hyper::Server::new(tokio::net::TcpListener::bind("127.0.0.1:0").await?);
    /// server.serve_with_shutdown(app, async {}).await // stops at once
    /// # }
    /// ```
    pub async fn serve_with_shutdown<S, B, F>(self, service: S, shutdown: F) -> io::Result<()>
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
        F: Future<Output = ()>,
    {
        let mut shutdown = pin!(shutdown);
        let mut accept_loop = pin!(self.accept_loop(service));
        poll_fn(|cx| {
            if shutdown.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ok(()));
            }
            accept_loop.as_mut().poll(cx)
        })
        .await
    }

    async fn accept_loop<S, B>(self, service: S) -> io::Result<()>
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        loop {
            // The permit comes first: with every slot taken, the server does not accept.
            let (stream, permit) = match &self.connections {
                None => (self.accept().await?, None),
                Some(limiter) => match limiter.acquire().await {
                    Ok(permit) => (self.accept().await?, Some(permit)),
                    Err(rejected) if rejected.reason() == RejectReason::Closed => return Ok(()),
                    // The limiter sheds instead of waiting: one connection is accepted and,
                    // unless a slot freed meanwhile, closed.
                    Err(_) => match self.accept().await? {
                        None => continue,
                        Some(stream) => match limiter.try_acquire() {
                            Ok(permit) => (Some(stream), Some(permit)),
                            Err(_) => {
                                drop(stream);
                                continue;
                            }
                        },
                    },
                },
            };
            let Some(stream) = stream else { continue };
            let builder = self.builder.clone();
            let service = service.clone();
            tokio::spawn(async move {
                // Held by the task: released when the connection ends, however it ends.
                let _permit = permit;
                let service = TowerToHyperService::new(service);
                // A connection error concerns that client only (reset, protocol error).
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    /// Accepts one connection; `Ok(None)` for a transient failure.
    async fn accept(&self) -> io::Result<Option<TcpStream>> {
        match self.listener.accept().await {
            Ok((stream, _peer)) => Ok(Some(stream)),
            Err(error) if is_transient(&error) => Ok(None),
            Err(error) => Err(error),
        }
    }
}

fn is_transient(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}
