//! The scale-out schedule: in Redis, shared by every node.
//!
//! Keys (all share the hash tag `{<prefix>}`, so in a Redis Cluster they live on one slot and
//! the Lua scripts can touch them together):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{p}:due` | sorted set | waiting message ids, scored by due time (Unix ms) |
//! | `{p}:leases` | sorted set | claimed ids, scored by lease expiry (Unix ms) |
//! | `{p}:tokens` | hash | claimed id → lease token |
//! | `{p}:intact` | string | present while the index is known complete; a `FLUSHALL` or a new Redis removes it, the claim script reports its absence, and the dispatcher then rebuilds the index from the database |
//! | `{p}:schedule` | pub/sub channel | the earliest due time a script wrote, published (at most once per call) only when it is earlier than the earliest score of `due` and `leases` before the call, or those were empty, so every node wakes for it |
//!
//! Invariant: an id is in at most one of `due` and `leases`, and in `tokens` exactly when it is
//! in `leases`. Members are the ids' 16 raw bytes, not their 30-character text, to keep the
//! index small. Times come from the node's clock; nodes are expected to keep time with NTP.
//!
//! Every change that may wake dispatchers is one Lua script (one round trip, atomic): the
//! wake-up decision needs the index as it was just before the change, which no other client
//! may alter in between.

use std::time::Duration;

use futures_util::StreamExt as _;
use redis::AsyncCommands;
use tokio::sync::Notify;

use super::{Claim, IndexStats, Release, Schedule, ScheduleError};
use crate::domain::ids::MessageId;
use crate::redis_link::RedisLink;

/// Lua shared by the scripts that put ids in `due`: `earliest(due, leases)` is what the
/// dispatchers wait for (the lowest score of either set, or nil when both are empty), and
/// `wake(channel, before, at, text)` publishes `text` when the earliest newly due time `at`
/// (nil: nothing was added) is earlier than `before`.
macro_rules! lua_wake {
    () => {
        r"
local function earliest(due, leases)
  local first = nil
  for _, key in ipairs({due, leases}) do
    local head = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    if #head > 0 then
      local score = tonumber(head[2])
      if first == nil or score < first then first = score end
    end
  end
  return first
end
local function wake(channel, before, at, text)
  if at ~= nil and (before == nil or at < before) then
    redis.call('PUBLISH', channel, text)
    return 1
  end
  return 0
end
"
    };
}

/// Claims expired leases (first) and due ids, atomically, and reports whether the `intact`
/// marker exists. KEYS: due, leases, tokens, intact. ARGV: now, max, lease ms, token. Returns
/// `{claimed ids, intact 0 or 1}`.
const CLAIM: &str = r"
local now = tonumber(ARGV[1])
local max = tonumber(ARGV[2])
local expires = now + tonumber(ARGV[3])
local claimed = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, max)
local room = max - #claimed
if room > 0 then
  local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, room)
  if #due > 0 then redis.call('ZREM', KEYS[1], unpack(due)) end
  for _, id in ipairs(due) do claimed[#claimed + 1] = id end
end
for _, id in ipairs(claimed) do
  redis.call('ZADD', KEYS[2], expires, id)
  redis.call('HSET', KEYS[3], id, ARGV[4])
end
return {claimed, redis.call('EXISTS', KEYS[4])}
";

/// Ends the leases that `token` still holds. KEYS: due, leases, tokens. ARGV: channel, then
/// id, token, next due time or '' for each lease. Returns how many it ended.
const RELEASE_MANY: &str = concat!(
    lua_wake!(),
    r"
local before = earliest(KEYS[1], KEYS[2])
local at, text, released = nil, nil, 0
for i = 2, #ARGV, 3 do
  local id, due = ARGV[i], ARGV[i + 2]
  if redis.call('HGET', KEYS[3], id) == ARGV[i + 1] then
    redis.call('ZREM', KEYS[2], id)
    redis.call('HDEL', KEYS[3], id)
    released = released + 1
    if due ~= '' then
      redis.call('ZADD', KEYS[1], due, id)
      local time = tonumber(due)
      if at == nil or time < at then at, text = time, due end
    end
  end
end
wake(ARGV[1], before, at, text)
return released
"
);

/// Puts ids in `due`, ending any lease. KEYS: due, leases, tokens. ARGV: channel, then id, due
/// for each id. Returns 1 when it published a wake-up.
const ADD: &str = concat!(
    lua_wake!(),
    r"
local before = earliest(KEYS[1], KEYS[2])
local at, text = nil, nil
for i = 2, #ARGV, 2 do
  local id, due = ARGV[i], ARGV[i + 1]
  redis.call('ZREM', KEYS[2], id)
  redis.call('HDEL', KEYS[3], id)
  redis.call('ZADD', KEYS[1], due, id)
  local time = tonumber(due)
  if at == nil or time < at then at, text = time, due end
end
return wake(ARGV[1], before, at, text)
"
);

/// Puts in `due` the ids that are in neither `due` nor `leases`. KEYS: due, leases. ARGV:
/// channel, then id, due for each id. Returns how many it added.
const RESTORE: &str = concat!(
    lua_wake!(),
    r"
local before = earliest(KEYS[1], KEYS[2])
local at, text, added = nil, nil, 0
for i = 2, #ARGV, 2 do
  local id, due = ARGV[i], ARGV[i + 1]
  if not redis.call('ZSCORE', KEYS[1], id) and not redis.call('ZSCORE', KEYS[2], id) then
    redis.call('ZADD', KEYS[1], due, id)
    added = added + 1
    local time = tonumber(due)
    if at == nil or time < at then at, text = time, due end
  end
end
wake(ARGV[1], before, at, text)
return added
"
);

/// The Redis schedule.
pub struct RedisSchedule {
    link: RedisLink,
    due: String,
    leases: String,
    tokens: String,
    intact: String,
    channel: String,
    claim: redis::Script,
    release_many: redis::Script,
    add: redis::Script,
    restore: redis::Script,
    changed: std::sync::Arc<Notify>,
    listener: tokio::task::JoinHandle<()>,
    /// What [`add_many`](Schedule::add_many) could not write (Redis unreachable), oldest first,
    /// for [`retry_failed`](Schedule::retry_failed). Bounded by [`MAX_FAILED`]: submits are
    /// found again by the reconciler's scan anyway; this keeps the rest (a reschedule, a
    /// replay) until Redis takes writes again.
    failed: std::sync::Mutex<std::collections::VecDeque<(MessageId, u64)>>,
}

/// Entries one script call writes at most: a call blocks Redis while it runs, so a large batch
/// (a group of batch submits, a rebuild page) goes in slices.
const SLICE: usize = 2_000;
/// Failed additions kept for a retry, at most; the oldest go first.
const MAX_FAILED: usize = 10_000;

impl Drop for RedisSchedule {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

fn unavailable(error: redis::RedisError) -> ScheduleError {
    ScheduleError::Unavailable(error.to_string())
}

impl RedisSchedule {
    /// The schedule under `link`'s prefix; starts listening for wake-ups from every node.
    pub fn new(link: RedisLink) -> Self {
        let tag = format!("{{{}}}", link.prefix());
        let channel = format!("{tag}:schedule");
        let changed = std::sync::Arc::new(Notify::new());
        let listener = tokio::spawn(listen(
            link.client().clone(),
            channel.clone(),
            changed.clone(),
        ));
        Self {
            due: format!("{tag}:due"),
            leases: format!("{tag}:leases"),
            tokens: format!("{tag}:tokens"),
            intact: format!("{tag}:intact"),
            channel,
            claim: redis::Script::new(CLAIM),
            release_many: redis::Script::new(RELEASE_MANY),
            add: redis::Script::new(ADD),
            restore: redis::Script::new(RESTORE),
            changed,
            listener,
            link,
            failed: std::sync::Mutex::default(),
        }
    }

    /// Writes `entries` authoritatively (see [`Schedule::add_many`]), in slices.
    async fn write(&self, entries: &[(MessageId, u64)]) -> Result<(), ScheduleError> {
        for slice in entries.chunks(SLICE) {
            let mut invocation = self.add.prepare_invoke();
            invocation
                .key(&self.due)
                .key(&self.leases)
                .key(&self.tokens)
                .arg(&self.channel);
            for (id, due) in slice {
                invocation.arg(id.to_bytes().as_slice()).arg(*due);
            }
            let _: u64 = invocation
                .invoke_async(&mut self.link.connection())
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    /// Keeps entries that could not be written, for [`Schedule::retry_failed`].
    fn keep_failed(&self, entries: &[(MessageId, u64)]) {
        let mut failed = self.failed.lock().expect("failed additions lock");
        failed.extend(entries.iter().cloned());
        let excess = failed.len().saturating_sub(MAX_FAILED);
        if excess > 0 {
            failed.drain(..excess);
            tracing::warn!(
                message = "Too many schedule additions waiting for Redis; the oldest are left to the reconciler and the next rebuild.",
                dropped = excess,
            );
        }
    }

    /// Deletes the whole index (after `dms db reset` emptied the database it indexes). The
    /// `intact` marker goes with it, so the next dispatch rebuilds from the database.
    pub async fn clear(&self) -> Result<(), ScheduleError> {
        let mut connection = self.link.connection();
        let _: u64 = connection
            .del(&[&self.due, &self.leases, &self.tokens, &self.intact])
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Bytes Redis uses for the index's two sorted sets (for the benchmarks).
    pub async fn memory_bytes(&self) -> Result<u64, ScheduleError> {
        let mut connection = self.link.connection();
        let mut total = 0u64;
        for key in [&self.due, &self.leases] {
            let bytes: Option<u64> = redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(key)
                .arg("SAMPLES")
                .arg(0)
                .query_async(&mut connection)
                .await
                .map_err(unavailable)?;
            total += bytes.unwrap_or(0);
        }
        Ok(total)
    }
}

/// Wakes the dispatcher whenever any node's script publishes a wake-up (an id due sooner than
/// anything the index held); resubscribes after Redis restarts.
async fn listen(client: redis::Client, channel: String, changed: std::sync::Arc<Notify>) {
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => {
                if pubsub.subscribe(&channel).await.is_ok() {
                    // Anything may have been added while we were away.
                    changed.notify_one();
                    let mut messages = pubsub.on_message();
                    while messages.next().await.is_some() {
                        changed.notify_one();
                    }
                }
            }
            Err(error) => {
                tracing::debug!(message = "Schedule listener cannot reach Redis.", %error)
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// A score of the index as Unix milliseconds (scores are whole milliseconds, well within the
/// 2^53 a double holds exactly).
fn ms(score: f64) -> u64 {
    score as u64
}

#[async_trait::async_trait]
impl Schedule for RedisSchedule {
    async fn add_many(&self, entries: &[(MessageId, u64)]) -> Result<(), ScheduleError> {
        if entries.is_empty() {
            return Ok(());
        }
        // One script call per slice: the wake-up is decided against the index as it was
        // before the slice.
        match self.write(entries).await {
            Ok(()) => {
                // A later decision about an id supersedes one still waiting for a retry.
                let mut failed = self.failed.lock().expect("failed additions lock");
                if !failed.is_empty() {
                    let written: std::collections::HashSet<&MessageId> =
                        entries.iter().map(|(id, _)| id).collect();
                    failed.retain(|(id, _)| !written.contains(id));
                }
                Ok(())
            }
            Err(error) => {
                self.keep_failed(entries);
                Err(error)
            }
        }
    }

    async fn retry_failed(&self) -> Result<u64, ScheduleError> {
        let waiting: Vec<(MessageId, u64)> = self
            .failed
            .lock()
            .expect("failed additions lock")
            .drain(..)
            .collect();
        if waiting.is_empty() {
            return Ok(0);
        }
        // In the order they failed, so a later decision about an id wins over an earlier one.
        match self.write(&waiting).await {
            Ok(()) => Ok(waiting.len() as u64),
            Err(error) => {
                let mut failed = self.failed.lock().expect("failed additions lock");
                for entry in waiting.into_iter().rev() {
                    failed.push_front(entry);
                }
                Err(error)
            }
        }
    }

    async fn restore(&self, entries: &[(MessageId, u64)]) -> Result<u64, ScheduleError> {
        if entries.is_empty() {
            return Ok(0);
        }
        let mut invocation = self.restore.prepare_invoke();
        invocation
            .key(&self.due)
            .key(&self.leases)
            .arg(&self.channel);
        for (id, due) in entries {
            invocation.arg(id.to_bytes().as_slice()).arg(*due);
        }
        invocation
            .invoke_async(&mut self.link.connection())
            .await
            .map_err(unavailable)
    }

    async fn remove(&self, id: &MessageId) -> Result<(), ScheduleError> {
        let member = id.to_bytes();
        let mut connection = self.link.connection();
        let _: () = redis::pipe()
            .atomic()
            .zrem(&self.due, member.as_slice())
            .zrem(&self.leases, member.as_slice())
            .hdel(&self.tokens, member.as_slice())
            .query_async(&mut connection)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn claim(
        &self,
        now_ms: u64,
        max: usize,
        lease_ms: u64,
        token: &str,
    ) -> Result<Claim, ScheduleError> {
        let mut connection = self.link.connection();
        let (claimed, intact): (Vec<Vec<u8>>, bool) = self
            .claim
            .key(&self.due)
            .key(&self.leases)
            .key(&self.tokens)
            .key(&self.intact)
            .arg(now_ms)
            .arg(max)
            .arg(lease_ms)
            .arg(token)
            .invoke_async(&mut connection)
            .await
            .map_err(unavailable)?;
        Ok(Claim {
            ids: claimed
                .into_iter()
                .filter_map(|bytes| <[u8; 16]>::try_from(bytes.as_slice()).ok())
                .map(MessageId::from_bytes)
                .collect(),
            intact,
        })
    }

    async fn release_many(&self, releases: &[Release]) -> Result<(), ScheduleError> {
        if releases.is_empty() {
            return Ok(());
        }
        let mut invocation = self.release_many.prepare_invoke();
        invocation
            .key(&self.due)
            .key(&self.leases)
            .key(&self.tokens)
            .arg(&self.channel);
        for release in releases {
            invocation
                .arg(release.id.to_bytes().as_slice())
                .arg(&release.token)
                .arg(
                    release
                        .due_ms
                        .map(|due| due.to_string())
                        .unwrap_or_default(),
                );
        }
        let _: u64 = invocation
            .invoke_async(&mut self.link.connection())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn next_due(&self) -> Result<Option<u64>, ScheduleError> {
        let mut connection = self.link.connection();
        let (due, leases): (Vec<(Vec<u8>, f64)>, Vec<(Vec<u8>, f64)>) = redis::pipe()
            .zrange_withscores(&self.due, 0, 0)
            .zrange_withscores(&self.leases, 0, 0)
            .query_async(&mut connection)
            .await
            .map_err(unavailable)?;
        Ok(due
            .into_iter()
            .chain(leases)
            .map(|(_, score)| ms(score))
            .min())
    }

    async fn changed(&self) {
        self.changed.notified().await;
    }

    async fn count(&self) -> Result<u64, ScheduleError> {
        let mut connection = self.link.connection();
        let (due, leases): (u64, u64) = redis::pipe()
            .zcard(&self.due)
            .zcard(&self.leases)
            .query_async(&mut connection)
            .await
            .map_err(unavailable)?;
        Ok(due + leases)
    }

    async fn stats(&self, now_ms: u64) -> Result<IndexStats, ScheduleError> {
        let mut connection = self.link.connection();
        // Each O(log n); one pipeline, so one round trip.
        let (due, overdue, first, leased, leases_expired): (
            u64,
            u64,
            Vec<(Vec<u8>, f64)>,
            u64,
            u64,
        ) = redis::pipe()
            .zcard(&self.due)
            .zcount(&self.due, "-inf", now_ms)
            .zrange_withscores(&self.due, 0, 0)
            .zcard(&self.leases)
            .zcount(&self.leases, "-inf", now_ms)
            .query_async(&mut connection)
            .await
            .map_err(unavailable)?;
        Ok(IndexStats {
            due,
            overdue,
            oldest_overdue_ms: first
                .into_iter()
                .map(|(_, score)| ms(score))
                .find(|time| *time <= now_ms),
            leased,
            leases_expired,
        })
    }

    async fn intact(&self) -> Result<bool, ScheduleError> {
        let mut connection = self.link.connection();
        connection.exists(&self.intact).await.map_err(unavailable)
    }

    async fn mark_intact(&self) -> Result<(), ScheduleError> {
        let mut connection = self.link.connection();
        let _: () = connection.set(&self.intact, 1).await.map_err(unavailable)?;
        Ok(())
    }
}
