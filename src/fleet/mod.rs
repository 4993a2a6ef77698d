//! A fleet-wide concurrency cap on Redis: lease-based global permits behind the local fair
//! queue (feature `redis`).
//!
//! When one process is not the whole fleet, a per-process cap does not cap what a shared
//! upstream sees. A [`FleetLimiter`] holds one cap across every process that uses the same
//! key on the same Redis.
//!
//! # How it works
//! - A request first waits in the local fair [`Limiter`](crate::limit::Limiter) (FIFO,
//!   bounded queue, queue timeout, typed rejections: unchanged). Only the **head** of each
//!   process's local queue talks to Redis, so Redis sees at most one waiter per process.
//! - A global permit is a **lease**: a member of a sorted set whose score is its expiry,
//!   computed from the Redis server's clock (`TIME`) inside a Lua script. Client clocks play
//!   no part.
//! - Held leases are **renewed** in one batched call per process per interval (default
//!   TTL/3). Dropping the [`FleetPermit`] hands the lease to a background releaser (one
//!   batched call); if the runtime is gone, the TTL reclaims it. A holder that dies gives
//!   its leases back within one TTL.
//! - A lease found gone on renewal is reported **lost** ([`FleetPermit::is_lost`],
//!   [`FleetObserver::on_lease_lost`], [`FleetCounters::leases_lost`]) and never
//!   re-acquired silently.
//! - Every script is **idempotent** by lease id and waiter id: a call with an unknown
//!   outcome (timeout, reset) is retried, or its ids released, without leaking or counting
//!   twice.
//! - Heads wait **FIFO across processes** by ticket, woken by targeted pub/sub messages
//!   ([`FleetBuilder::wake_client`]) with a bounded poll as the fallback (messages are
//!   at-most-once).
//! - An **epoch** key detects a restart or failover that lost the state: the first caller
//!   that remembers an older epoch sets a short quarantine during which admissions pause and
//!   holders re-assert their leases, so the fleet does not admit twice the cap. (A process
//!   that never saw the old epoch cannot detect the reset; quarantine starts with the first
//!   one that can, usually the next renewal.)
//! - When Redis is unreachable, [`FailMode::Closed`] refuses with
//!   [`FleetRejected::Unavailable`], [`FailMode::Open`] admits on the local limiter alone
//!   (optionally under a fallback cap); a circuit breaker keeps requests from paying the
//!   call timeout one after another.
//! - Each lease carries a **fence** number, increasing per key, for logs and for users' own
//!   resources.
//!
//! # With the tower and http layers
//! - [`FleetLimitLayer`] (feature `tower`) holds the permit until the inner service's future
//!   completes: right for a call whose response is complete when it returns.
//! - For HTTP (feature `http`), a `FleetLimiter` is an admission source of the http server
//!   and client layers like any [`Limiter`](crate::limit::Limiter):
//!   [`ServerLimitLayer::fleet`](crate::http::ServerLimitLayer::fleet),
//!   [`ClientLimitLayer::fleet`](crate::http::ClientLimitLayer::fleet) (it implements
//!   [`Admit`](crate::http::Admit)). There the whole permit — local permit **and** lease —
//!   moves into the response body ([`LimitedBody`](crate::http::LimitedBody)) and is held
//!   until the body ends, fails or is dropped, so a **streaming response keeps its lease**
//!   (renewed in the background) to its end. A [`FleetRejected`] becomes a
//!   [`Rejected`](crate::limit::Rejected) ([`FleetRejected::into_rejected`]): Redis
//!   unreachable under [`FailMode::Closed`] is reason
//!   [`Unavailable`](crate::limit::RejectReason::Unavailable), answered by the server layer
//!   with a 503 JSON response of type `unavailable`.
//!
//! # An efficiency limit, not a safety lock
//! This is **not a lock you can rely on for correctness**, and there is no Redlock. A
//! pause (GC, SIGSTOP, VM freeze) longer than the lease TTL minus the renew interval lets
//! a lease expire while its holder still works; a failover to a replica that missed the
//! last grants loses them; a restart is only detected per epoch. In those cases the fleet
//! can briefly admit more than the cap, and the counters show it. Use it to keep load on an
//! upstream near a cap (overshoot ends in the upstream's own 429s), not to protect data.
//! The fence is only a safety tool if the protected resource checks it.
//!
//! # Connections and keys
//! You bring the connection: anything implementing [`FleetConnection`], such as
//! [`redis::aio::ConnectionManager`] or [`redis::aio::MultiplexedConnection`], built with
//! whatever TLS or sentinel setup you use. Prefer the `ConnectionManager`: it reconnects by
//! itself after a dropped connection, where a bare `MultiplexedConnection` stays broken (the
//! limiter then stays in its fail mode). Cluster connections are not tested yet; the keys
//! are laid out for them already. Keys are `<prefix>:{<key>}:<name>`: one hash tag
//! per limiter, so all its keys land on one cluster slot. Expired leases and waiters are
//! reclaimed by every call and the sets carry a key expiry, so no state is left behind
//! after holders die (only two counters and the epoch stay).
//!
//! # Example
//! ```no_run
//! use std::time::Duration;
//! use fairgate::fleet::{FailMode, FleetLimiter};
//! use fairgate::limit::LimiterConfig;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let client = redis::Client::open("redis://127.0.0.1:6379")?;
//! let conn = redis::aio::ConnectionManager::new(client.clone()).await?;
//! let local = LimiterConfig::builder("llm-provider")
//!     .capacity(32) // the fleet cap
//!     .queue_timeout(Duration::from_secs(2))
//!     .config()?;
//! let limiter = FleetLimiter::builder("llm-provider", local)
//!     .lease_ttl(Duration::from_secs(15))
//!     .fail_mode(FailMode::Open { fallback_limit: Some(4) })
//!     .wake_client(client)
//!     .build(conn)?;
//! let permit = limiter.acquire().await?;
//! // ... call the upstream; the lease is renewed meanwhile ...
//! drop(permit);
//! # Ok(()) }
//! ```

mod acquire;
mod backend;
mod background;
mod breaker;
mod builder;
mod config;
mod error;
mod limiter;
mod lua;
mod observe;
mod permit;
#[cfg(feature = "tower")]
mod tower;

pub use backend::{FleetConnection, FleetSnapshot};
pub use builder::FleetBuilder;
pub use config::{FailMode, FleetConfigError};
pub use error::FleetRejected;
pub use limiter::FleetLimiter;
pub use observe::{FleetCounters, FleetObserver};
pub use permit::FleetPermit;
#[cfg(feature = "tower")]
pub use tower::{FleetLimit, FleetLimitLayer};
