//! One operation language over the semaphore, a sequential reference model of a fair FIFO
//! semaphore with direct handoff (DESIGN.md §4), and an interpreter that runs a sequence of
//! operations on one thread with manual polling and counting wakers, checking the real
//! semaphore against the model after every step.
//!
//! Shared by `tests/model_ops.rs` (proptest + corpus replay, stable) and by the cargo-fuzz
//! targets in `fuzz/` (`#[path = "../../tests/common/ops/mod.rs"] mod ops;`), so it depends on
//! nothing but `fairgate` and `std` (plus `arbitrary` when built by cargo-fuzz).
//!
//! Checked after every step:
//! * the observable state equals the model: `total_permits`, `available_permits`, `waiters`,
//!   `is_closed`, the size of every permit token, every poll result and every return value;
//! * conservation: free + held + assigned-to-waiters (partial and granted-not-yet-polled)
//!   == initial + added − forgotten;
//! * no barging: while the model has a queue, `try_acquire` fails;
//! * wakes: every waiter the model resolves (granted or closed out) by another operation has
//!   its *current* waker woken exactly once, in FIFO order; no other waker (stale ones
//!   included) is ever woken (no lost and no spurious wake-ups);
//! * close: the queue is empty afterwards and every queued waiter was woken.
//!
//! At the end everything is dropped (futures and permits, in an order chosen by the input) and
//! every permit must be back: `available_permits() == total_permits()`, no waiter left.
//!
//! Layout (one job per file):
//! * this file: the operation language ([`Op`], [`Config`]), byte decoding and the entry points;
//! * `model.rs`: the sequential reference model ([`Model`]);
//! * `interp.rs`: the interpreter ([`Interp`], [`run`]) applying operations to the semaphore;
//! * `interp/check.rs`: the per-step comparison with the model and the final teardown.
#![allow(dead_code)]

mod interp;
mod model;

// The same public surface as before the split; not every includer names every item.
#[allow(unused_imports)]
pub use interp::{run, Count, Interp};
#[allow(unused_imports)]
pub use model::{MWaiter, Model, Resolved};

use fairgate::Semaphore;

const MAX_PERMITS: usize = Semaphore::MAX_PERMITS;

/// Upper bounds that keep every run small and bounded in time.
pub const MAX_OPS: usize = 512;
pub const MAX_FUTURES: usize = 40;
pub const MAX_PERMIT_TOKENS: usize = 48;

// ------------------------------------------------------------------------------------------
// The operation language
// ------------------------------------------------------------------------------------------

/// One operation. Arguments are raw bytes; indices are taken modulo the current number of
/// futures / permit tokens and amounts go through [`amount`] and friends, so every sequence is
/// valid. For the acquire-creating operations, bit 7 of the amount byte means "create only,
/// do not poll yet".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(fuzzing, derive(arbitrary::Arbitrary))]
pub enum Op {
    /// `sem.acquire_many(amount(n))`, then one poll unless bit 7 of `n` is set.
    Acquire(u8),
    /// `Arc::clone(&sem).acquire_many_owned(amount(n))`, then one poll unless bit 7 is set.
    AcquireOwned(u8),
    /// A new `PollSemaphore`, polled for `amount(n)` unless bit 7 is set.
    PollSem(u8),
    /// Poll future `i` with its current waker (a `PollSemaphore` asks for its current amount).
    Poll(u8),
    /// Poll future `i` with a brand-new waker; the old one must never be woken again.
    PollOther(u8),
    /// Poll future `i`; if it is a `PollSemaphore`, ask for `amount(n)` (a different amount
    /// restarts the request at the back of the queue).
    PollSemWith(u8, u8),
    /// Drop future `i` (cancel: leaves the queue, passes on permits it was handed).
    DropFuture(u8),
    /// Drop permit token `j` (release).
    DropPermit(u8),
    /// `forget()` permit token `j`.
    ForgetPermit(u8),
    /// `split(split_amount(k))` off permit token `j`.
    SplitPermit(u8, u8),
    /// Merge permit token `k` into token `j` (same kind only).
    MergePermits(u8, u8),
    /// `try_acquire_many(amount(n))`.
    TryAcquire(u8),
    /// `try_acquire_many_owned(amount(n))`.
    TryAcquireOwned(u8),
    /// `add_permits(add_amount(n))` (or `try_add_permits` when it must fail).
    AddPermits(u8),
    /// `forget_permits(forget_amount(n))`.
    ForgetPermits(u8),
    /// `close()`.
    Close,
}

/// Run configuration decoded from the first input byte.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(fuzzing, derive(arbitrary::Arbitrary))]
pub struct Config {
    /// Initial permits (taken modulo 8).
    pub initial: u8,
    /// Teardown drops permit tokens before futures (else futures first).
    pub permits_first: bool,
}

/// Amount for acquires: 0..=5, 9 (head-of-line blocking), or `MAX_PERMITS + 1` (too many).
pub fn amount(b: u8) -> usize {
    match b % 8 {
        6 => 9,
        7 => MAX_PERMITS + 1,
        x => x as usize,
    }
}

/// Amount for `add_permits`: 0..=6 or `MAX_PERMITS` (fails unless the total is 0).
pub fn add_amount(b: u8) -> usize {
    match b % 8 {
        7 => MAX_PERMITS,
        x => x as usize,
    }
}

/// Amount for `forget_permits`: 0..=6 or `usize::MAX` (everything free).
pub fn forget_amount(b: u8) -> usize {
    match b % 8 {
        7 => usize::MAX,
        x => x as usize,
    }
}

/// Amount for `Permit::split`: 0..=3.
pub fn split_amount(b: u8) -> usize {
    (b % 4) as usize
}

/// Decodes raw bytes into a configuration and an operation sequence; every input is valid.
/// With `owned == false` only borrowed-semaphore operations are produced (the `ops` target);
/// with `owned == true` owned futures/permits and `PollSemaphore` are mixed in.
pub fn decode(data: &[u8], owned: bool) -> (Config, Vec<Op>) {
    let (&first, rest) = data.split_first().unwrap_or((&0, &[]));
    let cfg = Config {
        initial: first % 8,
        permits_first: first & 0x80 != 0,
    };
    let mut it = rest.iter().copied();
    fn arg(it: &mut impl Iterator<Item = u8>) -> u8 {
        it.next().unwrap_or(0)
    }
    let mut ops = Vec::new();
    while let Some(b) = it.next() {
        if ops.len() >= MAX_OPS {
            break;
        }
        let op = match b % 32 {
            0..=4 => {
                let n = arg(&mut it);
                match (owned, b % 32) {
                    (true, 2 | 3) => Op::AcquireOwned(n),
                    (true, 4) => Op::PollSem(n),
                    _ => Op::Acquire(n),
                }
            }
            5..=9 => Op::Poll(arg(&mut it)),
            10..=11 => Op::PollOther(arg(&mut it)),
            12..=14 => Op::DropFuture(arg(&mut it)),
            15..=18 => Op::DropPermit(arg(&mut it)),
            19 => Op::ForgetPermit(arg(&mut it)),
            20 => Op::SplitPermit(arg(&mut it), arg(&mut it)),
            21 => Op::MergePermits(arg(&mut it), arg(&mut it)),
            22 => Op::TryAcquire(arg(&mut it)),
            23 if owned => Op::TryAcquireOwned(arg(&mut it)),
            23 => Op::TryAcquire(arg(&mut it)),
            24..=26 => Op::AddPermits(arg(&mut it)),
            27 => Op::ForgetPermits(arg(&mut it)),
            // Closing ends most of the interesting behaviour, so make it rarer.
            28 => match arg(&mut it) {
                a if a % 4 == 0 => Op::Close,
                a => Op::Poll(a),
            },
            29 if owned => Op::PollSemWith(arg(&mut it), arg(&mut it)),
            29 => Op::Acquire(arg(&mut it)),
            30 if owned => Op::AcquireOwned(arg(&mut it)),
            30 => Op::Poll(arg(&mut it)),
            31 if owned => Op::Poll(arg(&mut it)),
            _ => Op::DropPermit(arg(&mut it)),
        };
        ops.push(op);
    }
    (cfg, ops)
}

/// Entry point of the `ops` fuzz target and its stable twins.
pub fn run_bytes(data: &[u8]) {
    let (cfg, ops) = decode(data, false);
    run(cfg, &ops);
}

/// Entry point of the `owned` fuzz target and its stable twins.
pub fn run_owned_bytes(data: &[u8]) {
    let (cfg, ops) = decode(data, true);
    run(cfg, &ops);
}
