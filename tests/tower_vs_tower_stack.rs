//! Our `ConcurrencyLimit` beside tower's own "bounded queue + reject when full" stack,
//! `LoadShed → Buffer(bound) → ConcurrencyLimit(n)`, on the same scenarios: admission order,
//! what the queue bound means, and what ready-but-idle handles cost.
//!
//! Finding (tower 0.5.3): tower's stack admits in **call** order (the buffer is one FIFO
//! channel and its worker waits for a permit message by message), and so does ours (a
//! request that must wait joins the queue in `call`), also when the futures are spawned on
//! a multi-threaded runtime and first polled in any order. FIFO alone does not set the two
//! apart. What does: tower's bound counts *reserved channel slots*, taken by `poll_ready` and
//! held by handles that are ready but not called, plus the one message the worker holds
//! aside; ours counts waiters only, exactly, and readiness takes nothing.
#![cfg(not(loom))]

use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fairgate::limit::{Limiter, RejectReason, Rejected};
use fairgate::tower::{BoxError, ConcurrencyLimitLayer};
use futures::FutureExt;
use tokio::sync::oneshot;
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};

async fn bounded<F: Future>(fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .expect("test timed out")
}

type Req = (u32, Option<oneshot::Receiver<()>>);

/// A service recording the order requests start in; a request with a receiver runs until
/// it is signalled.
fn recorder(
    order: Arc<Mutex<Vec<u32>>>,
) -> impl Service<Req, Response = u32, Error = Infallible, Future: Send> + Clone + Send {
    service_fn(move |(id, release): Req| {
        let order = order.clone();
        async move {
            order.lock().unwrap().push(id);
            if let Some(release) = release {
                let _ = release.await;
            }
            Ok(id)
        }
    })
}

/// Calls `first` (held) and then `n` more requests on fresh clones, each called only after
/// the previous one was called.
async fn admission_order<S>(stack: S, n: u32)
where
    S: Service<Req, Response = u32, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let (release, rx) = oneshot::channel();
    let mut s = stack.clone();
    bounded(s.ready()).await.unwrap();
    let head = tokio::spawn(s.call((0, Some(rx))));
    let mut rest = Vec::new();
    for id in 1..=n {
        let mut s = stack.clone();
        bounded(s.ready()).await.unwrap();
        rest.push(tokio::spawn(s.call((id, None))));
        tokio::task::yield_now().await;
    }
    release.send(()).unwrap();
    bounded(head).await.unwrap().unwrap();
    for t in rest {
        bounded(t).await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_admit_in_call_order() {
    let theirs_order = Arc::new(Mutex::new(Vec::new()));
    let theirs = ServiceBuilder::new()
        .load_shed()
        .buffer(64)
        .concurrency_limit(1)
        .service(recorder(theirs_order.clone()));
    admission_order(theirs, 16).await;

    let ours_order = Arc::new(Mutex::new(Vec::new()));
    let limiter = Limiter::builder("ours")
        .capacity(1)
        .max_queue(Some(64))
        .build()
        .unwrap();
    let ours = ServiceBuilder::new()
        .layer(ConcurrencyLimitLayer::new(limiter.clone()))
        .service(recorder(ours_order.clone()));
    admission_order(ours, 16).await;

    let fifo: Vec<u32> = (0..=16).collect();
    assert_eq!(*ours_order.lock().unwrap(), fifo);
    assert_eq!(*theirs_order.lock().unwrap(), fifo);
    assert_eq!((limiter.in_flight(), limiter.waiting()), (0, 0));
}

#[tokio::test]
async fn ready_but_idle_handles_make_towers_stack_shed_but_take_nothing_from_ours() {
    // Four handles are polled ready and never called (a connection pool, a router that
    // polls ahead). Nothing is queued or running.
    let theirs = ServiceBuilder::new()
        .load_shed()
        .buffer(4)
        .concurrency_limit(1)
        .service(recorder(Default::default()));
    let mut idle: Vec<_> = (0..4).map(|_| theirs.clone()).collect();
    for h in &mut idle {
        bounded(h.ready()).await.unwrap();
    }
    let err = bounded(theirs.clone().oneshot((1, None)))
        .await
        .unwrap_err();
    assert!(err.is::<tower::load_shed::error::Overloaded>(), "{err}");

    let limiter = Limiter::builder("ours")
        .capacity(1)
        .max_queue(Some(4))
        .build()
        .unwrap();
    let ours = ServiceBuilder::new()
        .layer(ConcurrencyLimitLayer::new(limiter.clone()))
        .service(recorder(Default::default()));
    let mut idle: Vec<_> = (0..4).map(|_| ours.clone()).collect();
    for h in &mut idle {
        bounded(h.ready()).await.unwrap();
    }
    assert_eq!(bounded(ours.clone().oneshot((1, None))).await.unwrap(), 1);
    assert_eq!((limiter.in_flight(), limiter.waiting()), (0, 0));
}

/// How many requests wait behind one running request before the stack rejects.
async fn accepted_behind_one<S>(stack: S) -> (usize, BoxError)
where
    S: Service<Req, Response = u32, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let (release, rx) = oneshot::channel();
    let mut s = stack.clone();
    bounded(s.ready()).await.unwrap();
    let head = tokio::spawn(s.call((0, Some(rx))));
    tokio::task::yield_now().await;
    let mut waiting = Vec::new();
    let err = loop {
        let mut s = stack.clone();
        bounded(s.ready()).await.unwrap();
        let mut fut = Box::pin(s.call((1, None)));
        // A rejection is immediate in both stacks; anything else waits.
        match (&mut fut).now_or_never() {
            Some(Err(e)) => break e,
            Some(Ok(_)) => panic!("admitted while the one permit is held"),
            None => waiting.push(tokio::spawn(fut)),
        }
        for _ in 0..8 {
            tokio::task::yield_now().await;
        }
        assert!(waiting.len() < 100, "no bound at all");
    };
    release.send(()).unwrap();
    bounded(head).await.unwrap().unwrap();
    let accepted = waiting.len();
    for w in waiting {
        bounded(w).await.unwrap().unwrap();
    }
    (accepted, err)
}

#[tokio::test]
async fn the_queue_bound_is_exact_in_ours_and_bound_plus_one_in_towers() {
    let theirs = ServiceBuilder::new()
        .load_shed()
        .buffer(2)
        .concurrency_limit(1)
        .service(recorder(Default::default()));
    let (accepted, err) = accepted_behind_one(theirs).await;
    assert!(err.is::<tower::load_shed::error::Overloaded>());
    assert_eq!(
        accepted, 3,
        "the worker holds one message aside beyond the bound"
    );

    let limiter = Limiter::builder("ours")
        .capacity(1)
        .max_queue(Some(2))
        .build()
        .unwrap();
    let ours = ServiceBuilder::new()
        .layer(ConcurrencyLimitLayer::new(limiter.clone()))
        .service(recorder(Default::default()));
    let (accepted, err) = accepted_behind_one(ours).await;
    assert_eq!(
        err.downcast_ref::<Rejected>().map(Rejected::reason),
        Some(RejectReason::QueueFull)
    );
    assert_eq!(accepted, 2);
    assert_eq!((limiter.in_flight(), limiter.waiting()), (0, 0));
}
