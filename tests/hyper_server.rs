//! The http server layer behind real hyper servers, HTTP/1 and HTTP/2, on 127.0.0.1.
#![cfg(not(loom))]

#[path = "hyper_support/mod.rs"]
mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use fairgate::http::{Release, ServerLimitLayer};
use fairgate::limit::{Limiter, LimiterConfig, LimiterManager};
use http::Method;
use http_body_util::{BodyExt, Empty};
use support::*;
use tokio::time::timeout;
use tower::ServiceBuilder;

fn limiter(capacity: usize, max_queue: Option<usize>) -> Limiter {
    Limiter::builder("test")
        .capacity(capacity)
        .max_queue(max_queue)
        .build()
        .unwrap()
}

/// A streaming response holds its permit while the body streams: with capacity 1, a second
/// request waits until the stream's end, and the permit is back at 0 afterwards.
#[tokio::test]
async fn streaming_body_holds_the_permit() {
    timeout(LIMIT, async {
        for proto in PROTOCOLS {
            let limiter = limiter(1, None);
            let (app, mut ctl) = app();
            let svc = ServiceBuilder::new()
                .layer(ServerLimitLayer::new(limiter.clone()))
                .service(app);
            let addr = start(svc).await;
            let client = client(proto);

            let response = client.request(get(addr, "/stream")).await.unwrap();
            let mut body = response.into_body();
            let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
            assert_eq!(first, "first ");
            assert_eq!(
                limiter.in_flight(),
                1,
                "{proto:?}: the stream holds its permit"
            );

            let second = tokio::spawn({
                let client = client.clone();
                async move { client.request(get(addr, "/fast")).await.unwrap() }
            });
            wait_until(|| limiter.waiting() == 1).await;
            assert_eq!(ctl.next_started().await, "/stream");
            assert!(
                !second.is_finished(),
                "{proto:?}: admitted while the stream runs"
            );
            assert_eq!(ctl.calls.load(Ordering::SeqCst), 1);

            ctl.finish();
            assert_eq!(read_all(body).await, "last");
            let second = second.await.unwrap();
            assert_eq!(second.status(), 200);
            assert_eq!(read_all(second.into_body()).await, "ok");
            wait_until(|| limiter.in_flight() == 0).await;
            assert_eq!(limiter.waiting(), 0);
        }
    })
    .await
    .expect("test timed out");
}

/// The contrast: tower's own ConcurrencyLimit releases at the response head, so a second
/// request runs while the first response is still streaming.
#[tokio::test]
async fn tower_concurrency_limit_releases_at_the_head() {
    timeout(LIMIT, async {
        for proto in PROTOCOLS {
            let (app, ctl) = app();
            let svc = ServiceBuilder::new()
                .layer(tower::limit::ConcurrencyLimitLayer::new(1))
                .service(app);
            let addr = start(svc).await;
            let client = client(proto);

            let mut body = client
                .request(get(addr, "/stream"))
                .await
                .unwrap()
                .into_body();
            body.frame().await.unwrap().unwrap();
            // Admitted and answered although the first body is still open.
            let second = client.request(get(addr, "/fast")).await.unwrap();
            assert_eq!(read_all(second.into_body()).await, "ok");
            assert!(
                !http_body::Body::is_end_stream(&body),
                "{proto:?}: the stream is open"
            );
            ctl.finish();
            assert_eq!(read_all(body).await, "last");
        }
    })
    .await
    .expect("test timed out");
}

/// `Release::ResponseFuture` is tower's behaviour: the permit ends with the response head.
#[tokio::test]
async fn release_at_response_future_completion() {
    timeout(LIMIT, async {
        for proto in PROTOCOLS {
            let limiter = limiter(1, None);
            let (app, ctl) = app();
            let svc = ServiceBuilder::new()
                .layer(ServerLimitLayer::new(limiter.clone()).release(Release::ResponseFuture))
                .service(app);
            let addr = start(svc).await;
            let client = client(proto);

            let mut body = client
                .request(get(addr, "/stream"))
                .await
                .unwrap()
                .into_body();
            body.frame().await.unwrap().unwrap();
            assert_eq!(limiter.in_flight(), 0, "{proto:?}: released at the head");
            let second = client.request(get(addr, "/fast")).await.unwrap();
            assert_eq!(read_all(second.into_body()).await, "ok");
            ctl.finish();
            assert_eq!(read_all(body).await, "last");
        }
    })
    .await
    .expect("test timed out");
}

/// Clients that give up: the running request's permit is released and the queued request
/// leaves the queue (hyper drops the futures on connection close / RST_STREAM).
#[tokio::test]
async fn abandoned_requests_release_and_leave_the_queue() {
    timeout(LIMIT, async {
        for proto in PROTOCOLS {
            let limiter = limiter(1, None);
            let (app, mut ctl) = app();
            let svc = ServiceBuilder::new()
                .layer(ServerLimitLayer::new(limiter.clone()))
                .service(app);
            let addr = start(svc).await;
            let client = client(proto);

            let running = tokio::spawn({
                let client = client.clone();
                async move { client.request(get(addr, "/slow")).await }
            });
            assert_eq!(ctl.next_started().await, "/slow");
            let queued = tokio::spawn({
                let client = client.clone();
                async move { client.request(get(addr, "/fast")).await }
            });
            wait_until(|| limiter.waiting() == 1).await;
            assert_eq!(limiter.in_flight(), 1);

            // The queued one gives up first: it leaves the queue, the running one is untouched.
            queued.abort();
            let _ = queued.await;
            wait_until(|| limiter.waiting() == 0).await;
            assert_eq!(limiter.in_flight(), 1);
            // Then the running one: its permit comes back.
            running.abort();
            let _ = running.await;
            wait_until(|| limiter.in_flight() == 0).await;
            // The queued request never reached the handler.
            assert_eq!(ctl.calls.load(Ordering::SeqCst), 1, "{proto:?}");

            // The limiter works on afterwards.
            let ok = client.request(get(addr, "/fast")).await.unwrap();
            assert_eq!(read_all(ok.into_body()).await, "ok");
            wait_until(|| limiter.in_flight() == 0).await;
        }
    })
    .await
    .expect("test timed out");
}

/// A client dropping a streaming body mid-way releases the server's permit.
#[tokio::test]
async fn dropped_stream_releases() {
    timeout(LIMIT, async {
        for proto in PROTOCOLS {
            let limiter = limiter(1, None);
            let (app, _ctl) = app();
            let svc = ServiceBuilder::new()
                .layer(ServerLimitLayer::new(limiter.clone()))
                .service(app);
            let addr = start(svc).await;
            let client = client(proto);
            let mut body = client
                .request(get(addr, "/stream"))
                .await
                .unwrap()
                .into_body();
            body.frame().await.unwrap().unwrap();
            assert_eq!(limiter.in_flight(), 1);
            drop(body);
            wait_until(|| limiter.in_flight() == 0).await;
        }
    })
    .await
    .expect("test timed out");
}

/// A refusal is a 429 response with the JSON body and no Retry-After, for a full queue and
/// for a queue timeout; the handler is not called.
#[tokio::test]
async fn rejection_is_a_429_json_response_without_retry_after() {
    timeout(LIMIT, async {
        for proto in PROTOCOLS {
            let full = limiter(1, Some(0));
            let timed = Limiter::builder("timed")
                .capacity(1)
                .max_queue(Some(4))
                .queue_timeout(Duration::from_millis(50))
                .build()
                .unwrap();
            for (limiter, kind) in [(full, "queue_full"), (timed, "queue_timeout")] {
                let (app, ctl) = app();
                let svc = ServiceBuilder::new()
                    .layer(ServerLimitLayer::new(limiter.clone()))
                    .service(app);
                let addr = start(svc).await;
                let client = client(proto);

                let mut open = client
                    .request(get(addr, "/stream"))
                    .await
                    .unwrap()
                    .into_body();
                open.frame().await.unwrap().unwrap();

                let refused = client.request(get(addr, "/fast")).await.unwrap();
                assert_eq!(refused.status(), 429, "{proto:?} {kind}");
                assert!(refused.headers().get("retry-after").is_none());
                assert_eq!(refused.headers()["content-type"], "application/json");
                let json = read_all(refused.into_body()).await;
                let json = std::str::from_utf8(&json).unwrap();
                let prefix = format!(r#"{{"error":{{"type":"{kind}","message":""#);
                assert!(json.starts_with(&prefix), "{json}");
                assert!(json.ends_with(r#""}}"#), "{json}");
                assert_eq!(
                    ctl.calls.load(Ordering::SeqCst),
                    1,
                    "the handler was not called"
                );
                assert_eq!(limiter.waiting(), 0);

                ctl.finish();
                read_all(open).await;
                wait_until(|| limiter.in_flight() == 0).await;
            }
        }
    })
    .await
    .expect("test timed out");
}

/// hyper-util's TowerToHyperService polls readiness once per request, and the layer adds
/// no polls of its own: N requests, N inner `poll_ready`s, N calls.
#[tokio::test]
async fn poll_ready_once_per_request() {
    timeout(LIMIT, async {
        for proto in PROTOCOLS {
            let limiter = limiter(2, None);
            let (app, ctl) = app();
            let svc = ServiceBuilder::new()
                .layer(ServerLimitLayer::new(limiter.clone()))
                .service(app);
            let addr = start(svc).await;
            let client = client(proto);
            for _ in 0..5 {
                let response = client.request(get(addr, "/fast")).await.unwrap();
                read_all(response.into_body()).await;
            }
            assert_eq!(ctl.ready_polls.load(Ordering::SeqCst), 5, "{proto:?}");
            assert_eq!(ctl.calls.load(Ordering::SeqCst), 5, "{proto:?}");
            wait_until(|| limiter.in_flight() == 0).await;
        }
    })
    .await
    .expect("test timed out");
}

/// HEAD (hyper drops the body unsent) and 204 (an empty body) give their permit back
/// without anyone reading a body.
#[tokio::test]
async fn head_and_no_content_release() {
    timeout(LIMIT, async {
        for proto in PROTOCOLS {
            let limiter = limiter(1, None);
            let (app, _ctl) = app();
            let svc = ServiceBuilder::new()
                .layer(ServerLimitLayer::new(limiter.clone()))
                .service(app);
            let addr = start(svc).await;
            let client = client(proto);

            let head = http::Request::builder()
                .method(Method::HEAD)
                .uri(format!("http://{addr}/fast"))
                .body(Empty::new())
                .unwrap();
            let response = client.request(head).await.unwrap();
            assert_eq!(response.status(), 200);
            // Kept unread: the server side must not wait for us.
            wait_until(|| limiter.in_flight() == 0).await;

            let response = client.request(get(addr, "/empty")).await.unwrap();
            assert_eq!(response.status(), 204);
            wait_until(|| limiter.in_flight() == 0).await;
            // With capacity 1, both were really released: two more go through in turn.
            for path in ["/fast", "/empty"] {
                let response = client.request(get(addr, path)).await.unwrap();
                read_all(response.into_body()).await;
            }
            drop(response);
        }
    })
    .await
    .expect("test timed out");
}

/// Keyed: one limiter per channel (the first path segment): a busy channel queues, another
/// channel is unaffected.
#[tokio::test]
async fn keyed_per_channel_limits() {
    timeout(LIMIT, async {
        for proto in PROTOCOLS {
            let manager = LimiterManager::new("channels", |channel: &String| {
                LimiterConfig::builder(channel.as_str())
                    .capacity(1)
                    .config()
                    .unwrap()
            });
            let (app, ctl) = app();
            let svc = ServiceBuilder::new()
                .layer(ServerLimitLayer::keyed(
                    manager.clone(),
                    |req: &http::Request<hyper::body::Incoming>| {
                        req.uri().path().split('/').nth(1).unwrap_or("").to_string()
                    },
                ))
                .service(app);
            let addr = start(svc).await;
            let client = client(proto);

            let mut a = client
                .request(get(addr, "/a/stream"))
                .await
                .unwrap()
                .into_body();
            a.frame().await.unwrap().unwrap();
            let a_limiter = manager.limiter(&"a".to_string()).unwrap();
            assert_eq!(a_limiter.in_flight(), 1);

            // Channel b has its own slot.
            let b = client.request(get(addr, "/b/fast")).await.unwrap();
            assert_eq!(read_all(b.into_body()).await, "ok");
            // Channel a's second request queues behind the stream.
            let a2 = tokio::spawn({
                let client = client.clone();
                async move { client.request(get(addr, "/a/fast")).await.unwrap() }
            });
            wait_until(|| a_limiter.waiting() == 1).await;
            ctl.finish();
            read_all(a).await;
            assert_eq!(read_all(a2.await.unwrap().into_body()).await, "ok");
            wait_until(|| a_limiter.in_flight() == 0).await;
        }
    })
    .await
    .expect("test timed out");
}

/// Hundreds of requests abandoned at random points (queued, running, streaming, or not at
/// all), over both protocols at once: afterwards nothing is in flight and nobody waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_cancellations_leak_nothing() {
    timeout(LIMIT, async {
        let limiter = limiter(3, Some(20));
        let (app, ctl) = app();
        let svc = ServiceBuilder::new()
            .layer(ServerLimitLayer::new(limiter.clone()))
            .service(app);
        let addr = start(svc).await;
        let clients = [client(Proto::Http1), client(Proto::Http2)];
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            // xorshift: reproducible without a dependency.
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut tasks = Vec::new();
        for i in 0..300u64 {
            let r = next();
            let client = clients[(r % 2) as usize].clone();
            let path = ["/fast", "/stream", "/slow", "/empty"][((r >> 8) % 4) as usize];
            let give_up = Duration::from_millis(1 + (r >> 16) % 15);
            tasks.push(tokio::spawn(async move {
                let _ = timeout(give_up, async {
                    if let Ok(response) = client.request(get(addr, path)).await {
                        let _ = response.into_body().collect().await;
                    }
                })
                .await;
            }));
            if i % 20 == 19 {
                // Let some finish, so that cancellations hit every stage.
                tokio::task::yield_now().await;
            }
        }
        for task in tasks {
            task.await.unwrap();
        }
        wait_until(|| limiter.in_flight() == 0 && limiter.waiting() == 0).await;
        // Still works, and /stream and /slow never finished: every one of those was abandoned.
        ctl.finish();
        let ok = clients[0].request(get(addr, "/fast")).await.unwrap();
        assert_eq!(read_all(ok.into_body()).await, "ok");
        wait_until(|| limiter.in_flight() == 0).await;
    })
    .await
    .expect("test timed out");
}
