//! Fairness report (issue 4): `cargo bench --bench fairness`.
//!
//! For every contended case (T tasks × P permits on a 2-worker tokio runtime, each task looping
//! acquire → `yield_now` → release) and every implementation, runs a fixed time window and prints
//! ops/s, p50/p99/max wait (time from calling `acquire` to holding the permit) and Jain's
//! fairness index of the per-task acquisition counts in the window. Also prints the sizes of
//! each implementation's semaphore, acquire future and permit, and the two-task handoff case
//! with its alternation rate.
//!
//! Extra modes (arguments after `--`):
//! * `--csv PATH`: also write the contended rows as CSV (input of `scripts/plot_bench.py`).
//! * `--window-ms N` (default 500), `--reps N` (default 1; rows are per repetition),
//!   `--only NAME` (one implementation), `--tasks T` / `--permits P` (one contended point,
//!   e.g. to profile it).
//! * `--callgrind`: instruction counts per operation for the single-thread cases, measured by
//!   running this binary under `valgrind --tool=callgrind` at two iteration counts and taking
//!   the difference (start-up cost cancels out). Load-independent, unlike wall-clock time.
//! * `--case CASE IMPL ITERS`: run one single-thread case (used by `--callgrind`).
//!
//! This file is also included by `benches/semaphore.rs` as a module for the shared adapters.
#![allow(clippy::type_complexity)]

use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicUsize, Ordering::*};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// The floor: one CAS acquire + one fetch_add release on a bare AtomicUsize.
// ---------------------------------------------------------------------------------------------

/// A bare counter. Acquire = CAS loop decrement, release = `fetch_add`. Its "waiting" is a
/// busy re-poll (wake itself and return `Pending`): no queue, no fairness.
pub struct Floor(AtomicUsize);

impl Floor {
    #[inline]
    fn try_take(&self, n: usize) -> bool {
        let mut cur = self.0.load(Relaxed);
        loop {
            if cur < n {
                return false;
            }
            match self.0.compare_exchange_weak(cur, cur - n, Acquire, Relaxed) {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }
}

pub struct FloorPermit<'a>(&'a AtomicUsize, usize);
impl Drop for FloorPermit<'_> {
    #[inline]
    fn drop(&mut self) {
        self.0.fetch_add(self.1, Release);
    }
}

pub struct FloorAcquire<'a>(&'a Floor, usize);
impl<'a> Future for FloorAcquire<'a> {
    type Output = FloorPermit<'a>;
    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<FloorPermit<'a>> {
        if self.0.try_take(self.1) {
            Poll::Ready(FloorPermit(&self.0 .0, self.1))
        } else {
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

pub struct FloorOwnedPermit(Arc<Floor>, usize);
impl Drop for FloorOwnedPermit {
    #[inline]
    fn drop(&mut self) {
        self.0 .0.fetch_add(self.1, Release);
    }
}

pub struct FloorAcquireOwned(Arc<Floor>);
impl Future for FloorAcquireOwned {
    type Output = FloorOwnedPermit;
    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<FloorOwnedPermit> {
        if self.0.try_take(1) {
            Poll::Ready(FloorOwnedPermit(Arc::clone(&self.0), 1))
        } else {
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

// ---------------------------------------------------------------------------------------------
// One adapter trait over every implementation. It returns each library's own future and output
// unchanged (no `Map`/`unwrap` wrappers, which callgrind showed are not always inlined): holding
// the output holds the permit, dropping it releases.
// ---------------------------------------------------------------------------------------------

pub trait Sem: Send + Sync + Sized + 'static {
    const NAME: &'static str;
    /// Strict FIFO (no barging)?
    const FAIR: bool;
    /// Has a multi-permit acquire?
    const HAS_MANY: bool = true;
    /// What the acquire future resolves to (`Result<Permit, _>` or the permit itself).
    type Guard<'a>: Send
    where
        Self: 'a;
    /// What `try_acquire` returns (`Result<Permit, _>` or `Option<Permit>`).
    type TryGuard<'a>
    where
        Self: 'a;
    type OwnedSem: Send + Sync + 'static;
    type Owned: Send + 'static;

    fn with_permits(permits: usize) -> Self;
    fn acquire_one(&self) -> impl Future<Output = Self::Guard<'_>> + Send;
    fn acquire_n(&self, n: usize) -> impl Future<Output = Self::Guard<'_>> + Send;
    fn try_one(&self) -> Self::TryGuard<'_>;
    fn try_ok(guard: &Self::TryGuard<'_>) -> bool;
    fn owned_with_permits(permits: usize) -> Self::OwnedSem;
    fn acquire_owned(sem: &Self::OwnedSem) -> impl Future<Output = Self::Owned> + Send + 'static;
}

impl Sem for Floor {
    const NAME: &'static str = "floor";
    const FAIR: bool = false;
    type Guard<'a> = FloorPermit<'a>;
    type TryGuard<'a> = Option<FloorPermit<'a>>;
    type OwnedSem = Arc<Floor>;
    type Owned = FloorOwnedPermit;
    fn with_permits(permits: usize) -> Self {
        Floor(AtomicUsize::new(permits))
    }
    #[inline]
    fn acquire_one(&self) -> impl Future<Output = FloorPermit<'_>> + Send {
        FloorAcquire(self, 1)
    }
    #[inline]
    fn acquire_n(&self, n: usize) -> impl Future<Output = FloorPermit<'_>> + Send {
        FloorAcquire(self, n)
    }
    #[inline]
    fn try_one(&self) -> Option<FloorPermit<'_>> {
        self.try_take(1).then(|| FloorPermit(&self.0, 1))
    }
    fn try_ok(guard: &Self::TryGuard<'_>) -> bool {
        guard.is_some()
    }
    fn owned_with_permits(permits: usize) -> Arc<Floor> {
        Arc::new(Floor::with_permits(permits))
    }
    #[inline]
    fn acquire_owned(sem: &Arc<Floor>) -> impl Future<Output = FloorOwnedPermit> + Send + 'static {
        FloorAcquireOwned(Arc::clone(sem))
    }
}

impl Sem for fairgate::Semaphore {
    const NAME: &'static str = "fairgate";
    const FAIR: bool = true;
    type Guard<'a> = Result<fairgate::Permit<'a>, fairgate::AcquireError>;
    type TryGuard<'a> = Result<fairgate::Permit<'a>, fairgate::TryAcquireError>;
    type OwnedSem = Arc<Self>;
    type Owned = Result<fairgate::OwnedPermit, fairgate::AcquireError>;
    fn with_permits(permits: usize) -> Self {
        Self::new(permits)
    }
    #[inline]
    fn acquire_one(&self) -> impl Future<Output = Self::Guard<'_>> + Send {
        self.acquire()
    }
    #[inline]
    fn acquire_n(&self, n: usize) -> impl Future<Output = Self::Guard<'_>> + Send {
        self.acquire_many(n)
    }
    #[inline]
    fn try_one(&self) -> Self::TryGuard<'_> {
        self.try_acquire()
    }
    fn try_ok(guard: &Self::TryGuard<'_>) -> bool {
        guard.is_ok()
    }
    fn owned_with_permits(permits: usize) -> Arc<Self> {
        Arc::new(Self::new(permits))
    }
    #[inline]
    fn acquire_owned(sem: &Arc<Self>) -> impl Future<Output = Self::Owned> + Send + 'static {
        Arc::clone(sem).acquire_owned()
    }
}

impl Sem for tokio::sync::Semaphore {
    const NAME: &'static str = "tokio";
    const FAIR: bool = true;
    type Guard<'a> = Result<tokio::sync::SemaphorePermit<'a>, tokio::sync::AcquireError>;
    type TryGuard<'a> = Result<tokio::sync::SemaphorePermit<'a>, tokio::sync::TryAcquireError>;
    type OwnedSem = Arc<Self>;
    type Owned = Result<tokio::sync::OwnedSemaphorePermit, tokio::sync::AcquireError>;
    fn with_permits(permits: usize) -> Self {
        Self::new(permits)
    }
    #[inline]
    fn acquire_one(&self) -> impl Future<Output = Self::Guard<'_>> + Send {
        self.acquire()
    }
    #[inline]
    fn acquire_n(&self, n: usize) -> impl Future<Output = Self::Guard<'_>> + Send {
        self.acquire_many(n as u32)
    }
    #[inline]
    fn try_one(&self) -> Self::TryGuard<'_> {
        self.try_acquire()
    }
    fn try_ok(guard: &Self::TryGuard<'_>) -> bool {
        guard.is_ok()
    }
    fn owned_with_permits(permits: usize) -> Arc<Self> {
        Arc::new(Self::new(permits))
    }
    #[inline]
    fn acquire_owned(sem: &Arc<Self>) -> impl Future<Output = Self::Owned> + Send + 'static {
        Arc::clone(sem).acquire_owned()
    }
}

pub type MaitakeSem = maitake_sync::Semaphore;

impl Sem for MaitakeSem {
    const NAME: &'static str = "maitake-sync";
    const FAIR: bool = true;
    type Guard<'a> = Result<maitake_sync::semaphore::Permit<'a>, maitake_sync::Closed>;
    type TryGuard<'a> =
        Result<maitake_sync::semaphore::Permit<'a>, maitake_sync::semaphore::TryAcquireError>;
    type OwnedSem = Arc<Self>;
    type Owned = Result<maitake_sync::semaphore::OwnedPermit, maitake_sync::Closed>;
    fn with_permits(permits: usize) -> Self {
        Self::new(permits)
    }
    #[inline]
    fn acquire_one(&self) -> impl Future<Output = Self::Guard<'_>> + Send {
        self.acquire(1)
    }
    #[inline]
    fn acquire_n(&self, n: usize) -> impl Future<Output = Self::Guard<'_>> + Send {
        self.acquire(n)
    }
    #[inline]
    fn try_one(&self) -> Self::TryGuard<'_> {
        self.try_acquire(1)
    }
    fn try_ok(guard: &Self::TryGuard<'_>) -> bool {
        guard.is_ok()
    }
    fn owned_with_permits(permits: usize) -> Arc<Self> {
        Arc::new(Self::new(permits))
    }
    #[inline]
    fn acquire_owned(sem: &Arc<Self>) -> impl Future<Output = Self::Owned> + Send + 'static {
        sem.acquire_owned(1)
    }
}

/// futures-intrusive in fair mode (`is_fair = true`).
pub struct FiFair(futures_intrusive::sync::Semaphore);

impl Sem for FiFair {
    const NAME: &'static str = "futures-intrusive(fair)";
    const FAIR: bool = true;
    type Guard<'a> = futures_intrusive::sync::SemaphoreReleaser<'a>;
    type TryGuard<'a> = Option<futures_intrusive::sync::SemaphoreReleaser<'a>>;
    type OwnedSem = futures_intrusive::sync::SharedSemaphore;
    type Owned = futures_intrusive::sync::SharedSemaphoreReleaser;
    fn with_permits(permits: usize) -> Self {
        FiFair(futures_intrusive::sync::Semaphore::new(true, permits))
    }
    #[inline]
    fn acquire_one(&self) -> impl Future<Output = Self::Guard<'_>> + Send {
        self.0.acquire(1)
    }
    #[inline]
    fn acquire_n(&self, n: usize) -> impl Future<Output = Self::Guard<'_>> + Send {
        self.0.acquire(n)
    }
    #[inline]
    fn try_one(&self) -> Self::TryGuard<'_> {
        self.0.try_acquire(1)
    }
    fn try_ok(guard: &Self::TryGuard<'_>) -> bool {
        guard.is_some()
    }
    fn owned_with_permits(permits: usize) -> Self::OwnedSem {
        futures_intrusive::sync::SharedSemaphore::new(true, permits)
    }
    #[inline]
    fn acquire_owned(sem: &Self::OwnedSem) -> impl Future<Output = Self::Owned> + Send + 'static {
        sem.acquire(1)
    }
}

impl Sem for async_lock::Semaphore {
    const NAME: &'static str = "async-lock(unfair)";
    const FAIR: bool = false;
    const HAS_MANY: bool = false;
    type Guard<'a> = async_lock::SemaphoreGuard<'a>;
    type TryGuard<'a> = Option<async_lock::SemaphoreGuard<'a>>;
    type OwnedSem = Arc<Self>;
    type Owned = async_lock::SemaphoreGuardArc;
    fn with_permits(permits: usize) -> Self {
        Self::new(permits)
    }
    #[inline]
    fn acquire_one(&self) -> impl Future<Output = Self::Guard<'_>> + Send {
        self.acquire()
    }
    fn acquire_n(&self, _n: usize) -> impl Future<Output = Self::Guard<'_>> + Send {
        // async-lock has no multi-permit acquire; callers check `HAS_MANY`.
        std::future::pending()
    }
    #[inline]
    fn try_one(&self) -> Self::TryGuard<'_> {
        self.try_acquire()
    }
    fn try_ok(guard: &Self::TryGuard<'_>) -> bool {
        guard.is_some()
    }
    fn owned_with_permits(permits: usize) -> Arc<Self> {
        Arc::new(Self::new(permits))
    }
    #[inline]
    fn acquire_owned(sem: &Arc<Self>) -> impl Future<Output = Self::Owned> + Send + 'static {
        sem.acquire_arc()
    }
}

/// Invokes `$m!(Type, args..)` for every implementation, floor first. Callers need `Floor`,
/// `MaitakeSem` and `FiFair` in scope.
macro_rules! for_each_impl {
    ($m:ident!($($args:tt)*)) => {
        $m!(Floor, $($args)*);
        $m!(fairgate::Semaphore, $($args)*);
        $m!(tokio::sync::Semaphore, $($args)*);
        $m!(MaitakeSem, $($args)*);
        $m!(FiFair, $($args)*);
        $m!(async_lock::Semaphore, $($args)*);
    };
}

/// Polls `fut` once with a no-op waker; it must be ready.
#[inline(always)]
pub fn poll_once<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("uncontended acquire was not ready on its first poll"),
    }
}

// ---------------------------------------------------------------------------------------------
// Sizes.
// ---------------------------------------------------------------------------------------------

pub struct Sizes {
    pub name: &'static str,
    pub sem: usize,
    pub fut: usize,
    pub permit: usize,
    pub owned_fut: usize,
    pub owned_permit: usize,
}

/// Sizes of each implementation's own types (no adapter wrappers).
pub fn sizes() -> Vec<Sizes> {
    use std::mem::{size_of, size_of_val};
    let mut out = Vec::new();
    {
        let s = Arc::new(fairgate::Semaphore::new(1));
        out.push(Sizes {
            name: "fairgate",
            sem: size_of::<fairgate::Semaphore>(),
            fut: size_of_val(&s.acquire()),
            permit: size_of::<fairgate::Permit<'_>>(),
            owned_fut: size_of_val(&Arc::clone(&s).acquire_owned()),
            owned_permit: size_of::<fairgate::OwnedPermit>(),
        });
    }
    {
        let s = Arc::new(tokio::sync::Semaphore::new(1));
        out.push(Sizes {
            name: "tokio",
            sem: size_of::<tokio::sync::Semaphore>(),
            fut: size_of_val(&s.acquire()),
            permit: size_of::<tokio::sync::SemaphorePermit<'_>>(),
            owned_fut: size_of_val(&Arc::clone(&s).acquire_owned()),
            owned_permit: size_of::<tokio::sync::OwnedSemaphorePermit>(),
        });
    }
    {
        let s = Arc::new(MaitakeSem::new(1));
        out.push(Sizes {
            name: "maitake-sync",
            sem: size_of::<MaitakeSem>(),
            fut: size_of_val(&s.acquire(1)),
            permit: size_of::<maitake_sync::semaphore::Permit<'_>>(),
            owned_fut: size_of_val(&s.acquire_owned(1)),
            owned_permit: size_of::<maitake_sync::semaphore::OwnedPermit>(),
        });
    }
    {
        let s = futures_intrusive::sync::Semaphore::new(true, 1);
        let sh = futures_intrusive::sync::SharedSemaphore::new(true, 1);
        out.push(Sizes {
            name: "futures-intrusive(fair)",
            sem: size_of::<futures_intrusive::sync::Semaphore>(),
            fut: size_of_val(&s.acquire(1)),
            permit: size_of::<futures_intrusive::sync::SemaphoreReleaser<'_>>(),
            owned_fut: size_of_val(&sh.acquire(1)),
            owned_permit: size_of::<futures_intrusive::sync::SharedSemaphoreReleaser>(),
        });
    }
    {
        let s = Arc::new(async_lock::Semaphore::new(1));
        out.push(Sizes {
            name: "async-lock(unfair)",
            sem: size_of::<async_lock::Semaphore>(),
            fut: size_of_val(&s.acquire()),
            permit: size_of::<async_lock::SemaphoreGuard<'_>>(),
            owned_fut: size_of_val(&s.acquire_arc()),
            owned_permit: size_of::<async_lock::SemaphoreGuardArc>(),
        });
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Contended runs.
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Single-thread cases (for callgrind).
// ---------------------------------------------------------------------------------------------

pub const CASES: [&str; 5] = [
    "acquire",
    "try_acquire",
    "acquire_many4",
    "owned",
    "handoff_st",
];

/// Runs `iters` iterations of one single-thread case. Returns false if unsupported.
pub fn run_case<S: Sem>(case: &str, iters: usize) -> bool {
    use std::hint::black_box;
    match case {
        "acquire" => {
            let sem = S::with_permits(8);
            for _ in 0..iters {
                drop(black_box(poll_once(black_box(&sem).acquire_one())));
            }
        }
        "try_acquire" => {
            let sem = S::with_permits(8);
            for _ in 0..iters {
                drop(black_box(black_box(&sem).try_one()));
            }
        }
        "acquire_many4" => {
            if !S::HAS_MANY {
                return false;
            }
            let sem = S::with_permits(8);
            for _ in 0..iters {
                drop(black_box(poll_once(black_box(&sem).acquire_n(4))));
            }
        }
        "owned" => {
            let sem = S::owned_with_permits(8);
            for _ in 0..iters {
                drop(black_box(poll_once(S::acquire_owned(black_box(&sem)))));
            }
        }
        "handoff_st" => {
            let rt = current_thread_runtime();
            let sem = Arc::new(S::with_permits(1));
            black_box(run_pingpong(&rt, &sem, iters / 2));
        }
        _ => panic!("unknown case {case}"),
    }
    true
}

fn run_case_by_name(imp: &str, case: &str, iters: usize) -> bool {
    macro_rules! try_impl {
        ($t:ty, $imp:expr, $case:expr, $iters:expr) => {
            if <$t as Sem>::NAME == $imp {
                return run_case::<$t>($case, $iters);
            }
        };
    }
    for_each_impl!(try_impl!(imp, case, iters));
    panic!("unknown implementation {imp}");
}

fn impl_names() -> Vec<&'static str> {
    let mut v = Vec::new();
    macro_rules! name {
        ($t:ty, $v:expr) => {
            $v.push(<$t as Sem>::NAME)
        };
    }
    for_each_impl!(name!(v));
    v
}

/// Instructions (callgrind "Collected") of one run of this binary in `--case` mode.
fn callgrind_ir(exe: &std::path::Path, imp: &str, case: &str, iters: usize) -> Option<u64> {
    let out = std::process::Command::new("valgrind")
        .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
        .arg(exe)
        .args(["--case", case, imp, &iters.to_string()])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    stderr
        .lines()
        .find_map(|l| l.split("Collected :").nth(1))
        .and_then(|v| v.trim().parse().ok())
}

fn callgrind_report(csv: Option<&str>) {
    let exe = std::env::current_exe().expect("current exe");
    let (n1, n2) = (20_000usize, 40_000usize);
    println!(
        "## Instructions per operation (callgrind, (Ir({n2}) - Ir({n1})) / {})",
        n2 - n1
    );
    println!("(handoff_st: per acquisition, two tasks on a current-thread runtime)\n");
    let names = impl_names();
    print!("| case |");
    for n in &names {
        print!(" {n} |");
    }
    println!();
    println!("|---|{}", "---:|".repeat(names.len()));
    let mut rows = String::from("case,impl,instructions_per_op\n");
    for case in CASES {
        print!("| {case} |");
        for imp in &names {
            let a = callgrind_ir(&exe, imp, case, n1);
            let b = callgrind_ir(&exe, imp, case, n2);
            match (a, b) {
                (Some(a), Some(b)) if b > a && run_supported(imp, case) => {
                    let per = (b - a) as f64 / (n2 - n1) as f64;
                    print!(" {per:.1} |");
                    rows.push_str(&format!("{case},{imp},{per:.2}\n"));
                }
                _ => print!(" n/a |"),
            }
        }
        println!();
    }
    if let Some(path) = csv {
        std::fs::write(path, rows).expect("write csv");
    }
}

fn run_supported(imp: &str, case: &str) -> bool {
    !(case == "acquire_many4" && imp == <async_lock::Semaphore as Sem>::NAME)
}

/// Uncontended cases timed in short interleaved bursts (every implementation once per round, 400
/// rounds), keeping the minimum and the median burst: on a shared, loaded machine the minimum
/// filters out preemption by other processes, and interleaving exposes every implementation to
/// the same load. Returns `(case, impl, min ns/op, median ns/op)`.
fn uncontended_interleaved() -> Vec<(&'static str, &'static str, f64, f64)> {
    const ROUNDS: usize = 400;
    const ITERS: usize = 4_000;
    let mut out = Vec::new();
    for case in ["acquire", "try_acquire", "acquire_many4", "owned"] {
        let names = impl_names();
        let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(ROUNDS); names.len()];
        for _ in 0..ROUNDS {
            for (i, imp) in names.iter().enumerate() {
                if !run_supported(imp, case) {
                    continue;
                }
                let t = Instant::now();
                run_case_by_name(imp, case, ITERS);
                samples[i].push(t.elapsed().as_nanos() as f64 / ITERS as f64);
            }
        }
        for (i, imp) in names.iter().enumerate() {
            let v = &mut samples[i];
            if v.is_empty() {
                continue;
            }
            v.sort_by(f64::total_cmp);
            out.push((case, *imp, v[0], v[v.len() / 2]));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The report.
// ---------------------------------------------------------------------------------------------

fn fmt_ns(ns: u64) -> String {
    if ns >= 1_000_000 {
        format!("{:.2} ms", ns as f64 / 1e6)
    } else if ns >= 1_000 {
        format!("{:.1} µs", ns as f64 / 1e3)
    } else {
        format!("{ns} ns")
    }
}

struct Args {
    /// Not run by `cargo bench` (e.g. `cargo test --all-targets`): a tiny smoke run only.
    smoke: bool,
    csv: Option<String>,
    window: Duration,
    reps: usize,
    only: Option<String>,
    tasks: Option<usize>,
    permits: Option<usize>,
    callgrind: bool,
}

fn parse_args() -> Result<Args, ()> {
    let mut args = std::env::args().skip(1);
    let mut a = Args {
        smoke: true,
        csv: None,
        window: Duration::from_millis(500),
        reps: 1,
        only: None,
        tasks: None,
        permits: None,
        callgrind: false,
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bench" => a.smoke = false,
            "--csv" => a.csv = args.next(),
            "--window-ms" => {
                a.window =
                    Duration::from_millis(args.next().and_then(|v| v.parse().ok()).unwrap_or(500))
            }
            "--reps" => a.reps = args.next().and_then(|v| v.parse().ok()).unwrap_or(1),
            "--only" => a.only = args.next(),
            "--tasks" => a.tasks = args.next().and_then(|v| v.parse().ok()),
            "--permits" => a.permits = args.next().and_then(|v| v.parse().ok()),
            "--callgrind" => a.callgrind = true,
            "--case" => {
                let case = args.next().expect("case");
                let imp = args.next().expect("impl");
                let iters = args.next().and_then(|v| v.parse().ok()).expect("iters");
                run_case_by_name(&imp, &case, iters);
                return Err(());
            }
            _ => {}
        }
    }
    Ok(a)
}

pub fn main() {
    let Ok(args) = parse_args() else { return };
    if args.smoke {
        // `cargo test` builds this target unoptimised: check that every adapter works, fast.
        let rt = runtime();
        macro_rules! smoke {
            ($ty:ty, $rt:expr) => {{
                let r = run_window::<$ty>($rt, 4, 1, Duration::from_millis(5));
                assert_eq!(r.counts.len(), 4);
                for case in CASES {
                    run_case::<$ty>(case, 8);
                }
                let sem = <$ty as Sem>::with_permits(1);
                let g = sem.try_one();
                assert!(<$ty as Sem>::try_ok(&g));
                assert!(!<$ty as Sem>::try_ok(&sem.try_one()));
                drop(g);
            }};
        }
        for_each_impl!(smoke!(&rt));
        println!("fairness: smoke run ok (use `cargo bench --bench fairness` for the report)");
        return;
    }
    if args.callgrind {
        callgrind_report(args.csv.as_deref());
        return;
    }
    println!("# fairgate fairness report\n");
    println!("## Sizes (bytes, 64-bit)\n");
    println!(
        "| implementation | semaphore | acquire future | permit | owned future | owned permit |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for s in sizes() {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            s.name, s.sem, s.fut, s.permit, s.owned_fut, s.owned_permit
        );
    }

    // A single contended point was asked for (to profile it): skip the uncontended section so
    // a profile of this run shows only that point.
    let one_point = args.tasks.is_some() || args.permits.is_some();
    if !one_point {
        uncontended_report(args.csv.as_deref());
    }
    contended_report(&args);
}

fn uncontended_report(csv_path: Option<&str>) {
    println!(
        "\n## Uncontended, interleaved bursts of {} ops, ns/op: min (median) and min/floor-min\n",
        4_000
    );
    let unc = uncontended_interleaved();
    let names = impl_names();
    print!("| case |");
    for n in &names {
        print!(" {n} |");
    }
    println!();
    println!("|---|{}", "---:|".repeat(names.len()));
    let mut unc_csv = String::from("case,impl,min_ns,median_ns,min_ratio_to_floor\n");
    for case in ["acquire", "try_acquire", "acquire_many4", "owned"] {
        let floor = unc
            .iter()
            .find(|r| r.0 == case && r.1 == "floor")
            .map_or(f64::NAN, |r| r.2);
        print!("| {case} |");
        for n in &names {
            match unc.iter().find(|r| r.0 == case && r.1 == *n) {
                Some(r) => {
                    print!(" {:.1} ({:.1}) {:.2}x |", r.2, r.3, r.2 / floor);
                    unc_csv.push_str(&format!(
                        "{},{},{:.2},{:.2},{:.3}\n",
                        r.0,
                        r.1,
                        r.2,
                        r.3,
                        r.2 / floor
                    ));
                }
                None => print!(" n/a |"),
            }
        }
        println!();
    }
    if let Some(path) = csv_path {
        let path = path.replace(".csv", "-uncontended.csv");
        std::fs::write(&path, unc_csv).expect("write csv");
    }
}

fn contended_report(args: &Args) {
    let rt = runtime();
    let window = args.window;
    let mut csv = String::from(
        "rep,tasks,permits,impl,fair,ops,window_s,ops_per_s,ns_per_op,p50_ns,p99_ns,max_ns,jain,min_count\n",
    );
    println!(
        "\n## Contended: T tasks x P permits, 2 tokio workers, acquire -> yield_now -> release, window {} ms\n",
        window.as_millis()
    );
    println!("| rep | T | P | implementation | ops/s | ns/op | p50 wait | p99 wait | max wait | Jain | min count |");
    println!("|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for rep in 0..args.reps {
        for &t in TASKS.iter().filter(|&&t| args.tasks.is_none_or(|x| x == t)) {
            for &p in PERMITS
                .iter()
                .filter(|&&p| args.permits.is_none_or(|x| x == p))
            {
                macro_rules! row {
                    ($ty:ty, $rt:expr, $t:expr, $p:expr) => {{
                        let name = <$ty as Sem>::NAME;
                        // With `--only`, the floor runs too (for the ratio), except when a
                        // single point is being profiled.
                        if args.only.as_deref().is_none_or(|o| {
                            o == name
                                || (name == "floor"
                                    && args.tasks.is_none()
                                    && args.permits.is_none())
                        }) {
                            let r = run_window::<$ty>($rt, $t, $p, window);
                            let nsop = 1e9 / r.ops_per_sec();
                            println!(
                                "| {} | {} | {} | {} | {:.0} | {:.0} | {} | {} | {} | {:.4} | {} |",
                                rep,
                                $t,
                                $p,
                                name,
                                r.ops_per_sec(),
                                nsop,
                                fmt_ns(r.pct(0.5)),
                                fmt_ns(r.pct(0.99)),
                                fmt_ns(r.pct(1.0)),
                                r.jain(),
                                r.min_count()
                            );
                            csv.push_str(&format!(
                                "{},{},{},{},{},{},{:.4},{:.0},{:.1},{},{},{},{:.5},{}\n",
                                rep,
                                $t,
                                $p,
                                name,
                                <$ty as Sem>::FAIR,
                                r.ops(),
                                r.window.as_secs_f64(),
                                r.ops_per_sec(),
                                nsop,
                                r.pct(0.5),
                                r.pct(0.99),
                                r.pct(1.0),
                                r.jain(),
                                r.min_count()
                            ));
                        }
                    }};
                }
                for_each_impl!(row!(&rt, t, p));
            }
        }
    }

    if args.tasks.is_some() || args.permits.is_some() {
        return write_csv(args, &csv);
    }
    println!("\n## Handoff: two tasks ping-ponging one permit (acquire -> yield_now -> release)\n");
    println!("| runtime | implementation | ns per acquisition | owner switches / acquisitions |");
    println!("|---|---|---:|---:|");
    let st = current_thread_runtime();
    let per_task = 50_000;
    for (label, r) in [("current-thread", &st), ("multi-thread(2)", &rt)] {
        macro_rules! pp {
            ($ty:ty, $r:expr, $label:expr) => {{
                let sem = Arc::new(<$ty as Sem>::with_permits(1));
                let (d, sw) = run_pingpong($r, &sem, per_task);
                let n = 2 * per_task;
                println!(
                    "| {} | {} | {:.0} | {:.3} |",
                    $label,
                    <$ty as Sem>::NAME,
                    d.as_nanos() as f64 / n as f64,
                    sw as f64 / n as f64
                );
            }};
        }
        for_each_impl!(pp!(r, label));
    }

    write_csv(args, &csv);
}

fn write_csv(args: &Args, csv: &str) {
    if let Some(path) = &args.csv {
        std::fs::write(path, csv).expect("write csv");
        println!("\nwrote {path}");
    }
}
