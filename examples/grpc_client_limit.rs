//! A gRPC client that caps its in-flight RPCs with one `fairgate` limiter.
//!
//! On loopback: a tonic server (a hand-written `demo.Demo` service, prost messages, no
//! protoc) and a client whose `Channel` sits behind `fairgate::tonic::ClientLimitLayer`
//! with a capacity of 3. Twelve unary calls and one long server-streaming call go out at
//! once; the streaming call keeps its slot for as long as it streams (tower's limiter,
//! `Endpoint::concurrency_limit`, would release it at the response head), the others queue
//! in FIFO order, and one call with a short deadline gives up in the queue with
//! `DEADLINE_EXCEEDED`. A live line shows in-flight/capacity and the queue; the run ends
//! with what the server saw, and exits non-zero if the cap was ever exceeded.
//!
//! Run: `cargo run --example grpc_client_limit --features tonic`

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use fairgate::limit::Limiter;
use fairgate::tonic::ClientLimitLayer;
use http::uri::PathAndQuery;
use tonic::body::Body;
use tonic::client::Grpc;
use tonic::server::NamedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Endpoint, Server};
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;
use tower::ServiceBuilder;

#[derive(Clone, PartialEq, prost::Message)]
struct Work {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(uint32, tag = "2")]
    messages: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Done {
    #[prost(uint64, tag = "1")]
    id: u64,
}

/// What the server saw: handlers running now and the most at once.
#[derive(Default)]
struct Load {
    running: AtomicUsize,
    max: AtomicUsize,
}

struct Busy(Arc<Load>);
impl Busy {
    fn new(load: &Arc<Load>) -> Busy {
        let now = load.running.fetch_add(1, Ordering::SeqCst) + 1;
        load.max.fetch_max(now, Ordering::SeqCst);
        Busy(Arc::clone(load))
    }
}
impl Drop for Busy {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// `demo.Demo`: `Work` takes 150 ms; `Watch` streams `messages` updates 100 ms apart.
#[derive(Clone)]
struct Demo(Arc<Load>);

impl NamedService for Demo {
    const NAME: &'static str = "demo.Demo";
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type DoneStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<Done, Status>> + Send>>;

impl tower::Service<http::Request<Body>> for Demo {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let load = Arc::clone(&self.0);
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<Done, Work>::default());
            Ok(match req.uri().path() {
                "/demo.Demo/Work" => {
                    let handler = tower::service_fn(move |r: Request<Work>| {
                        let busy = Busy::new(&load);
                        async move {
                            tokio::time::sleep(Duration::from_millis(150)).await;
                            drop(busy);
                            Ok::<_, Status>(Response::new(Done { id: r.get_ref().id }))
                        }
                    });
                    grpc.unary(handler, req).await
                }
                "/demo.Demo/Watch" => {
                    let handler = tower::service_fn(move |r: Request<Work>| {
                        let work = r.into_inner();
                        let busy = Busy::new(&load);
                        let updates =
                            futures::stream::unfold((0, busy), move |(n, busy)| async move {
                                tokio::time::sleep(Duration::from_millis(100)).await;
                                (n < work.messages)
                                    .then(|| (Ok(Done { id: work.id }), (n + 1, busy)))
                            });
                        async move { Ok::<_, Status>(Response::new(Box::pin(updates) as DoneStream)) }
                    });
                    grpc.server_streaming(handler, req).await
                }
                _ => Status::unimplemented("no such method").into_http(),
            })
        })
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // The server, on a port of the OS's choosing.
    let load = Arc::new(Load::default());
    let incoming = TcpIncoming::bind("127.0.0.1:0".parse()?)?;
    let addr = incoming.local_addr()?;
    let server = tokio::spawn(
        Server::builder()
            .add_service(Demo(Arc::clone(&load)))
            .serve_with_incoming(incoming),
    );

    // The client: one limiter caps every call made through this channel (clone the layer
    // or the limiter to cap several channels together).
    let limiter = Limiter::builder("demo-client").capacity(3).build()?;
    let channel = Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let client = ServiceBuilder::new()
        .layer(ClientLimitLayer::new(limiter.clone()))
        .service(channel);
    let codec = || ProstCodec::<Work, Done>::default();
    let started = Instant::now();

    // A long server stream: holds one of the three slots until its last update.
    let mut grpc = Grpc::new(client.clone());
    grpc.ready().await?;
    let mut updates = grpc
        .server_streaming(
            Request::new(Work {
                id: 0,
                messages: 12,
            }),
            PathAndQuery::from_static("/demo.Demo/Watch"),
            codec(),
        )
        .await?
        .into_inner();
    let watcher = tokio::spawn(async move {
        let mut n = 0;
        while updates.message().await?.is_some() {
            n += 1;
        }
        Ok::<_, Status>(n)
    });

    // Twelve unary calls at once, and one with a 100 ms deadline that cannot be met.
    let mut calls = Vec::new();
    for id in 1..=13u64 {
        let mut grpc = Grpc::new(client.clone());
        calls.push(tokio::spawn(async move {
            let mut request = Request::new(Work { id, messages: 0 });
            if id == 13 {
                request.set_timeout(Duration::from_millis(100));
            }
            grpc.ready()
                .await
                .map_err(|e| Status::unknown(e.to_string()))?;
            let path = PathAndQuery::from_static("/demo.Demo/Work");
            grpc.unary(request, path, codec())
                .await
                .map(|r| r.into_inner().id)
        }));
    }

    // A live line until everything is done.
    let mut max_in_flight = 0;
    // While the stream runs, its slot is taken: in flight never drops to 0.
    let mut slot_held_while_streaming = true;
    while !(calls.iter().all(|c| c.is_finished()) && watcher.is_finished()) {
        max_in_flight = max_in_flight.max(limiter.in_flight());
        if !watcher.is_finished() && limiter.in_flight() == 0 {
            slot_held_while_streaming = false;
        }
        eprint!(
            "\r{:>5} ms  in flight {}/{}  queued {:>2}  server running {}   ",
            started.elapsed().as_millis(),
            limiter.in_flight(),
            limiter.capacity(),
            limiter.waiting(),
            load.running.load(Ordering::SeqCst),
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!();

    let streamed = watcher.await??;
    let (mut ok, mut deadline) = (0, 0);
    for call in calls {
        match call.await? {
            Ok(_) => ok += 1,
            Err(status) if status.code() == tonic::Code::DeadlineExceeded => deadline += 1,
            Err(status) => return Err(status.into()),
        }
    }
    let server_max = load.max.load(Ordering::SeqCst);
    println!("stream: {streamed} updates, its slot held throughout: {slot_held_while_streaming}");
    println!("unary: {ok} ok, {deadline} DEADLINE_EXCEEDED while queued (fairgate-reject-reason: deadline_exceeded)");
    println!(
        "max in flight: {max_in_flight} seen by the client limiter, {server_max} at the server; capacity {}",
        limiter.capacity()
    );
    println!(
        "after the run: in flight {}, queued {}",
        limiter.in_flight(),
        limiter.waiting()
    );
    server.abort();

    if server_max > limiter.capacity()
        || !slot_held_while_streaming
        || limiter.in_flight() != 0
        || deadline != 1
        || ok != 12
    {
        eprintln!("unexpected: the cap was exceeded or a call went astray");
        std::process::exit(1);
    }
    Ok(())
}
