//! Shared pieces of the hyper tests: a test application with a streaming, a slow, a fast
//! and an empty route, a server on 127.0.0.1:0, and HTTP/1 and HTTP/2 clients.
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use fairgate::hyper::Server;
use futures::stream;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::{mpsc, watch};

/// Every test is bounded by this.
pub const LIMIT: Duration = Duration::from_secs(20);

pub type AppBody = BoxBody<Bytes, Infallible>;

/// The two protocols every server test runs under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Http1,
    Http2,
}

pub const PROTOCOLS: [Proto; 2] = [Proto::Http1, Proto::Http2];

/// The application behind the limiter. Routes:
/// * `/stream`: answers the head and a first chunk at once, then holds the body open until
///   `finish` is set, then sends a last chunk and ends.
/// * `/slow`: does not answer (not even the head) until `finish` is set.
/// * `/fast`: `ok`.
/// * `/empty`: 204 with an empty body.
///
/// Every handler call reports its path on `started`, and `calls`/`ready_polls` count calls
/// and `poll_ready`s.
#[derive(Clone)]
pub struct App {
    started: mpsc::UnboundedSender<String>,
    finish: watch::Receiver<bool>,
    pub calls: Arc<AtomicUsize>,
    pub ready_polls: Arc<AtomicUsize>,
}

/// The test's handles on an [`App`].
pub struct AppControl {
    pub started: mpsc::UnboundedReceiver<String>,
    pub finish: watch::Sender<bool>,
    pub calls: Arc<AtomicUsize>,
    pub ready_polls: Arc<AtomicUsize>,
}

impl AppControl {
    /// Waits for the next handler call and returns its path.
    pub async fn next_started(&mut self) -> String {
        self.started.recv().await.expect("app dropped")
    }

    /// Lets every held stream and slow request finish.
    pub fn finish(&self) {
        self.finish.send_replace(true);
    }
}

pub fn app() -> (App, AppControl) {
    let (started_tx, started_rx) = mpsc::unbounded_channel();
    let (finish_tx, finish_rx) = watch::channel(false);
    let calls = Arc::new(AtomicUsize::new(0));
    let ready_polls = Arc::new(AtomicUsize::new(0));
    (
        App {
            started: started_tx,
            finish: finish_rx,
            calls: calls.clone(),
            ready_polls: ready_polls.clone(),
        },
        AppControl {
            started: started_rx,
            finish: finish_tx,
            calls,
            ready_polls,
        },
    )
}

async fn finished(mut finish: watch::Receiver<bool>) {
    let _ = finish.wait_for(|done| *done).await;
}

impl<B> tower::Service<Request<B>> for App {
    type Response = Response<AppBody>;
    type Error = Infallible;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<Response<AppBody>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.ready_polls.fetch_add(1, Ordering::SeqCst);
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let path = req.uri().path().to_string();
        let _ = self.started.send(path.clone());
        let finish = self.finish.clone();
        Box::pin(async move {
            let route = path.rsplit('/').next().unwrap_or_default().to_string();
            let response = match route.as_str() {
                "stream" => {
                    let first = stream::once(async { Ok(Frame::data(Bytes::from("first "))) });
                    let last = stream::once(async move {
                        finished(finish).await;
                        Ok(Frame::data(Bytes::from("last")))
                    });
                    Response::new(StreamBody::new(futures::StreamExt::chain(first, last)).boxed())
                }
                "slow" => {
                    finished(finish).await;
                    Response::new(Full::new(Bytes::from("slow")).boxed())
                }
                "empty" => {
                    let mut response = Response::new(Empty::new().boxed());
                    *response.status_mut() = StatusCode::NO_CONTENT;
                    response
                }
                _ => Response::new(Full::new(Bytes::from("ok")).boxed()),
            };
            Ok(response)
        })
    }
}

/// Serves `service` on 127.0.0.1:0 (HTTP/1 and HTTP/2); the server task ends with the test's
/// runtime.
pub async fn start<S, B>(service: S) -> SocketAddr
where
    S: tower::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    start_server(Server::new(bind().await), service)
}

pub async fn bind() -> tokio::net::TcpListener {
    tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()
}

pub fn start_server<S, B>(server: Server, service: S) -> SocketAddr
where
    S: tower::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.serve(service));
    addr
}

pub type TestClient = Client<HttpConnector, Empty<Bytes>>;

pub fn client(proto: Proto) -> TestClient {
    Client::builder(TokioExecutor::new())
        .http2_only(proto == Proto::Http2)
        .build_http()
}

pub fn get(addr: SocketAddr, path: &str) -> Request<Empty<Bytes>> {
    Request::get(format!("http://{addr}{path}"))
        .body(Empty::new())
        .unwrap()
}

/// Polls `cond` until it holds (the limiter has no change notification to wait on); the
/// test's own timeout bounds it.
pub async fn wait_until(cond: impl Fn() -> bool) {
    while !cond() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Reads a body to its end.
pub async fn read_all<B>(body: B) -> Bytes
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    body.collect().await.unwrap().to_bytes()
}
