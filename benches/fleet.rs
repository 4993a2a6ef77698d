//! Fleet limiter admission cost against a local redis-server on 127.0.0.1 (started here,
//! persistence off): uncontended acquire + drop, driven by `block_on` from the bench thread
//! (one acquire round trip; the release is batched in the background). Skips with a message when `redis-server` is not installed.
//!
//! `cargo bench --bench fleet --features redis`. Multi-process figures: `examples/fleet.rs
//! --sweep` (bench-results/fleet-2026-12-02.md).
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use fairgate::fleet::FleetLimiter;
use fairgate::limit::LimiterConfig;

struct Server(Child, u16);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start() -> Option<Server> {
    let port = TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let child = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .ok()?;
    let server = Server(child, port);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let mut buf = [0u8; 8];
            if s.write_all(b"PING\r\n").is_ok() && s.read(&mut buf).is_ok_and(|n| n > 0) {
                return Some(server);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

fn bench(c: &mut Criterion) {
    let Some(server) = start() else {
        eprintln!("fleet bench skipped: redis-server not installed");
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let limiter = rt.block_on(async {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", server.1)).unwrap();
        let conn = redis::aio::ConnectionManager::new(client.clone())
            .await
            .unwrap();
        let local = LimiterConfig::builder("bench")
            .capacity(64)
            .config()
            .unwrap();
        FleetLimiter::builder("bench", local)
            .wake_client(client)
            .build(conn)
            .unwrap()
    });
    c.bench_function("fleet/uncontended_acquire_drop", |b| {
        b.iter(|| rt.block_on(async { drop(limiter.acquire().await.unwrap()) }))
    });
    let snap = rt.block_on(limiter.fleet_snapshot()).unwrap();
    assert!(snap.in_flight <= 64);
    let c = limiter.counters();
    eprintln!(
        "fleet bench: {} admissions, {:.3} acquire calls per admission",
        c.admitted,
        c.acquire_calls as f64 / c.admitted.max(1) as f64
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
