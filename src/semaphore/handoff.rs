//! The handoff pass: the only code that touches the waiter list. It runs on whichever thread
//! holds the `HANDOFF` bit, drains requests, hands permits to the head of the FIFO, resolves
//! waiters and wakes them after giving the role back. DESIGN.md §2–§4.3.

use core::mem::MaybeUninit;
use core::ptr;
use core::task::Waker;

use super::state::{self, CLOSED, DIRTY, HANDOFF, QUEUED};
use super::waiter::{flags::*, Waiter};
use super::Semaphore;
use crate::sync::{AtomicPtr, Ordering::*};

/// Request-stack entries are node pointers tagged in their low bit.
pub(crate) mod tag {
    pub(crate) const ENQUEUE: usize = 0;
    pub(crate) const CANCEL: usize = 1;
    pub(crate) const MASK: usize = 0b1;
}

// The tag bit needs nodes aligned to at least 2 bytes.
const _: () = assert!(core::mem::align_of::<Waiter>() >= 2);

#[inline]
pub(crate) fn tagged(node: *mut Waiter, t: usize) -> *mut Waiter {
    node.map_addr(|a| a | t)
}

#[inline]
fn untag(entry: *mut Waiter) -> (*mut Waiter, usize) {
    (entry.map_addr(|a| a & !tag::MASK), entry.addr() & tag::MASK)
}

/// How many wakers one pass collects before it gives the role back and wakes them.
#[cfg(not(loom))]
const WAKE_BATCH: usize = 16;
/// Under loom, two: the models then also explore the path where a pass stops because its
/// batch is full (with 16 no model would queue enough waiters to reach it).
#[cfg(loom)]
const WAKE_BATCH: usize = 2;

/// Wakers collected during a pass, woken after the role is given back. Slots `next..len` are
/// initialised; the array is never zeroed or dropped as a whole (a measured cost per pass).
struct WakeBatch {
    wakers: [MaybeUninit<Waker>; WAKE_BATCH],
    len: usize,
    next: usize,
}

impl WakeBatch {
    fn new() -> Self {
        Self {
            wakers: [const { MaybeUninit::uninit() }; WAKE_BATCH],
            len: 0,
            next: 0,
        }
    }

    fn is_full(&self) -> bool {
        self.len == WAKE_BATCH
    }

    fn push(&mut self, waker: Waker) {
        assert!(!self.is_full(), "wake batch overflow");
        self.wakers[self.len].write(waker);
        self.len += 1;
    }

    /// Wakes in grant (FIFO) order.
    fn wake_all(&mut self) {
        while self.next < self.len {
            // SAFETY: slots `next..len` are initialised, and `next` moves past this slot
            // before the waker is used, so it is read exactly once even if `wake` panics.
            let waker = unsafe { self.wakers[self.next].assume_init_read() };
            self.next += 1;
            waker.wake();
        }
        self.len = 0;
        self.next = 0;
    }
}

impl Drop for WakeBatch {
    fn drop(&mut self) {
        // Only non-empty when a wake panicked: the remaining waiters were granted and must
        // still be woken while unwinding.
        self.wake_all();
    }
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
        if h.head.is_null() {
            (*node).next.with_mut(|p| *p = node);
            (*node).prev.with_mut(|p| *p = node);
            h.head = node;
        } else {
            let head = h.head;
            let tail = (*head).prev.with(|p| *p);
            (*tail).next.with_mut(|p| *p = node);
            (*node).prev.with_mut(|p| *p = tail);
            (*node).next.with_mut(|p| *p = head);
            (*head).prev.with_mut(|p| *p = node);
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
        let next = (*node).next.with(|p| *p);
        let prev = (*node).prev.with(|p| *p);
        if next == node {
            h.head = ptr::null_mut();
        } else {
            (*prev).next.with_mut(|p| *p = next);
            (*next).prev.with_mut(|p| *p = prev);
            if h.head == node {
                h.head = next;
            }
        }
        (*node).prev.with_mut(|p| *p = ptr::null_mut());
    }
    h.removed += 1;
}

/// # Safety
/// Caller holds HANDOFF; `node` is alive.
unsafe fn is_linked(node: *mut Waiter) -> bool {
    // SAFETY: `prev` is holder-private and the caller holds HANDOFF.
    unsafe { !(*node).prev.with(|p| *p).is_null() }
}

impl Semaphore {
    /// Runs handoff passes until no work is left. The caller has just set HANDOFF, and took
    /// `deposit` permits out of the state word with the same CAS.
    pub(crate) fn run_handoff(&self, me: *const Waiter, deposit: usize) {
        let mut batch = WakeBatch::new();
        let mut pool = deposit;
        loop {
            // SAFETY: the caller (or the loop below) took HANDOFF.
            let more = unsafe { self.hold(me, core::mem::take(&mut pool), &mut batch) };
            // The role is given back: no node is touched from here on (I7).
            batch.wake_all();
            if !more {
                return;
            }
            // The batch filled while waiters could still be served: take the role again, and
            // the deposits with it (as `after_deposit` does), unless another thread has it
            // (then it will see the deposits we left).
            let mut s = self.state.load(Relaxed);
            loop {
                if s & QUEUED == 0 || s & HANDOFF != 0 {
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

    /// Holds the role for as many passes as it takes to exit cleanly. Returns true if it left
    /// because the wake batch filled while the list still had waiters.
    ///
    /// # Safety
    /// The caller holds HANDOFF.
    unsafe fn hold(&self, me: *const Waiter, pool: usize, batch: &mut WakeBatch) -> bool {
        let mut h = Holder {
            // SAFETY: the caller holds HANDOFF, the only licence to touch `list` (I2).
            head: self.list.with(|p| unsafe { *p }),
            pool,
            removed: 0,
            me,
        };
        loop {
            // 1. Take deposits and clear DIRTY (Acquire: pairs with releasers and pushers).
            let mut s = self.state.load(Acquire);
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
            // 4. Exit, unless new work arrived. `requests` needs no check here: every push is
            // followed by its pusher's AcqRel CAS on `state`. Before our exit CAS it set DIRTY,
            // which step 1 must clear (Acquire) before an exit can succeed, so a drain after
            // that sees the push; after our exit CAS the pusher takes the role or leaves the
            // request for the next holder, whose role-taking CAS follows it (DESIGN §4.3).
            let s = self.state.load(Acquire);
            if s & DIRTY != 0 {
                continue;
            }
            let exit = if h.head.is_null() {
                // Queue empty: leftovers and late deposits become free permits.
                (s & CLOSED) | state::from_permits(state::permits(s) + h.pool)
            } else if full {
                // Leave the pool as deposits for whoever holds the role next.
                state::with_permits(s & !HANDOFF, state::permits(s) + h.pool)
            } else if state::permits(s) != 0 {
                continue;
            } else {
                debug_assert_eq!(h.pool, 0, "pool left while the head could take it");
                s & !HANDOFF
            };
            if h.removed != 0 {
                self.waiters
                    .fetch_sub(core::mem::take(&mut h.removed), Relaxed);
            }
            // Park the list for the next holder. SAFETY: we hold HANDOFF (I2); the next holder
            // reads `list` only after its role-taking CAS, which follows our exit CAS.
            self.list.with_mut(|p| unsafe { *p = h.head });
            if self
                .state
                .compare_exchange(s, exit, AcqRel, Relaxed)
                .is_ok()
            {
                return full && !h.head.is_null();
            }
            // The word changed under us (a deposit, a request, a close): another pass.
        }
    }

    /// Drains the request stack and applies it in FIFO order.
    ///
    /// # Safety
    /// The caller holds HANDOFF.
    unsafe fn drain(&self, h: &mut Holder) {
        // A load first: the swap is an RMW on a line that pushers contend for. A push this load
        // misses is not lost: its pusher's CAS on `state` follows it (see the exit in `hold`).
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
                    &(*node).next
                } else {
                    &(*node).cancel_next
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
                    fifo = (*node).next.with(|p| *p);
                    append(h, node);
                } else {
                    fifo = (*node).cancel_next.with(|p| *p);
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
pub(crate) unsafe fn push_request(
    requests: &AtomicPtr<Waiter>,
    entry: *mut Waiter,
    link: &crate::sync::UnsafeCell<*mut Waiter>,
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
