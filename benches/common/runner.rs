//! The contended runs: T tasks looping acquire → `yield_now` → release on a 2-worker tokio
//! runtime, for a fixed count (criterion) or a fixed time window (the fairness report), and the
//! two-task handoff ping-pong.

use std::sync::atomic::{AtomicUsize, Ordering::*};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Sem;

/// The grid from the issue.
pub const TASKS: [usize; 3] = [4, 64, 1024];
pub const PERMITS: [usize; 3] = [1, 4, 64];

/// The runtime every contended case uses: multi-thread, 2 workers.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Throughput run: `tasks` tasks each do `per_task` × (acquire → yield → release). Returns the
/// wall time from the first spawn to the last join.
pub fn run_fixed<S: Sem>(
    rt: &tokio::runtime::Runtime,
    sem: &Arc<S>,
    tasks: usize,
    per_task: usize,
) -> Duration {
    rt.block_on(async {
        let start = Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                let sem = Arc::clone(sem);
                tokio::spawn(async move {
                    for _ in 0..per_task {
                        let g = sem.acquire_one().await;
                        tokio::task::yield_now().await;
                        drop(g);
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.expect("task panicked");
        }
        start.elapsed()
    })
}

pub struct WindowResult {
    pub window: Duration,
    pub counts: Vec<u64>,
    /// Wait (acquire call → permit held) of every counted acquisition, nanoseconds.
    pub waits: Vec<u64>,
}

impl WindowResult {
    pub fn ops(&self) -> u64 {
        self.counts.iter().sum()
    }
    pub fn ops_per_sec(&self) -> f64 {
        self.ops() as f64 / self.window.as_secs_f64()
    }
    /// Jain's fairness index of the per-task counts: (Σx)² / (n·Σx²); 1 = perfectly even.
    pub fn jain(&self) -> f64 {
        let n = self.counts.len() as f64;
        let sum: f64 = self.counts.iter().map(|&c| c as f64).sum();
        let sq: f64 = self.counts.iter().map(|&c| (c as f64) * (c as f64)).sum();
        if sq == 0.0 {
            0.0
        } else {
            sum * sum / (n * sq)
        }
    }
    /// Wait percentile in nanoseconds (`waits` must be sorted).
    pub fn pct(&self, p: f64) -> u64 {
        if self.waits.is_empty() {
            return 0;
        }
        let idx = ((self.waits.len() as f64 - 1.0) * p).round() as usize;
        self.waits[idx]
    }
    pub fn min_count(&self) -> u64 {
        self.counts.iter().copied().min().unwrap_or(0)
    }
}

/// Fixed-window run: all tasks start together (barrier) and loop acquire → yield → release. The
/// first `window / 5` is warm-up (tasks that start late on a loaded machine catch up into the
/// queue); then only acquisitions completed during the next `window` are counted and their waits
/// recorded. Each acquisition is classified by the phase it observes when the permit arrives.
pub fn run_window<S: Sem>(
    rt: &tokio::runtime::Runtime,
    tasks: usize,
    permits: usize,
    window: Duration,
) -> WindowResult {
    const WARMUP: u8 = 0;
    const MEASURE: u8 = 1;
    const STOP: u8 = 2;
    let sem = Arc::new(S::with_permits(permits));
    let phase = Arc::new(std::sync::atomic::AtomicU8::new(WARMUP));
    let barrier = Arc::new(tokio::sync::Barrier::new(tasks + 1));
    rt.block_on(async {
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                let sem = Arc::clone(&sem);
                let phase = Arc::clone(&phase);
                let barrier = Arc::clone(&barrier);
                tokio::spawn(async move {
                    let mut waits = Vec::with_capacity(4096);
                    let mut count = 0u64;
                    barrier.wait().await;
                    loop {
                        let t0 = Instant::now();
                        let g = sem.acquire_one().await;
                        let waited = t0.elapsed();
                        match phase.load(Relaxed) {
                            STOP => break,
                            MEASURE => {
                                count += 1;
                                waits.push(waited.as_nanos() as u64);
                            }
                            _ => {}
                        }
                        tokio::task::yield_now().await;
                        drop(g);
                    }
                    (count, waits)
                })
            })
            .collect();
        barrier.wait().await;
        tokio::time::sleep(window / 5).await;
        phase.store(MEASURE, Relaxed);
        let start = Instant::now();
        tokio::time::sleep(window).await;
        phase.store(STOP, Relaxed);
        let window = start.elapsed();
        let mut counts = Vec::with_capacity(tasks);
        let mut waits = Vec::new();
        for h in handles {
            let (c, w) = h.await.expect("task panicked");
            counts.push(c);
            waits.extend(w);
        }
        waits.sort_unstable();
        WindowResult {
            window,
            counts,
            waits,
        }
    })
}

/// Two tasks ping-ponging one permit (acquire → yield → release) on `rt`. Returns the time
/// and how many acquisitions changed owner.
pub fn run_pingpong<S: Sem>(
    rt: &tokio::runtime::Runtime,
    sem: &Arc<S>,
    per_task: usize,
) -> (Duration, u64) {
    rt.block_on(async {
        let last = Arc::new(AtomicUsize::new(usize::MAX));
        let switches = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        let handles: Vec<_> = (0..2)
            .map(|id| {
                let sem = Arc::clone(sem);
                let last = Arc::clone(&last);
                let switches = Arc::clone(&switches);
                tokio::spawn(async move {
                    for _ in 0..per_task {
                        let g = sem.acquire_one().await;
                        if last.swap(id, Relaxed) != id {
                            switches.fetch_add(1, Relaxed);
                        }
                        tokio::task::yield_now().await;
                        drop(g);
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.expect("task panicked");
        }
        (start.elapsed(), switches.load(Relaxed) as u64)
    })
}

pub fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime")
}
