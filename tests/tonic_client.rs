//! `fairgate::tonic::ClientLimitLayer` around real tonic `Channel`s to a real tonic server
//! on 127.0.0.1 (research §7.7, client side).
#![cfg(not(loom))]

mod common_tonic;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common_tonic::*;
use fairgate::limit::{Limiter, Observer};
use fairgate::tonic::{ClientLimit, ClientLimitLayer, QueueTimeoutCode};
use http_body_util::BodyExt;
use tonic::client::Grpc;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;
use tower::{Service, ServiceBuilder, ServiceExt};

fn limiter(name: &str, capacity: usize, max_queue: Option<usize>) -> Limiter {
    Limiter::builder(name)
        .capacity(capacity)
        .max_queue(max_queue)
        .build()
        .unwrap()
}

fn limited(limiter: &Limiter, channel: Channel) -> Grpc<ClientLimit<Channel>> {
    Grpc::new(
        ServiceBuilder::new()
            .layer(ClientLimitLayer::new(limiter.clone()))
            .service(channel),
    )
}

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("test timed out")
}

/// Parses a `grpc-timeout` value (test side).
fn budget(value: &str) -> Duration {
    let (digits, unit) = value.split_at(value.len() - 1);
    let n: u64 = digits.parse().unwrap();
    match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => panic!("bad unit in {value}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_call_holds_its_slot_until_drained_or_dropped() {
    bounded(async {
        let server = serve_plain(TestService::default());
        let limiter = limiter("client", 1, None);
        let ch = channel(server.addr).await;

        // Drained: the queued unary call runs only after the stream's end.
        let mut s = stream(limited(&limiter, ch.clone()), stream_call(1, 3, 30))
            .await
            .unwrap();
        s.message().await.unwrap().unwrap();
        assert_eq!(limiter.in_flight(), 1);
        let queued = tokio::spawn(unary(limited(&limiter, ch.clone()), unary_call(2, 0), None));
        wait_until("the unary call queues", || limiter.waiting() == 1).await;
        while s.message().await.unwrap().is_some() {
            assert_eq!(limiter.in_flight(), 1);
            assert_eq!(limiter.waiting(), 1);
        }
        assert_eq!(queued.await.unwrap().unwrap().id, 2);
        assert_eq!(limiter.in_flight(), 0);

        // Dropped mid-stream: the slot frees at once.
        let mut s = stream(limited(&limiter, ch.clone()), stream_call(3, 1000, 10))
            .await
            .unwrap();
        s.message().await.unwrap().unwrap();
        let queued = tokio::spawn(unary(limited(&limiter, ch.clone()), unary_call(4, 0), None));
        wait_until("the unary call queues", || limiter.waiting() == 1).await;
        drop(s);
        assert_eq!(queued.await.unwrap().unwrap().id, 4);
        assert_eq!(limiter.in_flight(), 0);

        // An error response (unknown method) releases at once.
        let status = call_path(
            limited(&limiter, ch),
            "/test.Test/Nope",
            unary_call(5, 0),
            None,
        )
        .await
        .unwrap_err();
        assert_eq!(status.code(), Code::Unimplemented);
        assert_eq!(limiter.in_flight(), 0);
    })
    .await;
}

/// The contrast (research E3): tonic's `Endpoint::concurrency_limit` (tower's limiter)
/// admits a second call while the first call's stream still runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_concurrency_limit_admits_a_call_while_a_stream_runs() {
    bounded(async {
        let server = serve_plain(TestService::default());
        let ch = Endpoint::from_shared(format!("http://{}", server.addr))
            .unwrap()
            .concurrency_limit(1)
            .connect()
            .await
            .unwrap();
        let mut s = stream(Grpc::new(ch.clone()), stream_call(1, 3, 100))
            .await
            .unwrap();
        s.message().await.unwrap().unwrap();
        let reply = unary(Grpc::new(ch), unary_call(2, 0), None).await.unwrap();
        assert_eq!(reply.id, 2);
        assert!(
            s.message().await.unwrap().is_some(),
            "the stream was still running"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_that_passes_in_the_client_queue_is_deadline_exceeded() {
    bounded(async {
        let server = serve_plain(TestService::default());
        let limiter = limiter("deadline", 1, None);
        let ch = channel(server.addr).await;
        let slow = tokio::spawn(unary(
            limited(&limiter, ch.clone()),
            unary_call(1, 600),
            None,
        ));
        wait_until("the slow call runs", || limiter.in_flight() == 1).await;
        let started = Instant::now();
        let status = unary(
            limited(&limiter, ch.clone()),
            unary_call(2, 0),
            Some(Duration::from_millis(60)),
        )
        .await
        .unwrap_err();
        assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
        assert_eq!(reason(&status), "deadline_exceeded");
        assert!(started.elapsed() >= Duration::from_millis(60));
        assert!(
            started.elapsed() < Duration::from_millis(550),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(limiter.waiting(), 0);
        slow.await.unwrap().unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admitted_call_carries_the_budget_left() {
    bounded(async {
        let service = TestService::default();
        let seen = Arc::clone(&service.seen);
        let server = serve_plain(service);
        let limiter = limiter("budget", 1, None);
        let ch = channel(server.addr).await;
        let five_s = Some(Duration::from_secs(5));

        // Admitted at once: the header is the caller's.
        unary(limited(&limiter, ch.clone()), unary_call(1, 0), five_s)
            .await
            .unwrap();
        assert_eq!(budget(&seen.timeout_of(1).unwrap()), Duration::from_secs(5));

        // Admitted after ~300 ms in the queue: the header says what is left.
        let slow = tokio::spawn(unary(
            limited(&limiter, ch.clone()),
            unary_call(2, 300),
            None,
        ));
        wait_until("the slow call runs", || limiter.in_flight() == 1).await;
        let queued_at = Instant::now();
        unary(limited(&limiter, ch.clone()), unary_call(3, 0), five_s)
            .await
            .unwrap();
        let waited = queued_at.elapsed();
        slow.await.unwrap().unwrap();
        let left = budget(&seen.timeout_of(3).unwrap());
        assert!(
            left < Duration::from_secs(5) - Duration::from_millis(200),
            "{left:?}"
        );
        assert!(
            left >= Duration::from_secs(5) - waited,
            "{left:?} after {waited:?}"
        );

        // honor_deadline(false): the header passes untouched.
        let keep = ClientLimitLayer::new(limiter.clone()).honor_deadline(false);
        let slow = tokio::spawn(unary(
            limited(&limiter, ch.clone()),
            unary_call(4, 200),
            None,
        ));
        wait_until("the slow call runs", || limiter.in_flight() == 1).await;
        let grpc = Grpc::new(ServiceBuilder::new().layer(keep).service(ch));
        unary(grpc, unary_call(5, 0), five_s).await.unwrap();
        slow.await.unwrap().unwrap();
        assert_eq!(budget(&seen.timeout_of(5).unwrap()), Duration::from_secs(5));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_statuses_with_the_reason() {
    bounded(async {
        let server = serve_plain(TestService::default());
        let ch = channel(server.addr).await;

        let full = limiter("full", 1, Some(0));
        let slow = tokio::spawn(unary(limited(&full, ch.clone()), unary_call(1, 300), None));
        wait_until("the slow call runs", || full.in_flight() == 1).await;
        let status = unary(limited(&full, ch.clone()), unary_call(2, 0), None)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(reason(&status), "queue_full");
        slow.await.unwrap().unwrap();

        let timing = Limiter::builder("timing")
            .capacity(1)
            .queue_timeout(Duration::from_millis(50))
            .build()
            .unwrap();
        let slow = tokio::spawn(unary(
            limited(&timing, ch.clone()),
            unary_call(3, 400),
            None,
        ));
        wait_until("the slow call runs", || timing.in_flight() == 1).await;
        let status = unary(limited(&timing, ch.clone()), unary_call(4, 0), None)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(reason(&status), "queue_timeout");
        let unavailable = Grpc::new(
            ServiceBuilder::new()
                .layer(
                    ClientLimitLayer::new(timing.clone())
                        .queue_timeout_code(QueueTimeoutCode::Unavailable),
                )
                .service(ch.clone()),
        );
        let status = unary(unavailable, unary_call(5, 0), None)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(reason(&status), "queue_timeout");
        assert_eq!(timing.waiting(), 0);
        slow.await.unwrap().unwrap();

        timing.close();
        let status = unary(limited(&timing, ch), unary_call(6, 0), None)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(reason(&status), "closed");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_calls_are_sent_in_arrival_order() {
    bounded(async {
        let service = TestService::default();
        let seen = Arc::clone(&service.seen);
        let server = serve_plain(service);
        let limiter = limiter("fifo", 1, None);
        let ch = channel(server.addr).await;
        let blocker = tokio::spawn(unary(
            limited(&limiter, ch.clone()),
            unary_call(0, 150),
            None,
        ));
        wait_until("the blocker runs", || limiter.in_flight() == 1).await;
        let mut calls = Vec::new();
        for id in 1..=6u64 {
            calls.push(tokio::spawn(unary(
                limited(&limiter, ch.clone()),
                unary_call(id, 5),
                None,
            )));
            wait_until("the call queues", || limiter.waiting() == id as usize).await;
        }
        blocker.await.unwrap().unwrap();
        for call in calls {
            call.await.unwrap().unwrap();
        }
        assert_eq!(seen.started(), (0..=6).collect::<Vec<_>>());
        assert_eq!(seen.max_running(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_limiter_caps_two_channels_and_capacity_zero_is_a_passthrough() {
    bounded(async {
        let service = TestService::default();
        let seen = Arc::clone(&service.seen);
        let server = serve_plain(service);
        let shared = limiter("shared", 1, None);
        let (a, b) = (channel(server.addr).await, channel(server.addr).await);
        let calls: Vec<_> = (0..6u64)
            .map(|id| {
                let ch = if id % 2 == 0 { a.clone() } else { b.clone() };
                tokio::spawn(unary(limited(&shared, ch), unary_call(id, 30), None))
            })
            .collect();
        for call in calls {
            call.await.unwrap().unwrap();
        }
        assert_eq!(seen.max_running(), 1, "one slot across both channels");

        let open = limiter("open", 0, None);
        let calls: Vec<_> = (10..15u64)
            .map(|id| tokio::spawn(unary(limited(&open, a.clone()), unary_call(id, 200), None)))
            .collect();
        wait_until("all five run at once", || seen.max_running() == 5).await;
        assert_eq!(open.in_flight(), 5);
        for call in calls {
            call.await.unwrap().unwrap();
        }
        assert_eq!(open.in_flight(), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_random_cancels_leak_nothing() {
    bounded(async {
        let server = serve_plain(TestService::default());
        let paths = Arc::new(Paths::default());
        let config = Limiter::builder("leak").capacity(3).config().unwrap();
        let limiter = Limiter::with_observer(config, Arc::clone(&paths) as Arc<dyn Observer>);
        let ch = channel(server.addr).await;
        let mut seed = 0x5eed_u64;
        let mut below = move |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        let mut tasks = Vec::new();
        for id in 0..300u64 {
            let grpc = limited(&limiter, ch.clone());
            let give_up = Duration::from_millis(below(250));
            let streaming = below(3) == 0;
            let delay = below(15);
            let keep = below(4) as usize;
            tasks.push(tokio::spawn(async move {
                if streaming {
                    let _ = tokio::time::timeout(give_up, async {
                        let mut s = stream(grpc, stream_call(id, 50, delay)).await?;
                        for _ in 0..keep {
                            s.message().await?;
                        }
                        Ok::<_, tonic::Status>(())
                    })
                    .await;
                } else {
                    let _ = tokio::time::timeout(give_up, unary(grpc, unary_call(id, delay), None))
                        .await;
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(limiter.in_flight(), 0);
        assert_eq!(limiter.waiting(), 0);
        let (at_once, after_wait, canceled) = paths.counts();
        assert!(
            at_once > 0 && after_wait > 0 && canceled > 0,
            "{:?}",
            paths.counts()
        );
        let fresh = channel(server.addr).await;
        unary(limited(&limiter, fresh), unary_call(1000, 0), None)
            .await
            .unwrap();
        assert_eq!(limiter.in_flight(), 0);
    })
    .await;
}

/// Counts admissions.
#[derive(Default)]
struct Admissions(AtomicUsize);

impl Observer for Admissions {
    fn on_acquired(&self, _limiter: &str, _waited: Duration) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Retries an UNAVAILABLE answer (a Trailers-Only response) up to 3 attempts; requests are
/// `http::Request<Bytes>` so that they can be cloned.
#[derive(Clone)]
struct RetryUnavailable(usize);

impl<B, E> tower::retry::Policy<http::Request<Bytes>, http::Response<B>, E> for RetryUnavailable {
    type Future = std::future::Ready<()>;

    fn retry(
        &mut self,
        _req: &mut http::Request<Bytes>,
        result: &mut Result<http::Response<B>, E>,
    ) -> Option<Self::Future> {
        let unavailable =
            matches!(result, Ok(r) if r.headers().get("grpc-status").is_some_and(|s| s == "14"));
        if unavailable && self.0 > 1 {
            self.0 -= 1;
            Some(std::future::ready(()))
        } else {
            None
        }
    }

    fn clone_request(&mut self, req: &http::Request<Bytes>) -> Option<http::Request<Bytes>> {
        Some(req.clone())
    }
}

/// `tonic::body::Body` from buffered bytes.
fn to_body(req: http::Request<Bytes>) -> http::Request<tonic::body::Body> {
    req.map(|b| tonic::body::Body::new(http_body_util::Full::new(b)))
}

/// Buffers the request body so a retry layer below can clone requests.
fn buffered<S, ResB>(
    inner: S,
) -> impl Service<
    http::Request<tonic::body::Body>,
    Response = http::Response<ResB>,
    Error = tower::BoxError,
    Future = impl Send,
> + Clone
       + Send
where
    S: Service<http::Request<Bytes>, Response = http::Response<ResB>> + Clone + Send + 'static,
    S::Error: Into<tower::BoxError>,
    S::Future: Send,
{
    tower::service_fn(move |req: http::Request<tonic::body::Body>| {
        let inner = inner.clone();
        async move {
            let (parts, body) = req.into_parts();
            let bytes = body.collect().await?.to_bytes();
            inner
                .oneshot(http::Request::from_parts(parts, bytes))
                .await
                .map_err(Into::into)
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_inside_take_a_permit_per_attempt_outside_one_for_all() {
    bounded(async {
        let service = TestService::default();
        let seen = Arc::clone(&service.seen);
        let server = serve_plain(service);
        let ch = channel(server.addr).await;
        let observed = |name: &str| {
            let admissions = Arc::new(Admissions::default());
            let config = Limiter::builder(name).capacity(1).config().unwrap();
            let limiter =
                Limiter::with_observer(config, Arc::clone(&admissions) as Arc<dyn Observer>);
            (limiter, admissions)
        };

        // Retry outside the limit: every attempt is admitted on its own.
        let (inside, admissions) = observed("inside");
        seen.flaky_failures_left.store(2, Ordering::SeqCst);
        let svc = buffered(
            ServiceBuilder::new()
                .retry(RetryUnavailable(3))
                .layer(ClientLimitLayer::new(inside.clone()))
                .map_request(to_body)
                .service(ch.clone()),
        );
        let reply = call_path(Grpc::new(svc), "/test.Test/Flaky", unary_call(1, 0), None).await;
        assert_eq!(reply.unwrap().id, 1);
        assert_eq!(seen.flaky_calls.swap(0, Ordering::SeqCst), 3);
        assert_eq!(
            admissions.0.load(Ordering::SeqCst),
            3,
            "a permit per attempt"
        );
        assert_eq!(inside.in_flight(), 0);

        // The limit outside the retries: one permit spans all attempts.
        let (outside, admissions) = observed("outside");
        seen.flaky_failures_left.store(2, Ordering::SeqCst);
        let svc = buffered(
            ServiceBuilder::new()
                .layer(ClientLimitLayer::new(outside.clone()))
                .retry(RetryUnavailable(3))
                .map_request(to_body)
                .service(ch.clone()),
        );
        let reply = call_path(Grpc::new(svc), "/test.Test/Flaky", unary_call(2, 0), None).await;
        assert_eq!(reply.unwrap().id, 2);
        assert_eq!(seen.flaky_calls.swap(0, Ordering::SeqCst), 3);
        assert_eq!(
            admissions.0.load(Ordering::SeqCst),
            1,
            "one permit for all attempts"
        );
        assert_eq!(outside.in_flight(), 0);
    })
    .await;
}
