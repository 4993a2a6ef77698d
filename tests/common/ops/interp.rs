//! The interpreter: applies [`Op`]s to a real semaphore on one thread with manual polling and
//! counting wakers, mirroring each on the [`Model`]. The comparison after every step and the
//! final teardown live in `interp/check.rs`.

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

use super::{add_amount, amount, forget_amount, split_amount, Config, Model, Op};
use super::{MAX_FUTURES, MAX_OPS, MAX_PERMITS, MAX_PERMIT_TOKENS};

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

// Declared after `fail!` so the macro is in scope there.
mod check;

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
}
