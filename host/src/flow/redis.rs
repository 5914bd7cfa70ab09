//! The scale-out limiter: each key's state in Redis, shared by every node, changed by Lua
//! scripts (one round trip per batch, atomic).
//!
//! Keys (all share the hash tag `{<prefix>}` with the schedule, so in a Redis Cluster they live
//! on one slot and a script may touch several keys' state):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{p}:flow:<tenant> <key>` | hash | `tat` (the rate's theoretical arrival time, µs), `paused` (held until), `r:<id>` (a waiting message's reserved slot) |
//! | `…:f` | sorted set | deliveries in flight, scored by lease end |
//! | `…:w` | sorted set | messages waiting for a parallelism slot, scored by due time |
//! | `…:m` | sorted set | waiting messages, scored by when they are expected back |
//! | `{p}:flow:waiting` | sorted set | `<tenant> <key>` scored by its waiting messages, updated whenever the key is asked for |
//!
//! A key's state expires an hour after its last use beyond its own times.

use redis::AsyncCommands as _;

use super::{Ask, FlowError, FlowKey, Limiter, Verdict, WAITING_GRACE_MS};
use crate::domain::ids::{MessageId, TenantId};
use crate::redis_link::RedisLink;

/// Asks per script call at most.
const SLICE: usize = 256;
/// How long a key's state outlives its own times, in ms.
const KEEP_MS: u64 = 3_600_000;

/// Admits a batch. KEYS: the waiting index, then hash, in flight, waiters, waiting per ask.
/// ARGV: now, lease ms, grace ms, keep ms, then id, order, interval µs (0: no rate),
/// tolerance µs, cap (0: none; 1 for FIFO), FIFO (1 or 0), index member per ask. Returns per ask 0 (go) or the
/// time it waits until (ms).
const ADMIT: &str = r"
local now, lease, grace, keep = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local function behind(w, m, fifo, order, id)
  if not fifo then return false end
  while true do
    local head = redis.call('ZRANGE', w, 0, 0, 'WITHSCORES')
    if #head == 0 then return false end
    if redis.call('ZSCORE', m, head[1]) then
      local score = tonumber(head[2])
      return order > score or (order == score and id > head[1])
    end
    redis.call('ZREM', w, head[1])
  end
end
local function count(m, member)
  local waiting = redis.call('ZCARD', m)
  if waiting > 0 then redis.call('ZADD', KEYS[1], waiting, member) else redis.call('ZREM', KEYS[1], member) end
end
local function admit(h, f, w, m, id, order, interval, tolerance, par, fifo, member)
  local paused = tonumber(redis.call('HGET', h, 'paused') or '0')
  if interval == 0 and par == 0 and paused <= now then
    -- No limit and no pause: only no longer waiting, if it was.
    if redis.call('ZREM', m, id) == 1 then count(m, member) end
    return 0
  end
  redis.call('ZREMRANGEBYSCORE', f, '-inf', now)
  redis.call('ZREMRANGEBYSCORE', m, '-inf', now - grace)
  local wait = nil
  local tat = tonumber(redis.call('HGET', h, 'tat') or '0')
  local now_us = now * 1000
  if paused > now then
    wait = paused
  elseif par > 0 and not redis.call('ZSCORE', f, id) and (redis.call('ZCARD', f) >= par or behind(w, m, fifo, order, id)) then
    redis.call('ZADD', w, order, id)
    wait = now + lease
  elseif interval > 0 then
    local slot = redis.call('HGET', h, 'r:' .. id)
    if slot then
      slot = tonumber(slot)
      if slot > now then wait = slot else redis.call('HDEL', h, 'r:' .. id) end
    else
      local from = math.max(tat, now_us)
      tat = from + interval
      redis.call('HSET', h, 'tat', string.format('%d', tat))
      local conforms = from - tolerance
      if conforms > now_us then
        slot = math.ceil(conforms / 1000)
        redis.call('HSET', h, 'r:' .. id, string.format('%d', slot))
        wait = slot
      end
    end
  end
  if wait then
    redis.call('ZADD', m, wait, id)
  else
    redis.call('ZREM', w, id)
    redis.call('ZREM', m, id)
    if par > 0 then redis.call('ZADD', f, now + lease, id) end
  end
  count(m, member)
  local last = math.max(math.ceil(tat / 1000), paused, now + lease, wait or 0)
  local ttl = string.format('%d', last - now + keep)
  for _, key in ipairs({h, f, w, m}) do redis.call('PEXPIRE', key, ttl) end
  return wait or 0
end
local out = {}
local n = 0
for i = 5, #ARGV, 7 do
  out[#out + 1] = admit(KEYS[2 + n * 4], KEYS[3 + n * 4], KEYS[4 + n * 4], KEYS[5 + n * 4],
    ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3]),
    tonumber(ARGV[i + 4]), ARGV[i + 5] == '1', ARGV[i + 6])
  n = n + 1
end
return out
";

/// Frees slots. KEYS: in flight, waiters per finished delivery. ARGV: its id and 1 for a FIFO
/// key (its first waiter stays first) or 0. Returns the first waiter of each key that had one.
const FINISH: &str = r"
local out = {}
for i = 1, #KEYS / 2 do
  local f, w = KEYS[i * 2 - 1], KEYS[i * 2]
  redis.call('ZREM', f, ARGV[i * 2 - 1])
  local head = redis.call('ZRANGE', w, 0, 0)
  if #head > 0 then
    if ARGV[i * 2] ~= '1' then redis.call('ZREM', w, head[1]) end
    out[#out + 1] = head[1]
  end
end
return out
";

/// Pauses a key. KEYS: its hash. ARGV: until, keep ms.
const PAUSE: &str = r"
local paused = tonumber(redis.call('HGET', KEYS[1], 'paused') or '0')
local until_ms = tonumber(ARGV[1])
if until_ms > paused then
  redis.call('HSET', KEYS[1], 'paused', ARGV[1])
  redis.call('PEXPIRE', KEYS[1], string.format('%d', until_ms - tonumber(ARGV[3]) + tonumber(ARGV[2])))
end
return 1
";

/// Keeps a slot. KEYS: in flight. ARGV: until, id, keep ms.
const HOLD: &str = r"
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
";

/// The waiting index: the top `ARGV[1]` members and the sum of all scores.
const WAITING: &str = r"
local all = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local total = 0
for i = 2, #all, 2 do total = total + tonumber(all[i]) end
local top = redis.call('ZREVRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1, 'WITHSCORES')
return {top, string.format('%d', total)}
";

fn unavailable(error: redis::RedisError) -> FlowError {
    FlowError::Unavailable(error.to_string())
}

/// The Redis limiter.
pub struct RedisLimiter {
    link: RedisLink,
    tag: String,
    admit: redis::Script,
    finish: redis::Script,
    pause: redis::Script,
    hold: redis::Script,
    waiting: redis::Script,
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("tag", &self.tag)
            .finish_non_exhaustive()
    }
}

/// `<tenant> <key>`: the waiting index's member.
fn member(key: &FlowKey) -> String {
    format!("{} {}", key.tenant, key.key)
}

impl RedisLimiter {
    /// The limiter under `link`'s prefix.
    pub fn new(link: RedisLink) -> Self {
        Self {
            tag: format!("{{{}}}", link.prefix()),
            link,
            admit: redis::Script::new(ADMIT),
            finish: redis::Script::new(FINISH),
            pause: redis::Script::new(PAUSE),
            hold: redis::Script::new(HOLD),
            waiting: redis::Script::new(WAITING),
        }
    }

    fn state(&self, key: &FlowKey) -> String {
        format!("{}:flow:{}", self.tag, member(key))
    }

    fn index(&self) -> String {
        format!("{}:flow:waiting", self.tag)
    }

    /// Deletes every key's state (after `dms db reset`).
    pub async fn clear(&self) -> Result<(), FlowError> {
        let mut connection = self.link.connection();
        let keys: Vec<String> = {
            let mut iter: redis::AsyncIter<'_, String> = connection
                .scan_match(format!("{}:flow:*", self.tag))
                .await
                .map_err(unavailable)?;
            let mut keys = Vec::new();
            while let Some(key) = futures_util::StreamExt::next(&mut iter).await {
                keys.push(key.map_err(unavailable)?);
            }
            keys
        };
        for key in keys {
            let _: u64 = connection.del(&key).await.map_err(unavailable)?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Limiter for RedisLimiter {
    async fn admit(
        &self,
        now_ms: u64,
        lease_ms: u64,
        asks: &[Ask],
    ) -> Result<Vec<Verdict>, FlowError> {
        let mut verdicts = Vec::with_capacity(asks.len());
        for slice in asks.chunks(SLICE) {
            let mut invocation = self.admit.prepare_invoke();
            invocation
                .key(self.index())
                .arg(now_ms)
                .arg(lease_ms)
                .arg(WAITING_GRACE_MS)
                .arg(KEEP_MS);
            for ask in slice {
                let state = self.state(&ask.key);
                invocation
                    .key(&state)
                    .key(format!("{state}:f"))
                    .key(format!("{state}:w"))
                    .key(format!("{state}:m"))
                    .arg(ask.id.as_str())
                    .arg(ask.order)
                    .arg(ask.rate.map_or(0, |rate| rate.interval_us))
                    .arg(ask.rate.map_or(0, |rate| rate.tolerance_us))
                    .arg(ask.cap().unwrap_or(0))
                    .arg(u8::from(ask.fifo))
                    .arg(member(&ask.key));
            }
            let answers: Vec<u64> = invocation
                .invoke_async(&mut self.link.connection())
                .await
                .map_err(unavailable)?;
            verdicts.extend(answers.into_iter().map(|until| match until {
                0 => Verdict::Go,
                until => Verdict::Wait(until),
            }));
        }
        Ok(verdicts)
    }

    async fn finish(
        &self,
        done: &[(FlowKey, MessageId, bool)],
    ) -> Result<Vec<MessageId>, FlowError> {
        let mut woken = Vec::new();
        for slice in done.chunks(SLICE) {
            let mut invocation = self.finish.prepare_invoke();
            for (key, id, fifo) in slice {
                let state = self.state(key);
                invocation
                    .key(format!("{state}:f"))
                    .key(format!("{state}:w"))
                    .arg(id.as_str())
                    .arg(u8::from(*fifo));
            }
            let ids: Vec<String> = invocation
                .invoke_async(&mut self.link.connection())
                .await
                .map_err(unavailable)?;
            woken.extend(ids.iter().filter_map(|id| id.parse::<MessageId>().ok()));
        }
        Ok(woken)
    }

    async fn hold(&self, key: &FlowKey, id: &MessageId, until_ms: u64) -> Result<(), FlowError> {
        let _: u64 = self
            .hold
            .key(format!("{}:f", self.state(key)))
            .arg(until_ms)
            .arg(id.as_str())
            .arg(
                KEEP_MS
                    .saturating_add(until_ms.saturating_sub(crate::clock::Clock::System.now_ms())),
            )
            .invoke_async(&mut self.link.connection())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn pause(&self, key: &FlowKey, now_ms: u64, until_ms: u64) -> Result<(), FlowError> {
        let _: u64 = self
            .pause
            .key(self.state(key))
            .arg(until_ms)
            .arg(KEEP_MS)
            .arg(now_ms)
            .invoke_async(&mut self.link.connection())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn waiting(
        &self,
        _now_ms: u64,
        top: usize,
    ) -> Result<(Vec<(FlowKey, u64)>, u64), FlowError> {
        let (members, total): (Vec<(String, f64)>, String) = self
            .waiting
            .key(self.index())
            .arg(top.max(1))
            .invoke_async(&mut self.link.connection())
            .await
            .map_err(unavailable)?;
        let counts = members
            .into_iter()
            .filter_map(|(member, count)| {
                let (tenant, key) = member.split_once(' ')?;
                let tenant = tenant.parse::<TenantId>().ok()?;
                Some((
                    FlowKey {
                        tenant,
                        key: key.to_owned(),
                    },
                    count as u64,
                ))
            })
            .take(top)
            .collect();
        Ok((counts, total.parse().unwrap_or(0)))
    }
}
