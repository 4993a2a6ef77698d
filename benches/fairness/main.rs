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
//! Files: `cli.rs` (arguments), `cases.rs` (single-thread cases), `callgrind.rs`, `report.rs`
//! (markdown and CSV). The implementations compared and the contended runner are in
//! `benches/common/`, shared with `benches/semaphore.rs`.

use std::time::Duration;

// Each bench uses part of the shared code (this one never runs `run_fixed`).
#[allow(dead_code)]
#[path = "../common/mod.rs"]
mod common;

mod callgrind;
mod cases;
mod cli;
mod report;

use common::runner::{run_window, runtime};
use common::{for_each_impl, Sem};

fn main() {
    let Ok(args) = cli::parse_args() else { return };
    if args.smoke {
        // `cargo test` builds this target unoptimised: check that every adapter works, fast.
        let rt = runtime();
        macro_rules! smoke {
            ($ty:ty, $rt:expr) => {{
                let r = run_window::<$ty>($rt, 4, 1, Duration::from_millis(5));
                assert_eq!(r.counts.len(), 4);
                for case in cases::CASES {
                    cases::run_case::<$ty>(case, 8);
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
        callgrind::callgrind_report(args.csv.as_deref());
        return;
    }
    report::sizes_report();

    // A single contended point was asked for (to profile it): skip the uncontended section so
    // a profile of this run shows only that point.
    let one_point = args.tasks.is_some() || args.permits.is_some();
    if !one_point {
        report::uncontended_report(args.csv.as_deref());
    }
    report::contended_report(&args);
}
