//! `FleetLimitLayer` around a real tower service, against a real redis-server: the cap
//! holds across two layered services on different limiters ("processes"), and a refusal is
//! a downcastable `FleetRejected`.
#![cfg(not(loom))]

mod fleet_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fairgate::fleet::{FleetLimitLayer, FleetLimiter, FleetRejected};
use fairgate::limit::{LimiterConfig, RejectReason};
use fleet_support::RedisServer;
use tower::{service_fn, Layer, Service, ServiceExt};

async fn limiter(server: &RedisServer, cap: usize, timeout_ms: u64) -> FleetLimiter {
    let conn = redis::aio::ConnectionManager::new(server.client())
        .await
        .unwrap();
    let local = LimiterConfig::builder("svc")
        .capacity(cap)
        .queue_timeout(Duration::from_millis(timeout_ms))
        .config()
        .unwrap();
    FleetLimiter::builder("tower", local)
        .lease_ttl(Duration::from_millis(1500))
        .call_timeout(Duration::from_millis(300))
        .wake_client(server.client())
        .build(conn)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layered_services_share_the_fleet_cap() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    tokio::time::timeout(Duration::from_secs(30), async {
        let now = Arc::new(AtomicUsize::new(0));
        let max = Arc::new(AtomicUsize::new(0));
        let work = {
            let (now, max) = (now.clone(), max.clone());
            service_fn(move |x: u32| {
                let (now, max) = (now.clone(), max.clone());
                async move {
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    max.fetch_max(n, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(3)).await;
                    now.fetch_sub(1, Ordering::SeqCst);
                    Ok::<_, std::convert::Infallible>(x + 1)
                }
            })
        };
        let mut calls = Vec::new();
        for _ in 0..2 {
            let svc = FleetLimitLayer::new(limiter(&server, 3, 10_000).await).layer(work.clone());
            for i in 0..30u32 {
                let svc = svc.clone();
                calls.push(tokio::spawn(async move { svc.oneshot(i).await.unwrap() }));
            }
        }
        for (i, c) in calls.into_iter().enumerate() {
            assert_eq!(c.await.unwrap(), (i % 30) as u32 + 1);
        }
        let max = max.load(Ordering::SeqCst);
        assert!((2..=3).contains(&max), "max in flight {max}, cap 3");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_is_a_downcastable_fleet_rejection() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    tokio::time::timeout(Duration::from_secs(30), async {
        let l = limiter(&server, 1, 100).await;
        let other = limiter(&server, 1, 100).await;
        let _held = other.acquire().await.unwrap();
        let mut svc = FleetLimitLayer::new(l).layer(service_fn(|x: u32| async move {
            Ok::<_, std::convert::Infallible>(x)
        }));
        let err = svc.ready().await.unwrap().call(1).await.unwrap_err();
        let rejected = err
            .downcast_ref::<FleetRejected>()
            .expect("a FleetRejected");
        match rejected {
            FleetRejected::Local(r) => assert_eq!(r.reason(), RejectReason::QueueTimeout),
            other => panic!("{other}"),
        }
    })
    .await
    .unwrap();
}
