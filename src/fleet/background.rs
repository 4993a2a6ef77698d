//! The per-limiter background tasks: the releaser (batched release of dropped leases and
//! cancelled tickets), the renewer (one batched renew call per interval) and the wake-up
//! subscriber (pub/sub; only shortens waits, the head's bounded poll is the fallback).

// The crate is `no_std` with `std` linked: bring std's prelude and macros in.
#[allow(unused_imports)]
use std::prelude::rust_2021::*;
#[allow(unused_imports)]
use std::{format, vec};

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::backend::CallError;
use super::limiter::Shared;
use super::observe::Counters;

/// A lease or a waiter ticket to give back.
pub(crate) enum Release {
    Lease(Arc<str>),
    Waiter(Arc<str>),
}

const BATCH: usize = 256;

/// Drains the channel and releases in batches; retries a failed batch (the script is
/// idempotent) a few times, then leaves the leases to their TTL. Ends when every sender
/// (the limiter and its permits) is gone and the channel is empty.
pub(crate) async fn releaser(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Release>) {
    let mut buf = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut buf, BATCH).await > 0 {
        let (mut leases, mut waiters) = (Vec::new(), Vec::new());
        for r in buf.drain(..) {
            match r {
                Release::Lease(id) => leases.push(id),
                Release::Waiter(id) => waiters.push(id),
            }
        }
        let mut delay = Duration::from_millis(20);
        for _attempt in 0..5 {
            match shared.backend.release(&leases, &waiters).await {
                Ok(rtt) => {
                    shared.breaker.success();
                    shared.observer.on_round_trip(&shared.key, rtt);
                    break;
                }
                Err(e) => {
                    shared.backend_error(&e);
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
            }
        }
    }
}

/// Renews every held lease in one call per `interval` (chunks of 1000).
pub(crate) async fn renewer(shared: Arc<Shared>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let held: Vec<(Arc<str>, u64)> = shared
            .held()
            .values()
            .map(|l| (l.id.clone(), l.fence))
            .collect();
        for chunk in held.chunks(1000) {
            match renew_with_retry(&shared, chunk, interval / 2).await {
                Ok((reply, rtt)) => {
                    shared.breaker.success();
                    shared.observer.on_round_trip(&shared.key, rtt);
                    if reply.reasserted > 0 {
                        Counters::bump(&shared.counters.leases_reasserted, reply.reasserted);
                        shared.observer.on_reasserted(&shared.key, reply.reasserted);
                    }
                    for id in reply.lost {
                        shared.lease_lost(&id);
                    }
                }
                Err(e) => shared.backend_error(&e),
            }
        }
    }
}

/// One renew call, retried quickly (the script is idempotent) for up to `budget`: after a
/// reconnect or a restart the holders must re-assert within the quarantine, not one whole
/// interval later.
async fn renew_with_retry(
    shared: &Shared,
    chunk: &[(Arc<str>, u64)],
    budget: Duration,
) -> Result<(super::backend::RenewReply, Duration), CallError> {
    let start = tokio::time::Instant::now();
    let mut delay = Duration::from_millis(50);
    loop {
        match shared.backend.renew(chunk).await {
            Ok(r) => return Ok(r),
            Err(e) if start.elapsed() + delay < budget => {
                shared.backend_error(&e);
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Listens for targeted wake-ups and wakes this process's head when its id is named.
/// Reconnects after errors; the head polls anyway, so a lost message only costs time.
pub(crate) async fn subscriber(shared: Arc<Shared>, client: redis::Client) {
    loop {
        if let Ok(mut pubsub) = client.get_async_pubsub().await {
            if pubsub.subscribe(shared.backend.channel()).await.is_ok() {
                let mut messages = pubsub.on_message();
                while let Some(msg) = messages.next().await {
                    let payload: Vec<u8> = msg.get_payload_bytes().to_vec();
                    if contains(&payload, shared.process_id.as_bytes()) {
                        shared.wake.notify_waiters();
                    }
                }
            }
        }
        shared
            .counters
            .backend_errors
            .fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

impl Shared {
    pub(crate) fn backend_error(&self, e: &CallError) {
        self.breaker.failure();
        Counters::bump(&self.counters.backend_errors, 1);
        self.observer.on_backend_error(&self.key, &e.to_string());
    }
}
