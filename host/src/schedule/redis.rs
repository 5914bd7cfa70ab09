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
//! | `{p}:intact` | string | present while the index is known complete; a `FLUSHALL` or a new Redis removes it, and the next dispatch rebuilds the index from the database |
//! | `{p}:schedule` | pub/sub channel | due times of added ids, so every node wakes for an earlier one |
//!
//! Invariant: an id is in at most one of `due` and `leases`, and in `tokens` exactly when it is
//! in `leases`. Members are the ids' 16 raw bytes, not their 30-character text, to keep the
//! index small. Times come from the node's clock; nodes are expected to keep time with NTP.

use std::time::Duration;

use futures_util::StreamExt as _;
use redis::AsyncCommands;
use tokio::sync::Notify;

use super::{Schedule, ScheduleError};
use crate::domain::ids::MessageId;
use crate::redis_link::RedisLink;

/// Claims due ids and expired leases, atomically. KEYS: due, leases, tokens. ARGV: now, max,
/// lease ms, token.
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
return claimed
";

/// Ends a lease if `token` still holds it. KEYS: due, leases, tokens. ARGV: id, token, next
/// due time or ''.
const RELEASE: &str = r"
if redis.call('HGET', KEYS[3], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
if ARGV[3] ~= '' then redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1]) end
return 1
";

/// Puts ids in `due` (leaving any lease). KEYS: due, leases, tokens. ARGV: id, due, id, due, …
const ADD: &str = r"
for i = 1, #ARGV, 2 do
  redis.call('ZREM', KEYS[2], ARGV[i])
  redis.call('HDEL', KEYS[3], ARGV[i])
  redis.call('ZADD', KEYS[1], ARGV[i + 1], ARGV[i])
end
return #ARGV / 2
";

/// The Redis schedule.
pub struct RedisSchedule {
    link: RedisLink,
    due: String,
    leases: String,
    tokens: String,
    intact: String,
    channel: String,
    claim: redis::Script,
    release: redis::Script,
    add: redis::Script,
    changed: std::sync::Arc<Notify>,
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for RedisSchedule {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

fn unavailable(error: redis::RedisError) -> ScheduleError {
    ScheduleError::Unavailable(error.to_string())
}

impl RedisSchedule {
    /// The schedule under `link`'s prefix; starts listening for other nodes' additions.
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
            release: redis::Script::new(RELEASE),
            add: redis::Script::new(ADD),
            changed,
            listener,
            link,
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

/// Wakes the dispatcher whenever any node adds an id; resubscribes after Redis restarts.
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

#[async_trait::async_trait]
impl Schedule for RedisSchedule {
    async fn add(&self, id: &MessageId, due_ms: u64) -> Result<(), ScheduleError> {
        self.add_many(std::slice::from_ref(&(id.clone(), due_ms)))
            .await
    }

    async fn add_many(&self, entries: &[(MessageId, u64)]) -> Result<(), ScheduleError> {
        let mut connection = self.link.connection();
        for chunk in entries.chunks(500) {
            let mut invocation = self.add.prepare_invoke();
            invocation
                .key(&self.due)
                .key(&self.leases)
                .key(&self.tokens);
            for (id, due) in chunk {
                invocation.arg(id.to_bytes().as_slice()).arg(*due);
            }
            let _: u64 = invocation
                .invoke_async(&mut connection)
                .await
                .map_err(unavailable)?;
        }
        if let Some(earliest) = entries.iter().map(|(_, due)| *due).min() {
            let _: u64 = connection
                .publish(&self.channel, earliest)
                .await
                .map_err(unavailable)?;
        }
        Ok(())
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
    ) -> Result<Vec<MessageId>, ScheduleError> {
        let mut connection = self.link.connection();
        let claimed: Vec<Vec<u8>> = self
            .claim
            .key(&self.due)
            .key(&self.leases)
            .key(&self.tokens)
            .arg(now_ms)
            .arg(max)
            .arg(lease_ms)
            .arg(token)
            .invoke_async(&mut connection)
            .await
            .map_err(unavailable)?;
        Ok(claimed
            .into_iter()
            .filter_map(|bytes| <[u8; 16]>::try_from(bytes.as_slice()).ok())
            .map(MessageId::from_bytes)
            .collect())
    }

    async fn release(
        &self,
        id: &MessageId,
        token: &str,
        due_ms: Option<u64>,
    ) -> Result<(), ScheduleError> {
        let mut connection = self.link.connection();
        let released: u64 = self
            .release
            .key(&self.due)
            .key(&self.leases)
            .key(&self.tokens)
            .arg(id.to_bytes().as_slice())
            .arg(token)
            .arg(due_ms.map(|due| due.to_string()).unwrap_or_default())
            .invoke_async(&mut connection)
            .await
            .map_err(unavailable)?;
        if released == 1
            && let Some(due) = due_ms
        {
            let _: u64 = connection
                .publish(&self.channel, due)
                .await
                .map_err(unavailable)?;
        }
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
            .map(|(_, score)| score as u64)
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
