//! The markdown report on stdout and the CSV files: sizes, uncontended (interleaved bursts),
//! contended (fixed windows, per repetition) and the two-task handoff.

use std::sync::Arc;

use crate::cases::{impl_names, uncontended_interleaved};
use crate::cli::Args;
use crate::common::runner::{
    current_thread_runtime, run_pingpong, run_window, runtime, PERMITS, TASKS,
};
use crate::common::{for_each_impl, sizes, Sem};

fn fmt_ns(ns: u64) -> String {
    if ns >= 1_000_000 {
        format!("{:.2} ms", ns as f64 / 1e6)
    } else if ns >= 1_000 {
        format!("{:.1} µs", ns as f64 / 1e3)
    } else {
        format!("{ns} ns")
    }
}

/// The report's title and the sizes table.
pub fn sizes_report() {
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
}

pub fn uncontended_report(csv_path: Option<&str>) {
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

pub fn contended_report(args: &Args) {
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
