//! `fairgate::tower::ConcurrencyLimit` with real tower services (`service_fn`, `Buffer`,
//! `Retry`, `Timeout`) on tokio: capacity, FIFO, rejections, cancellation, readiness and
//! retries. Every test is bounded in time; waits use signals (channels, counts), not sleeps.
#![cfg(not(loom))]

use std::collections::HashSet;
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use fairgate::limit::{Limiter, RejectReason, Rejected};
use fairgate::tower::{BoxError, ConcurrencyLimit, ConcurrencyLimitLayer};
use futures::{poll, FutureExt};
use tokio::sync::{mpsc, oneshot};
use tower::{service_fn, Layer, Service, ServiceBuilder, ServiceExt};

/// Fails the test instead of hanging it.
async fn bounded<F: Future>(fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .expect("test timed out (a permit leaked or a waiter was stranded?)")
}

/// Waits (yielding) until `cond` holds: for counts that have no channel of their own.
async fn until(mut cond: impl FnMut() -> bool) {
    bounded(async {
        while !cond() {
            tokio::task::yield_now().await;
        }
    })
    .await
}

fn reason(err: &BoxError) -> RejectReason {
    err.downcast_ref::<Rejected>()
        .unwrap_or_else(|| panic!("expected a Rejected, got {err}"))
        .reason()
}

/// A request to the probe: its id, and (optionally) a signal to wait for before finishing.
struct Job {
    id: u32,
    release: Option<oneshot::Receiver<()>>,
}

fn job(id: u32) -> Job {
    Job { id, release: None }
}

fn held(id: u32) -> (Job, oneshot::Sender<()>) {
    let (tx, rx) = oneshot::channel();
    (
        Job {
            id,
            release: Some(rx),
        },
        tx,
    )
}

/// What the probe service saw: calls, how many ran at once (and the peak), and the ids in
/// the order they started.
#[derive(Clone, Default)]
struct Probe {
    calls: Arc<AtomicUsize>,
    running: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    started: Arc<Mutex<Vec<u32>>>,
}

struct Running(Arc<AtomicUsize>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

impl Probe {
    /// A `service_fn` that records a job, waits for its release signal (if any), and
    /// returns its id.
    fn service(
        &self,
        started_tx: Option<mpsc::UnboundedSender<u32>>,
    ) -> impl Service<Job, Response = u32, Error = Infallible, Future: Send> + Clone + Send {
        let probe = self.clone();
        service_fn(move |job: Job| {
            let probe = probe.clone();
            let started_tx = started_tx.clone();
            async move {
                probe.calls.fetch_add(1, SeqCst);
                let now = probe.running.fetch_add(1, SeqCst) + 1;
                let _running = Running(probe.running.clone());
                probe.peak.fetch_max(now, SeqCst);
                probe.started.lock().unwrap().push(job.id);
                if let Some(tx) = started_tx {
                    let _ = tx.send(job.id);
                }
                if let Some(release) = job.release {
                    let _ = release.await;
                }
                Ok(job.id)
            }
        })
    }
}

fn limiter(capacity: usize, max_queue: Option<usize>) -> Limiter {
    Limiter::builder("test")
        .capacity(capacity)
        .max_queue(max_queue)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_is_enforced_under_concurrency() {
    let probe = Probe::default();
    let limiter = limiter(3, None);
    let svc = ConcurrencyLimitLayer::new(limiter.clone()).layer(probe.service(None));
    let mut tasks = Vec::new();
    for id in 0..64 {
        let svc = svc.clone();
        tasks.push(tokio::spawn(async move {
            svc.oneshot(job(id)).await.unwrap();
        }));
        // Work that takes a moment, so requests overlap.
        if id % 8 == 0 {
            tokio::task::yield_now().await;
        }
    }
    for t in tasks {
        bounded(t).await.unwrap();
    }
    assert_eq!(probe.calls.load(SeqCst), 64);
    assert!(
        probe.peak.load(SeqCst) <= 3,
        "peak {}",
        probe.peak.load(SeqCst)
    );
    assert_eq!((limiter.in_flight(), limiter.waiting()), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_is_reached_and_never_exceeded_with_held_requests() {
    let probe = Probe::default();
    let limiter = limiter(3, None);
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let svc = ConcurrencyLimit::new(probe.service(Some(started_tx)), limiter.clone());
    let mut releases = Vec::new();
    let mut tasks = Vec::new();
    for id in 0..10 {
        let (j, release) = held(id);
        releases.push(release);
        tasks.push(tokio::spawn(svc.clone().oneshot(j)));
    }
    // Exactly three start; the rest queue.
    for _ in 0..3 {
        bounded(started.recv()).await.unwrap();
    }
    until(|| limiter.waiting() == 7).await;
    assert_eq!((probe.running.load(SeqCst), limiter.in_flight()), (3, 3));
    assert!(started.try_recv().is_err());
    for r in releases {
        let _ = r.send(());
    }
    for t in tasks {
        bounded(t).await.unwrap().unwrap();
    }
    assert_eq!(probe.peak.load(SeqCst), 3);
    assert_eq!((limiter.in_flight(), limiter.waiting()), (0, 0));
}

#[tokio::test]
async fn requests_complete_in_fifo_order() {
    let probe = Probe::default();
    let limiter = limiter(1, None);
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let svc = ConcurrencyLimit::new(probe.service(Some(started_tx)), limiter.clone());

    let (first, release_first) = held(0);
    let head = tokio::spawn(svc.clone().oneshot(first));
    assert_eq!(bounded(started.recv()).await, Some(0));
    let mut queued = Vec::new();
    for id in 1..=16 {
        queued.push(tokio::spawn(svc.clone().oneshot(job(id))));
        // Each request joins the queue before the next is sent: the order is defined.
        until(|| limiter.waiting() == id as usize).await;
    }
    release_first.send(()).unwrap();
    bounded(head).await.unwrap().unwrap();
    for t in queued {
        bounded(t).await.unwrap().unwrap();
    }
    assert_eq!(*probe.started.lock().unwrap(), (0..=16).collect::<Vec<_>>());
}

#[tokio::test]
async fn requests_are_admitted_in_call_order_not_in_poll_order() {
    let probe = Probe::default();
    let limiter = limiter(1, None);
    let mut svc = ConcurrencyLimit::new(probe.service(None), limiter.clone());
    let held = limiter.try_acquire().unwrap();
    let mut futures = Vec::new();
    for id in 1..=8 {
        bounded(svc.ready()).await.unwrap();
        futures.push(svc.call(job(id)));
    }
    // Called in order 1..=8, and queued in that order by `call` itself ...
    assert_eq!(limiter.waiting(), 8);
    // ... so it does not matter that the futures are first polled in reverse.
    let tasks: Vec<_> = futures.into_iter().rev().map(tokio::spawn).collect();
    tokio::task::yield_now().await;
    drop(held);
    for t in tasks {
        bounded(t).await.unwrap().unwrap();
    }
    assert_eq!(*probe.started.lock().unwrap(), (1..=8).collect::<Vec<_>>());
}

#[tokio::test]
async fn queue_full_is_refused_at_once() {
    let probe = Probe::default();
    let limiter = limiter(1, Some(2));
    let mut svc = ConcurrencyLimit::new(probe.service(None), limiter.clone());

    let (first, release) = held(0);
    let head = tokio::spawn(svc.clone().oneshot(first));
    let waiters: Vec<_> = (1..=2)
        .map(|id| tokio::spawn(svc.clone().oneshot(job(id))))
        .collect();
    until(|| limiter.in_flight() == 1 && limiter.waiting() == 2).await;

    // The queue is full: the first poll already refuses, without waiting.
    svc.ready().await.unwrap();
    let err = svc
        .call(job(3))
        .now_or_never()
        .expect("refused on the first poll")
        .unwrap_err();
    assert_eq!(reason(&err), RejectReason::QueueFull);
    assert!(err.downcast_ref::<Rejected>().unwrap().waited().is_zero());
    assert_eq!(limiter.waiting(), 2, "a refused request leaves no trace");

    release.send(()).unwrap();
    bounded(head).await.unwrap().unwrap();
    for w in waiters {
        bounded(w).await.unwrap().unwrap();
    }
    assert_eq!(
        probe.calls.load(SeqCst),
        3,
        "the refused request never reached the service"
    );
    assert_eq!((limiter.in_flight(), limiter.waiting()), (0, 0));
}

#[tokio::test]
async fn queue_timeout_is_refused_and_leaves_the_queue() {
    let probe = Probe::default();
    let limiter = Limiter::builder("test")
        .capacity(1)
        .queue_timeout(Duration::from_millis(30))
        .build()
        .unwrap();
    let svc = ConcurrencyLimit::new(probe.service(None), limiter.clone());
    let (first, release) = held(0);
    let head = tokio::spawn(svc.clone().oneshot(first));
    until(|| limiter.in_flight() == 1).await;

    let err = bounded(svc.clone().oneshot(job(1))).await.unwrap_err();
    assert_eq!(reason(&err), RejectReason::QueueTimeout);
    assert_eq!(limiter.waiting(), 0);
    release.send(()).unwrap();
    bounded(head).await.unwrap().unwrap();
    assert_eq!(probe.calls.load(SeqCst), 1);
}

#[tokio::test]
async fn a_dropped_queued_request_leaves_the_queue() {
    let probe = Probe::default();
    let limiter = limiter(1, Some(1));
    let mut svc = ConcurrencyLimit::new(probe.service(None), limiter.clone());

    let (first, release) = held(0);
    let head = tokio::spawn(svc.clone().oneshot(first));
    until(|| limiter.in_flight() == 1).await;

    svc.ready().await.unwrap();
    let mut queued = Box::pin(svc.call(job(1)));
    assert!(poll!(queued.as_mut()).is_pending());
    assert_eq!(limiter.waiting(), 1);
    drop(queued);
    assert_eq!(limiter.waiting(), 0);

    // Its queue slot is free again (max_queue 1): another request may queue.
    let next = tokio::spawn(svc.clone().oneshot(job(2)));
    until(|| limiter.waiting() == 1).await;
    release.send(()).unwrap();
    bounded(head).await.unwrap().unwrap();
    assert_eq!(bounded(next).await.unwrap().unwrap(), 2);
    assert_eq!(
        *probe.started.lock().unwrap(),
        [0, 2],
        "the dropped request never ran"
    );
    assert_eq!((limiter.in_flight(), limiter.waiting()), (0, 0));
}

#[tokio::test]
async fn a_dropped_running_request_releases_its_permit() {
    let probe = Probe::default();
    let limiter = limiter(1, None);
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let mut svc = ConcurrencyLimit::new(probe.service(Some(started_tx)), limiter.clone());
    let (first, _never) = held(0);
    svc.ready().await.unwrap();
    let mut running = Box::pin(svc.call(first));
    assert!(poll!(running.as_mut()).is_pending());
    assert_eq!(bounded(started.recv()).await, Some(0));
    assert_eq!(limiter.in_flight(), 1);
    drop(running);
    assert_eq!((limiter.in_flight(), probe.running.load(SeqCst)), (0, 0));
}

#[tokio::test]
async fn the_permit_is_released_when_the_response_completes() {
    let limiter = limiter(1, None);
    let mut svc = ConcurrencyLimit::new(Probe::default().service(None), limiter.clone());
    svc.ready().await.unwrap();
    let mut fut = Box::pin(svc.call(job(7)));
    assert!(matches!(poll!(fut.as_mut()), Poll::Ready(Ok(7))));
    // The finished future is still alive, its permit is not.
    assert_eq!(limiter.in_flight(), 0);
    drop(fut);
}

#[tokio::test]
async fn poll_ready_never_takes_a_permit() {
    let limiter = limiter(1, Some(0));
    let svc = ConcurrencyLimit::new(Probe::default().service(None), limiter.clone());
    // Many ready, never-called clones hold nothing ...
    let mut clones: Vec<_> = (0..32).map(|_| svc.clone()).collect();
    for c in &mut clones {
        bounded(c.ready()).await.unwrap();
    }
    assert_eq!((limiter.in_flight(), limiter.waiting()), (0, 0));
    // ... and readiness does not wait for a permit either.
    let held = limiter.try_acquire().unwrap();
    let mut another = svc.clone();
    assert!(matches!(
        poll!(std::future::poll_fn(|cx| another.poll_ready(cx))),
        Poll::Ready(Ok(()))
    ));
    drop(held);
    // A request on one of the ready clones gets the one permit.
    let first = clones.pop().unwrap();
    assert_eq!(bounded(first.oneshot(job(1))).await.unwrap(), 1);
    assert_eq!(limiter.in_flight(), 0);
}

/// A real service whose readiness belongs to the instance that was polled: `call` on an
/// instance that was not polled ready is an error, and a clone starts not ready (like
/// `tower::buffer::Buffer` handles or `ConcurrencyLimit` itself).
#[derive(Default)]
struct ReadyOnce {
    ready: bool,
}

impl Clone for ReadyOnce {
    fn clone(&self) -> Self {
        ReadyOnce { ready: false }
    }
}

impl Service<u32> for ReadyOnce {
    type Response = u32;
    type Error = BoxError;
    type Future = std::future::Ready<Result<u32, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.ready = true;
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, n: u32) -> Self::Future {
        let was_ready = std::mem::replace(&mut self.ready, false);
        std::future::ready(if was_ready {
            Ok(n)
        } else {
            Err("called without poll_ready".into())
        })
    }
}

#[tokio::test]
async fn call_moves_the_readied_inner_service_into_the_future() {
    let limiter = limiter(2, None);
    let mut svc = ConcurrencyLimit::new(ReadyOnce::default(), limiter.clone());
    for n in 0..4 {
        svc.ready().await.unwrap();
        assert_eq!(bounded(svc.call(n)).await.unwrap(), n);
    }
    // Also with the inner call deferred behind a queue: the readied instance waits with it.
    let held = limiter.try_acquire().unwrap();
    let second = limiter.try_acquire().unwrap();
    svc.ready().await.unwrap();
    let queued = tokio::spawn(svc.call(9));
    until(|| limiter.waiting() == 1).await;
    drop((held, second));
    assert_eq!(bounded(queued).await.unwrap().unwrap(), 9);
}

#[tokio::test]
async fn works_over_a_buffer_whose_handles_reserve_in_poll_ready() {
    let limiter = limiter(2, None);
    let buffered = tower::buffer::Buffer::new(Probe::default().service(None), 8);
    let svc = ConcurrencyLimit::new(buffered, limiter.clone());
    let tasks: Vec<_> = (0..16)
        .map(|id| tokio::spawn(svc.clone().oneshot(job(id))))
        .collect();
    for (id, t) in tasks.into_iter().enumerate() {
        assert_eq!(bounded(t).await.unwrap().unwrap(), id as u32);
    }
    assert_eq!((limiter.in_flight(), limiter.waiting()), (0, 0));
}

#[tokio::test]
async fn an_outer_timeout_covers_the_queue_wait() {
    let limiter = limiter(1, None);
    let probe = Probe::default();
    let svc = ServiceBuilder::new()
        .timeout(Duration::from_millis(30))
        .layer(ConcurrencyLimitLayer::new(limiter.clone()))
        .service(probe.service(None));
    let (first, release) = held(0);
    let head =
        tokio::spawn(ConcurrencyLimit::new(probe.service(None), limiter.clone()).oneshot(first));
    until(|| limiter.in_flight() == 1).await;
    let err = bounded(svc.oneshot(job(1))).await.unwrap_err();
    assert!(err.is::<tower::timeout::error::Elapsed>(), "{err}");
    assert_eq!(limiter.waiting(), 0, "the timed-out request left the queue");
    release.send(()).unwrap();
    bounded(head).await.unwrap().unwrap();
    assert_eq!(probe.calls.load(SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_randomly_cancelled_requests_leak_nothing() {
    let probe = Probe::default();
    let limiter = limiter(4, Some(128));
    let svc = ConcurrencyLimit::new(probe.service(None), limiter.clone());
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut tasks = Vec::new();
    let mut never_released = Vec::new();
    for id in 0..400 {
        let svc = svc.clone();
        let (j, release) = held(id);
        // A third of the jobs finish at once, a third after a random moment, a third never
        // (until cancelled).
        match next() % 3 {
            0 => never_released.push(release),
            1 => {
                let _ = release.send(());
            }
            _ => {
                let after = Duration::from_micros(next() % 2000);
                tokio::spawn(async move {
                    tokio::time::sleep(after).await;
                    let _ = release.send(());
                });
            }
        }
        // Cancel at a random point: while queued, or while running.
        let cancel_after = Duration::from_micros(next() % 4000);
        tasks.push(tokio::spawn(async move {
            tokio::time::timeout(cancel_after, svc.oneshot(j)).await
        }));
        if id % 16 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let (mut done, mut rejected, mut cancelled) = (0, 0, 0);
    for t in tasks {
        match bounded(t).await.unwrap() {
            Ok(Ok(_)) => done += 1,
            Ok(Err(e)) => {
                assert_eq!(reason(&e), RejectReason::QueueFull);
                rejected += 1;
            }
            Err(_elapsed) => cancelled += 1,
        }
    }
    assert_eq!(done + rejected + cancelled, 400);
    eprintln!("done {done}, rejected {rejected}, cancelled {cancelled}");
    assert!(cancelled > 0 && done > 0, "the mix exercised nothing");
    assert!(probe.peak.load(SeqCst) <= 4);
    assert_eq!((limiter.in_flight(), limiter.waiting()), (0, 0));
    assert_eq!(probe.running.load(SeqCst), 0);
    // And the limiter still works at full capacity.
    let tasks: Vec<_> = (0..8)
        .map(|id| tokio::spawn(svc.clone().oneshot(job(id))))
        .collect();
    for t in tasks {
        bounded(t).await.unwrap().unwrap();
    }
    drop(never_released);
}

#[tokio::test]
async fn capacity_zero_passes_everything_through_and_counts() {
    let probe = Probe::default();
    let limiter = limiter(0, None);
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let svc = ConcurrencyLimit::new(probe.service(Some(started_tx)), limiter.clone());
    let mut releases = Vec::new();
    let mut tasks = Vec::new();
    for id in 0..50 {
        let (j, r) = held(id);
        releases.push(r);
        tasks.push(tokio::spawn(svc.clone().oneshot(j)));
    }
    let mut ids = HashSet::new();
    for _ in 0..50 {
        ids.insert(bounded(started.recv()).await.unwrap());
    }
    assert_eq!(ids.len(), 50);
    assert_eq!((limiter.in_flight(), limiter.waiting()), (50, 0));
    for r in releases {
        let _ = r.send(());
    }
    for t in tasks {
        bounded(t).await.unwrap().unwrap();
    }
    assert_eq!(limiter.in_flight(), 0);
}

#[tokio::test]
async fn one_layer_limits_every_service_it_wraps_together() {
    let limiter = limiter(1, Some(0));
    let layer = ConcurrencyLimitLayer::new(limiter.clone());
    let a = layer.layer(Probe::default().service(None));
    let b = layer.layer(Probe::default().service(None));
    let (first, release) = held(0);
    let head = tokio::spawn(a.oneshot(first));
    until(|| limiter.in_flight() == 1).await;
    let err = bounded(b.clone().oneshot(job(1))).await.unwrap_err();
    assert_eq!(reason(&err), RejectReason::QueueFull);
    release.send(()).unwrap();
    bounded(head).await.unwrap().unwrap();
    assert_eq!(bounded(b.oneshot(job(2))).await.unwrap(), 2);
}

#[tokio::test]
async fn inner_errors_pass_through_and_closed_limiters_reject() {
    let limiter = limiter(1, None);
    let failing = service_fn(|_: ()| async { Err::<(), _>(std::io::Error::other("boom")) });
    let svc = ConcurrencyLimit::new(failing, limiter.clone());
    let err = bounded(svc.clone().oneshot(())).await.unwrap_err();
    assert!(err.downcast_ref::<Rejected>().is_none());
    assert_eq!(err.to_string(), "boom");
    assert_eq!(limiter.in_flight(), 0);
    limiter.close();
    let err = bounded(svc.oneshot(())).await.unwrap_err();
    assert_eq!(reason(&err), RejectReason::Closed);
}

/// A finished response future keeps its finished inner future until it is dropped (the fast
/// path changes no state), but a second poll still panics with the layer's own message and
/// never reaches the inner future (`Ready` would panic with its own).
#[test]
#[should_panic(expected = "ResponseFuture polled after completion")]
fn a_finished_response_future_panics_when_polled_again() {
    let limiter = limiter(1, None);
    let inner = service_fn(|x: u32| std::future::ready(Ok::<_, Infallible>(x)));
    let mut svc = ConcurrencyLimit::new(inner, limiter.clone());
    let mut cx = Context::from_waker(std::task::Waker::noop());
    assert!(svc.poll_ready(&mut cx).is_ready());
    let mut fut = Box::pin(svc.call(1));
    assert!(matches!(fut.as_mut().poll(&mut cx), Poll::Ready(Ok(1))));
    assert_eq!(limiter.in_flight(), 0, "released on completion");
    let _ = fut.as_mut().poll(&mut cx);
}
