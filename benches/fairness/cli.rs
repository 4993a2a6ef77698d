//! Command-line arguments (after `--` of `cargo bench --bench fairness`).

use std::time::Duration;

use crate::cases::run_case_by_name;

/// What to run and where to write it.
pub struct Args {
    /// Not run by `cargo bench` (e.g. `cargo test --all-targets`): a tiny smoke run only.
    pub smoke: bool,
    pub csv: Option<String>,
    pub window: Duration,
    pub reps: usize,
    pub only: Option<String>,
    pub tasks: Option<usize>,
    pub permits: Option<usize>,
    pub callgrind: bool,
}

/// Parses `std::env::args()`. `--case` runs that case at once and returns `Err(())`: nothing
/// else is to be done.
pub fn parse_args() -> Result<Args, ()> {
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
