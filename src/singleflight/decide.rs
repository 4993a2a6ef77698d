//! The decision table: what a `get` does with the entry it finds.

use std::boxed::Box;
use std::hash::Hash;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use super::cache::Inner;
use super::flight::{lock, Waiter};
use super::get::{Decision, Wait};
use super::hash::{HashedKey, Lookup};
use super::hit::{CacheError, GetResult, Hit, Source, StaleReason};
use super::loader::Loader;
use super::shard::{Entry, Out, Shard};
use super::time::Nanos;

impl<K, V, L> Inner<K, V, L>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Send + Sync + 'static,
    L: Loader<K, V>,
{
    /// The first poll of a [`Get`]: serves a hit (the rows of the decision
    /// table that only read the entry) inline, and leaves everything else
    /// to [`decide_slow`](Self::decide_slow).
    ///
    /// The hit is built directly in the returned `Poll`, which is the poll's
    /// own result: nothing is moved through an intermediate enum, and the
    /// slow path's code stays out of line.
    #[inline]
    pub(super) fn decide(
        self: &Arc<Self>,
        key: &K,
        wait: &mut Option<Box<Wait<V, L::Error>>>,
        cx: &mut Context<'_>,
    ) -> Poll<GetResult<V, L::Error>> {
        let now = self.now();
        let (shard, at) = self.locate(key);
        let mut guard = lock(shard);
        let shard = &mut *guard;
        if let Some(e) = shard.map.get_mut(at.view()) {
            e.referenced = true;
            if e.value.is_some() {
                let age = now.saturating_sub(e.stored_at);
                let h = &mut shard.hits;
                // Only the LoadFailed row clones an error (an `Arc`).
                let (source, counter, error) = if !e.marked_stale && age < e.fresh_for {
                    (Source::Fresh, &mut h.fresh, None)
                } else if age >= self.limits.max_stale {
                    return self.decide_slow(guard, at, now, wait, cx);
                } else if e.flight.is_some() && e.live_flight().is_some() {
                    (
                        Source::Stale(StaleReason::Revalidating),
                        &mut h.stale_revalidating,
                        None,
                    )
                } else if now < e.next_attempt {
                    // Inside the retry window: say why no refresh starts.
                    if e.failures > 0 {
                        (
                            Source::Stale(StaleReason::LoadFailed),
                            &mut h.stale_load_failed,
                            e.last_error.clone(),
                        )
                    } else {
                        (
                            Source::Stale(StaleReason::Throttled),
                            &mut h.stale_throttled,
                            None,
                        )
                    }
                } else {
                    return self.decide_slow(guard, at, now, wait, cx);
                };
                if let Some(v) = &e.value {
                    *counter += 1;
                    return Poll::Ready(Ok(Hit::new(
                        Arc::clone(v),
                        source,
                        Duration::from_nanos(age),
                        error,
                    )));
                }
            }
        }
        self.decide_slow(guard, at, now, wait, cx)
    }

    /// Everything but a hit: runs the whole decision table under the lock
    /// `decide` already holds, releases it, hands a background waiter (if the
    /// table asked for one) to the spawner, and polls this caller's waiter.
    #[inline(never)]
    pub(super) fn decide_slow(
        self: &Arc<Self>,
        mut guard: MutexGuard<'_, Shard<K, V, L::Error>>,
        at: Lookup<'_, K>,
        now: Nanos,
        wait: &mut Option<Box<Wait<V, L::Error>>>,
        cx: &mut Context<'_>,
    ) -> Poll<GetResult<V, L::Error>> {
        let mut bg = None;
        let decision = self.decide_locked(&mut guard, at, now, &mut bg);
        drop(guard);
        if let Some(bg) = bg {
            self.spawn_waiter(bg);
        }
        match decision {
            Decision::Ready(r) => Poll::Ready(r),
            Decision::Wait {
                waiter,
                leader,
                fallback,
            } => {
                let mut w = Box::new(Wait {
                    waiter,
                    leader,
                    fallback,
                });
                let r = self.poll_wait(&mut w, cx);
                if r.is_pending() {
                    *wait = Some(w);
                }
                r
            }
        }
    }

    /// Runs the decision table under the shard lock. `bg` receives a waiter
    /// to hand to the spawner once the lock is released.
    pub(super) fn decide_locked(
        self: &Arc<Self>,
        shard: &mut Shard<K, V, L::Error>,
        at: Lookup<'_, K>,
        now: Nanos,
        bg: &mut Option<Waiter<Out<V, L::Error>>>,
    ) -> Decision<V, L::Error> {
        let key = at.key;
        let l = &self.limits;
        let c = &self.counters;
        let e = match shard.map.get_mut(at.view()) {
            Some(e) => e,
            None => {
                let generation = self.next_id.fetch_add(1, Ordering::Relaxed);
                let hk = HashedKey::new(at.hash, key.clone());
                let e = shard.insert_new(hk, Entry::empty(now, generation), c);
                let waiter = self.start_flight(e, key, now, false);
                if self.spawner.is_some() {
                    *bg = e.flight.as_ref().and_then(|f| f.join());
                }
                return Decision::wait(waiter, true, None);
            }
        };
        e.referenced = true;
        // `decide` served every hit row under this same lock; a servable
        // value here is stale, has no live refresh, and may be refreshed.
        if let Some(v) = &e.value {
            let age = now.saturating_sub(e.stored_at);
            if age < l.max_stale {
                let v = Arc::clone(v);
                let stored_at = e.stored_at;
                let waiter = self.start_flight(e, key, now, true);
                let non_blocking = age < e.fresh_for.saturating_add(l.stale_while_revalidate);
                if self.spawner.is_some() {
                    *bg = e.flight.as_ref().and_then(|f| f.join());
                    if non_blocking {
                        drop(waiter);
                        shard.hits.stale_revalidating += 1;
                        return Decision::Ready(Ok(Hit::new(
                            v,
                            Source::Stale(StaleReason::Revalidating),
                            Duration::from_nanos(age),
                            None,
                        )));
                    }
                }
                return Decision::wait(waiter, true, Some((v, stored_at)));
            }
        }
        // Nothing servable.
        if let Some(f) = e.live_flight() {
            if let Some(waiter) = f.join() {
                return Decision::wait(waiter, false, None);
            }
        }
        if now < e.negative_until {
            shard.hits.throttled_errors += 1;
            return Decision::Ready(Err(CacheError::Throttled {
                retry_in: Duration::from_nanos(e.negative_until - now),
                last_error: e.last_error.clone(),
            }));
        }
        let waiter = self.start_flight(e, key, now, false);
        if self.spawner.is_some() {
            *bg = e.flight.as_ref().and_then(|f| f.join());
        }
        Decision::wait(waiter, true, None)
    }
}
