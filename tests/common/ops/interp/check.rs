//! The interpreter's checks: the observable state against the model after every step, the
//! wake obligations of a step, and the final teardown that must get every permit back.

use std::sync::atomic::Ordering::SeqCst;

use fairgate::TryAcquireError;

use super::{Interp, Phase};

impl Interp<'_> {
    /// Credits the model's wake obligations of this step to the current wakers and checks that
    /// the waiters were woken in the model's (FIFO) order.
    pub(super) fn settle_wakes(&mut self) {
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
