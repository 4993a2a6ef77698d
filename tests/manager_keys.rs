//! `fairgate::limit::LimiterManager` on its own (no runtime): the config provider, lookup by
//! configuration equality, update outcomes, draining reports, removal, least-recently-used
//! idle eviction, typed errors, and concurrent lookups.
#![cfg(not(loom))]

use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier};
use std::task::Poll;

use fairgate::limit::{
    KeyState, LimiterConfig, LimiterManager, ManagerError, Mode, RejectReason, Update,
};
use futures::{executor::block_on, poll};

fn config(capacity: usize) -> LimiterConfig {
    LimiterConfig::builder("key")
        .capacity(capacity)
        .config()
        .unwrap()
}

fn states(manager: &LimiterManager<u32>) -> Vec<(u32, KeyState, usize)> {
    let mut out: Vec<_> = manager
        .snapshot()
        .into_iter()
        .map(|s| (s.key, s.state, s.limiter.in_flight))
        .collect();
    out.sort_by_key(|s| (s.0, s.1 == KeyState::Draining, s.2));
    out
}

#[test]
fn the_provider_runs_once_per_key_and_limiters_are_cached() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let manager = LimiterManager::new("m", move |key: &u32| {
        c.fetch_add(1, SeqCst);
        config(*key as usize)
    });
    let a = manager.limiter(&3).unwrap();
    for _ in 0..10 {
        assert!(manager.limiter(&3).unwrap().same_limiter(&a));
    }
    assert_eq!(a.capacity(), 3);
    assert_eq!(manager.limiter(&5).unwrap().capacity(), 5);
    assert_eq!(calls.load(SeqCst), 2);
    assert_eq!(manager.config(&3), Some(config(3)));
}

#[test]
fn limiter_with_looks_up_by_configuration_equality() {
    let manager = LimiterManager::new("m", |_: &u32| config(1));
    let four = config(4);
    let a = manager.limiter_with(&1, &four).unwrap();
    assert!(manager.limiter_with(&1, &four).unwrap().same_limiter(&a));
    // A capacity-only change resizes in place.
    let b = manager.limiter_with(&1, &config(6)).unwrap();
    assert!(b.same_limiter(&a));
    assert_eq!(a.capacity(), 6);
    // A mode change replaces it.
    let soft = LimiterConfig::builder("key")
        .capacity(6)
        .mode(Mode::Soft)
        .config()
        .unwrap();
    let c = manager.limiter_with(&1, &soft).unwrap();
    assert!(!c.same_limiter(&a));
    assert_eq!(c.mode(), Mode::Soft);
}

#[test]
fn update_reports_what_it_did() {
    let manager = LimiterManager::new("m", |_: &u32| config(1));
    assert_eq!(manager.update(1, config(2)).unwrap(), Update::Created);
    assert_eq!(manager.update(1, config(2)).unwrap(), Update::Unchanged);
    assert_eq!(
        manager.update(1, config(3)).unwrap(),
        Update::Resized { from: 2, to: 3 }
    );
    let renamed = LimiterConfig::builder("other")
        .capacity(3)
        .config()
        .unwrap();
    assert_eq!(manager.update(1, renamed).unwrap(), Update::Replaced);
    assert_eq!(manager.limiter(&1).unwrap().name(), "other");
    // To and from 0 (passthrough) always replaces.
    assert_eq!(manager.update(2, config(0)).unwrap(), Update::Created);
    assert_eq!(manager.update(2, config(5)).unwrap(), Update::Replaced);
    assert_eq!(manager.update(2, config(0)).unwrap(), Update::Replaced);
}

#[test]
fn a_replaced_limiter_is_reported_draining_until_idle() {
    let manager = LimiterManager::new("m", |_: &u32| config(2));
    let old = manager.limiter(&1).unwrap();
    let permit = old.try_acquire().unwrap();
    let queued = LimiterConfig::builder("key")
        .capacity(2)
        .max_queue(Some(1))
        .config()
        .unwrap();
    assert_eq!(manager.update(1, queued).unwrap(), Update::Replaced);
    assert_eq!(
        states(&manager),
        [(1, KeyState::Active, 0), (1, KeyState::Draining, 1)]
    );
    // An idle replaced limiter is never reported.
    assert_eq!(manager.update(2, config(1)).unwrap(), Update::Created);
    assert_eq!(manager.update(2, config(0)).unwrap(), Update::Replaced);
    assert_eq!(states(&manager).len(), 3);
    drop(permit);
    assert_eq!(old.in_flight(), 0);
    assert_eq!(
        states(&manager),
        [(1, KeyState::Active, 0), (2, KeyState::Active, 0)]
    );
}

#[test]
fn remove_drains_a_busy_limiter_and_forgets_the_key() {
    let manager = LimiterManager::new("m", |_: &u32| config(1));
    let limiter = manager.limiter(&1).unwrap();
    let permit = limiter.try_acquire().unwrap();
    assert!(manager.remove(&1).unwrap().same_limiter(&limiter));
    assert!(manager.get(&1).is_none());
    assert_eq!(states(&manager), [(1, KeyState::Draining, 1)]);
    // The key starts afresh, independent of the draining limiter.
    let fresh = manager.limiter(&1).unwrap();
    assert!(!fresh.same_limiter(&limiter));
    assert!(fresh.try_acquire().is_ok());
    drop(permit);
    assert_eq!(states(&manager), [(1, KeyState::Active, 0)]);
    assert!(manager.remove(&9).is_none());
}

#[test]
fn eviction_takes_the_least_recently_used_idle_key() {
    let manager = LimiterManager::builder("m", |_: &u32| config(1))
        .max_keys(3)
        .build()
        .unwrap();
    for key in [1, 2, 3] {
        manager.limiter(&key).unwrap();
    }
    manager.limiter(&1).unwrap(); // 1 is used again: 2 is now the oldest
    manager.limiter(&4).unwrap();
    let mut keys: Vec<_> = manager.snapshot().into_iter().map(|s| s.key).collect();
    keys.sort();
    assert_eq!(keys, [1, 3, 4]);
    // A busy key is skipped even if it is among the oldest (recency counts in key
    // creations: 1 and 3 were last used in the same one).
    let _busy = manager.limiter(&3).unwrap().try_acquire().unwrap();
    manager.limiter(&5).unwrap();
    let mut keys: Vec<_> = manager.snapshot().into_iter().map(|s| s.key).collect();
    keys.sort();
    assert_eq!(keys, [3, 4, 5]);
}

#[test]
fn a_full_manager_refuses_new_keys_with_a_typed_error_and_changes_nothing() {
    let manager = LimiterManager::builder("m", |_: &u32| config(1))
        .max_keys(2)
        .build()
        .unwrap();
    let a = manager.limiter(&1).unwrap().try_acquire().unwrap();
    let b = manager.limiter(&2).unwrap().try_acquire().unwrap();
    let before = manager.snapshot().len();
    let err = manager.limiter(&3).unwrap_err();
    assert_eq!(err, ManagerError::TooManyKeys { max_keys: 2 });
    assert!(err.to_string().contains("too many keys"));
    assert_eq!(manager.update(3, config(1)), Err(err.clone()));
    assert_eq!(
        err.to_rejected("m".into()).reason(),
        RejectReason::TooManyKeys
    );
    assert_eq!(manager.snapshot().len(), before);
    assert!(manager.get(&3).is_none());
    // Updating a present key needs no room.
    assert_eq!(
        manager.update(1, config(2)).unwrap(),
        Update::Resized { from: 1, to: 2 }
    );
    drop((a, b));
    assert!(manager.limiter(&3).is_ok());
}

#[test]
fn zero_max_keys_is_a_typed_error() {
    let err = LimiterManager::builder("m", |_: &u32| config(1))
        .max_keys(0)
        .build()
        .unwrap_err();
    assert_eq!(err, ManagerError::ZeroMaxKeys);
}

#[test]
fn switching_to_passthrough_or_soft_admits_the_old_limiters_waiters() {
    for stop in [
        config(0),
        LimiterConfig::builder("key")
            .capacity(1)
            .mode(Mode::Soft)
            .config()
            .unwrap(),
    ] {
        let manager = LimiterManager::new("m", |_: &u32| config(1));
        let old = manager.limiter(&1).unwrap();
        let held = old.try_acquire().unwrap();
        block_on(async {
            let mut waiter = pin!(old.acquire());
            assert!(poll!(waiter.as_mut()).is_pending());
            assert_eq!(old.waiting(), 1);
            assert_eq!(manager.update(1, stop.clone()).unwrap(), Update::Replaced);
            // The key no longer limits, so its old queue is let through at once.
            let Poll::Ready(Ok(permit)) = poll!(waiter.as_mut()) else {
                panic!("the old limiter's waiter was not admitted")
            };
            assert_eq!((old.in_flight(), old.waiting()), (2, 0));
            drop(permit);
        });
        drop(held);
        assert_eq!(states(&manager), [(1, KeyState::Active, 0)]);
    }
}

#[test]
fn a_change_to_another_hard_config_lets_the_old_queue_drain_in_order() {
    let manager = LimiterManager::new("m", |_: &u32| config(1));
    let old = manager.limiter(&1).unwrap();
    let held = old.try_acquire().unwrap();
    block_on(async {
        let mut waiter = pin!(old.acquire());
        assert!(poll!(waiter.as_mut()).is_pending());
        let renamed = LimiterConfig::builder("b").capacity(1).config().unwrap();
        assert_eq!(manager.update(1, renamed).unwrap(), Update::Replaced);
        // Still limited by the old capacity: the waiter gets the returning permit.
        assert!(poll!(waiter.as_mut()).is_pending());
        drop(held);
        assert!(matches!(poll!(waiter.as_mut()), Poll::Ready(Ok(_))));
    });
    assert_eq!(states(&manager), [(1, KeyState::Active, 0)]);
}

#[test]
fn concurrent_lookups_of_a_new_key_create_one_limiter() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let manager = LimiterManager::new("m", move |_: &u32| {
        c.fetch_add(1, SeqCst);
        config(1)
    });
    let barrier = Arc::new(Barrier::new(4));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (m, b) = (manager.clone(), barrier.clone());
            std::thread::spawn(move || {
                b.wait();
                (0..100).map(|k| m.limiter(&k).unwrap()).collect::<Vec<_>>()
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for k in 0..100 {
        for r in &results[1..] {
            assert!(r[k].same_limiter(&results[0][k]));
        }
    }
    assert_eq!(manager.len(), 100);
    // The provider may run more than once for a key raced by several threads (it runs
    // outside the lock), but only one limiter per key is ever installed.
    assert!(calls.load(SeqCst) >= 100);
}
