//! `Limiter::set_capacity`: grow hands permits to waiters first, shrink absorbs returning
//! permits, 0 is a passthrough, and no permit is ever lost or invented.
#![cfg(not(loom))]

use std::future::Future;
use std::time::Duration;

use fairgate::limit::{Limiter, Mode};

async fn bounded<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .expect("test exceeded its time bound")
}

/// Asserts the limiter is at rest with capacity `n`: nothing out, nothing owed, and exactly
/// `n` permits can be taken.
fn assert_at_rest(limiter: &Limiter, n: usize) {
    assert_eq!((limiter.in_flight(), limiter.waiting()), (0, 0));
    assert_eq!(limiter.__debt(), 0, "debt left over");
    assert_eq!(limiter.__total_permits(), n, "permits leaked or invented");
    let permits: Vec<_> = (0..n).map(|_| limiter.try_acquire().unwrap()).collect();
    assert!(limiter.try_acquire().is_err());
    drop(permits);
}

#[tokio::test]
async fn grow_hands_new_permits_to_waiters_first() {
    bounded(async {
        let limiter = Limiter::builder("grow").capacity(1).build().unwrap();
        let held = limiter.acquire().await.unwrap();
        let mut w: Vec<_> = (0..3).map(|_| Box::pin(limiter.acquire())).collect();
        for f in &mut w {
            assert!(futures::poll!(f).is_pending());
        }
        limiter.set_capacity(3).unwrap();
        assert_eq!(limiter.capacity(), 3);
        // The two new permits went to the two oldest waiters; a newcomer cannot barge.
        assert!(limiter.try_acquire().is_err());
        let a = (&mut w[0]).await.unwrap();
        let b = (&mut w[1]).await.unwrap();
        assert!(futures::poll!(&mut w[2]).is_pending());
        drop(held);
        let c = (&mut w[2]).await.unwrap();
        assert_eq!(limiter.in_flight(), 3);
        drop((a, b, c, w));
        assert_at_rest(&limiter, 3);
    })
    .await;
}

#[tokio::test]
async fn shrink_below_in_flight_admits_nobody_until_in_flight_falls_under_it() {
    bounded(async {
        let limiter = Limiter::builder("shrink").capacity(3).build().unwrap();
        let mut held: Vec<_> = (0..3).map(|_| limiter.try_acquire().unwrap()).collect();
        limiter.set_capacity(1).unwrap();
        assert_eq!(limiter.capacity(), 1);
        let mut waiter = Box::pin(limiter.acquire());
        assert!(futures::poll!(&mut waiter).is_pending());
        held.pop();
        assert_eq!(limiter.in_flight(), 2);
        assert!(
            futures::poll!(&mut waiter).is_pending(),
            "admitted at in_flight 2 > 1"
        );
        held.pop();
        assert_eq!(limiter.in_flight(), 1);
        assert!(
            futures::poll!(&mut waiter).is_pending(),
            "admitted at in_flight 1 = 1"
        );
        held.pop();
        let permit = waiter.await.unwrap();
        assert_eq!(limiter.in_flight(), 1);
        assert!(limiter.try_acquire().is_err());
        drop(permit);
        assert_at_rest(&limiter, 1);
    })
    .await;
}

#[tokio::test]
async fn shrink_of_free_permits_takes_effect_at_once() {
    bounded(async {
        let limiter = Limiter::builder("s").capacity(5).build().unwrap();
        let a = limiter.try_acquire().unwrap();
        limiter.set_capacity(2).unwrap();
        assert_eq!(limiter.__debt(), 0);
        let b = limiter.try_acquire().unwrap();
        assert!(limiter.try_acquire().is_err());
        drop((a, b));
        assert_at_rest(&limiter, 2);
    })
    .await;
}

#[tokio::test]
async fn zero_n_zero_n_with_work_in_flight() {
    bounded(async {
        let limiter = Limiter::builder("zn").capacity(2).build().unwrap();
        let mut held: Vec<_> = (0..2).map(|_| limiter.try_acquire().unwrap()).collect();
        let mut w1 = Box::pin(limiter.acquire());
        let mut w2 = Box::pin(limiter.acquire());
        assert!(futures::poll!(&mut w1).is_pending());
        assert!(futures::poll!(&mut w2).is_pending());

        // 0: passthrough. Queued waiters are admitted, newcomers never wait.
        limiter.set_capacity(0).unwrap();
        assert_eq!(limiter.capacity(), 0);
        held.push(w1.await.unwrap());
        held.push(w2.await.unwrap());
        for _ in 0..10 {
            held.push(limiter.acquire().await.unwrap());
        }
        assert_eq!((limiter.in_flight(), limiter.waiting()), (14, 0));

        // n: limits again, counting the 14 in flight against 3.
        limiter.set_capacity(3).unwrap();
        assert!(limiter.try_acquire().is_err());
        let mut w3 = Box::pin(limiter.acquire());
        assert!(futures::poll!(&mut w3).is_pending());
        held.truncate(3);
        assert_eq!(limiter.in_flight(), 3);
        assert!(futures::poll!(&mut w3).is_pending());
        held.pop();
        held.push(w3.await.unwrap());
        assert_eq!(limiter.in_flight(), 3);

        // 0 again with work in flight, then n again.
        limiter.set_capacity(0).unwrap();
        for _ in 0..5 {
            held.push(limiter.try_acquire().unwrap());
        }
        assert_eq!(limiter.in_flight(), 8);
        limiter.set_capacity(2).unwrap();
        assert!(limiter.try_acquire().is_err());
        drop(held);
        assert_at_rest(&limiter, 2);
    })
    .await;
}

#[tokio::test]
async fn a_cancelled_waiter_granted_before_a_shrink_pays_the_debt() {
    bounded(async {
        let limiter = Limiter::builder("salvage").capacity(2).build().unwrap();
        let p1 = limiter.try_acquire().unwrap();
        let p2 = limiter.try_acquire().unwrap();
        let mut waiter = Box::pin(limiter.acquire());
        assert!(futures::poll!(&mut waiter).is_pending());
        drop(p1); // handed to the waiter, which is not polled again
        limiter.set_capacity(1).unwrap(); // p2 and the waiter's permit out: debt 1
        assert_eq!(limiter.__debt(), 1);
        drop(waiter); // its permit pays the debt instead of becoming free
        assert_eq!(limiter.__debt(), 0);
        assert!(limiter.try_acquire().is_err(), "admitted above capacity 1");
        drop(p2);
        assert_at_rest(&limiter, 1);
    })
    .await;
}

#[tokio::test]
async fn soft_limiters_only_report_the_new_capacity() {
    bounded(async {
        let limiter = Limiter::builder("soft")
            .capacity(2)
            .mode(Mode::Soft)
            .build()
            .unwrap();
        let held: Vec<_> = (0..5).map(|_| limiter.try_acquire().unwrap()).collect();
        limiter.set_capacity(1).unwrap();
        assert_eq!(limiter.capacity(), 1);
        assert!(limiter.try_acquire().is_ok());
        limiter.set_capacity(0).unwrap();
        assert_eq!(limiter.snapshot().capacity, 0);
        drop(held);
        assert_eq!(limiter.in_flight(), 0);
    })
    .await;
}

/// xorshift: deterministic "random" choices without a dependency.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_resizes_and_acquires_end_exact() {
    bounded(async {
        let limiter = Limiter::builder("stress").capacity(2).build().unwrap();
        let mut tasks = Vec::new();
        for t in 0..8u64 {
            let l = limiter.clone();
            tasks.push(tokio::spawn(async move {
                let mut seed = 0x2545_F491_4F6C_DD1D ^ (t + 1);
                for _ in 0..200 {
                    match next(&mut seed) % 4 {
                        0 => l.set_capacity((next(&mut seed) % 5) as usize).unwrap(),
                        1 => drop(l.try_acquire()),
                        _ => {
                            let acquire = l.acquire();
                            if let Ok(Ok(p)) =
                                tokio::time::timeout(Duration::from_micros(200), acquire).await
                            {
                                tokio::task::yield_now().await;
                                drop(p);
                            }
                        }
                    }
                }
            }));
        }
        // Keep the limiter from getting stuck at a small capacity for long.
        for t in tasks {
            t.await.unwrap();
        }
        limiter.set_capacity(4).unwrap();
        assert_at_rest(&limiter, 4);
    })
    .await;
}
