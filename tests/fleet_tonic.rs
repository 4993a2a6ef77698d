//! A `FleetLimiter` behind the tonic server and client layers: real tonic servers and
//! clients on 127.0.0.1 (the hand-written `test.Test` service) against a real redis-server.
//! A server-streaming call holds the fleet lease until its stream ends or the client drops
//! the `Streaming` (fleet-wide in-flight 1 while it streams, 0 after), and refusals are the
//! right gRPC statuses (`UNAVAILABLE` when Redis is gone under fail-closed,
//! `DEADLINE_EXCEEDED` when the caller's `grpc-timeout` ends the fleet wait, leaving no
//! ticket or lease behind).
#![cfg(not(loom))]

mod common_tonic;
mod fleet_support;

use std::future::Future;
use std::time::Duration;

use common_tonic::*;
use fairgate::fleet::{FailMode, FleetLimiter};
use fairgate::limit::LimiterConfig;
use fairgate::tonic::{ClientLimitLayer, ServerLimitLayer};
use fleet_support::RedisServer;
use tonic::client::Grpc;
use tonic::transport::Server;
use tonic::Code;
use tower::ServiceBuilder;

/// A fleet limiter on `key` (cap = local capacity = 1), as one "process" of the fleet.
async fn fleet(redis: &RedisServer, key: &str, queue_timeout: Duration) -> FleetLimiter {
    let conn = redis::aio::ConnectionManager::new(redis.client())
        .await
        .unwrap();
    let local = LimiterConfig::builder("fleet-tonic")
        .capacity(1)
        .queue_timeout(queue_timeout)
        .config()
        .unwrap();
    FleetLimiter::builder(key, local)
        .lease_ttl(Duration::from_millis(1500))
        .call_timeout(Duration::from_millis(200))
        .breaker(2, Duration::from_millis(300))
        .fail_mode(FailMode::Closed)
        .build(conn)
        .unwrap()
}

/// A tonic server with the whole router behind the fleet-limited server layer.
fn serve_fleet(limiter: &FleetLimiter) -> ServerGuard {
    let (incoming, addr) = listen();
    spawn(
        addr,
        Server::builder()
            .layer(ServerLimitLayer::fleet(limiter.clone()))
            .add_service(TestService::default())
            .serve_with_incoming(incoming),
    )
}

/// Fleet-wide live leases on the limiter's key, by the Redis server's clock.
async fn fleet_in_flight(limiter: &FleetLimiter) -> usize {
    limiter.fleet_snapshot().await.unwrap().in_flight
}

/// Polls the async `cond` until it holds. A lease goes back to Redis through the background
/// releaser, which has no completion signal to wait on; the test's timeout bounds the poll.
async fn eventually<F, Fut>(cond: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    while !cond().await {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Nothing held for `limiter`: no local permit, no lease of this process, none in Redis.
async fn all_released(limiter: &FleetLimiter) {
    wait_until("the local permit and the lease are released", || {
        limiter.local().in_flight() == 0 && limiter.held_leases() == 0
    })
    .await;
    eventually(|| async { fleet_in_flight(limiter).await == 0 }).await;
}

async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("test timed out")
}

/// Server layer: the lease is held while the server stream runs, through every message, and
/// given back at its end; then again for a stream the client drops half-way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_stream_holds_the_fleet_lease_until_it_ends_or_is_dropped() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    bounded(async {
        let limiter = fleet(&redis, "tonic-server-stream", Duration::from_secs(5)).await;
        let server = serve_fleet(&limiter);

        // Three messages 300 ms apart (and a pause before the end): the lease is checked
        // after each, while the handler's stream is still running.
        let mut replies = stream(
            Grpc::new(channel(server.addr).await),
            stream_call(1, 3, 300),
        )
        .await
        .unwrap();
        for seq in 0..3 {
            let reply = replies.message().await.unwrap().expect("a message");
            assert_eq!(reply.seq, seq);
            assert_eq!(limiter.held_leases(), 1, "lease held at message {seq}");
            assert_eq!(limiter.local().in_flight(), 1);
            assert_eq!(fleet_in_flight(&limiter).await, 1, "message {seq}");
        }
        assert!(
            replies.message().await.unwrap().is_none(),
            "the stream ends"
        );
        all_released(&limiter).await;

        // The client drops the `Streaming` mid-stream: the server's body is dropped.
        let mut replies = stream(
            Grpc::new(channel(server.addr).await),
            stream_call(2, 100, 200),
        )
        .await
        .unwrap();
        replies.message().await.unwrap().expect("a message");
        assert_eq!(fleet_in_flight(&limiter).await, 1);
        drop(replies);
        all_released(&limiter).await;
    })
    .await;
}

/// Client layer: the lease is taken before the call enters the channel and held until the
/// `Streaming` ends or is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_stream_holds_the_fleet_lease_until_it_ends_or_is_dropped() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    bounded(async {
        let limiter = fleet(&redis, "tonic-client-stream", Duration::from_secs(5)).await;
        let server = serve_plain(TestService::default());
        let limited = ServiceBuilder::new()
            .layer(ClientLimitLayer::fleet(limiter.clone()))
            .service(channel(server.addr).await);

        let mut replies = stream(Grpc::new(limited.clone()), stream_call(1, 2, 300))
            .await
            .unwrap();
        replies.message().await.unwrap().expect("a message");
        assert_eq!(limiter.held_leases(), 1);
        assert_eq!(fleet_in_flight(&limiter).await, 1);
        replies.message().await.unwrap().expect("a message");
        assert_eq!(fleet_in_flight(&limiter).await, 1);
        assert!(replies.message().await.unwrap().is_none());
        all_released(&limiter).await;

        let mut replies = stream(Grpc::new(limited), stream_call(2, 100, 200))
            .await
            .unwrap();
        replies.message().await.unwrap().expect("a message");
        assert_eq!(fleet_in_flight(&limiter).await, 1);
        drop(replies);
        all_released(&limiter).await;
    })
    .await;
}

/// The caller's `grpc-timeout` bounds the fleet wait: while another process holds the only
/// lease, a call with a 300 ms timeout is refused `DEADLINE_EXCEEDED` long before the 10 s
/// queue timeout, and its abandoned wait leaves no ticket or lease in Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grpc_timeout_bounds_the_fleet_wait() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    bounded(async {
        let key = "tonic-deadline";
        let limiter = fleet(&redis, key, Duration::from_secs(10)).await;
        let other = fleet(&redis, key, Duration::from_secs(10)).await;
        let held = other
            .acquire()
            .await
            .expect("the other process takes the lease");
        let server = serve_plain(TestService::default());
        let limited = ServiceBuilder::new()
            .layer(ClientLimitLayer::fleet(limiter.clone()))
            .service(channel(server.addr).await);

        let started = std::time::Instant::now();
        let status = unary(
            Grpc::new(limited),
            unary_call(1, 0),
            Some(Duration::from_millis(300)),
        )
        .await
        .unwrap_err();
        assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
        assert_eq!(reason(&status), "deadline_exceeded");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(limiter.local().in_flight(), 0);
        assert_eq!(limiter.local().waiting(), 0);
        assert_eq!(limiter.held_leases(), 0);
        // The dropped head's ticket is withdrawn; only the other process' lease is live.
        eventually(|| async {
            let snap = limiter.fleet_snapshot().await.unwrap();
            snap.waiters == 0 && snap.in_flight == 1
        })
        .await;
        drop(held);
        eventually(|| async { fleet_in_flight(&limiter).await == 0 }).await;
    })
    .await;
}

/// Redis gone under fail-closed: the server layer answers `UNAVAILABLE` (reason
/// `unavailable`) and the handler never runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_is_unavailable() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    bounded(async {
        let limiter = fleet(&redis, "tonic-down", Duration::from_secs(1)).await;
        let service = TestService::default();
        let seen = std::sync::Arc::clone(&service.seen);
        let (incoming, addr) = listen();
        let _server = spawn(
            addr,
            Server::builder()
                .layer(ServerLimitLayer::fleet(limiter.clone()))
                .add_service(service)
                .serve_with_incoming(incoming),
        );
        let ch = channel(addr).await;
        unary(Grpc::new(ch.clone()), unary_call(1, 0), None)
            .await
            .expect("admitted while Redis is up");

        redis.kill();
        let status = unary(Grpc::new(ch), unary_call(2, 0), None)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert_eq!(reason(&status), "unavailable");
        assert_eq!(seen.started(), vec![1], "the refused call never ran");
        assert_eq!(limiter.local().in_flight(), 0);
        assert_eq!(limiter.local().waiting(), 0);
    })
    .await;
}
