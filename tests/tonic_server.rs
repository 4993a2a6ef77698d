//! `fairgate::tonic::ServerLimitLayer` behind real tonic servers on 127.0.0.1, called by real
//! tonic clients (research §7.7, server side).
#![cfg(not(loom))]

mod common_tonic;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common_tonic::*;
use fairgate::limit::{Limiter, MetricsObserver, Observer};
use fairgate::tonic::{QueueTimeoutCode, ServerLimitLayer, REJECT_REASON_KEY};
use rand_free::Lcg;
use tonic::client::Grpc;
use tonic::transport::Server;
use tonic::Code;
use tower::{Layer, ServiceExt};

/// A tiny deterministic generator (no extra dev-dependency).
mod rand_free {
    pub struct Lcg(pub u64);
    impl Lcg {
        pub fn below(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) % n
        }
    }
}

fn limiter(name: &str, capacity: usize, max_queue: Option<usize>) -> Limiter {
    Limiter::builder(name)
        .capacity(capacity)
        .max_queue(max_queue)
        .build()
        .unwrap()
}

/// A server with the whole router behind `layer` (server-wide limit).
fn serve_limited(layer: ServerLimitLayer, service: TestService) -> ServerGuard {
    let (incoming, addr) = listen();
    spawn(
        addr,
        Server::builder()
            .layer(layer)
            .add_service(service)
            .serve_with_incoming(incoming),
    )
}

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("test timed out")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_stream_holds_its_permit_until_it_ends() {
    bounded(async {
        let limiter = limiter("stream", 1, None);
        let server = serve_limited(
            ServerLimitLayer::new(limiter.clone()),
            TestService::default(),
        );
        let mut stream = stream(
            Grpc::new(channel(server.addr).await),
            stream_call(1, 4, 100),
        )
        .await
        .unwrap();
        stream.message().await.unwrap().unwrap();
        // The head and the first message have been sent: the permit is still held.
        assert_eq!(limiter.in_flight(), 1);

        let done = Arc::new(AtomicBool::new(false));
        let unary_done = Arc::clone(&done);
        let other = channel(server.addr).await;
        let unary = tokio::spawn(async move {
            let reply = unary(Grpc::new(other), unary_call(7, 0), None).await;
            unary_done.store(true, Ordering::SeqCst);
            reply
        });
        wait_until("the unary call queues", || limiter.waiting() == 1).await;
        for _ in 1..4 {
            stream.message().await.unwrap().unwrap();
        }
        // Every message is out, the end is not (the server pauses 100 ms before it): the
        // unary call still waits.
        assert!(!done.load(Ordering::SeqCst));
        assert_eq!(limiter.waiting(), 1);
        assert!(stream.message().await.unwrap().is_none());
        assert_eq!(unary.await.unwrap().unwrap().id, 7);
        wait_until("all released", || limiter.in_flight() == 0).await;
    })
    .await;
}

/// The contrast (tonic #1656, research E1): tower's own limiter releases at the response
/// head, so a second call runs while the first stream is still streaming.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn towers_limiter_admits_a_second_call_while_a_stream_runs() {
    bounded(async {
        let (incoming, addr) = listen();
        let _server = spawn(
            addr,
            Server::builder()
                .layer(tower::limit::GlobalConcurrencyLimitLayer::new(1))
                .add_service(TestService::default())
                .serve_with_incoming(incoming),
        );
        let mut stream = stream(Grpc::new(channel(addr).await), stream_call(1, 3, 100))
            .await
            .unwrap();
        stream.message().await.unwrap().unwrap();
        let reply = unary(Grpc::new(channel(addr).await), unary_call(2, 0), None).await;
        assert_eq!(reply.unwrap().id, 2, "admitted while the stream still runs");
        // ...and the stream had messages left.
        assert!(stream.message().await.unwrap().is_some());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_client_streaming_releases_the_server_permit() {
    bounded(async {
        let limiter = limiter("drop", 1, None);
        let server = serve_limited(
            ServerLimitLayer::new(limiter.clone()),
            TestService::default(),
        );
        let mut stream = stream(
            Grpc::new(channel(server.addr).await),
            stream_call(1, 1000, 10),
        )
        .await
        .unwrap();
        stream.message().await.unwrap().unwrap();
        assert_eq!(limiter.in_flight(), 1);
        let dropped = Instant::now();
        drop(stream);
        wait_until("the server permit is back", || limiter.in_flight() == 0).await;
        assert!(dropped.elapsed() < Duration::from_secs(2));
        // The slot is usable again.
        unary(
            Grpc::new(channel(server.addr).await),
            unary_call(2, 0),
            None,
        )
        .await
        .unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_grpc_status_responses_with_the_reason() {
    bounded(async {
        // Queue full.
        let full = limiter("full", 1, Some(0));
        let server = serve_limited(ServerLimitLayer::new(full.clone()), TestService::default());
        let ch = channel(server.addr).await;
        let slow = tokio::spawn(unary(Grpc::new(ch.clone()), unary_call(1, 300), None));
        wait_until("the slow call runs", || full.in_flight() == 1).await;
        let status = unary(Grpc::new(ch.clone()), unary_call(2, 0), None)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(reason(&status), "queue_full");
        assert!(status.message().contains("queue_full"), "{status:?}");
        slow.await.unwrap().unwrap();

        // Queue timeout, configured as UNAVAILABLE.
        let timing = Limiter::builder("timing")
            .capacity(1)
            .queue_timeout(Duration::from_millis(50))
            .build()
            .unwrap();
        let layer =
            ServerLimitLayer::new(timing.clone()).queue_timeout_code(QueueTimeoutCode::Unavailable);
        let server = serve_limited(layer, TestService::default());
        let ch = channel(server.addr).await;
        let slow = tokio::spawn(unary(Grpc::new(ch.clone()), unary_call(1, 400), None));
        wait_until("the slow call runs", || timing.in_flight() == 1).await;
        let status = unary(Grpc::new(ch.clone()), unary_call(2, 0), None)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(reason(&status), "queue_timeout");
        assert_eq!(timing.waiting(), 0);
        slow.await.unwrap().unwrap();

        // Closed.
        timing.close();
        let status = unary(Grpc::new(ch), unary_call(3, 0), None)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(reason(&status), "closed");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_that_passes_in_the_queue_frees_the_slot() {
    bounded(async {
        let limiter = limiter("deadline", 1, None);
        let server = serve_limited(
            ServerLimitLayer::new(limiter.clone()),
            TestService::default(),
        );
        let ch = channel(server.addr).await;
        let slow = tokio::spawn(unary(Grpc::new(ch.clone()), unary_call(1, 1500), None));
        wait_until("the slow call runs", || limiter.in_flight() == 1).await;
        let started = Instant::now();
        let late = tokio::spawn(unary(
            Grpc::new(ch),
            unary_call(2, 0),
            Some(Duration::from_millis(80)),
        ));
        wait_until("the call queues", || limiter.waiting() == 1).await;
        // The server drops the waiter at the caller's deadline, long before the slot frees.
        wait_until("the waiter left", || limiter.waiting() == 0).await;
        assert!(
            started.elapsed() < Duration::from_millis(1200),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(limiter.in_flight(), 1);
        let status = late.await.unwrap().unwrap_err();
        // tonic's client enforces its own deadline and reports CANCELLED (research E10);
        // a client that does not gets our DEADLINE_EXCEEDED (below).
        assert!(
            matches!(status.code(), Code::Cancelled | Code::DeadlineExceeded),
            "{status:?}"
        );
        slow.await.unwrap().unwrap();
    })
    .await;
}

/// In process, without tonic's own server-side timeout: the layer answers a call whose
/// `grpc-timeout` runs out in the queue with a Trailers-Only DEADLINE_EXCEEDED.
#[tokio::test(flavor = "current_thread")]
async fn the_layer_answers_deadline_exceeded_as_a_trailers_only_response() {
    bounded(async {
        let limiter = limiter("inproc", 1, None);
        let held = limiter.try_acquire().unwrap();
        let svc = ServerLimitLayer::new(limiter.clone()).layer(TestService::default());
        let request = http::Request::builder()
            .uri("/test.Test/Unary")
            .header("grpc-timeout", "30m")
            .body(tonic::body::Body::default())
            .unwrap();
        let started = Instant::now();
        let response = svc.oneshot(request).await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(30));
        assert_eq!(response.status(), http::StatusCode::OK);
        assert_eq!(response.headers()["grpc-status"], "4"); // DEADLINE_EXCEEDED
        assert_eq!(response.headers()[REJECT_REASON_KEY], "deadline_exceeded");
        assert!(http_body::Body::is_end_stream(response.body()));
        assert_eq!(limiter.waiting(), 0);
        drop(held);
        assert_eq!(limiter.in_flight(), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_calls_run_in_arrival_order() {
    bounded(async {
        let limiter = limiter("fifo", 1, None);
        let service = TestService::default();
        let seen = Arc::clone(&service.seen);
        let server = serve_limited(ServerLimitLayer::new(limiter.clone()), service);
        let ch = channel(server.addr).await;
        let blocker = tokio::spawn(unary(Grpc::new(ch.clone()), unary_call(0, 150), None));
        wait_until("the blocker runs", || limiter.in_flight() == 1).await;
        let mut calls = Vec::new();
        for id in 1..=6u64 {
            calls.push(tokio::spawn(unary(
                Grpc::new(ch.clone()),
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
async fn a_server_wide_limit_spans_connections() {
    bounded(async {
        let limiter = limiter("wide", 1, None);
        let service = TestService::default();
        let seen = Arc::clone(&service.seen);
        let server = serve_limited(ServerLimitLayer::new(limiter.clone()), service);
        let mut calls = Vec::new();
        for id in 0..4 {
            // Each call on its own connection.
            let ch = channel(server.addr).await;
            calls.push(tokio::spawn(unary(Grpc::new(ch), unary_call(id, 40), None)));
        }
        for call in calls {
            call.await.unwrap().unwrap();
        }
        assert_eq!(seen.max_running(), 1);
        assert_eq!(limiter.in_flight(), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_service_limit_keeps_the_service_name() {
    bounded(async {
        let limiter = limiter("per-service", 1, None);
        let limited = TestService::default();
        let (incoming, addr) = listen();
        let _server = spawn(
            addr,
            Server::builder()
                .add_service(ServerLimitLayer::new(limiter.clone()).layer(limited))
                .add_service(OtherService::default())
                .serve_with_incoming(incoming),
        );
        let ch = channel(addr).await;
        let slow = tokio::spawn(unary(Grpc::new(ch.clone()), unary_call(1, 400), None));
        wait_until("the limited call runs", || limiter.in_flight() == 1).await;
        // The other service is not limited...
        let other = call_path(
            Grpc::new(ch.clone()),
            "/test.Other/Unary",
            unary_call(2, 0),
            None,
        );
        assert_eq!(other.await.unwrap().id, 2);
        assert_eq!(limiter.in_flight(), 1);
        // ...the limited one is.
        let queued = tokio::spawn(unary(Grpc::new(ch), unary_call(3, 0), None));
        wait_until("the second limited call queues", || limiter.waiting() == 1).await;
        slow.await.unwrap().unwrap();
        assert_eq!(queued.await.unwrap().unwrap().id, 3);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_zero_is_a_passthrough() {
    bounded(async {
        let limiter = limiter("open", 0, None);
        let service = TestService::default();
        let seen = Arc::clone(&service.seen);
        let server = serve_limited(ServerLimitLayer::new(limiter.clone()), service);
        let ch = channel(server.addr).await;
        let calls: Vec<_> = (0..5)
            .map(|id| tokio::spawn(unary(Grpc::new(ch.clone()), unary_call(id, 200), None)))
            .collect();
        wait_until("all five run at once", || seen.max_running() == 5).await;
        assert_eq!(limiter.in_flight(), 5); // counted, not limited
        for call in calls {
            call.await.unwrap().unwrap();
        }
        wait_until("all released", || limiter.in_flight() == 0).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_random_cancels_leak_nothing() {
    bounded(async {
        let paths = Arc::new(Paths::default());
        let config = Limiter::builder("leak").capacity(2).config().unwrap();
        let limiter = Limiter::with_observer(config, Arc::clone(&paths) as Arc<dyn Observer>);
        let server = serve_limited(
            ServerLimitLayer::new(limiter.clone()),
            TestService::default(),
        );
        let channels = [channel(server.addr).await, channel(server.addr).await];
        let mut rng = Lcg(0x5eed);
        let errors = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let mut tasks = Vec::new();
        for id in 0..300u64 {
            let ch = channels[(id % 2) as usize].clone();
            let give_up = Duration::from_millis(rng.below(250));
            let streaming = rng.below(3) == 0;
            let delay = rng.below(15);
            let keep = rng.below(4) as usize;
            let errors = Arc::clone(&errors);
            tasks.push(tokio::spawn(async move {
                if streaming {
                    let _r = tokio::time::timeout(give_up, async {
                        let mut s = stream(Grpc::new(ch), stream_call(id, 50, delay)).await?;
                        for _ in 0..keep {
                            s.message().await?;
                        }
                        Ok::<_, tonic::Status>(())
                    })
                    .await;
                    if let Ok(Err(e)) = _r {
                        errors.lock().unwrap().push(format!("{e:?}"));
                    }
                } else {
                    let r = tokio::time::timeout(
                        give_up,
                        unary(Grpc::new(ch), unary_call(id, delay), None),
                    )
                    .await;
                    if let Ok(Err(e)) = r {
                        errors.lock().unwrap().push(format!("{e:?}"));
                    }
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        wait_until("nothing in flight or queued", || {
            limiter.in_flight() == 0 && limiter.waiting() == 0
        })
        .await;
        // Every path was taken: admitted at once, admitted after a wait, abandoned in the
        // queue.
        let (at_once, after_wait, canceled) = paths.counts();
        assert!(
            at_once > 0 && after_wait > 0 && canceled > 0,
            "{:?}, call errors: {:?}",
            paths.counts(),
            errors.lock().unwrap().iter().take(5).collect::<Vec<_>>()
        );
        // Still fully usable (on a fresh connection: h2's reset-flood guard may close one
        // that saw hundreds of cancels).
        unary(
            Grpc::new(channel(server.addr).await),
            unary_call(1000, 0),
            None,
        )
        .await
        .unwrap();
        assert_eq!(limiter.in_flight(), 0);
    })
    .await;
}

/// The only test of this binary that installs a (global) metrics recorder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_admissions_refusals_and_abandoned_waits() {
    bounded(async {
        let recorder = metrics_util::debugging::DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder
            .install()
            .expect("the only recorder of this binary");

        let config = Limiter::builder("m")
            .capacity(1)
            .max_queue(Some(2))
            .config()
            .unwrap();
        let limiter = Limiter::with_observer(config, Arc::new(MetricsObserver::new()));
        let server = serve_limited(
            ServerLimitLayer::new(limiter.clone()),
            TestService::default(),
        );
        let ch = channel(server.addr).await;
        let slow = tokio::spawn(unary(Grpc::new(ch.clone()), unary_call(1, 400), None));
        wait_until("the slow call runs", || limiter.in_flight() == 1).await;
        let queued = tokio::spawn(unary(Grpc::new(ch.clone()), unary_call(2, 0), None));
        wait_until("one waits", || limiter.waiting() == 1).await;
        let late = tokio::spawn(unary(
            Grpc::new(ch.clone()),
            unary_call(3, 0),
            Some(Duration::from_millis(60)),
        ));
        wait_until("two wait", || limiter.waiting() == 2).await;
        let full = unary(Grpc::new(ch.clone()), unary_call(4, 0), None)
            .await
            .unwrap_err();
        assert_eq!(full.code(), Code::ResourceExhausted);
        assert!(late.await.unwrap().is_err());
        slow.await.unwrap().unwrap();
        queued.await.unwrap().unwrap();
        wait_until("all released", || limiter.in_flight() == 0).await;

        let mut counters: HashMap<String, u64> = HashMap::new();
        let mut in_flight_gauge = None;
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let key = key.key();
            let label = |name: &str| {
                key.labels()
                    .find(|l| l.key() == name)
                    .map(|l| l.value().to_owned())
            };
            if label("limiter").as_deref() != Some("m") {
                continue;
            }
            match (key.name(), value) {
                ("fairgate_requests_total", metrics_util::debugging::DebugValue::Counter(n)) => {
                    *counters.entry(label("result").unwrap()).or_default() += n;
                }
                ("fairgate_in_flight", metrics_util::debugging::DebugValue::Gauge(v)) => {
                    in_flight_gauge = Some(v.0);
                }
                _ => {}
            }
        }
        assert_eq!(counters.get("acquired"), Some(&2), "{counters:?}");
        assert_eq!(counters.get("queue_full"), Some(&1), "{counters:?}");
        let gave_up = counters.get("canceled").unwrap_or(&0)
            + counters.get("deadline_exceeded").unwrap_or(&0);
        assert_eq!(gave_up, 1, "{counters:?}");
        assert_eq!(in_flight_gauge, Some(0.0));
    })
    .await;
}
