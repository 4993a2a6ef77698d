//! # fairgate
//!
//! A concurrency limiter for async Rust. At the core, a strictly fair, lock-free, `no_std`
//! async semaphore with direct permit handoff ([`Semaphore`]); on top of it, behind features,
//! admission control (`limit`: bounded FIFO queue, queue timeout, soft/hard mode, per-key
//! limiters, metrics), adapters for tower, http/hyper and tonic that hold a permit to the end
//! of the response body, a fleet-wide cap on Redis (`fleet`), and stale-cache request
//! coalescing (`singleflight`). Each layer uses only the public API of the one below.
//!
//! The semaphore:
//!
//! * **Strict FIFO.** A released permit is handed straight to the oldest waiter; while anyone
//!   waits, newcomers (including [`Semaphore::try_acquire`]) see no free permits.
//! * **Lock-free.** Acquire, try-acquire, release, adding permits and closing never take a
//!   lock and never wait for another thread. Waiting allocates nothing: the waiter node lives
//!   inside the [`Acquire`] future.
//! * **Cancel-safe.** Dropping an acquire future at any point loses no permits and strands no
//!   other waiter.
//! * **Once-only permits.** A [`Permit`] releases exactly once, when dropped.
//! * **Runtime-agnostic and `no_std`.** The core needs neither `std` nor `alloc`.
//!
//! # Example
//! ```
//! use std::sync::Arc;
//! use fairgate::Semaphore;
//!
//! # futures::executor::block_on(async {
//! let sem = Arc::new(Semaphore::new(3));
//! let mut tasks = Vec::new();
//! for i in 0..10 {
//!     let sem = sem.clone();
//!     tasks.push(async move {
//!         let _permit = sem.acquire().await.unwrap(); // at most 3 run at once
//!         i * 2
//!     });
//! }
//! let results = futures::future::join_all(tasks).await;
//! assert_eq!(results.iter().sum::<i32>(), 90);
//! # });
//! ```
//!
//! # Features
//! | feature | default | adds |
//! |---|---|---|
//! | `alloc` | via `std` | owned permits and futures (`Arc<Semaphore>`), [`PollSemaphore`] |
//! | `std` | yes | `std::error::Error` impls, blocking acquire |
//! | `limit` | no | `limit`: `Limiter`, `LimiterManager`, `Rejected`, `Observer` (no runtime) |
//! | `timeout` | no | queue timeouts and caller deadlines for `limit` (tokio's timer) |
//! | `tower` | no | `tower`: `ConcurrencyLimitLayer`, `KeyedLimitLayer` |
//! | `http` | no | `http`: server/client layers holding the permit to the end of the body |
//! | `hyper` | no | `hyper`: a server with an accept-loop connection limiter |
//! | `tonic` | no | `tonic`: gRPC client/server layers with `Status` mapping and deadlines |
//! | `redis` | no | `fleet`: a fleet-wide cap on Redis behind the local fair queue |
//! | `metrics` | no | `limit::MetricsObserver` through the `metrics` facade |
//! | `tracing` | no | a `tracing` event per rejection |
//! | `singleflight` | no | the stale-cache request-coalescing module |
//!
//! # Loom
//! A crate built with `--cfg loom` gets a fairgate whose atomics and cells are loom's, so
//! downstream loom models can use it directly.
#![no_std]
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(any(feature = "std", test, loom))]
extern crate std;

// The primitive: no_std, no alloc in its core. Everything else builds on its public API.
mod semaphore;
// Atomics and cells: core's, loom's or shuttle's, for every module of the crate.
mod sync;

#[cfg(feature = "singleflight")]
pub mod singleflight;

// Admission control, built only on the semaphore's public API.
#[cfg(feature = "limit")]
pub mod limit;
// Adapters, built only on `limit`.
#[cfg(feature = "tower")]
pub mod tower;

#[cfg(feature = "http")]
pub mod http;

#[cfg(feature = "hyper")]
pub mod hyper;

#[cfg(feature = "redis")]
pub mod fleet;
#[cfg(feature = "tonic")]
pub mod tonic;

/// The README's examples run as doc tests (they use the admission-control API with timeouts).
#[cfg(all(doctest, feature = "timeout"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub use semaphore::acquire::Acquire;
#[cfg(feature = "alloc")]
pub use semaphore::acquire::AcquireOwned;
pub use semaphore::error::{AcquireError, AddPermitsError, TryAcquireError};
#[cfg(feature = "alloc")]
pub use semaphore::permit::OwnedPermit;
pub use semaphore::permit::Permit;
#[cfg(feature = "alloc")]
pub use semaphore::poll::PollSemaphore;
pub use semaphore::Semaphore;
