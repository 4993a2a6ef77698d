//! `fairgate::tower::ConcurrencyLimit` under `tower::retry::Retry`: layered inside the retry
//! (each attempt takes and returns its own permit, nothing leaks even with capacity 1) and
//! outside it (one permit spans every attempt).
#![cfg(not(loom))]

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fairgate::limit::Limiter;
use fairgate::tower::{BoxError, ConcurrencyLimitLayer};
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};

async fn bounded<F: Future>(fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .expect("test timed out (a permit leaked?)")
}

fn limiter(capacity: usize) -> Limiter {
    Limiter::builder("test").capacity(capacity).build().unwrap()
}

/// Retries every failed attempt up to `left` more times.
#[derive(Clone)]
struct RetryFailures {
    left: usize,
}

impl<Req: Clone, Res> tower::retry::Policy<Req, Res, BoxError> for RetryFailures {
    type Future = std::future::Ready<()>;

    fn retry(&mut self, _: &mut Req, result: &mut Result<Res, BoxError>) -> Option<Self::Future> {
        if result.is_err() && self.left > 0 {
            self.left -= 1;
            Some(std::future::ready(()))
        } else {
            None
        }
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

/// A service that fails the first `fail` attempts of every request id and records the
/// limiter's in-flight count during each attempt.
fn flaky(
    limiter: Limiter,
    fail: usize,
    seen: Arc<Mutex<Vec<usize>>>,
) -> impl Service<u32, Response = u32, Error = BoxError, Future: Send> + Clone + Send {
    let attempts = Arc::new(Mutex::new(std::collections::HashMap::<u32, usize>::new()));
    service_fn(move |id: u32| {
        let attempt = {
            let mut a = attempts.lock().unwrap();
            let n = a.entry(id).or_default();
            *n += 1;
            *n
        };
        seen.lock().unwrap().push(limiter.in_flight());
        async move {
            tokio::task::yield_now().await;
            if attempt <= fail {
                Err::<u32, BoxError>(format!("attempt {attempt} of {id} failed").into())
            } else {
                Ok(id)
            }
        }
    })
}

#[tokio::test]
async fn retry_outside_the_layer_takes_and_returns_one_permit_per_attempt() {
    let limiter = limiter(1);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let svc = ServiceBuilder::new()
        .retry(RetryFailures { left: 5 })
        .layer(ConcurrencyLimitLayer::new(limiter.clone()))
        .service(flaky(limiter.clone(), 3, seen.clone()));
    // With capacity 1, a permit leaked by a failed attempt would block the next forever.
    assert_eq!(bounded(svc.clone().oneshot(1)).await.unwrap(), 1);
    assert_eq!(
        *seen.lock().unwrap(),
        [1, 1, 1, 1],
        "one permit per attempt"
    );
    assert_eq!((limiter.in_flight(), limiter.waiting()), (0, 0));

    // Many concurrent retried requests: nothing leaks.
    let tasks: Vec<_> = (100..200)
        .map(|id| tokio::spawn(svc.clone().oneshot(id)))
        .collect();
    for t in tasks {
        bounded(t).await.unwrap().unwrap();
    }
    assert!(seen.lock().unwrap().iter().all(|&n| n == 1));
    assert_eq!(seen.lock().unwrap().len(), 4 * 101);
    assert_eq!((limiter.in_flight(), limiter.waiting()), (0, 0));
}

#[tokio::test]
async fn retry_inside_the_layer_runs_every_attempt_under_one_permit() {
    let limiter = limiter(1);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let svc = ServiceBuilder::new()
        .layer(ConcurrencyLimitLayer::new(limiter.clone()))
        .retry(RetryFailures { left: 5 })
        .service(flaky(limiter.clone(), 2, seen.clone()));
    assert_eq!(bounded(svc.oneshot(1)).await.unwrap(), 1);
    assert_eq!(*seen.lock().unwrap(), [1, 1, 1]);
    assert_eq!(limiter.in_flight(), 0);
}
