//! Fleet limiter against a real redis-server, several limiters (each its own "process":
//! own id, own head, own renewer) in this test process: admission, round trips, the cap
//! across limiters, idempotent retry of an unknown outcome, cancellation, lost leases,
//! bounded state.
#![cfg(not(loom))]

mod fleet_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fairgate::fleet::{FleetLimiter, FleetObserver};
use fairgate::limit::LimiterConfig;
use fleet_support::RedisServer;
use redis::AsyncCommands;

const LIMIT: Duration = Duration::from_secs(30);

async fn conn(server: &RedisServer) -> redis::aio::ConnectionManager {
    redis::aio::ConnectionManager::new(server.client())
        .await
        .unwrap()
}

fn local(cap: usize) -> LimiterConfig {
    LimiterConfig::builder("t").capacity(cap).config().unwrap()
}

async fn fleet(server: &RedisServer, key: &str, cap: usize) -> FleetLimiter {
    FleetLimiter::builder(key, local(cap))
        .lease_ttl(Duration::from_millis(1500))
        .call_timeout(Duration::from_millis(300))
        .wake_client(server.client())
        .build(conn(server).await)
        .unwrap()
}

/// All keys of the server, sorted.
async fn keys(c: &mut redis::aio::ConnectionManager) -> Vec<String> {
    let mut k: Vec<String> = c.keys("*").await.unwrap();
    k.sort();
    k
}

/// Waits (bounded) until the fleet snapshot shows `in_flight` and `waiters`.
async fn settle(l: &FleetLimiter, in_flight: usize, waiters: usize) {
    let start = std::time::Instant::now();
    loop {
        let s = l.fleet_snapshot().await.unwrap();
        if s.in_flight == in_flight && s.waiters == waiters {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "snapshot {s:?}, want in_flight {in_flight} waiters {waiters}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncontended_admission_is_one_round_trip_and_leaves_no_state() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    tokio::time::timeout(LIMIT, async {
        // Releases are asynchronous (a background task): the cap leaves room for a few
        // not yet processed, so that no acquire ever finds the cap full.
        let l = fleet(&server, "solo", 16).await;
        for _ in 0..50 {
            let p = l.acquire().await.unwrap();
            assert!(!p.is_degraded());
            drop(p);
        }
        let c = l.counters();
        assert_eq!(c.admitted, 50);
        // One local task admits one at a time: no head ever waits, so 1 call each (a call
        // that timed out on a loaded machine is retried and counted as an error).
        assert_eq!(c.acquire_calls - c.backend_errors, 50, "{c:?}");
        settle(&l, 0, 0).await;
        let mut raw = conn(&server).await;
        // Only the counters and the epoch stay.
        assert_eq!(
            keys(&mut raw).await,
            [
                "fairgate:{solo}:epoch",
                "fairgate:{solo}:fence",
                "fairgate:{solo}:ticket"
            ]
            .iter()
            .filter(|k| !k.ends_with("ticket"))
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
        );
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cap_holds_across_limiters_and_fences_increase() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    tokio::time::timeout(LIMIT, async {
        let cap = 4;
        let limiters: Vec<FleetLimiter> = {
            let mut v = Vec::new();
            for _ in 0..3 {
                v.push(fleet(&server, "shared", cap).await);
            }
            v
        };
        let now = Arc::new(AtomicUsize::new(0));
        let max = Arc::new(AtomicUsize::new(0));
        let fences = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for l in &limiters {
            for _ in 0..8 {
                let (l, now, max, fences) = (l.clone(), now.clone(), max.clone(), fences.clone());
                tasks.push(tokio::spawn(async move {
                    for _ in 0..10 {
                        let p = l.acquire().await.unwrap();
                        let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                        max.fetch_max(n, Ordering::SeqCst);
                        fences.lock().unwrap().push(p.fence().unwrap());
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        now.fetch_sub(1, Ordering::SeqCst);
                        drop(p);
                    }
                }));
            }
        }
        for t in tasks {
            t.await.unwrap();
        }
        let max = max.load(Ordering::SeqCst);
        assert!(max <= cap, "max in flight {max} > cap {cap}");
        assert!(max >= 2, "the fleet never ran in parallel ({max})");
        let mut f = fences.lock().unwrap().clone();
        let n = f.len();
        f.sort();
        f.dedup();
        assert_eq!(f.len(), n, "fences are unique");
        let admitted: u64 = limiters.iter().map(|l| l.counters().admitted).sum();
        assert_eq!(admitted, 240);
        settle(&limiters[0], 0, 0).await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_outcome_is_retried_with_the_same_lease_id() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    tokio::time::timeout(LIMIT, async {
        let l = fleet(&server, "retry", 2).await;
        let mut admin = conn(&server).await;
        // Writes are held for 700 ms: the first acquire call times out (300 ms) with an
        // unknown outcome, and runs later; the retry must find that grant, not add one.
        let _: () = redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(700)
            .arg("WRITE")
            .query_async(&mut admin)
            .await
            .unwrap();
        let p = l.acquire().await.unwrap();
        assert!(l.counters().acquire_calls >= 2, "{:?}", l.counters());
        assert!(l.counters().backend_errors >= 1);
        let s = l.fleet_snapshot().await.unwrap();
        assert_eq!(s.in_flight, 1, "a retried acquire counted twice: {s:?}");
        drop(p);
        settle(&l, 0, 0).await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_waiters_and_heads_leak_no_ticket_or_lease() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    tokio::time::timeout(LIMIT, async {
        // A long waiter TTL: a leaked ticket would stay for 30 s, far past the checks.
        let long = |_| async {
            FleetLimiter::builder("cancel", local(1))
                .lease_ttl(Duration::from_millis(1500))
                .call_timeout(Duration::from_millis(300))
                .waiter_ttl(Duration::from_secs(30))
                .wake_client(server.client())
                .build(conn(&server).await)
                .unwrap()
        };
        let (a, b) = (long(()).await, long(()).await);
        let held = a.acquire().await.unwrap();
        // b: one head waiting in Redis, more in b's local queue; a: local waiters too.
        let mut waiting = Vec::new();
        for l in [&a, &b, &b, &a] {
            let l = l.clone();
            waiting.push(tokio::spawn(async move { l.acquire().await }));
        }
        // Only b's head is ticketed in Redis: a's waiters queue locally (its local
        // capacity is the cap, held by `held`), b's second waiter queues behind b's head.
        settle(&a, 1, 1).await;
        assert_eq!(a.local().waiting(), 2);
        assert_eq!(b.local().waiting(), 1);
        for t in &waiting {
            t.abort();
        }
        for t in waiting {
            assert!(t.await.unwrap_err().is_cancelled());
        }
        let start = std::time::Instant::now();
        settle(&a, 1, 0).await;
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "ticket left behind"
        );
        assert_eq!(a.local().waiting(), 0);
        assert_eq!(b.local().in_flight(), 0);
        drop(held);
        settle(&a, 0, 0).await;
        // And the key is usable at once by anyone.
        let p = b.acquire().await.unwrap();
        assert!(!p.is_lost());
    })
    .await
    .unwrap();
}

#[derive(Default)]
struct Lost(AtomicUsize);
impl FleetObserver for Lost {
    fn on_lease_lost(&self, _key: &str, _lease: &str, _fence: u64) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_gone_on_renewal_is_reported_lost_not_reacquired() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    tokio::time::timeout(LIMIT, async {
        let lost = Arc::new(Lost::default());
        let l = FleetLimiter::builder("lost", local(2))
            .lease_ttl(Duration::from_millis(900))
            .call_timeout(Duration::from_millis(200))
            .fleet_observer(lost.clone())
            .build(conn(&server).await)
            .unwrap();
        let p = l.acquire().await.unwrap();
        let mut admin = conn(&server).await;
        let _: () = admin.del("fairgate:{lost}:leases").await.unwrap();
        let start = std::time::Instant::now();
        while !p.is_lost() {
            assert!(
                start.elapsed() < Duration::from_secs(3),
                "loss not reported"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(lost.0.load(Ordering::SeqCst), 1);
        assert_eq!(l.counters().leases_lost, 1);
        // Never silently re-acquired: the fleet does not count it any more.
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(l.fleet_snapshot().await.unwrap().in_flight, 0);
        assert_eq!(l.counters().leases_lost, 1, "reported once");
        drop(p);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_holders_leases_expire_and_state_is_bounded() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    tokio::time::timeout(LIMIT, async {
        let survivor = fleet(&server, "crash", 3).await;
        // "Crash": a holder on its own runtime leaks its permits (no release) and the
        // runtime goes away with the renewer.
        let url = server.url();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let client = redis::Client::open(url).unwrap();
                let c = redis::aio::ConnectionManager::new(client).await.unwrap();
                let holder = FleetLimiter::builder("crash", local(3))
                    .lease_ttl(Duration::from_millis(1500))
                    .call_timeout(Duration::from_millis(300))
                    .build(c)
                    .unwrap();
                let mut permits = Vec::new();
                for _ in 0..3 {
                    permits.push(holder.acquire().await.unwrap());
                }
                std::mem::forget(permits);
            });
        })
        .join()
        .unwrap();
        assert_eq!(survivor.fleet_snapshot().await.unwrap().in_flight, 3);
        let start = std::time::Instant::now();
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(survivor.acquire().await.unwrap());
        }
        let took = start.elapsed();
        assert!(
            took < Duration::from_millis(1500 + 500),
            "reclaim took {took:?}"
        );
        drop(got);
        settle(&survivor, 0, 0).await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_of_different_processes_are_served_in_ticket_order() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    tokio::time::timeout(LIMIT, async {
        let a = fleet(&server, "fifo", 1).await;
        let b = fleet(&server, "fifo", 1).await;
        let c = fleet(&server, "fifo", 1).await;
        let held = a.acquire().await.unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut tasks = Vec::new();
        for (name, l) in [("b", &b), ("c", &c)] {
            let (l, tx) = (l.clone(), tx.clone());
            tasks.push(tokio::spawn(async move {
                let p = l.acquire().await.unwrap();
                tx.send(name).unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
                drop(p);
            }));
            // b takes its ticket before c does.
            settle(&a, 1, if name == "b" { 1 } else { 2 }).await;
        }
        drop(held);
        assert_eq!(rx.recv().await, Some("b"));
        assert_eq!(rx.recv().await, Some("c"));
        for t in tasks {
            t.await.unwrap();
        }
        settle(&a, 0, 0).await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_dropped_while_its_call_is_in_flight_leaks_no_lease() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    tokio::time::timeout(LIMIT, async {
        // A long TTL: a leaked lease would stay for 10 s, far past the check below.
        let l = FleetLimiter::builder("inflight", local(2))
            .lease_ttl(Duration::from_secs(10))
            .call_timeout(Duration::from_millis(2000))
            .build(conn(&server).await)
            .unwrap();
        drop(l.acquire().await.unwrap()); // scripts loaded, connection up
        settle(&l, 0, 0).await;
        let mut admin = conn(&server).await;
        let _: () = redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(400)
            .arg("WRITE")
            .query_async(&mut admin)
            .await
            .unwrap();
        // The acquire call is sent and held by the pause; the head is dropped meanwhile.
        // After the pause the call grants a lease nobody will ever hold: the dropped
        // head's guard must have released it.
        let pending = tokio::spawn({
            let l = l.clone();
            async move { l.acquire().await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        pending.abort();
        assert!(pending.await.unwrap_err().is_cancelled());
        assert!(l.counters().acquire_calls >= 2);
        let start = std::time::Instant::now();
        tokio::time::sleep(Duration::from_millis(400)).await;
        settle(&l, 0, 0).await;
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "lease left until its TTL"
        );
        assert_eq!(l.local().in_flight(), 0);
    })
    .await
    .unwrap();
}
