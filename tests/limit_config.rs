//! Every invalid configuration gets its typed `ConfigError`, before anything is built.
#![cfg(not(loom))]

use std::collections::HashSet;

use fairgate::limit::{ConfigError, Limiter, LimiterConfig, Mode, MAX_CAPACITY, MAX_QUEUE};

#[test]
fn empty_name() {
    assert_eq!(
        Limiter::builder("").capacity(1).build().unwrap_err(),
        ConfigError::EmptyName
    );
}

#[test]
fn capacity_too_large() {
    let err = Limiter::builder("x")
        .capacity(MAX_CAPACITY + 1)
        .config()
        .unwrap_err();
    assert_eq!(
        err,
        ConfigError::CapacityTooLarge {
            capacity: MAX_CAPACITY + 1,
            max: MAX_CAPACITY
        }
    );
    assert!(Limiter::builder("x")
        .capacity(MAX_CAPACITY)
        .config()
        .is_ok());
}

#[test]
fn queue_too_large() {
    let err = Limiter::builder("x")
        .capacity(1)
        .max_queue(Some(MAX_QUEUE + 1))
        .config()
        .unwrap_err();
    assert_eq!(
        err,
        ConfigError::QueueTooLarge {
            max_queue: MAX_QUEUE + 1,
            max: MAX_QUEUE
        }
    );
}

#[test]
fn queue_settings_with_passthrough() {
    let err = Limiter::builder("x")
        .max_queue(Some(3))
        .config()
        .unwrap_err();
    assert_eq!(err, ConfigError::QueueWithPassthrough);
    #[cfg(feature = "timeout")]
    {
        let err = Limiter::builder("x")
            .queue_timeout(std::time::Duration::from_secs(1))
            .config()
            .unwrap_err();
        assert_eq!(err, ConfigError::QueueWithPassthrough);
    }
}

#[test]
fn queue_settings_with_soft_mode() {
    let err = Limiter::builder("x")
        .capacity(4)
        .mode(Mode::Soft)
        .max_queue(Some(0))
        .config()
        .unwrap_err();
    assert_eq!(err, ConfigError::QueueWithSoftMode);
}

#[cfg(feature = "timeout")]
#[test]
fn zero_and_absurd_timeouts() {
    use std::time::Duration;
    let zero = Limiter::builder("x")
        .capacity(1)
        .queue_timeout(Duration::ZERO)
        .config();
    assert_eq!(zero.unwrap_err(), ConfigError::ZeroTimeout);
    let huge = Limiter::builder("x")
        .capacity(1)
        .queue_timeout(fairgate::limit::MAX_QUEUE_TIMEOUT + Duration::from_secs(1))
        .config();
    assert_eq!(huge.unwrap_err(), ConfigError::TimeoutTooLarge);
}

#[test]
fn errors_display_their_reason() {
    let err = Limiter::builder("x")
        .capacity(MAX_CAPACITY + 1)
        .config()
        .unwrap_err();
    assert!(err.to_string().contains("exceeds the maximum"), "{err}");
    let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(err);
    assert!(boxed.downcast_ref::<ConfigError>().is_some());
}

#[test]
fn set_capacity_rejects_too_large_and_changes_nothing() {
    let limiter = Limiter::builder("x").capacity(2).build().unwrap();
    let err = limiter.set_capacity(MAX_CAPACITY + 1).unwrap_err();
    assert!(matches!(err, ConfigError::CapacityTooLarge { .. }));
    assert_eq!(limiter.capacity(), 2);
    assert_eq!(limiter.__total_permits(), 2);
}

#[test]
fn configs_compare_and_hash_by_value() {
    let a = LimiterConfig::builder("x")
        .capacity(2)
        .max_queue(Some(3))
        .config()
        .unwrap();
    let b = LimiterConfig::builder("x")
        .capacity(2)
        .max_queue(Some(3))
        .config()
        .unwrap();
    let c = a.with_capacity(5).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert!(a.differs_only_in_capacity(&c));
    assert!(!a.differs_only_in_capacity(&a.clone_with_name("y")));
    let set: HashSet<_> = [a.clone(), b, c].into_iter().collect();
    assert_eq!(set.len(), 2);
    assert!(matches!(
        a.with_capacity(MAX_CAPACITY + 1),
        Err(ConfigError::CapacityTooLarge { .. })
    ));
    // A live limiter reports its current configuration.
    let limiter = Limiter::new(a.clone());
    limiter.set_capacity(5).unwrap();
    assert_eq!(limiter.config(), a.with_capacity(5).unwrap());
}

trait CloneWithName {
    fn clone_with_name(&self, name: &str) -> LimiterConfig;
}

impl CloneWithName for LimiterConfig {
    fn clone_with_name(&self, name: &str) -> LimiterConfig {
        let b = LimiterConfig::builder(name)
            .capacity(self.capacity())
            .mode(self.mode())
            .max_queue(self.max_queue());
        #[cfg(feature = "timeout")]
        let b = match self.queue_timeout() {
            Some(t) => b.queue_timeout(t),
            None => b,
        };
        b.config().unwrap()
    }
}
