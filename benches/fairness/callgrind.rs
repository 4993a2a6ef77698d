//! `--callgrind`: instructions per operation of the single-thread cases, from this binary run
//! under `valgrind --tool=callgrind` in `--case` mode at two iteration counts (the difference
//! cancels start-up). Load-independent, unlike wall-clock time.

use crate::cases::{impl_names, run_supported, CASES};

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

pub fn callgrind_report(csv: Option<&str>) {
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
