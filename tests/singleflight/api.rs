//! The public types on their own: `Backoff::delay`, the errors' `Display`
//! and `source()`, `peek`'s rows, the simple loader form, and the global
//! load cap's FIFO order (the crate's own semaphore).

use crate::rig::*;
use fairgate::singleflight::{
    from_fn, Backoff, CacheError, Clock, Group, GroupError, ManualClock, Policy, Source,
    StaleCache, StaleReason, SystemClock,
};
use std::error::Error as _;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `delay(n) = min(max, initial * multiplier^(n-1))`, zero for no failure,
/// a multiplier below 1 (or not finite) counting as 1.
#[test]
fn backoff_delay_follows_its_formula() {
    let secs = Duration::from_secs;
    let b = Backoff {
        initial: secs(1),
        multiplier: 2.0,
        max: secs(20),
    };
    let got: Vec<Duration> = (0..8).map(|n| b.delay(n)).collect();
    let want = [0, 1, 2, 4, 8, 16, 20, 20].map(secs);
    assert_eq!(got, want);
    assert_eq!(b.delay(u32::MAX), secs(20));
    // 2^99 s is finite but beyond `Duration`: capped, not converted.
    assert_eq!(b.delay(100), secs(20));
    let b = Backoff {
        initial: Duration::from_millis(1500),
        multiplier: 3.0,
        max: secs(60),
    };
    assert_eq!(b.delay(1), Duration::from_millis(1500));
    assert_eq!(b.delay(3), Duration::from_millis(13_500));
    for multiplier in [0.5, 1.0, f64::NAN, f64::NEG_INFINITY] {
        let b = Backoff {
            initial: secs(3),
            multiplier,
            max: secs(60),
        };
        assert_eq!(b.delay(5), secs(3), "multiplier {multiplier}");
    }
    let b = Backoff {
        initial: secs(30),
        multiplier: 2.0,
        max: secs(10),
    };
    assert_eq!(b.delay(1), secs(10), "initial above max is capped");
    assert_eq!(Backoff::default().delay(2), secs(2));
    let zero = Backoff {
        initial: Duration::ZERO,
        multiplier: 2.0,
        max: secs(10),
    };
    assert_eq!(zero.delay(1), Duration::ZERO);
    assert_eq!(zero.delay(5000), Duration::ZERO, "0 * overflowed factor");
}

#[derive(Debug)]
struct Down;

impl fmt::Display for Down {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("registry down")
    }
}

impl std::error::Error for Down {}

/// Every `CacheError` variant renders its parts, and `source()` is the
/// backend's error where there is one.
#[test]
fn cache_error_display_and_source() {
    let e = CacheError::Load(Arc::new(Down));
    assert_eq!(e.to_string(), "load failed: registry down");
    assert_eq!(e.source().unwrap().to_string(), "registry down");
    let e = CacheError::Throttled {
        retry_in: Duration::from_secs(3),
        last_error: Some(Arc::new(Down)),
    };
    assert_eq!(
        e.to_string(),
        "throttled for 3s after failure: registry down"
    );
    assert_eq!(e.source().unwrap().to_string(), "registry down");
    let e = CacheError::<Down>::Throttled {
        retry_in: Duration::from_millis(5),
        last_error: None,
    };
    assert_eq!(e.to_string(), "throttled for 5ms");
    assert!(e.source().is_none());
    let e = CacheError::<Down>::LoaderPanicked(Arc::from("boom"));
    assert_eq!(e.to_string(), "loader panicked: boom");
    assert!(e.source().is_none());
    assert!(format!("{:?}", e.clone()).contains("LoaderPanicked"));
}

#[test]
fn group_error_display_and_source() {
    let e = GroupError::Failed(Arc::new(Down));
    assert_eq!(e.to_string(), "registry down");
    assert_eq!(e.source().unwrap().to_string(), "registry down");
    let e = GroupError::<Down>::Panicked(Arc::from("boom"));
    assert_eq!(e.to_string(), "coalesced call panicked: boom");
    assert!(e.source().is_none());
    assert!(format!("{:?}", e.clone()).contains("Panicked"));
    // Through a real group: a failure reaches the caller as `Failed`.
    let g: Group<u8, u8, Down> = Group::new();
    let r = futures::executor::block_on(g.work(1, || async { Err(Down) }));
    assert_eq!(r.unwrap_err().to_string(), "registry down");
}

/// `peek` answers without loading: `None` for a missing key and for a value
/// older than `max_stale`, and the reason a `get` would give otherwise.
#[test]
fn peek_reports_each_row_without_loading() {
    bounded(|| {
        let (rig, clock, cache) = setup();
        assert!(cache.peek(&1).is_none());
        assert_eq!(rig.calls(), 0);
        populate(&rig, &cache, 1, 5);
        let hit = cache.peek(&1).unwrap();
        assert_eq!((*hit.value, hit.source), (5, Source::Fresh));
        assert!(!hit.is_stale());
        clock.advance(Duration::from_secs(10));
        let mut trigger = get(&cache, 1);
        assert!(poll_once(&mut trigger).is_pending());
        let hit = cache.peek(&1).unwrap();
        assert_eq!(hit.source, Source::Stale(StaleReason::Revalidating));
        assert_eq!(hit.age, Duration::from_secs(10));
        assert!(hit.is_stale());
        drop(trigger);
        clock.advance(Duration::from_secs(90)); // age 100 = max_stale
        assert!(cache.peek(&1).is_none());
        let s = cache.stats();
        assert_eq!((s.fresh, s.stale_revalidating), (0, 0), "peek counted");
        assert_eq!(rig.calls(), 2);
    });
}

/// The simple loader form: a key-only closure, no `previous`, no spelled-out
/// loader types (the key type comes from the first `get`).
#[test]
fn from_fn_needs_no_previous_and_no_loader_types() {
    let clock = ManualClock::new();
    let cache = StaleCache::from_fn(|k| {
        let k: u32 = *k;
        async move { Ok::<_, Down>(k + 1) }
    })
    .clock(clock.clone())
    .build();
    let hit = now(cache.get(&41u32)).unwrap();
    assert_eq!((*hit.value, hit.source), (42, Source::Loaded));
    // The same adapter as a value, for `builder`.
    let cache = StaleCache::builder(from_fn(|k: &String| {
        let n = k.len();
        async move { Ok::<_, Down>(n) }
    }))
    .policy(Policy::default())
    .build();
    assert_eq!(*now(cache.get(&"four".to_string())).unwrap().value, 4);
}

/// `max_concurrent_loads` queues loads first come, first served (the
/// crate's FIFO semaphore): when the running load ends, the load that asked
/// next starts, even if a later one is polled first.
#[test]
fn load_cap_serves_loads_in_arrival_order() {
    bounded(|| {
        let (rig, _clock, cache) = rig_with(Policy {
            max_concurrent_loads: Some(1),
            ..policy()
        });
        let mut futs: Vec<_> = (1..=3).map(|k| get(&cache, k)).collect();
        for f in &mut futs {
            assert!(poll_once(f).is_pending());
        }
        assert_eq!(*rig.keys.lock().unwrap(), [1]);
        assert!(rig.release(Reply::Ok(1)));
        let mut f3 = futs.pop().unwrap();
        let mut f2 = futs.pop().unwrap();
        let f1 = futs.pop().unwrap();
        assert!(now(f1).is_ok());
        // Key 3 is polled first, but key 2 asked first: 3 keeps waiting.
        assert!(poll_once(&mut f3).is_pending());
        assert!(poll_once(&mut f2).is_pending());
        assert_eq!(*rig.keys.lock().unwrap(), [1, 2]);
        assert!(rig.release(Reply::Ok(2)));
        assert!(now(&mut f2).is_ok());
        assert!(poll_once(&mut f3).is_pending());
        assert_eq!(*rig.keys.lock().unwrap(), [1, 2, 3]);
        assert!(rig.release(Reply::Ok(3)));
        assert!(now(&mut f3).is_ok());
        assert_eq!(rig.max_active.load(std::sync::atomic::Ordering::SeqCst), 1);
    });
}

/// The `Debug` output names the type and what a reader needs from it.
#[test]
fn debug_output_names_its_parts() {
    let (_rig, _clock, cache) = setup();
    let s = format!("{cache:?}");
    assert!(s.starts_with("StaleCache") && s.contains("ttl: 10s"), "{s}");
    let g: Group<u8, u8, Down> = Group::new();
    assert!(format!("{g:?}").starts_with("Group"));
    let f = from_fn(|k: &u8| {
        let k = *k;
        async move { Ok::<_, Down>(k) }
    });
    assert!(format!("{f:?}").starts_with("FromFn"));
    cache.insert(1, 2);
    let hit = cache.peek(&1).unwrap();
    let s = format!("{hit:?}");
    assert!(
        s.contains("value: 2") && s.contains("Fresh") && !s.contains("error"),
        "{s}"
    );
}

/// A clock that implements only `now()`: the cache measures ages through
/// `Clock::nanos_since`'s default. Fails if that default answers a constant.
#[test]
fn clock_with_only_now_drives_ages() {
    #[derive(Clone)]
    struct OnlyNow(ManualClock);
    impl Clock for OnlyNow {
        fn now(&self) -> Instant {
            self.0.now()
        }
    }
    let manual = ManualClock::new();
    let cache = StaleCache::from_fn(|k: &u8| {
        let k = *k;
        async move { Ok::<_, Down>(k) }
    })
    .policy(Policy {
        ttl: Duration::from_secs(10),
        ..Policy::default()
    })
    .clock(OnlyNow(manual.clone()))
    .build();
    cache.insert(1, 1);
    manual.advance(Duration::from_millis(10_500));
    let hit = cache.peek(&1).unwrap();
    assert_eq!(hit.age, Duration::from_millis(10_500));
    assert!(hit.is_stale());
}

/// `SystemClock::nanos_since` measures real elapsed time (no sleeping: the
/// origin is taken a second in the past).
#[test]
fn system_clock_measures_from_its_origin() {
    let Some(origin) = Instant::now().checked_sub(Duration::from_secs(1)) else {
        return; // a platform whose clock starts less than a second ago
    };
    let n = SystemClock.nanos_since(origin);
    assert!((1_000_000_000..60_000_000_000).contains(&n), "{n}");
    assert_eq!(
        SystemClock.nanos_since(Instant::now() + Duration::from_secs(5)),
        0
    );
}
