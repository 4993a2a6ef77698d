//! Typed calls of the Lua scripts over the user's connection, each bounded by the call
//! timeout and timed (round-trip time).

// The crate is `no_std` with `std` linked: bring std's prelude and macros in.
#[allow(unused_imports)]
use std::prelude::rust_2021::*;
#[allow(unused_imports)]
use std::{format, vec};

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::ConnectionLike;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};

use super::config::FleetConfig;
use super::lua::Scripts;

/// A connection the fleet limiter can use: anything redis-rs can send commands on that is
/// cheap to clone and shareable between tasks, such as [`redis::aio::ConnectionManager`]
/// (reconnects by itself) or [`redis::aio::MultiplexedConnection`]. The user builds it, with
/// TLS, sentinel or whatever their deployment needs.
pub trait FleetConnection: ConnectionLike + Clone + Send + Sync + 'static {}

impl<T: ConnectionLike + Clone + Send + Sync + 'static> FleetConnection for T {}

/// Object-safe view of a [`FleetConnection`], so that `FleetLimiter` is not generic.
trait CloneConn: Send + Sync {
    fn clone_box(&self) -> DynConn;
}

impl<T: FleetConnection> CloneConn for T {
    fn clone_box(&self) -> DynConn {
        DynConn(Box::new(self.clone()))
    }
}

/// One cloned connection, owned by one call.
pub(crate) struct DynConn(Box<dyn ConnectionLike + Send>);

impl ConnectionLike for DynConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.0.req_packed_command(cmd)
    }
    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.0.req_packed_commands(cmd, offset, count)
    }
    fn get_db(&self) -> i64 {
        self.0.get_db()
    }
}

/// Why a call failed: the server answered with an error, or no answer came in time (the
/// outcome is then unknown, and the idempotent scripts make a retry safe).
#[derive(Debug, Clone)]
pub(crate) enum CallError {
    Redis(Arc<RedisError>),
    Timeout,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Redis(e) => write!(f, "{e}"),
            CallError::Timeout => f.write_str("redis call timed out"),
        }
    }
}

/// The outcome of an acquire call.
pub(crate) enum AcquireReply {
    Granted {
        fence: u64,
    },
    /// `rank < 0`: quarantined after a detected reset.
    Denied {
        rank: i64,
        retry_hint: Duration,
    },
}

/// The outcome of a renew call.
pub(crate) struct RenewReply {
    pub(crate) reasserted: u64,
    pub(crate) lost: Vec<String>,
}

/// Live fleet-wide state of one key, read by the server clock.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FleetSnapshot {
    /// Live leases held across the fleet.
    pub in_flight: usize,
    /// Process heads waiting in Redis (at most one per process per key).
    pub waiters: usize,
    /// The current epoch (`""` when the server holds no state for this key).
    pub epoch: String,
}

pub(crate) struct Backend {
    conn: Box<dyn CloneConn>,
    scripts: Scripts,
    keys: [String; 8],
    channel: String,
    cap: String,
    quarantine_ms: String,
    key_ttl_ms: String,
    lease_ttl_ms: String,
    waiter_ttl_ms: String,
    fair: &'static str,
    call_timeout: Duration,
    /// The epoch this process last saw (`""` before the first answer).
    seen_epoch: Mutex<String>,
}

fn ms(d: Duration) -> String {
    d.as_millis().max(1).to_string()
}

impl Backend {
    pub(crate) fn new<C: FleetConnection>(conn: C, config: &FleetConfig) -> Backend {
        let base = format!("{}:{{{}}}", config.prefix, config.key);
        let key = |name: &str| format!("{base}:{name}");
        Backend {
            conn: Box::new(conn),
            scripts: Scripts::new(),
            keys: [
                key("leases"),
                key("waiters"),
                key("wexp"),
                key("ticket"),
                key("fence"),
                key("fences"),
                key("epoch"),
                key("quarantine"),
            ],
            channel: key("wake"),
            cap: config.cap().to_string(),
            quarantine_ms: config.quarantine.as_millis().to_string(),
            key_ttl_ms: ms(config.key_ttl()),
            lease_ttl_ms: ms(config.lease_ttl),
            waiter_ttl_ms: ms(config.waiter_ttl),
            fair: if config.fair { "1" } else { "0" },
            call_timeout: config.call_timeout,
            seen_epoch: Mutex::new(String::new()),
        }
    }

    /// The pub/sub channel carrying targeted wake-ups.
    pub(crate) fn channel(&self) -> &str {
        &self.channel
    }

    fn seen(&self) -> String {
        self.seen_epoch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn saw(&self, epoch: String) {
        *self.seen_epoch.lock().unwrap_or_else(|e| e.into_inner()) = epoch;
    }

    fn invocation<'a>(&self, script: &'a redis::Script) -> redis::ScriptInvocation<'a> {
        let mut inv = script.prepare_invoke();
        for k in &self.keys {
            inv.key(k);
        }
        inv.arg(&self.cap)
            .arg(self.seen())
            .arg(&self.quarantine_ms)
            .arg(&self.key_ttl_ms)
            .arg(&self.channel);
        inv
    }

    async fn run<T: redis::FromRedisValue>(
        &self,
        inv: &redis::ScriptInvocation<'_>,
    ) -> Result<(T, Duration), CallError> {
        let mut conn = self.conn.clone_box();
        let start = Instant::now();
        match tokio::time::timeout(self.call_timeout, inv.invoke_async(&mut conn)).await {
            Ok(Ok(v)) => Ok((v, start.elapsed())),
            Ok(Err(e)) => Err(CallError::Redis(Arc::new(e))),
            Err(_) => Err(CallError::Timeout),
        }
    }

    /// One acquire attempt for `lease` by head `waiter`. Returns the reply and the RTT.
    pub(crate) async fn acquire(
        &self,
        lease: &str,
        waiter: &str,
    ) -> Result<(AcquireReply, Duration), CallError> {
        let mut inv = self.invocation(&self.scripts.acquire);
        inv.arg(lease)
            .arg(waiter)
            .arg(&self.lease_ttl_ms)
            .arg(&self.waiter_ttl_ms)
            .arg(self.fair);
        let ((status, a, b, epoch), rtt): ((i64, i64, i64, String), Duration) =
            self.run(&inv).await?;
        self.saw(epoch);
        let reply = if status == 1 {
            AcquireReply::Granted { fence: a as u64 }
        } else {
            AcquireReply::Denied {
                rank: a,
                retry_hint: Duration::from_millis(b.max(1) as u64),
            }
        };
        Ok((reply, rtt))
    }

    /// Renews `(lease id, fence)` pairs in one call.
    pub(crate) async fn renew(
        &self,
        leases: &[(Arc<str>, u64)],
    ) -> Result<(RenewReply, Duration), CallError> {
        let mut inv = self.invocation(&self.scripts.renew);
        inv.arg(&self.lease_ttl_ms);
        for (id, fence) in leases {
            inv.arg(&**id).arg(*fence);
        }
        let ((epoch, reasserted, lost), rtt): ((String, u64, Vec<String>), Duration) =
            self.run(&inv).await?;
        self.saw(epoch);
        Ok((RenewReply { reasserted, lost }, rtt))
    }

    /// Releases leases and drops waiter tickets in one call (idempotent).
    pub(crate) async fn release(
        &self,
        leases: &[Arc<str>],
        waiters: &[Arc<str>],
    ) -> Result<Duration, CallError> {
        let mut inv = self.invocation(&self.scripts.release);
        inv.arg(leases.len());
        for id in leases.iter().chain(waiters) {
            inv.arg(&**id);
        }
        let (_removed, rtt): (i64, Duration) = self.run(&inv).await?;
        Ok(rtt)
    }

    /// Fleet-wide in-flight and waiters by the server clock.
    pub(crate) async fn inspect(&self) -> Result<FleetSnapshot, CallError> {
        let mut inv = self.scripts.inspect.prepare_invoke();
        for k in &self.keys {
            inv.key(k);
        }
        let ((held, waiting, epoch), _): ((usize, usize, String), Duration) =
            self.run(&inv).await?;
        Ok(FleetSnapshot {
            in_flight: held,
            waiters: waiting,
            epoch,
        })
    }
}
