//! `FleetLimiter`: the local fair limiter in front of the global lease.

// The crate is `no_std` with `std` linked: bring std's prelude and macros in.
#[allow(unused_imports)]
use std::prelude::rust_2021::*;
#[allow(unused_imports)]
use std::{format, vec};

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use crate::limit::{Limiter, LimiterConfig, Observer, RejectReason, Rejected};
use crate::Semaphore;

use super::backend::{AcquireReply, Backend, FleetConnection, FleetSnapshot};
use super::background::{releaser, renewer, subscriber, Release};
use super::breaker::Breaker;
use super::config::{FailMode, FleetConfig, FleetConfigError};
use super::error::FleetRejected;
use super::observe::{Counters, FleetCounters, FleetObserver, NoFleetObserver};
use super::permit::{FleetPermit, LeaseState};

/// State shared with the background tasks.
pub(crate) struct Shared {
    pub(crate) key: Arc<str>,
    pub(crate) backend: Backend,
    pub(crate) breaker: Breaker,
    pub(crate) counters: Counters,
    pub(crate) observer: Arc<dyn FleetObserver>,
    pub(crate) wake: Notify,
    pub(crate) process_id: String,
    held: Mutex<HashMap<Arc<str>, Arc<LeaseState>>>,
}

impl Shared {
    pub(crate) fn held(&self) -> MutexGuard<'_, HashMap<Arc<str>, Arc<LeaseState>>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks a lease lost if it is still held (a lease released while its renewal was in
    /// flight is not lost).
    pub(crate) fn lease_lost(&self, id: &str) {
        let lease = self.held().get(id).cloned();
        if let Some(lease) = lease {
            if !lease.lost.swap(true, Ordering::Relaxed) {
                Counters::bump(&self.counters.leases_lost, 1);
                self.observer.on_lease_lost(&self.key, id, lease.fence);
            }
        }
    }
}

pub(crate) struct Inner {
    config: FleetConfig,
    local: Limiter,
    fallback: Option<Limiter>,
    /// Only the holder of this single permit (the head of the local queue) talks to Redis
    /// for an admission, so Redis sees at most one waiter per process per key.
    head: Arc<Semaphore>,
    shared: Arc<Shared>,
    releases: mpsc::UnboundedSender<Release>,
    seq: AtomicU64,
    tasks: Vec<JoinHandle<()>>,
}

impl Inner {
    pub(crate) fn forget_lease(&self, id: &str) {
        self.shared.held().remove(id);
    }

    /// Hands a lease and/or waiter ticket to the releaser. If the releaser is gone (the
    /// runtime shut down), the TTLs reclaim them.
    pub(crate) fn send_release(&self, lease: Option<Arc<str>>, waiter: Option<Arc<str>>) {
        if let Some(id) = lease {
            let _ = self.releases.send(Release::Lease(id));
        }
        if let Some(id) = waiter {
            let _ = self.releases.send(Release::Waiter(id));
        }
    }

    fn next_id(&self, kind: &str) -> Arc<str> {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        Arc::from(format!("{}:{kind}{n}", self.shared.process_id))
    }

    fn reject(&self, reason: RejectReason, start: Instant) -> FleetRejected {
        FleetRejected::Local(Rejected::new(
            reason,
            start.elapsed(),
            Arc::from(self.local.name()),
        ))
    }

    fn unavailable(&self, start: Instant, cause: Option<Arc<str>>) -> FleetRejected {
        Counters::bump(&self.shared.counters.unavailable, 1);
        self.shared.observer.on_unavailable(&self.config.key);
        FleetRejected::Unavailable {
            limiter: Arc::from(self.local.name()),
            waited: start.elapsed(),
            cause,
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

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

/// A fleet-wide concurrency cap on Redis, behind the local fair [`Limiter`].
///
/// See the [module docs](super) for the design and its limits. Cheap to clone (an `Arc`).
#[derive(Clone)]
pub struct FleetLimiter {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FleetLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetLimiter")
            .field("key", &self.inner.config.key)
            .field("cap", &self.inner.config.cap())
            .field("local", &self.inner.local)
            .finish()
    }
}

/// Builds a [`FleetLimiter`]; see [`FleetLimiter::builder`].
pub struct FleetBuilder {
    config: FleetConfig,
    renew_set: bool,
    quarantine_set: bool,
    observer: Option<Arc<dyn Observer>>,
    fleet_observer: Arc<dyn FleetObserver>,
    wake_client: Option<redis::Client>,
}

impl std::fmt::Debug for FleetBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl FleetBuilder {
    /// Lease TTL (default 15 s): how long a dead holder's permit stays taken. The renew
    /// interval defaults to a third of it and the reset quarantine to half of it.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.config.lease_ttl = ttl;
        self
    }
    /// How often held leases are renewed (default TTL/3), one batched call per interval.
    pub fn renew_interval(mut self, every: Duration) -> Self {
        self.config.renew_interval = every;
        self.renew_set = true;
        self
    }
    /// How long a waiting head's ticket survives without a refresh (default 5 s).
    pub fn waiter_ttl(mut self, ttl: Duration) -> Self {
        self.config.waiter_ttl = ttl;
        self
    }
    /// Admission pause after a detected reset (default TTL/2; zero disables it), during
    /// which holders re-assert their leases. Should exceed the renew interval.
    pub fn quarantine(mut self, pause: Duration) -> Self {
        self.config.quarantine = pause;
        self.quarantine_set = true;
        self
    }
    /// Bound of every Redis call (default 1 s); past it the outcome is unknown and the call
    /// is retried with the same ids.
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.config.call_timeout = timeout;
        self
    }
    /// Longest wait between two acquire attempts of a waiting head (default 50 ms): the
    /// poll that backs up the at-most-once wake-ups.
    pub fn max_poll(mut self, poll: Duration) -> Self {
        self.config.max_poll = poll;
        self
    }
    /// FIFO across processes by ticket (default `true`); `false` lets any head take a free
    /// slot.
    pub fn fair(mut self, fair: bool) -> Self {
        self.config.fair = fair;
        self
    }
    /// What to do while Redis is unreachable (default [`FailMode::Closed`]).
    pub fn fail_mode(mut self, mode: FailMode) -> Self {
        self.config.fail_mode = mode;
        self
    }
    /// Circuit breaker: open after `failures` consecutive failed calls, for `cooldown`
    /// (default 3 and 1 s).
    pub fn breaker(mut self, failures: u32, cooldown: Duration) -> Self {
        self.config.breaker_failures = failures;
        self.config.breaker_cooldown = cooldown;
        self
    }
    /// Key prefix (default `"fairgate"`): keys are `<prefix>:{<key>}:<name>`.
    pub fn prefix(mut self, prefix: impl Into<Arc<str>>) -> Self {
        self.config.prefix = prefix.into();
        self
    }
    /// Observer for the local limiter's events (as for a plain [`Limiter`]).
    pub fn observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = Some(observer);
        self
    }
    /// Observer for fleet events (admissions, round trips, lost leases, errors).
    pub fn fleet_observer(mut self, observer: Arc<dyn FleetObserver>) -> Self {
        self.fleet_observer = observer;
        self
    }
    /// A client for a pub/sub connection carrying targeted wake-ups. Without it a waiting
    /// head polls (bounded by [`max_poll`](Self::max_poll) and the next lease expiry).
    pub fn wake_client(mut self, client: redis::Client) -> Self {
        self.wake_client = Some(client);
        self
    }

    /// Validates the configuration without building anything.
    pub fn validate(&self) -> Result<(), FleetConfigError> {
        self.effective().validate()
    }

    fn effective(&self) -> FleetConfig {
        let mut c = self.config.clone();
        if !self.renew_set {
            c.renew_interval = c.lease_ttl / 3;
        }
        if !self.quarantine_set {
            c.quarantine = c.lease_ttl / 2;
        }
        c
    }

    /// Validates and starts the limiter on `conn` (its background tasks need a tokio
    /// runtime). Nothing is sent to Redis until the first acquire.
    pub fn build<C: FleetConnection>(self, conn: C) -> Result<FleetLimiter, FleetConfigError> {
        let config = self.effective();
        config.validate()?;
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| FleetConfigError::NoRuntime)?;
        let local = match &self.observer {
            Some(o) => Limiter::with_observer(config.local.clone(), o.clone()),
            None => Limiter::new(config.local.clone()),
        };
        let fallback = match config.fail_mode {
            FailMode::Open {
                fallback_limit: Some(n),
            } => Some(
                LimiterConfig::builder(format!("{}-fallback", config.local.name()))
                    .capacity(n)
                    .build()?,
            ),
            _ => None,
        };
        let shared = Arc::new(Shared {
            key: config.key.clone(),
            backend: Backend::new(conn, &config),
            breaker: Breaker::new(config.breaker_failures, config.breaker_cooldown),
            counters: Counters::default(),
            observer: self.fleet_observer,
            wake: Notify::new(),
            process_id: process_id(),
            held: Mutex::new(HashMap::new()),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        runtime.spawn(releaser(shared.clone(), rx));
        let mut tasks = vec![runtime.spawn(renewer(shared.clone(), config.renew_interval))];
        if let Some(client) = self.wake_client {
            tasks.push(runtime.spawn(subscriber(shared.clone(), client)));
        }
        Ok(FleetLimiter {
            inner: Arc::new(Inner {
                config,
                local,
                fallback,
                head: Arc::new(Semaphore::new(1)),
                shared,
                releases: tx,
                seq: AtomicU64::new(0),
                tasks,
            }),
        })
    }
}

/// A process-unique id: random bits from std's hasher seed, the pid and the time.
fn process_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    format!("{:016x}-{}", h.finish(), std::process::id())
}

impl FleetLimiter {
    /// A builder for the limit named by `key` (the Redis key part; every process using the
    /// same key, prefix and Redis shares one cap). `local` is the local fair limiter: its
    /// capacity is the fleet cap, its `max_queue` and `queue_timeout` bound the whole wait.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fairgate::fleet::{FleetConfigError, FleetLimiter};
    /// use fairgate::limit::LimiterConfig;
    /// let local = LimiterConfig::builder("upstream").capacity(8).config()?;
    /// let builder = FleetLimiter::builder("upstream-a", local)
    ///     .lease_ttl(Duration::from_secs(3))
    ///     .renew_interval(Duration::from_secs(2));
    /// assert!(matches!(builder.validate(), Err(FleetConfigError::TtlTooShort { .. })));
    /// # Ok::<(), fairgate::limit::ConfigError>(())
    /// ```
    pub fn builder(key: impl Into<Arc<str>>, local: LimiterConfig) -> FleetBuilder {
        FleetBuilder {
            config: FleetConfig::new(key.into(), local),
            renew_set: false,
            quarantine_set: false,
            observer: None,
            fleet_observer: Arc::new(NoFleetObserver),
            wake_client: None,
        }
    }

    /// Waits for admission: first in the local FIFO queue, then (as the head of it) for a
    /// global lease. The local `queue_timeout` bounds the whole wait. Cancel-safe: dropping
    /// the future leaves no ticket or lease behind (a possibly granted lease is released).
    ///
    /// ```no_run
    /// # async fn run(limiter: fairgate::fleet::FleetLimiter) -> Result<(), fairgate::fleet::FleetRejected> {
    /// let permit = limiter.acquire().await?;
    /// println!("admitted with fence {:?}", permit.fence());
    /// # Ok(()) }
    /// ```
    pub fn acquire(&self) -> impl Future<Output = Result<FleetPermit, FleetRejected>> + Send {
        let inner = self.inner.clone();
        async move { acquire(inner).await }
    }

    /// Fleet-wide live leases and waiting heads for this key, by the server clock.
    ///
    /// ```no_run
    /// # async fn run(limiter: fairgate::fleet::FleetLimiter) {
    /// let snap = limiter.fleet_snapshot().await.expect("redis reachable");
    /// assert!(snap.in_flight <= limiter.cap());
    /// # }
    /// ```
    pub async fn fleet_snapshot(&self) -> Result<FleetSnapshot, FleetRejected> {
        let start = Instant::now();
        // Not a refused request: not counted as one.
        self.inner
            .shared
            .backend
            .inspect()
            .await
            .map_err(|e| FleetRejected::Unavailable {
                limiter: Arc::from(self.inner.local.name()),
                waited: start.elapsed(),
                cause: Some(Arc::from(e.to_string())),
            })
    }

    /// This process's counters.
    ///
    /// ```no_run
    /// # fn run(limiter: fairgate::fleet::FleetLimiter) {
    /// let c = limiter.counters();
    /// println!("{} admitted in {} calls", c.admitted, c.acquire_calls);
    /// # }
    /// ```
    pub fn counters(&self) -> FleetCounters {
        self.inner.shared.counters.snapshot()
    }

    /// The fleet cap.
    ///
    /// ```no_run
    /// # fn run(limiter: fairgate::fleet::FleetLimiter) { assert!(limiter.cap() > 0); }
    /// ```
    pub fn cap(&self) -> usize {
        self.inner.config.cap()
    }

    /// The local limiter (in-flight and waiting in this process).
    ///
    /// ```no_run
    /// # fn run(limiter: fairgate::fleet::FleetLimiter) {
    /// println!("local in flight: {}", limiter.local().in_flight());
    /// # }
    /// ```
    pub fn local(&self) -> &Limiter {
        &self.inner.local
    }

    /// Leases this process holds now.
    ///
    /// ```no_run
    /// # fn run(limiter: fairgate::fleet::FleetLimiter) { let _n = limiter.held_leases(); }
    /// ```
    pub fn held_leases(&self) -> usize {
        self.inner.shared.held().len()
    }

    /// The limiter key.
    ///
    /// ```no_run
    /// # fn run(limiter: fairgate::fleet::FleetLimiter) { println!("{}", limiter.key()); }
    /// ```
    pub fn key(&self) -> &str {
        &self.inner.config.key
    }
}

async fn acquire(inner: Arc<Inner>) -> Result<FleetPermit, FleetRejected> {
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
    local: crate::limit::LimitPermit,
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
                        let wait = retry_hint
                            .min(backoff)
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
