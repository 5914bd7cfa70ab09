//! The message core with many messages stored:
//! - `fill`: `--count` messages due at once, loaded with the batch API and waited for until
//!   every one is delivered (to a recipient of their own), so that the scenarios run after it
//!   meet a database holding that many delivered messages;
//! - `pending`: `--count` messages due `--due-in` ahead (30 days), loaded with the batch API:
//!   Redis bytes per pending message (`used_memory` of the whole instance, and `MEMORY USAGE`
//!   of the index keys alone), the server's RSS per pending message (`--server-pid`: the
//!   in-process schedule's cost without Redis) and the database's bytes per message; then the
//!   idle lateness of `--idle-count` single messages beside them; then, with `--redis-loss`,
//!   the index keys deleted (`UNLINK {prefix}:due`, `:leases`, `:tokens`, `:intact`: never
//!   a flush, the Redis may be shared) and the time until the server has rebuilt the index
//!   (`:intact` back, and `ZCARD` of due + leases back to what it was).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use serde_json::{Value, json};

use super::{
    Database, Delivery, batch, client, idle_lateness, now_ms, recipient, session, used_memory,
    wait_for,
};

#[derive(Debug, Args, Clone)]
pub(crate) struct Pending {
    /// --count messages, loaded --batch-size at a time with -c batches in flight; --redis-url
    /// for the Redis figures and the loss.
    #[command(flatten)]
    delivery: Delivery,
    /// The server's Redis key prefix (`DMS_REDIS_PREFIX`): its index is `{prefix}:due`,
    /// `{prefix}:leases`, `{prefix}:tokens` and `{prefix}:intact`.
    #[arg(long, default_value = "dms")]
    redis_prefix: String,
    /// How far ahead the pending messages are due (each 1 ms after the one before).
    #[arg(long, default_value = "30days", value_parser = humantime::parse_duration)]
    due_in: Duration,
    /// Single messages whose idle lateness is measured beside the pending ones (0: none).
    #[arg(long, default_value_t = 20)]
    idle_count: u64,
    /// Then delete the index keys and time the server's rebuild (needs --redis-url).
    #[arg(long)]
    redis_loss: bool,
    /// How long to wait for the rebuild.
    #[arg(long, default_value = "300s", value_parser = humantime::parse_duration)]
    rebuild_timeout: Duration,
    /// The server's process id, to read its RSS from /proc before and after the load.
    #[arg(long)]
    server_pid: Option<u32>,
}

/// `fill`: `--count` messages due at once; returns when all are delivered.
pub(crate) async fn fill(delivery: &Delivery) -> anyhow::Result<Value> {
    let common = &delivery.common;
    let client = client(common.connections)?;
    let session = session(&client, common).await?;
    let recipient = recipient(&client, common, &session.token).await?;
    let db = Database::open(&delivery.database_url).await?;
    let since = db.done(&session.tenant_id).await?;
    let size_before = db.size_bytes().await?;
    let started = Instant::now();
    let loaded = batch::submit_batches(
        &client,
        common,
        &session.token,
        delivery.count,
        delivery.batch_size,
        common.connections,
        {
            let recipient = recipient.clone();
            move |_| json!({ "recipient_id": recipient, "content": "x".repeat(64), "delay_seconds": 0 })
        },
    )
    .await;
    let loaded_at = started.elapsed().as_secs_f64();
    db.wait_delivered(
        &session.tenant_id,
        &recipient,
        since,
        loaded.accepted as i64,
        wait_for(delivery.count) + Duration::from_secs_f64(loaded_at),
    )
    .await?;
    let seconds = started.elapsed().as_secs_f64();
    let size_after = db.size_bytes().await?;
    Ok(json!({
        "label": common.label,
        "scenario": "fill",
        "messages": delivery.count,
        "load": loaded.summary(delivery.batch_size, common.connections),
        "delivered": loaded.accepted,
        "seconds": round1(seconds),
        "delivered_per_second": (loaded.accepted as f64 / seconds).round(),
        "drained_after_load_seconds": round1(seconds - loaded_at),
        "database_bytes": size_after,
        "database_bytes_per_message": per(size_after - size_before, loaded.accepted),
    }))
}

fn round1(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

/// `delta / count`, rounded, or null without a count.
fn per(delta: i64, count: u64) -> Option<f64> {
    (count > 0).then(|| (delta as f64 / count as f64).round())
}

/// The schedule index's keys under `prefix` (host/src/schedule/redis.rs).
struct Keys {
    due: String,
    leases: String,
    tokens: String,
    intact: String,
}

impl Keys {
    fn new(prefix: &str) -> Self {
        let tag = format!("{{{prefix}}}");
        Self {
            due: format!("{tag}:due"),
            leases: format!("{tag}:leases"),
            tokens: format!("{tag}:tokens"),
            intact: format!("{tag}:intact"),
        }
    }

    /// `ZCARD` of due and of leases.
    async fn entries(
        &self,
        redis: &mut redis::aio::MultiplexedConnection,
    ) -> anyhow::Result<(i64, i64)> {
        Ok(redis::pipe()
            .cmd("ZCARD")
            .arg(&self.due)
            .cmd("ZCARD")
            .arg(&self.leases)
            .query_async(redis)
            .await?)
    }

    /// `MEMORY USAGE` of the index keys (Redis's estimate, from 5 samples of each), summed.
    async fn bytes(&self, redis: &mut redis::aio::MultiplexedConnection) -> anyhow::Result<i64> {
        let mut total = 0;
        for key in [&self.due, &self.leases, &self.tokens, &self.intact] {
            let usage: Option<i64> = redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(key)
                .query_async(redis)
                .await?;
            total += usage.unwrap_or(0);
        }
        Ok(total)
    }
}

/// `pending`: see the module's documentation.
pub(crate) async fn pending(args: &Pending) -> anyhow::Result<Value> {
    let delivery = &args.delivery;
    let common = &delivery.common;
    if args.redis_loss && delivery.redis_url.is_none() {
        bail!("--redis-loss needs --redis-url");
    }
    let mut redis = match &delivery.redis_url {
        Some(url) => Some(
            redis::Client::open(url.as_str())?
                .get_multiplexed_async_connection()
                .await
                .context("cannot reach Redis")?,
        ),
        None => None,
    };
    let keys = Keys::new(&args.redis_prefix);
    let client = client(common.connections)?;
    let session = session(&client, common).await?;
    let recipient = recipient(&client, common, &session.token).await?;
    let db = Database::open(&delivery.database_url).await?;

    let rss = || args.server_pid.map(super::realtime::rss_bytes).transpose();
    let rss_before = rss()?;
    let size_before = db.size_bytes().await?;
    let redis_before = match redis.as_mut() {
        Some(redis) => Some((
            used_memory(redis).await?,
            keys.bytes(redis).await?,
            keys.entries(redis).await?,
        )),
        None => None,
    };
    let first_due = now_ms() + args.due_in.as_millis() as u64;
    let loaded = batch::submit_batches(
        &client,
        common,
        &session.token,
        delivery.count,
        delivery.batch_size,
        common.connections,
        move |n| super::message(&recipient, first_due + n),
    )
    .await;
    // Let the last index writes and the server's allocator settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let count = loaded.accepted;
    let rss_after = rss()?;
    let size_after = db.size_bytes().await?;
    let redis_figures = match (redis.as_mut(), redis_before) {
        (Some(redis), Some((used_before, index_before, (due_before, _)))) => {
            let used_after = used_memory(redis).await?;
            let index_after = keys.bytes(redis).await?;
            let (due_after, leases_after) = keys.entries(redis).await?;
            Some(json!({
                "used_memory_before": used_before,
                "used_memory_after": used_after,
                "used_memory_bytes_per_message": per(used_after - used_before, count),
                "index_bytes_before": index_before,
                "index_bytes_after": index_after,
                "index_bytes_per_message": per(index_after - index_before, count),
                "due_entries_added": due_after - due_before,
                "leases_after": leases_after,
            }))
        }
        _ => None,
    };

    let idle = if args.idle_count > 0 {
        let (messages, lateness) =
            idle_lateness(&client, common, &session, &db, args.idle_count).await?;
        Some(json!({ "messages": messages, "lateness_ms": lateness }))
    } else {
        None
    };

    let loss = match (args.redis_loss, redis.as_mut()) {
        (true, Some(redis)) => Some(redis_loss(redis, &keys, args.rebuild_timeout).await?),
        _ => None,
    };
    // A delivery after the loss: the index works again.
    let idle_after_loss = if loss.is_some() && args.idle_count > 0 {
        let (messages, lateness) =
            idle_lateness(&client, common, &session, &db, args.idle_count.min(5)).await?;
        Some(json!({ "messages": messages, "lateness_ms": lateness }))
    } else {
        None
    };

    Ok(json!({
        "label": common.label,
        "scenario": "pending",
        "pending": count,
        "load": loaded.summary(delivery.batch_size, common.connections),
        "redis": redis_figures,
        "server_rss_before": rss_before,
        "server_rss_after": rss_after,
        "server_rss_bytes_per_message": rss_before.zip(rss_after).and_then(|(before, after)| per(after as i64 - before as i64, count)),
        "database_bytes": size_after,
        "database_bytes_per_message": per(size_after - size_before, count),
        "idle": idle,
        "redis_loss": loss,
        "idle_after_loss": idle_after_loss,
    }))
}

/// Deletes the index keys and waits for the server to rebuild them.
async fn redis_loss(
    redis: &mut redis::aio::MultiplexedConnection,
    keys: &Keys,
    timeout: Duration,
) -> anyhow::Result<Value> {
    let (due, leases) = keys.entries(redis).await?;
    let target = due + leases;
    let started = Instant::now();
    // UNLINK frees the members in the background: a DEL of millions would stall the
    // Redis for everyone sharing it.
    let _: i64 = redis::cmd("UNLINK")
        .arg(&keys.due)
        .arg(&keys.leases)
        .arg(&keys.tokens)
        .arg(&keys.intact)
        .query_async(redis)
        .await?;
    let deleted_ms = started.elapsed().as_secs_f64() * 1000.0;
    let mut intact_seconds = None;
    let mut whole_seconds = None;
    let mut entries = 0;
    while started.elapsed() < timeout {
        let intact: bool = redis::cmd("EXISTS")
            .arg(&keys.intact)
            .query_async(redis)
            .await?;
        let (due, leases) = keys.entries(redis).await?;
        entries = due + leases;
        let at = started.elapsed().as_secs_f64();
        if intact && intact_seconds.is_none() {
            intact_seconds = Some(round3(at));
        }
        if intact && entries >= target {
            whole_seconds = Some(round3(at));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(json!({
        "entries_before": target,
        "unlink_ms": (deleted_ms * 10.0).round() / 10.0,
        "intact_after_seconds": intact_seconds,
        "whole_after_seconds": whole_seconds,
        "entries_at_end": entries,
        "timeout_seconds": timeout.as_secs(),
    }))
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}
