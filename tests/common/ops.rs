//! One operation language over the semaphore, a sequential reference model of a fair FIFO
//! semaphore with direct handoff (DESIGN.md §4), and an interpreter that runs a sequence of
//! operations on one thread with manual polling and counting wakers, checking the real
//! semaphore against the model after every step.
//!
//! Shared by `tests/model_ops.rs` (proptest + corpus replay, stable) and by the cargo-fuzz
//! targets in `fuzz/` (`#[path = "../../tests/common/ops.rs"] mod ops;`), so it depends on
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
#![allow(dead_code)]

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use fairgate::{
    Acquire, AcquireError, AcquireOwned, OwnedPermit, Permit, PollSemaphore, Semaphore,
    TryAcquireError,
};

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

// ------------------------------------------------------------------------------------------
// The reference model
// ------------------------------------------------------------------------------------------

/// A queued waiter in the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MWaiter {
    pub id: u64,
    pub requested: usize,
    /// Permits partially assigned while at the head (head-of-line).
    pub assigned: usize,
}

/// How a waiter left the queue, before its owner polled it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolved {
    /// All requested permits were handed over; the owner's next poll returns them.
    Granted(usize),
    /// The semaphore closed; the owner's next poll returns `Err(Closed)`.
    ClosedOut,
}

/// Sequential reference model of a strictly fair FIFO semaphore with direct handoff and
/// head-of-line partial assignment. Every operation is atomic here; waiters are ids.
#[derive(Clone, Debug, Default)]
pub struct Model {
    /// Free permits; always 0 while the queue is non-empty (they would have gone to the head).
    pub free: usize,
    /// Permits in existence.
    pub total: usize,
    pub closed: bool,
    /// Permits held by live permit tokens.
    pub held: usize,
    /// The FIFO; only the head may have `assigned > 0`.
    pub queue: VecDeque<MWaiter>,
    /// Resolved waiters whose owner has not yet polled them.
    pub resolved: Vec<(u64, Resolved)>,
    /// Waiters resolved by someone other than their owner, in resolve order: each must be woken.
    pub wakes: Vec<u64>,
    /// Every grant in order (for diagnostics).
    pub grants: Vec<u64>,
}

impl Model {
    pub fn new(initial: usize) -> Self {
        Self {
            free: initial,
            total: initial,
            ..Self::default()
        }
    }

    /// What `available_permits()` must return: free permits, but 0 while anyone is queued.
    pub fn available(&self) -> usize {
        if self.queue.is_empty() {
            self.free
        } else {
            0
        }
    }

    /// Permits promised to waiters: partial assignments plus granted-but-not-polled.
    pub fn assigned(&self) -> usize {
        let partial: usize = self.queue.iter().map(|w| w.assigned).sum();
        let granted: usize = self
            .resolved
            .iter()
            .map(|(_, r)| match r {
                Resolved::Granted(n) => *n,
                Resolved::ClosedOut => 0,
            })
            .sum();
        partial + granted
    }

    /// The handoff pass: hand `pool` to the head of the queue (partially if it needs more), or
    /// close everyone out. `me` is the waiter whose own poll runs this pass (it needs no wake).
    fn pass(&mut self, mut pool: usize, me: Option<u64>) {
        if self.closed {
            for w in self.queue.drain(..) {
                pool += w.assigned;
                self.resolved.push((w.id, Resolved::ClosedOut));
                if Some(w.id) != me {
                    self.wakes.push(w.id);
                }
            }
        }
        while pool > 0 {
            let Some(head) = self.queue.front_mut() else {
                break;
            };
            let needed = head.requested - head.assigned;
            if pool < needed {
                head.assigned += pool;
                pool = 0;
            } else {
                pool -= needed;
                let w = self.queue.pop_front().expect("head exists");
                self.resolved.push((w.id, Resolved::Granted(w.requested)));
                self.grants.push(w.id);
                if Some(w.id) != me {
                    self.wakes.push(w.id);
                }
            }
        }
        if self.queue.is_empty() {
            self.free += pool;
        } else {
            assert_eq!(pool, 0, "model: pool left while the head could take it");
        }
    }

    /// Permits come back (a release, a refund, new permits): straight to the head if queued.
    fn give(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        if self.queue.is_empty() {
            self.free += n;
        } else {
            self.pass(n, None);
        }
    }

    fn take_resolved(&mut self, id: u64) -> Option<Resolved> {
        let pos = self.resolved.iter().position(|(i, _)| *i == id)?;
        Some(self.resolved.remove(pos).1)
    }

    /// The first poll of an acquire of `n` with waiter id `id`.
    pub fn first_poll(&mut self, id: u64, n: usize) -> Poll<Result<usize, AcquireError>> {
        if n > MAX_PERMITS {
            return Poll::Ready(Err(AcquireError::TooManyPermits { requested: n }));
        }
        if self.closed {
            return Poll::Ready(Err(AcquireError::Closed));
        }
        if n == 0 {
            return Poll::Ready(Ok(0));
        }
        if self.queue.is_empty() && self.free >= n {
            self.free -= n;
            self.held += n;
            return Poll::Ready(Ok(n));
        }
        // Queue: free permits (only possible with an empty queue) become deposits for the
        // new head; its own pass hands them over.
        let pool = core::mem::take(&mut self.free);
        self.queue.push_back(MWaiter {
            id,
            requested: n,
            assigned: 0,
        });
        self.pass(pool, Some(id));
        self.poll(id)
    }

    /// A later poll of waiter `id`.
    pub fn poll(&mut self, id: u64) -> Poll<Result<usize, AcquireError>> {
        match self.take_resolved(id) {
            Some(Resolved::Granted(n)) => {
                self.held += n;
                Poll::Ready(Ok(n))
            }
            Some(Resolved::ClosedOut) => Poll::Ready(Err(AcquireError::Closed)),
            None => {
                assert!(
                    self.queue.iter().any(|w| w.id == id),
                    "model: polled unknown waiter {id}"
                );
                Poll::Pending
            }
        }
    }

    /// The owner drops waiter `id` (a future that was polled and has not returned `Ready`).
    pub fn cancel(&mut self, id: u64) {
        if let Some(pos) = self.queue.iter().position(|w| w.id == id) {
            let w = self.queue.remove(pos).expect("position is valid");
            // Partial permits go to the next head; an emptied queue frees everything.
            self.pass(w.assigned, None);
            return;
        }
        match self.take_resolved(id) {
            // Woken but never polled: the permits were the owner's; they flow on.
            Some(Resolved::Granted(n)) => self.give(n),
            Some(Resolved::ClosedOut) => {}
            None => panic!("model: cancelled unknown waiter {id}"),
        }
    }

    pub fn try_acquire(&mut self, n: usize) -> Result<usize, TryAcquireError> {
        if n > MAX_PERMITS {
            return Err(TryAcquireError::TooManyPermits { requested: n });
        }
        if self.closed {
            return Err(TryAcquireError::Closed);
        }
        if n == 0 {
            return Ok(0);
        }
        if !self.queue.is_empty() || self.free < n {
            return Err(TryAcquireError::NoPermits);
        }
        self.free -= n;
        self.held += n;
        Ok(n)
    }

    /// A permit token of `n` is dropped.
    pub fn release(&mut self, n: usize) {
        self.held -= n;
        self.give(n);
    }

    /// A permit token of `n` is forgotten.
    pub fn forget_held(&mut self, n: usize) {
        self.held -= n;
        self.total -= n;
    }

    /// Returns whether the add succeeded (it fails, changing nothing, past `MAX_PERMITS`).
    pub fn add_permits(&mut self, n: usize) -> bool {
        if n > MAX_PERMITS - self.total {
            return false;
        }
        self.total += n;
        self.give(n);
        true
    }

    /// Removes up to `n` free permits; none while anyone is queued.
    pub fn forget_permits(&mut self, n: usize) -> usize {
        if !self.queue.is_empty() {
            return 0;
        }
        let take = n.min(self.free);
        self.free -= take;
        self.total -= take;
        take
    }

    pub fn close(&mut self) {
        self.closed = true;
        if !self.queue.is_empty() {
            self.pass(0, None);
        }
    }

    /// The model's own invariants.
    pub fn check(&self) {
        assert_eq!(
            self.free + self.held + self.assigned(),
            self.total,
            "model: conservation broken: {self:?}"
        );
        if !self.queue.is_empty() {
            assert_eq!(self.free, 0, "model: free permits while queued: {self:?}");
            assert!(!self.closed, "model: queue survives close: {self:?}");
        }
        for (k, w) in self.queue.iter().enumerate() {
            assert!(w.assigned < w.requested, "model: over-assigned {w:?}");
            assert!(k == 0 || w.assigned == 0, "model: non-head assigned {w:?}");
        }
    }
}

// ------------------------------------------------------------------------------------------
// Counting wakers
// ------------------------------------------------------------------------------------------

/// A waker that counts its wakes and stamps each with a global sequence number, so the order
/// of wakes within one step can be compared with the model's FIFO order.
pub struct Count {
    wakes: AtomicUsize,
    last: AtomicUsize,
    clock: Arc<AtomicUsize>,
    /// Set once the waker was replaced or its future dropped: any later wake is spurious.
    stale: std::sync::atomic::AtomicBool,
    /// Shared count of wakes of stale wakers (must stay 0).
    stale_wakes: Arc<AtomicUsize>,
}

impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.fetch_add(1, SeqCst);
        self.last.store(self.clock.fetch_add(1, SeqCst) + 1, SeqCst);
        if self.stale.load(SeqCst) {
            self.stale_wakes.fetch_add(1, SeqCst);
        }
    }
}

struct Tracked {
    count: Arc<Count>,
    waker: Waker,
    /// Wakes the model says this waker must have had.
    expect: usize,
}

impl Tracked {
    fn new(clock: &Arc<AtomicUsize>, stale_wakes: &Arc<AtomicUsize>) -> Self {
        let count = Arc::new(Count {
            wakes: AtomicUsize::new(0),
            last: AtomicUsize::new(0),
            clock: Arc::clone(clock),
            stale: std::sync::atomic::AtomicBool::new(false),
            stale_wakes: Arc::clone(stale_wakes),
        });
        let waker = Waker::from(Arc::clone(&count));
        Self {
            count,
            waker,
            expect: 0,
        }
    }

    fn wakes(&self) -> usize {
        self.count.wakes.load(SeqCst)
    }
}

// ------------------------------------------------------------------------------------------
// The interpreter
// ------------------------------------------------------------------------------------------

enum Fut<'a> {
    Borrowed(Pin<Box<Acquire<'a>>>),
    Owned(Pin<Box<AcquireOwned>>),
    PollSem(PollSemaphore),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Never polled (the model does not know it).
    Fresh,
    /// Polled, not yet `Ready`: the model knows it as `id` (queued or resolved).
    Live,
    /// Returned `Ready` (a `PollSemaphore` is idle and may start a new request).
    Finished,
}

struct Slot<'a> {
    fut: Fut<'a>,
    /// Model id of the current request.
    id: u64,
    /// Permits the current request asks for.
    req: usize,
    phase: Phase,
    waker: Tracked,
}

enum Token<'a> {
    Borrowed(Permit<'a>),
    Owned(OwnedPermit),
}

impl Token<'_> {
    fn num_permits(&self) -> usize {
        match self {
            Token::Borrowed(p) => p.num_permits(),
            Token::Owned(p) => p.num_permits(),
        }
    }
}

/// The interpreter state: the semaphore under test, the model, live futures and permit tokens.
pub struct Interp<'a> {
    sem: &'a Arc<Semaphore>,
    model: Model,
    slots: Vec<Slot<'a>>,
    /// Permit tokens with the size the model expects.
    tokens: Vec<(Token<'a>, usize)>,
    /// Wakes of replaced or dropped wakers (must stay 0).
    stale_wakes: Arc<AtomicUsize>,
    clock: Arc<AtomicUsize>,
    next_id: u64,
    step: usize,
    trace: String,
}

/// Runs `ops` against a fresh semaphore with `cfg.initial % 8` permits, checking everything
/// listed in the module docs. Panics with the step, the operation and a trace on a mismatch.
pub fn run(cfg: Config, ops: &[Op]) {
    let sem = Arc::new(Semaphore::new(usize::from(cfg.initial % 8)));
    let mut it = Interp::new(&sem, usize::from(cfg.initial % 8));
    it.check();
    for op in ops.iter().take(MAX_OPS) {
        it.apply(*op);
        it.check();
    }
    it.teardown(cfg.permits_first);
    drop(it);
    assert_eq!(
        Arc::strong_count(&sem),
        1,
        "a future or permit kept the semaphore"
    );
}

macro_rules! fail {
    ($it:expr, $($arg:tt)*) => {
        panic!(
            "step {}: {}\n--- model: {:?}\n--- trace:\n{}",
            $it.step,
            format!($($arg)*),
            $it.model,
            $it.trace
        )
    };
}

impl<'a> Interp<'a> {
    fn new(sem: &'a Arc<Semaphore>, initial: usize) -> Self {
        Self {
            sem,
            model: Model::new(initial),
            slots: Vec::new(),
            tokens: Vec::new(),
            stale_wakes: Arc::new(AtomicUsize::new(0)),
            clock: Arc::new(AtomicUsize::new(0)),
            next_id: 0,
            step: 0,
            trace: String::new(),
        }
    }

    fn log(&mut self, what: core::fmt::Arguments<'_>) {
        // The fuzzer runs millions of sequences and Miri is ~1000x slower: skip the trace
        // there (replay a failing input natively through `tests/model_ops.rs` to get it).
        if cfg!(fuzzing) || cfg!(miri) {
            return;
        }
        // Keep the trace bounded: the last ~64 steps are what matter for a failure.
        if self.trace.len() > 16 * 1024 {
            let cut = self.trace.len() - 8 * 1024;
            let cut = (cut..self.trace.len())
                .find(|&i| self.trace.is_char_boundary(i))
                .unwrap_or(self.trace.len());
            self.trace.replace_range(..cut, "…");
        }
        let _ = writeln!(self.trace, "{:4}: {}", self.step, what);
    }

    fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub fn apply(&mut self, op: Op) {
        self.step += 1;
        self.log(format_args!("{op:?}"));
        match op {
            Op::Acquire(n) => {
                if self.slots.len() < MAX_FUTURES {
                    let req = amount(n);
                    let sem: &'a Semaphore = self.sem;
                    let fut = Fut::Borrowed(Box::pin(sem.acquire_many(req)));
                    self.new_slot(fut, req, n & 0x80 == 0);
                }
            }
            Op::AcquireOwned(n) => {
                if self.slots.len() < MAX_FUTURES {
                    let req = amount(n);
                    let fut = Fut::Owned(Box::pin(Arc::clone(self.sem).acquire_many_owned(req)));
                    self.new_slot(fut, req, n & 0x80 == 0);
                }
            }
            Op::PollSem(n) => {
                if self.slots.len() < MAX_FUTURES {
                    let fut = Fut::PollSem(PollSemaphore::new(Arc::clone(self.sem)));
                    self.new_slot(fut, amount(n), n & 0x80 == 0);
                }
            }
            Op::Poll(i) => {
                if let Some(i) = self.index(i) {
                    self.poll_slot(i, false, None);
                }
            }
            Op::PollOther(i) => {
                if let Some(i) = self.index(i) {
                    self.poll_slot(i, true, None);
                }
            }
            Op::PollSemWith(i, n) => {
                if let Some(i) = self.index(i) {
                    self.poll_slot(i, false, Some(amount(n)));
                }
            }
            Op::DropFuture(i) => {
                if let Some(i) = self.index(i) {
                    self.drop_slot(i);
                }
            }
            Op::DropPermit(j) => {
                if let Some(j) = self.token_index(j) {
                    let (tok, n) = self.tokens.swap_remove(j);
                    self.log(format_args!("  drop permit of {n}"));
                    drop(tok);
                    self.model.release(n);
                }
            }
            Op::ForgetPermit(j) => {
                if let Some(j) = self.token_index(j) {
                    let (tok, n) = self.tokens.swap_remove(j);
                    self.log(format_args!("  forget permit of {n}"));
                    match tok {
                        Token::Borrowed(p) => p.forget(),
                        Token::Owned(p) => p.forget(),
                    }
                    self.model.forget_held(n);
                }
            }
            Op::SplitPermit(j, k) => {
                if self.tokens.len() < MAX_PERMIT_TOKENS {
                    if let Some(j) = self.token_index(j) {
                        self.split(j, split_amount(k));
                    }
                }
            }
            Op::MergePermits(j, k) => self.merge(j, k),
            Op::TryAcquire(n) => {
                let n = amount(n);
                let got = self.sem.try_acquire_many(n).map(Token::Borrowed);
                self.check_try(n, got);
            }
            Op::TryAcquireOwned(n) => {
                let n = amount(n);
                let got = Arc::clone(self.sem)
                    .try_acquire_many_owned(n)
                    .map(Token::Owned);
                self.check_try(n, got);
            }
            Op::AddPermits(n) => {
                let n = add_amount(n);
                let fits = n <= MAX_PERMITS - self.model.total;
                if fits {
                    self.sem.add_permits(n);
                } else if let Err(e) = self.sem.try_add_permits(n) {
                    if e.added != n || e.total != self.model.total {
                        fail!(
                            self,
                            "try_add_permits({n}) error {e:?}, total {}",
                            self.model.total
                        );
                    }
                } else {
                    fail!(self, "try_add_permits({n}) succeeded past MAX_PERMITS");
                }
                let want = self.model.add_permits(n);
                if want != fits {
                    fail!(self, "add_permits({n}): fits = {fits}, model says {want}");
                }
            }
            Op::ForgetPermits(n) => {
                let n = forget_amount(n);
                let got = self.sem.forget_permits(n);
                let want = self.model.forget_permits(n);
                if got != want {
                    fail!(self, "forget_permits({n}) = {got}, model says {want}");
                }
            }
            Op::Close => {
                self.sem.close();
                self.model.close();
            }
        }
        self.settle_wakes();
    }

    fn index(&self, i: u8) -> Option<usize> {
        (!self.slots.is_empty()).then(|| usize::from(i) % self.slots.len())
    }

    fn token_index(&self, j: u8) -> Option<usize> {
        (!self.tokens.is_empty()).then(|| usize::from(j) % self.tokens.len())
    }

    fn new_slot(&mut self, fut: Fut<'a>, req: usize, poll: bool) {
        let id = self.fresh_id();
        let waker = Tracked::new(&self.clock, &self.stale_wakes);
        self.slots.push(Slot {
            fut,
            id,
            req,
            phase: Phase::Fresh,
            waker,
        });
        self.log(format_args!(
            "  new future #{} (id {id}) for {req}",
            self.slots.len() - 1
        ));
        if poll {
            self.poll_slot(self.slots.len() - 1, false, None);
        }
    }

    /// Polls slot `i` (optionally with a new waker, or for a new `PollSemaphore` amount) and
    /// compares the result with the model.
    fn poll_slot(&mut self, i: usize, new_waker: bool, with_n: Option<usize>) {
        if new_waker {
            let fresh = Tracked::new(&self.clock, &self.stale_wakes);
            let old = core::mem::replace(&mut self.slots[i].waker, fresh);
            self.retire(old);
        }
        let slot = &mut self.slots[i];
        let waker = slot.waker.waker.clone();
        let mut cx = Context::from_waker(&waker);
        let (got, want): (Poll<Result<Token<'a>, AcquireError>>, _) = match &mut slot.fut {
            Fut::Borrowed(f) => {
                if slot.phase == Phase::Finished {
                    return; // polling again would panic by design
                }
                let got = f.as_mut().poll(&mut cx).map(|r| r.map(Token::Borrowed));
                let want = match slot.phase {
                    Phase::Fresh => self.model.first_poll(slot.id, slot.req),
                    _ => self.model.poll(slot.id),
                };
                (got, want)
            }
            Fut::Owned(f) => {
                if slot.phase == Phase::Finished {
                    return;
                }
                let got = f.as_mut().poll(&mut cx).map(|r| r.map(Token::Owned));
                let want = match slot.phase {
                    Phase::Fresh => self.model.first_poll(slot.id, slot.req),
                    _ => self.model.poll(slot.id),
                };
                (got, want)
            }
            Fut::PollSem(ps) => {
                let n = with_n.unwrap_or(slot.req);
                let continuing = slot.phase == Phase::Live && slot.req == n;
                if !continuing {
                    // A new request: a live one with another amount is dropped first.
                    if slot.phase == Phase::Live {
                        self.model.cancel(slot.id);
                    }
                    self.next_id += 1;
                    slot.id = self.next_id;
                    slot.req = n;
                    slot.phase = Phase::Fresh;
                }
                let got = ps
                    .poll_acquire_many(&mut cx, n)
                    .map(|r| r.map(Token::Owned));
                let want = if continuing {
                    self.model.poll(slot.id)
                } else {
                    self.model.first_poll(slot.id, n)
                };
                (got, want)
            }
        };
        let id = slot.id;
        slot.phase = if got.is_ready() {
            Phase::Finished
        } else {
            Phase::Live
        };
        let shown = match &got {
            Poll::Pending => Poll::Pending,
            Poll::Ready(r) => Poll::Ready(r.as_ref().map(Token::num_permits)),
        };
        self.log(format_args!("  poll #{i} (id {id}) -> {shown:?}"));
        match (got, want) {
            (Poll::Pending, Poll::Pending) => {}
            (Poll::Ready(Ok(tok)), Poll::Ready(Ok(n))) => {
                if tok.num_permits() != n {
                    fail!(
                        self,
                        "poll #{i} gave {} permits, model {n}",
                        tok.num_permits()
                    );
                }
                self.tokens.push((tok, n));
            }
            (Poll::Ready(Err(e)), Poll::Ready(Err(w))) if e == w => {}
            (got, want) => {
                let got = got.map(|r| r.map(|t| t.num_permits()));
                fail!(self, "poll #{i} (id {id}) = {got:?}, model says {want:?}");
            }
        }
    }

    fn drop_slot(&mut self, i: usize) {
        let slot = self.slots.swap_remove(i);
        self.log(format_args!(
            "  drop future #{i} (id {}, {:?})",
            slot.id, slot.phase
        ));
        let Slot {
            fut,
            id,
            phase,
            waker,
            ..
        } = slot;
        drop(fut);
        if phase == Phase::Live {
            self.model.cancel(id);
        }
        self.retire(waker);
    }

    /// A waker leaves service (replaced by a re-poll, or its future dropped): it has had
    /// exactly the wakes the model expects so far, and must never be woken again.
    fn retire(&mut self, t: Tracked) {
        if t.wakes() != t.expect {
            fail!(
                self,
                "retired waker woken {} times, expected {}",
                t.wakes(),
                t.expect
            );
        }
        t.count.stale.store(true, SeqCst);
    }

    fn split(&mut self, j: usize, k: usize) {
        let have = self.tokens[j].1;
        let new = match &mut self.tokens[j].0 {
            Token::Borrowed(p) => p.split(k).map(Token::Borrowed),
            Token::Owned(p) => p.split(k).map(Token::Owned),
        };
        self.log(format_args!("  split {k} off permit of {have}"));
        match new {
            Some(tok) if k <= have => {
                self.tokens[j].1 -= k;
                self.tokens.push((tok, k));
            }
            None if k > have => {}
            Some(_) => fail!(self, "split({k}) of a {have}-permit token succeeded"),
            None => fail!(self, "split({k}) of a {have}-permit token failed"),
        }
    }

    fn merge(&mut self, j: u8, k: u8) {
        let len = self.tokens.len();
        if len < 2 {
            return;
        }
        let j = usize::from(j) % len;
        let mut k = usize::from(k) % len;
        if j == k {
            k = (k + 1) % len;
        }
        let same_kind = matches!(
            (&self.tokens[j].0, &self.tokens[k].0),
            (Token::Borrowed(_), Token::Borrowed(_)) | (Token::Owned(_), Token::Owned(_))
        );
        if !same_kind {
            return;
        }
        let (other, m) = self.tokens.swap_remove(k);
        // swap_remove moved the last token into `k`; follow `j` if it was the last one.
        let j = if j == self.tokens.len() { k } else { j };
        let into = self.tokens[j].1;
        self.log(format_args!("  merge permit of {m} into permit of {into}"));
        match (&mut self.tokens[j].0, other) {
            (Token::Borrowed(p), Token::Borrowed(o)) => p.merge(o),
            (Token::Owned(p), Token::Owned(o)) => p.merge(o),
            _ => unreachable!("kinds checked above"),
        }
        self.tokens[j].1 += m;
    }

    fn check_try(&mut self, n: usize, got: Result<Token<'a>, TryAcquireError>) {
        let want = self.model.try_acquire(n);
        self.log(format_args!(
            "  try_acquire({n}) -> {:?}",
            got.as_ref().map(|t| t.num_permits())
        ));
        match (got, want) {
            (Ok(tok), Ok(m)) if tok.num_permits() == m => self.tokens.push((tok, m)),
            (Err(e), Err(w)) if e == w => {}
            (got, want) => {
                let got = got.map(|t| t.num_permits());
                fail!(self, "try_acquire({n}) = {got:?}, model says {want:?}");
            }
        }
    }

    /// Credits the model's wake obligations of this step to the current wakers and checks that
    /// the waiters were woken in the model's (FIFO) order.
    fn settle_wakes(&mut self) {
        let wakes = core::mem::take(&mut self.model.wakes);
        let mut last_seq = 0;
        for id in wakes {
            let Some(i) = self
                .slots
                .iter()
                .position(|s| s.id == id && s.phase == Phase::Live)
            else {
                fail!(self, "model resolved id {id}, which no live future holds");
            };
            self.log(format_args!("  model: wake #{i} (id {id})"));
            self.slots[i].waker.expect += 1;
            let seq = self.slots[i].waker.count.last.load(SeqCst);
            if self.slots[i].waker.wakes() >= self.slots[i].waker.expect && seq <= last_seq {
                fail!(self, "FIFO: future #{i} (id {id}) was woken out of order");
            }
            last_seq = seq;
        }
    }

    /// Compares every observable with the model after a step.
    pub fn check(&mut self) {
        self.model.check();
        let m = &self.model;
        let sem = &**self.sem;
        if sem.total_permits() != m.total {
            fail!(
                self,
                "total_permits() = {}, model {}",
                sem.total_permits(),
                m.total
            );
        }
        if sem.available_permits() != m.available() {
            fail!(
                self,
                "available_permits() = {}, model {}",
                sem.available_permits(),
                m.available()
            );
        }
        if sem.waiters() != m.queue.len() {
            fail!(
                self,
                "waiters() = {}, model {}",
                sem.waiters(),
                m.queue.len()
            );
        }
        if sem.is_closed() != m.closed {
            fail!(
                self,
                "is_closed() = {}, model {}",
                sem.is_closed(),
                m.closed
            );
        }
        let held: usize = self.tokens.iter().map(|(_, n)| n).sum();
        if held != m.held {
            fail!(self, "tokens hold {held}, model {}", m.held);
        }
        for (k, (tok, n)) in self.tokens.iter().enumerate() {
            if tok.num_permits() != *n {
                fail!(self, "permit {k} holds {}, expected {n}", tok.num_permits());
            }
        }
        // Conservation as seen from the outside: available + held + promised == total.
        if sem.available_permits() + held + m.assigned() != sem.total_permits() {
            fail!(
                self,
                "conservation: available {} + held {held} + assigned {} != total {}",
                sem.available_permits(),
                m.assigned(),
                sem.total_permits()
            );
        }
        // No barging: while anyone waits, a newcomer gets nothing.
        if !m.queue.is_empty() {
            match sem.try_acquire() {
                Err(TryAcquireError::NoPermits) => {}
                other => {
                    let other = other.map(|p| p.num_permits());
                    fail!(self, "barging: try_acquire() = {other:?} with a queue");
                }
            }
        }
        // Wakes: exactly the model's, on the current wakers; none on stale ones.
        for (i, s) in self.slots.iter().enumerate() {
            if s.waker.wakes() != s.waker.expect {
                fail!(
                    self,
                    "future #{i} (id {}, {:?}) woken {} times, model expects {}",
                    s.id,
                    s.phase,
                    s.waker.wakes(),
                    s.waker.expect
                );
            }
        }
        if self.stale_wakes.load(SeqCst) != 0 {
            fail!(self, "a replaced or dropped waker was woken");
        }
        if m.closed && sem.waiters() != 0 {
            fail!(self, "waiters stranded after close");
        }
    }

    /// Drops everything (checking after each drop) and asserts that every permit is back.
    pub fn teardown(&mut self, permits_first: bool) {
        self.log(format_args!("teardown (permits first: {permits_first})"));
        if permits_first {
            self.drop_tokens();
        }
        while !self.slots.is_empty() {
            self.step += 1;
            self.drop_slot(0);
            self.settle_wakes();
            self.check();
        }
        self.drop_tokens();
        // Granted-but-unpolled waiters were dropped with their futures, so nothing is owed.
        if !self.model.resolved.is_empty() || !self.model.queue.is_empty() {
            fail!(self, "model still owes waiters after teardown");
        }
        let sem = &**self.sem;
        if sem.available_permits() != sem.total_permits() || sem.waiters() != 0 {
            fail!(
                self,
                "stranded permits: available {} of {}, waiters {}",
                sem.available_permits(),
                sem.total_permits(),
                sem.waiters()
            );
        }
        // Every permit can be taken again in one go (unless closed).
        let total = sem.total_permits();
        match sem.try_acquire_many(total) {
            Ok(p) if !self.model.closed => drop(p),
            Err(TryAcquireError::Closed) if self.model.closed => {}
            other => {
                let other = other.map(|p| p.num_permits());
                fail!(self, "after teardown try_acquire_many({total}) = {other:?}");
            }
        }
    }

    fn drop_tokens(&mut self) {
        while let Some((tok, n)) = self.tokens.pop() {
            self.step += 1;
            self.log(format_args!("  teardown: drop permit of {n}"));
            drop(tok);
            self.model.release(n);
            self.settle_wakes();
            self.check();
        }
    }
}
