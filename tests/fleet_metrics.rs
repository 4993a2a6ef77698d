//! Fleet events through the `metrics` facade (`MetricsObserver` as a `FleetObserver`),
//! against a real redis-server. The debugging recorder is installed globally: the fleet's
//! background tasks run on runtime threads. This binary holds only this test.
#![cfg(not(loom))]

mod fleet_support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fairgate::fleet::FleetLimiter;
use fairgate::limit::{LimiterConfig, MetricsObserver};
use fleet_support::RedisServer;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_events_reach_the_metrics_recorder() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();
    tokio::time::timeout(Duration::from_secs(20), async {
        let conn = redis::aio::ConnectionManager::new(server.client())
            .await
            .unwrap();
        let local = LimiterConfig::builder("m").capacity(2).config().unwrap();
        let l = FleetLimiter::builder("metered", local)
            .lease_ttl(Duration::from_millis(1500))
            .call_timeout(Duration::from_millis(300))
            .observer(Arc::new(MetricsObserver::new()))
            .fleet_observer(Arc::new(MetricsObserver::new()))
            .build(conn)
            .unwrap();
        for _ in 0..3 {
            drop(l.acquire().await.unwrap());
        }
    })
    .await
    .unwrap();
    let mut counters = HashMap::new();
    let mut histograms = HashMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let (_, key) = key.into_parts();
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        let id = format!("{}{{{}}}", key.name(), labels.join(","));
        match value {
            DebugValue::Counter(n) => {
                counters.insert(id, n);
            }
            DebugValue::Histogram(v) => {
                histograms.insert(id, v.len());
            }
            DebugValue::Gauge(_) => {}
        }
    }
    assert_eq!(
        counters.get("fairgate_fleet_admissions_total{key=metered,result=leased}"),
        Some(&3),
        "{counters:?}"
    );
    assert_eq!(
        histograms.get("fairgate_fleet_wait_seconds{key=metered}"),
        Some(&3)
    );
    assert!(histograms.get("fairgate_fleet_round_trip_seconds{key=metered}") >= Some(&3));
    // The local limiter's metrics come through the same observer type.
    assert_eq!(
        counters.get("fairgate_requests_total{limiter=m,result=acquired}"),
        Some(&3),
        "{counters:?}"
    );
}
