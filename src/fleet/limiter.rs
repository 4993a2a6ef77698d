//! `FleetLimiter`: the local fair limiter in front of the global lease.

// The crate is `no_std` with `std` linked: bring std's prelude and macros in.
#[allow(unused_imports)]
use std::prelude::rust_2021::*;
#[allow(unused_imports)]
use std::{format, vec};

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use crate::limit::{Limiter, LimiterConfig, RejectReason, Rejected};
use crate::Semaphore;

use super::backend::{Backend, FleetSnapshot};
use super::background::Release;
use super::breaker::Breaker;
use super::builder::FleetBuilder;
use super::config::FleetConfig;
use super::error::FleetRejected;
use super::observe::{Counters, FleetCounters, FleetObserver};
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
    /// True when a subscriber delivers targeted wake-ups.
    pub(crate) wakes: bool,
    pub(crate) held: Mutex<HashMap<Arc<str>, Arc<LeaseState>>>,
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
    pub(crate) config: FleetConfig,
    pub(crate) local: Limiter,
    pub(crate) fallback: Option<Limiter>,
    /// Only the holder of this single permit (the head of the local queue) talks to Redis
    /// for an admission, so Redis sees at most one waiter per process per key.
    pub(crate) head: Arc<Semaphore>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) releases: mpsc::UnboundedSender<Release>,
    pub(crate) seq: AtomicU64,
    pub(crate) tasks: Vec<JoinHandle<()>>,
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

    pub(crate) fn next_id(&self, kind: &str) -> Arc<str> {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        Arc::from(format!("{}:{kind}{n}", self.shared.process_id))
    }

    pub(crate) fn reject(&self, reason: RejectReason, start: Instant) -> FleetRejected {
        FleetRejected::Local(Rejected::new(
            reason,
            start.elapsed(),
            Arc::from(self.local.name()),
        ))
    }

    pub(crate) fn unavailable(&self, start: Instant, cause: Option<Arc<str>>) -> FleetRejected {
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

/// A fleet-wide concurrency cap on Redis, behind the local fair [`Limiter`].
///
/// See the [module docs](super) for the design and its limits. Cheap to clone (an `Arc`).
#[derive(Clone)]
pub struct FleetLimiter {
    pub(crate) inner: Arc<Inner>,
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
        FleetBuilder::new(FleetConfig::new(key.into(), local))
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
        async move { super::acquire::acquire(inner).await }
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
