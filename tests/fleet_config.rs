//! Bad fleet configurations are typed errors, found before anything starts (no server
//! needed: validation runs before the connection is used).
#![cfg(not(loom))]

use std::time::Duration;

use fairgate::fleet::{FailMode, FleetConfigError, FleetLimiter};
use fairgate::limit::{LimiterConfig, Mode};

fn local(cap: usize) -> LimiterConfig {
    LimiterConfig::builder("cfg")
        .capacity(cap)
        .config()
        .unwrap()
}

fn err(b: fairgate::fleet::FleetBuilder) -> FleetConfigError {
    let e = b.validate().unwrap_err();
    assert!(!e.to_string().is_empty());
    e
}

#[test]
fn empty_or_braced_keys_are_refused() {
    assert_eq!(
        err(FleetLimiter::builder("", local(2))),
        FleetConfigError::EmptyKey
    );
    assert_eq!(
        err(FleetLimiter::builder("a{b}", local(2))),
        FleetConfigError::BraceInKey
    );
    assert_eq!(
        err(FleetLimiter::builder("a", local(2)).prefix("p}")),
        FleetConfigError::BraceInKey
    );
}

#[test]
fn cap_zero_and_soft_mode_are_refused() {
    // Capacity 0 is a valid local passthrough, but not a fleet cap.
    assert_eq!(
        err(FleetLimiter::builder("a", local(0))),
        FleetConfigError::ZeroCap
    );
    let soft = LimiterConfig::builder("s")
        .capacity(3)
        .mode(Mode::Soft)
        .config()
        .unwrap();
    assert_eq!(
        err(FleetLimiter::builder("a", soft)),
        FleetConfigError::SoftMode
    );
}

#[test]
fn ttl_too_short_for_the_renew_interval_is_refused() {
    let b = FleetLimiter::builder("a", local(2))
        .lease_ttl(Duration::from_secs(1))
        .renew_interval(Duration::from_millis(600));
    assert!(matches!(err(b), FleetConfigError::TtlTooShort { .. }));
    // Renew (TTL/3 by default) plus the call timeout must fit in the TTL.
    let b = FleetLimiter::builder("a", local(2))
        .lease_ttl(Duration::from_secs(1))
        .call_timeout(Duration::from_millis(700));
    assert!(matches!(err(b), FleetConfigError::TtlTooShort { .. }));
    let ok = FleetLimiter::builder("a", local(2))
        .lease_ttl(Duration::from_secs(3))
        .call_timeout(Duration::from_millis(500));
    ok.validate().unwrap();
}

#[test]
fn zero_durations_and_zero_fallback_are_refused() {
    let b = FleetLimiter::builder("a", local(2)).max_poll(Duration::ZERO);
    assert_eq!(err(b), FleetConfigError::ZeroDuration("max poll"));
    let b = FleetLimiter::builder("a", local(2)).lease_ttl(Duration::ZERO);
    assert_eq!(err(b), FleetConfigError::ZeroDuration("lease ttl"));
    let b = FleetLimiter::builder("a", local(2)).breaker(0, Duration::from_secs(1));
    assert!(matches!(err(b), FleetConfigError::ZeroDuration(_)));
    let b = FleetLimiter::builder("a", local(2)).fail_mode(FailMode::Open {
        fallback_limit: Some(0),
    });
    assert_eq!(err(b), FleetConfigError::ZeroFallback);
    FleetLimiter::builder("a", local(2))
        .fail_mode(FailMode::Open {
            fallback_limit: None,
        })
        .validate()
        .unwrap();
}

/// A connection type for `build` outside a runtime: never used, since `build` refuses first.
#[derive(Clone)]
struct Unused;
impl redis::aio::ConnectionLike for Unused {
    fn req_packed_command<'a>(
        &'a mut self,
        _: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        unreachable!("build refused before any call")
    }
    fn req_packed_commands<'a>(
        &'a mut self,
        _: &'a redis::Pipeline,
        _: usize,
        _: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        unreachable!("build refused before any call")
    }
    fn get_db(&self) -> i64 {
        0
    }
}

#[test]
fn build_outside_a_runtime_is_refused() {
    let e = FleetLimiter::builder("a", local(2))
        .build(Unused)
        .unwrap_err();
    assert_eq!(e, FleetConfigError::NoRuntime);
    // And validation comes first.
    let e = FleetLimiter::builder("", local(2))
        .build(Unused)
        .unwrap_err();
    assert_eq!(e, FleetConfigError::EmptyKey);
}

#[test]
fn public_types_are_send_sync_and_static() {
    fn check<T: Send + Sync + 'static>() {}
    check::<FleetLimiter>();
    check::<fairgate::fleet::FleetPermit>();
    check::<fairgate::fleet::FleetRejected>();
    check::<FleetConfigError>();
    fn boxable<E: std::error::Error + Send + Sync + 'static>() {}
    boxable::<fairgate::fleet::FleetRejected>();
    boxable::<FleetConfigError>();
}
