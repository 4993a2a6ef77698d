//! Per-request overhead of `fairgate::tonic`'s layers against tonic's and tower's own
//! limiters, and against no limiter at all.
//!
//! * `tonic_in_process`: the layers around an in-process transport that answers every call
//!   with an empty gRPC body (no network, no codec): the pure cost of admission, the
//!   permit-carrying body and the release.
//! * `tonic_loopback`: one unary call at a time from a tonic client to a tonic server on
//!   127.0.0.1 (the hand-written test service of `tests/common_tonic`), with the limit on
//!   the client (`ClientLimitLayer` vs tonic's `Endpoint::concurrency_limit`), on the server
//!   (`ServerLimitLayer` vs `Server::concurrency_limit_per_connection`), or none.
//!
//! Run: `cargo bench --bench tonic --features tonic` (add `-- --quick` for a short run).
//!
//! Instruction counts (deterministic, unlike wall clock on a shared machine): with
//! `FAIRGATE_CALLGRIND=<case>:<iterations>` the binary runs one `tonic_in_process` case (no
//! criterion) in a loop, so that `valgrind --tool=callgrind` counts it; the per-call count is
//! the difference of two runs with different iteration counts divided by their difference.
//! Cases: `none`, `tower_concurrency_limit`, `fairgate_client_layer`, `fairgate_server_layer`.
//! Futures are driven by hand with a no-op waker (no runtime). For example:
//!
//! ```text
//! cargo bench --features tonic --bench tonic --no-run   # prints the binary's path
//! for n in 20000 40000; do
//!   FAIRGATE_CALLGRIND=fairgate_server_layer:$n valgrind --tool=callgrind \
//!     --callgrind-out-file=cg.$n.out <binary>
//! done
//! # per call: (Ir of cg.40000.out - Ir of cg.20000.out) / 20000, the Ir from the
//! # `summary:` line.
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
use fairgate::limit::Limiter;
use fairgate::tonic::{ClientLimitLayer, ServerLimitLayer};
use http_body_util::BodyExt;
use tonic::client::Grpc;
use tonic::transport::{Endpoint, Server};
use tower::{Layer, Service, ServiceExt};

#[path = "../tests/common_tonic/mod.rs"]
mod common_tonic;
use common_tonic::{listen, unary, unary_call, TestService};

const CAPACITY: usize = 64;

fn limiter() -> Limiter {
    Limiter::builder("bench")
        .capacity(CAPACITY)
        .build()
        .unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// An in-process "transport": every call answered with an empty body.
fn transport() -> impl Service<
    http::Request<tonic::body::Body>,
    Response = http::Response<tonic::body::Body>,
    Error = Infallible,
> + Clone {
    tower::service_fn(|_req: http::Request<tonic::body::Body>| async {
        Ok::<_, Infallible>(http::Response::new(tonic::body::Body::default()))
    })
}

/// One call through `svc`, its body read to the end (where the permit is released).
async fn call_and_drain<S, B>(svc: &mut S)
where
    S: Service<http::Request<tonic::body::Body>, Response = http::Response<B>>,
    S::Error: std::fmt::Debug,
    B: http_body::Body + Unpin,
    B::Error: std::fmt::Debug,
{
    let response = svc
        .ready()
        .await
        .unwrap()
        .call(http::Request::new(tonic::body::Body::default()))
        .await
        .unwrap();
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        frame.unwrap();
    }
}

fn in_process(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("tonic_in_process");
    macro_rules! bench {
        ($name:expr, $svc:expr) => {
            group.bench_function($name, |b| {
                let mut svc = $svc;
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let start = Instant::now();
                        for _ in 0..iters {
                            call_and_drain(&mut svc).await;
                        }
                        start.elapsed()
                    })
                })
            });
        };
    }
    // The limiter alone (acquire, release), to tell its cost from the layer's.
    group.bench_function("limiter_acquire_release_only", |b| {
        let limiter = limiter();
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    drop(limiter.acquire().await.unwrap());
                }
                start.elapsed()
            })
        })
    });
    bench!("none", transport());
    bench!(
        "fairgate_client_layer",
        ClientLimitLayer::new(limiter()).layer(transport())
    );
    bench!(
        "fairgate_server_layer",
        ServerLimitLayer::new(limiter()).layer(transport())
    );
    bench!(
        "tower_concurrency_limit",
        tower::limit::ConcurrencyLimitLayer::new(CAPACITY).layer(transport())
    );
    group.finish();
}

fn loopback(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("tonic_loopback");

    // Starts a server (limited as given) and returns its address; the task lives as long
    // as the runtime.
    let serve = |limit: &str| {
        let _guard = rt.enter();
        let (incoming, addr) = listen();
        let service = TestService::default();
        match limit {
            "fairgate" => {
                rt.spawn(
                    Server::builder()
                        .layer(ServerLimitLayer::new(limiter()))
                        .add_service(service)
                        .serve_with_incoming(incoming),
                );
            }
            "tonic" => {
                rt.spawn(
                    Server::builder()
                        .concurrency_limit_per_connection(CAPACITY)
                        .add_service(service)
                        .serve_with_incoming(incoming),
                );
            }
            _ => {
                rt.spawn(
                    Server::builder()
                        .add_service(service)
                        .serve_with_incoming(incoming),
                );
            }
        }
        addr
    };
    let endpoint =
        |addr: std::net::SocketAddr| Endpoint::from_shared(format!("http://{addr}")).unwrap();
    macro_rules! bench {
        ($name:expr, $grpc:expr) => {
            let grpc = $grpc;
            group.bench_function($name, |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let start = Instant::now();
                        for i in 0..iters {
                            unary(grpc.clone(), unary_call(i, 0), None).await.unwrap();
                        }
                        start.elapsed()
                    })
                })
            });
        };
    }

    let plain = serve("none");
    let channel = rt.block_on(endpoint(plain).connect()).unwrap();
    bench!("none", Grpc::new(channel.clone()));
    bench!(
        "fairgate_client_layer",
        Grpc::new(ClientLimitLayer::new(limiter()).layer(channel.clone()))
    );
    let tonic_client = rt
        .block_on(endpoint(plain).concurrency_limit(CAPACITY).connect())
        .unwrap();
    bench!("tonic_endpoint_concurrency_limit", Grpc::new(tonic_client));

    let fairgate_server = serve("fairgate");
    let channel = rt.block_on(endpoint(fairgate_server).connect()).unwrap();
    bench!("fairgate_server_layer", Grpc::new(channel));
    let tonic_server = serve("tonic");
    let channel = rt.block_on(endpoint(tonic_server).connect()).unwrap();
    bench!("tonic_concurrency_limit_per_connection", Grpc::new(channel));
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = in_process, loopback
}

/// `iters` calls of a `FAIRGATE_CALLGRIND` case through `svc`, driven with a no-op waker:
/// nothing here ever waits.
fn callgrind_drive<S, B>(mut svc: S, iters: u64)
where
    S: Service<http::Request<tonic::body::Body>, Response = http::Response<B>>,
    S::Error: std::fmt::Debug,
    B: http_body::Body + Unpin,
    B::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..iters {
        let call = pin!(call_and_drain(&mut svc));
        assert!(
            call.poll(&mut cx).is_ready(),
            "the limit is never reached and the body is ready"
        );
    }
}

fn callgrind_case(case: &str, iters: u64) {
    match case {
        "none" => callgrind_drive(transport(), iters),
        "tower_concurrency_limit" => callgrind_drive(
            tower::limit::ConcurrencyLimitLayer::new(CAPACITY).layer(transport()),
            iters,
        ),
        "fairgate_client_layer" => {
            callgrind_drive(ClientLimitLayer::new(limiter()).layer(transport()), iters)
        }
        "fairgate_server_layer" => {
            callgrind_drive(ServerLimitLayer::new(limiter()).layer(transport()), iters)
        }
        other => panic!("unknown FAIRGATE_CALLGRIND case {other:?}"),
    }
}

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
