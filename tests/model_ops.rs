//! Reference-model tests: the semaphore against a sequential model of a fair FIFO semaphore
//! with direct handoff, driven by the operation language in `tests/common/ops/` (shared with
//! the cargo-fuzz targets in `fuzz/`).
//!
//! * `op_sequences`: proptest over generated `Vec<Op>` (shrinks to a short, readable sequence);
//! * `ops_bytes` / `owned_bytes`: proptest over raw bytes, exactly what the fuzz targets see;
//! * `replay_corpus`: every file in `tests/regressions/{ops,owned}/` (committed) and, when
//!   present, `fuzz/corpus/{ops,owned}/` and `fuzz/artifacts/{ops,owned}/`;
//! * a few fixed scenarios that must always be exercised, whatever the random inputs do.
#![cfg(not(loom))]

#[path = "common/ops/mod.rs"]
mod ops;

use std::path::Path;

use ops::{Config, Op};
use proptest::prelude::*;

fn cases() -> u32 {
    // Miri is ~1000x slower; cargo-miri pins env vars at build time, so decide here.
    if cfg!(miri) {
        8
    } else {
        256
    }
}

/// Longest generated sequence (ops or bytes); shorter under Miri to keep CI time bounded.
fn max_len(native: usize) -> usize {
    if cfg!(miri) {
        native / 3
    } else {
        native
    }
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        // Counterexamples are recorded by hand in tests/regressions/ instead.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn op() -> impl Strategy<Value = Op> {
    let b = any::<u8>;
    prop_oneof![
        6 => b().prop_map(Op::Acquire),
        3 => b().prop_map(Op::AcquireOwned),
        2 => b().prop_map(Op::PollSem),
        6 => b().prop_map(Op::Poll),
        2 => b().prop_map(Op::PollOther),
        1 => (b(), b()).prop_map(|(i, n)| Op::PollSemWith(i, n)),
        3 => b().prop_map(Op::DropFuture),
        4 => b().prop_map(Op::DropPermit),
        1 => b().prop_map(Op::ForgetPermit),
        1 => (b(), b()).prop_map(|(j, k)| Op::SplitPermit(j, k)),
        1 => (b(), b()).prop_map(|(j, k)| Op::MergePermits(j, k)),
        2 => b().prop_map(Op::TryAcquire),
        1 => b().prop_map(Op::TryAcquireOwned),
        3 => b().prop_map(Op::AddPermits),
        1 => b().prop_map(Op::ForgetPermits),
        1 => Just(Op::Close),
    ]
}

fn cfg() -> impl Strategy<Value = Config> {
    (0u8..8, any::<bool>()).prop_map(|(initial, permits_first)| Config {
        initial,
        permits_first,
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn op_sequences(cfg in cfg(), ops in proptest::collection::vec(op(), 0..max_len(160))) {
        ops::run(cfg, &ops);
    }

    #[test]
    fn ops_bytes(data in proptest::collection::vec(any::<u8>(), 0..max_len(400))) {
        ops::run_bytes(&data);
    }

    #[test]
    fn owned_bytes(data in proptest::collection::vec(any::<u8>(), 0..max_len(400))) {
        ops::run_owned_bytes(&data);
    }
}

/// Replays every file of one corpus directory through `run`; returns how many ran.
fn replay_dir(dir: &Path, run: fn(&[u8])) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    if cfg!(miri) {
        // Miri runs ~1000x slower: two of the shorter inputs only (the whole corpus runs
        // natively and under the fuzzer).
        files.retain(|p| std::fs::metadata(p).is_ok_and(|m| m.len() <= 120));
        files.truncate(2);
    }
    let mut ran = 0;
    for path in &files {
        // A running fuzzer may replace corpus files while we read the directory.
        let Ok(data) = std::fs::read(path) else {
            continue;
        };
        ran += 1;
        let name = path.display().to_string();
        if let Err(e) = std::panic::catch_unwind(|| run(&data)) {
            let msg = e
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| e.downcast_ref::<&str>().copied())
                .unwrap_or("(non-string panic)");
            panic!("corpus file {name} failed:\n{msg}");
        }
    }
    ran
}

#[test]
fn replay_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut committed = 0;
    for (target, run) in [
        ("ops", ops::run_bytes as fn(&[u8])),
        ("owned", ops::run_owned_bytes),
    ] {
        committed += replay_dir(&root.join("tests/regressions").join(target), run);
        if !cfg!(miri) {
            // Local fuzzing corpora (git-ignored); committed seeds are enough under Miri.
            replay_dir(&root.join("fuzz/corpus").join(target), run);
        }
        replay_dir(&root.join("fuzz/artifacts").join(target), run);
    }
    assert!(
        committed > 0,
        "the committed corpus in tests/regressions/ is missing"
    );
}

// ---- fixed scenarios: paths the random drivers must never silently stop covering ----------

fn cfg_with(initial: u8) -> Config {
    Config {
        initial,
        permits_first: false,
    }
}

#[test]
fn head_of_line_partial_then_cancel_passes_permits_on() {
    use Op::*;
    // 2 free; a request for 9 (amount 6) takes both partially; a request for 1 waits behind it;
    // cancelling the head hands the 2 partial permits to the next waiter.
    ops::run(
        cfg_with(2),
        &[
            Acquire(6),
            Acquire(1),
            TryAcquire(1),
            Poll(1),
            DropFuture(0),
            Poll(0),
        ],
    );
}

#[test]
fn granted_unpolled_cancel_and_repoll_with_new_waker() {
    use Op::*;
    ops::run(
        cfg_with(1),
        &[
            TryAcquire(1),
            Acquire(1),
            PollOther(0),
            Acquire(2),
            DropPermit(0),
            DropFuture(0),
            Poll(0),
        ],
    );
}

#[test]
fn more_waiters_than_a_wake_batch_then_close() {
    use Op::*;
    let mut seq = vec![TryAcquire(0)];
    seq.extend(std::iter::repeat_n(Acquire(1), 20));
    seq.push(AddPermits(6));
    seq.push(AddPermits(6));
    seq.push(AddPermits(6));
    seq.extend(std::iter::repeat_n(Acquire(2), 20));
    seq.push(Close);
    seq.push(Acquire(1));
    ops::run(cfg_with(0), &seq);
}

#[test]
fn one_grant_pass_wakes_more_than_a_wake_batch() {
    use Op::*;
    // 20 queued waiters, then MAX_PERMITS at once: one release resolves more waiters than a
    // wake batch holds (16), so the holder must exit, wake, and take the role again.
    let mut seq = vec![];
    seq.extend(std::iter::repeat_n(Acquire(1), 20));
    seq.push(DropFuture(3));
    seq.push(AddPermits(7));
    seq.extend((0..20).map(Poll));
    ops::run(cfg_with(0), &seq);
}

#[test]
fn owned_and_poll_semaphore_mix() {
    use Op::*;
    ops::run(
        Config {
            initial: 1,
            permits_first: true,
        },
        &[
            AcquireOwned(1),
            PollSem(1),
            PollSemWith(1, 2),
            TryAcquireOwned(0),
            DropPermit(0),
            Poll(1),
            PollSemWith(1, 2),
            AddPermits(3),
            Poll(1),
            SplitPermit(0, 1),
            MergePermits(0, 1),
            ForgetPermit(0),
            ForgetPermits(7),
            AddPermits(7),
        ],
    );
}
