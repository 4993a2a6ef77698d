//! The `Observer` trait sees every event: acquired, rejected (by reason), canceled,
//! released, and the counts after each.
#![cfg(not(loom))]

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fairgate::limit::{Limiter, Observer, RejectReason};

async fn bounded<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .expect("test exceeded its time bound")
}

#[derive(Clone, Debug, PartialEq)]
enum Event {
    Acquired(Duration),
    Rejected(RejectReason, Duration),
    Canceled(Duration),
    Released(Duration),
    Counts(usize, usize, usize),
}

#[derive(Default)]
struct Recorder(Mutex<Vec<Event>>);

impl Recorder {
    /// Takes the events so far, leaving the log empty.
    fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
    fn push(&self, limiter: &str, e: Event) {
        assert_eq!(limiter, "obs");
        self.0.lock().unwrap().push(e);
    }
}

impl Observer for Recorder {
    fn on_acquired(&self, limiter: &str, waited: Duration) {
        self.push(limiter, Event::Acquired(waited));
    }
    fn on_rejected(&self, limiter: &str, reason: RejectReason, waited: Duration) {
        self.push(limiter, Event::Rejected(reason, waited));
    }
    fn on_canceled(&self, limiter: &str, waited: Duration) {
        self.push(limiter, Event::Canceled(waited));
    }
    fn on_released(&self, limiter: &str, held: Duration) {
        self.push(limiter, Event::Released(held));
    }
    fn on_counts(&self, limiter: &str, in_flight: usize, waiting: usize, capacity: usize) {
        self.push(limiter, Event::Counts(in_flight, waiting, capacity));
    }
}

#[tokio::test]
async fn every_event_reaches_the_observer() {
    bounded(async {
        let rec = Arc::new(Recorder::default());
        let limiter = Limiter::builder("obs")
            .capacity(1)
            .max_queue(Some(1))
            .queue_timeout(Duration::from_millis(40))
            .observer(rec.clone())
            .build()
            .unwrap();

        let held = limiter.acquire().await.unwrap();
        assert_eq!(
            rec.take(),
            [Event::Acquired(Duration::ZERO), Event::Counts(1, 0, 1)]
        );

        // Queue timeout, with the wait it took.
        let err = limiter.acquire().await.unwrap_err();
        assert_eq!(err.reason(), RejectReason::QueueTimeout);
        assert_eq!(
            rec.take(),
            [
                Event::Rejected(RejectReason::QueueTimeout, err.waited()),
                Event::Counts(1, 0, 1)
            ]
        );
        assert!(err.waited() >= Duration::from_millis(40));

        // Queue full while one waits; then that waiter is dropped: canceled.
        let mut queued = Box::pin(limiter.acquire());
        assert!(futures::poll!(&mut queued).is_pending());
        assert!(limiter.try_acquire().is_err());
        assert_eq!(
            rec.take(),
            [
                Event::Rejected(RejectReason::QueueFull, Duration::ZERO),
                Event::Counts(1, 1, 1)
            ]
        );
        drop(queued);
        let events = rec.take();
        assert!(
            matches!(events[..], [Event::Canceled(_), Event::Counts(1, 0, 1)]),
            "{events:?}"
        );

        // Release reports the hold time.
        let before = Instant::now();
        tokio::time::sleep(Duration::from_millis(5)).await;
        drop(held);
        let events = rec.take();
        match events[..] {
            [Event::Released(held), Event::Counts(0, 0, 1)] => {
                assert!(held >= Duration::from_millis(5) && held <= before.elapsed() + held)
            }
            _ => panic!("{events:?}"),
        }

        // A grant after waiting reports the wait.
        let first = limiter.acquire().await.unwrap();
        let waiter = tokio::spawn({
            let l = limiter.clone();
            async move { l.acquire().await.map(|p| p.waited()) }
        });
        while limiter.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        rec.take();
        drop(first);
        let waited = waiter.await.unwrap().unwrap();
        let events = rec.take();
        assert_eq!(events[0], Event::Released(events_held(&events[0])));
        assert!(events.contains(&Event::Acquired(waited)), "{events:?}");
        assert_eq!(events.last(), Some(&Event::Counts(0, 0, 1)));

        // Resizing reports the counts; deadline and close report their reasons.
        limiter.set_capacity(2).unwrap();
        assert_eq!(rec.take(), [Event::Counts(0, 0, 2)]);
        let a = limiter.try_acquire().unwrap();
        let b = limiter.try_acquire().unwrap();
        rec.take();
        let err = limiter.acquire_until(Instant::now()).await.unwrap_err();
        assert_eq!(err.reason(), RejectReason::DeadlineExceeded);
        assert_eq!(
            rec.take(),
            [
                Event::Rejected(RejectReason::DeadlineExceeded, Duration::ZERO),
                Event::Counts(2, 0, 2)
            ]
        );
        limiter.close();
        assert!(limiter.try_acquire().is_err());
        assert_eq!(
            rec.take(),
            [
                Event::Rejected(RejectReason::Closed, Duration::ZERO),
                Event::Counts(2, 0, 2)
            ]
        );
        drop((a, b));
    })
    .await;
}

fn events_held(e: &Event) -> Duration {
    match e {
        Event::Released(held) => *held,
        other => panic!("expected a release, got {other:?}"),
    }
}

#[test]
fn without_an_observer_nothing_is_reported_and_defaults_are_no_ops() {
    struct Nothing;
    impl Observer for Nothing {}
    let limiter = Limiter::with_observer(
        fairgate::limit::LimiterConfig::builder("obs")
            .capacity(1)
            .config()
            .unwrap(),
        Arc::new(Nothing),
    );
    let p = limiter.try_acquire().unwrap();
    assert!(limiter.try_acquire().is_err());
    drop(p);
    assert_eq!(limiter.in_flight(), 0);
}
