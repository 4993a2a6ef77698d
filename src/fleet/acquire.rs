//! The acquire path: local FIFO queue, then (as head) the Redis loop, or a degraded
//! admission while Redis is unreachable (fail open).

// The crate is `no_std` with `std` linked: bring std's prelude and macros in.
#[allow(unused_imports)]
use std::prelude::rust_2021::*;
#[allow(unused_imports)]
use std::{format, vec};

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::limit::{LimitPermit, RejectReason};

use super::backend::AcquireReply;
use super::config::FailMode;
use super::error::FleetRejected;
use super::limiter::Inner;
use super::observe::Counters;
use super::permit::{FleetPermit, LeaseState};

/// Sends the head's lease id and ticket to the releaser if the head is dropped (cancelled,
/// timed out, failed) before its grant became a permit: a call with an unknown outcome may
/// have granted the lease, so both are released (idempotent; unknown ids are no-ops).
struct HeadGuard<'a> {
    inner: &'a Inner,
    lease: Arc<str>,
    waiter: Arc<str>,
    called: bool,
    armed: bool,
}

impl Drop for HeadGuard<'_> {
    fn drop(&mut self) {
        if self.armed && self.called {
            self.inner
                .send_release(Some(self.lease.clone()), Some(self.waiter.clone()));
        }
    }
}

pub(crate) async fn acquire(inner: Arc<Inner>) -> Result<FleetPermit, FleetRejected> {
    let start = Instant::now();
    let deadline = inner.config.local.queue_timeout().map(|t| start + t);
    let local = inner.local.acquire().await?;
    let head = match deadline {
        Some(d) => tokio::time::timeout_at(d.into(), inner.head.clone().acquire_owned())
            .await
            .map_err(|_| inner.reject(RejectReason::QueueTimeout, start))?,
        None => inner.head.clone().acquire_owned().await,
    }
    .map_err(|_| inner.reject(RejectReason::Closed, start))?;
    let outcome = lease_as_head(&inner, start, deadline).await;
    drop(head);
    match outcome? {
        Some(lease) => Ok(FleetPermit {
            lease: Some(lease),
            inner: inner.clone(),
            waited: start.elapsed(),
            fallback: None,
            local,
        }),
        None => degraded(inner, local, start, deadline).await,
    }
}

/// Fail open: admit on the local limiter (and the fallback cap, if any).
async fn degraded(
    inner: Arc<Inner>,
    local: LimitPermit,
    start: Instant,
    deadline: Option<Instant>,
) -> Result<FleetPermit, FleetRejected> {
    let fallback = match &inner.fallback {
        Some(f) => Some(match deadline {
            Some(d) => f.acquire_until(d).await.map_err(|e| {
                let reason = match e.reason() {
                    RejectReason::DeadlineExceeded => RejectReason::QueueTimeout,
                    other => other,
                };
                inner.reject(reason, start)
            })?,
            None => f.acquire().await?,
        }),
        None => None,
    };
    Counters::bump(&inner.shared.counters.degraded, 1);
    inner.shared.observer.on_degraded(&inner.config.key);
    Ok(FleetPermit {
        lease: None,
        inner: inner.clone(),
        waited: start.elapsed(),
        fallback,
        local,
    })
}

/// The head's loop: `Ok(Some(lease))` granted, `Ok(None)` degraded admission (fail open).
async fn lease_as_head(
    inner: &Inner,
    start: Instant,
    deadline: Option<Instant>,
) -> Result<Option<Arc<LeaseState>>, FleetRejected> {
    let shared = &inner.shared;
    let mut guard = HeadGuard {
        inner,
        lease: inner.next_id("l"),
        waiter: inner.next_id("w"),
        called: false,
        armed: true,
    };
    let mut backoff = Duration::from_millis(2);
    let mut calls = 0u32;
    let mut last_error: Option<Arc<str>> = None;
    loop {
        if shared.breaker.is_open() {
            return match inner.config.fail_mode {
                FailMode::Closed => Err(inner.unavailable(start, last_error)),
                FailMode::Open { .. } => Ok(None),
            };
        }
        let mut notified = std::pin::pin!(shared.wake.notified());
        notified.as_mut().enable();
        guard.called = true;
        calls += 1;
        Counters::bump(&shared.counters.acquire_calls, 1);
        let wait = match shared.backend.acquire(&guard.lease, &guard.waiter).await {
            Ok((reply, rtt)) => {
                shared.breaker.success();
                last_error = None;
                shared.observer.on_round_trip(&shared.key, rtt);
                match reply {
                    AcquireReply::Granted { fence } => {
                        let lease = Arc::new(LeaseState {
                            id: guard.lease.clone(),
                            fence,
                            lost: AtomicBool::new(false),
                        });
                        shared.held().insert(lease.id.clone(), lease.clone());
                        guard.armed = false;
                        Counters::bump(&shared.counters.admitted, 1);
                        shared
                            .observer
                            .on_admitted(&shared.key, start.elapsed(), calls);
                        return Ok(Some(lease));
                    }
                    AcquireReply::Denied { rank, retry_hint } => {
                        if rank < 0 {
                            Counters::bump(&shared.counters.quarantined, 1);
                        }
                        // With targeted wake-ups the poll is only the fallback for a
                        // lost message: wait the full `max_poll`. Without them, back off
                        // from 2 ms.
                        let poll = if shared.wakes {
                            inner.config.max_poll
                        } else {
                            backoff
                        };
                        let wait = retry_hint
                            .min(poll)
                            .min(inner.config.waiter_ttl / 3)
                            .min(inner.config.max_poll);
                        backoff = (backoff * 2).min(inner.config.max_poll);
                        wait
                    }
                }
            }
            Err(e) => {
                shared.backend_error(&e);
                last_error = Some(Arc::from(e.to_string()));
                backoff = (backoff * 2).min(inner.config.max_poll);
                backoff
            }
        };
        let until = Instant::now() + wait;
        let until = deadline.map_or(until, |d| until.min(d));
        // Woken early by a targeted message, or at the bounded poll.
        let _ = tokio::time::timeout_at(until.into(), notified).await;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return match (last_error, inner.config.fail_mode) {
                (None, _) => Err(inner.reject(RejectReason::QueueTimeout, start)),
                (Some(_), FailMode::Open { .. }) => Ok(None),
                (Some(cause), FailMode::Closed) => Err(inner.unavailable(start, Some(cause))),
            };
        }
    }
}
