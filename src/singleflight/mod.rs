//! Stale-cache singleflight: request coalescing, and a cache that serves
//! stale data instead of making callers wait on a slow or failing backend.
//!
//! Enabled by the `singleflight` cargo feature (which implies `std`).
//!
//! * [`StaleCache`] — a per-key cache with a registered [`Loader`], a
//!   [`Policy`] (`ttl`, `stale_while_revalidate`, `max_stale`,
//!   `min_refresh_interval`, failure [`Backoff`], negative caching,
//!   `max_entries`, `max_concurrent_loads`) and a decision table modelled on
//!   RFC 5861 and nginx's `proxy_cache_use_stale updating`: a caller holding
//!   usable stale data never joins a refresh that is already running.
//! * [`Group`] — plain coalescing with no cache (Go's `singleflight.Do`).
//!
//! # Recommended setup: give the cache a spawner
//!
//! With a [`Spawn`] (any `Fn(SpawnedFuture)`, e.g. `tokio::spawn`), loads
//! and refreshes run detached: every caller that holds usable stale data is
//! answered at once, the caller that triggers a refresh included, and a
//! refresh finishes even if every caller has gone away.
//!
//! **Without a spawner** the cache still works on any executor, but refreshes
//! run inside callers' `get`s: the caller that starts a refresh waits for the
//! whole backend call (inside the `stale_while_revalidate` window too), and
//! if that caller gives up (a short deadline, a dropped request) while nobody
//! else waits on the refresh, the refresh is cancelled for everyone.
//!
//! ```
//! use fairgate::singleflight::{Policy, Source, StaleCache, StaleReason};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let cache = StaleCache::from_fn(|service: &String| {
//!     let service = service.clone();
//!     async move {
//!         // The backend call (a registry, a database, an HTTP API).
//!         Ok::<_, std::io::Error>(vec![format!("{service}.internal:8080")])
//!     }
//! })
//! .policy(Policy { ttl: Duration::from_secs(30), ..Policy::default() })
//! .spawner(|f| {
//!     tokio::spawn(f);
//! })
//! .build();
//!
//! let hit = cache.get(&"billing".to_string()).await.unwrap();
//! assert_eq!(hit.source, Source::Loaded);
//! assert_eq!(hit.value[0], "billing.internal:8080");
//! # }
//! ```
//!
//! Both are runtime-agnostic: the only dependency is `std`. Time comes from an
//! injectable [`Clock`] ([`SystemClock`] by default, [`ManualClock`] in
//! tests). Without a spawner, a load is a shared future that *any* of its
//! waiters can drive, so a caller that is dropped or simply never polled again
//! cannot strand the others. Loader panics become
//! [`CacheError::LoaderPanicked`] for every waiter and never poison the key.
//! `max_concurrent_loads` queues loads on the crate's own FIFO
//! [`Semaphore`](crate::Semaphore).
//!
//! The design (decision table, flights, eviction, hit-path costs) is written
//! up in `src/singleflight/DESIGN.md`.
//!
//! Stale-if-error, with a manual clock and no runtime at all:
//!
//! ```
//! use fairgate::singleflight::{ManualClock, Policy, Source, StaleCache, StaleReason};
//! use futures::FutureExt;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! let calls = Arc::new(AtomicUsize::new(0));
//! let c = calls.clone();
//! let clock = ManualClock::new();
//! let cache = StaleCache::from_fn(move |_key: &&str| {
//!     let n = c.fetch_add(1, Ordering::SeqCst) as u32;
//!     async move {
//!         if n == 0 { Ok(7) } else { Err("registry down") }
//!     }
//! })
//! .policy(Policy { ttl: Duration::from_secs(60), ..Policy::default() })
//! .clock(clock.clone())
//! .build();
//!
//! // Cold: this caller loads.
//! let hit = cache.get(&"svc").now_or_never().unwrap().unwrap();
//! assert_eq!(hit.source, Source::Loaded);
//!
//! // Expired, backend failing: the caller that refreshes gets the stale value...
//! clock.advance(Duration::from_secs(61));
//! let hit = cache.get(&"svc").now_or_never().unwrap().unwrap();
//! assert_eq!((*hit.value, hit.source), (7, Source::Stale(StaleReason::LoadFailed)));
//! // ...and so does everyone after it, at once, without another backend call.
//! let hit = cache.get(&"svc").now_or_never().unwrap().unwrap();
//! assert!(hit.is_stale());
//! assert_eq!(hit.error().map(|e| **e), Some("registry down"));
//! assert_eq!(hit.age, Duration::from_secs(61));
//! assert_eq!(calls.load(Ordering::SeqCst), 2);
//! ```

mod builder;
mod cache;
mod clock;
mod decide;
mod flight;
mod get;
mod group;
mod hash;
mod hit;
mod load;
mod loader;
mod policy;
mod shard;
mod stats;
mod time;

pub use builder::Builder;
pub use cache::StaleCache;
pub use clock::{Clock, ManualClock, Spawn, SpawnedFuture, SystemClock};
pub use group::{Group, GroupError};
pub use hit::{CacheError, Hit, Source, StaleReason};
pub use loader::{from_fn, FromFn, Loader};
pub use policy::{Backoff, Policy};
pub use stats::Stats;
