//! The shared flight, pinned: exactly one poller drives the loader future
//! (once per wake-up, not once per waiter poll), every waiter is woken
//! wherever it was last polled, and re-registering the same waker is free.

use crate::rig::*;
use fairgate::singleflight::{Clock, ManualClock, Source, StaleCache, StaleReason};
use futures::task::noop_waker;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// Waiters polled again and again while the backend is silent never poll the
/// loader future: only a wake-up of the loader lets one waiter poll it.
/// Fails if the guard `polling || !dirty || fut.is_none()` lets a waiter
/// poll without a wake-up (either `||` turned into `&&`).
#[test]
fn loader_future_is_polled_once_per_wake_up_not_per_waiter_poll() {
    bounded(|| {
        let (rig, _clock, cache) = setup();
        let mut waiters: Vec<_> = (0..4).map(|_| get(&cache, 1)).collect();
        for w in &mut waiters {
            assert!(poll_once(w).is_pending());
        }
        // The first poll of the first waiter ran the loader future once.
        assert_eq!(rig.polls.load(Ordering::SeqCst), 1);
        for _ in 0..5 {
            for w in &mut waiters {
                assert!(poll_once(w).is_pending());
            }
        }
        assert_eq!(
            rig.polls.load(Ordering::SeqCst),
            1,
            "a waiter polled the loader future although nothing woke it"
        );
        assert_eq!(rig.calls(), 1);
        assert!(rig.release(Reply::Ok(9)));
        // The wake-up marks the flight dirty: the next waiter polls once and
        // completes it; the others read the result.
        for w in &mut waiters {
            assert_eq!(*now(w).unwrap().value, 9);
        }
        assert_eq!(rig.polls.load(Ordering::SeqCst), 2);
    });
}

/// A waiter that moved to another task (polled with a different waker) is
/// woken there, not at its old task. Every waiter is woken wherever it was
/// last polled. Fails if `register` keeps the first waker (`will_wake`
/// guard replaced by `true`).
#[test]
fn every_waiter_is_woken_where_it_was_last_polled() {
    bounded(|| {
        let (rig, _clock, cache) = setup();
        let mut leader = get(&cache, 1);
        let mut joiner = get(&cache, 1);
        let (old_l, old_j) = (Tally::new(), Tally::new());
        let (new_l, new_j) = (Tally::new(), Tally::new());
        assert!(poll_with(&mut leader, &old_l.waker()).is_pending());
        assert!(poll_with(&mut joiner, &old_j.waker()).is_pending());
        // Both move to other tasks.
        assert!(poll_with(&mut leader, &new_l.waker()).is_pending());
        assert!(poll_with(&mut joiner, &new_j.waker()).is_pending());
        assert!(rig.release(Reply::Ok(3)));
        assert_eq!(new_l.wakes(), 1, "the leader's new task was not woken");
        assert_eq!(new_j.wakes(), 1, "the joiner's new task was not woken");
        assert_eq!(old_l.wakes() + old_j.wakes(), 0, "an old task was woken");
        assert_eq!(now(leader).unwrap().source, Source::Loaded);
        assert_eq!(now(joiner).unwrap().source, Source::Joined);
    });
}

/// Polling a waiter again with the same waker keeps the registered one: no
/// clone per poll. Fails if `register` always clones (`will_wake` guard
/// replaced by `false`).
#[test]
fn repolling_with_the_same_waker_does_not_clone_it() {
    bounded(|| {
        let (rig, _clock, cache) = setup();
        let mut leader = get(&cache, 1);
        assert!(poll_once(&mut leader).is_pending());
        let mut joiner = get(&cache, 1);
        let tally = Tally::new();
        let waker = tally.waker();
        assert!(poll_with(&mut joiner, &waker).is_pending());
        assert_eq!(tally.clones(), 1);
        for _ in 0..10 {
            assert!(poll_with(&mut joiner, &waker).is_pending());
        }
        assert_eq!(tally.clones(), 1, "the same waker was cloned again");
        rig.release(Reply::Ok(1));
        assert_eq!(tally.wakes(), 1);
        assert!(now(joiner).is_ok());
        drop(leader);
    });
}

/// After every waiter of a refresh is dropped (no spawner), the flight is
/// cancelled: once the interval allows it, the next caller starts a new
/// refresh instead of being told one is running.
#[test]
fn cancelled_refresh_is_not_reported_as_running() {
    bounded(|| {
        let (rig, clock, cache) = setup();
        populate(&rig, &cache, 1, 1);
        clock.advance(Duration::from_secs(10));
        let mut trigger = get(&cache, 1);
        assert!(poll_with(&mut trigger, &noop_waker()).is_pending());
        drop(trigger);
        assert!(!rig.release(Reply::Ok(0)), "the cancelled load still runs");
        assert_eq!(cache.stats().loads_abandoned, 1);
        assert_eq!(cache.stats().in_flight, 0);
        // Inside the interval: throttled, not "revalidating".
        let hit = now(cache.get(&1)).unwrap();
        assert_eq!(hit.source, Source::Stale(StaleReason::Throttled));
        clock.advance(Duration::from_secs(5));
        let mut again = get(&cache, 1);
        assert!(poll_once(&mut again).is_pending());
        assert_eq!(rig.calls(), 3, "no new refresh after the cancelled one");
        assert!(rig.release(Reply::Ok(2)));
        assert_eq!(*now(again).unwrap().value, 2);
    });
}

/// A clock that, once armed, stops the next thread that reads it until the
/// test lets it go: it holds the cancel hook of a flight between "the flight
/// is cancelled" and "the cache forgets it".
#[derive(Clone)]
struct GateClock {
    manual: ManualClock,
    gate: Arc<Gate>,
}

struct Gate {
    armed: AtomicBool,
    entered: Mutex<Option<mpsc::Sender<()>>>,
    go: Mutex<Option<mpsc::Receiver<()>>>,
}

impl Clock for GateClock {
    fn now(&self) -> Instant {
        self.manual.now()
    }
    fn nanos_since(&self, origin: Instant) -> u64 {
        if self.gate.armed.swap(false, Ordering::SeqCst) {
            let entered = self.gate.entered.lock().unwrap().take().unwrap();
            let go = self.gate.go.lock().unwrap().take().unwrap();
            entered.send(()).unwrap();
            go.recv().unwrap();
        }
        self.manual.nanos_since(origin)
    }
}

/// A caller that finds a flight already cancelled, before its cancel hook
/// has removed it from the entry, must not treat it as a running refresh.
/// Deterministic: the hook is held inside its clock read. Fails if
/// `Flight::is_cancelled` always answers `false` (the caller is then told
/// `Revalidating` although nothing runs).
#[test]
fn flight_cancelled_but_not_yet_forgotten_is_not_running() {
    bounded(|| {
        let rig = Rig::new();
        let manual = ManualClock::new();
        let (entered_tx, entered_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel();
        let clock = GateClock {
            manual: manual.clone(),
            gate: Arc::new(Gate {
                armed: AtomicBool::new(false),
                entered: Mutex::new(Some(entered_tx)),
                go: Mutex::new(Some(go_rx)),
            }),
        };
        let cache = StaleCache::builder(Gated(Arc::clone(&rig)))
            .policy(policy())
            .clock(clock.clone())
            .build();
        populate(&rig, &cache, 1, 1);
        manual.advance(Duration::from_secs(10));
        let mut trigger = get(&cache, 1);
        assert!(poll_once(&mut trigger).is_pending());
        std::thread::scope(|s| {
            clock.gate.armed.store(true, Ordering::SeqCst);
            // Dropping the only waiter cancels the flight; its hook then
            // reads the clock and stops there.
            let dropper = s.spawn(move || drop(trigger));
            entered_rx.recv().unwrap();
            let got = now(cache.get(&1)).unwrap().source;
            let peeked = cache.peek(&1).unwrap().source;
            // Let the hook finish before asserting, so a failure cannot hang.
            go_tx.send(()).unwrap();
            assert_eq!(
                got,
                Source::Stale(StaleReason::Throttled),
                "a cancelled flight was reported as a running refresh"
            );
            assert_eq!(peeked, Source::Stale(StaleReason::Throttled));
            dropper.join().unwrap();
        });
        assert_eq!(cache.stats().loads_abandoned, 1);
    });
}
