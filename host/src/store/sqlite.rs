//! The embedded default: one SQLite file in WAL mode, created on first start. Its batched
//! statements bind one JSON array of rows and read it with `json_each` (`value ->> n` is
//! column `n`; blobs travel as hex and come back with `unhex`).
//!
//! SQLite allows one writer at a time. Many pooled connections competing for the write lock
//! spend their time in SQLite's busy handler, which sleeps in growing steps (a submit's p99 was
//! 222 ms, its max 1.9 s, at 1,200 submits/s). So writes go through a pool of exactly one
//! connection, where they queue in order and never contend, while reads use the others
//! concurrently (WAL lets readers run beside the writer).

use std::collections::HashSet;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions,
    SqliteQueryResult, SqliteSynchronous,
};
use sqlx::{Pool, Sqlite, Transaction};

use super::StoreError;
use super::backend::{Backend, FinishRow};
use super::crypto::Keyring;
use super::rows::{
    self, ClaimRow, CountDelta, FeedInsertRow, FlowRouteRow, IdempotencyKeyRow, MESSAGE_COLUMNS,
    MessageRow, NewMessageRow, SecretRow, StepRow, WebhookRow,
};
use super::sql::SqlStore;
use crate::domain::ids::{MessageId, TenantId, UserId};
use crate::domain::message::Status;

/// The schema, embedded.
pub(super) static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

/// How long a connection waits for another's write to finish before giving up. Writes are
/// short; this only matters under heavy concurrent writing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The SQLite store.
pub(super) type SqliteStore = SqlStore<Sqlite>;

impl SqlStore<Sqlite> {
    /// Opens (creating if needed) the database file at `path` and migrates it.
    pub(super) async fn connect(
        path: &Path,
        max_connections: u32,
        keyring: Arc<Keyring>,
    ) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|error| {
                StoreError::Config(format!("cannot create {}: {error}", parent.display()))
            })?;
        }
        let options = connect_options(path)?.create_if_missing(true);
        let open = |connections: u32| {
            SqlitePoolOptions::new()
                .max_connections(connections)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options.clone())
        };
        let unavailable = |error: sqlx::Error| {
            StoreError::Unavailable(format!("cannot open {}: {error}", path.display()))
        };
        let writer = open(1).await.map_err(unavailable)?;
        MIGRATIONS.run(&writer).await?;
        let pool = open(max_connections.max(1)).await.map_err(unavailable)?;
        Ok(Self {
            pool,
            writer,
            keyring,
            feed: super::FeedNotifier::default(),
        })
    }
}

/// How every connection to the file is opened (WAL, foreign keys, busy timeout); the file is
/// not created unless the caller adds `create_if_missing` (a backup must not create one).
pub(super) fn connect_options(path: &Path) -> Result<SqliteConnectOptions, StoreError> {
    Ok(SqliteConnectOptions::from_str("sqlite://")
        .map_err(|error| StoreError::Config(error.to_string()))?
        .filename(path)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT))
}

const INSERT_MESSAGES: &str = "INSERT INTO messages (id, tenant_id, sender_id, recipient_id, \
     channel, content_type, metadata, key_id, nonce, content, requested_kind, requested_ms, \
     created_at_ms, flow_key, fan_out_id) \
     SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, \
     value ->> 6, value ->> 7, unhex(value ->> 8), unhex(value ->> 9), value ->> 10, \
     value ->> 11, value ->> 12, value ->> 13, value ->> 14 FROM json_each($1)";
const INSERT_STATES: &str = "INSERT INTO message_states \
     (message_id, tenant_id, status, deliver_at_ms, attempts, updated_at_ms) \
     SELECT value ->> 0, value ->> 1, 'scheduled', value ->> 2, 0, $2 FROM json_each($1)";
const INSERT_STEPS: &str = "INSERT INTO message_events (message_id, at_ms, kind, from_status, \
     to_status, attempt, result, duration_ms, plugin_name, plugin_digest, steps) \
     SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, \
     value ->> 6, value ->> 7, value ->> 8, value ->> 9, value ->> 10 FROM json_each($1)";
const ADD_COUNTS: &str = "INSERT INTO message_counts (tenant_id, status, shard, count) \
     SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3 FROM json_each($1) WHERE true \
     ON CONFLICT (tenant_id, status, shard) \
     DO UPDATE SET count = message_counts.count + excluded.count";
const DELETE_EXPIRED_KEYS: &str = "DELETE FROM idempotency_keys \
     WHERE (tenant_id, user_id, key) IN \
     (SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each($1)) AND created_at_ms < $2";
const INSERT_KEYS: &str = "INSERT INTO idempotency_keys \
     (tenant_id, user_id, key, request_hash, response, created_at_ms) \
     SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5 \
     FROM json_each($1) WHERE true ON CONFLICT DO NOTHING RETURNING user_id, key";
const ASKED: &str = "SELECT message_id, tenant_id, status, deliver_at_ms, lease_until_ms \
     FROM message_states WHERE message_id IN (SELECT value FROM json_each($1))";
const TAKE: &str = "UPDATE message_states SET status = 'delivering', lease_token = $2, \
     lease_until_ms = $4, attempts = attempts + 1, updated_at_ms = $3 \
     WHERE message_id IN (SELECT value FROM json_each($1)) AND ( \
       (status IN ('scheduled', 'retrying') AND deliver_at_ms <= $3) \
       OR (status = 'delivering' AND lease_until_ms <= $3))";
const FINISH_STATES: &str = "UPDATE message_states SET status = v.status, \
     deliver_at_ms = COALESCE(v.deliver_at_ms, message_states.deliver_at_ms), \
     last_error = COALESCE(v.error, message_states.last_error), \
     delivered_at_ms = CASE WHEN v.status = 'delivered' THEN v.at_ms \
       ELSE message_states.delivered_at_ms END, \
     lease_token = NULL, lease_until_ms = NULL, updated_at_ms = v.at_ms \
     FROM (SELECT value ->> 0 AS id, value ->> 1 AS token, value ->> 2 AS status, \
       value ->> 3 AS deliver_at_ms, value ->> 4 AS error, value ->> 5 AS at_ms \
       FROM json_each($1)) AS v \
     WHERE message_states.message_id = v.id AND message_states.lease_token = v.token \
     AND message_states.status = 'delivering' RETURNING message_id";
const ADVANCE_FEED_HEADS: &str = "INSERT INTO feed_heads (tenant_id, user_id, last_cursor) \
     SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each($1) WHERE true \
     ON CONFLICT (tenant_id, user_id) \
     DO UPDATE SET last_cursor = feed_heads.last_cursor + excluded.last_cursor \
     RETURNING tenant_id, user_id, last_cursor";
const INSERT_FEED: &str = "INSERT INTO feed_events \
     (tenant_id, user_id, cursor_no, at_ms, kind, key_id, nonce, body, message_id) \
     SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, \
     unhex(value ->> 6), unhex(value ->> 7), value ->> 8 FROM json_each($1)";
const WEBHOOKS: &str = "SELECT user_id, tenant_id, url, created_at_ms, disabled_reason \
     FROM webhooks WHERE user_id IN (SELECT value FROM json_each($1))";
const WEBHOOK_SECRETS: &str = "SELECT user_id, id, key_id, nonce, secret FROM webhook_secrets \
     WHERE user_id IN (SELECT value FROM json_each($1)) \
     AND (expires_at_ms IS NULL OR expires_at_ms > $2) \
     ORDER BY user_id, created_at_ms DESC, id DESC";
/// Claimed messages and what their flow keys derive from; `$2` is the status callbacks' media
/// type (a callback's key is its owner's callback URL).
const FLOW_ROUTES: &str = "SELECT m.id, m.tenant_id, m.recipient_id, m.channel, m.flow_key, \
     COALESCE(c.url, w.url) AS url, s.deliver_at_ms \
     FROM messages m JOIN message_states s ON s.message_id = m.id \
     LEFT JOIN webhooks w ON w.user_id = m.recipient_id AND w.tenant_id = m.tenant_id \
     AND m.channel = 'webhook' \
     LEFT JOIN callbacks c ON c.user_id = m.recipient_id AND c.tenant_id = m.tenant_id \
     AND m.channel = 'webhook' AND m.content_type = $2 \
     WHERE m.id IN (SELECT value FROM json_each($1))";
const CALLBACK_EVENTS: &str = "SELECT c.user_id, c.tenant_id, c.events FROM callbacks c \
     JOIN users u ON u.id = c.user_id WHERE u.deleted_at_ms IS NULL AND c.user_id IN (SELECT value FROM json_each($1))";
const LIVE_USERS: &str = "SELECT id FROM users \
     WHERE tenant_id = $1 AND deleted_at_ms IS NULL AND id IN (SELECT value FROM json_each($2))";
const INSERT_MEMBERS: &str = "INSERT INTO group_members (group_id, tenant_id, user_id, \
     added_at_ms) SELECT $1, $2, id, $3 FROM users WHERE tenant_id = $2 \
     AND deleted_at_ms IS NULL AND id IN (SELECT value FROM json_each($4)) \
     ON CONFLICT (group_id, user_id) DO NOTHING";
const DELETE_EVENTS: &str =
    "DELETE FROM message_events WHERE message_id IN (SELECT value FROM json_each($1))";
const DELETE_STATES: &str =
    "DELETE FROM message_states WHERE message_id IN (SELECT value FROM json_each($1))";
const DELETE_MESSAGES: &str = "DELETE FROM messages WHERE id IN (SELECT value FROM json_each($1))";

/// Rows as the one JSON array a batched statement binds.
fn json_rows<T>(rows: &[T], row: impl Fn(&T) -> Value) -> String {
    Value::Array(rows.iter().map(row).collect()).to_string()
}

/// A list of ids as a JSON array.
fn json_ids<'a>(ids: impl IntoIterator<Item = &'a str>) -> String {
    Value::Array(ids.into_iter().map(Value::from).collect()).to_string()
}

/// A state read for a claim.
#[derive(sqlx::FromRow)]
struct AskedRow {
    message_id: MessageId,
    tenant_id: TenantId,
    #[sqlx(try_from = "String")]
    status: Status,
    deliver_at_ms: i64,
    lease_until_ms: Option<i64>,
}

impl AskedRow {
    /// Whether a claim at `now_ms` takes it (the same rule as [`TAKE`]).
    fn claimable(&self, now_ms: i64) -> bool {
        match self.status {
            Status::Scheduled | Status::Retrying => self.deliver_at_ms <= now_ms,
            Status::Delivering => self.lease_until_ms.is_some_and(|until| until <= now_ms),
            _ => false,
        }
    }
}

#[async_trait::async_trait]
impl Backend for Sqlite {
    const BACKEND: &'static str = "sqlite";
    const COUNT_SHARDS: u32 = 1;
    const LOCK_ROWS: &'static str = "";

    fn rows_affected(result: &SqliteQueryResult) -> u64 {
        result.rows_affected()
    }

    async fn begin_write(pool: &Pool<Self>) -> Result<Transaction<'static, Self>, sqlx::Error> {
        pool.begin_with("BEGIN IMMEDIATE").await
    }

    async fn insert_messages(
        conn: &mut SqliteConnection,
        rows: &[NewMessageRow<'_>],
    ) -> Result<(), sqlx::Error> {
        let rows = json_rows(rows, |row| {
            json!([
                row.id,
                row.tenant_id,
                row.sender_id,
                row.recipient_id,
                row.channel,
                row.content_type,
                row.metadata,
                row.key_id,
                hex::encode(&row.nonce),
                hex::encode(&row.content),
                row.requested_kind,
                row.requested_ms,
                row.created_at_ms,
                row.flow_key,
                row.fan_out_id,
            ])
        });
        sqlx::query(INSERT_MESSAGES)
            .bind(rows)
            .execute(conn)
            .await?;
        Ok(())
    }

    async fn insert_states(
        conn: &mut SqliteConnection,
        rows: &[NewMessageRow<'_>],
        now_ms: i64,
    ) -> Result<(), sqlx::Error> {
        let rows = json_rows(rows, |row| {
            json!([row.id, row.tenant_id, row.deliver_at_ms])
        });
        sqlx::query(INSERT_STATES)
            .bind(rows)
            .bind(now_ms)
            .execute(conn)
            .await?;
        Ok(())
    }

    async fn insert_steps(
        conn: &mut SqliteConnection,
        rows: &[StepRow<'_>],
    ) -> Result<(), sqlx::Error> {
        if rows.is_empty() {
            return Ok(());
        }
        let rows = json_rows(rows, |row| {
            json!([
                row.message_id,
                row.at_ms,
                row.kind,
                row.from_status,
                row.to_status,
                row.attempt,
                row.result,
                row.duration_ms,
                row.plugin_name,
                row.plugin_digest,
                row.steps,
            ])
        });
        sqlx::query(INSERT_STEPS).bind(rows).execute(conn).await?;
        Ok(())
    }

    async fn add_counts(
        conn: &mut SqliteConnection,
        deltas: &[CountDelta],
    ) -> Result<(), sqlx::Error> {
        if deltas.is_empty() {
            return Ok(());
        }
        let rows = json_rows(deltas, |delta| {
            json!([delta.tenant_id, delta.status, delta.shard, delta.delta])
        });
        sqlx::query(ADD_COUNTS).bind(rows).execute(conn).await?;
        Ok(())
    }

    async fn insert_idempotency_keys(
        conn: &mut SqliteConnection,
        keys: &[IdempotencyKeyRow<'_>],
        horizon_ms: i64,
    ) -> Result<Vec<(String, String)>, sqlx::Error> {
        let names = json_rows(keys, |key| json!([key.tenant_id, key.user_id, key.key]));
        sqlx::query(DELETE_EXPIRED_KEYS)
            .bind(names)
            .bind(horizon_ms)
            .execute(&mut *conn)
            .await?;
        let rows = json_rows(keys, |key| {
            json!([
                key.tenant_id,
                key.user_id,
                key.key,
                key.request_hash,
                key.response,
                key.created_at_ms,
            ])
        });
        sqlx::query_as(INSERT_KEYS).bind(rows).fetch_all(conn).await
    }

    async fn claim(
        pool: &Pool<Self>,
        ids: &[MessageId],
        token: &str,
        now_ms: i64,
        lease_until_ms: i64,
        shard: i64,
    ) -> Result<Vec<ClaimRow>, sqlx::Error> {
        let mut tx = Self::begin_write(pool).await?;
        let asked: Vec<AskedRow> = sqlx::query_as(ASKED)
            .bind(json_ids(ids.iter().map(MessageId::as_str)))
            .fetch_all(&mut *tx)
            .await?;
        let taken: Vec<&AskedRow> = asked.iter().filter(|row| row.claimable(now_ms)).collect();
        if !taken.is_empty() {
            sqlx::query(TAKE)
                .bind(json_ids(taken.iter().map(|row| row.message_id.as_str())))
                .bind(token)
                .bind(now_ms)
                .bind(lease_until_ms)
                .execute(&mut *tx)
                .await?;
            let deltas = rows::count_deltas(
                taken
                    .iter()
                    .map(|row| (&row.tenant_id, Some(row.status), Some(Status::Delivering))),
                shard,
            );
            Self::add_counts(&mut tx, &deltas).await?;
        }
        tx.commit().await?;
        let taken: HashSet<&MessageId> = taken.iter().map(|row| &row.message_id).collect();
        Ok(asked
            .iter()
            .map(|row| ClaimRow {
                message_id: row.message_id.clone(),
                previous: row.status,
                deliver_at_ms: row.deliver_at_ms,
                lease_until_ms: row.lease_until_ms,
                claimed: taken.contains(&row.message_id),
            })
            .collect())
    }

    async fn messages(
        conn: &mut SqliteConnection,
        ids: &[&str],
    ) -> Result<Vec<MessageRow>, sqlx::Error> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m \
             JOIN message_states s ON s.message_id = m.id \
             WHERE m.id IN (SELECT value FROM json_each($1))"
        );
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(json_ids(ids.iter().copied()))
            .fetch_all(conn)
            .await
    }

    async fn finish_states(
        conn: &mut SqliteConnection,
        rows: &[FinishRow<'_>],
    ) -> Result<Vec<MessageId>, sqlx::Error> {
        let rows = json_rows(rows, |row| {
            json!([
                row.id,
                row.token,
                row.status,
                row.deliver_at_ms,
                row.error,
                row.at_ms,
            ])
        });
        sqlx::query_scalar(FINISH_STATES)
            .bind(rows)
            .fetch_all(conn)
            .await
    }

    async fn advance_feed_heads(
        conn: &mut SqliteConnection,
        heads: &[(&TenantId, &UserId, i64)],
    ) -> Result<Vec<(TenantId, UserId, i64)>, sqlx::Error> {
        let rows = json_rows(heads, |(tenant, user, count)| json!([tenant, user, count]));
        sqlx::query_as(ADVANCE_FEED_HEADS)
            .bind(rows)
            .fetch_all(conn)
            .await
    }

    async fn insert_feed(
        conn: &mut SqliteConnection,
        rows: &[FeedInsertRow],
    ) -> Result<(), sqlx::Error> {
        let rows = json_rows(rows, |row| {
            json!([
                row.tenant_id,
                row.user_id,
                row.cursor_no,
                row.at_ms,
                row.kind,
                row.key_id,
                hex::encode(&row.nonce),
                hex::encode(&row.body),
                row.message_id,
            ])
        });
        sqlx::query(INSERT_FEED).bind(rows).execute(conn).await?;
        Ok(())
    }

    async fn webhooks(
        pool: &Pool<Self>,
        users: &[&str],
        now_ms: i64,
    ) -> Result<(Vec<WebhookRow>, Vec<SecretRow>), sqlx::Error> {
        let ids = json_ids(users.iter().copied());
        let webhooks = sqlx::query_as(WEBHOOKS).bind(&ids).fetch_all(pool).await?;
        let secrets = sqlx::query_as(WEBHOOK_SECRETS)
            .bind(&ids)
            .bind(now_ms)
            .fetch_all(pool)
            .await?;
        Ok((webhooks, secrets))
    }

    async fn flow_routes(
        pool: &Pool<Self>,
        ids: &[&str],
    ) -> Result<Vec<FlowRouteRow>, sqlx::Error> {
        sqlx::query_as(FLOW_ROUTES)
            .bind(json_ids(ids.iter().copied()))
            .bind(crate::domain::callback::CONTENT_TYPE)
            .fetch_all(pool)
            .await
    }

    async fn live_users(
        pool: &Pool<Self>,
        tenant: &str,
        ids: &[&str],
    ) -> Result<Vec<UserId>, sqlx::Error> {
        sqlx::query_scalar(LIVE_USERS)
            .bind(tenant)
            .bind(json_ids(ids.iter().copied()))
            .fetch_all(pool)
            .await
    }

    async fn insert_members(
        conn: &mut SqliteConnection,
        tenant: &str,
        group: &str,
        users: &[&str],
        now_ms: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(INSERT_MEMBERS)
            .bind(group)
            .bind(tenant)
            .bind(now_ms)
            .bind(json_ids(users.iter().copied()))
            .execute(conn)
            .await?;
        Ok(())
    }

    async fn callback_events(
        conn: &mut SqliteConnection,
        users: &[&str],
    ) -> Result<Vec<(UserId, TenantId, String)>, sqlx::Error> {
        sqlx::query_as(CALLBACK_EVENTS)
            .bind(json_ids(users.iter().copied()))
            .fetch_all(conn)
            .await
    }

    async fn delete_messages(conn: &mut SqliteConnection, ids: &[&str]) -> Result<(), sqlx::Error> {
        let ids = json_ids(ids.iter().copied());
        for statement in [DELETE_EVENTS, DELETE_STATES, DELETE_MESSAGES] {
            sqlx::query(statement)
                .bind(&ids)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }
}
