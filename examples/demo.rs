//! Many tasks competing for few permits on a multi-thread runtime.
//!
//! `cargo run --release --example demo` — prints a progress line while it runs, then
//! throughput, p50/p99/max wait, that every permit came back, and a FIFO check: tasks queued
//! one after another are served in exactly that order.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fairgate::Semaphore;

const TASKS: usize = 1_000;
const PERMITS: usize = 8;
const RUN_FOR: Duration = Duration::from_secs(3);

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("tokio runtime");
    rt.block_on(run());
}

async fn run() {
    let sem = Arc::new(Semaphore::new(PERMITS));
    let acquired = Arc::new(AtomicU64::new(0));
    let in_use = Arc::new(AtomicUsize::new(0));
    let max_in_use = Arc::new(AtomicUsize::new(0));
    let waits = Arc::new(Mutex::new(Vec::with_capacity(1 << 20)));
    let start = Instant::now();
    let deadline = start + RUN_FOR;

    let mut handles = Vec::with_capacity(TASKS);
    for _ in 0..TASKS {
        let sem = sem.clone();
        let (acquired, in_use, max_in_use) = (acquired.clone(), in_use.clone(), max_in_use.clone());
        let waits = waits.clone();
        handles.push(tokio::spawn(async move {
            let mut local_waits = Vec::new();
            while Instant::now() < deadline {
                let asked = Instant::now();
                let permit = sem.acquire().await.expect("never closed");
                local_waits.push(asked.elapsed());
                let now = in_use.fetch_add(1, Relaxed) + 1;
                max_in_use.fetch_max(now, Relaxed);
                tokio::task::yield_now().await; // "work" while holding the permit
                in_use.fetch_sub(1, Relaxed);
                drop(permit);
                acquired.fetch_add(1, Relaxed);
            }
            waits.lock().unwrap().extend(local_waits);
        }));
    }

    let progress = {
        let acquired = acquired.clone();
        let sem = sem.clone();
        tokio::spawn(async move {
            while Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(500)).await;
                eprintln!(
                    "  {:>4.1}s  {:>10} acquisitions  {:>5} queued  {} free",
                    start.elapsed().as_secs_f64(),
                    acquired.load(Relaxed),
                    sem.waiters(),
                    sem.available_permits()
                );
            }
        })
    };

    for h in handles {
        h.await.expect("task panicked");
    }
    progress.await.unwrap();
    let elapsed = start.elapsed();
    let mut waits = std::mem::take(&mut *waits.lock().unwrap());
    waits.sort_unstable();
    let pct = |p: f64| waits[((waits.len() - 1) as f64 * p) as usize];
    let total = acquired.load(Relaxed);

    println!("fairgate demo: {TASKS} tasks, {PERMITS} permits, 2 worker threads, {RUN_FOR:?}");
    println!(
        "throughput     {:.0} acquisitions/s ({total} in {:.2}s)",
        total as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    println!(
        "wait           p50 {:?}  p99 {:?}  max {:?}",
        pct(0.50),
        pct(0.99),
        waits[waits.len() - 1]
    );
    println!(
        "max in use     {} (limit {PERMITS})",
        max_in_use.load(Relaxed)
    );
    let back = sem.available_permits();
    println!(
        "permits back   {back}/{PERMITS}: {}",
        if back == PERMITS { "ok" } else { "FAILED" }
    );
    let fifo_ok = fifo_check().await;
    assert!(max_in_use.load(Relaxed) <= PERMITS);
    assert_eq!(back, PERMITS);
    assert!(fifo_ok);
}

/// FIFO check: tasks queue one after another on a one-permit gate, then the gate opens. Each
/// records its index while it holds the permit, so the record is exactly the grant order.
async fn fifo_check() -> bool {
    const QUEUED: usize = 200;
    let gate = Arc::new(Semaphore::new(1));
    let held = gate.clone().try_acquire_owned().unwrap();
    let order = Arc::new(Mutex::new(Vec::with_capacity(QUEUED)));
    let mut handles = Vec::new();
    for i in 0..QUEUED {
        let (gate_for_task, order) = (gate.clone(), order.clone());
        handles.push(tokio::spawn(async move {
            let _permit = gate_for_task.acquire().await.unwrap();
            order.lock().unwrap().push(i);
        }));
        // Wait until task i is queued before starting task i + 1.
        let until = Instant::now() + Duration::from_secs(10);
        while gate.waiters() != i + 1 && Instant::now() < until {
            tokio::task::yield_now().await;
        }
    }
    drop(held);
    for h in handles {
        h.await.unwrap();
    }
    let order = order.lock().unwrap();
    let in_order = order.windows(2).filter(|w| w[0] < w[1]).count() + 1;
    let ok = order.iter().copied().eq(0..QUEUED);
    println!(
        "FIFO check     {QUEUED} queued tasks served in queue order: {} ({in_order}/{QUEUED} in sequence)",
        if ok { "ok" } else { "FAILED" }
    );
    ok
}
