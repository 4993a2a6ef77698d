//! Limiter configuration: the validated [`LimiterConfig`], its [`LimiterBuilder`], the
//! [`Mode`] and the typed [`ConfigError`].

use std::fmt;
use std::sync::Arc;
#[cfg(feature = "timeout")]
use std::time::Duration;

use super::limiter::Limiter;
use super::observer::Observer;
use crate::Semaphore;

/// The largest capacity a limiter accepts: a sixteenth of [`Semaphore::MAX_PERMITS`], so a
/// passthrough limiter's virtual capacity (see [`set_capacity`](Limiter::set_capacity)) and
/// any configured capacity fit in the semaphore together.
pub const MAX_CAPACITY: usize = Semaphore::MAX_PERMITS / 16;

/// The largest bounded queue (`max_queue = Some(k)`) a limiter accepts. Larger bounds are
/// indistinguishable from an unbounded queue; use `None` for that.
pub const MAX_QUEUE: usize = MAX_CAPACITY;

/// The longest queue timeout a limiter accepts (one year). Longer timeouts are a unit
/// mistake far more often than a wish; use no timeout for "wait as long as it takes".
#[cfg(feature = "timeout")]
pub const MAX_QUEUE_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// Whether a limiter enforces its capacity or only counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Enforce the capacity: at most `capacity` permits are out, later acquirers queue (FIFO)
    /// or are rejected.
    #[default]
    Hard,
    /// Admit everything at once and only count in-flight work (for load-balancer scoring
    /// and metrics). Never blocks, never rejects (unless closed).
    Soft,
}

impl Mode {
    /// `"hard"` or `"soft"`.
    ///
    /// ```
    /// assert_eq!(fairgate::limit::Mode::Soft.as_str(), "soft");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Hard => "hard",
            Mode::Soft => "soft",
        }
    }
}

/// A configuration the builder rejected, with the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The limiter's name is empty (names label errors and metrics).
    EmptyName,
    /// The capacity exceeds [`MAX_CAPACITY`].
    CapacityTooLarge {
        /// The capacity asked for.
        capacity: usize,
        /// The largest capacity accepted.
        max: usize,
    },
    /// `max_queue = Some(k)` with `k` above [`MAX_QUEUE`].
    QueueTooLarge {
        /// The bound asked for.
        max_queue: usize,
        /// The largest bound accepted.
        max: usize,
    },
    /// A queue setting (`max_queue` or `queue_timeout`) on a hard limiter with capacity 0,
    /// which is a passthrough: nobody ever queues, so the setting is a mistake.
    QueueWithPassthrough,
    /// A queue setting (`max_queue` or `queue_timeout`) on a soft limiter, which never
    /// queues.
    QueueWithSoftMode,
    /// A zero queue timeout. To reject at once when full use `max_queue(Some(0))`.
    ZeroTimeout,
    /// A queue timeout above `MAX_QUEUE_TIMEOUT` (feature `timeout`).
    TimeoutTooLarge,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::EmptyName => f.write_str("limiter name is empty"),
            ConfigError::CapacityTooLarge { capacity, max } => {
                write!(f, "capacity {capacity} exceeds the maximum {max}")
            }
            ConfigError::QueueTooLarge { max_queue, max } => {
                write!(f, "max_queue {max_queue} exceeds the maximum {max} (use None for unbounded)")
            }
            ConfigError::QueueWithPassthrough => f.write_str(
                "queue settings need a positive capacity: capacity 0 is a passthrough that never queues",
            ),
            ConfigError::QueueWithSoftMode => {
                f.write_str("queue settings need hard mode: a soft limiter never queues")
            }
            ConfigError::ZeroTimeout => f.write_str(
                "queue timeout is zero (use max_queue(Some(0)) to reject at once when full)",
            ),
            ConfigError::TimeoutTooLarge => f.write_str("queue timeout exceeds one year"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// A validated limiter configuration. Made only by [`LimiterBuilder::config`] (or
/// [`with_capacity`](Self::with_capacity)), so every value is a valid one.
///
/// Equality covers every field, so a keyed cache can look limiters up by configuration.
///
/// ```
/// use fairgate::limit::{LimiterConfig, Mode};
/// let config = LimiterConfig::builder("upstream-a").capacity(8).max_queue(Some(32)).config()?;
/// assert_eq!(config.name(), "upstream-a");
/// assert_eq!((config.capacity(), config.mode(), config.max_queue()), (8, Mode::Hard, Some(32)));
/// # Ok::<(), fairgate::limit::ConfigError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LimiterConfig {
    pub(crate) name: Arc<str>,
    pub(crate) capacity: usize,
    pub(crate) mode: Mode,
    pub(crate) max_queue: Option<usize>,
    #[cfg(feature = "timeout")]
    pub(crate) queue_timeout: Option<Duration>,
}

impl LimiterConfig {
    /// Starts a builder for a limiter called `name`. Defaults: capacity 0 (passthrough),
    /// [`Mode::Hard`], unbounded queue, no queue timeout.
    ///
    /// ```
    /// let config = fairgate::limit::LimiterConfig::builder("db").config()?;
    /// assert_eq!(config.capacity(), 0);
    /// # Ok::<(), fairgate::limit::ConfigError>(())
    /// ```
    pub fn builder(name: impl Into<Arc<str>>) -> LimiterBuilder {
        LimiterBuilder {
            config: LimiterConfig {
                name: name.into(),
                capacity: 0,
                mode: Mode::Hard,
                max_queue: None,
                #[cfg(feature = "timeout")]
                queue_timeout: None,
            },
            observer: None,
        }
    }

    /// The limiter's name (labels errors and metrics).
    ///
    /// ```
    /// let config = fairgate::limit::LimiterConfig::builder("db").config()?;
    /// assert_eq!(config.name(), "db");
    /// # Ok::<(), fairgate::limit::ConfigError>(())
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The capacity; 0 means passthrough (no limit).
    ///
    /// ```
    /// let config = fairgate::limit::LimiterConfig::builder("db").capacity(4).config()?;
    /// assert_eq!(config.capacity(), 4);
    /// # Ok::<(), fairgate::limit::ConfigError>(())
    /// ```
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Hard (enforce) or soft (count only).
    ///
    /// ```
    /// use fairgate::limit::{LimiterConfig, Mode};
    /// let config = LimiterConfig::builder("db").mode(Mode::Soft).config()?;
    /// assert_eq!(config.mode(), Mode::Soft);
    /// # Ok::<(), fairgate::limit::ConfigError>(())
    /// ```
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The queue bound: `None` unbounded, `Some(0)` reject at once when full, `Some(k)` at
    /// most `k` waiters.
    ///
    /// ```
    /// let config = fairgate::limit::LimiterConfig::builder("db").capacity(1).max_queue(Some(0)).config()?;
    /// assert_eq!(config.max_queue(), Some(0));
    /// # Ok::<(), fairgate::limit::ConfigError>(())
    /// ```
    pub fn max_queue(&self) -> Option<usize> {
        self.max_queue
    }

    /// How long one acquisition may wait in the queue, if bounded.
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = fairgate::limit::LimiterConfig::builder("db")
    ///     .capacity(1)
    ///     .queue_timeout(Duration::from_millis(250))
    ///     .config()?;
    /// assert_eq!(config.queue_timeout(), Some(Duration::from_millis(250)));
    /// # Ok::<(), fairgate::limit::ConfigError>(())
    /// ```
    #[cfg(feature = "timeout")]
    pub fn queue_timeout(&self) -> Option<Duration> {
        self.queue_timeout
    }

    /// A copy with capacity `n`. Checks only the capacity bound: a capacity of 0 with queue
    /// settings is accepted here, matching [`Limiter::set_capacity`] (the queue settings lie
    /// dormant while the limiter is a passthrough).
    ///
    /// ```
    /// let config = fairgate::limit::LimiterConfig::builder("db").capacity(4).config()?;
    /// let bigger = config.with_capacity(8)?;
    /// assert_eq!(bigger.capacity(), 8);
    /// assert!(config.differs_only_in_capacity(&bigger));
    /// # Ok::<(), fairgate::limit::ConfigError>(())
    /// ```
    pub fn with_capacity(&self, n: usize) -> Result<LimiterConfig, ConfigError> {
        check_capacity(n)?;
        let mut copy = self.clone();
        copy.capacity = n;
        Ok(copy)
    }

    /// Whether `other` equals `self` in everything but the capacity (a resize in place
    /// suffices to turn one into the other). True for equal configurations too.
    ///
    /// ```
    /// use fairgate::limit::{LimiterConfig, Mode};
    /// let a = LimiterConfig::builder("db").capacity(4).config()?;
    /// let b = LimiterConfig::builder("db").capacity(4).mode(Mode::Soft).config()?;
    /// assert!(!a.differs_only_in_capacity(&b));
    /// # Ok::<(), fairgate::limit::ConfigError>(())
    /// ```
    pub fn differs_only_in_capacity(&self, other: &LimiterConfig) -> bool {
        let mut other = other.clone();
        other.capacity = self.capacity;
        *self == other
    }
}

pub(crate) fn check_capacity(n: usize) -> Result<(), ConfigError> {
    if n > MAX_CAPACITY {
        return Err(ConfigError::CapacityTooLarge {
            capacity: n,
            max: MAX_CAPACITY,
        });
    }
    Ok(())
}

/// Builds a [`LimiterConfig`] (or a [`Limiter`] directly), validating every setting.
///
/// ```
/// use fairgate::limit::{Limiter, Mode};
/// let limiter = Limiter::builder("search").capacity(2).max_queue(Some(10)).build()?;
/// assert_eq!(limiter.capacity(), 2);
/// assert_eq!(limiter.mode(), Mode::Hard);
/// # Ok::<(), fairgate::limit::ConfigError>(())
/// ```
#[must_use = "a builder does nothing until `config()` or `build()`"]
#[derive(Clone)]
pub struct LimiterBuilder {
    config: LimiterConfig,
    observer: Option<Arc<dyn Observer>>,
}

impl fmt::Debug for LimiterBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimiterBuilder")
            .field("config", &self.config)
            .field("observer", &self.observer.is_some())
            .finish()
    }
}

impl LimiterBuilder {
    /// Sets the capacity (0 = passthrough, at most [`MAX_CAPACITY`]).
    ///
    /// ```
    /// let limiter = fairgate::limit::Limiter::builder("db").capacity(3).build()?;
    /// assert_eq!(limiter.capacity(), 3);
    /// # Ok::<(), fairgate::limit::ConfigError>(())
    /// ```
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.config.capacity = capacity;
        self
    }

    /// Sets the mode (default [`Mode::Hard`]).
    ///
    /// ```
    /// use fairgate::limit::{Limiter, Mode};
    /// let limiter = Limiter::builder("db").capacity(3).mode(Mode::Soft).build()?;
    /// assert_eq!(limiter.mode(), Mode::Soft);
    /// # Ok::<(), fairgate::limit::ConfigError>(())
    /// ```
    pub fn mode(mut self, mode: Mode) -> Self {
        self.config.mode = mode;
        self
    }

    /// Sets the queue bound: `None` (default) unbounded, `Some(0)` reject at once when full,
    /// `Some(k)` at most `k` waiters.
    ///
    /// ```
    /// let limiter = fairgate::limit::Limiter::builder("db").capacity(1).max_queue(Some(4)).build()?;
    /// assert_eq!(limiter.max_queue(), Some(4));
    /// # Ok::<(), fairgate::limit::ConfigError>(())
    /// ```
    pub fn max_queue(mut self, max_queue: Option<usize>) -> Self {
        self.config.max_queue = max_queue;
        self
    }

    /// Sets how long one acquisition may wait in the queue before it is rejected with
    /// [`QueueTimeout`](super::RejectReason::QueueTimeout). Waiting with a timeout needs a
    /// tokio runtime with its timer enabled.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use fairgate::limit::{Limiter, RejectReason};
    ///
    /// let limiter = Limiter::builder("db")
    ///     .capacity(1)
    ///     .queue_timeout(Duration::from_millis(50))
    ///     .build()?;
    /// let held = limiter.acquire().await?;
    /// // Nobody releases within 50 ms: the waiter is refused and leaves the queue.
    /// let err = limiter.acquire().await.unwrap_err();
    /// assert_eq!(err.reason(), RejectReason::QueueTimeout);
    /// assert!(err.waited() >= Duration::from_millis(50));
    /// assert_eq!(limiter.waiting(), 0);
    /// # drop(held);
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "timeout")]
    pub fn queue_timeout(mut self, timeout: Duration) -> Self {
        self.config.queue_timeout = Some(timeout);
        self
    }

    /// Installs an observer that [`build`](Self::build) hands to the limiter. Not part of
    /// the [`LimiterConfig`] (configs compare by value; observers do not).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fairgate::limit::{Limiter, Observer};
    /// struct Quiet;
    /// impl Observer for Quiet {}
    /// let limiter = Limiter::builder("db").capacity(1).observer(Arc::new(Quiet)).build()?;
    /// # Ok::<(), fairgate::limit::ConfigError>(())
    /// ```
    pub fn observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Validates the settings and returns the configuration.
    ///
    /// ```
    /// use fairgate::limit::{ConfigError, LimiterConfig};
    /// let err = LimiterConfig::builder("db").max_queue(Some(1)).config().unwrap_err();
    /// assert_eq!(err, ConfigError::QueueWithPassthrough);
    /// ```
    pub fn config(&self) -> Result<LimiterConfig, ConfigError> {
        let c = &self.config;
        if c.name.is_empty() {
            return Err(ConfigError::EmptyName);
        }
        check_capacity(c.capacity)?;
        if let Some(k) = c.max_queue {
            if k > MAX_QUEUE {
                return Err(ConfigError::QueueTooLarge {
                    max_queue: k,
                    max: MAX_QUEUE,
                });
            }
        }
        #[cfg(feature = "timeout")]
        if let Some(t) = c.queue_timeout {
            if t.is_zero() {
                return Err(ConfigError::ZeroTimeout);
            }
            if t > MAX_QUEUE_TIMEOUT {
                return Err(ConfigError::TimeoutTooLarge);
            }
        }
        #[cfg(feature = "timeout")]
        let queue_settings = c.max_queue.is_some() || c.queue_timeout.is_some();
        #[cfg(not(feature = "timeout"))]
        let queue_settings = c.max_queue.is_some();
        if queue_settings {
            if c.mode == Mode::Soft {
                return Err(ConfigError::QueueWithSoftMode);
            }
            if c.capacity == 0 {
                return Err(ConfigError::QueueWithPassthrough);
            }
        }
        Ok(c.clone())
    }

    /// Validates the settings and builds the limiter (with the observer, if one was set).
    ///
    /// ```
    /// let limiter = fairgate::limit::Limiter::builder("db").capacity(2).build()?;
    /// assert_eq!(limiter.in_flight(), 0);
    /// # Ok::<(), fairgate::limit::ConfigError>(())
    /// ```
    pub fn build(&self) -> Result<Limiter, ConfigError> {
        let config = self.config()?;
        Ok(match &self.observer {
            Some(observer) => Limiter::with_observer(config, Arc::clone(observer)),
            None => Limiter::new(config),
        })
    }
}
