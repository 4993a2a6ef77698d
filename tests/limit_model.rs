//! A proptest of `Limiter` against a sequential reference model: capacity, the queue bound,
//! FIFO handoff, shrink (debt) and grow, passthrough (capacity 0), soft mode and
//! cancellation of queued and granted-but-unpolled acquisitions. After every operation the
//! outcome and every count must match the model.
#![cfg(not(loom))]

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use fairgate::limit::{Acquire, LimitPermit, Limiter, Mode, RejectReason};
use proptest::prelude::*;

/// Stands in for the virtual capacity of a passthrough; larger than any run's demand.
const PASSTHROUGH: usize = 1 << 20;

fn effective(capacity: usize) -> usize {
    if capacity == 0 {
        PASSTHROUGH
    } else {
        capacity
    }
}

#[derive(Clone, Debug)]
enum Op {
    Acquire,
    TryAcquire,
    Release(usize),
    Cancel(usize),
    Poll(usize),
    SetCapacity(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Acquire),
        1 => Just(Op::TryAcquire),
        3 => any::<usize>().prop_map(Op::Release),
        1 => any::<usize>().prop_map(Op::Cancel),
        2 => any::<usize>().prop_map(Op::Poll),
        1 => (0usize..6).prop_map(Op::SetCapacity),
    ]
}

/// What the limiter should do, one operation at a time.
#[derive(Debug)]
struct Model {
    soft: bool,
    max_queue: Option<usize>,
    target: usize,
    free: usize,
    debt: usize,
    held: usize,
    /// Waiting, not granted (FIFO).
    queue: VecDeque<u32>,
    /// Granted by a release or grow but not polled yet: still counted as waiting.
    granted: HashSet<u32>,
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Admitted,
    Queued,
    Rejected(RejectReason),
}

impl Model {
    fn waiting(&self) -> usize {
        self.queue.len() + self.granted.len()
    }

    fn admit_or_queue(&mut self, id: u32, may_queue: bool) -> Outcome {
        if self.soft {
            self.held += 1;
            return Outcome::Admitted;
        }
        if self.free > 0 && self.queue.is_empty() {
            self.free -= 1;
            self.held += 1;
            return Outcome::Admitted;
        }
        let room = self.max_queue.is_none_or(|k| self.waiting() < k);
        if may_queue && room {
            self.queue.push_back(id);
            Outcome::Queued
        } else {
            Outcome::Rejected(RejectReason::QueueFull)
        }
    }

    /// A permit returns: absorbed by debt, else handed to the oldest waiter, else free.
    fn give_back(&mut self) {
        if self.soft {
            return;
        }
        if self.debt > 0 {
            self.debt -= 1;
        } else {
            self.hand_on(1);
        }
    }

    fn hand_on(&mut self, mut n: usize) {
        while n > 0 {
            match self.queue.pop_front() {
                Some(w) => {
                    self.granted.insert(w);
                }
                None => {
                    self.free += n;
                    return;
                }
            }
            n -= 1;
        }
    }

    fn set_capacity(&mut self, n: usize) {
        let (from, to) = (effective(self.target), effective(n));
        self.target = n;
        if self.soft {
            return;
        }
        if to > from {
            let paid = self.debt.min(to - from);
            self.debt -= paid;
            self.hand_on(to - from - paid);
        } else {
            self.debt += from - to;
            let forgotten = if self.queue.is_empty() {
                self.free.min(from - to)
            } else {
                0
            };
            self.free -= forgotten;
            self.debt -= forgotten;
        }
    }
}

fn poll(f: &mut Pin<Box<Acquire>>) -> Poll<Result<LimitPermit, fairgate::limit::Rejected>> {
    f.as_mut().poll(&mut Context::from_waker(Waker::noop()))
}

fn run(capacity: usize, mode: Mode, max_queue: Option<usize>, ops: Vec<Op>) {
    let limiter = Limiter::builder("model")
        .capacity(capacity)
        .mode(mode)
        .max_queue(max_queue)
        .build()
        .unwrap();
    let mut m = Model {
        soft: mode == Mode::Soft,
        max_queue,
        target: capacity,
        free: if mode == Mode::Soft {
            0
        } else {
            effective(capacity)
        },
        debt: 0,
        held: 0,
        queue: VecDeque::new(),
        granted: HashSet::new(),
    };
    let mut held: Vec<LimitPermit> = Vec::new();
    let mut futures: Vec<(u32, Pin<Box<Acquire>>)> = Vec::new();
    let mut next_id = 0u32;
    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Acquire | Op::TryAcquire => {
                let id = next_id;
                next_id += 1;
                let expected = m.admit_or_queue(id, matches!(op, Op::Acquire));
                let actual = if matches!(op, Op::Acquire) {
                    let mut f = Box::pin(limiter.acquire());
                    match poll(&mut f) {
                        Poll::Ready(Ok(p)) => {
                            held.push(p);
                            Outcome::Admitted
                        }
                        Poll::Ready(Err(r)) => Outcome::Rejected(r.reason()),
                        Poll::Pending => {
                            futures.push((id, f));
                            Outcome::Queued
                        }
                    }
                } else {
                    match limiter.try_acquire() {
                        Ok(p) => {
                            held.push(p);
                            Outcome::Admitted
                        }
                        Err(r) => Outcome::Rejected(r.reason()),
                    }
                };
                assert_eq!(actual, expected, "step {step}: {op:?}, model {m:?}");
            }
            Op::Release(i) => {
                if !held.is_empty() {
                    drop(held.swap_remove(i % held.len()));
                    m.held -= 1;
                    m.give_back();
                }
            }
            Op::Cancel(i) => {
                if !futures.is_empty() {
                    let (id, f) = futures.swap_remove(i % futures.len());
                    drop(f);
                    if m.granted.remove(&id) {
                        m.give_back();
                    } else {
                        m.queue.retain(|w| *w != id);
                    }
                }
            }
            Op::Poll(i) => {
                if !futures.is_empty() {
                    let at = i % futures.len();
                    let id = futures[at].0;
                    let granted = m.granted.remove(&id);
                    match poll(&mut futures[at].1) {
                        Poll::Ready(Ok(p)) => {
                            assert!(granted, "step {step}: waiter {id} admitted out of turn");
                            held.push(p);
                            m.held += 1;
                            drop(futures.swap_remove(at));
                        }
                        Poll::Ready(Err(r)) => panic!("step {step}: waiter {id} rejected: {r}"),
                        Poll::Pending => assert!(!granted, "step {step}: waiter {id} not granted"),
                    }
                }
            }
            Op::SetCapacity(n) => {
                limiter.set_capacity(n).unwrap();
                m.set_capacity(n);
            }
        }
        // A permit granted to a waiter whose future has not run yet is out of the semaphore:
        // in flight already (and its waiter still waiting), as the module docs say.
        assert_eq!(
            limiter.in_flight(),
            m.held + m.granted.len(),
            "in_flight after step {step}: {m:?}"
        );
        assert_eq!(
            limiter.waiting(),
            m.waiting(),
            "waiting after step {step}: {m:?}"
        );
        assert_eq!(limiter.capacity(), m.target, "capacity after step {step}");
        assert_eq!(limiter.__debt(), m.debt, "debt after step {step}: {m:?}");
        if let Some(k) = max_queue {
            assert!(limiter.waiting() <= k);
        }
        if !m.soft && m.target > 0 && m.debt == 0 {
            assert!(
                m.held + m.granted.len() <= m.target,
                "capacity exceeded: {m:?}"
            );
        }
    }
    // Everything drains back: nothing leaked, nothing invented.
    drop(futures);
    drop(held);
    assert_eq!((limiter.in_flight(), limiter.waiting()), (0, 0));
    limiter.set_capacity(3).unwrap();
    if mode == Mode::Hard {
        assert_eq!(limiter.__debt(), 0);
        assert_eq!(limiter.__total_permits(), 3);
        let permits: Vec<_> = (0..3).map(|_| limiter.try_acquire().unwrap()).collect();
        assert!(limiter.try_acquire().is_err());
        drop(permits);
    }
}

fn config() -> impl Strategy<Value = (usize, Mode, Option<usize>)> {
    prop_oneof![
        3 => (1usize..5, proptest::option::of(0usize..4)).prop_map(|(c, q)| (c, Mode::Hard, q)),
        1 => Just((0, Mode::Hard, None)),
        1 => (0usize..4).prop_map(|c| (c, Mode::Soft, None)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn limiter_matches_the_reference_model(
        (capacity, mode, max_queue) in config(),
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        run(capacity, mode, max_queue, ops);
    }
}
