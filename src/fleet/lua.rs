//! The Lua scripts that own all fleet state in Redis.
//!
//! Every script reads the time from the server (`TIME`): client clocks play no part in
//! expiry. Every script is idempotent by lease id (and waiter id), so a call whose outcome is
//! unknown (timeout, connection reset) is simply sent again with the same ids.
//!
//! Keys (all of one limiter share the hash tag `{key}`, so they land on one cluster slot):
//!
//! | `KEYS[i]` | name | type | holds |
//! |---|---|---|---|
//! | 1 | `leases` | zset | lease id → expiry (server ms) |
//! | 2 | `waiters` | zset | waiter id → ticket (FIFO order across processes) |
//! | 3 | `wexp` | zset | waiter id → deadline (a waiter that stops asking is evicted) |
//! | 4 | `ticket` | counter | next ticket |
//! | 5 | `fence` | counter | fence numbers (never expires, so fences stay monotonic) |
//! | 6 | `fences` | hash | lease id → its fence |
//! | 7 | `epoch` | string | changes when the server lost its state (restart, failover) |
//! | 8 | `quarantine` | string with expiry | admissions pause while it exists |
//!
//! State is bounded: expired leases and waiters are reclaimed (at most 256 of each per call)
//! by every script, and the zsets and the hash carry a key expiry refreshed by every write,
//! so keys whose holders all died vanish. Only the two counters and the epoch stay (three
//! small strings per limiter key).

// The crate is `no_std` with `std` linked: bring std's prelude and macros in.
#[allow(unused_imports)]
use std::prelude::rust_2021::*;
#[allow(unused_imports)]
use std::{format, vec};

/// Shared by every script: the server time, epoch check, reclaim, wake-ups and key expiry.
/// `ARGV[1..=5]` are common: cap, seen epoch, quarantine ms, key ttl ms, wake channel.
const PRELUDE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cap = tonumber(ARGV[1])
local seen = ARGV[2]
local quarantine_ms = tonumber(ARGV[3])
local key_ttl = tonumber(ARGV[4])
local channel = ARGV[5]

-- The epoch names one lifetime of this limiter's state on this server. A missing epoch
-- while the caller remembers one means the state was lost: quarantine admissions so that
-- holders can re-assert their leases before newcomers fill the cap a second time.
local function check_epoch()
  local e = redis.call('GET', KEYS[7])
  local reset = 0
  if not e then
    e = t[1] .. '.' .. t[2]
    redis.call('SET', KEYS[7], e)
    if seen ~= '' then
      redis.call('SET', KEYS[8], '1', 'PX', quarantine_ms)
      reset = 1
    end
  elseif seen ~= '' and seen ~= e then
    reset = 1
  end
  return e, reset
end

local function drop_waiters(ids)
  if #ids > 0 then
    redis.call('ZREM', KEYS[2], unpack(ids))
    redis.call('ZREM', KEYS[3], unpack(ids))
  end
end

-- Bounded work per call: at most 256 expired leases and 256 stale waiters.
local function reclaim()
  local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 256)
  if #dead > 0 then
    redis.call('ZREM', KEYS[1], unpack(dead))
    redis.call('HDEL', KEYS[6], unpack(dead))
  end
  drop_waiters(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 256))
  return #dead
end

-- Targeted wake-up: the ids of the waiters that fit into the free capacity.
local function wake()
  local free = cap - redis.call('ZCARD', KEYS[1])
  if free > 0 and redis.call('PTTL', KEYS[8]) <= 0 then
    local ids = redis.call('ZRANGE', KEYS[2], 0, free - 1)
    if #ids > 0 then
      redis.call('PUBLISH', channel, table.concat(ids, ','))
    end
  end
end

local function touch()
  redis.call('PEXPIRE', KEYS[1], key_ttl)
  redis.call('PEXPIRE', KEYS[2], key_ttl)
  redis.call('PEXPIRE', KEYS[3], key_ttl)
  redis.call('PEXPIRE', KEYS[6], key_ttl)
end
"#;

/// `acquire`: ARGV 6.. = lease id, waiter id, lease ttl ms, waiter ttl ms, fair (1/0).
/// Returns `{1, fence, ttl_ms, epoch}` when granted, `{0, rank, retry_hint_ms, epoch}` when
/// not (rank -1: quarantined after a reset).
const ACQUIRE: &str = r#"
local lease = ARGV[6]
local waiter = ARGV[7]
local ttl = tonumber(ARGV[8])
local waiter_ttl = tonumber(ARGV[9])
local fair = ARGV[10] == '1'
local e = check_epoch()

-- A retry of a call that was granted: hand back the same grant.
local exp = redis.call('ZSCORE', KEYS[1], lease)
if exp and tonumber(exp) > now then
  drop_waiters({waiter})
  return {1, tonumber(redis.call('HGET', KEYS[6], lease) or '0'), tonumber(exp) - now, e}
end
if reclaim() > 0 then wake() end

local function enqueue()
  if not redis.call('ZSCORE', KEYS[2], waiter) then
    redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[4]), waiter)
  end
  redis.call('ZADD', KEYS[3], now + waiter_ttl, waiter)
  touch()
end

local q = redis.call('PTTL', KEYS[8])
if q > 0 then
  enqueue()
  return {0, -1, q, e}
end

local free = cap - redis.call('ZCARD', KEYS[1])
local rank = redis.call('ZRANK', KEYS[2], waiter)
if not rank then rank = redis.call('ZCARD', KEYS[2]) end
if free > 0 and ((not fair) or rank < free) then
  redis.call('ZADD', KEYS[1], now + ttl, lease)
  local fence = redis.call('INCR', KEYS[5])
  redis.call('HSET', KEYS[6], lease, fence)
  drop_waiters({waiter})
  touch()
  return {1, fence, ttl, e}
end
enqueue()
local hint = waiter_ttl
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #first == 2 then hint = math.max(1, tonumber(first[2]) - now) end
return {0, rank, hint, e}
"#;

/// `renew`: ARGV 6 = lease ttl ms, then pairs (lease id, fence). Extends live leases;
/// re-asserts missing ones after a detected reset; reports the rest as lost.
/// Returns `{epoch, reasserted, {lost ids}}`.
const RENEW: &str = r#"
local ttl = tonumber(ARGV[6])
local e, reset = check_epoch()
reclaim()
local lost = {}
local reasserted = 0
for i = 7, #ARGV, 2 do
  local id = ARGV[i]
  local s = redis.call('ZSCORE', KEYS[1], id)
  if s and tonumber(s) > now then
    redis.call('ZADD', KEYS[1], 'XX', now + ttl, id)
  elseif reset == 1 and not s then
    redis.call('ZADD', KEYS[1], now + ttl, id)
    redis.call('HSET', KEYS[6], id, ARGV[i + 1])
    reasserted = reasserted + 1
  else
    if s then
      redis.call('ZREM', KEYS[1], id)
      redis.call('HDEL', KEYS[6], id)
    end
    lost[#lost + 1] = id
  end
end
touch()
return {e, reasserted, lost}
"#;

/// `release`: ARGV 6 = number n of lease ids, then n lease ids, then waiter ids to drop.
/// Returns the number of leases removed. Releasing an unknown id is a no-op.
const RELEASE: &str = r#"
local n = tonumber(ARGV[6])
local removed = 0
if n > 0 then
  local ids = {}
  for i = 7, 6 + n do ids[#ids + 1] = ARGV[i] end
  removed = redis.call('ZREM', KEYS[1], unpack(ids))
  redis.call('HDEL', KEYS[6], unpack(ids))
end
local waiters = {}
for i = 7 + n, #ARGV do waiters[#waiters + 1] = ARGV[i] end
drop_waiters(waiters)
reclaim()
wake()
return removed
"#;

/// `inspect` (read-only): `{live leases, live waiters, epoch or ''}` by the server clock.
const INSPECT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local held = redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
local waiting = redis.call('ZCOUNT', KEYS[3], '(' .. now, '+inf')
return {held, waiting, redis.call('GET', KEYS[7]) or ''}
"#;

/// The loaded scripts (sent with EVALSHA; redis-rs loads them again after `NOSCRIPT`).
pub(crate) struct Scripts {
    pub(crate) acquire: redis::Script,
    pub(crate) renew: redis::Script,
    pub(crate) release: redis::Script,
    pub(crate) inspect: redis::Script,
}

impl Scripts {
    pub(crate) fn new() -> Scripts {
        let with_prelude = |body: &str| redis::Script::new(&format!("{PRELUDE}\n{body}"));
        Scripts {
            acquire: with_prelude(ACQUIRE),
            renew: with_prelude(RENEW),
            release: with_prelude(RELEASE),
            inspect: redis::Script::new(INSPECT),
        }
    }
}
