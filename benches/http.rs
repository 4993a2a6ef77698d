//! Cost of the http server layer, in one run:
//!
//! * `per_request/*`: in-process (no sockets), one request through a `service_fn` returning
//!   a 2-byte body, the body read to its end: no layer vs `tower::limit::ConcurrencyLimit`
//!   vs fairgate's tower layer vs fairgate's `ServerLimitLayer`, single and keyed
//!   (uncontended: capacity 1024).
//! * `loopback_gateway/*`: end to end on 127.0.0.1: client → gateway (a proxy, with or
//!   without `ServerLimitLayer::keyed`) → upstream, HTTP/1 keep-alive, 16 requests in flight;
//!   reported as time per request (throughput = 1 / time).
//!
//! Run: `cargo bench --bench http --features hyper`. Wall-clock figures on a shared machine
//! are noisy: compare numbers of the same run.
//!
//! Instruction counts (deterministic, unlike wall clock on a shared machine): with
//! `FAIRGATE_CALLGRIND=<case>:<iterations>` the binary runs one `per_request` case (no
//! criterion) in a loop, so that `valgrind --tool=callgrind` counts it; the per-request count
//! is the difference of two runs with different iteration counts divided by their difference.
//! Cases: `none`, `tower_concurrency_limit`, `fairgate_tower_limit`, `fairgate_server_limit`,
//! `fairgate_server_limit_keyed` (the services of `per_request`, built by the same functions;
//! futures driven by hand with a no-op waker, no runtime, so only the request, the layer and
//! the body are counted), and `loopback_no_limiter`, `loopback_keyed_server_limit` (the
//! `loopback_gateway` setup on a current-thread runtime: user-space instructions of client,
//! gateway and upstream; kernel work not counted). For example:
//!
//! ```text
//! cargo bench --features hyper --bench http --no-run   # prints the binary's path
//! for n in 20000 40000; do
//!   FAIRGATE_CALLGRIND=fairgate_server_limit:$n valgrind --tool=callgrind \
//!     --callgrind-out-file=cg.$n.out <binary>
//! done
//! # per request: (Ir of cg.40000.out - Ir of cg.20000.out) / 20000, the Ir from the
//! # `summary:` line; `callgrind_annotate cg.40000.out` shows where they go.
//! ```

use std::convert::Infallible;
use std::fmt::Debug;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, Criterion};
use fairgate::http::ServerLimitLayer;
use fairgate::hyper::Server;
use fairgate::limit::{Limiter, LimiterConfig, LimiterManager};
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};

fn handler() -> impl Service<
    Request<()>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    })
}

fn tower_limit(
) -> impl Service<Request<()>, Response = Response<Full<Bytes>>, Error = impl Debug> + Clone {
    ServiceBuilder::new()
        .layer(tower::limit::ConcurrencyLimitLayer::new(1024))
        .service(handler())
}

/// fairgate's own tower layer (permit released with the response future): separates the
/// limiter's cost from the http layer's (body wrapper, rejection rendering).
fn fairgate_tower(
) -> impl Service<Request<()>, Response = Response<Full<Bytes>>, Error = impl Debug> + Clone {
    let limiter = Limiter::builder("bench").capacity(1024).build().unwrap();
    ServiceBuilder::new()
        .layer(fairgate::tower::ConcurrencyLimitLayer::new(limiter))
        .service(handler())
}

fn server_limit() -> impl Service<
    Request<()>,
    Response = Response<impl http_body::Body<Error = impl Debug>>,
    Error = impl Debug,
> + Clone {
    let limiter = Limiter::builder("bench").capacity(1024).build().unwrap();
    ServiceBuilder::new()
        .layer(ServerLimitLayer::new(limiter))
        .service(handler())
}

/// Keyed, as in the gateway: a String key from the path, looked up in the manager.
fn server_limit_keyed() -> impl Service<
    Request<()>,
    Response = Response<impl http_body::Body<Error = impl Debug>>,
    Error = impl Debug,
> + Clone {
    let manager = LimiterManager::new("channels", |channel: &String| {
        LimiterConfig::builder(format!("channel:{channel}"))
            .capacity(1024)
            .config()
            .unwrap()
    });
    ServiceBuilder::new()
        .layer(ServerLimitLayer::keyed(manager, |req: &Request<()>| {
            req.uri().path().split('/').nth(1).unwrap_or("").to_string()
        }))
        .service(handler())
}

/// Times `iters` requests through `svc` (each: oneshot on a clone, body read to its end).
async fn run<S, B>(svc: &S, iters: u64) -> Duration
where
    S: Service<Request<()>, Response = Response<B>> + Clone,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let start = Instant::now();
    for _ in 0..iters {
        let response = svc.clone().oneshot(Request::new(())).await.unwrap();
        let body = response.into_body().collect().await.unwrap();
        std::hint::black_box(body);
    }
    start.elapsed()
}

fn per_request(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("per_request");
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));

    let none = handler();
    group.bench_function("none", |b| b.iter_custom(|n| rt.block_on(run(&none, n))));

    let tower_limit = tower_limit();
    group.bench_function("tower_concurrency_limit", |b| {
        b.iter_custom(|n| rt.block_on(run(&tower_limit, n)))
    });

    let fairgate_tower = fairgate_tower();
    group.bench_function("fairgate_tower_limit", |b| {
        b.iter_custom(|n| rt.block_on(run(&fairgate_tower, n)))
    });

    let ours = server_limit();
    group.bench_function("fairgate_server_limit", |b| {
        b.iter_custom(|n| rt.block_on(run(&ours, n)))
    });

    let keyed = server_limit_keyed();
    group.bench_function("fairgate_server_limit_keyed", |b| {
        b.iter_custom(|n| rt.block_on(run(&keyed, n)))
    });
    group.finish();
}

async fn upstream() -> SocketAddr {
    let server = Server::new(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    let addr = server.local_addr().unwrap();
    let app = service_fn(|_req: Request<Incoming>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    });
    tokio::spawn(server.serve(app));
    addr
}

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

fn http_client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(64)
        .build_http()
}

/// A gateway forwarding to `upstream`, with or without the keyed limiter.
async fn gateway(upstream: SocketAddr, limited: bool) -> SocketAddr {
    let client = http_client();
    let proxy = service_fn(move |req: Request<Incoming>| {
        let client = client.clone();
        async move {
            let uri = format!("http://{upstream}{}", req.uri().path());
            let response = client
                .request(Request::get(uri).body(Empty::new()).unwrap())
                .await
                .expect("upstream answers");
            Ok::<_, Infallible>(response)
        }
    });
    let server = Server::new(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    let addr = server.local_addr().unwrap();
    if limited {
        let manager = LimiterManager::new("channels", |channel: &String| {
            LimiterConfig::builder(channel.as_str())
                .capacity(64)
                .max_queue(Some(1024))
                .config()
                .unwrap()
        });
        let svc = ServiceBuilder::new()
            .layer(ServerLimitLayer::keyed(
                manager,
                |req: &Request<Incoming>| {
                    req.uri().path().split('/').nth(1).unwrap_or("").to_string()
                },
            ))
            .service(proxy);
        tokio::spawn(server.serve(svc));
    } else {
        tokio::spawn(server.serve(proxy));
    }
    addr
}

const IN_FLIGHT: u64 = 16;

async fn load(client: &HttpClient, gateway: SocketAddr, iters: u64) -> Duration {
    let start = Instant::now();
    let tasks: Vec<_> = (0..IN_FLIGHT)
        .map(|i| {
            let client = client.clone();
            let n = iters / IN_FLIGHT + u64::from(i < iters % IN_FLIGHT);
            tokio::spawn(async move {
                for _ in 0..n {
                    let uri = format!("http://{gateway}/chat/complete");
                    let response = client
                        .request(Request::get(uri).body(Empty::new()).unwrap())
                        .await
                        .unwrap();
                    std::hint::black_box(response.into_body().collect().await.unwrap());
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    start.elapsed()
}

fn loopback_gateway(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (plain, limited) = rt.block_on(async {
        let up = upstream().await;
        (gateway(up, false).await, gateway(up, true).await)
    });
    let client = http_client();
    let mut group = c.benchmark_group("loopback_gateway");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    group.sample_size(20);
    // Interleaved in one group, so both see the same machine state as far as possible.
    group.bench_function("no_limiter", |b| {
        b.iter_custom(|n| rt.block_on(load(&client, plain, n)))
    });
    group.bench_function("keyed_server_limit", |b| {
        b.iter_custom(|n| rt.block_on(load(&client, limited, n)))
    });
    group.finish();
}

/// One request of a `FAIRGATE_CALLGRIND` case (oneshot on a clone, body read to its end),
/// `iters` times, driven with a no-op waker: nothing here ever waits.
fn callgrind_drive<S, B>(svc: &S, iters: u64)
where
    S: Service<Request<()>, Response = Response<B>> + Clone,
    S::Error: Debug,
    B: http_body::Body,
    B::Error: Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..iters {
        let request = pin!(async {
            let response = svc.clone().oneshot(Request::new(())).await.unwrap();
            response.into_body().collect().await.unwrap()
        });
        match request.poll(&mut cx) {
            Poll::Ready(body) => std::hint::black_box(body),
            Poll::Pending => panic!("the limit is never reached and the body is ready"),
        };
    }
}

fn callgrind_case(case: &str, iters: u64) {
    match case {
        "none" => callgrind_drive(&handler(), iters),
        "tower_concurrency_limit" => callgrind_drive(&tower_limit(), iters),
        "fairgate_tower_limit" => callgrind_drive(&fairgate_tower(), iters),
        "fairgate_server_limit" => callgrind_drive(&server_limit(), iters),
        "fairgate_server_limit_keyed" => callgrind_drive(&server_limit_keyed(), iters),
        // End to end on 127.0.0.1 (client, gateway and upstream in this process, on one
        // current-thread runtime so that the schedule varies little): user-space
        // instructions of the whole request path, kernel (socket) work not counted.
        "loopback_no_limiter" | "loopback_keyed_server_limit" => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let gateway =
                    gateway(upstream().await, case == "loopback_keyed_server_limit").await;
                load(&http_client(), gateway, iters).await
            });
        }
        other => panic!("unknown FAIRGATE_CALLGRIND case {other:?}"),
    }
}

criterion_group!(benches, per_request, loopback_gateway);

fn main() {
    if let Ok(spec) = std::env::var("FAIRGATE_CALLGRIND") {
        let (case, iters) = spec
            .split_once(':')
            .expect("FAIRGATE_CALLGRIND=<case>:<iterations>");
        callgrind_case(case, iters.parse().expect("iterations: a number"));
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
