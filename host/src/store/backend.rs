//! What differs between the two SQL dialects: each backend implements [`Backend`] for its sqlx
//! database type (`postgres.rs`, `sqlite.rs`), and [`SqlStore`](super::sql::SqlStore) runs
//! everything else the same way on both.
//!
//! Mostly these are the batched statements. Each has one text whatever the batch size, so it
//! is prepared once per connection: PostgreSQL binds one array per column and reads them with
//! `UNNEST` (or `= ANY($1)` for a list of ids); SQLite binds one JSON array of rows and reads
//! it with `json_each` (blobs as hex, back to bytes with `unhex`).

use sqlx::{Pool, Transaction};

use super::rows::{
    ClaimRow, CountDelta, FeedInsertRow, FlowRouteRow, IdempotencyKeyRow, MessageRow,
    NewMessageRow, SecretRow, StepRow, WebhookRow,
};
use crate::domain::ids::{MessageId, TenantId, UserId};

/// A finished attempt as its state update needs it.
pub(super) struct FinishRow<'a> {
    pub(super) id: &'a str,
    pub(super) token: &'a str,
    pub(super) status: &'static str,
    pub(super) deliver_at_ms: Option<i64>,
    pub(super) error: Option<&'a str>,
    pub(super) at_ms: i64,
}

/// A backend's dialect.
#[async_trait::async_trait]
pub(super) trait Backend: sqlx::Database {
    /// `sqlite` or `postgres`.
    const BACKEND: &'static str;

    /// Count shards writers spread over (see `message_counts` in the migrations).
    const COUNT_SHARDS: u32;

    /// Appended to a `SELECT` that reads rows the transaction will update: PostgreSQL locks
    /// them (`FOR UPDATE`); SQLite's write transaction holds the whole database already.
    const LOCK_ROWS: &'static str;

    /// Rows a statement changed.
    fn rows_affected(result: &Self::QueryResult) -> u64;

    /// Starts a write transaction. SQLite takes its write lock at once (`BEGIN IMMEDIATE`),
    /// so a transaction that reads first cannot fail to upgrade its lock later.
    async fn begin_write(pool: &Pool<Self>) -> Result<Transaction<'static, Self>, sqlx::Error>;

    /// Inserts new messages (the never-changing part).
    async fn insert_messages(
        conn: &mut Self::Connection,
        rows: &[NewMessageRow<'_>],
    ) -> Result<(), sqlx::Error>;

    /// Inserts the states of new messages: `scheduled`, due at their planned time.
    async fn insert_states(
        conn: &mut Self::Connection,
        rows: &[NewMessageRow<'_>],
        now_ms: i64,
    ) -> Result<(), sqlx::Error>;

    /// Inserts history rows.
    async fn insert_steps(
        conn: &mut Self::Connection,
        rows: &[StepRow<'_>],
    ) -> Result<(), sqlx::Error>;

    /// Adds to the kept message counts.
    async fn add_counts(
        conn: &mut Self::Connection,
        deltas: &[CountDelta],
    ) -> Result<(), sqlx::Error>;

    /// Deletes these keys where they were stored before `horizon_ms` (expired), then inserts
    /// every key not stored already; returns the `(user, key)` pairs it inserted.
    async fn insert_idempotency_keys(
        conn: &mut Self::Connection,
        keys: &[IdempotencyKeyRow<'_>],
        horizon_ms: i64,
    ) -> Result<Vec<(String, String)>, sqlx::Error>;

    /// Marks `ids` `delivering` under `token` where they are claimable (waiting and due at
    /// `now_ms`, or leased until `now_ms` or before), counting the statuses they leave and
    /// enter in `shard`, and says for each id found what it was and whether it was taken.
    async fn claim(
        pool: &Pool<Self>,
        ids: &[MessageId],
        token: &str,
        now_ms: i64,
        lease_until_ms: i64,
        shard: i64,
    ) -> Result<Vec<ClaimRow>, sqlx::Error>;

    /// Messages and their states, by id (content sealed).
    async fn messages(
        conn: &mut Self::Connection,
        ids: &[&str],
    ) -> Result<Vec<MessageRow>, sqlx::Error>;

    /// Ends attempts: each message still `delivering` under its token takes its outcome;
    /// returns the ids it changed.
    async fn finish_states(
        conn: &mut Self::Connection,
        rows: &[FinishRow<'_>],
    ) -> Result<Vec<MessageId>, sqlx::Error>;

    /// Adds `count` to each user's feed head (creating it at `count`) and returns the new
    /// heads. Rows are locked in the order given (callers sort them).
    async fn advance_feed_heads(
        conn: &mut Self::Connection,
        heads: &[(&TenantId, &UserId, i64)],
    ) -> Result<Vec<(TenantId, UserId, i64)>, sqlx::Error>;

    /// Inserts feed events.
    async fn insert_feed(
        conn: &mut Self::Connection,
        rows: &[FeedInsertRow],
    ) -> Result<(), sqlx::Error>;

    /// The webhooks of these users, and their secrets valid at `now_ms` (newest first).
    async fn webhooks(
        pool: &Pool<Self>,
        users: &[&str],
        now_ms: i64,
    ) -> Result<(Vec<WebhookRow>, Vec<SecretRow>), sqlx::Error>;

    /// The flow routes of these messages (see `Store::flow_routes`).
    async fn flow_routes(pool: &Pool<Self>, ids: &[&str])
    -> Result<Vec<FlowRouteRow>, sqlx::Error>;

    /// Which of `ids` are live users of `tenant`.
    async fn live_users(
        pool: &Pool<Self>,
        tenant: &str,
        ids: &[&str],
    ) -> Result<Vec<UserId>, sqlx::Error>;

    /// Adds those of `users` that are live users of `tenant` to `group` (members already
    /// stay as they are).
    async fn insert_members(
        conn: &mut Self::Connection,
        tenant: &str,
        group: &str,
        users: &[&str],
        now_ms: i64,
    ) -> Result<(), sqlx::Error>;
    /// The callback endpoints' tenants and chosen events (JSON) of those of `users` who have
    /// one and are live, read inside the caller's transaction.
    async fn callback_events(
        conn: &mut Self::Connection,
        users: &[&str],
    ) -> Result<Vec<(UserId, TenantId, String)>, sqlx::Error>;

    /// Deletes these messages with their states and history.
    async fn delete_messages(conn: &mut Self::Connection, ids: &[&str]) -> Result<(), sqlx::Error>;
}
