//! Fleet configuration: timings, fail mode, and their validation into typed errors.

// The crate is `no_std` with `std` linked: bring std's prelude and macros in.
#[allow(unused_imports)]
use std::prelude::rust_2021::*;
#[allow(unused_imports)]
use std::{format, vec};

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::limit::{ConfigError, LimiterConfig, Mode};

/// What admission does while Redis cannot be reached (calls fail or the circuit breaker is
/// open).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum FailMode {
    /// Refuse: the acquire ends with [`FleetRejected::Unavailable`](super::FleetRejected).
    #[default]
    Closed,
    /// Admit on the local limiter alone ("degraded" admissions, counted). With
    /// `fallback_limit: Some(n)` at most `n` degraded permits are out at once in this process
    /// (for example the fleet cap divided by the replica count).
    Open {
        /// The local cap on degraded admissions; `None` = only the local limiter's capacity.
        fallback_limit: Option<usize>,
    },
}

/// A fleet configuration that does not make sense, found before anything starts.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FleetConfigError {
    /// The limiter key is empty.
    EmptyKey,
    /// The key or prefix contains `{` or `}`, which would break the hash tag that keeps all
    /// keys of one limiter on one cluster slot.
    BraceInKey,
    /// The fleet cap (the local config's capacity) is 0. Locally that would mean
    /// passthrough, fleet-wide it would admit nobody; neither is a fleet limit, so it is
    /// refused (use a plain [`Limiter`](crate::limit::Limiter) for passthrough).
    ZeroCap,
    /// The local config is in [`Mode::Soft`], which never waits: a fleet limit must be hard.
    SoftMode,
    /// A duration that must be positive is zero.
    ZeroDuration(&'static str),
    /// The lease TTL is too short for the renew interval: it must be at least twice the
    /// renew interval and longer than one renew interval plus the call timeout, so that
    /// one late renewal does not lose a live lease.
    TtlTooShort {
        /// The lease TTL.
        ttl: Duration,
        /// The renew interval.
        renew_interval: Duration,
        /// The per-call timeout.
        call_timeout: Duration,
    },
    /// `FailMode::Open { fallback_limit: Some(0) }` would refuse everything while degraded:
    /// that is `FailMode::Closed`.
    ZeroFallback,
    /// The local limiter config was refused.
    Local(ConfigError),
    /// `build` was called outside a tokio runtime (the renewer and releaser are tasks).
    NoRuntime,
}

impl fmt::Display for FleetConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyKey => f.write_str("fleet limiter key is empty"),
            Self::BraceInKey => f.write_str("fleet key or prefix contains '{' or '}'"),
            Self::ZeroCap => f.write_str("fleet cap is 0 (no passthrough for a fleet limit)"),
            Self::SoftMode => f.write_str("fleet limiter needs a hard local limiter"),
            Self::ZeroDuration(what) => write!(f, "fleet {what} is zero"),
            Self::TtlTooShort {
                ttl,
                renew_interval,
                call_timeout,
            } => write!(
                f,
                "lease ttl {ttl:?} too short: needs >= 2 x renew interval ({renew_interval:?}) \
                 and > renew interval + call timeout ({call_timeout:?})"
            ),
            Self::ZeroFallback => f.write_str("fail-open fallback limit is 0"),
            Self::Local(e) => write!(f, "local limiter: {e}"),
            Self::NoRuntime => f.write_str("fleet limiter built outside a tokio runtime"),
        }
    }
}

impl std::error::Error for FleetConfigError {}

impl From<ConfigError> for FleetConfigError {
    fn from(e: ConfigError) -> Self {
        Self::Local(e)
    }
}

/// A validated fleet configuration (see [`FleetBuilder`](super::FleetBuilder)).
#[derive(Clone, Debug)]
pub(crate) struct FleetConfig {
    pub(crate) key: Arc<str>,
    pub(crate) prefix: Arc<str>,
    pub(crate) local: LimiterConfig,
    pub(crate) lease_ttl: Duration,
    pub(crate) renew_interval: Duration,
    pub(crate) waiter_ttl: Duration,
    pub(crate) quarantine: Duration,
    pub(crate) call_timeout: Duration,
    pub(crate) max_poll: Duration,
    pub(crate) fair: bool,
    pub(crate) fail_mode: FailMode,
    pub(crate) breaker_failures: u32,
    pub(crate) breaker_cooldown: Duration,
}

impl FleetConfig {
    pub(crate) fn new(key: Arc<str>, local: LimiterConfig) -> FleetConfig {
        let lease_ttl = Duration::from_secs(15);
        FleetConfig {
            key,
            prefix: Arc::from("fairgate"),
            local,
            lease_ttl,
            renew_interval: lease_ttl / 3,
            waiter_ttl: Duration::from_secs(5),
            quarantine: lease_ttl / 2,
            call_timeout: Duration::from_secs(1),
            max_poll: Duration::from_millis(50),
            fair: true,
            fail_mode: FailMode::Closed,
            breaker_failures: 3,
            breaker_cooldown: Duration::from_secs(1),
        }
    }

    pub(crate) fn cap(&self) -> usize {
        self.local.capacity()
    }

    pub(crate) fn validate(&self) -> Result<(), FleetConfigError> {
        if self.key.is_empty() {
            return Err(FleetConfigError::EmptyKey);
        }
        let brace = |s: &str| s.contains('{') || s.contains('}');
        if brace(&self.key) || brace(&self.prefix) {
            return Err(FleetConfigError::BraceInKey);
        }
        if self.local.mode() == Mode::Soft {
            return Err(FleetConfigError::SoftMode);
        }
        if self.cap() == 0 {
            return Err(FleetConfigError::ZeroCap);
        }
        for (what, d) in [
            ("lease ttl", self.lease_ttl),
            ("renew interval", self.renew_interval),
            ("waiter ttl", self.waiter_ttl),
            ("call timeout", self.call_timeout),
            ("max poll", self.max_poll),
            ("breaker cooldown", self.breaker_cooldown),
        ] {
            if d.is_zero() {
                return Err(FleetConfigError::ZeroDuration(what));
            }
        }
        if self.breaker_failures == 0 {
            return Err(FleetConfigError::ZeroDuration("breaker failure count"));
        }
        if self.lease_ttl < self.renew_interval * 2
            || self.lease_ttl <= self.renew_interval + self.call_timeout
        {
            return Err(FleetConfigError::TtlTooShort {
                ttl: self.lease_ttl,
                renew_interval: self.renew_interval,
                call_timeout: self.call_timeout,
            });
        }
        if self.fail_mode
            == (FailMode::Open {
                fallback_limit: Some(0),
            })
        {
            return Err(FleetConfigError::ZeroFallback);
        }
        Ok(())
    }

    /// Key expiry for the zsets and hash: long enough that live holders and waiters always
    /// refresh it first.
    pub(crate) fn key_ttl(&self) -> Duration {
        (self.lease_ttl.max(self.waiter_ttl)) * 2
    }
}
