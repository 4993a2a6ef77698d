//! Shuttle stress programs: larger than loom can explore exhaustively, run under shuttle's
//! randomized (`check_random`) and probabilistic-concurrency (`check_pct`) schedulers.
//!
//! Each execution spawns 3–5 shuttle threads; each runs a program of 10–16 operations chosen
//! with `shuttle::rand` (so a failing schedule replays deterministically): acquire n (awaited),
//! owned acquire, try_acquire n, poll an acquire once (optionally yield and poll again) and drop
//! it, drop a held permit, split / merge permits, forget a permit or forget free permits (each
//! paired with an `add_permits` that puts the total back), add permits, and, in about a third of
//! the executions, one `close`. At the end every thread must have finished (shuttle reports a
//! deadlock if a waiter is never woken: "no task stranded"), and once all permits are dropped
//! `available_permits() == total_permits() ==` the expected total (permits conserved), with no
//! waiter left. Closed semantics are checked throughout: after a thread has seen the semaphore
//! closed, every acquire and try_acquire it starts fails with `Closed`.
//!
//! The programs cannot deadlock on their own: a thread drops every permit it holds before it
//! awaits an acquire, and every request is at most the initial permit count, which the total
//! never drops below except transiently inside a forget / add pair run by one thread without
//! blocking. So any deadlock shuttle reports is a semaphore bug.
//!
//! Shuttle models every atomic as `SeqCst` and does not track `UnsafeCell` races: memory-order
//! bugs are loom's and miri's job. This layer finds logic races and lost wake-ups.
//!
//! Run: `RUSTFLAGS="--cfg shuttle" CARGO_TARGET_DIR=/work/target-shuttle cargo test --release
//! --test shuttle_stress` (or `.ci/shuttle.sh`). `SHUTTLE_ITERS_SCALE` multiplies the
//! iteration counts (default 1).
#![cfg(shuttle)]

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::task::Poll;

use fairgate::{AcquireError, OwnedPermit, Permit, Semaphore, TryAcquireError};
use shuttle::rand::{thread_rng, Rng};

/// What the programs actually did, summed over all executions of a test binary and printed by
/// each test (`--nocapture`), so a run shows the interesting paths were reached.
static STATS: [AtomicUsize; 6] = [const { AtomicUsize::new(0) }; 6];
const S_EXECUTIONS: usize = 0;
const S_CLOSED: usize = 1;
const S_ACQUIRE_WAITED: usize = 2;
const S_CANCELLED_PENDING: usize = 3;
const S_ACQUIRE_CLOSED: usize = 4;
const S_TRY_NO_PERMITS: usize = 5;

fn bump(i: usize) {
    STATS[i].fetch_add(1, SeqCst);
}

fn report(name: &str) {
    let s: Vec<usize> = STATS.iter().map(|a| a.load(SeqCst)).collect();
    println!(
        "{name}: executions {} (so far, all tests), closed {}, acquires that had to wait {}, \
         pending acquires dropped {}, acquires failed by close {}, try_acquire NoPermits {}",
        s[S_EXECUTIONS],
        s[S_CLOSED],
        s[S_ACQUIRE_WAITED],
        s[S_CANCELLED_PENDING],
        s[S_ACQUIRE_CLOSED],
        s[S_TRY_NO_PERMITS]
    );
}

/// Shared bookkeeping for one execution (plain std atomics: not scheduling points).
struct Shared {
    sem: Arc<Semaphore>,
    /// The smallest total the semaphore ever settles at; every request is at most this.
    initial: usize,
    /// Permits added (unpaired `add_permits`) during the execution.
    added: AtomicUsize,
    /// Tasks that reached the end of their program.
    finished: AtomicUsize,
    /// Whether some task called `close` (set before the call returns).
    closed: AtomicUsize,
}

#[derive(Clone, Copy)]
struct Shape {
    min_tasks: usize,
    max_tasks: usize,
    min_ops: usize,
    max_ops: usize,
}

fn scale() -> usize {
    std::env::var("SHUTTLE_ITERS_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

/// One shuttle execution: choose the program shape, run the tasks, check the end state.
fn execution(shape: Shape) {
    let mut rng = thread_rng();
    let initial = rng.gen_range(1..=3);
    let tasks = rng.gen_range(shape.min_tasks..=shape.max_tasks);
    // In about a third of the executions one task closes the semaphore at a random step in the
    // second half of its program.
    let closer = if rng.gen_bool(0.35) {
        Some((
            rng.gen_range(0..tasks),
            rng.gen_range(shape.min_ops / 2..shape.min_ops),
        ))
    } else {
        None
    };
    let shared = Arc::new(Shared {
        sem: Arc::new(Semaphore::new(initial)),
        initial,
        added: AtomicUsize::new(0),
        finished: AtomicUsize::new(0),
        closed: AtomicUsize::new(0),
    });

    let handles: Vec<_> = (0..tasks)
        .map(|id| {
            let shared = shared.clone();
            let ops = rng.gen_range(shape.min_ops..=shape.max_ops);
            let close_at = closer.and_then(|(t, at)| (t == id).then_some(at));
            shuttle::thread::spawn(move || {
                shuttle::future::block_on(task(&shared, ops, close_at));
                shared.finished.fetch_add(1, SeqCst);
            })
        })
        .collect();
    for h in handles {
        h.join().expect("a task panicked");
    }

    // No task stranded: every program ran to its end.
    assert_eq!(shared.finished.load(SeqCst), tasks);
    // Permits conserved: everything is dropped, so every permit is free again.
    let sem = &shared.sem;
    let expected = shared.initial + shared.added.load(SeqCst);
    assert_eq!(sem.total_permits(), expected, "total permits drifted");
    assert_eq!(
        sem.available_permits(),
        expected,
        "permits lost or duplicated: {sem:?}"
    );
    assert_eq!(sem.waiters(), 0, "a waiter is still queued: {sem:?}");
    // Closed semantics at the end.
    let closed = shared.closed.load(SeqCst) != 0;
    assert_eq!(sem.is_closed(), closed);
    bump(S_EXECUTIONS);
    if closed {
        bump(S_CLOSED);
    }
    if closed {
        assert_eq!(sem.try_acquire().unwrap_err(), TryAcquireError::Closed);
        let r = shuttle::future::block_on(sem.acquire());
        assert_eq!(r.unwrap_err(), AcquireError::Closed);
    } else {
        let all = sem
            .try_acquire_many(expected)
            .expect("all permits free at the end");
        assert_eq!(all.num_permits(), expected);
    }
}

/// Awaits `fut`, counting it if its first poll was pending.
async fn waited<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let mut first = true;
    poll_fn(|cx| {
        let r = fut.as_mut().poll(cx);
        if first && r.is_pending() {
            bump(S_ACQUIRE_WAITED);
        }
        first = false;
        r
    })
    .await
}

async fn task(shared: &Shared, ops: usize, close_at: Option<usize>) {
    let sem = &*shared.sem;
    let mut rng = thread_rng();
    let mut held: Vec<Permit<'_>> = Vec::new();
    let mut owned: Vec<OwnedPermit> = Vec::new();
    // Set once this task has seen (or caused) the close: from then on every acquire must fail.
    let mut seen_closed = false;

    for step in 0..ops {
        if close_at == Some(step) {
            shared.closed.store(1, SeqCst);
            sem.close();
            seen_closed = true;
            assert!(sem.is_closed());
            continue;
        }
        if sem.is_closed() {
            seen_closed = true;
        }
        let n = rng.gen_range(1..=shared.initial);
        match rng.gen_range(0..11) {
            // Await an acquire of n. Drop everything first: a waiter never holds permits.
            0 | 1 => {
                held.clear();
                owned.clear();
                match waited(sem.acquire_many(n)).await {
                    Ok(p) => {
                        assert!(!seen_closed, "acquire succeeded after close was seen");
                        assert_eq!(p.num_permits(), n);
                        held.push(p);
                    }
                    Err(AcquireError::Closed) => {
                        assert!(sem.is_closed());
                        seen_closed = true;
                        bump(S_ACQUIRE_CLOSED);
                    }
                    Err(e) => panic!("unexpected acquire error {e:?}"),
                }
            }
            // Owned acquire (Arc), awaited.
            2 => {
                held.clear();
                owned.clear();
                match waited(shared.sem.clone().acquire_many_owned(n)).await {
                    Ok(p) => {
                        assert!(!seen_closed, "owned acquire succeeded after close was seen");
                        assert_eq!(p.num_permits(), n);
                        owned.push(p);
                    }
                    Err(AcquireError::Closed) => {
                        assert!(sem.is_closed());
                        seen_closed = true;
                        bump(S_ACQUIRE_CLOSED);
                    }
                    Err(e) => panic!("unexpected acquire error {e:?}"),
                }
            }
            // try_acquire n: never waits.
            3 => match sem.try_acquire_many(n) {
                Ok(p) => {
                    assert!(!seen_closed, "try_acquire succeeded after close was seen");
                    assert_eq!(p.num_permits(), n);
                    held.push(p);
                }
                Err(TryAcquireError::Closed) => {
                    assert!(sem.is_closed());
                    seen_closed = true;
                }
                Err(TryAcquireError::NoPermits) => bump(S_TRY_NO_PERMITS),
                Err(e) => panic!("unexpected try_acquire error {e:?}"),
            },
            // Poll an acquire once (sometimes yield and poll again), then drop it: cancels a
            // queued waiter, possibly after permits were assigned to it.
            4 | 5 => {
                let twice = rng.gen_bool(0.5);
                let mut fut = pin!(sem.acquire_many(n));
                let mut polls = 0;
                let first = poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
                polls += 1;
                let result = match first {
                    Poll::Pending if twice => {
                        shuttle::thread::yield_now();
                        polls += 1;
                        poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await
                    }
                    other => other,
                };
                match result {
                    Poll::Ready(Ok(p)) => {
                        assert!(!seen_closed, "acquire succeeded after close was seen");
                        assert_eq!(p.num_permits(), n);
                        // Keep it or drop it right away.
                        if rng.gen_bool(0.5) {
                            held.push(p);
                        }
                    }
                    Poll::Ready(Err(AcquireError::Closed)) => {
                        assert!(sem.is_closed());
                        seen_closed = true;
                    }
                    Poll::Ready(Err(e)) => panic!("unexpected acquire error {e:?}"),
                    Poll::Pending => {
                        assert!(polls >= 1);
                        bump(S_CANCELLED_PENDING);
                    }
                }
                // `fut` is dropped here if still pending (end of scope).
            }
            // Drop a held permit.
            6 => {
                if !held.is_empty() {
                    let i = rng.gen_range(0..held.len());
                    drop(held.swap_remove(i));
                } else if !owned.is_empty() {
                    drop(owned.pop());
                }
            }
            // Split, then merge back or keep both parts.
            7 => {
                if let Some(i) = held.iter().position(|p| p.num_permits() >= 2) {
                    let before = held[i].num_permits();
                    assert!(held[i].split(before + 1).is_none());
                    let part = held[i].split(1).expect("split of 1 from ≥ 2");
                    assert_eq!(held[i].num_permits() + part.num_permits(), before);
                    if rng.gen_bool(0.5) {
                        held[i].merge(part);
                        assert_eq!(held[i].num_permits(), before);
                    } else {
                        held.push(part);
                    }
                } else if held.len() >= 2 {
                    let other = held.pop().unwrap();
                    held[0].merge(other);
                } else if let Some(p) = owned.last_mut() {
                    if let Some(part) = p.split(1) {
                        p.merge(part);
                    }
                }
            }
            // Forget a held permit, then put the same number back with add_permits.
            8 => {
                if let Some(p) = held.pop() {
                    let k = p.num_permits();
                    p.forget();
                    shuttle::thread::yield_now();
                    sem.add_permits(k);
                }
            }
            // Forget free permits, then add them back.
            9 => {
                let taken = sem.forget_permits(n);
                assert!(taken <= n);
                shuttle::thread::yield_now();
                sem.add_permits(taken);
            }
            // Add a permit for good.
            _ => {
                if rng.gen_bool(0.3) {
                    shared.added.fetch_add(1, SeqCst);
                    sem.add_permits(1);
                }
            }
        }
    }
    held.clear();
    owned.clear();
}

const SMALL: Shape = Shape {
    min_tasks: 3,
    max_tasks: 3,
    min_ops: 10,
    max_ops: 14,
};

const LARGE: Shape = Shape {
    min_tasks: 4,
    max_tasks: 5,
    min_ops: 12,
    max_ops: 16,
};

#[test]
fn random_3_tasks() {
    shuttle::check_random(|| execution(SMALL), 150_000 * scale());
    report("random_3_tasks");
}

#[test]
fn random_4_to_5_tasks() {
    shuttle::check_random(|| execution(LARGE), 75_000 * scale());
    report("random_4_to_5_tasks");
}

#[test]
fn pct_3_tasks() {
    shuttle::check_pct(|| execution(SMALL), 150_000 * scale(), 3);
    report("pct_3_tasks");
}

#[test]
fn pct_4_to_5_tasks() {
    shuttle::check_pct(|| execution(LARGE), 75_000 * scale(), 3);
    report("pct_4_to_5_tasks");
}
