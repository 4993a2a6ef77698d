//! The single-thread cases (uncontended acquire, `try_acquire`, `acquire_many(4)`, owned, and
//! the two-task handoff on a current-thread runtime): run one by name (`--case`, used under
//! callgrind) or time them all in interleaved bursts (the uncontended report).

use std::sync::Arc;
use std::time::Instant;

use crate::common::runner::{current_thread_runtime, run_pingpong};
use crate::common::{for_each_impl, poll_once, Sem};

/// The single-thread cases, in report order.
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

/// [`run_case`] for the implementation named `imp` (its `Sem::NAME`).
pub fn run_case_by_name(imp: &str, case: &str, iters: usize) -> bool {
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

/// Every implementation's `Sem::NAME`, floor first.
pub fn impl_names() -> Vec<&'static str> {
    let mut v = Vec::new();
    macro_rules! name {
        ($t:ty, $v:expr) => {
            $v.push(<$t as Sem>::NAME)
        };
    }
    for_each_impl!(name!(v));
    v
}

/// Whether `imp` has `case` (async-lock has no multi-permit acquire).
pub fn run_supported(imp: &str, case: &str) -> bool {
    !(case == "acquire_many4" && imp == <async_lock::Semaphore as Sem>::NAME)
}

/// Uncontended cases timed in short interleaved bursts (every implementation once per round, 400
/// rounds), keeping the minimum and the median burst: on a shared, loaded machine the minimum
/// filters out preemption by other processes, and interleaving exposes every implementation to
/// the same load. Returns `(case, impl, min ns/op, median ns/op)`.
pub fn uncontended_interleaved() -> Vec<(&'static str, &'static str, f64, f64)> {
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
