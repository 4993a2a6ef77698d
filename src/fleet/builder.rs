//! `FleetBuilder`: settings, validation, and the start of the background tasks.

// The crate is `no_std` with `std` linked: bring std's prelude and macros in.
#[allow(unused_imports)]
use std::prelude::rust_2021::*;
#[allow(unused_imports)]
use std::{format, vec};

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, Notify};

use crate::limit::{Limiter, LimiterConfig, Observer};
use crate::Semaphore;

use super::backend::{Backend, FleetConnection};
use super::background::{releaser, renewer, subscriber};
use super::breaker::Breaker;
use super::config::{FailMode, FleetConfig, FleetConfigError};
use super::limiter::{FleetLimiter, Inner, Shared};
use super::observe::{Counters, FleetObserver, NoFleetObserver};

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
    pub(crate) fn new(config: FleetConfig) -> FleetBuilder {
        FleetBuilder {
            config,
            renew_set: false,
            quarantine_set: false,
            observer: None,
            fleet_observer: Arc::new(NoFleetObserver),
            wake_client: None,
        }
    }

    /// Lease TTL (default 15 s): how long a dead holder's permit stays taken. The renew
    /// interval defaults to a third of it and the reset quarantine to half of it.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use fairgate::fleet::FleetLimiter;
    /// use fairgate::limit::LimiterConfig;
    /// let local = LimiterConfig::builder("upstream").capacity(4).config()?;
    /// FleetLimiter::builder("upstream", local).lease_ttl(Duration::from_secs(30)).validate()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.config.lease_ttl = ttl;
        self
    }
    /// How often held leases are renewed (default TTL/3), one batched call per interval.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use fairgate::fleet::FleetLimiter;
    /// use fairgate::limit::LimiterConfig;
    /// let local = LimiterConfig::builder("upstream").capacity(4).config()?;
    /// FleetLimiter::builder("upstream", local).lease_ttl(Duration::from_secs(30)).renew_interval(Duration::from_secs(5)).validate()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn renew_interval(mut self, every: Duration) -> Self {
        self.config.renew_interval = every;
        self.renew_set = true;
        self
    }
    /// How long a waiting head's ticket survives without a refresh (default 5 s).
    ///
    /// ```
    /// # use std::time::Duration;
    /// use fairgate::fleet::FleetLimiter;
    /// use fairgate::limit::LimiterConfig;
    /// let local = LimiterConfig::builder("upstream").capacity(4).config()?;
    /// FleetLimiter::builder("upstream", local).waiter_ttl(Duration::from_secs(10)).validate()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn waiter_ttl(mut self, ttl: Duration) -> Self {
        self.config.waiter_ttl = ttl;
        self
    }
    /// Admission pause after a detected reset (default TTL/2; zero disables it), during
    /// which holders re-assert their leases. Should exceed the renew interval.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use fairgate::fleet::FleetLimiter;
    /// use fairgate::limit::LimiterConfig;
    /// let local = LimiterConfig::builder("upstream").capacity(4).config()?;
    /// FleetLimiter::builder("upstream", local).quarantine(Duration::from_secs(8)).validate()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn quarantine(mut self, pause: Duration) -> Self {
        self.config.quarantine = pause;
        self.quarantine_set = true;
        self
    }
    /// Bound of every Redis call (default 1 s); past it the outcome is unknown and the call
    /// is retried with the same ids.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use fairgate::fleet::FleetLimiter;
    /// use fairgate::limit::LimiterConfig;
    /// let local = LimiterConfig::builder("upstream").capacity(4).config()?;
    /// FleetLimiter::builder("upstream", local).call_timeout(Duration::from_millis(250)).validate()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.config.call_timeout = timeout;
        self
    }
    /// Longest wait between two acquire attempts of a waiting head (default 50 ms): the
    /// poll that backs up the at-most-once wake-ups.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use fairgate::fleet::FleetLimiter;
    /// use fairgate::limit::LimiterConfig;
    /// let local = LimiterConfig::builder("upstream").capacity(4).config()?;
    /// FleetLimiter::builder("upstream", local).max_poll(Duration::from_millis(20)).validate()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_poll(mut self, poll: Duration) -> Self {
        self.config.max_poll = poll;
        self
    }
    /// FIFO across processes by ticket (default `true`); `false` lets any head take a free
    /// slot.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use fairgate::fleet::FleetLimiter;
    /// use fairgate::limit::LimiterConfig;
    /// let local = LimiterConfig::builder("upstream").capacity(4).config()?;
    /// FleetLimiter::builder("upstream", local).fair(false).validate()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn fair(mut self, fair: bool) -> Self {
        self.config.fair = fair;
        self
    }
    /// What to do while Redis is unreachable (default [`FailMode::Closed`]).
    ///
    /// ```
    /// # use std::time::Duration;
    /// use fairgate::fleet::FleetLimiter;
    /// use fairgate::limit::LimiterConfig;
    /// let local = LimiterConfig::builder("upstream").capacity(4).config()?;
    /// FleetLimiter::builder("upstream", local).fail_mode(fairgate::fleet::FailMode::Open { fallback_limit: Some(2) }).validate()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn fail_mode(mut self, mode: FailMode) -> Self {
        self.config.fail_mode = mode;
        self
    }
    /// Circuit breaker: open after `failures` consecutive failed calls, for `cooldown`
    /// (default 3 and 1 s).
    ///
    /// ```
    /// # use std::time::Duration;
    /// use fairgate::fleet::FleetLimiter;
    /// use fairgate::limit::LimiterConfig;
    /// let local = LimiterConfig::builder("upstream").capacity(4).config()?;
    /// FleetLimiter::builder("upstream", local).breaker(5, Duration::from_secs(2)).validate()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn breaker(mut self, failures: u32, cooldown: Duration) -> Self {
        self.config.breaker_failures = failures;
        self.config.breaker_cooldown = cooldown;
        self
    }
    /// Key prefix (default `"fairgate"`): keys are `<prefix>:{<key>}:<name>`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use fairgate::fleet::FleetLimiter;
    /// use fairgate::limit::LimiterConfig;
    /// let local = LimiterConfig::builder("upstream").capacity(4).config()?;
    /// FleetLimiter::builder("upstream", local).prefix("myapp").validate()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn prefix(mut self, prefix: impl Into<Arc<str>>) -> Self {
        self.config.prefix = prefix.into();
        self
    }
    /// Observer for the local limiter's events (as for a plain [`Limiter`]).
    ///
    /// ```
    /// # use std::time::Duration;
    /// use fairgate::fleet::FleetLimiter;
    /// use fairgate::limit::LimiterConfig;
    /// let local = LimiterConfig::builder("upstream").capacity(4).config()?;
    /// # #[cfg(feature = "metrics")]
    /// FleetLimiter::builder("upstream", local).observer(std::sync::Arc::new(fairgate::limit::MetricsObserver::new())).validate()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = Some(observer);
        self
    }
    /// Observer for fleet events (admissions, round trips, lost leases, errors).
    ///
    /// ```
    /// # use std::time::Duration;
    /// use fairgate::fleet::FleetLimiter;
    /// use fairgate::limit::LimiterConfig;
    /// let local = LimiterConfig::builder("upstream").capacity(4).config()?;
    /// # #[cfg(feature = "metrics")]
    /// FleetLimiter::builder("upstream", local).fleet_observer(std::sync::Arc::new(fairgate::limit::MetricsObserver::new())).validate()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn fleet_observer(mut self, observer: Arc<dyn FleetObserver>) -> Self {
        self.fleet_observer = observer;
        self
    }
    /// A client for a pub/sub connection carrying targeted wake-ups. Without it a waiting
    /// head polls (bounded by [`max_poll`](Self::max_poll) and the next lease expiry).
    ///
    /// ```
    /// # use std::time::Duration;
    /// use fairgate::fleet::FleetLimiter;
    /// use fairgate::limit::LimiterConfig;
    /// let local = LimiterConfig::builder("upstream").capacity(4).config()?;
    /// FleetLimiter::builder("upstream", local).wake_client(redis::Client::open("redis://127.0.0.1:6379")?).validate()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wake_client(mut self, client: redis::Client) -> Self {
        self.wake_client = Some(client);
        self
    }

    /// Validates the configuration without building anything.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use fairgate::fleet::FleetLimiter;
    /// use fairgate::limit::LimiterConfig;
    /// let local = LimiterConfig::builder("upstream").capacity(4).config()?;
    /// FleetLimiter::builder("upstream", local).validate()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
            wakes: self.wake_client.is_some(),
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
