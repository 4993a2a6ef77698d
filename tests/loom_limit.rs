//! Loom models of the `Limiter`: the exact queue bound under racing acquirers, shrink
//! against concurrent releases and acquires, grow against waiters and releases, and
//! concurrent resizes. Each model ends by draining everything and checking that the
//! semaphore holds exactly the final capacity (loom does not check permit leaks itself).
//!
//! Run: `RUSTFLAGS="--cfg loom -C debug-assertions" cargo test --release --features limit --test loom_limit`
#![cfg(loom)]

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use fairgate::limit::{Acquire, LimitPermit, Limiter, RejectReason, Rejected};
use loom::thread;

/// Runs a model with a preemption bound (`bound` unless `LOOM_MAX_PREEMPTIONS` is set).
fn model(bound: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(bound);
    }
    builder.check(f);
}

fn poll_once(f: &mut Pin<Box<Acquire>>) -> Poll<Result<LimitPermit, Rejected>> {
    f.as_mut().poll(&mut Context::from_waker(Waker::noop()))
}

/// An acquire that has been polled once and is queued.
fn queued(limiter: &Limiter) -> Pin<Box<Acquire>> {
    let mut f = Box::pin(limiter.acquire());
    assert!(poll_once(&mut f).is_pending(), "expected to queue");
    f
}

/// Nothing out, nothing queued, nothing owed, exactly `n` permits in the semaphore and
/// exactly `n` can be taken.
fn assert_at_rest(limiter: &Limiter, n: usize) {
    assert_eq!(
        (limiter.in_flight(), limiter.waiting()),
        (0, 0),
        "counts not back to 0"
    );
    assert_eq!(limiter.__debt(), 0, "debt left over");
    assert_eq!(limiter.__total_permits(), n, "permits leaked or invented");
    let permits: Vec<_> = (0..n).map(|_| limiter.try_acquire().unwrap()).collect();
    assert!(limiter.try_acquire().is_err(), "more than {n} permits");
    drop(permits);
}

/// k = 2 waiters allowed, one already queued (k - 1), two acquirers race for the last slot:
/// exactly one queues, the other is refused with `QueueFull` and leaves no trace.
#[test]
fn queue_bound_is_exact_when_acquirers_race_at_k_minus_1() {
    model(4, || {
        let limiter = Limiter::builder("q")
            .capacity(1)
            .max_queue(Some(2))
            .build()
            .unwrap();
        let held = limiter.try_acquire().unwrap();
        let first = queued(&limiter);
        let racer = |limiter: Limiter| {
            move || {
                let mut f = Box::pin(limiter.acquire());
                let outcome = match poll_once(&mut f) {
                    Poll::Pending => None,
                    Poll::Ready(Err(r)) => Some(r.reason()),
                    Poll::Ready(Ok(_)) => panic!("admitted past a held permit"),
                };
                assert!(limiter.waiting() <= 2, "queue bound exceeded");
                (outcome, f)
            }
        };
        let a = thread::spawn(racer(limiter.clone()));
        let b = thread::spawn(racer(limiter.clone()));
        let (ra, fa) = a.join().unwrap();
        let (rb, fb) = b.join().unwrap();
        let outcomes = [ra, rb];
        assert_eq!(
            outcomes.iter().filter(|o| o.is_none()).count(),
            1,
            "exactly one racer queues: {outcomes:?}"
        );
        assert!(outcomes.contains(&Some(RejectReason::QueueFull)));
        assert_eq!(limiter.waiting(), 2, "a refused acquirer left a trace");
        // FIFO: the permit goes to the first waiter.
        drop(held);
        let (mut queued_racer, rest) = if ra.is_none() { (fa, fb) } else { (fb, fa) };
        drop(rest);
        let mut first = first;
        let p = match poll_once(&mut first) {
            Poll::Ready(Ok(p)) => p,
            other => panic!("head waiter not granted: {:?}", other.map(|r| r.map(drop))),
        };
        assert!(poll_once(&mut queued_racer).is_pending());
        drop(p);
        assert!(matches!(poll_once(&mut queued_racer), Poll::Ready(Ok(_))));
        drop((first, queued_racer));
        assert_at_rest(&limiter, 1);
    });
}

/// Capacity 3, two permits out (one free). One thread shrinks to 1 while another releases
/// a permit and a third tries to acquire. Nothing leaks or is invented, the admissions
/// never exceed the old capacity, and once the work drains exactly 1 permit is left.
#[test]
fn shrink_races_releases_and_acquires() {
    model(4, || {
        let limiter = Limiter::builder("s").capacity(3).build().unwrap();
        let p1 = limiter.try_acquire().unwrap();
        let p2 = limiter.try_acquire().unwrap();
        let shrink = thread::spawn({
            let l = limiter.clone();
            move || l.set_capacity(1).unwrap()
        });
        let release = thread::spawn(move || drop(p1));
        let admitted = limiter.try_acquire().ok();
        assert!(limiter.in_flight() <= 3);
        shrink.join().unwrap();
        release.join().unwrap();
        assert_eq!(limiter.capacity(), 1);
        // The shrink has completed and the release too: with p2 (and maybe `admitted`)
        // out, nobody else gets in.
        assert!(
            limiter.try_acquire().is_err(),
            "admitted above the new capacity"
        );
        drop((p2, admitted));
        assert_at_rest(&limiter, 1);
    });
}

/// A shrink below the in-flight count with a waiter queued, racing a release: whichever
/// comes first, the waiter is admitted only once the in-flight work is under the new
/// capacity, and the totals end exact.
#[test]
fn shrink_with_a_waiter_races_a_release() {
    model(4, || {
        let limiter = Limiter::builder("w").capacity(2).build().unwrap();
        let p1 = limiter.try_acquire().unwrap();
        let p2 = limiter.try_acquire().unwrap();
        let mut waiter = queued(&limiter);
        let shrink = thread::spawn({
            let l = limiter.clone();
            move || l.set_capacity(1).unwrap()
        });
        let release = thread::spawn(move || drop(p1));
        shrink.join().unwrap();
        release.join().unwrap();
        drop(p2);
        let p = match poll_once(&mut waiter) {
            Poll::Ready(Ok(p)) => p,
            _ => panic!("waiter not admitted after all work drained"),
        };
        assert_eq!(limiter.in_flight(), 1);
        assert!(limiter.try_acquire().is_err());
        drop((p, waiter));
        assert_at_rest(&limiter, 1);
    });
}

/// A grow that must pay a shrink's debt races a release that pays the same debt, with a
/// waiter queued: the debt is paid exactly once, the waiter is admitted and the final
/// capacity is exact.
#[test]
fn grow_races_a_debt_paying_release_with_a_waiter() {
    model(4, || {
        let limiter = Limiter::builder("g").capacity(2).build().unwrap();
        let p1 = limiter.try_acquire().unwrap();
        let p2 = limiter.try_acquire().unwrap();
        limiter.set_capacity(1).unwrap(); // debt 1
        let mut waiter = queued(&limiter);
        let grow = thread::spawn({
            let l = limiter.clone();
            move || l.set_capacity(3).unwrap()
        });
        let release = thread::spawn(move || drop(p1));
        grow.join().unwrap();
        release.join().unwrap();
        let p = match poll_once(&mut waiter) {
            Poll::Ready(Ok(p)) => p,
            _ => panic!("grow did not reach the waiter"),
        };
        // p2 and the waiter out, capacity 3: exactly one more.
        let extra = limiter.try_acquire().unwrap();
        assert!(limiter.try_acquire().is_err());
        drop((p, p2, extra, waiter));
        assert_at_rest(&limiter, 3);
    });
}

/// A grow races a queued acquisition being dropped: the new permits go to the remaining
/// waiter or stay free; none is lost with the dropped one.
#[test]
fn grow_races_a_cancelled_waiter() {
    model(4, || {
        let limiter = Limiter::builder("c").capacity(1).build().unwrap();
        let held = limiter.try_acquire().unwrap();
        let first = queued(&limiter);
        let mut second = queued(&limiter);
        let grow = thread::spawn({
            let l = limiter.clone();
            move || l.set_capacity(2).unwrap()
        });
        let cancel = thread::spawn(move || drop(first));
        grow.join().unwrap();
        cancel.join().unwrap();
        let p = match poll_once(&mut second) {
            Poll::Ready(Ok(p)) => p,
            _ => panic!("the remaining waiter did not get the new permit"),
        };
        assert!(limiter.try_acquire().is_err());
        assert_eq!(limiter.waiting(), 0);
        drop((held, p, second));
        assert_at_rest(&limiter, 2);
    });
}

/// Two resizes race with work in flight: they commute, the last installed value wins and
/// the semaphore ends with exactly that many permits.
#[test]
fn concurrent_resizes_commute() {
    model(4, || {
        let limiter = Limiter::builder("r").capacity(2).build().unwrap();
        let p1 = limiter.try_acquire().unwrap();
        let p2 = limiter.try_acquire().unwrap();
        let a = thread::spawn({
            let l = limiter.clone();
            move || l.set_capacity(1).unwrap()
        });
        let b = thread::spawn({
            let l = limiter.clone();
            move || l.set_capacity(3).unwrap()
        });
        drop(p1);
        a.join().unwrap();
        b.join().unwrap();
        let n = limiter.capacity();
        assert!(n == 1 || n == 3);
        drop(p2);
        assert_at_rest(&limiter, n);
    });
}

/// A switch to passthrough (capacity 0) races a release with a waiter queued: the waiter is
/// admitted either way; switching back to 1 counts the work in flight, and the totals end
/// exact.
#[test]
fn passthrough_switch_races_a_release_and_a_waiter() {
    model(4, || {
        let limiter = Limiter::builder("p").capacity(1).build().unwrap();
        let held = limiter.try_acquire().unwrap();
        let mut waiter = queued(&limiter);
        let open = thread::spawn({
            let l = limiter.clone();
            move || l.set_capacity(0).unwrap()
        });
        let release = thread::spawn(move || drop(held));
        open.join().unwrap();
        release.join().unwrap();
        let p = match poll_once(&mut waiter) {
            Poll::Ready(Ok(p)) => p,
            _ => panic!("passthrough did not admit the waiter"),
        };
        let extra = limiter.try_acquire().expect("passthrough refused");
        limiter.set_capacity(1).unwrap();
        assert!(
            limiter.try_acquire().is_err(),
            "admitted above capacity 1 with 2 out"
        );
        drop((p, extra, waiter));
        assert_at_rest(&limiter, 1);
    });
}

/// A shrink races a release while a third acquirer may queue: the acquirer is admitted
/// once the rest of the work has drained, and never alongside it above the new capacity.
#[test]
fn shrink_races_a_release_and_a_queueing_acquire() {
    model(4, || {
        let limiter = Limiter::builder("sq").capacity(2).build().unwrap();
        let p1 = limiter.try_acquire().unwrap();
        let p2 = limiter.try_acquire().unwrap();
        let shrink = thread::spawn({
            let l = limiter.clone();
            move || l.set_capacity(1).unwrap()
        });
        let release = thread::spawn(move || drop(p1));
        let mut acquire = Box::pin(limiter.acquire());
        let admitted = match poll_once(&mut acquire) {
            Poll::Ready(Ok(p)) => Some(p),
            Poll::Ready(Err(r)) => panic!("refused: {r}"),
            Poll::Pending => None,
        };
        shrink.join().unwrap();
        release.join().unwrap();
        drop(p2);
        let p = match admitted {
            Some(p) => p,
            None => match poll_once(&mut acquire) {
                Poll::Ready(Ok(p)) => p,
                _ => panic!("queued acquirer not admitted after all work drained"),
            },
        };
        assert_eq!(limiter.in_flight(), 1);
        assert!(limiter.try_acquire().is_err());
        drop((p, acquire));
        assert_at_rest(&limiter, 1);
    });
}

/// A full queue (k = 1) whose only waiter is dropped while another acquirer races for the
/// slot: the racer is either refused (slot not yet returned) or queued, the bound holds at
/// every step, and nothing is left behind.
#[test]
fn queue_slot_returned_by_a_cancel_races_a_new_acquirer() {
    model(4, || {
        let limiter = Limiter::builder("k1")
            .capacity(1)
            .max_queue(Some(1))
            .build()
            .unwrap();
        let held = limiter.try_acquire().unwrap();
        let waiter = queued(&limiter);
        let cancel = thread::spawn(move || drop(waiter));
        let mut racer = Box::pin(limiter.acquire());
        let queued_racer = match poll_once(&mut racer) {
            Poll::Pending => true,
            Poll::Ready(Err(r)) => {
                assert_eq!(r.reason(), RejectReason::QueueFull);
                false
            }
            Poll::Ready(Ok(_)) => panic!("admitted past a held permit"),
        };
        assert!(limiter.waiting() <= 1, "queue bound exceeded");
        cancel.join().unwrap();
        assert_eq!(limiter.waiting(), usize::from(queued_racer));
        drop(held);
        if queued_racer {
            assert!(matches!(poll_once(&mut racer), Poll::Ready(Ok(_))));
        }
        drop(racer);
        assert_at_rest(&limiter, 1);
    });
}
