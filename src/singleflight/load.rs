//! Loads: starting a backend call as a shared flight, storing its outcome,
//! and turning it into each waiter's result.

use std::boxed::Box;
use std::hash::Hash;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::cache::Inner;
use super::clock::saturating_nanos as nanos;
use super::flight::{lock, Abort, BoxFut, Flight, Waiter};
use super::hit::{CacheError, GetResult, Hit, Source, StaleReason};
use super::loader::Loader;
use super::shard::{Entry, Out};
use super::stats::bump;
use super::time::{far_future, Nanos, NEVER};

impl<K, V, L> Inner<K, V, L>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Send + Sync + 'static,
    L: Loader<K, V>,
{
    /// Installs a new flight in `e` (attempt time recorded now) and returns
    /// the initiator's waiter.
    pub(super) fn start_flight(
        self: &Arc<Self>,
        e: &mut Entry<V, L::Error>,
        key: &K,
        now: Nanos,
        with_previous: bool,
    ) -> Waiter<Out<V, L::Error>> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let generation = e.generation;
        e.next_attempt = self
            .deadline(now, self.policy.min_refresh_interval)
            .unwrap_or(NEVER);
        bump(&self.counters.loads_started);
        self.counters.in_flight.fetch_add(1, Ordering::Relaxed);

        let previous = if with_previous { e.value.clone() } else { None };
        let inner = Arc::clone(self);
        let k = key.clone();
        let fut: BoxFut<Out<V, L::Error>> = Box::pin(async move {
            // Never closed, so `acquire_owned` cannot fail; `ok()` rather
            // than a panic path all the same.
            let permit = match &inner.load_permits {
                Some(sem) => Arc::clone(sem).acquire_owned().await.ok(),
                None => None,
            };
            let res = inner.loader.load(&k, previous).await;
            drop(permit);
            inner.finish(&k, id, generation, now, res)
        });
        let weak: Weak<Self> = Arc::downgrade(self);
        let k = key.clone();
        let hook = Box::new(move |abort: Abort| {
            if let Some(inner) = weak.upgrade() {
                inner.aborted(&k, id, generation, now, abort);
            }
        });
        let flight = Flight::new(id, fut, hook);
        let waiter = flight.join().expect("a new flight is never cancelled");
        e.flight = Some(flight);
        waiter
    }

    /// `now + d` as a deadline. `None` exactly where the same sum on
    /// `Instant`s overflows (spans near `Duration::MAX`), which is what the
    /// callers' rules were written against; a sum past `u64::MAX` ns that
    /// `Instant` could still represent saturates (it never arrives either way).
    pub(super) fn deadline(&self, now: Nanos, d: Duration) -> Option<Nanos> {
        self.epoch
            .checked_add(Duration::from_nanos(now))?
            .checked_add(d)?;
        Some(now.saturating_add(nanos(d)))
    }

    pub(super) fn record_failure(
        &self,
        e: &mut Entry<V, L::Error>,
        started: Nanos,
        now: Nanos,
        err: Option<Arc<L::Error>>,
    ) {
        let p = &self.policy;
        e.failures = e.failures.saturating_add(1);
        e.last_error = err;
        let backoff = p.failure_backoff.delay(e.failures);
        let by_interval = self.deadline(started, p.min_refresh_interval);
        let by_backoff = self.deadline(now, backoff);
        e.next_attempt = match (by_interval, by_backoff) {
            (Some(a), Some(b)) => a.max(b),
            _ => far_future(now),
        };
        e.negative_until = p.negative_ttl.map_or(NEVER, |d| {
            self.deadline(now, d.max(backoff))
                .unwrap_or_else(|| far_future(now))
        });
    }

    pub(super) fn finish(
        &self,
        key: &K,
        id: u64,
        generation: u64,
        started: Nanos,
        res: Result<V, L::Error>,
    ) -> Out<V, L::Error> {
        let c = &self.counters;
        let now = self.now();
        let (shard, at) = self.locate(key);
        let mut shard = lock(shard);
        c.in_flight.fetch_sub(1, Ordering::Relaxed);
        let entry = shard.map.get_mut(at.view());
        let out = match res {
            Ok(v) => {
                bump(&c.loads_succeeded);
                let v = Arc::new(v);
                if let Some(e) = entry {
                    if e.flight.as_ref().is_some_and(|f| f.id() == id) {
                        e.flight = None;
                    }
                    if e.generation == generation {
                        e.value = Some(Arc::clone(&v));
                        e.stored_at = now;
                        e.fresh_for = self.fresh_for(key, id);
                        e.marked_stale = false;
                        e.failures = 0;
                        e.last_error = None;
                        e.negative_until = NEVER;
                    } else {
                        bump(&c.loads_discarded);
                    }
                } else {
                    bump(&c.loads_discarded);
                }
                Ok((v, now))
            }
            Err(err) => {
                bump(&c.loads_failed);
                let err = Arc::new(err);
                if let Some(e) = entry {
                    if e.flight.as_ref().is_some_and(|f| f.id() == id) {
                        e.flight = None;
                    }
                    if e.generation == generation {
                        self.record_failure(e, started, now, Some(Arc::clone(&err)));
                    }
                }
                Err(err)
            }
        };
        let cap = shard.cap;
        shard.evict_to(cap, c);
        out
    }

    pub(super) fn aborted(&self, key: &K, id: u64, generation: u64, started: Nanos, abort: Abort) {
        let c = &self.counters;
        let now = self.now();
        let (shard, at) = self.locate(key);
        let mut shard = lock(shard);
        c.in_flight.fetch_sub(1, Ordering::Relaxed);
        match abort {
            Abort::Cancelled => bump(&c.loads_abandoned),
            Abort::Panicked => bump(&c.loads_panicked),
        }
        let Some(e) = shard.map.get_mut(at.view()) else {
            return;
        };
        if e.flight.as_ref().is_some_and(|f| f.id() == id) {
            e.flight = None;
        }
        if matches!(abort, Abort::Panicked) && e.generation == generation {
            self.record_failure(e, started, now, None);
        }
        if e.removable(now) {
            shard.map.remove(at.view());
        }
        let cap = shard.cap;
        shard.evict_to(cap, c);
    }

    pub(super) fn settle(
        &self,
        out: Result<Out<V, L::Error>, Arc<str>>,
        leader: bool,
        fallback: Option<(Arc<V>, Nanos)>,
    ) -> GetResult<V, L::Error> {
        let c = &self.counters;
        let now = self.now();
        let err = match out {
            Ok(Ok((value, at))) => {
                bump(if leader { &c.loaded } else { &c.joined });
                let source = if leader {
                    Source::Loaded
                } else {
                    Source::Joined
                };
                let age = Duration::from_nanos(now.saturating_sub(at));
                return Ok(Hit::new(value, source, age, None));
            }
            Ok(Err(e)) => CacheError::Load(e),
            Err(msg) => CacheError::LoaderPanicked(msg),
        };
        if let Some((value, at)) = fallback {
            let age = now.saturating_sub(at);
            if age < self.limits.max_stale {
                bump(&c.stale_load_failed);
                let error = match err {
                    CacheError::Load(e) => Some(e),
                    _ => None,
                };
                let source = Source::Stale(StaleReason::LoadFailed);
                return Ok(Hit::new(value, source, Duration::from_nanos(age), error));
            }
        }
        Err(err)
    }
}
