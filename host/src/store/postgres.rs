//! Scale-out storage: PostgreSQL, shared by any number of `dms serve` nodes. Its batched
//! statements bind one array per column and read them with `UNNEST` (ids with `= ANY($1)`).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions, PgQueryResult};
use sqlx::{Pool, Postgres, Transaction};

use super::StoreError;
use super::backend::{Backend, FinishRow};
use super::crypto::Keyring;
use super::rows::{
    ClaimRow, CountDelta, FeedInsertRow, FlowRouteRow, IdempotencyKeyRow, MESSAGE_COLUMNS,
    MessageRow, NewMessageRow, SecretRow, StepRow, WebhookRow,
};
use super::sql::SqlStore;
use crate::domain::ids::{MessageId, TenantId, UserId};

/// The schema, embedded.
pub(super) static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// The PostgreSQL store.
pub(super) type PostgresStore = SqlStore<Postgres>;

impl SqlStore<Postgres> {
    /// Connects to `url` and migrates the database. Concurrent starts of several nodes are
    /// safe: sqlx serializes migrations with an advisory lock.
    pub(super) async fn connect(
        url: &str,
        max_connections: u32,
        keyring: Arc<Keyring>,
    ) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|error| StoreError::Config(format!("invalid DATABASE_URL: {error}")))?;
        // DB_MAX_CONNECTIONS in all: half for reads, half for writes (at least one each).
        let open = |size: u32| {
            PgPoolOptions::new()
                .max_connections(size.max(1))
                .acquire_timeout(Duration::from_secs(5))
                .connect_with(options.clone())
        };
        let unavailable =
            |error| StoreError::Unavailable(format!("cannot connect to PostgreSQL: {error}"));
        let pool = open(max_connections / 2).await.map_err(unavailable)?;
        let writer = open(max_connections - max_connections / 2)
            .await
            .map_err(unavailable)?;
        MIGRATIONS.run(&writer).await?;
        Ok(Self {
            pool,
            writer,
            keyring,
            feed: super::FeedNotifier::default(),
        })
    }
}

const INSERT_MESSAGES: &str = "INSERT INTO messages (id, tenant_id, sender_id, recipient_id, \
     channel, content_type, metadata, key_id, nonce, content, requested_kind, requested_ms, \
     created_at_ms, flow_key, fan_out_id) \
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
     $6::text[], $7::text[], $8::text[], $9::bytea[], $10::bytea[], $11::text[], $12::bigint[], \
     $13::bigint[], $14::text[], $15::text[])";
const INSERT_STATES: &str = "INSERT INTO message_states \
     (message_id, tenant_id, status, deliver_at_ms, attempts, updated_at_ms) \
     SELECT id, tenant_id, 'scheduled', due, 0, $4 \
     FROM UNNEST($1::text[], $2::text[], $3::bigint[]) AS v(id, tenant_id, due)";
const INSERT_STEPS: &str = "INSERT INTO message_events (message_id, at_ms, kind, from_status, \
     to_status, attempt, result, duration_ms, plugin_name, plugin_digest, steps) \
     SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], \
     $6::bigint[], $7::text[], $8::bigint[], $9::text[], $10::text[], $11::text[])";
const ADD_COUNTS: &str = "INSERT INTO message_counts (tenant_id, status, shard, count) \
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[]) \
     ON CONFLICT (tenant_id, status, shard) \
     DO UPDATE SET count = message_counts.count + excluded.count";
const DELETE_EXPIRED_KEYS: &str = "DELETE FROM idempotency_keys k \
     USING UNNEST($1::text[], $2::text[], $3::text[]) AS v(tenant_id, user_id, key) \
     WHERE k.tenant_id = v.tenant_id AND k.user_id = v.user_id AND k.key = v.key \
     AND k.created_at_ms < $4";
const INSERT_KEYS: &str = "INSERT INTO idempotency_keys \
     (tenant_id, user_id, key, request_hash, response, created_at_ms) \
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
     $6::bigint[]) ON CONFLICT DO NOTHING RETURNING user_id, key";
/// The claim, one statement: lock the asked rows, move the claimable ones to `delivering`
/// under the lease ($2 token, $3 now, $4 lease end), count the statuses they left and entered
/// (in shard $5), and say of every asked row what it was and whether it was taken.
const CLAIM: &str = "WITH asked AS ( \
       SELECT message_id, tenant_id, status, deliver_at_ms, lease_until_ms FROM message_states \
       WHERE message_id = ANY($1) FOR UPDATE), \
     taken AS ( \
       UPDATE message_states s SET status = 'delivering', lease_token = $2, \
       lease_until_ms = $4, attempts = s.attempts + 1, updated_at_ms = $3 \
       FROM asked a WHERE s.message_id = a.message_id AND ( \
         (a.status IN ('scheduled', 'retrying') AND a.deliver_at_ms <= $3) \
         OR (a.status = 'delivering' AND a.lease_until_ms <= $3)) \
       RETURNING s.message_id, s.tenant_id, a.status AS previous), \
     counted AS ( \
       INSERT INTO message_counts (tenant_id, status, shard, count) \
       SELECT tenant_id, status, $5, SUM(delta) FROM ( \
         SELECT tenant_id, previous AS status, -1 AS delta FROM taken \
         WHERE previous <> 'delivering' \
         UNION ALL SELECT tenant_id, 'delivering', 1 FROM taken \
         WHERE previous <> 'delivering') d \
       GROUP BY tenant_id, status ORDER BY tenant_id, status \
       ON CONFLICT (tenant_id, status, shard) \
       DO UPDATE SET count = message_counts.count + excluded.count) \
     SELECT a.message_id, a.status AS previous, a.deliver_at_ms, a.lease_until_ms, \
       (t.message_id IS NOT NULL) AS claimed \
     FROM asked a LEFT JOIN taken t ON t.message_id = a.message_id";
const FINISH_STATES: &str = "UPDATE message_states s SET status = v.status, \
     deliver_at_ms = COALESCE(v.deliver_at_ms, s.deliver_at_ms), \
     last_error = COALESCE(v.error, s.last_error), \
     delivered_at_ms = CASE WHEN v.status = 'delivered' THEN v.at_ms ELSE s.delivered_at_ms END, \
     lease_token = NULL, lease_until_ms = NULL, updated_at_ms = v.at_ms \
     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::bigint[]) \
     AS v(id, token, status, deliver_at_ms, error, at_ms) \
     WHERE s.message_id = v.id AND s.lease_token = v.token AND s.status = 'delivering' \
     RETURNING s.message_id";
const ADVANCE_FEED_HEADS: &str = "INSERT INTO feed_heads (tenant_id, user_id, last_cursor) \
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[]) \
     ON CONFLICT (tenant_id, user_id) \
     DO UPDATE SET last_cursor = feed_heads.last_cursor + excluded.last_cursor \
     RETURNING tenant_id, user_id, last_cursor";
const INSERT_FEED: &str = "INSERT INTO feed_events \
     (tenant_id, user_id, cursor_no, at_ms, kind, key_id, nonce, body, message_id) \
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], \
     $6::text[], $7::bytea[], $8::bytea[], $9::text[])";
const WEBHOOKS: &str = "SELECT user_id, tenant_id, url, created_at_ms, disabled_reason \
     FROM webhooks WHERE user_id = ANY($1)";
const WEBHOOK_SECRETS: &str = "SELECT user_id, id, key_id, nonce, secret FROM webhook_secrets \
     WHERE user_id = ANY($1) AND (expires_at_ms IS NULL OR expires_at_ms > $2) \
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
     WHERE m.id = ANY($1)";
const CALLBACK_EVENTS: &str = "SELECT c.user_id, c.tenant_id, c.events FROM callbacks c \
     JOIN users u ON u.id = c.user_id WHERE u.deleted_at_ms IS NULL AND c.user_id = ANY($1)";
const LIVE_USERS: &str = "SELECT id FROM users \
     WHERE tenant_id = $1 AND deleted_at_ms IS NULL AND id = ANY($2)";
const INSERT_MEMBERS: &str = "INSERT INTO group_members (group_id, tenant_id, user_id, \
     added_at_ms) SELECT $1, $2, id, $3 FROM users WHERE tenant_id = $2 \
     AND deleted_at_ms IS NULL AND id = ANY($4) \
     ON CONFLICT (group_id, user_id) DO NOTHING";
const DELETE_EVENTS: &str = "DELETE FROM message_events WHERE message_id = ANY($1)";
const DELETE_STATES: &str = "DELETE FROM message_states WHERE message_id = ANY($1)";
const DELETE_MESSAGES: &str = "DELETE FROM messages WHERE id = ANY($1)";

/// One column of every row, as the array bound for it.
fn column<'a, T, U>(rows: &'a [T], value: impl Fn(&'a T) -> U) -> Vec<U> {
    rows.iter().map(value).collect()
}

#[async_trait::async_trait]
impl Backend for Postgres {
    const BACKEND: &'static str = "postgres";
    const COUNT_SHARDS: u32 = 16;
    const LOCK_ROWS: &'static str = " FOR UPDATE";

    fn rows_affected(result: &PgQueryResult) -> u64 {
        result.rows_affected()
    }

    async fn begin_write(pool: &Pool<Self>) -> Result<Transaction<'static, Self>, sqlx::Error> {
        pool.begin().await
    }

    async fn insert_messages(
        conn: &mut PgConnection,
        rows: &[NewMessageRow<'_>],
    ) -> Result<(), sqlx::Error> {
        sqlx::query(INSERT_MESSAGES)
            .bind(column(rows, |row| row.id))
            .bind(column(rows, |row| row.tenant_id))
            .bind(column(rows, |row| row.sender_id))
            .bind(column(rows, |row| row.recipient_id))
            .bind(column(rows, |row| row.channel))
            .bind(column(rows, |row| row.content_type))
            .bind(column(rows, |row| row.metadata.as_str()))
            .bind(column(rows, |row| row.key_id.as_str()))
            .bind(column(rows, |row| row.nonce.as_slice()))
            .bind(column(rows, |row| row.content.as_slice()))
            .bind(column(rows, |row| row.requested_kind))
            .bind(column(rows, |row| row.requested_ms))
            .bind(column(rows, |row| row.created_at_ms))
            .bind(column(rows, |row| row.flow_key))
            .bind(column(rows, |row| row.fan_out_id))
            .execute(conn)
            .await?;
        Ok(())
    }

    async fn insert_states(
        conn: &mut PgConnection,
        rows: &[NewMessageRow<'_>],
        now_ms: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(INSERT_STATES)
            .bind(column(rows, |row| row.id))
            .bind(column(rows, |row| row.tenant_id))
            .bind(column(rows, |row| row.deliver_at_ms))
            .bind(now_ms)
            .execute(conn)
            .await?;
        Ok(())
    }

    async fn insert_steps(
        conn: &mut PgConnection,
        rows: &[StepRow<'_>],
    ) -> Result<(), sqlx::Error> {
        if rows.is_empty() {
            return Ok(());
        }
        sqlx::query(INSERT_STEPS)
            .bind(column(rows, |row| row.message_id))
            .bind(column(rows, |row| row.at_ms))
            .bind(column(rows, |row| row.kind))
            .bind(column(rows, |row| row.from_status))
            .bind(column(rows, |row| row.to_status))
            .bind(column(rows, |row| row.attempt))
            .bind(column(rows, |row| row.result.as_str()))
            .bind(column(rows, |row| row.duration_ms))
            .bind(column(rows, |row| row.plugin_name.as_deref()))
            .bind(column(rows, |row| row.plugin_digest.as_deref()))
            .bind(column(rows, |row| row.steps.as_str()))
            .execute(conn)
            .await?;
        Ok(())
    }

    async fn add_counts(conn: &mut PgConnection, deltas: &[CountDelta]) -> Result<(), sqlx::Error> {
        if deltas.is_empty() {
            return Ok(());
        }
        sqlx::query(ADD_COUNTS)
            .bind(column(deltas, |delta| delta.tenant_id.as_str()))
            .bind(column(deltas, |delta| delta.status))
            .bind(column(deltas, |delta| delta.shard))
            .bind(column(deltas, |delta| delta.delta))
            .execute(conn)
            .await?;
        Ok(())
    }

    async fn insert_idempotency_keys(
        conn: &mut PgConnection,
        keys: &[IdempotencyKeyRow<'_>],
        horizon_ms: i64,
    ) -> Result<Vec<(String, String)>, sqlx::Error> {
        sqlx::query(DELETE_EXPIRED_KEYS)
            .bind(column(keys, |key| key.tenant_id))
            .bind(column(keys, |key| key.user_id))
            .bind(column(keys, |key| key.key))
            .bind(horizon_ms)
            .execute(&mut *conn)
            .await?;
        sqlx::query_as(INSERT_KEYS)
            .bind(column(keys, |key| key.tenant_id))
            .bind(column(keys, |key| key.user_id))
            .bind(column(keys, |key| key.key))
            .bind(column(keys, |key| key.request_hash))
            .bind(column(keys, |key| key.response))
            .bind(column(keys, |key| key.created_at_ms))
            .fetch_all(conn)
            .await
    }

    async fn claim(
        pool: &Pool<Self>,
        ids: &[MessageId],
        token: &str,
        now_ms: i64,
        lease_until_ms: i64,
        shard: i64,
    ) -> Result<Vec<ClaimRow>, sqlx::Error> {
        sqlx::query_as(CLAIM)
            .bind(column(ids, MessageId::as_str))
            .bind(token)
            .bind(now_ms)
            .bind(lease_until_ms)
            .bind(shard)
            .fetch_all(pool)
            .await
    }

    async fn messages(
        conn: &mut PgConnection,
        ids: &[&str],
    ) -> Result<Vec<MessageRow>, sqlx::Error> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m \
             JOIN message_states s ON s.message_id = m.id WHERE m.id = ANY($1)"
        );
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(ids)
            .fetch_all(conn)
            .await
    }

    async fn finish_states(
        conn: &mut PgConnection,
        rows: &[FinishRow<'_>],
    ) -> Result<Vec<MessageId>, sqlx::Error> {
        sqlx::query_scalar(FINISH_STATES)
            .bind(column(rows, |row| row.id))
            .bind(column(rows, |row| row.token))
            .bind(column(rows, |row| row.status))
            .bind(column(rows, |row| row.deliver_at_ms))
            .bind(column(rows, |row| row.error))
            .bind(column(rows, |row| row.at_ms))
            .fetch_all(conn)
            .await
    }

    async fn advance_feed_heads(
        conn: &mut PgConnection,
        heads: &[(&TenantId, &UserId, i64)],
    ) -> Result<Vec<(TenantId, UserId, i64)>, sqlx::Error> {
        sqlx::query_as(ADVANCE_FEED_HEADS)
            .bind(column(heads, |(tenant, _, _)| tenant.as_str()))
            .bind(column(heads, |(_, user, _)| user.as_str()))
            .bind(column(heads, |(_, _, count)| *count))
            .fetch_all(conn)
            .await
    }

    async fn insert_feed(
        conn: &mut PgConnection,
        rows: &[FeedInsertRow],
    ) -> Result<(), sqlx::Error> {
        sqlx::query(INSERT_FEED)
            .bind(column(rows, |row| row.tenant_id.as_str()))
            .bind(column(rows, |row| row.user_id.as_str()))
            .bind(column(rows, |row| row.cursor_no))
            .bind(column(rows, |row| row.at_ms))
            .bind(column(rows, |row| row.kind.as_str()))
            .bind(column(rows, |row| row.key_id.as_str()))
            .bind(column(rows, |row| row.nonce.as_slice()))
            .bind(column(rows, |row| row.body.as_slice()))
            .bind(column(rows, |row| {
                row.message_id.as_ref().map(MessageId::as_str)
            }))
            .execute(conn)
            .await?;
        Ok(())
    }

    async fn webhooks(
        pool: &Pool<Self>,
        users: &[&str],
        now_ms: i64,
    ) -> Result<(Vec<WebhookRow>, Vec<SecretRow>), sqlx::Error> {
        let webhooks = sqlx::query_as(WEBHOOKS).bind(users).fetch_all(pool).await?;
        let secrets = sqlx::query_as(WEBHOOK_SECRETS)
            .bind(users)
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
            .bind(ids)
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
            .bind(ids)
            .fetch_all(pool)
            .await
    }

    async fn insert_members(
        conn: &mut PgConnection,
        tenant: &str,
        group: &str,
        users: &[&str],
        now_ms: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(INSERT_MEMBERS)
            .bind(group)
            .bind(tenant)
            .bind(now_ms)
            .bind(users)
            .execute(conn)
            .await?;
        Ok(())
    }

    async fn callback_events(
        conn: &mut PgConnection,
        users: &[&str],
    ) -> Result<Vec<(UserId, TenantId, String)>, sqlx::Error> {
        sqlx::query_as(CALLBACK_EVENTS)
            .bind(users)
            .fetch_all(conn)
            .await
    }

    async fn delete_messages(conn: &mut PgConnection, ids: &[&str]) -> Result<(), sqlx::Error> {
        for statement in [DELETE_EVENTS, DELETE_STATES, DELETE_MESSAGES] {
            sqlx::query(statement).bind(ids).execute(&mut *conn).await?;
        }
        Ok(())
    }
}
