//! Several processes × many tasks hammer one key on a real redis-server, while an
//! independent probe on a SECOND redis-server records the fleet-wide in-flight (a restart of
//! the first cannot erase the evidence). Faults: none, SIGSTOP shorter than the TTL,
//! repeated `CLIENT KILL`, a restart without persistence, and a holder process SIGKILLed.
//!
//! The worker processes are this test binary itself, running `worker_child` with
//! `FLEET_ROLE` set (the test does nothing without it).
#![cfg(not(loom))]

mod fleet_support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fairgate::fleet::FleetLimiter;
use fairgate::limit::LimiterConfig;
use fleet_support::{ChildGuard, RedisServer, PROBE_ENTER};
use redis::AsyncCommands;

/// What a worker reports on its last stdout line.
#[derive(Debug, Default, Clone)]
struct WorkerResult {
    admitted: u64,
    calls: u64,
    lost: u64,
    errors: u64,
    refused: u64,
    waits_us: Vec<u64>,
}

struct Spec<'a> {
    server: &'a RedisServer,
    probe: &'a RedisServer,
    key: &'a str,
    cap: usize,
    tasks: usize,
    run_ms: u64,
    ttl_ms: u64,
    hold_ms: u64,
    mode: &'a str,
}

fn spawn_worker(spec: &Spec<'_>) -> Worker {
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["worker_child", "--exact", "--nocapture", "--test-threads=1"])
        .env("FLEET_ROLE", spec.mode)
        .env("FLEET_URL", spec.server.url())
        .env("FLEET_PROBE_URL", spec.probe.url())
        .env("FLEET_KEY", spec.key)
        .env("FLEET_CAP", spec.cap.to_string())
        .env("FLEET_TASKS", spec.tasks.to_string())
        .env("FLEET_RUN_MS", spec.run_ms.to_string())
        .env("FLEET_TTL_MS", spec.ttl_ms.to_string())
        .env("FLEET_HOLD_MS", spec.hold_ms.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn worker");
    // Read stdout continuously so that a long result line never blocks the worker.
    let mut guard = ChildGuard(Some(child));
    let stdout = guard.0.as_mut().unwrap().stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Worker { guard, lines: rx }
}

/// A worker process and its stdout lines.
struct Worker {
    guard: ChildGuard,
    lines: std::sync::mpsc::Receiver<String>,
}

/// Waits (bounded) for a line containing `marker`; returns the rest after it.
fn wait_line(lines: &std::sync::mpsc::Receiver<String>, marker: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no {marker:?} line within {within:?}"));
        if let Some(at) = line.find(marker) {
            return line[at + marker.len()..].to_string();
        }
    }
}

/// Waits (bounded) for a worker's result line and its exit.
fn finish(mut worker: Worker, within: Duration) -> WorkerResult {
    let rest = wait_line(&worker.lines, "FLEET_RESULT ", within);
    let start = Instant::now();
    loop {
        if let Some(status) = worker.guard.0.as_mut().unwrap().try_wait().unwrap() {
            assert!(status.success(), "worker failed: {status}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "worker did not exit"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut r = WorkerResult::default();
    for kv in rest.split(' ') {
        let (k, v) = kv.split_once('=').unwrap();
        match k {
            "admitted" => r.admitted = v.parse().unwrap(),
            "calls" => r.calls = v.parse().unwrap(),
            "lost" => r.lost = v.parse().unwrap(),
            "errors" => r.errors = v.parse().unwrap(),
            "refused" => r.refused = v.parse().unwrap(),
            "waits" => {
                r.waits_us = v
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| s.parse().unwrap())
                    .collect()
            }
            _ => {}
        }
    }
    r
}

async fn probe_max(probe: &RedisServer, key: &str) -> usize {
    let mut c = probe
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let m: Option<usize> = c.get(format!("probe:{key}:max")).await.unwrap();
    m.unwrap_or(0)
}

/// Runs `procs` hammer workers for `run_ms`, calling `fault` (in a thread) meanwhile.
fn hammer(
    key: &str,
    procs: usize,
    cap: usize,
    run_ms: u64,
    ttl_ms: u64,
    fault: impl FnOnce(&mut RedisServer) + Send,
) -> Option<(Vec<WorkerResult>, usize)> {
    let mut server = RedisServer::start()?;
    let probe = RedisServer::start()?;
    let workers: Vec<Worker> = (0..procs)
        .map(|_| {
            spawn_worker(&Spec {
                server: &server,
                probe: &probe,
                key,
                cap,
                tasks: 12,
                run_ms,
                ttl_ms,
                hold_ms: 4,
                mode: "hammer",
            })
        })
        .collect();
    fault(&mut server);
    let within = Duration::from_millis(run_ms) + Duration::from_secs(20);
    let results: Vec<WorkerResult> = workers.into_iter().map(|w| finish(w, within)).collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let max = rt.block_on(probe_max(&probe, key));
    Some((results, max))
}

fn check(results: &[WorkerResult], max: usize, cap: usize, what: &str) {
    let admitted: u64 = results.iter().map(|r| r.admitted).sum();
    let lost: u64 = results.iter().map(|r| r.lost).sum();
    eprintln!(
        "{what}: {} processes, {admitted} admissions, {} calls, {} errors, max in flight {max} (cap {cap})",
        results.len(),
        results.iter().map(|r| r.calls).sum::<u64>(),
        results.iter().map(|r| r.errors).sum::<u64>(),
    );
    assert!(max <= cap, "{what}: fleet-wide in flight {max} > cap {cap}");
    assert!(max >= 2, "{what}: the fleet never ran in parallel");
    assert_eq!(lost, 0, "{what}: leases lost");
    assert!(
        results.iter().all(|r| r.admitted > 0),
        "{what}: a process starved: {results:?}"
    );
}

#[test]
fn processes_hammer_one_key_never_above_the_cap() {
    let Some((results, max)) = hammer("hammer", 3, 5, 2500, 3000, |_| {}) else {
        return;
    };
    check(&results, max, 5, "hammer");
}

#[test]
fn sigstop_shorter_than_the_ttl_does_not_over_admit() {
    let Some((results, max)) = hammer("sigstop", 3, 5, 4000, 3000, |server| {
        std::thread::sleep(Duration::from_millis(1000));
        server.pause();
        std::thread::sleep(Duration::from_millis(1000));
        server.resume();
    }) else {
        return;
    };
    check(&results, max, 5, "sigstop 1 s, ttl 3 s");
    assert!(
        results.iter().map(|r| r.errors).sum::<u64>() > 0,
        "the pause was not seen"
    );
}

#[test]
fn client_kill_does_not_over_admit() {
    let Some((results, max)) = hammer("kill", 3, 5, 3000, 3000, |server| {
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(700));
            let reply = server.command("CLIENT KILL TYPE normal").unwrap();
            assert!(reply.starts_with(':'), "{reply}");
        }
    }) else {
        return;
    };
    check(&results, max, 5, "client kill x3");
}

#[test]
fn restart_without_persistence_under_load_does_not_over_admit() {
    let Some((results, max)) = hammer("restart", 3, 5, 4000, 3000, |server| {
        std::thread::sleep(Duration::from_millis(1200));
        server.restart();
    }) else {
        return;
    };
    check(&results, max, 5, "restart");
}

#[test]
fn a_sigkilled_holders_permits_come_back_within_one_ttl() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let Some(probe) = RedisServer::start() else {
        return;
    };
    let (cap, ttl_ms) = (4, 1500);
    let holder = spawn_worker(&Spec {
        server: &server,
        probe: &probe,
        key: "sigkill",
        cap,
        tasks: cap,
        run_ms: 60_000,
        ttl_ms,
        hold_ms: 0,
        mode: "hold",
    });
    wait_line(&holder.lines, "HELD", Duration::from_secs(20));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let conn = redis::aio::ConnectionManager::new(server.client())
            .await
            .unwrap();
        let l = FleetLimiter::builder(
            "sigkill",
            LimiterConfig::builder("survivor")
                .capacity(cap)
                .config()
                .unwrap(),
        )
        .lease_ttl(Duration::from_millis(ttl_ms))
        .call_timeout(Duration::from_millis(300))
        .build(conn)
        .unwrap();
        assert_eq!(l.fleet_snapshot().await.unwrap().in_flight, cap);
        fleet_support::signal(holder.guard.pid(), "KILL");
        let killed = Instant::now();
        let mut got = Vec::new();
        for _ in 0..cap {
            let p = tokio::time::timeout(Duration::from_secs(10), l.acquire())
                .await
                .expect("survivor starved")
                .unwrap();
            got.push(p);
        }
        let took = killed.elapsed();
        eprintln!("sigkill: survivor held all {cap} after {took:?} (ttl {ttl_ms} ms)");
        assert!(
            took <= Duration::from_millis(ttl_ms + 500),
            "permits came back after {took:?}"
        );
    });
}

/// The worker process body (does nothing unless started by a test above).
#[test]
fn worker_child() {
    let Ok(role) = std::env::var("FLEET_ROLE") else {
        return;
    };
    let env = |k: &str| std::env::var(k).unwrap();
    let num = |k: &str| env(k).parse::<u64>().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let client = redis::Client::open(env("FLEET_URL")).unwrap();
        let conn = redis::aio::ConnectionManager::new(client.clone())
            .await
            .unwrap();
        let cap = num("FLEET_CAP") as usize;
        let local = LimiterConfig::builder("worker")
            .capacity(cap)
            .queue_timeout(Duration::from_secs(10))
            .config()
            .unwrap();
        let l = FleetLimiter::builder(env("FLEET_KEY"), local)
            .lease_ttl(Duration::from_millis(num("FLEET_TTL_MS")))
            .call_timeout(Duration::from_millis(300))
            .wake_client(client)
            .build(conn)
            .unwrap();
        if role == "hold" {
            let mut held = Vec::new();
            for _ in 0..cap {
                held.push(l.acquire().await.unwrap());
            }
            println!("HELD");
            tokio::time::sleep(Duration::from_secs(60)).await;
            return;
        }
        let probe = redis::Client::open(env("FLEET_PROBE_URL")).unwrap();
        let probe = probe.get_multiplexed_async_connection().await.unwrap();
        let enter = Arc::new(redis::Script::new(PROBE_ENTER));
        let key = env("FLEET_KEY");
        let run = Duration::from_millis(num("FLEET_RUN_MS"));
        let hold = num("FLEET_HOLD_MS");
        let start = Instant::now();
        let mut tasks = Vec::new();
        for t in 0..num("FLEET_TASKS") {
            let (l, mut probe, enter, key) = (l.clone(), probe.clone(), enter.clone(), key.clone());
            tasks.push(tokio::spawn(async move {
                let (mut waits, mut refused) = (Vec::new(), 0u64);
                let mut i = 0u64;
                while start.elapsed() < run {
                    let asked = Instant::now();
                    let Ok(p) = l.acquire().await else {
                        refused += 1;
                        continue;
                    };
                    waits.push(asked.elapsed().as_micros() as u64);
                    let id = p.lease_id().unwrap_or("degraded").to_string();
                    let set = format!("probe:{key}:set");
                    let _: usize = enter
                        .key(&set)
                        .key(format!("probe:{key}:max"))
                        .arg(&id)
                        .invoke_async(&mut probe)
                        .await
                        .unwrap();
                    tokio::time::sleep(Duration::from_millis(1 + (i + t) % hold.max(1))).await;
                    let _: usize = probe.srem(&set, &id).await.unwrap();
                    drop(p);
                    i += 1;
                }
                (waits, refused)
            }));
        }
        let (mut waits, mut refused) = (Vec::new(), 0);
        for t in tasks {
            let (w, r) = t.await.unwrap();
            waits.extend(w);
            refused += r;
        }
        let c = l.counters();
        let w: Vec<String> = waits.iter().map(|w| w.to_string()).collect();
        println!(
            "FLEET_RESULT admitted={} calls={} lost={} errors={} refused={refused} waits={}",
            c.admitted,
            c.acquire_calls,
            c.leases_lost,
            c.backend_errors,
            w.join(",")
        );
    });
}
