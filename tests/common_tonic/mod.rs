//! A hand-written gRPC test service (`test.Test`, prost-derived messages, no protoc, no
//! codegen) served by a real tonic server on 127.0.0.1, and client helpers.
#![allow(dead_code)] // each test binary uses its own subset

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::PathAndQuery;
use tokio_stream::Stream;
use tonic::body::Body;
use tonic::client::{Grpc, GrpcService};
use tonic::server::NamedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status, Streaming};
use tonic_prost::ProstCodec;

/// Every bound in these tests: far above what a loaded 2-core box needs.
pub const LIMIT: Duration = Duration::from_secs(20);

/// The request of every method.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Call {
    /// Echoed back; also the order the server saw calls start in.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// Unary: how long the handler takes.
    #[prost(uint64, tag = "2")]
    pub delay_ms: u64,
    /// Stream: how many messages.
    #[prost(uint32, tag = "3")]
    pub count: u32,
    /// Stream: pause before each message.
    #[prost(uint64, tag = "4")]
    pub interval_ms: u64,
}

/// The response message.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Reply {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(uint32, tag = "2")]
    pub seq: u32,
}

/// What the server saw.
#[derive(Default)]
pub struct Seen {
    /// Ids of unary calls, in the order their handlers started.
    pub started: Mutex<Vec<u64>>,
    /// `grpc-timeout` headers of unary calls, by id.
    pub timeouts: Mutex<Vec<(u64, Option<String>)>>,
    /// Handlers running now, and the most ever at once.
    pub running: AtomicUsize,
    pub max_running: AtomicUsize,
    /// Handler invocations of `Flaky`, and how many of them still fail with UNAVAILABLE.
    pub flaky_calls: AtomicUsize,
    pub flaky_failures_left: AtomicUsize,
}

impl Seen {
    pub fn max_running(&self) -> usize {
        self.max_running.load(Ordering::SeqCst)
    }
    pub fn started(&self) -> Vec<u64> {
        self.started.lock().unwrap().clone()
    }
    pub fn timeout_of(&self, id: u64) -> Option<String> {
        let seen = self.timeouts.lock().unwrap();
        seen.iter()
            .find(|(i, _)| *i == id)
            .and_then(|(_, t)| t.clone())
    }
}

/// Counts a running handler for as long as it lives.
struct Running(Arc<Seen>);

impl Running {
    fn enter(seen: &Arc<Seen>) -> Self {
        let now = seen.running.fetch_add(1, Ordering::SeqCst) + 1;
        seen.max_running.fetch_max(now, Ordering::SeqCst);
        Running(Arc::clone(seen))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type ReplyStream = Pin<Box<dyn Stream<Item = Result<Reply, Status>> + Send>>;

/// `test.Test`: `Unary` (sleeps `delay_ms`), `Stream` (`count` messages, `interval_ms`
/// apart), `Flaky` (UNAVAILABLE while `flaky_failures_left > 0`); anything else is
/// UNIMPLEMENTED.
#[derive(Clone, Default)]
pub struct TestService {
    pub seen: Arc<Seen>,
}

impl NamedService for TestService {
    const NAME: &'static str = "test.Test";
}

impl tower::Service<http::Request<Body>> for TestService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let seen = Arc::clone(&self.seen);
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<Reply, Call>::default());
            let method = req.uri().path().rsplit('/').next().unwrap_or("").to_owned();
            let response = match method.as_str() {
                "Unary" => {
                    let handler = tower::service_fn(move |r: Request<Call>| {
                        let seen = Arc::clone(&seen);
                        async move {
                            let _running = Running::enter(&seen);
                            let call = r.get_ref().clone();
                            let timeout = r
                                .metadata()
                                .get("grpc-timeout")
                                .map(|v| v.to_str().unwrap().to_owned());
                            seen.started.lock().unwrap().push(call.id);
                            seen.timeouts.lock().unwrap().push((call.id, timeout));
                            tokio::time::sleep(Duration::from_millis(call.delay_ms)).await;
                            Ok::<_, Status>(Response::new(Reply {
                                id: call.id,
                                seq: 0,
                            }))
                        }
                    });
                    grpc.unary(handler, req).await
                }
                "Flaky" => {
                    let handler = tower::service_fn(move |r: Request<Call>| {
                        let seen = Arc::clone(&seen);
                        async move {
                            seen.flaky_calls.fetch_add(1, Ordering::SeqCst);
                            let failed = seen
                                .flaky_failures_left
                                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                                    n.checked_sub(1)
                                })
                                .is_ok();
                            if failed {
                                return Err(Status::unavailable("flaky"));
                            }
                            Ok(Response::new(Reply {
                                id: r.get_ref().id,
                                seq: 0,
                            }))
                        }
                    });
                    grpc.unary(handler, req).await
                }
                "Stream" => {
                    let handler = tower::service_fn(move |r: Request<Call>| {
                        let seen = Arc::clone(&seen);
                        async move {
                            let call = r.into_inner();
                            let interval = Duration::from_millis(call.interval_ms);
                            let stream = futures::stream::unfold(
                                (0u32, Running::enter(&seen)),
                                move |(seq, running)| async move {
                                    // A pause before every message and before the end.
                                    tokio::time::sleep(interval).await;
                                    if seq == call.count {
                                        return None;
                                    }
                                    let reply = Reply { id: call.id, seq };
                                    Some((Ok(reply), (seq + 1, running)))
                                },
                            );
                            Ok::<_, Status>(Response::new(Box::pin(stream) as ReplyStream))
                        }
                    });
                    grpc.server_streaming(handler, req).await
                }
                _ => Status::unimplemented("no such method").into_http(),
            };
            Ok(response)
        })
    }
}

/// The same service under another name (`test.Other`), for per-service limits.
#[derive(Clone, Default)]
pub struct OtherService(pub TestService);

impl NamedService for OtherService {
    const NAME: &'static str = "test.Other";
}

impl tower::Service<http::Request<Body>> for OtherService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        tower::Service::poll_ready(&mut self.0, cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        tower::Service::call(&mut self.0, req)
    }
}

/// A server task aborted when the guard is dropped.
pub struct ServerGuard {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ServerGuard {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A listener on 127.0.0.1, port chosen by the OS.
pub fn listen() -> (TcpIncoming, SocketAddr) {
    let incoming = TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = incoming.local_addr().unwrap();
    (incoming, addr)
}

/// Runs `serve` (a tonic server future on the listener) in a task.
pub fn spawn<F, E>(addr: SocketAddr, serve: F) -> ServerGuard
where
    F: Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Debug,
{
    let task = tokio::spawn(async move {
        serve.await.expect("server failed");
    });
    ServerGuard { addr, task }
}

/// A plain server without any limit.
pub fn serve_plain(service: TestService) -> ServerGuard {
    let (incoming, addr) = listen();
    spawn(
        addr,
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming),
    )
}

/// A new connection to `addr` (each call: its own HTTP/2 connection).
pub async fn channel(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connect")
}

pub fn unary_call(id: u64, delay_ms: u64) -> Call {
    Call {
        id,
        delay_ms,
        ..Call::default()
    }
}

pub fn stream_call(id: u64, count: u32, interval_ms: u64) -> Call {
    Call {
        id,
        count,
        interval_ms,
        ..Call::default()
    }
}

fn codec() -> ProstCodec<Call, Reply> {
    ProstCodec::default()
}

/// Calls `path` once; `timeout` becomes the request's `grpc-timeout`.
pub async fn call_path<T>(
    mut grpc: Grpc<T>,
    path: &'static str,
    call: Call,
    timeout: Option<Duration>,
) -> Result<Reply, Status>
where
    T: GrpcService<Body>,
    T::ResponseBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    grpc.ready()
        .await
        .map_err(|e| Status::unknown(format!("not ready: {}", e.into())))?;
    let mut request = Request::new(call);
    if let Some(timeout) = timeout {
        request.set_timeout(timeout);
    }
    let response = grpc
        .unary(request, PathAndQuery::from_static(path), codec())
        .await?;
    Ok(response.into_inner())
}

/// `Unary` once.
pub async fn unary<T>(grpc: Grpc<T>, call: Call, timeout: Option<Duration>) -> Result<Reply, Status>
where
    T: GrpcService<Body>,
    T::ResponseBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    call_path(grpc, "/test.Test/Unary", call, timeout).await
}

/// Opens `Stream`.
pub async fn stream<T>(mut grpc: Grpc<T>, call: Call) -> Result<Streaming<Reply>, Status>
where
    T: GrpcService<Body>,
    T::ResponseBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    grpc.ready()
        .await
        .map_err(|e| Status::unknown(format!("not ready: {}", e.into())))?;
    let response = grpc
        .server_streaming(
            Request::new(call),
            PathAndQuery::from_static("/test.Test/Stream"),
            codec(),
        )
        .await?;
    Ok(response.into_inner())
}

/// Waits (polling every millisecond, bounded) until `cond` holds: for states that have no
/// signal of their own, such as a limiter's counters changing inside a server task.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The reason metadata of a refusal.
pub fn reason(status: &Status) -> &str {
    status
        .metadata()
        .get(fairgate::tonic::REJECT_REASON_KEY)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("<none>")
}

/// Counts the paths acquisitions took.
#[derive(Default)]
pub struct Paths {
    at_once: AtomicUsize,
    after_wait: AtomicUsize,
    canceled: AtomicUsize,
}

impl Paths {
    pub fn counts(&self) -> (usize, usize, usize) {
        (
            self.at_once.load(Ordering::SeqCst),
            self.after_wait.load(Ordering::SeqCst),
            self.canceled.load(Ordering::SeqCst),
        )
    }
}

impl fairgate::limit::Observer for Paths {
    fn on_acquired(&self, _limiter: &str, waited: Duration) {
        let counter = if waited.is_zero() {
            &self.at_once
        } else {
            &self.after_wait
        };
        counter.fetch_add(1, Ordering::SeqCst);
    }

    fn on_canceled(&self, _limiter: &str, _waited: Duration) {
        self.canceled.fetch_add(1, Ordering::SeqCst);
    }
}
