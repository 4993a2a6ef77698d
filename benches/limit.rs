//! `fairgate::tower::ConcurrencyLimit` beside tower's own limiters, in one run.
//!
//! * `uncontended/*`: per-request overhead of `ready().await` + `call().await` on one service
//!   instance when the limit is never reached (capacity 1024, one caller, tokio current-thread
//!   runtime): no limit, `tower::limit::ConcurrencyLimit`, ours (unbounded queue, bounded queue,
//!   keyed over 16 keys, capacity 0 = passthrough). Goal: ours ≤ 1.0× tower's.
//! * `primitive/*`: the permit primitives alone (tokio's semaphore, ours, our `Limiter`),
//!   to separate the limiter's cost from the layer's.
//! * `contended/*`: 64 tasks on a 2-worker tokio runtime share capacity 4; every request holds
//!   its permit across one `yield_now` (a scheduling point, as real I/O would be). Ours with a
//!   bounded queue (64) vs tower's `LoadShed → Buffer(64) → ConcurrencyLimit(4)` stack, the
//!   tower-native way to get "bounded queue, reject when full". Time per request.
//!
//! `cargo bench --features tower --bench limit`; ratios: see BENCHMARKS.md. (The issue also
//! names `tower-resilience-bulkhead`; it is not a dependency of this crate, so it is not here.)
//!
//! Instruction counts (deterministic, unlike wall clock on a shared machine): with
//! `FAIRGATE_CALLGRIND=<case>:<iterations>` the binary runs one case (no criterion) in a
//! loop, so that `valgrind --tool=callgrind` counts it; the per-operation count is the
//! difference of two runs with different iteration counts divided by their difference.
//! Cases: see [`callgrind_case`]. Futures are driven by hand with a no-op waker (no runtime),
//! so only the permit and layer machinery is counted. For example:
//!
//! ```text
//! cargo bench --features tower --bench limit --no-run   # prints the binary's path
//! for n in 2000 22000; do
//!   FAIRGATE_CALLGRIND=layer_fairgate:$n valgrind --tool=callgrind \
//!     --callgrind-out-file=cg.$n.out <binary>
//! done
//! # per request: (Ir of cg.22000.out - Ir of cg.2000.out) / 20000, the Ir from the
//! # `summary:` line; `callgrind_annotate cg.22000.out` shows where they go.
//! ```

use std::convert::Infallible;
use std::fmt::Debug;
use std::future::{ready, Ready};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
use fairgate::limit::{Limiter, LimiterConfig, LimiterManager};
use fairgate::tower::{ConcurrencyLimit, KeyedLimitLayer};
use tower::{service_fn, Layer, Service, ServiceBuilder, ServiceExt};

const TASKS: u64 = 64;
const CAPACITY: usize = 4;

fn plus_one(x: u64) -> Ready<Result<u64, Infallible>> {
    ready(Ok(x.wrapping_add(1)))
}

/// `iters` requests, one after another, on one service instance.
async fn sequential<S>(svc: &mut S, iters: u64) -> Duration
where
    S: Service<u64, Response = u64>,
    S::Error: Debug,
{
    let start = Instant::now();
    for i in 0..iters {
        let svc = svc.ready().await.unwrap();
        black_box(svc.call(black_box(i)).await.unwrap());
    }
    start.elapsed()
}

fn uncontended(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("uncontended");
    group.bench_function("no_limit", |b| {
        let mut svc = service_fn(plus_one);
        b.iter_custom(|iters| rt.block_on(sequential(&mut svc, iters)))
    });
    group.bench_function("tower_concurrency_limit", |b| {
        let mut svc = tower::limit::ConcurrencyLimit::new(service_fn(plus_one), 1024);
        b.iter_custom(|iters| rt.block_on(sequential(&mut svc, iters)))
    });
    let ours = |limiter: Limiter| ConcurrencyLimit::new(service_fn(plus_one), limiter);
    group.bench_function("fairgate", |b| {
        let mut svc = ours(Limiter::builder("bench").capacity(1024).build().unwrap());
        b.iter_custom(|iters| rt.block_on(sequential(&mut svc, iters)))
    });
    group.bench_function("fairgate_bounded_queue", |b| {
        let limiter = Limiter::builder("bench")
            .capacity(1024)
            .max_queue(Some(64))
            .build()
            .unwrap();
        let mut svc = ours(limiter);
        b.iter_custom(|iters| rt.block_on(sequential(&mut svc, iters)))
    });
    group.bench_function("fairgate_keyed_16_keys", |b| {
        // The keyed layer over a manager holding 16 keys: adds the per-request lookup.
        let manager = LimiterManager::new("bench", |_: &u64| {
            LimiterConfig::builder("key")
                .capacity(1024)
                .config()
                .unwrap()
        });
        let mut svc = KeyedLimitLayer::new(manager, |x: &u64| *x % 16).layer(service_fn(plus_one));
        b.iter_custom(|iters| rt.block_on(sequential(&mut svc, iters)))
    });
    group.bench_function("fairgate_passthrough", |b| {
        let mut svc = ours(Limiter::builder("bench").capacity(0).build().unwrap());
        b.iter_custom(|iters| rt.block_on(sequential(&mut svc, iters)))
    });
    group.finish();
}

/// The primitives under the two layers, without any tower machinery: take a permit and
/// return it. Separates the limiter's own cost from the layer's.
fn primitives(c: &mut Criterion) {
    let mut group = c.benchmark_group("primitive");
    group.bench_function("tokio_semaphore_try_acquire_owned", |b| {
        let sem = Arc::new(tokio::sync::Semaphore::new(1024));
        b.iter(|| drop(black_box(sem.clone().try_acquire_owned().unwrap())))
    });
    group.bench_function("fairgate_semaphore_try_acquire_owned", |b| {
        let sem = Arc::new(fairgate::Semaphore::new(1024));
        b.iter(|| drop(black_box(sem.clone().try_acquire_owned().unwrap())))
    });
    group.bench_function("fairgate_limiter_try_acquire", |b| {
        let limiter = Limiter::builder("bench").capacity(1024).build().unwrap();
        b.iter(|| drop(black_box(limiter.try_acquire().unwrap())))
    });
    group.finish();
}

/// A request that holds its permit across one scheduling point.
async fn work(x: u64) -> Result<u64, Infallible> {
    tokio::task::yield_now().await;
    Ok(x.wrapping_add(1))
}

/// `iters` requests spread over 64 tasks, each with its own clone of `svc`; returns the
/// elapsed time and counts refusals (which a queue of 64 should never need).
fn contended_run<S>(
    rt: &tokio::runtime::Runtime,
    svc: &S,
    iters: u64,
    refused: &AtomicUsize,
) -> Duration
where
    S: Service<u64, Response = u64> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
{
    rt.block_on(async {
        let start = Instant::now();
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let mut svc = svc.clone();
                let n = iters / TASKS + u64::from(t < iters % TASKS);
                tokio::spawn(async move {
                    let mut refused = 0;
                    for i in 0..n {
                        let Ok(ready) = svc.ready().await else {
                            refused += 1;
                            continue;
                        };
                        match ready.call(i).await {
                            Ok(v) => {
                                black_box(v);
                            }
                            Err(_) => refused += 1,
                        }
                    }
                    refused
                })
            })
            .collect();
        for t in tasks {
            refused.fetch_add(t.await.unwrap(), Relaxed);
        }
        start.elapsed()
    })
}

fn contended(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("contended");
    let refused_ours = Arc::new(AtomicUsize::new(0));
    let refused_tower = Arc::new(AtomicUsize::new(0));

    group.bench_function("fairgate_bounded_queue", |b| {
        let limiter = Limiter::builder("bench")
            .capacity(CAPACITY)
            .max_queue(Some(TASKS as usize))
            .build()
            .unwrap();
        let svc = ConcurrencyLimit::new(service_fn(work), limiter);
        b.iter_custom(|iters| contended_run(&rt, &svc, iters, &refused_ours))
    });
    group.bench_function("tower_loadshed_buffer_limit", |b| {
        // Built inside the runtime: the buffer spawns its worker task.
        let svc = rt.block_on(async {
            ServiceBuilder::new()
                .load_shed()
                .buffer(TASKS as usize)
                .concurrency_limit(CAPACITY)
                .service(service_fn(work))
        });
        b.iter_custom(|iters| contended_run(&rt, &svc, iters, &refused_tower))
    });
    group.finish();
    eprintln!(
        "contended: refused requests: fairgate {}, tower stack {}",
        refused_ours.load(Relaxed),
        refused_tower.load(Relaxed)
    );
}

/// One operation of a `FAIRGATE_CALLGRIND` case, `iters` times.
fn callgrind_case(case: &str, iters: u64) {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    fn drive<S: Service<u64, Response = u64>>(svc: &mut S, iters: u64)
    where
        S::Error: Debug,
    {
        let mut cx = Context::from_waker(Waker::noop());
        for i in 0..iters {
            assert!(svc.poll_ready(&mut cx).is_ready());
            let fut = pin!(svc.call(black_box(i)));
            match fut.poll(&mut cx) {
                Poll::Ready(out) => black_box(out.unwrap()),
                Poll::Pending => panic!("the limit is never reached here"),
            };
        }
    }
    let limiter = || Limiter::builder("bench").capacity(1024).build().unwrap();
    match case {
        "tokio_semaphore" => {
            let sem = Arc::new(tokio::sync::Semaphore::new(1024));
            for _ in 0..iters {
                drop(black_box(sem.clone().try_acquire_owned().unwrap()));
            }
        }
        "fairgate_semaphore" => {
            let sem = Arc::new(fairgate::Semaphore::new(1024));
            for _ in 0..iters {
                drop(black_box(sem.clone().try_acquire_owned().unwrap()));
            }
        }
        "limiter_try_acquire" => {
            let limiter = limiter();
            for _ in 0..iters {
                drop(black_box(limiter.try_acquire().unwrap()));
            }
        }
        "limiter_acquire" => {
            let limiter = limiter();
            let mut cx = Context::from_waker(Waker::noop());
            for _ in 0..iters {
                let acquire = pin!(limiter.acquire());
                match acquire.poll(&mut cx) {
                    Poll::Ready(permit) => drop(black_box(permit.unwrap())),
                    Poll::Pending => panic!("the limit is never reached here"),
                }
            }
        }
        "layer_none" => drive(&mut service_fn(plus_one), iters),
        "layer_tower" => drive(
            &mut tower::limit::ConcurrencyLimit::new(service_fn(plus_one), 1024),
            iters,
        ),
        "layer_fairgate" => drive(
            &mut ConcurrencyLimit::new(service_fn(plus_one), limiter()),
            iters,
        ),
        "layer_fairgate_passthrough" => drive(
            &mut ConcurrencyLimit::new(
                service_fn(plus_one),
                Limiter::builder("bench").capacity(0).build().unwrap(),
            ),
            iters,
        ),
        // The criterion harness itself: `ready().await` + `call().await` on a current-thread
        // tokio runtime.
        "rt_layer_tower" | "rt_layer_fairgate" => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            if case == "rt_layer_tower" {
                let mut svc = tower::limit::ConcurrencyLimit::new(service_fn(plus_one), 1024);
                black_box(rt.block_on(sequential(&mut svc, iters)));
            } else {
                let mut svc = ConcurrencyLimit::new(service_fn(plus_one), limiter());
                black_box(rt.block_on(sequential(&mut svc, iters)));
            }
        }
        other => panic!("unknown FAIRGATE_CALLGRIND case {other:?}"),
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = primitives, uncontended, contended
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
