//! A fleet-wide cap across worker processes on one Redis key.
//!
//! Starts a local `redis-server` on a free loopback port (persistence off) if one is
//! installed, runs a few worker processes (this example, re-executed with `--worker`)
//! against one key, and prints per-process admissions, the fleet-wide maximum in flight
//! against the cap (recorded by an idempotent probe set), round trips per admission and
//! wait percentiles.
//!
//! ```text
//! cargo run --release --example fleet --features redis -- [procs] [tasks] [cap] [millis]
//! cargo run --release --example fleet --features redis -- --sweep   # 1 -> 16 processes
//! ```
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fairgate::fleet::FleetLimiter;
use fairgate::limit::LimiterConfig;
use redis::AsyncCommands;

const PROBE: &str = r#"
redis.call('SADD', KEYS[1], ARGV[1])
local n = redis.call('SCARD', KEYS[1])
if n > tonumber(redis.call('GET', KEYS[2]) or '0') then redis.call('SET', KEYS[2], n) end
return n
"#;

/// A local redis-server, killed by PID on drop.
struct Server {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Server {
    fn start() -> Result<Server, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let dir = std::env::temp_dir().join(format!("fairgate-fleet-example-{port}"));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!(
                    "could not start redis-server ({e}). Install it (e.g. `apt-get install \
                     redis-server`) to run this example."
                )
            })?;
        let server = Server { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
                let mut buf = [0u8; 16];
                if s.write_all(b"PING\r\n").is_ok() && s.read(&mut buf).is_ok_and(|n| n > 0) {
                    return Ok(server);
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err("redis-server did not answer PING within 5 s".into())
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Run {
    procs: usize,
    tasks: usize,
    cap: usize,
    millis: u64,
    hold_ms: u64,
}

struct Outcome {
    admissions: Vec<u64>,
    calls: u64,
    max_in_flight: usize,
    waits_us: Vec<u64>,
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Runs one fleet of worker processes against a fresh key.
fn run(server: &Server, key: &str, r: &Run) -> Outcome {
    let exe = std::env::current_exe().expect("current exe");
    let children: Vec<Child> = (0..r.procs)
        .map(|_| {
            Command::new(&exe)
                .arg("--worker")
                .args([
                    server.url(),
                    key.to_string(),
                    r.cap.to_string(),
                    r.tasks.to_string(),
                    r.millis.to_string(),
                    r.hold_ms.to_string(),
                ])
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn worker")
        })
        .collect();
    let mut out = Outcome {
        admissions: Vec::new(),
        calls: 0,
        max_in_flight: 0,
        waits_us: Vec::new(),
    };
    for mut child in children {
        let stdout = child.stdout.take().unwrap();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let mut parts = line.split(' ');
            if parts.next() != Some("RESULT") {
                continue;
            }
            let admitted: u64 = parts.next().unwrap().parse().unwrap();
            out.calls += parts.next().unwrap().parse::<u64>().unwrap();
            out.admissions.push(admitted);
            out.waits_us.extend(
                parts
                    .next()
                    .unwrap_or("")
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| s.parse::<u64>().unwrap()),
            );
        }
        let status = child.wait().expect("worker");
        assert!(status.success(), "worker failed: {status}");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    out.max_in_flight = rt.block_on(async {
        let mut c = redis::Client::open(server.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let m: Option<usize> = c.get(format!("probe:{key}:max")).await.unwrap();
        m.unwrap_or(0)
    });
    out.waits_us.sort_unstable();
    out
}

fn worker(args: &[String]) {
    let url = args[0].clone();
    let key = args[1].clone();
    let cap: usize = args[2].parse().unwrap();
    let tasks: usize = args[3].parse().unwrap();
    let run_for = Duration::from_millis(args[4].parse().unwrap());
    let hold = Duration::from_millis(args[5].parse().unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let client = redis::Client::open(url).unwrap();
        let conn = redis::aio::ConnectionManager::new(client.clone())
            .await
            .unwrap();
        let local = LimiterConfig::builder("example")
            .capacity(cap)
            .queue_timeout(Duration::from_secs(30))
            .config()
            .unwrap();
        let limiter = FleetLimiter::builder(key.clone(), local)
            .lease_ttl(Duration::from_secs(5))
            .wake_client(client)
            .build(conn.clone())
            .unwrap();
        let probe = Arc::new(redis::Script::new(PROBE));
        let start = Instant::now();
        let mut handles = Vec::new();
        for _ in 0..tasks {
            let (limiter, probe, mut conn, key) =
                (limiter.clone(), probe.clone(), conn.clone(), key.clone());
            handles.push(tokio::spawn(async move {
                let mut waits = Vec::new();
                while start.elapsed() < run_for {
                    let asked = Instant::now();
                    let permit = limiter.acquire().await.expect("admitted");
                    waits.push(asked.elapsed().as_micros() as u64);
                    let id = permit.lease_id().unwrap_or("degraded").to_string();
                    let set = format!("probe:{key}:set");
                    let _: usize = probe
                        .key(&set)
                        .key(format!("probe:{key}:max"))
                        .arg(&id)
                        .invoke_async(&mut conn)
                        .await
                        .unwrap();
                    if !hold.is_zero() {
                        tokio::time::sleep(hold).await;
                    }
                    let _: usize = conn.srem(&set, &id).await.unwrap();
                    drop(permit);
                }
                waits
            }));
        }
        let mut waits = Vec::new();
        for h in handles {
            waits.extend(h.await.unwrap());
        }
        let c = limiter.counters();
        let w: Vec<String> = waits.iter().map(|w| w.to_string()).collect();
        println!("RESULT {} {} {}", c.admitted, c.acquire_calls, w.join(","));
    });
}

fn report(label: &str, r: &Run, o: &Outcome) {
    let total: u64 = o.admissions.iter().sum();
    println!(
        "{label}: {} procs x {} tasks, cap {}: {total} admissions ({:?} per process), \
         fleet-wide max in flight {} / cap {}, {:.2} acquire calls per admission, \
         wait p50 {} us, p99 {} us",
        r.procs,
        r.tasks,
        r.cap,
        o.admissions,
        o.max_in_flight,
        r.cap,
        o.calls as f64 / total.max(1) as f64,
        percentile(&o.waits_us, 0.50),
        percentile(&o.waits_us, 0.99),
    );
    assert!(o.max_in_flight <= r.cap, "over the cap!");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--worker") {
        worker(&args[1..]);
        return;
    }
    let server = match Server::start() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    println!("redis-server on 127.0.0.1:{}", server.port);
    if args.first().map(String::as_str) == Some("--sweep") {
        let uncontended = Run {
            procs: 1,
            tasks: 1,
            cap: 4,
            millis: 2000,
            hold_ms: 0,
        };
        let o = run(&server, "uncontended", &uncontended);
        report("uncontended", &uncontended, &o);
        for procs in [1, 2, 4, 8, 16] {
            let r = Run {
                procs,
                tasks: 8,
                cap: 8,
                millis: 3000,
                hold_ms: 2,
            };
            let o = run(&server, &format!("contended-{procs}"), &r);
            report("contended", &r, &o);
        }
        return;
    }
    let num = |i: usize, d: u64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let r = Run {
        procs: num(0, 4) as usize,
        tasks: num(1, 16) as usize,
        cap: num(2, 8) as usize,
        millis: num(3, 3000),
        hold_ms: 3,
    };
    let o = run(&server, "example", &r);
    report("fleet", &r, &o);
}
