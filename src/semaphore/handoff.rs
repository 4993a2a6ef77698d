//! The handoff pass: the only code that touches the waiter list. It runs on whichever thread
//! holds the `HANDOFF` bit, drains requests, hands permits to the head of the FIFO, resolves
//! waiters and wakes them after giving the role back. DESIGN.md §3–§5.
//!
//! # Invariants (DESIGN.md §4)
//!
//! Exactly one thread holds `HANDOFF` at a time (I2), and only that thread reads or writes the
//! list: the parked head in [`ParkedList`], the nodes' [`Links`] once their enqueue request is
//! drained, and the holder's private `pool`. The role moves between threads only through AcqRel
//! RMWs on the state word, so each holder's list writes happen-before the next holder's reads.
//! While `QUEUED` is set, the permit field holds deposits for the queue, never free permits, so
//! nobody barges (I1). Work is never stranded (I3): every push and every deposit is followed by
//! an RMW on the state word that either takes the role or changes the word the holder's exit CAS
//! compares. Work may wait without a holder only when it cannot make progress yet: enqueue
//! requests while no permit is deposited and the semaphore is open (the next deposit, cancel or
//! `close` runs a pass), and cancel requests, whose owners take the role themselves when they
//! find it free while waiting for `DONE`. A holder's last access to a node is its `DONE` store
//! (I6), and wakers run only after the role is given back (I7). A waker collected in a pass is
//! woken before the holder starts another pass (the wake bound), and a holder runs at most
//! [`REQUEST_PASSES`] passes for requests alone (the helping bound); it keeps the role longer
//! only to hand out deposited permits or to close waiters out.

use core::ptr;

use super::checks::RequestPasses;
use super::state::{self, CLOSED, DIRTY, HANDOFF, QUEUED};
use super::waiter::{flags::*, Waiter};
use super::wake::WakeBatch;
use super::Semaphore;
use crate::sync::{const_unless_loom, AtomicPtr, Ordering::*, UnsafeCell};

/// The waiter list's head between passes; null when the list is empty. Only the thread holding
/// `HANDOFF` touches it: the exiting holder writes it before its exit CAS, the next holder reads
/// it after its role-taking CAS, which follows that exit in the state word's order (I2).
#[derive(Debug)]
pub(crate) struct ParkedList(UnsafeCell<*mut Waiter>);

impl ParkedList {
    const_unless_loom! {
        pub(crate) fn new() -> ParkedList {
            ParkedList(UnsafeCell::new(ptr::null_mut()))
        }
    }
}

/// A node's links: request-stack links written by its owner before each push, then list links
/// that only the holder touches. Private to this module, which enforces that protocol.
#[derive(Debug)]
pub(crate) struct Links {
    /// Request-stack link while an enqueue request is pending, then the list's `next`.
    next: UnsafeCell<*mut Waiter>,
    /// The list's `prev`; null when not linked.
    prev: UnsafeCell<*mut Waiter>,
    /// Request-stack link of the cancel request.
    cancel_next: UnsafeCell<*mut Waiter>,
}

impl Links {
    const_unless_loom! {
        #[inline]
        pub(crate) fn new() -> Links {
            Links {
                next: UnsafeCell::new(ptr::null_mut()),
                prev: UnsafeCell::new(ptr::null_mut()),
                cancel_next: UnsafeCell::new(ptr::null_mut()),
            }
        }
    }
}

/// How many passes one holder runs for requests alone (enqueues and cancels that set `DIRTY`)
/// before it gives the role back and leaves the rest on the stack. Deposits and a close keep it
/// going (they cannot wait); requests can (module docs, DESIGN.md §5).
pub(crate) const REQUEST_PASSES: usize = 2;

/// Request-stack entries are node pointers tagged in their low bit.
mod tag {
    pub(crate) const ENQUEUE: usize = 0;
    pub(crate) const CANCEL: usize = 1;
    pub(crate) const MASK: usize = 0b1;
}

// The tag bit needs nodes aligned to at least 2 bytes.
const _: () = assert!(core::mem::align_of::<Waiter>() >= 2);

#[inline]
fn tagged(node: *mut Waiter, t: usize) -> *mut Waiter {
    node.map_addr(|a| a | t)
}

#[inline]
fn untag(entry: *mut Waiter) -> (*mut Waiter, usize) {
    (entry.map_addr(|a| a & !tag::MASK), entry.addr() & tag::MASK)
}

/// What one holder keeps privately while it owns the list.
struct Holder {
    /// Head (oldest) of the circular list; null when empty.
    head: *mut Waiter,
    /// Permits taken from deposits and refunds, not yet assigned.
    pool: usize,
    /// Waiters unlinked by this holder, subtracted from `Semaphore::waiters` on exit.
    removed: usize,
    /// The node of the thread running this pass, if any: its owner is running, so it needs
    /// no wake.
    me: *const Waiter,
}

/// How a holder's tenure ended.
#[derive(PartialEq, Eq)]
enum Exit {
    /// No work left that the holder knows of.
    Idle,
    /// The role was given back with work left: requests on the stack, or deposits (the batch
    /// had to be woken first, or it was full). The caller wakes the batch and then takes the
    /// role again if the word shows deposits or a close.
    Yield,
}

/// Aborts the process if a pass unwinds: a panic while holding the role (a broken assertion,
/// arithmetic overflow in debug builds) would leave `HANDOFF` set for ever, and every later
/// drop of a queued acquire would spin waiting for a `DONE` that never comes. Panicking in a
/// destructor during unwinding aborts, which works without `std`. No user code runs while the
/// role is held (wakers run after it is given back), so only a bug in this module can fire it.
/// Off under loom and shuttle, whose failure reports are panics that must unwind.
struct AbortOnUnwind;

impl Drop for AbortOnUnwind {
    fn drop(&mut self) {
        #[cfg(not(any(loom, shuttle)))]
        panic!("fairgate: panic while holding the semaphore's handoff role; aborting");
    }
}

// All functions below require that the caller holds HANDOFF (invariant I2) and that every node
// reachable from `Holder::head` or from a drained request is alive (invariant I6).

/// Appends `node` at the tail of the circular list.
///
/// # Safety
/// Caller holds HANDOFF; `node` is alive and not linked.
unsafe fn append(h: &mut Holder, node: *mut Waiter) {
    // SAFETY: the caller holds HANDOFF, so only this thread reads or writes list links, and
    // every node on the list is alive (I6).
    unsafe {
        let links = &(*node).links;
        if h.head.is_null() {
            links.next.with_mut(|p| *p = node);
            links.prev.with_mut(|p| *p = node);
            h.head = node;
        } else {
            let head = h.head;
            let tail = (*head).links.prev.with(|p| *p);
            (*tail).links.next.with_mut(|p| *p = node);
            links.prev.with_mut(|p| *p = tail);
            links.next.with_mut(|p| *p = head);
            (*head).links.prev.with_mut(|p| *p = node);
        }
    }
}

/// Removes `node` from the list and marks it unlinked (`prev = null`).
///
/// # Safety
/// Caller holds HANDOFF; `node` is alive and linked.
unsafe fn unlink(h: &mut Holder, node: *mut Waiter) {
    // SAFETY: as in `append`.
    unsafe {
        let links = &(*node).links;
        let next = links.next.with(|p| *p);
        let prev = links.prev.with(|p| *p);
        if next == node {
            h.head = ptr::null_mut();
        } else {
            (*prev).links.next.with_mut(|p| *p = next);
            (*next).links.prev.with_mut(|p| *p = prev);
            if h.head == node {
                h.head = next;
            }
        }
        links.prev.with_mut(|p| *p = ptr::null_mut());
    }
    h.removed += 1;
}

/// # Safety
/// Caller holds HANDOFF; `node` is alive.
unsafe fn is_linked(node: *mut Waiter) -> bool {
    // SAFETY: `prev` is holder-private and the caller holds HANDOFF.
    unsafe { !(*node).links.prev.with(|p| *p).is_null() }
}

impl Semaphore {
    /// Runs handoff tenures until no work is left that this thread must do. The caller has
    /// just set HANDOFF, and took `deposit` permits out of the state word with the same CAS.
    pub(crate) fn run_handoff(&self, me: *const Waiter, deposit: usize) {
        let mut batch = WakeBatch::new();
        let mut request_passes = RequestPasses::default();
        let mut pool = deposit;
        loop {
            let guard = AbortOnUnwind;
            // SAFETY: the caller (or the retake below) took HANDOFF.
            let exit = unsafe {
                self.hold(
                    me,
                    core::mem::take(&mut pool),
                    &mut batch,
                    &mut request_passes,
                )
            };
            core::mem::forget(guard);
            // The role is given back: no node is touched from here on (I7).
            batch.wake_all();
            if exit == Exit::Idle {
                return;
            }
            // Requests left on the stack can wait (module docs); deposits and a close cannot.
            // Take the role again, and the deposits with it (as `after_deposit` does), unless
            // another thread has it (then it sees what we left) or nothing here must be done.
            let mut s = self.state.load(Relaxed);
            loop {
                if s & QUEUED == 0
                    || s & HANDOFF != 0
                    || (state::permits(s) == 0 && s & CLOSED == 0)
                {
                    return;
                }
                match self.state.compare_exchange_weak(
                    s,
                    state::with_permits(s, 0) | HANDOFF,
                    AcqRel,
                    Relaxed,
                ) {
                    Ok(_) => {
                        pool = state::permits(s);
                        break;
                    }
                    Err(actual) => s = actual,
                }
            }
        }
    }

    /// One tenure: passes until an exit CAS succeeds. It never starts a pass while its batch
    /// holds a waker (the wake bound) and runs at most [`REQUEST_PASSES`] passes unless the
    /// word shows deposits (the helping bound).
    ///
    /// # Safety
    /// The caller holds HANDOFF.
    unsafe fn hold(
        &self,
        me: *const Waiter,
        pool: usize,
        batch: &mut WakeBatch,
        request_passes: &mut RequestPasses,
    ) -> Exit {
        let mut h = Holder {
            // SAFETY: the caller holds HANDOFF, the only licence to touch `list` (I2).
            head: self.list.0.with(|p| unsafe { *p }),
            pool,
            removed: 0,
            me,
        };
        let mut passes = 0;
        loop {
            #[cfg(loom)]
            self.pass_stats.pass_started(!batch.is_empty());
            #[cfg(all(test, not(loom)))]
            super::checks::test_hooks::maybe_fail();
            passes += 1;
            // 1. Take deposits and clear DIRTY (Acquire: pairs with releasers and pushers).
            let mut s = self.state.load(Acquire);
            // I11: the role is only ever taken with QUEUED set, and only an exit clears it, so
            // the permits taken here are deposits, never free permits someone could try_acquire.
            debug_assert!(s & QUEUED != 0, "handoff pass without QUEUED");
            if passes == 1 {
                // The tenure's first pass; later ones are counted where they are decided.
                request_passes.pass(self, h.pool, s);
            }
            while s & DIRTY != 0 || state::permits(s) != 0 {
                let taken = state::with_permits(s, 0) & !DIRTY;
                match self.state.compare_exchange_weak(s, taken, Acquire, Acquire) {
                    Ok(_) => {
                        h.pool += state::permits(s);
                        s = taken;
                    }
                    Err(actual) => s = actual,
                }
            }
            let closed = s & CLOSED != 0;
            // 2. Apply the requests pushed since the last drain.
            // SAFETY: we hold HANDOFF.
            unsafe { self.drain(&mut h) };
            // 3. Hand permits to the head, or close everyone out.
            // SAFETY: we hold HANDOFF.
            let full = unsafe { self.hand_out(&mut h, closed, batch) };
            // 4. Exit, or run another pass. `requests` needs no check here: every push is
            // followed by its pusher's AcqRel RMW on `state`. Before our exit CAS it set DIRTY,
            // which step 1 must clear (Acquire) before an idle exit can succeed, so a drain
            // after that sees the push; after our exit CAS the pusher takes the role or leaves
            // the request for the next holder, whose role-taking CAS follows it (DESIGN.md §5).
            let mut s = self.state.load(Acquire);
            if h.removed != 0 {
                self.waiters
                    .fetch_sub(core::mem::take(&mut h.removed), Relaxed);
            }
            loop {
                let dirty = s & DIRTY != 0;
                let (exit, how) = if !dirty && h.head.is_null() {
                    // Queue empty: leftovers and late deposits become free permits.
                    (
                        (s & CLOSED) | state::from_permits(state::permits(s) + h.pool),
                        Exit::Idle,
                    )
                } else if !dirty && !full && state::permits(s) == 0 {
                    debug_assert_eq!(h.pool, 0, "pool left while the head could take it");
                    (s & !HANDOFF, Exit::Idle)
                } else if batch.is_empty() && (!dirty || passes < REQUEST_PASSES) {
                    // Deposits (or, within the budget, requests) arrived and nobody awaits a
                    // wake from us: another pass.
                    request_passes.pass(self, h.pool, s);
                    break;
                } else {
                    // Give the role back first: a granted waiter is woken before any further
                    // pass, and requests beyond the budget wait on the stack. The pool goes
                    // back as deposits; `run_handoff` retakes the role if any are left.
                    (
                        state::with_permits(s & !(HANDOFF | DIRTY), state::permits(s) + h.pool),
                        Exit::Yield,
                    )
                };
                // Park the list for the next holder. SAFETY: we hold HANDOFF (I2); the next
                // holder reads `list` only after its role-taking CAS, which follows our exit.
                self.list.0.with_mut(|p| unsafe { *p = h.head });
                match self.state.compare_exchange(s, exit, AcqRel, Acquire) {
                    Ok(_) => return how,
                    // The word changed (a deposit, a request, a close): decide again.
                    Err(actual) => s = actual,
                }
            }
        }
    }

    /// Drains the request stack and applies it in FIFO order.
    ///
    /// # Safety
    /// The caller holds HANDOFF.
    unsafe fn drain(&self, h: &mut Holder) {
        // A load first: the swap is an RMW on a line that pushers contend for. A push this load
        // misses is not lost: its pusher's RMW on `state` follows it (see the exit in `hold`).
        if self.requests.load(Relaxed).is_null() {
            return;
        }
        let mut top = self.requests.swap(ptr::null_mut(), Acquire);
        // Reverse into FIFO order.
        let mut fifo: *mut Waiter = ptr::null_mut();
        while !top.is_null() {
            let (node, t) = untag(top);
            // SAFETY: a pushed request's node is alive until the holder sets DONE on it (I6),
            // and its link field is holder-owned once drained (the pusher wrote it before the
            // Release push we synchronised with).
            unsafe {
                let link = if t == tag::ENQUEUE {
                    &(*node).links.next
                } else {
                    &(*node).links.cancel_next
                };
                let below = link.with(|p| *p);
                link.with_mut(|p| *p = fifo);
                fifo = top;
                top = below;
            }
        }
        while !fifo.is_null() {
            let (node, t) = untag(fifo);
            // SAFETY: as above; each link is read before the entry is applied, because
            // applying it rewrites the link (enqueue) or ends our access to the node (cancel).
            unsafe {
                if t == tag::ENQUEUE {
                    fifo = (*node).links.next.with(|p| *p);
                    append(h, node);
                } else {
                    fifo = (*node).links.cancel_next.with(|p| *p);
                    if is_linked(node) {
                        unlink(h, node);
                        h.pool += assigned((*node).state.load(Acquire));
                    }
                    // Last touch (I6): the owner may free the node once it sees DONE.
                    (*node).state.fetch_or(DONE, Release);
                }
            }
        }
    }
    /// Serves the head of the queue from the pool (or closes everyone out). Returns true if it
    /// stopped because the wake batch is full.
    ///
    /// # Safety
    /// The caller holds HANDOFF.
    unsafe fn hand_out(&self, h: &mut Holder, closed: bool, batch: &mut WakeBatch) -> bool {
        while !h.head.is_null() {
            if batch.is_full() {
                return true;
            }
            let node = h.head;
            // SAFETY: linked nodes are alive (I6); `requested` is immutable while queued.
            let (mut s, requested) =
                unsafe { ((*node).state.load(Acquire), (*node).requested.with(|p| *p)) };
            if s & CANCELLED != 0 {
                // SAFETY: we hold HANDOFF and the node is linked.
                unsafe { unlink(h, node) };
                h.pool += assigned(s);
                continue;
            }
            if !closed && h.pool == 0 {
                return false;
            }
            let needed = requested - assigned(s);
            if !closed && h.pool < needed {
                // Partial assignment to the head; it keeps them while it waits (head-of-line).
                let add = h.pool << ASSIGNED_SHIFT;
                // SAFETY: linked nodes are alive.
                match unsafe { (*node).state.compare_exchange(s, s + add, AcqRel, Acquire) } {
                    Ok(_) => h.pool = 0,
                    Err(_) => continue, // the owner toggled REGISTERING or cancelled: re-read
                }
                return false;
            }
            // SAFETY: we hold HANDOFF and the node is linked.
            unsafe { unlink(h, node) };
            let flag = if closed { CLOSED_OUT } else { GRANTED };
            loop {
                // SAFETY: the node is alive: DONE is not set and only we set it.
                match unsafe { self.resolve(h, node, s, flag, batch) } {
                    Ok(()) => {
                        if closed {
                            h.pool += assigned(s);
                        } else {
                            h.pool -= needed;
                        }
                        break;
                    }
                    Err(actual) if actual & CANCELLED != 0 => {
                        // Lost the race to a cancel: refund; its request will set DONE.
                        h.pool += assigned(actual);
                        break;
                    }
                    Err(actual) => s = actual,
                }
            }
        }
        false
    }

    /// Publishes `flag` on an unlinked node and collects its waker. After this returns `Ok`
    /// the node is never touched again.
    ///
    /// # Safety
    /// The caller holds HANDOFF and `node` is alive and unresolved.
    unsafe fn resolve(
        &self,
        h: &Holder,
        node: *mut Waiter,
        s: usize,
        flag: usize,
        batch: &mut WakeBatch,
    ) -> Result<(), usize> {
        if s & CANCELLED != 0 {
            return Err(s);
        }
        // An owner that is registering a waker, or that is running this very pass, is awake
        // and will see the flag itself: resolve and finish with the node in one step.
        let owner_running = s & REGISTERING != 0 || ptr::eq(node, h.me);
        let new = if owner_running {
            s | flag | DONE
        } else {
            s | flag
        };
        // SAFETY: the node is alive (caller contract).
        unsafe { (*node).state.compare_exchange(s, new, AcqRel, Acquire) }?;
        if !owner_running {
            // SAFETY: the flag is set and REGISTERING was clear, so the owner cannot touch
            // the waker slot any more; the node stays alive until we set DONE below.
            let waker = unsafe {
                let waker = (*node).waker.with_mut(|w| (*w).take());
                (*node).state.fetch_or(DONE, Release);
                waker
            };
            if let Some(waker) = waker {
                batch.push(waker);
            }
        }
        Ok(())
    }
}

/// Pushes a tagged request whose link lives in `link`.
///
/// # Safety
/// `link` belongs to the node in `entry`, which is alive until the holder sets DONE or moves
/// it on, and no other thread writes `link` until the push is drained.
unsafe fn push_request(
    requests: &AtomicPtr<Waiter>,
    entry: *mut Waiter,
    link: &UnsafeCell<*mut Waiter>,
) {
    let mut top = requests.load(Relaxed);
    loop {
        // SAFETY: the caller owns `link` until the push below publishes it.
        link.with_mut(|p| unsafe { *p = top });
        match requests.compare_exchange_weak(top, entry, Release, Relaxed) {
            Ok(_) => return,
            Err(actual) => top = actual,
        }
    }
}

/// Pushes the enqueue request of a node that was never published.
///
/// # Safety
/// `node` is pinned, alive until it observes DONE, and was never published.
pub(crate) unsafe fn push_enqueue(requests: &AtomicPtr<Waiter>, node: *mut Waiter) {
    // SAFETY: `next` is the enqueue link and belongs to the owner until drained.
    unsafe { push_request(requests, tagged(node, tag::ENQUEUE), &(*node).links.next) }
}

/// Pushes the cancel request of a queued node that has CANCELLED set.
///
/// # Safety
/// `node` is queued, has CANCELLED set (so this is its only cancel request) and stays alive
/// until it observes DONE.
pub(crate) unsafe fn push_cancel(requests: &AtomicPtr<Waiter>, node: *mut Waiter) {
    // SAFETY: `cancel_next` is written only by the owner, before this push.
    unsafe {
        push_request(
            requests,
            tagged(node, tag::CANCEL),
            &(*node).links.cancel_next,
        )
    }
}
