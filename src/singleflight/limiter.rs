//! A small counting limiter for `Policy::max_concurrent_loads`.
//!
//! Deliberately simple: a release wakes every queued acquirer and they race
//! for the permit. That is cancel-safe without any hand-off bookkeeping, and
//! the number of queued acquirers is bounded by the number of distinct keys
//! with a load in flight.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::vec::Vec;

use super::flight::lock;

pub(crate) struct Limiter {
    state: Mutex<LimState>,
}

struct LimState {
    available: usize,
    wakers: Vec<Option<Waker>>,
    free: Vec<usize>,
}

impl Limiter {
    pub(crate) fn new(permits: usize) -> Arc<Self> {
        Arc::new(Limiter {
            state: Mutex::new(LimState {
                available: permits,
                wakers: Vec::new(),
                free: Vec::new(),
            }),
        })
    }

    pub(crate) fn acquire(self: &Arc<Self>) -> Acquire {
        Acquire {
            limiter: Arc::clone(self),
            slot: None,
        }
    }
}

pub(crate) struct Acquire {
    limiter: Arc<Limiter>,
    slot: Option<usize>,
}

pub(crate) struct Permit {
    limiter: Arc<Limiter>,
}

impl Future for Acquire {
    type Output = Permit;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Permit> {
        let this = &mut *self;
        let mut st = lock(&this.limiter.state);
        if st.available > 0 {
            st.available -= 1;
            if let Some(slot) = this.slot.take() {
                st.wakers[slot] = None;
                st.free.push(slot);
            }
            drop(st);
            return Poll::Ready(Permit {
                limiter: Arc::clone(&this.limiter),
            });
        }
        let slot = match this.slot {
            Some(s) => s,
            None => {
                let s = match st.free.pop() {
                    Some(s) => s,
                    None => {
                        st.wakers.push(None);
                        st.wakers.len() - 1
                    }
                };
                this.slot = Some(s);
                s
            }
        };
        st.wakers[slot] = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Acquire {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            let mut st = lock(&self.limiter.state);
            st.wakers[slot] = None;
            st.free.push(slot);
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let wakers: Vec<Waker> = {
            let mut st = lock(&self.limiter.state);
            st.available += 1;
            st.wakers.iter_mut().filter_map(Option::take).collect()
        };
        for w in wakers {
            w.wake();
        }
    }
}
