//! Counters: the public [`Stats`] snapshot and the two places they are kept.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters for every path through the cache. See [`StaleCache::stats`](super::StaleCache::stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Fresh hits.
    pub fresh: u64,
    /// Stale values served while a refresh was in flight.
    pub stale_revalidating: u64,
    /// Stale values served because a refresh was not yet allowed.
    pub stale_throttled: u64,
    /// Stale values served because the last attempt failed.
    pub stale_load_failed: u64,
    /// Results returned to the caller that started the load.
    pub loaded: u64,
    /// Results returned to callers that joined someone else's load.
    pub joined: u64,
    /// `Throttled` errors returned (negative cache hits).
    pub throttled_errors: u64,
    /// Backend calls started (foreground and background).
    pub loads_started: u64,
    /// Backend calls that returned `Ok`.
    pub loads_succeeded: u64,
    /// Backend calls that returned `Err`.
    pub loads_failed: u64,
    /// Backend calls that panicked.
    pub loads_panicked: u64,
    /// Loads dropped because every waiter went away.
    pub loads_abandoned: u64,
    /// Successful loads not stored because newer data arrived meanwhile.
    pub loads_discarded: u64,
    /// Keys evicted to respect `max_entries`.
    pub evictions: u64,
    /// Loads currently in flight (a gauge, not a counter).
    pub in_flight: u64,
}

/// Counters bumped outside any shard lock (atomics, shared).
#[derive(Default)]
pub(super) struct Counters {
    /// Only the waiting path (`settle`); hits count in [`HitCounts`].
    pub(super) stale_load_failed: AtomicU64,
    pub(super) loaded: AtomicU64,
    pub(super) joined: AtomicU64,
    pub(super) loads_started: AtomicU64,
    pub(super) loads_succeeded: AtomicU64,
    pub(super) loads_failed: AtomicU64,
    pub(super) loads_panicked: AtomicU64,
    pub(super) loads_abandoned: AtomicU64,
    pub(super) loads_discarded: AtomicU64,
    pub(super) evictions: AtomicU64,
    pub(super) in_flight: AtomicU64,
}

/// Counters bumped by the decision table while it holds a shard lock: plain
/// integers in the shard, so a hit costs no extra atomic read-modify-write
/// on a cache line every thread shares. [`StaleCache::stats`] sums them.
#[derive(Default, Clone, Copy)]
pub(super) struct HitCounts {
    pub(super) fresh: u64,
    pub(super) stale_revalidating: u64,
    pub(super) stale_throttled: u64,
    pub(super) stale_load_failed: u64,
    pub(super) throttled_errors: u64,
}

#[inline]
pub(super) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl HitCounts {
    /// Adds `other` (one shard's counts) into `self`.
    pub(super) fn add(&mut self, other: &HitCounts) {
        self.fresh += other.fresh;
        self.stale_revalidating += other.stale_revalidating;
        self.stale_throttled += other.stale_throttled;
        self.stale_load_failed += other.stale_load_failed;
        self.throttled_errors += other.throttled_errors;
    }
}

impl Counters {
    /// The public snapshot: these counters plus the shards' summed `hits`.
    pub(super) fn snapshot(&self, hits: &HitCounts) -> Stats {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            fresh: hits.fresh,
            stale_revalidating: hits.stale_revalidating,
            stale_throttled: hits.stale_throttled,
            stale_load_failed: hits.stale_load_failed + r(&self.stale_load_failed),
            loaded: r(&self.loaded),
            joined: r(&self.joined),
            throttled_errors: hits.throttled_errors,
            loads_started: r(&self.loads_started),
            loads_succeeded: r(&self.loads_succeeded),
            loads_failed: r(&self.loads_failed),
            loads_panicked: r(&self.loads_panicked),
            loads_abandoned: r(&self.loads_abandoned),
            loads_discarded: r(&self.loads_discarded),
            evictions: r(&self.evictions),
            in_flight: r(&self.in_flight),
        }
    }
}
