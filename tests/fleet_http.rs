//! A `FleetLimiter` as the admission source of the http server and client layers, behind a
//! real hyper server on 127.0.0.1 and against a real redis-server: the fleet lease is held
//! to the end of a streaming response body (fleet-wide in-flight 1 while it streams, 0
//! after), dropping the body mid-stream releases it, and refusals are the right HTTP
//! responses (429 `queue_full` / `queue_timeout`, 503 `unavailable` when Redis is gone
//! under fail-closed).
#![cfg(not(loom))]

mod fleet_support;
#[path = "hyper_support/mod.rs"]
mod support;

use std::future::Future;
use std::time::Duration;

use fairgate::fleet::{FailMode, FleetLimiter, FleetRejected};
use fairgate::http::{ClientLimitLayer, Release, ServerLimitLayer};
use fairgate::limit::{LimiterConfig, RejectReason, Rejected};
use fleet_support::RedisServer;
use http_body_util::BodyExt;
use support::*;
use tokio::time::timeout;
use tower::{ServiceBuilder, ServiceExt};

/// A fleet limiter on `key` (cap = local capacity), as one "process" of the fleet.
async fn fleet(
    server: &RedisServer,
    key: &str,
    cap: usize,
    max_queue: Option<usize>,
    queue_timeout: Duration,
    mode: FailMode,
) -> FleetLimiter {
    let conn = redis::aio::ConnectionManager::new(server.client())
        .await
        .unwrap();
    let local = LimiterConfig::builder("fleet-http")
        .capacity(cap)
        .max_queue(max_queue)
        .queue_timeout(queue_timeout)
        .config()
        .unwrap();
    FleetLimiter::builder(key, local)
        .lease_ttl(Duration::from_millis(1500))
        .call_timeout(Duration::from_millis(200))
        .breaker(2, Duration::from_millis(300))
        .fail_mode(mode)
        .build(conn)
        .unwrap()
}

/// Fleet-wide leases on the limiter's key, by the server's clock.
async fn fleet_in_flight(limiter: &FleetLimiter) -> usize {
    limiter.fleet_snapshot().await.unwrap().in_flight
}

/// Polls the async `cond` until it holds. The release of a lease in Redis is done by the
/// background releaser and has no completion signal to wait on; the test's timeout bounds
/// the poll.
async fn eventually<F, Fut>(cond: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    while !cond().await {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Asserts that another process on the same key cannot get the (only) fleet lease now.
async fn fleet_cap_is_taken(other: &FleetLimiter) {
    match other.acquire().await {
        Err(FleetRejected::Local(r)) => assert_eq!(r.reason(), RejectReason::QueueTimeout),
        Err(e) => panic!("unexpected refusal: {e}"),
        Ok(p) => panic!("another process got a lease while the stream runs: {p:?}"),
    }
}

/// Server side: the lease is held while the response body streams — the fleet sees one
/// in flight and another process is refused — and given back when the body ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_streaming_body_holds_the_fleet_lease() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    timeout(LIMIT, async {
        for proto in PROTOCOLS {
            let key = format!("server-stream-{proto:?}");
            let long = Duration::from_secs(5);
            let limiter = fleet(&redis, &key, 1, None, long, FailMode::Closed).await;
            let short = Duration::from_millis(150);
            let other = fleet(&redis, &key, 1, None, short, FailMode::Closed).await;
            let (app, mut ctl) = app();
            let svc = ServiceBuilder::new()
                .layer(ServerLimitLayer::fleet(limiter.clone()))
                .service(app);
            let addr = start(svc).await;

            let response = client(proto).request(get(addr, "/stream")).await.unwrap();
            assert_eq!(response.status(), 200);
            let mut body = response.into_body();
            let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
            assert_eq!(first, "first ");
            assert_eq!(ctl.next_started().await, "/stream");
            assert_eq!(
                limiter.held_leases(),
                1,
                "{proto:?}: lease held while streaming"
            );
            assert_eq!(limiter.local().in_flight(), 1);
            assert_eq!(fleet_in_flight(&limiter).await, 1, "{proto:?}");
            fleet_cap_is_taken(&other).await;
            assert_eq!(fleet_in_flight(&limiter).await, 1, "{proto:?}: still held");

            ctl.finish();
            assert_eq!(read_all(body).await, "last");
            wait_until(|| limiter.held_leases() == 0 && limiter.local().in_flight() == 0).await;
            eventually(|| async { fleet_in_flight(&limiter).await == 0 }).await;
            // The lease is back: the other process gets it.
            let permit = other.acquire().await.expect("the lease came back");
            assert!(!permit.is_degraded());
        }
    })
    .await
    .expect("test timed out");
}

/// The contrast: `Release::ResponseFuture` (tower's behaviour) gives the lease back at the
/// response head, while the body still streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_at_the_head_when_asked() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    timeout(LIMIT, async {
        let limiter = fleet(
            &redis,
            "head",
            1,
            None,
            Duration::from_secs(5),
            FailMode::Closed,
        )
        .await;
        let (app, ctl) = app();
        let svc = ServiceBuilder::new()
            .layer(ServerLimitLayer::fleet(limiter.clone()).release(Release::ResponseFuture))
            .service(app);
        let addr = start(svc).await;
        let mut body = client(Proto::Http1)
            .request(get(addr, "/stream"))
            .await
            .unwrap()
            .into_body();
        body.frame().await.unwrap().unwrap();
        assert_eq!(limiter.held_leases(), 0);
        eventually(|| async { fleet_in_flight(&limiter).await == 0 }).await;
        ctl.finish();
        assert_eq!(read_all(body).await, "last");
    })
    .await
    .expect("test timed out");
}

/// Server side: a client dropping the body mid-stream releases the lease (hyper drops the
/// server's response body when the connection or stream goes away).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_dropped_body_releases_the_fleet_lease() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    timeout(LIMIT, async {
        for proto in PROTOCOLS {
            let key = format!("server-drop-{proto:?}");
            let long = Duration::from_secs(5);
            let limiter = fleet(&redis, &key, 1, None, long, FailMode::Closed).await;
            let (app, _ctl) = app();
            let svc = ServiceBuilder::new()
                .layer(ServerLimitLayer::fleet(limiter.clone()))
                .service(app);
            let addr = start(svc).await;
            let mut body = client(proto)
                .request(get(addr, "/stream"))
                .await
                .unwrap()
                .into_body();
            body.frame().await.unwrap().unwrap();
            assert_eq!(limiter.held_leases(), 1, "{proto:?}");
            assert_eq!(fleet_in_flight(&limiter).await, 1, "{proto:?}");

            drop(body);
            wait_until(|| limiter.held_leases() == 0 && limiter.local().in_flight() == 0).await;
            eventually(|| async { fleet_in_flight(&limiter).await == 0 }).await;
        }
    })
    .await
    .expect("test timed out");
}

/// Client side: the lease is taken before the request is sent and held until the response
/// body ends; dropping the body mid-stream releases it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_body_holds_the_fleet_lease_until_end_or_drop() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    timeout(LIMIT, async {
        for proto in PROTOCOLS {
            let key = format!("client-{proto:?}");
            let long = Duration::from_secs(5);
            let limiter = fleet(&redis, &key, 1, None, long, FailMode::Closed).await;
            let (app, ctl) = app();
            let addr = start(app).await;
            let client = ServiceBuilder::new()
                .layer(ClientLimitLayer::fleet(limiter.clone()))
                .service(client(proto));

            // Dropped mid-stream: released by the drop itself.
            let mut body = client
                .clone()
                .oneshot(get(addr, "/stream"))
                .await
                .unwrap()
                .into_body();
            body.frame().await.unwrap().unwrap();
            assert_eq!(limiter.held_leases(), 1, "{proto:?}");
            assert_eq!(fleet_in_flight(&limiter).await, 1, "{proto:?}");
            drop(body);
            assert_eq!(limiter.held_leases(), 0, "{proto:?}: released by the drop");
            assert_eq!(limiter.local().in_flight(), 0);
            eventually(|| async { fleet_in_flight(&limiter).await == 0 }).await;

            // Read to the end: held until the end, released by it.
            let mut body = client
                .clone()
                .oneshot(get(addr, "/stream"))
                .await
                .unwrap()
                .into_body();
            body.frame().await.unwrap().unwrap();
            assert_eq!(limiter.held_leases(), 1, "{proto:?}");
            assert_eq!(fleet_in_flight(&limiter).await, 1, "{proto:?}");
            ctl.finish();
            assert_eq!(read_all(&mut body).await, "last");
            assert!(!body.holds_permit());
            assert_eq!(limiter.held_leases(), 0, "{proto:?}: released by the end");
            eventually(|| async { fleet_in_flight(&limiter).await == 0 }).await;
        }
    })
    .await
    .expect("test timed out");
}

/// Asserts a JSON rejection response of `status` and `kind`, without `Retry-After`.
async fn assert_rejection(
    response: http::Response<hyper::body::Incoming>,
    status: u16,
    kind: &str,
) {
    assert_eq!(response.status(), status, "{kind}");
    assert!(response.headers().get("retry-after").is_none());
    assert_eq!(response.headers()["content-type"], "application/json");
    let json = read_all(response.into_body()).await;
    let json = std::str::from_utf8(&json).unwrap();
    let prefix = format!(r#"{{"error":{{"type":"{kind}","message":""#);
    assert!(json.starts_with(&prefix), "{json}");
}

/// Refusals through the server layer are responses: 429 `queue_full` (local queue),
/// 429 `queue_timeout` (another process holds the fleet cap), 503 `unavailable` (Redis
/// gone, fail closed); the client layer's refusal is a `Rejected` of reason `Unavailable`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_the_right_http_responses() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    timeout(LIMIT, async {
        let short = Duration::from_millis(150);
        let (app, ctl) = app();

        // The local queue is full: 429 queue_full, the handler is not called.
        let no_queue = fleet(&redis, "refusals", 1, Some(0), short, FailMode::Closed).await;
        let addr = start(
            ServiceBuilder::new()
                .layer(ServerLimitLayer::fleet(no_queue.clone()))
                .service(app.clone()),
        )
        .await;
        let http = client(Proto::Http1);
        let mut open = http
            .request(get(addr, "/stream"))
            .await
            .unwrap()
            .into_body();
        open.frame().await.unwrap().unwrap();
        let refused = http.request(get(addr, "/fast")).await.unwrap();
        assert_rejection(refused, 429, "queue_full").await;
        assert_eq!(ctl.calls.load(std::sync::atomic::Ordering::SeqCst), 1);

        // Another process of the fleet holds the only lease: this one waits as the head
        // of its queue until its queue timeout, then 429 queue_timeout.
        let waiting = fleet(&redis, "refusals", 1, None, short, FailMode::Closed).await;
        let addr = start(
            ServiceBuilder::new()
                .layer(ServerLimitLayer::fleet(waiting.clone()))
                .service(app.clone()),
        )
        .await;
        let refused = http.request(get(addr, "/fast")).await.unwrap();
        assert_rejection(refused, 429, "queue_timeout").await;
        assert_eq!(waiting.held_leases(), 0);
        ctl.finish();
        read_all(open).await;
        wait_until(|| no_queue.held_leases() == 0).await;

        // Redis gone, fail closed: 503 unavailable from the server layer...
        redis.kill();
        let refused = http.request(get(addr, "/fast")).await.unwrap();
        assert_rejection(refused, 503, "unavailable").await;
        // ...and a `Rejected` of reason `Unavailable` from the client layer.
        let limited = ServiceBuilder::new()
            .layer(ClientLimitLayer::fleet(waiting.clone()))
            .service(http.clone());
        let err = limited.oneshot(get(addr, "/fast")).await.unwrap_err();
        let rejected = err.downcast_ref::<Rejected>().expect("a Rejected");
        assert_eq!(rejected.reason(), RejectReason::Unavailable);
        assert_eq!(waiting.local().in_flight(), 0);
        assert_eq!(ctl.calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    })
    .await
    .expect("test timed out");
}
