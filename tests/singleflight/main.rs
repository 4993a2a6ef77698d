//! Tests for `fairgate::singleflight`: the research checklist T1–T24, the
//! pinned behaviours of the shared flight, the decision table, eviction and
//! the public types, `Group` tests and multi-thread stress.
//!
//! Rig (`rig.rs`): a manual clock and a gated loader whose every call waits
//! on a oneshot the test controls. "Immediately" is asserted as "ready on the
//! first poll" (`now_or_never`), never with wall-clock timing. Most tests run
//! on `futures::executor`; every test is bounded in time (`bounded` or
//! `tokio::time::timeout`).
#![cfg(not(loom))]

mod api;
mod cancel;
mod coalescing;
mod decisions;
mod eviction;
mod flight;
mod group;
mod refresh;
mod rig;
mod stale;
