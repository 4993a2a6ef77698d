//! A service-registry cache under a slow, then failing, registry.
//!
//! Scenario (real time, scaled down): a value is cached and then expires. The
//! registry now takes 300 ms per call, and the refresh fails. 1000 callers ask
//! for the service during that window. We compare:
//!
//! * `StaleCache` (this crate): one backend call; everyone holding stale data
//!   is answered at once, including while the slow call is running and after
//!   it failed;
//! * a naive singleflight (`Group`, coalescing only, no stale serving): every
//!   caller waits for the slow call and then gets its error.
//!
//! Run with `cargo run --example registry_cache --features singleflight`.

use fairgate::singleflight::{Group, Policy, Source, StaleCache};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CALLERS: usize = 1000;
const SLOW: Duration = Duration::from_millis(300);

/// A simulated registry: the first call is quick and succeeds, later calls
/// are slow and fail (etcd overloaded).
#[derive(Clone, Default)]
struct Registry {
    calls: Arc<AtomicUsize>,
}

impl Registry {
    async fn get_service(&self, name: String) -> Result<Vec<String>, String> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if n == 0 {
            return Ok(vec![
                format!("{name}-10.0.0.1:8080"),
                format!("{name}-10.0.0.2:8080"),
            ]);
        }
        tokio::time::sleep(SLOW).await;
        Err("etcd: context deadline exceeded".to_string())
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // ---------------------------------------------------------- StaleCache
    let registry = Registry::default();
    let r = registry.clone();
    // The simple loader form: key only, no `previous` value.
    let cache = StaleCache::from_fn(move |name: &String| {
        let r = r.clone();
        let name = name.clone();
        async move { r.get_service(name).await }
    })
    .policy(Policy {
        ttl: Duration::from_millis(100),
        max_stale: Duration::from_secs(60),
        min_refresh_interval: Duration::from_millis(50),
        ..Policy::default()
    })
    // The recommended setup: with a spawner the refresh runs detached, so
    // even the caller that triggers it is answered with the stale value at
    // once, and a caller that gives up cannot cancel the refresh for the
    // others. Without one, that caller would wait the full 300 ms.
    .spawner(|f| {
        tokio::spawn(f);
    })
    .build();

    let key = "payments".to_string();
    cache.get(&key).await.expect("warm-up load");
    tokio::time::sleep(Duration::from_millis(120)).await; // let it expire

    let start = Instant::now();
    let tasks: Vec<_> = (0..CALLERS)
        .map(|i| {
            let cache = cache.clone();
            let key = key.clone();
            tokio::spawn(async move {
                // Spread arrivals over ~400 ms: before, during and after the slow call.
                tokio::time::sleep(Duration::from_micros(400 * i as u64)).await;
                let t = Instant::now();
                let r = cache.get(&key).await;
                (
                    t.elapsed(),
                    r.map(|h| (h.source, h.error().map(|e| e.to_string()))),
                )
            })
        })
        .collect();
    let mut lat = Vec::new();
    let (mut stale, mut fresh, mut errors) = (0, 0, 0);
    let mut refresh_error = None;
    for t in tasks {
        let (d, r) = t.await.unwrap();
        lat.push(d);
        match r {
            Ok((Source::Stale(_), err)) => {
                stale += 1;
                refresh_error = refresh_error.or(err);
            }
            Ok(_) => fresh += 1,
            Err(_) => errors += 1,
        }
    }
    let wall = start.elapsed();
    lat.sort();
    let s = cache.stats();
    println!("StaleCache (this crate), {CALLERS} callers, registry slow ({SLOW:?}) then failing:");
    println!(
        "  backend calls during the window: {}",
        registry.calls.load(Ordering::SeqCst) - 1
    );
    println!("  served stale: {stale}, fresh/loaded: {fresh}, errors: {errors}");
    if let Some(e) = refresh_error {
        println!("  the failed refresh, as stale hits report it (Hit::error): {e}");
    }
    println!(
        "  per-call latency: p50 {:?}, p99 {:?}, max {:?}",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat[lat.len() - 1]
    );
    println!(
        "  stats: stale_revalidating={} stale_load_failed={} stale_throttled={} loads_failed={}",
        s.stale_revalidating, s.stale_load_failed, s.stale_throttled, s.loads_failed
    );
    println!("  wall time for all callers: {wall:?}");

    // ---------------------------------------------------- naive singleflight
    let registry = Registry::default();
    registry.calls.store(1, Ordering::SeqCst); // already warmed: every call is slow + failing
    let group: Group<String, Vec<String>, String> = Group::new();
    let start = Instant::now();
    let tasks: Vec<_> = (0..CALLERS)
        .map(|i| {
            let group = group.clone();
            let registry = registry.clone();
            let key = key.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_micros(400 * i as u64)).await;
                let t = Instant::now();
                let k = key.clone();
                let r = group
                    .work(key, move || async move { registry.get_service(k).await })
                    .await;
                (t.elapsed(), r.is_ok())
            })
        })
        .collect();
    let mut lat = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (d, ok) = t.await.unwrap();
        lat.push(d);
        errors += usize::from(!ok);
    }
    let wall = start.elapsed();
    lat.sort();
    println!("Naive singleflight (coalescing only) on the same scenario:");
    println!(
        "  backend calls: {}",
        registry.calls.load(Ordering::SeqCst) - 1
    );
    println!("  served stale: 0, errors: {errors} of {CALLERS}");
    println!(
        "  per-call latency: p50 {:?}, p99 {:?}, max {:?}",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat[lat.len() - 1]
    );
    println!("  wall time for all callers: {wall:?}");
}
