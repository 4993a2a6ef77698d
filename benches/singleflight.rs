//! Criterion benchmarks for `fairgate::singleflight`, with peers.
//!
//! * fresh hit and stale hit latency, single-threaded (goal ≤ 100 ns), next
//!   to two floors: the OS clock read alone (`clock_floor_*`) and a
//!   `Mutex<HashMap>` lookup;
//! * 10 000 concurrent callers on one cold key → exactly one backend call
//!   (asserted), compared with moka's `get_with` and `async_singleflight`.
//!
//! Run: `cargo bench --features singleflight --bench singleflight`.
//!
//! Load-independent instruction counts per hit (callgrind), no criterion:
//!
//! ```text
//! SF_COUNT_HITS=100000 valgrind --tool=callgrind --callgrind-out-file=/tmp/sf.cg \
//!     $CARGO_TARGET_DIR/release/deps/singleflight-<hash>
//! callgrind_annotate --inclusive=yes /tmp/sf.cg | grep count_
//! ```
//!
//! Each `count_*` function runs `SF_COUNT_HITS` hits; divide its inclusive
//! instruction count by that number.

use criterion::{criterion_group, Criterion};
use fairgate::singleflight::{Group, Loader, ManualClock, Policy, Source, StaleCache, StaleReason};
use futures::FutureExt;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn hits(c: &mut Criterion) {
    let clock = ManualClock::new();
    let cache = StaleCache::builder(|k: &u64, _p: Option<Arc<u64>>| {
        let k = *k;
        async move { Ok::<_, ()>(k) }
    })
    .policy(Policy {
        ttl: Duration::from_secs(10),
        max_stale: Duration::from_secs(3600),
        min_refresh_interval: Duration::from_secs(3600),
        ..Policy::default()
    })
    .clock(clock.clone())
    .build();
    for k in 0..1000u64 {
        cache.insert(k, k);
    }
    // Fresh keys 0..1000; make key 5000 stale and throttled.
    let sys = StaleCache::builder(|k: &u64, _p: Option<Arc<u64>>| {
        let k = *k;
        async move { Ok::<_, ()>(k) }
    })
    .build();
    for k in 0..1000u64 {
        sys.insert(k, k);
    }

    let mut g = c.benchmark_group("hit");
    g.bench_function("fairgate_fresh_manual_clock", |b| {
        let mut k = 0u64;
        b.iter(|| {
            k = (k + 1) % 1000;
            let h = cache.get(black_box(&k)).now_or_never().unwrap().unwrap();
            debug_assert_eq!(h.source, Source::Fresh);
            black_box(h)
        })
    });
    g.bench_function("fairgate_fresh_system_clock", |b| {
        let mut k = 0u64;
        b.iter(|| {
            k = (k + 1) % 1000;
            black_box(sys.get(black_box(&k)).now_or_never().unwrap().unwrap())
        })
    });
    // Stale + throttled: a refresh happened (and succeeded) long ago relative to
    // ttl but min_refresh_interval forbids another one.
    let stale_cache = StaleCache::builder(|k: &u64, _p: Option<Arc<u64>>| {
        let k = *k;
        async move { Ok::<_, ()>(k) }
    })
    .policy(Policy {
        ttl: Duration::from_secs(10),
        max_stale: Duration::from_secs(3600),
        min_refresh_interval: Duration::from_secs(3600),
        ..Policy::default()
    })
    .clock(clock.clone())
    .build();
    for k in 0..1000u64 {
        stale_cache.get(&k).now_or_never().unwrap().unwrap();
    }
    clock.advance(Duration::from_secs(20));
    let h = stale_cache.get(&1).now_or_never().unwrap().unwrap();
    assert_eq!(h.source, Source::Stale(StaleReason::Throttled));

    g.bench_function("fairgate_stale_throttled", |b| {
        let mut k = 0u64;
        b.iter(|| {
            k = (k + 1) % 1000;
            black_box(
                stale_cache
                    .get(black_box(&k))
                    .now_or_never()
                    .unwrap()
                    .unwrap(),
            )
        })
    });
    // Clock floor on this machine: the OS clock read alone (vDSO
    // `clock_gettime(CLOCK_MONOTONIC)` on Linux), which every system-clock hit
    // pays, and the same read turned into nanoseconds since an epoch (what
    // the cache does with it).
    g.bench_function("clock_floor_instant_now", |b| {
        b.iter(|| black_box(Instant::now()))
    });
    let epoch = Instant::now();
    g.bench_function("clock_floor_nanos_since_epoch", |b| {
        b.iter(|| {
            let d = Instant::now().saturating_duration_since(black_box(epoch));
            black_box(d.as_secs() * 1_000_000_000 + u64::from(d.subsec_nanos()))
        })
    });
    // Calibration floor on this machine: one std Mutex<HashMap> lookup + Arc clone.
    let baseline: std::sync::Mutex<std::collections::HashMap<u64, Arc<u64>>> =
        std::sync::Mutex::new((0..1000u64).map(|k| (k, Arc::new(k))).collect());
    g.bench_function("baseline_mutex_hashmap_get", |b| {
        let mut k = 0u64;
        b.iter(|| {
            k = (k + 1) % 1000;
            black_box(baseline.lock().unwrap().get(black_box(&k)).cloned())
        })
    });
    let moka_cache: moka::future::Cache<u64, Arc<u64>> = moka::future::Cache::new(10_000);
    futures::executor::block_on(async {
        for k in 0..1000u64 {
            moka_cache.insert(k, Arc::new(k)).await;
        }
    });
    g.bench_function("moka_get_with_hit", |b| {
        let mut k = 0u64;
        b.iter(|| {
            k = (k + 1) % 1000;
            black_box(
                moka_cache
                    .get_with(black_box(k), async { Arc::new(0) })
                    .now_or_never()
                    .unwrap(),
            )
        })
    });
    g.finish();
}

/// The backend call: finishes only once all `n` callers have arrived (each
/// caller counts itself and registers in the same synchronous poll, so this
/// makes "every caller joined the one flight" deterministic), then 1 ms more.
async fn backend(arrived: Arc<AtomicUsize>, n: usize) -> u64 {
    while arrived.load(Ordering::SeqCst) < n {
        tokio::time::sleep(Duration::from_micros(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1)).await;
    1
}

fn stampede(c: &mut Criterion) {
    const N: usize = 10_000;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("cold_key_10k_callers");
    g.sample_size(10);

    g.bench_function("fairgate_stale_cache", |b| {
        b.iter(|| {
            let calls = Arc::new(AtomicUsize::new(0));
            let arrived = Arc::new(AtomicUsize::new(0));
            let (c2, a2) = (calls.clone(), arrived.clone());
            let cache = StaleCache::builder(move |_k: &u64, _p: Option<Arc<u64>>| {
                c2.fetch_add(1, Ordering::SeqCst);
                let a = a2.clone();
                async move { Ok::<_, ()>(backend(a, N).await) }
            })
            .build();
            rt.block_on(async {
                let tasks: Vec<_> = (0..N)
                    .map(|_| {
                        let c = cache.clone();
                        let arrived = arrived.clone();
                        tokio::spawn(async move {
                            arrived.fetch_add(1, Ordering::SeqCst);
                            *c.get(&7).await.unwrap().value
                        })
                    })
                    .collect();
                for t in tasks {
                    assert_eq!(t.await.unwrap(), 1);
                }
            });
            assert_eq!(calls.load(Ordering::SeqCst), 1, "exactly one backend call");
        })
    });

    g.bench_function("fairgate_group", |b| {
        b.iter(|| {
            let calls = Arc::new(AtomicUsize::new(0));
            let arrived = Arc::new(AtomicUsize::new(0));
            let group: Group<u64, u64, ()> = Group::new();
            rt.block_on(async {
                let tasks: Vec<_> = (0..N)
                    .map(|_| {
                        let g = group.clone();
                        let calls = calls.clone();
                        let arrived = arrived.clone();
                        tokio::spawn(async move {
                            arrived.fetch_add(1, Ordering::SeqCst);
                            g.work(7, move || {
                                calls.fetch_add(1, Ordering::SeqCst);
                                async move { Ok(backend(arrived, N).await) }
                            })
                            .await
                            .unwrap()
                        })
                    })
                    .collect();
                for t in tasks {
                    assert_eq!(t.await.unwrap(), 1);
                }
            });
            assert_eq!(calls.load(Ordering::SeqCst), 1, "exactly one backend call");
        })
    });

    g.bench_function("moka_get_with", |b| {
        b.iter(|| {
            let calls = Arc::new(AtomicUsize::new(0));
            let arrived = Arc::new(AtomicUsize::new(0));
            let cache: moka::future::Cache<u64, u64> = moka::future::Cache::new(100);
            rt.block_on(async {
                let tasks: Vec<_> = (0..N)
                    .map(|_| {
                        let c = cache.clone();
                        let calls = calls.clone();
                        let arrived = arrived.clone();
                        tokio::spawn(async move {
                            arrived.fetch_add(1, Ordering::SeqCst);
                            c.get_with(7, async move {
                                calls.fetch_add(1, Ordering::SeqCst);
                                backend(arrived, N).await
                            })
                            .await
                        })
                    })
                    .collect();
                for t in tasks {
                    assert_eq!(t.await.unwrap(), 1);
                }
            });
            assert_eq!(calls.load(Ordering::SeqCst), 1, "exactly one backend call");
        })
    });

    let peer_calls = AtomicUsize::new(0);
    g.bench_function("async_singleflight", |b| {
        b.iter(|| {
            let calls = Arc::new(AtomicUsize::new(0));
            let arrived = Arc::new(AtomicUsize::new(0));
            let group: Arc<async_singleflight::Group<String, u64, ()>> =
                Arc::new(async_singleflight::Group::new());
            rt.block_on(async {
                let tasks: Vec<_> = (0..N)
                    .map(|_| {
                        let g = group.clone();
                        let calls = calls.clone();
                        let arrived = arrived.clone();
                        tokio::spawn(async move {
                            arrived.fetch_add(1, Ordering::SeqCst);
                            g.work("7", async move {
                                calls.fetch_add(1, Ordering::SeqCst);
                                Ok(backend(arrived, N).await)
                            })
                            .await
                            .unwrap()
                        })
                    })
                    .collect();
                for t in tasks {
                    assert_eq!(t.await.unwrap(), 1);
                }
            });
            peer_calls.fetch_max(calls.load(Ordering::SeqCst), Ordering::SeqCst);
        })
    });
    g.finish();
    println!(
        "async_singleflight: max backend calls per 10k-caller iteration = {} (not asserted: peer)",
        peer_calls.load(Ordering::SeqCst)
    );
}

/// `SF_COUNT_HITS` loops: fresh hits with the manual clock.
#[inline(never)]
fn count_fresh<L: Loader<u64, u64, Error = ()>>(cache: &StaleCache<u64, u64, L>, n: u64) {
    for i in 0..n {
        let k = i % 1000;
        black_box(cache.get(black_box(&k)).now_or_never().unwrap().unwrap());
    }
}

#[inline(never)]
fn count_fresh_system_clock<L: Loader<u64, u64, Error = ()>>(
    cache: &StaleCache<u64, u64, L>,
    n: u64,
) {
    for i in 0..n {
        let k = i % 1000;
        black_box(cache.get(black_box(&k)).now_or_never().unwrap().unwrap());
    }
}

#[inline(never)]
fn count_stale<L: Loader<u64, u64, Error = ()>>(cache: &StaleCache<u64, u64, L>, n: u64) {
    for i in 0..n {
        let k = i % 1000;
        let h = cache.get(black_box(&k)).now_or_never().unwrap().unwrap();
        assert!(h.is_stale());
        black_box(h);
    }
}

#[inline(never)]
fn count_baseline(m: &std::sync::Mutex<std::collections::HashMap<u64, Arc<u64>>>, n: u64) {
    for i in 0..n {
        let k = i % 1000;
        black_box(m.lock().unwrap().get(black_box(&k)).cloned());
    }
}

fn count_hits(n: u64) {
    let clock = ManualClock::new();
    let policy = Policy {
        ttl: Duration::from_secs(10),
        max_stale: Duration::from_secs(3600),
        min_refresh_interval: Duration::from_secs(3600),
        ..Policy::default()
    };
    let loader = |k: &u64, _p: Option<Arc<u64>>| {
        let k = *k;
        async move { Ok::<_, ()>(k) }
    };
    let cache = StaleCache::builder(loader)
        .policy(policy.clone())
        .clock(clock.clone())
        .build();
    let sys = StaleCache::builder(loader).build();
    let stale = StaleCache::builder(loader)
        .policy(policy)
        .clock(clock.clone())
        .build();
    for k in 0..1000u64 {
        cache.insert(k, k);
        sys.insert(k, k);
        stale.get(&k).now_or_never().unwrap().unwrap();
    }
    // `SF_COUNT_ONLY=fresh|system|stale|baseline` runs one loop (for perf).
    let only = std::env::var("SF_COUNT_ONLY").unwrap_or_default();
    let run = |name: &str| only.is_empty() || only == name;
    clock.advance(Duration::from_secs(5));
    if run("fresh") {
        count_fresh(&cache, n);
        assert_eq!(cache.stats().fresh, n);
    }
    if run("system") {
        count_fresh_system_clock(&sys, n);
    }
    clock.advance(Duration::from_secs(20));
    if run("stale") {
        count_stale(&stale, n);
    }
    let baseline: std::sync::Mutex<std::collections::HashMap<u64, Arc<u64>>> =
        std::sync::Mutex::new((0..1000u64).map(|k| (k, Arc::new(k))).collect());
    if run("baseline") {
        count_baseline(&baseline, n);
    }
}

criterion_group!(benches, hits, stampede);

fn main() {
    if let Some(n) = std::env::var("SF_COUNT_HITS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        count_hits(n);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
