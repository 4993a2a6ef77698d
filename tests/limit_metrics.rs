//! `MetricsObserver` records through the `metrics` facade: asserted with metrics-util's
//! debugging recorder, installed locally for the test's thread.
#![cfg(not(loom))]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fairgate::limit::{Limiter, MetricsObserver, RejectReason};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::MetricKind;

/// What the recorder saw so far. The debugging recorder's snapshots are destructive
/// (counters and gauges are swapped to 0, histograms drained), so every snapshot is folded
/// in here: counters summed, histogram samples appended, gauges overwritten. Every event
/// sets all three gauges, so gauges are read right after an event.
/// A metric's name and its sorted labels.
type Id = (String, Vec<(String, String)>);

#[derive(Default)]
struct Seen {
    counters: HashMap<Id, u64>,
    gauges: HashMap<Id, f64>,
    histograms: HashMap<Id, Vec<f64>>,
    kinds: Vec<(MetricKind, Id)>,
}

impl Seen {
    fn update(&mut self, snapshotter: &Snapshotter) -> &mut Self {
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let (kind, key) = key.into_parts();
            let mut labels: Vec<(String, String)> = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            let id = (key.name().to_owned(), labels.clone());
            self.kinds.push((kind, (key.name().to_owned(), labels)));
            match value {
                DebugValue::Counter(n) => *self.counters.entry(id).or_default() += n,
                DebugValue::Gauge(v) => {
                    self.gauges.insert(id, v.0);
                }
                DebugValue::Histogram(v) => self
                    .histograms
                    .entry(id)
                    .or_default()
                    .extend(v.into_iter().map(|x| x.0)),
            }
        }
        self
    }

    fn counter(&self, result: &str) -> u64 {
        let id = (
            "fairgate_requests_total".to_owned(),
            labels(&[("limiter", "m"), ("result", result)]),
        );
        self.counters.get(&id).copied().unwrap_or(0)
    }

    fn gauge(&self, name: &str) -> f64 {
        let id = (name.to_owned(), labels(&[("limiter", "m")]));
        *self
            .gauges
            .get(&id)
            .unwrap_or_else(|| panic!("no gauge {name}"))
    }

    fn waits(&self, result: &str) -> Vec<f64> {
        let id = (
            "fairgate_queue_wait_seconds".to_owned(),
            labels(&[("limiter", "m"), ("result", result)]),
        );
        self.histograms.get(&id).cloned().unwrap_or_default()
    }
}

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<_> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    v.sort();
    v
}

#[test]
fn counters_gauges_and_wait_histogram_are_recorded() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let mut seen = Seen::default();
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(20), async {
                let limiter = Limiter::builder("m")
                    .capacity(2)
                    .max_queue(Some(1))
                    .queue_timeout(Duration::from_millis(30))
                    .observer(Arc::new(MetricsObserver::new()))
                    .build()
                    .unwrap();
                let a = limiter.acquire().await.unwrap();
                let b = limiter.acquire().await.unwrap();
                let s = seen.update(&snapshotter);
                assert_eq!(s.gauge("fairgate_in_flight"), 2.0);
                assert_eq!(s.gauge("fairgate_capacity"), 2.0);

                let timed_out = limiter.acquire().await.unwrap_err();
                assert_eq!(timed_out.reason(), RejectReason::QueueTimeout);

                let mut queued = Box::pin(limiter.acquire());
                assert!(futures::poll!(&mut queued).is_pending());
                assert_eq!(
                    limiter.try_acquire().unwrap_err().reason(),
                    RejectReason::QueueFull
                );
                assert_eq!(seen.update(&snapshotter).gauge("fairgate_waiting"), 1.0);
                drop(queued);
                assert_eq!(seen.update(&snapshotter).gauge("fairgate_waiting"), 0.0);

                drop(a);
                assert_eq!(seen.update(&snapshotter).gauge("fairgate_in_flight"), 1.0);
                limiter.set_capacity(5).unwrap();
                assert_eq!(seen.update(&snapshotter).gauge("fairgate_capacity"), 5.0);
                limiter.close();
                assert!(limiter.try_acquire().is_err());
                drop(b);
                let s = seen.update(&snapshotter);
                assert_eq!(s.gauge("fairgate_in_flight"), 0.0);

                assert_eq!(s.counter("acquired"), 2);
                assert_eq!(s.counter("queue_timeout"), 1);
                assert_eq!(s.counter("queue_full"), 1);
                assert_eq!(s.counter("canceled"), 1);
                assert_eq!(s.counter("closed"), 1);
                assert_eq!(s.counter("deadline_exceeded"), 0);

                let timeout_waits = s.waits("queue_timeout");
                assert_eq!(timeout_waits.len(), 1);
                assert!(timeout_waits[0] >= 0.030, "{timeout_waits:?}");
                assert_eq!(s.waits("acquired"), [0.0, 0.0]);
                assert_eq!(s.waits("queue_full"), [0.0]);
                assert_eq!(s.waits("canceled").len(), 1);
            })
            .await
            .expect("test exceeded its time bound")
        })
    });
    // Only the three gauges, the counter and the histogram exist, labelled by limiter name
    // only (plus `result` on the counter and histogram).
    assert!(!seen.kinds.is_empty());
    for (kind, (name, labels)) in &seen.kinds {
        let expected = match name.as_str() {
            "fairgate_requests_total" => MetricKind::Counter,
            "fairgate_queue_wait_seconds" => MetricKind::Histogram,
            "fairgate_in_flight" | "fairgate_waiting" | "fairgate_capacity" => MetricKind::Gauge,
            other => panic!("unexpected metric {other}"),
        };
        assert_eq!(*kind, expected, "{name}");
        let keys: Vec<&str> = labels.iter().map(|(k, _)| k.as_str()).collect();
        match kind {
            MetricKind::Gauge => assert_eq!(keys, ["limiter"]),
            _ => assert_eq!(keys, ["limiter", "result"]),
        }
        assert_eq!(labels[0].1, "m");
    }
}

#[test]
fn without_a_local_recorder_nothing_breaks() {
    let limiter = Limiter::builder("m")
        .capacity(1)
        .observer(Arc::new(MetricsObserver::new()))
        .build()
        .unwrap();
    drop(limiter.try_acquire().unwrap());
    assert_eq!(limiter.in_flight(), 0);
}
