//! The gateway demo: per-channel admission control in front of a slow, streaming upstream,
//! all on 127.0.0.1, for about 8 seconds.
//!
//! ```text
//! load generator ──HTTP──▶ gateway ──HTTP──▶ upstream (/v1/<channel>/stream: 10 chunks, 25 ms apart)
//!                          ServerLimitLayer::keyed(manager, channel-from-path)
//! ```
//!
//! Channels (the router picks the channel from the path):
//! * `hard`: capacity 4, queue of 6, queue timeout 200 ms. Refusals are 429 + JSON
//!   (`queue_full` / `queue_timeout`), no `Retry-After`.
//! * `soft`: soft mode, capacity 8: admits everything, only counts.
//! * `passthrough`: capacity 0: no limit at all.
//! * `hard-head`: the contrast: the `hard` configuration, but the permit is released at the
//!   response **head** (`Release::ResponseFuture`, what `tower::limit::ConcurrencyLimit`
//!   does), so streaming responses run with no permit held.
//!
//! The upstream counts, per channel, the responses it is producing (from the handler's start
//! until it has sent its last chunk). The permit of `hard` lives until the gateway has
//! forwarded the end of the body, so the upstream never sees more than 4 `hard` streams at
//! once; the demo exits non-zero if it ever does.
//!
//! Run: `cargo run --release --example gateway --features hyper`

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fairgate::http::{Release, ServerLimitLayer};
use fairgate::hyper::Server;
use fairgate::limit::{Limiter, LimiterConfig, LimiterManager, Mode, Observer, RejectReason};
use futures::stream;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{service_fn, ServiceBuilder, ServiceExt};

const CHANNELS: [&str; 4] = ["hard", "soft", "passthrough", "hard-head"];
const HARD_CAP: usize = 4;
const CHUNKS: usize = 10;
const CHUNK_EVERY: Duration = Duration::from_millis(25);
const LOAD_FOR: Duration = Duration::from_secs(6);

fn workers(channel: &str) -> usize {
    match channel {
        "hard" | "hard-head" => 16,
        "soft" => 10,
        _ => 4,
    }
}

fn config(channel: &str) -> LimiterConfig {
    let builder = LimiterConfig::builder(channel);
    match channel {
        "hard" | "hard-head" => builder
            .capacity(HARD_CAP)
            .max_queue(Some(6))
            .queue_timeout(Duration::from_millis(200)),
        "soft" => builder.capacity(8).mode(Mode::Soft),
        _ => builder.capacity(0),
    }
    .config()
    .expect("a valid channel configuration")
}

// ---------------------------------------------------------------- upstream

/// Per channel: responses the upstream is producing now, and the most seen at once.
#[derive(Default)]
struct UpstreamLoad {
    now: AtomicUsize,
    max: AtomicUsize,
}

type Loads = Arc<HashMap<&'static str, UpstreamLoad>>;

/// Counts one response as in progress until it is dropped.
struct InProgress(&'static str, Loads);

impl InProgress {
    fn start(channel: &'static str, loads: Loads) -> Self {
        let load = &loads[channel];
        let now = load.now.fetch_add(1, Ordering::SeqCst) + 1;
        load.max.fetch_max(now, Ordering::SeqCst);
        InProgress(channel, loads)
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.1[self.0].now.fetch_sub(1, Ordering::SeqCst);
    }
}

type UpstreamBody = BoxBody<Bytes, Infallible>;

fn upstream_response(channel: &'static str, loads: Loads) -> Response<UpstreamBody> {
    let progress = Some(InProgress::start(channel, loads));
    // Ten chunks, 25 ms apart. The request stops counting just before its last chunk is
    // sent, so the gateway can only see the end of the body after the count went down.
    let chunks = stream::unfold((0, progress), |(i, mut progress)| async move {
        if i == CHUNKS {
            return None;
        }
        tokio::time::sleep(CHUNK_EVERY).await;
        if i + 1 == CHUNKS {
            drop(progress.take());
        }
        let chunk = Frame::data(Bytes::from(format!("token {i} ")));
        Some((Ok::<_, Infallible>(chunk), (i + 1, progress)))
    });
    Response::new(StreamBody::new(chunks).boxed())
}

fn channel_of(path: &str) -> &str {
    // /v1/<channel>/stream
    path.split('/').nth(2).unwrap_or("")
}

fn known(channel: &str) -> Option<&'static str> {
    CHANNELS.into_iter().find(|c| *c == channel)
}

async fn start_upstream(loads: Loads) -> SocketAddr {
    let server = Server::new(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    let addr = server.local_addr().unwrap();
    let app = service_fn(move |req: Request<Incoming>| {
        let loads = loads.clone();
        async move {
            Ok::<_, Infallible>(match known(channel_of(req.uri().path())) {
                Some(channel) => upstream_response(channel, loads),
                None => {
                    let mut r = Response::new(Full::new(Bytes::from("no such channel")).boxed());
                    *r.status_mut() = StatusCode::NOT_FOUND;
                    r
                }
            })
        }
    });
    tokio::spawn(server.serve(app));
    addr
}

// ---------------------------------------------------------------- gateway

/// Queue waits of admitted requests and refusals per channel, from the limiters' observer.
#[derive(Default)]
struct Stats {
    waits: Mutex<HashMap<String, Vec<Duration>>>,
    refused: Mutex<HashMap<(String, &'static str), usize>>,
}

impl Observer for Stats {
    fn on_acquired(&self, limiter: &str, waited: Duration) {
        let mut waits = self.waits.lock().unwrap();
        waits.entry(limiter.to_string()).or_default().push(waited);
    }

    fn on_rejected(&self, limiter: &str, reason: RejectReason, _waited: Duration) {
        let mut refused = self.refused.lock().unwrap();
        *refused
            .entry((limiter.to_string(), reason.as_str()))
            .or_default() += 1;
    }
}

async fn start_gateway(
    upstream: SocketAddr,
    manager: LimiterManager<String>,
    head_only: Limiter,
) -> SocketAddr {
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    // Forwards the request and streams the upstream's body back.
    let proxy = service_fn(move |req: Request<Incoming>| {
        let client = client.clone();
        async move {
            let uri = format!("http://{upstream}{}", req.uri().path());
            let forwarded = Request::get(uri).body(Empty::new()).unwrap();
            Ok::<_, Infallible>(match client.request(forwarded).await {
                Ok(response) => response.map(BodyExt::boxed),
                Err(_) => {
                    let body = Full::new(Bytes::from("upstream failed"));
                    let mut r = Response::new(body.map_err(|never| match never {}).boxed());
                    *r.status_mut() = StatusCode::BAD_GATEWAY;
                    r
                }
            })
        }
    });
    // The router picks the channel from the path; the keyed layer admits through its limiter.
    let keyed = ServiceBuilder::new()
        .layer(ServerLimitLayer::keyed(
            manager,
            |req: &Request<Incoming>| channel_of(req.uri().path()).to_string(),
        ))
        .service(proxy.clone());
    let contrast = ServiceBuilder::new()
        .layer(ServerLimitLayer::new(head_only).release(Release::ResponseFuture))
        .service(proxy);
    let gateway = service_fn(move |req: Request<Incoming>| {
        let (keyed, contrast) = (keyed.clone(), contrast.clone());
        async move {
            if channel_of(req.uri().path()) == "hard-head" {
                contrast.oneshot(req).await
            } else {
                keyed.oneshot(req).await
            }
        }
    });
    let server = Server::new(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.serve(gateway));
    addr
}

// ---------------------------------------------------------------- load generator

#[derive(Default)]
struct ClientCounts {
    ok: AtomicUsize,
    too_many: AtomicUsize,
    other: AtomicUsize,
}

async fn worker(
    client: Client<HttpConnector, Empty<Bytes>>,
    url: String,
    counts: Arc<ClientCounts>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        let request = Request::get(url.as_str()).body(Empty::new()).unwrap();
        let status = match client.request(request).await {
            Ok(response) => {
                let status = response.status();
                // Read every chunk: the stream is what the limiter must cover.
                let _ = response.into_body().collect().await;
                Some(status)
            }
            Err(_) => None,
        };
        match status {
            Some(StatusCode::OK) => counts.ok.fetch_add(1, Ordering::Relaxed),
            Some(StatusCode::TOO_MANY_REQUESTS) => {
                counts.too_many.fetch_add(1, Ordering::Relaxed);
                // Pace the retry a little (load-generator behaviour, not synchronisation).
                tokio::time::sleep(Duration::from_millis(20)).await;
                0
            }
            _ => counts.other.fetch_add(1, Ordering::Relaxed),
        };
    }
}

// ---------------------------------------------------------------- report

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1}ms", d.as_secs_f64() * 1e3)
}

fn cap_label(channel: &str) -> String {
    match channel {
        "hard" | "hard-head" => HARD_CAP.to_string(),
        "soft" => "8 (soft: counted, not enforced)".to_string(),
        _ => "none (passthrough)".to_string(),
    }
}

#[tokio::main]
async fn main() {
    let loads: Loads = Arc::new(
        CHANNELS
            .iter()
            .map(|c| (*c, UpstreamLoad::default()))
            .collect(),
    );
    let stats = Arc::new(Stats::default());
    let manager = LimiterManager::builder("channels", |channel: &String| config(channel))
        .max_keys(16)
        .observer(stats.clone())
        .build()
        .expect("a valid manager");
    let head_only = Limiter::with_observer(config("hard-head"), stats.clone());

    let upstream = start_upstream(loads.clone()).await;
    let gateway = start_gateway(upstream, manager.clone(), head_only.clone()).await;
    println!("upstream http://{upstream}   gateway http://{gateway}");
    println!(
        "each response: {CHUNKS} chunks, {} ms apart; load for {} s",
        CHUNK_EVERY.as_millis(),
        LOAD_FOR.as_secs()
    );
    for channel in CHANNELS {
        println!(
            "  {channel:<12} workers {:>2}  cap {}",
            workers(channel),
            cap_label(channel)
        );
    }

    let stop = Arc::new(AtomicBool::new(false));
    let mut counts = HashMap::new();
    let mut tasks = Vec::new();
    let client: Client<HttpConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(64)
        .build_http();
    for channel in CHANNELS {
        let c = Arc::new(ClientCounts::default());
        counts.insert(channel, c.clone());
        for _ in 0..workers(channel) {
            let url = format!("http://{gateway}/v1/{channel}/stream");
            tasks.push(tokio::spawn(worker(
                client.clone(),
                url,
                c.clone(),
                stop.clone(),
            )));
        }
    }

    // Live progress, sampled every 100 ms (printed every 250 ms).
    let started = Instant::now();
    let live = std::io::stdout().is_terminal();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut last_line = Instant::now();
    while started.elapsed() < LOAD_FOR {
        tick.tick().await;
        let mut line = format!("t={:>4.1}s", started.elapsed().as_secs_f64());
        for channel in CHANNELS {
            let limiter = if channel == "hard-head" {
                Some(head_only.clone())
            } else {
                manager.get(&channel.to_string())
            };
            let (gw, queued) = limiter.map_or((0, 0), |l| (l.in_flight(), l.waiting()));
            let c = &counts[channel];
            line.push_str(&format!(
                " | {channel}: up {:>2} gw {:>2} q {:>2} ok {:>4} 429 {:>4}",
                loads[channel].now.load(Ordering::SeqCst),
                gw,
                queued,
                c.ok.load(Ordering::Relaxed),
                c.too_many.load(Ordering::Relaxed),
            ));
        }
        if live {
            print!("\r{line}");
            let _ = std::io::stdout().flush();
        } else if last_line.elapsed() >= Duration::from_secs(1) {
            println!("{line}");
            last_line = Instant::now();
        }
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(3), task).await;
    }
    if live {
        println!();
    }

    println!(
        "\nper-channel report ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    println!(
        "{:<12} {:>8} {:>10} {:>13} {:>6} {:>22}  queue wait p50 / p90 / p99 / max",
        "channel", "admitted", "queue_full", "queue_timeout", "errors", "upstream max in-flight"
    );
    let waits = stats.waits.lock().unwrap().clone();
    let refused = stats.refused.lock().unwrap().clone();
    for channel in CHANNELS {
        let mut w = waits.get(channel).cloned().unwrap_or_default();
        w.sort();
        let refused_for =
            |r: &'static str| refused.get(&(channel.to_string(), r)).copied().unwrap_or(0);
        let c = &counts[channel];
        println!(
            "{:<12} {:>8} {:>10} {:>13} {:>6} {:>11} / cap {:<6}  {} / {} / {} / {}",
            channel,
            w.len(),
            refused_for("queue_full"),
            refused_for("queue_timeout"),
            c.other.load(Ordering::Relaxed),
            loads[channel].max.load(Ordering::SeqCst),
            match channel {
                "hard" | "hard-head" => HARD_CAP.to_string(),
                "soft" => "8 soft".to_string(),
                _ => "-".to_string(),
            },
            ms(percentile(&w, 50.0)),
            ms(percentile(&w, 90.0)),
            ms(percentile(&w, 99.0)),
            ms(w.last().copied().unwrap_or_default()),
        );
    }

    let hard_max = loads["hard"].max.load(Ordering::SeqCst);
    let head_max = loads["hard-head"].max.load(Ordering::SeqCst);
    let hard_ok = counts["hard"].ok.load(Ordering::Relaxed);
    println!();
    println!(
        "hard:      {hard_ok} streamed responses, at most {hard_max} at the upstream at once (cap {HARD_CAP}): \
         the permit is held until each body's last chunk has been forwarded"
    );
    println!(
        "hard-head: same limiter settings released at the response head (tower's behaviour): \
         {head_max} streams at the upstream at once"
    );
    if hard_max > HARD_CAP {
        eprintln!(
            "FAIL: the hard channel's upstream in-flight reached {hard_max} > cap {HARD_CAP}"
        );
        std::process::exit(1);
    }
    if hard_ok == 0 {
        eprintln!("FAIL: the hard channel admitted nothing");
        std::process::exit(1);
    }
    println!("OK: the hard channel never exceeded its cap at the upstream");
}
