//! Fleet limiter under server faults, in-process (each limiter its own "process"): the
//! server gone (fail closed and fail open, then back) and restarted without persistence
//! (the epoch check keeps the fleet at the cap). Each fault is bounded in time and has an
//! asserted outcome. Process-level faults (SIGSTOP, CLIENT KILL, SIGKILL of a holder) are in
//! `fleet_processes.rs`.
#![cfg(not(loom))]

mod fleet_support;

use std::time::{Duration, Instant};

use fairgate::fleet::{FailMode, FleetLimiter, FleetRejected};
use fairgate::limit::{LimiterConfig, RejectReason};
use fleet_support::RedisServer;

const LIMIT: Duration = Duration::from_secs(40);

async fn conn(server: &RedisServer) -> redis::aio::ConnectionManager {
    redis::aio::ConnectionManager::new(server.client())
        .await
        .unwrap()
}

fn local(cap: usize, timeout_ms: u64) -> LimiterConfig {
    LimiterConfig::builder("faults")
        .capacity(cap)
        .queue_timeout(Duration::from_millis(timeout_ms))
        .config()
        .unwrap()
}

async fn fleet(server: &RedisServer, key: &str, cap: usize, mode: FailMode) -> FleetLimiter {
    FleetLimiter::builder(key, local(cap, 3_000))
        .lease_ttl(Duration::from_millis(1500))
        .call_timeout(Duration::from_millis(200))
        .breaker(2, Duration::from_millis(300))
        .fail_mode(mode)
        .build(conn(server).await)
        .unwrap()
}

/// Retries `acquire` until it gives a lease (bounded).
async fn acquire_lease(l: &FleetLimiter, within: Duration) -> fairgate::fleet::FleetPermit {
    let start = Instant::now();
    loop {
        match l.acquire().await {
            Ok(p) if !p.is_degraded() => return p,
            _ => {}
        }
        assert!(start.elapsed() < within, "no lease within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_gone_fail_closed_rejects_typed_then_recovers() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    tokio::time::timeout(LIMIT, async {
        let l = fleet(&server, "closed", 2, FailMode::Closed).await;
        drop(l.acquire().await.unwrap());
        server.kill();
        let start = Instant::now();
        let err = l.acquire().await.unwrap_err();
        assert!(matches!(err, FleetRejected::Unavailable { .. }), "{err}");
        assert_eq!(err.as_str(), "fleet_unavailable");
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        // The breaker is open: the next request does not pay a call timeout.
        let start = Instant::now();
        let err = l.acquire().await.unwrap_err();
        assert!(
            matches!(err, FleetRejected::Unavailable { cause: None, .. }),
            "{err}"
        );
        assert!(
            start.elapsed() < Duration::from_millis(100),
            "{:?}",
            start.elapsed()
        );
        assert!(l.counters().unavailable >= 2);
        assert_eq!(
            l.local().in_flight(),
            0,
            "a refused request holds no local permit"
        );
        server.start_again();
        let p = acquire_lease(&l, Duration::from_secs(5)).await;
        assert!(p.fence().is_some());
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_gone_fail_open_admits_locally_under_the_fallback_cap_then_recovers() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    tokio::time::timeout(LIMIT, async {
        let mode = FailMode::Open {
            fallback_limit: Some(2),
        };
        let l = FleetLimiter::builder("open", local(10, 600))
            .lease_ttl(Duration::from_millis(1500))
            .call_timeout(Duration::from_millis(200))
            .breaker(2, Duration::from_millis(300))
            .fail_mode(mode)
            .build(conn(&server).await)
            .unwrap();
        drop(l.acquire().await.unwrap());
        server.kill();
        let a = l.acquire().await.unwrap();
        let b = l.acquire().await.unwrap();
        assert!(a.is_degraded() && b.is_degraded());
        assert_eq!(a.fence(), None);
        // The fallback cap holds: a third waits and times out in the queue.
        let err = l.acquire().await.unwrap_err();
        match &err {
            FleetRejected::Local(r) => assert_eq!(r.reason(), RejectReason::QueueTimeout),
            other => panic!("{other}"),
        }
        assert_eq!(l.counters().degraded, 2);
        drop((a, b));
        server.start_again();
        let p = acquire_lease(&l, Duration::from_secs(5)).await;
        assert!(!p.is_degraded());
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_without_persistence_does_not_admit_past_the_cap() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    tokio::time::timeout(LIMIT, async {
        let cap = 3;
        let holder = fleet(&server, "restart", cap, FailMode::Closed).await;
        let newcomer = fleet(&server, "restart", cap, FailMode::Closed).await;
        drop(newcomer.acquire().await.unwrap()); // the newcomer has seen the epoch
        let mut held = Vec::new();
        for _ in 0..cap {
            held.push(holder.acquire().await.unwrap());
        }
        // The newcomer's head waits (polling) while the server loses everything.
        let n2 = newcomer.clone();
        let waiting = tokio::spawn(async move {
            let start = Instant::now();
            let mut got = Vec::new();
            while start.elapsed() < Duration::from_millis(2500) {
                if let Ok(p) = n2.acquire().await {
                    got.push((start.elapsed(), p));
                }
            }
            got
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let restarted = Instant::now();
        server.restart();
        // Holders re-assert within the quarantine; the newcomer gets nothing while they
        // hold the whole cap (without the epoch check it would get the cap a second time).
        let got = waiting.await.unwrap();
        assert!(
            got.is_empty(),
            "admitted past the cap after restart: {:?}",
            got.iter().map(|g| g.0).collect::<Vec<_>>()
        );
        let c = holder.counters();
        assert_eq!(c.leases_reasserted, cap as u64, "{c:?}");
        assert_eq!(c.leases_lost, 0, "{c:?}");
        assert!(held.iter().all(|p| !p.is_lost()));
        let s = holder.fleet_snapshot().await.unwrap();
        assert_eq!(s.in_flight, cap, "{s:?}");
        assert!(restarted.elapsed() < Duration::from_secs(5));
        drop(held);
        let p = acquire_lease(&newcomer, Duration::from_secs(3)).await;
        assert!(p.fence().is_some());
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_longer_than_the_ttl_is_reported_as_lost_leases() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    tokio::time::timeout(LIMIT, async {
        let l = fleet(&server, "longpause", 2, FailMode::Closed).await;
        let p = l.acquire().await.unwrap();
        // The server sleeps past the lease's expiry (TTL 1.5 s): by its own clock the
        // lease is gone when it wakes, and the next renewal must say so.
        server.pause();
        tokio::time::sleep(Duration::from_millis(2200)).await;
        server.resume();
        let start = Instant::now();
        while !p.is_lost() {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "{:?}",
                l.counters()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(l.counters().leases_lost, 1);
        // Not re-acquired behind the user's back.
        assert_eq!(l.fleet_snapshot().await.unwrap().in_flight, 0);
        drop(p);
        let again = acquire_lease(&l, Duration::from_secs(5)).await;
        assert!(!again.is_lost());
    })
    .await
    .unwrap();
}
