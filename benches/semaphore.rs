//! Criterion benches (issue 4): fairgate next to tokio, maitake-sync, futures-intrusive (fair)
//! and async-lock (unfair), with a floor case (one CAS acquire + one `fetch_add` release on a
//! bare `AtomicUsize`) in every group.
//!
//! `cargo bench --bench semaphore` (filter with `-- uncontended`, `-- contended`, `-- handoff`).
//! The implementations compared and the contended runner live in `benches/common/`, shared with
//! the fairness report (`benches/fairness/`).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkGroup, Criterion, Throughput};

// Each bench uses part of the shared code (this one never runs the fixed-window report).
#[allow(dead_code)]
#[path = "common/mod.rs"]
mod common;

use common::runner;
use common::{for_each_impl, poll_once, Sem};

type Group<'a> = BenchmarkGroup<'a, criterion::measurement::WallTime>;

fn uncontended(c: &mut Criterion) {
    fn configure<'a>(c: &'a mut Criterion, name: &str) -> Group<'a> {
        let mut g = c.benchmark_group(name);
        g.warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
            .sample_size(50);
        g
    }

    let mut g = configure(c, "uncontended/acquire");
    macro_rules! acquire {
        ($t:ty, $g:expr) => {
            $g.bench_function(<$t as Sem>::NAME, |b| {
                let sem = <$t as Sem>::with_permits(8);
                b.iter(|| drop(poll_once(black_box(&sem).acquire_one())))
            });
        };
    }
    for_each_impl!(acquire!(g));
    g.finish();

    let mut g = configure(c, "uncontended/try_acquire");
    macro_rules! try_acquire {
        ($t:ty, $g:expr) => {
            $g.bench_function(<$t as Sem>::NAME, |b| {
                let sem = <$t as Sem>::with_permits(8);
                b.iter(|| drop(black_box(&sem).try_one()))
            });
        };
    }
    for_each_impl!(try_acquire!(g));
    g.finish();

    let mut g = configure(c, "uncontended/acquire_many4");
    macro_rules! acquire_many {
        ($t:ty, $g:expr) => {
            if <$t as Sem>::HAS_MANY {
                $g.bench_function(<$t as Sem>::NAME, |b| {
                    let sem = <$t as Sem>::with_permits(8);
                    b.iter(|| drop(poll_once(black_box(&sem).acquire_n(4))))
                });
            }
        };
    }
    for_each_impl!(acquire_many!(g));
    g.finish();

    let mut g = configure(c, "uncontended/owned");
    macro_rules! owned {
        ($t:ty, $g:expr) => {
            $g.bench_function(<$t as Sem>::NAME, |b| {
                let sem = <$t as Sem>::owned_with_permits(8);
                b.iter(|| drop(poll_once(<$t as Sem>::acquire_owned(black_box(&sem)))))
            });
        };
    }
    for_each_impl!(owned!(g));
    g.finish();
}

/// Acquisitions per task per measured round: about 16k acquisitions per round in total.
fn per_task(tasks: usize) -> usize {
    (16_384 / tasks).max(16)
}

fn contended(c: &mut Criterion) {
    let rt = runner::runtime();
    for &t in &runner::TASKS {
        for &p in &runner::PERMITS {
            let mut g = c.benchmark_group(format!("contended/T{t}_P{p}"));
            g.warm_up_time(Duration::from_millis(300))
                .measurement_time(Duration::from_secs(2))
                .sample_size(10)
                .throughput(Throughput::Elements((t * per_task(t)) as u64));
            macro_rules! case {
                ($ty:ty, $g:expr, $rt:expr, $t:expr, $p:expr) => {
                    $g.bench_function(<$ty as Sem>::NAME, |b| {
                        let sem = Arc::new(<$ty as Sem>::with_permits($p));
                        b.iter_custom(|iters| {
                            (0..iters)
                                .map(|_| runner::run_fixed($rt, &sem, $t, per_task($t)))
                                .sum()
                        })
                    });
                };
            }
            for_each_impl!(case!(g, &rt, t, p));
            g.finish();
        }
    }
}

fn handoff(c: &mut Criterion) {
    const PER_TASK: usize = 2_000;
    let st = runner::current_thread_runtime();
    let mt = runner::runtime();
    for (label, rt) in [
        ("handoff/current_thread", &st),
        ("handoff/multi_thread", &mt),
    ] {
        let mut g = c.benchmark_group(label);
        g.warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(2))
            .sample_size(20)
            .throughput(Throughput::Elements(2 * PER_TASK as u64));
        macro_rules! case {
            ($ty:ty, $g:expr, $rt:expr) => {
                $g.bench_function(<$ty as Sem>::NAME, |b| {
                    let sem = Arc::new(<$ty as Sem>::with_permits(1));
                    b.iter_custom(|iters| {
                        (0..iters)
                            .map(|_| runner::run_pingpong($rt, &sem, PER_TASK).0)
                            .sum()
                    })
                });
            };
        }
        for_each_impl!(case!(g, rt));
        g.finish();
    }
}

fn main() {
    println!("sizes (bytes): implementation, semaphore, acquire future, permit, owned future, owned permit");
    for s in common::sizes() {
        println!(
            "  {:<24} {:>4} {:>4} {:>4} {:>4} {:>4}",
            s.name, s.sem, s.fut, s.permit, s.owned_fut, s.owned_permit
        );
    }
    let mut c = Criterion::default().configure_from_args();
    uncontended(&mut c);
    contended(&mut c);
    handoff(&mut c);
    c.final_summary();
}
