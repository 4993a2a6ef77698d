//! A shared, cancel-safe flight: one boxed future whose progress is driven by
//! whichever waiter happens to be polled.
//!
//! Design notes (see `src/singleflight/DESIGN.md`, "The shared flight"):
//!
//! * The inner future is polled with a waker owned by the flight itself. When
//!   that waker fires, *every* registered waiter is woken, so a waiter that is
//!   alive but never polled again (a "parked leader") cannot starve the others.
//! * A `dirty` flag records whether the inner future has been woken since its
//!   last poll. Only a waiter that finds the flag set polls the inner future;
//!   the rest just re-register their wakers. One inner wake-up therefore costs
//!   O(waiters) wakes but O(1) polls of the inner future.
//! * The inner future is taken out of the mutex while it is polled, so no lock
//!   is held while user code runs.
//! * A panic while polling is caught and turned into `Err(message)` for every
//!   waiter; the flight's hook is told first so the owner can clean up.
//! * When the last waiter is dropped before completion, the flight becomes
//!   `Cancelled`, the inner future is dropped and the hook is told. A cancelled
//!   flight can never be joined again.

use std::boxed::Box;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::string::String;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::vec::Vec;

/// A boxed, sendable future.
pub(crate) type BoxFut<O> = Pin<Box<dyn Future<Output = O> + Send + 'static>>;

/// Why a flight ended without producing its own output.
pub(crate) enum Abort {
    /// The last waiter was dropped before the flight completed.
    Cancelled,
    /// The inner future panicked; the payload rendered as text.
    Panicked,
}

/// Called exactly once if the flight ends by cancellation or panic.
pub(crate) type Hook = Box<dyn Fn(Abort) + Send + Sync + 'static>;

/// Locks a mutex, ignoring poisoning: every critical section in this module
/// leaves its data consistent before anything that can panic runs.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

enum Phase<O> {
    Running,
    Done(Result<O, Arc<str>>),
    Cancelled,
}

struct State<O> {
    phase: Phase<O>,
    fut: Option<BoxFut<O>>,
    /// Some waiter is currently polling `fut` (it is taken out of the state).
    polling: bool,
    /// The inner future was woken since it was last polled (or never polled).
    dirty: bool,
    /// Live waiters (registered and not yet dropped).
    waiters: usize,
    wakers: Vec<Option<Waker>>,
    free: Vec<usize>,
}

impl<O> State<O> {
    fn take_wakers(&mut self) -> Vec<Waker> {
        self.wakers.iter_mut().filter_map(Option::take).collect()
    }
}

/// See the module documentation.
pub(crate) struct Flight<O> {
    id: u64,
    state: Mutex<State<O>>,
    hook: Hook,
}

impl<O> Flight<O> {
    /// The identifier given at creation.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// True once the flight was cancelled (it must not be joined).
    pub(crate) fn is_cancelled(&self) -> bool {
        matches!(lock(&self.state).phase, Phase::Cancelled)
    }

    fn leave(&self, slot: usize) {
        let mut st = lock(&self.state);
        st.wakers[slot] = None;
        st.free.push(slot);
        if !matches!(st.phase, Phase::Running) {
            return;
        }
        st.waiters -= 1;
        if st.waiters == 0 {
            st.phase = Phase::Cancelled;
            let fut = st.fut.take();
            let wakers = st.take_wakers();
            drop(st);
            (self.hook)(Abort::Cancelled);
            drop(fut);
            drop(wakers);
        }
    }
}

impl<O: Clone + Send + 'static> Flight<O> {
    /// Creates a flight that has not been polled yet.
    pub(crate) fn new(id: u64, fut: BoxFut<O>, hook: Hook) -> Arc<Self> {
        Arc::new(Flight {
            id,
            state: Mutex::new(State {
                phase: Phase::Running,
                fut: Some(fut),
                polling: false,
                dirty: true,
                waiters: 0,
                wakers: Vec::new(),
                free: Vec::new(),
            }),
            hook,
        })
    }

    /// Registers a new waiter. Returns `None` if the flight was cancelled:
    /// a doomed flight is never joined.
    pub(crate) fn join(self: &Arc<Self>) -> Option<Waiter<O>> {
        let mut st = lock(&self.state);
        if matches!(st.phase, Phase::Cancelled) {
            return None;
        }
        st.waiters += 1;
        let slot = match st.free.pop() {
            Some(i) => i,
            None => {
                st.wakers.push(None);
                st.wakers.len() - 1
            }
        };
        Some(Waiter {
            flight: Some(Arc::clone(self)),
            slot,
        })
    }

    fn complete(&self, out: Result<O, Arc<str>>) -> Result<O, Arc<str>> {
        let wakers = {
            let mut st = lock(&self.state);
            st.polling = false;
            st.phase = Phase::Done(out.clone());
            st.take_wakers()
        };
        for w in wakers {
            w.wake();
        }
        out
    }

    fn poll_waiter(
        self: &Arc<Self>,
        slot: usize,
        cx: &mut Context<'_>,
    ) -> Poll<Result<O, Arc<str>>> {
        let mut fut = {
            let mut st = lock(&self.state);
            match &st.phase {
                Phase::Done(r) => return Poll::Ready(r.clone()),
                // Unreachable while a waiter is alive; answer rather than hang.
                Phase::Cancelled => return Poll::Ready(Err(Arc::from("flight cancelled"))),
                Phase::Running => {}
            }
            if st.polling || !st.dirty || st.fut.is_none() {
                register(&mut st, slot, cx.waker());
                return Poll::Pending;
            }
            st.polling = true;
            st.dirty = false;
            st.fut.take().expect("checked above")
        };
        let waker = Waker::from(Arc::clone(self));
        let mut inner_cx = Context::from_waker(&waker);
        match catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(&mut inner_cx))) {
            Ok(Poll::Pending) => {
                let mut st = lock(&self.state);
                st.polling = false;
                st.fut = Some(fut);
                register(&mut st, slot, cx.waker());
                if st.dirty {
                    // Woken while we polled. Wake every waiter (ourselves
                    // included) rather than re-polling in a loop: a future
                    // that always wakes itself cannot spin us, and waiters
                    // that registered during our poll are not stranded if we
                    // are dropped right after this returns.
                    let wakers = st.take_wakers();
                    drop(st);
                    for w in wakers {
                        w.wake();
                    }
                }
                Poll::Pending
            }
            Ok(Poll::Ready(out)) => {
                drop(fut);
                Poll::Ready(self.complete(Ok(out)))
            }
            Err(payload) => {
                let msg = panic_message(&*payload);
                // Dropping a future that just panicked may panic again; contain it.
                let _ = catch_unwind(AssertUnwindSafe(move || drop(fut)));
                drop(payload);
                let _ = catch_unwind(AssertUnwindSafe(|| (self.hook)(Abort::Panicked)));
                Poll::Ready(self.complete(Err(msg)))
            }
        }
    }
}

fn register<O>(st: &mut State<O>, slot: usize, waker: &Waker) {
    match &mut st.wakers[slot] {
        Some(w) if w.will_wake(waker) => {}
        other => *other = Some(waker.clone()),
    }
}

/// Renders a panic payload as text.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> Arc<str> {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        Arc::from(*s)
    } else if let Some(s) = payload.downcast_ref::<String>() {
        Arc::from(s.as_str())
    } else {
        Arc::from("loader panicked")
    }
}

impl<O: Send + 'static> Wake for Flight<O> {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let wakers = {
            let mut st = lock(&self.state);
            st.dirty = true;
            st.take_wakers()
        };
        for w in wakers {
            w.wake();
        }
    }
}

/// One waiter's handle on a flight. Dropping it leaves the flight; dropping
/// the last one cancels it.
pub(crate) struct Waiter<O> {
    flight: Option<Arc<Flight<O>>>,
    slot: usize,
}

impl<O: Clone + Send + 'static> Future for Waiter<O> {
    type Output = Result<O, Arc<str>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let slot = self.slot;
        let flight = self
            .flight
            .as_ref()
            .expect("Waiter polled after completion");
        let res = flight.poll_waiter(slot, cx);
        if res.is_ready() {
            if let Some(f) = self.flight.take() {
                f.leave(slot);
            }
        }
        res
    }
}

impl<O> Drop for Waiter<O> {
    fn drop(&mut self) {
        if let Some(f) = self.flight.take() {
            f.leave(self.slot);
        }
    }
}
