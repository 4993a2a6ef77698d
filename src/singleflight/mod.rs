//! Stale-cache singleflight: request coalescing that never makes a caller
//! wait on a slow backend when usable stale data exists.
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
//! Both are runtime-agnostic: the only dependency is `std`. Time comes from an
//! injectable [`Clock`]; detached work goes through an optional [`Spawn`].
//! Without a spawner, a load is a shared future that *any* of its waiters can
//! drive, so a caller that is dropped or simply never polled again cannot
//! strand the others. Loader panics become [`CacheError::LoaderPanicked`] for
//! every waiter and never poison the key.
//!
//! ```
//! use fairgate::singleflight::{ManualClock, Policy, Source, StaleCache, StaleReason};
//! use futures::FutureExt;
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::time::Duration;
//!
//! let calls = Arc::new(AtomicUsize::new(0));
//! let c = calls.clone();
//! let clock = ManualClock::new();
//! let cache = StaleCache::builder(move |_key: &&str, _prev: Option<Arc<u32>>| {
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
