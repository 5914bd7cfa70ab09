//! The SQL both backends run, written once. Placeholders are `$1…$N`, which PostgreSQL and
//! sqlx's SQLite driver both bind by number. [`impl_store!`] stamps the [`Store`](super::Store)
//! implementation into each backend module, where `Db` names its sqlx database type and
//! `self.pool` and `self.writer` its pools for reads and writes; SQL dialect differences stay
//! out of this file.
//!
//! Every write transaction starts with a write statement, so SQLite takes its write lock at
//! the start instead of upgrading a read lock mid-transaction (which fails with "database is
//! locked" under concurrency rather than waiting).

use std::collections::BTreeMap;

use super::StoreError;
use super::crypto::{Keyring, Sealed};
use crate::domain::feed::FeedEvent;
use crate::domain::ids::{MessageId, SessionId, TenantId, UserId};
use crate::domain::message::{Channel, Event, EventKind, Message, PluginRef, Requested, Status};
use crate::domain::user::{Role, Session, Tenant, User};

/// Timestamps are stored as signed 64-bit integers (neither backend has an unsigned type).
pub(super) fn ms(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn from_ms(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

#[derive(sqlx::FromRow)]
pub(super) struct TenantRow {
    id: TenantId,
    name: String,
    created_at_ms: i64,
}

impl From<TenantRow> for Tenant {
    fn from(row: TenantRow) -> Self {
        Self {
            id: row.id,
            name: row.name,
            created_at_ms: from_ms(row.created_at_ms),
        }
    }
}

impl TryFrom<String> for Role {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        value.parse()
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct UserRow {
    id: UserId,
    tenant_id: TenantId,
    username: String,
    display_name: Option<String>,
    #[sqlx(try_from = "String")]
    role: Role,
    created_at_ms: i64,
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> Self {
        Self {
            id: row.id,
            tenant_id: row.tenant_id,
            username: row.username,
            display_name: row.display_name,
            role: row.role,
            created_at_ms: from_ms(row.created_at_ms),
        }
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct CredentialsRow {
    #[sqlx(flatten)]
    user: UserRow,
    password_hash: String,
}

impl From<CredentialsRow> for (User, String) {
    fn from(row: CredentialsRow) -> Self {
        (row.user.into(), row.password_hash)
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct SessionRow {
    pub(super) id: SessionId,
    pub(super) user_id: UserId,
    tenant_id: TenantId,
    created_at_ms: i64,
    last_used_at_ms: i64,
    expires_at_ms: i64,
    user_agent: Option<String>,
    ip: Option<String>,
}

impl From<SessionRow> for Session {
    fn from(row: SessionRow) -> Self {
        Self {
            id: row.id,
            user_id: row.user_id,
            tenant_id: row.tenant_id,
            created_at_ms: from_ms(row.created_at_ms),
            last_used_at_ms: from_ms(row.last_used_at_ms),
            expires_at_ms: from_ms(row.expires_at_ms),
            user_agent: row.user_agent,
            ip: row.ip,
        }
    }
}

/// The columns of a message row, in the order of [`MessageRow`].
macro_rules! message_columns {
    () => {
        "id, tenant_id, sender_id, recipient_id, channel, content_type, metadata, key_id, nonce, \
         content, requested_kind, requested_ms, status, previous_status, deliver_at_ms, attempts, \
         last_error, created_at_ms, delivered_at_ms, read_at_ms"
    };
}
pub(super) use message_columns;

#[derive(sqlx::FromRow)]
pub(super) struct MessageRow {
    pub(super) id: MessageId,
    tenant_id: TenantId,
    sender_id: UserId,
    recipient_id: UserId,
    #[sqlx(try_from = "String")]
    channel: Channel,
    content_type: String,
    metadata: String,
    key_id: String,
    nonce: Vec<u8>,
    content: Vec<u8>,
    requested_kind: String,
    requested_ms: Option<i64>,
    #[sqlx(try_from = "String")]
    status: Status,
    previous_status: Option<String>,
    deliver_at_ms: i64,
    attempts: i64,
    last_error: Option<String>,
    created_at_ms: i64,
    delivered_at_ms: Option<i64>,
    read_at_ms: Option<i64>,
}

impl MessageRow {
    /// The message, content opened, and the status it had before its last change.
    pub(super) fn open(self, keyring: &Keyring) -> Result<(Message, Option<Status>), StoreError> {
        let sealed = Sealed {
            key_id: self.key_id,
            nonce: self.nonce,
            ciphertext: self.content,
        };
        let content = keyring
            .open(self.tenant_id.as_str(), self.id.as_str(), &sealed)
            .map_err(|source| StoreError::Sealed {
                record: self.id.to_string(),
                source,
            })?;
        let requested = match (self.requested_kind.as_str(), self.requested_ms) {
            ("delay", Some(ms)) => Requested::DelayMs(from_ms(ms)),
            ("at", Some(ms)) => Requested::AtMs(from_ms(ms)),
            _ => Requested::Unspecified,
        };
        let metadata: BTreeMap<String, String> =
            serde_json::from_str(&self.metadata).unwrap_or_default();
        let previous = self.previous_status.and_then(|status| status.parse().ok());
        let message = Message {
            id: self.id,
            tenant_id: self.tenant_id,
            sender_id: self.sender_id,
            recipient_id: self.recipient_id,
            channel: self.channel,
            content,
            content_type: self.content_type,
            metadata,
            requested,
            status: self.status,
            deliver_at_ms: from_ms(self.deliver_at_ms),
            attempts: u32::try_from(self.attempts).unwrap_or(u32::MAX),
            last_error: self.last_error,
            created_at_ms: from_ms(self.created_at_ms),
            delivered_at_ms: self.delivered_at_ms.map(from_ms),
            read_at_ms: self.read_at_ms.map(from_ms),
        };
        Ok((message, previous))
    }
}

/// `requested` as its two columns.
pub(super) fn requested_columns(requested: Requested) -> (&'static str, Option<i64>) {
    match requested {
        Requested::Unspecified => ("none", None),
        Requested::DelayMs(ms) => ("delay", Some(ms_i64(ms))),
        Requested::AtMs(ms) => ("at", Some(ms_i64(ms))),
    }
}

fn ms_i64(value: u64) -> i64 {
    ms(value)
}

#[derive(sqlx::FromRow)]
pub(super) struct EventRow {
    at_ms: i64,
    #[sqlx(try_from = "String")]
    kind: EventKind,
    from_status: Option<String>,
    to_status: Option<String>,
    attempt: Option<i64>,
    result: String,
    duration_ms: Option<i64>,
    plugin_name: Option<String>,
    plugin_digest: Option<String>,
}

impl From<EventRow> for Event {
    fn from(row: EventRow) -> Self {
        Self {
            at_ms: from_ms(row.at_ms),
            kind: row.kind,
            from: row.from_status.and_then(|status| status.parse().ok()),
            to: row.to_status.and_then(|status| status.parse().ok()),
            attempt: row.attempt.and_then(|n| u32::try_from(n).ok()),
            result: row.result,
            duration_ms: row.duration_ms.map(from_ms),
            plugin: match (row.plugin_name, row.plugin_digest) {
                (Some(name), Some(digest)) => Some(PluginRef { name, digest }),
                _ => None,
            },
        }
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct PendingRow {
    pub(super) id: MessageId,
    #[sqlx(try_from = "String")]
    pub(super) status: Status,
    pub(super) deliver_at_ms: i64,
    pub(super) lease_until_ms: Option<i64>,
}

impl PendingRow {
    /// When the schedule should next look at it: its due time, or its lease's expiry.
    pub(super) fn due(&self) -> u64 {
        match (self.status, self.lease_until_ms) {
            (Status::Delivering, Some(until)) => from_ms(until),
            _ => from_ms(self.deliver_at_ms),
        }
    }
}

/// One (tenant, status) group of the queue report: how many.
#[derive(sqlx::FromRow)]
pub(super) struct QueueRow {
    tenant_id: TenantId,
    tenant_name: String,
    #[sqlx(try_from = "String")]
    status: Status,
    count: i64,
}

/// One (tenant, pending status) group of the queue report: when they are due.
#[derive(sqlx::FromRow)]
pub(super) struct PendingGroupRow {
    tenant_id: TenantId,
    #[sqlx(try_from = "String")]
    status: Status,
    overdue: i64,
    oldest_overdue_ms: Option<i64>,
    due_next_minute: i64,
    due_next_hour: i64,
    leases_held: i64,
}

/// Joins the two parts of the queue report.
pub(super) fn queue_report(
    counts: Vec<QueueRow>,
    pending: Vec<PendingGroupRow>,
) -> Vec<super::QueueCount> {
    let pending: std::collections::HashMap<(TenantId, Status), PendingGroupRow> = pending
        .into_iter()
        .map(|group| ((group.tenant_id.clone(), group.status), group))
        .collect();
    counts
        .into_iter()
        .map(|row| {
            let mut count = super::QueueCount {
                tenant_id: row.tenant_id,
                tenant: row.tenant_name,
                status: row.status,
                count: from_ms(row.count),
                overdue: 0,
                oldest_overdue_ms: None,
                due_next_minute: 0,
                due_next_hour: 0,
                leases_held: 0,
            };
            if let Some(group) = pending.get(&(count.tenant_id.clone(), count.status)) {
                count.overdue = from_ms(group.overdue);
                count.oldest_overdue_ms = group.oldest_overdue_ms.map(from_ms);
                count.due_next_minute = from_ms(group.due_next_minute);
                count.due_next_hour = from_ms(group.due_next_hour);
                count.leases_held = from_ms(group.leases_held);
            }
            count
        })
        .collect()
}

#[derive(sqlx::FromRow)]
pub(super) struct IdempotencyRow {
    pub(super) request_hash: String,
    pub(super) response: String,
}

#[derive(sqlx::FromRow)]
pub(super) struct WebhookRow {
    pub(super) url: String,
    pub(super) created_at_ms: i64,
    pub(super) disabled_reason: Option<String>,
}

#[derive(sqlx::FromRow)]
pub(super) struct SecretRow {
    pub(super) id: String,
    pub(super) key_id: String,
    pub(super) nonce: Vec<u8>,
    pub(super) secret: Vec<u8>,
}

impl SecretRow {
    pub(super) fn open(self, keyring: &Keyring, tenant: &TenantId) -> Result<String, StoreError> {
        let sealed = Sealed {
            key_id: self.key_id,
            nonce: self.nonce,
            ciphertext: self.secret,
        };
        let bytes = keyring
            .open(tenant.as_str(), &self.id, &sealed)
            .map_err(|source| StoreError::Sealed {
                record: format!("webhook secret {}", self.id),
                source,
            })?;
        String::from_utf8(bytes).map_err(|_| StoreError::Sealed {
            record: format!("webhook secret {}", self.id),
            source: super::crypto::CryptoError::Mismatch,
        })
    }
}

/// The `from_ms` conversion for the pending scan.
/// A stored feed event, body still sealed.
#[derive(sqlx::FromRow)]
pub(super) struct FeedRow {
    tenant_id: TenantId,
    user_id: UserId,
    cursor_no: i64,
    at_ms: i64,
    key_id: String,
    nonce: Vec<u8>,
    body: Vec<u8>,
}

/// The sealing record of a feed event: moving a sealed body to another user or cursor makes
/// it fail to open.
pub(super) fn feed_record(user: &UserId, cursor: u64) -> String {
    format!("feed:{user}:{cursor}")
}

impl FeedRow {
    /// The event, body opened.
    pub(super) fn open(self, keyring: &Keyring) -> Result<FeedEvent, StoreError> {
        let cursor = from_ms(self.cursor_no);
        let record = feed_record(&self.user_id, cursor);
        let sealed = Sealed {
            key_id: self.key_id,
            nonce: self.nonce,
            ciphertext: self.body,
        };
        let body = keyring
            .open(self.tenant_id.as_str(), &record, &sealed)
            .map_err(|source| StoreError::Sealed {
                record: record.clone(),
                source,
            })?;
        // Only JSON is ever sealed here; anything else was altered.
        let body = serde_json::from_slice(&body).map_err(|_| StoreError::Sealed {
            record,
            source: crate::store::crypto::CryptoError::Mismatch,
        })?;
        Ok(FeedEvent {
            tenant_id: self.tenant_id,
            user_id: self.user_id,
            cursor,
            at_ms: from_ms(self.at_ms),
            body,
        })
    }
}

pub(super) fn due_from_ms(value: i64) -> u64 {
    from_ms(value)
}

#[derive(sqlx::FromRow)]
pub(super) struct IdRow<T> {
    pub(super) id: T,
}

#[derive(sqlx::FromRow)]
pub(super) struct CountRow {
    pub(super) count: i64,
}

pub(super) const INSERT_TENANT: &str = "INSERT INTO tenants (id, name, created_at_ms) VALUES ($1, $2, $3) \
     RETURNING id, name, created_at_ms";
pub(super) const TENANT_BY_NAME: &str =
    "SELECT id, name, created_at_ms FROM tenants WHERE name = $1";
pub(super) const LIST_TENANTS: &str = "SELECT id, name, created_at_ms FROM tenants ORDER BY name";

pub(super) const INSERT_USER: &str = "INSERT INTO users \
     (id, tenant_id, username, display_name, role, password_hash, created_at_ms, \
     username_key, username_skeleton) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
     RETURNING id, tenant_id, username, display_name, role, created_at_ms";
pub(super) const USER: &str = "SELECT id, tenant_id, username, display_name, role, created_at_ms \
     FROM users WHERE tenant_id = $1 AND id = $2 AND deleted_at_ms IS NULL";
/// By the name's key (`$2`); a user left without one (its name collided with an older
/// user's when keys were introduced) by its exact name (`$1`), which wins when both match.
pub(super) const CREDENTIALS: &str = "SELECT id, tenant_id, username, display_name, role, created_at_ms, \
     password_hash FROM users WHERE deleted_at_ms IS NULL \
     AND (username_key = $2 OR (username_key IS NULL AND username = $1)) \
     ORDER BY CASE WHEN username = $1 THEN 0 ELSE 1 END LIMIT 1";
/// Users whose key or skeleton is still to be computed (the migration that added them).
pub(super) const USERS_WITHOUT_KEYS: &str = "SELECT id, username FROM users \
     WHERE username_key IS NULL OR username_skeleton IS NULL ORDER BY created_at_ms, id";
pub(super) const SET_USERNAME_KEY: &str =
    "UPDATE users SET username_key = $2 WHERE id = $1 AND username_key IS NULL";
pub(super) const SET_USERNAME_SKELETON: &str =
    "UPDATE users SET username_skeleton = $2 WHERE id = $1 AND username_skeleton IS NULL";
pub(super) const LIST_USERS: &str = "SELECT id, tenant_id, username, display_name, role, created_at_ms \
     FROM users WHERE tenant_id = $1 AND deleted_at_ms IS NULL ORDER BY id LIMIT $2 OFFSET $3";
pub(super) const COUNT_USERS: &str =
    "SELECT COUNT(*) AS count FROM users WHERE tenant_id = $1 AND deleted_at_ms IS NULL";
pub(super) const DELETE_USER: &str = "UPDATE users SET deleted_at_ms = $3 \
     WHERE tenant_id = $1 AND id = $2 AND deleted_at_ms IS NULL";
pub(super) const SET_PASSWORD: &str = "UPDATE users SET password_hash = $3 \
     WHERE tenant_id = $1 AND id = $2 AND deleted_at_ms IS NULL";
pub(super) const REVOKE_USER_SESSIONS: &str = "UPDATE sessions SET revoked_at_ms = $2, revoked_reason = $3 \
     WHERE user_id = $1 AND revoked_at_ms IS NULL AND ($4 IS NULL OR id <> $4)";

pub(super) const INSERT_SESSION: &str = "INSERT INTO sessions \
     (id, tenant_id, user_id, created_at_ms, last_used_at_ms, expires_at_ms, user_agent, ip) \
     VALUES ($1, $2, $3, $4, $4, $5, $6, $7) \
     RETURNING id, user_id, tenant_id, created_at_ms, last_used_at_ms, expires_at_ms, user_agent, ip";
pub(super) const INSERT_REFRESH_TOKEN: &str =
    "INSERT INTO refresh_tokens (hash, session_id, created_at_ms) VALUES ($1, $2, $3)";
/// Marks a token used if it was not: the single statement that decides who rotates.
pub(super) const USE_REFRESH_TOKEN: &str = "UPDATE refresh_tokens SET used_at_ms = $2 \
     WHERE hash = $1 AND used_at_ms IS NULL RETURNING session_id AS id";
pub(super) const REFRESH_TOKEN_SESSION: &str =
    "SELECT session_id AS id FROM refresh_tokens WHERE hash = $1";
pub(super) const EXTEND_LIVE_SESSION: &str = "UPDATE sessions SET last_used_at_ms = $2, expires_at_ms = $3 \
     WHERE id = $1 AND revoked_at_ms IS NULL AND expires_at_ms > $2 \
     AND user_id IN (SELECT id FROM users WHERE deleted_at_ms IS NULL) \
     RETURNING id, user_id, tenant_id, created_at_ms, last_used_at_ms, expires_at_ms, user_agent, ip";
pub(super) const REVOKE_SESSION_BY_ID: &str = "UPDATE sessions SET revoked_at_ms = $2, revoked_reason = $3 \
     WHERE id = $1 AND revoked_at_ms IS NULL RETURNING tenant_id, user_id";
pub(super) const USER_BY_ID: &str = "SELECT id, tenant_id, username, display_name, role, created_at_ms \
     FROM users WHERE id = $1";
pub(super) const AUTHENTICATE: &str = "SELECT u.id, u.tenant_id, u.username, u.display_name, u.role, \
     u.created_at_ms FROM sessions s JOIN users u ON u.id = s.user_id \
     WHERE s.id = $1 AND s.user_id = $2 AND s.tenant_id = $3 AND s.revoked_at_ms IS NULL \
     AND s.expires_at_ms > $4 AND u.deleted_at_ms IS NULL";
pub(super) const LIST_SESSIONS: &str = "SELECT id, user_id, tenant_id, created_at_ms, last_used_at_ms, \
     expires_at_ms, user_agent, ip FROM sessions \
     WHERE tenant_id = $1 AND user_id = $2 AND revoked_at_ms IS NULL AND expires_at_ms > $3 \
     ORDER BY created_at_ms DESC, id DESC";
pub(super) const REVOKE_SESSION: &str = "UPDATE sessions SET revoked_at_ms = $4, revoked_reason = $5 \
     WHERE id = $1 AND user_id = $2 AND tenant_id = $3 AND revoked_at_ms IS NULL";

pub(super) const INSERT_MESSAGE: &str = concat!(
    "INSERT INTO messages (id, tenant_id, sender_id, recipient_id, channel, content_type, metadata, \
     key_id, nonce, content, requested_kind, requested_ms, status, deliver_at_ms, attempts, \
     created_at_ms, updated_at_ms) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'scheduled', $13, 0, $14, $14) \
     RETURNING ",
    message_columns!()
);
pub(super) const DELETE_EXPIRED_IDEMPOTENCY: &str = "DELETE FROM idempotency_keys \
     WHERE tenant_id = $1 AND user_id = $2 AND key = $3 AND created_at_ms < $4";
pub(super) const INSERT_IDEMPOTENCY: &str = "INSERT INTO idempotency_keys \
     (tenant_id, user_id, key, request_hash, response, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6)";
pub(super) const IDEMPOTENCY: &str = "SELECT request_hash, response FROM idempotency_keys \
     WHERE tenant_id = $1 AND user_id = $2 AND key = $3 AND created_at_ms >= $4";
pub(super) const MESSAGE: &str = concat!(
    "SELECT ",
    message_columns!(),
    " FROM messages WHERE tenant_id = $1 AND id = $2"
);
pub(super) const MESSAGE_EVENTS: &str = "SELECT e.at_ms, e.kind, e.from_status, e.to_status, \
     e.attempt, e.result, e.duration_ms, e.plugin_name, e.plugin_digest \
     FROM message_events e JOIN messages m ON m.id = e.message_id \
     WHERE m.tenant_id = $1 AND e.message_id = $2 ORDER BY e.id";
pub(super) const DELETE_MESSAGE: &str =
    "DELETE FROM messages WHERE tenant_id = $1 AND id = $2 AND status = $3";
pub(super) const FINISH_DELIVERIES_HEAD: &str = "UPDATE messages SET previous_status = messages.status, \
     status = v.column4, deliver_at_ms = COALESCE(v.column5, messages.deliver_at_ms), \
     last_error = COALESCE(v.column6, messages.last_error), \
     delivered_at_ms = CASE WHEN v.column4 = 'delivered' THEN v.column7 ELSE messages.delivered_at_ms END, \
     lease_token = NULL, lease_until_ms = NULL, updated_at_ms = v.column7 FROM (";
pub(super) const FINISH_DELIVERIES_TAIL: &str = ") AS v WHERE messages.id = v.column1 \
     AND messages.tenant_id = v.column2 AND messages.lease_token = v.column3 \
     AND messages.status = 'delivering' RETURNING messages.id";
pub(super) const INSERT_EVENTS_HEAD: &str = "INSERT INTO message_events \
     (message_id, at_ms, kind, from_status, to_status, attempt, result, duration_ms, plugin_name, \
     plugin_digest) ";
pub(super) const FEED_HEADS_HEAD: &str =
    "INSERT INTO feed_heads (tenant_id, user_id, last_cursor) ";
pub(super) const FEED_HEADS_TAIL: &str = " ON CONFLICT (tenant_id, user_id) DO UPDATE \
     SET last_cursor = feed_heads.last_cursor + excluded.last_cursor \
     RETURNING tenant_id, user_id, last_cursor";
pub(super) const INSERT_FEED_HEAD: &str =
    "INSERT INTO feed_events (tenant_id, user_id, cursor_no, at_ms, kind, key_id, nonce, body) ";
pub(super) const FEED_AFTER: &str = "SELECT tenant_id, user_id, cursor_no, at_ms, key_id, nonce, body \
     FROM feed_events WHERE tenant_id = $1 AND user_id = $2 AND cursor_no > $3 \
     ORDER BY cursor_no LIMIT $4";
pub(super) const FEED_HEAD: &str =
    "SELECT last_cursor FROM feed_heads WHERE tenant_id = $1 AND user_id = $2";
pub(super) const PRUNE_FEED: &str = "DELETE FROM feed_events WHERE (tenant_id, user_id, cursor_no) IN \
     (SELECT tenant_id, user_id, cursor_no FROM feed_events WHERE at_ms < $1 LIMIT $2)";
pub(super) const PENDING: &str = "SELECT id, status, deliver_at_ms, lease_until_ms FROM messages \
     WHERE status IN ('scheduled', 'retrying', 'delivering') AND ($1 IS NULL OR id > $1) \
     ORDER BY id LIMIT $2";
/// The queue report, part one: messages per tenant and status. Grouped before the join, so
/// the tenants table is read once per group, not once per message.
pub(super) const QUEUE_COUNTS: &str = "SELECT c.tenant_id, t.name AS tenant_name, c.status, c.count \
     FROM (SELECT tenant_id, status, COUNT(*) AS count FROM messages GROUP BY tenant_id, status) c \
     JOIN tenants t ON t.id = c.tenant_id ORDER BY t.name, c.status";
/// Part two, over the pending messages only (usually few beside the delivered history):
/// $1 now, $2 a minute from now, $3 an hour from now. The CASE sums give integers on both
/// backends.
pub(super) const QUEUE_PENDING: &str = "SELECT tenant_id, status, \
     SUM(CASE WHEN status <> 'delivering' AND deliver_at_ms <= $1 THEN 1 ELSE 0 END) AS overdue, \
     MIN(CASE WHEN status <> 'delivering' AND deliver_at_ms <= $1 THEN deliver_at_ms END) AS oldest_overdue_ms, \
     SUM(CASE WHEN status <> 'delivering' AND deliver_at_ms > $1 AND deliver_at_ms <= $2 THEN 1 ELSE 0 END) AS due_next_minute, \
     SUM(CASE WHEN status <> 'delivering' AND deliver_at_ms > $1 AND deliver_at_ms <= $3 THEN 1 ELSE 0 END) AS due_next_hour, \
     SUM(CASE WHEN status = 'delivering' AND lease_until_ms > $1 THEN 1 ELSE 0 END) AS leases_held \
     FROM messages WHERE status IN ('scheduled', 'retrying', 'delivering') GROUP BY tenant_id, status";
pub(super) const UPSERT_WEBHOOK: &str = "INSERT INTO webhooks (user_id, tenant_id, url, created_at_ms) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (user_id) DO UPDATE SET url = excluded.url, \
     tenant_id = excluded.tenant_id, created_at_ms = excluded.created_at_ms, \
     disabled_at_ms = NULL, disabled_reason = NULL";
pub(super) const DELETE_WEBHOOK_SECRETS: &str = "DELETE FROM webhook_secrets WHERE user_id = $1";
pub(super) const INSERT_WEBHOOK_SECRET: &str = "INSERT INTO webhook_secrets \
     (id, user_id, key_id, nonce, secret, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6)";
pub(super) const TOUCH_WEBHOOK: &str =
    "UPDATE webhooks SET url = url WHERE user_id = $1 AND tenant_id = $2";
pub(super) const RETIRE_WEBHOOK_SECRETS: &str = "UPDATE webhook_secrets SET expires_at_ms = $2 \
     WHERE user_id = $1 AND (expires_at_ms IS NULL OR expires_at_ms > $2)";
pub(super) const DELETE_WEBHOOK: &str =
    "DELETE FROM webhooks WHERE user_id = $1 AND tenant_id = $2";
pub(super) const WEBHOOK: &str = "SELECT url, created_at_ms, disabled_reason FROM webhooks \
     WHERE user_id = $1 AND tenant_id = $2";
pub(super) const WEBHOOK_SECRETS: &str = "SELECT id, key_id, nonce, secret FROM webhook_secrets \
     WHERE user_id = $1 AND (expires_at_ms IS NULL OR expires_at_ms > $2) \
     ORDER BY created_at_ms DESC, id DESC";
pub(super) const DISABLE_WEBHOOK: &str = "UPDATE webhooks SET disabled_at_ms = $3, disabled_reason = $4 \
     WHERE user_id = $1 AND tenant_id = $2";

#[derive(sqlx::FromRow)]
pub(super) struct PluginRow {
    id: crate::domain::ids::PluginId,
    tenant_id: TenantId,
    name: String,
    version: Option<String>,
    world: String,
    digest: String,
    size: i64,
    created_at_ms: i64,
    disabled_at_ms: Option<i64>,
    disabled_reason: Option<String>,
}

impl TryFrom<PluginRow> for crate::domain::plugin::PluginRecord {
    type Error = StoreError;

    fn try_from(row: PluginRow) -> Result<Self, StoreError> {
        use crate::domain::plugin::Disabled;
        let world = row
            .world
            .parse()
            .map_err(|reason: String| StoreError::Database(sqlx::Error::Decode(reason.into())))?;
        Ok(Self {
            id: row.id,
            tenant_id: row.tenant_id,
            name: row.name,
            version: row.version,
            world,
            digest: row.digest,
            size: from_ms(row.size),
            created_at_ms: from_ms(row.created_at_ms),
            disabled: row.disabled_at_ms.map(|at| Disabled {
                at_ms: from_ms(at),
                reason: row.disabled_reason.unwrap_or_default(),
            }),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct HookRow {
    #[sqlx(try_from = "String")]
    hook: crate::domain::plugin::Hook,
    position: i64,
    plugin_id: crate::domain::ids::PluginId,
    binding: String,
}

impl TryFrom<HookRow> for crate::domain::plugin::HookBinding {
    type Error = StoreError;

    fn try_from(row: HookRow) -> Result<Self, StoreError> {
        let binding = serde_json::from_str(&row.binding)
            .map_err(|error| StoreError::Database(sqlx::Error::Decode(error.into())))?;
        Ok(Self {
            hook: row.hook,
            position: u32::try_from(row.position).unwrap_or(u32::MAX),
            plugin_id: row.plugin_id,
            binding,
        })
    }
}

macro_rules! plugin_columns {
    () => {
        "id, tenant_id, name, version, world, digest, size, created_at_ms, disabled_at_ms, \
         disabled_reason"
    };
}

pub(super) const INSERT_PLUGIN: &str = "INSERT INTO plugins \
     (id, tenant_id, name, version, world, digest, size, component, created_at_ms) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (tenant_id, digest) DO NOTHING";
pub(super) const PLUGIN_BY_DIGEST: &str = concat!(
    "SELECT ",
    plugin_columns!(),
    " FROM plugins WHERE tenant_id = $1 AND digest = $2"
);
pub(super) const PLUGIN: &str = concat!(
    "SELECT ",
    plugin_columns!(),
    " FROM plugins WHERE tenant_id = $1 AND id = $2"
);
pub(super) const LIST_PLUGINS: &str = concat!(
    "SELECT ",
    plugin_columns!(),
    " FROM plugins WHERE tenant_id = $1 ORDER BY id"
);
pub(super) const PLUGIN_COMPONENT: &str =
    "SELECT component FROM plugins WHERE tenant_id = $1 AND id = $2";
pub(super) const DELETE_PLUGIN: &str =
    "DELETE FROM plugins WHERE tenant_id = $1 AND id = $2 RETURNING digest";
/// A write to the tenant's row that changes nothing: it locks the row (PostgreSQL) or the
/// database (SQLite) until the transaction ends, so two uploads of one tenant check and fill
/// its quota one after the other. (SQLite has no `SELECT … FOR UPDATE`.)
pub(super) const LOCK_TENANT: &str =
    "UPDATE tenants SET created_at_ms = created_at_ms WHERE id = $1";
pub(super) const PLUGIN_USAGE: &str = "SELECT CAST(count(*) AS BIGINT), \
     CAST(coalesce(sum(size), 0) AS BIGINT) FROM plugins WHERE tenant_id = $1";
pub(super) const DIGEST_USES: &str =
    "SELECT CAST(count(*) AS BIGINT) FROM plugins WHERE digest = $1";
pub(super) const PLUGIN_HOOKS: &str = "SELECT DISTINCT hook FROM hook_bindings \
     WHERE tenant_id = $1 AND plugin_id = $2 ORDER BY hook";
pub(super) const DISABLE_PLUGIN: &str = "UPDATE plugins SET disabled_at_ms = $3, disabled_reason = $4 \
     WHERE tenant_id = $1 AND id = $2 AND disabled_at_ms IS NULL";
pub(super) const ENABLE_PLUGIN: &str = "UPDATE plugins SET disabled_at_ms = NULL, disabled_reason = NULL \
     WHERE tenant_id = $1 AND id = $2";
pub(super) const HOOK_BINDINGS: &str = "SELECT hook, position, plugin_id, binding FROM hook_bindings \
     WHERE tenant_id = $1 ORDER BY hook, position";
pub(super) const DELETE_HOOK: &str = "DELETE FROM hook_bindings WHERE tenant_id = $1 AND hook = $2";
pub(super) const INSERT_HOOK_BINDING: &str = "INSERT INTO hook_bindings \
     (tenant_id, hook, position, plugin_id, binding, updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6)";

/// SQL string literal of a status list: `'scheduled', 'retrying'`.
pub(super) fn status_list(statuses: &[Status]) -> String {
    statuses
        .iter()
        .map(|status| format!("'{}'", status.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Implements [`Store`](super::Store) for a backend whose module defines `type Db` and a
/// struct with `pool` (reads) and `writer` (writes) fields of type `sqlx::Pool<Db>`.
macro_rules! impl_store {
    ($store:ty, $backend:literal) => {
        #[async_trait::async_trait]
        impl $crate::store::Store for $store {
            fn backend(&self) -> &'static str {
                $backend
            }

            async fn ping(&self) -> Result<(), StoreError> {
                sqlx::query::<Db>("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn create_tenant(&self, name: &str, now_ms: u64) -> Result<Tenant, StoreError> {
                let row = sqlx::query_as::<Db, TenantRow>(sql::INSERT_TENANT)
                    .bind(TenantId::new())
                    .bind(name)
                    .bind(sql::ms(now_ms))
                    .fetch_one(&self.writer)
                    .await
                    .map_err(|error| match StoreError::from(error) {
                        StoreError::Conflict(_) => {
                            StoreError::Conflict(format!("a tenant named {name:?} exists already"))
                        }
                        other => other,
                    })?;
                Ok(row.into())
            }

            async fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>, StoreError> {
                let row = sqlx::query_as::<Db, TenantRow>(sql::TENANT_BY_NAME)
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map(Into::into))
            }

            async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
                let rows = sqlx::query_as::<Db, TenantRow>(sql::LIST_TENANTS)
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn create_user(
                &self,
                tenant: &TenantId,
                user: NewUser,
                now_ms: u64,
            ) -> Result<User, StoreError> {
                let row = sqlx::query_as::<Db, UserRow>(sql::INSERT_USER)
                    .bind(UserId::new())
                    .bind(tenant)
                    .bind(&user.username)
                    .bind(&user.display_name)
                    .bind(user.role.as_str())
                    .bind(&user.password_hash)
                    .bind(sql::ms(now_ms))
                    .bind($crate::domain::user::username_key(&user.username))
                    .bind($crate::domain::user::username_skeleton(&user.username))
                    .fetch_one(&self.writer)
                    .await
                    .map_err(|error| match StoreError::from(error) {
                        // The same words whichever tenant holds the name, and whether it is
                        // equal or only alike: docs/OPERATIONS.md, "Login".
                        StoreError::Conflict(_) => StoreError::Conflict(format!(
                            "the username {:?} is not available: usernames are unique on the whole server, and this one, or one that looks like it, is in use",
                            user.username
                        )),
                        other => other,
                    })?;
                Ok(row.into())
            }

            async fn fill_username_keys(&self) -> Result<(), StoreError> {
                let rows = sqlx::query_as::<Db, (UserId, String)>(sql::USERS_WITHOUT_KEYS)
                    .fetch_all(&self.writer)
                    .await?;
                for (id, username) in rows {
                    for (statement, column, value) in [
                        (
                            sql::SET_USERNAME_KEY,
                            "key",
                            $crate::domain::user::username_key(&username),
                        ),
                        (
                            sql::SET_USERNAME_SKELETON,
                            "skeleton",
                            $crate::domain::user::username_skeleton(&username),
                        ),
                    ] {
                        let set = sqlx::query::<Db>(statement)
                            .bind(&id)
                            .bind(&value)
                            .execute(&self.writer)
                            .await;
                        match set.map_err(StoreError::from) {
                            Ok(_) => {}
                            // An older live user's name compares equal (or looks alike): that
                            // one keeps the key; this one still logs in by its exact name.
                            Err(StoreError::Conflict(_)) => tracing::warn!(
                                message = "A user's name compares equal to, or looks like, an older user's; it keeps working by its exact name, and new names like it are refused.",
                                user_id = %id,
                                username,
                                column,
                            ),
                            Err(other) => return Err(other),
                        }
                    }
                }
                Ok(())
            }

            async fn user(
                &self,
                tenant: &TenantId,
                id: &UserId,
            ) -> Result<Option<User>, StoreError> {
                let row = sqlx::query_as::<Db, UserRow>(sql::USER)
                    .bind(tenant)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map(Into::into))
            }

            async fn credentials(
                &self,
                username: &str,
            ) -> Result<Option<(User, String)>, StoreError> {
                let row = sqlx::query_as::<Db, CredentialsRow>(sql::CREDENTIALS)
                    .bind(username)
                    .bind($crate::domain::user::username_key(username))
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map(Into::into))
            }

            async fn list_users(
                &self,
                tenant: &TenantId,
                page: Page,
            ) -> Result<(Vec<User>, u64), StoreError> {
                let rows = sqlx::query_as::<Db, UserRow>(sql::LIST_USERS)
                    .bind(tenant)
                    .bind(i64::from(page.limit))
                    .bind(sql::ms(page.offset))
                    .fetch_all(&self.pool)
                    .await?;
                let total = sqlx::query_as::<Db, CountRow>(sql::COUNT_USERS)
                    .bind(tenant)
                    .fetch_one(&self.pool)
                    .await?;
                Ok((
                    rows.into_iter().map(Into::into).collect(),
                    u64::try_from(total.count).unwrap_or(0),
                ))
            }

            async fn delete_user(
                &self,
                tenant: &TenantId,
                id: &UserId,
                now_ms: u64,
            ) -> Result<bool, StoreError> {
                let mut tx = self.writer.begin().await?;
                let deleted = sqlx::query::<Db>(sql::DELETE_USER)
                    .bind(tenant)
                    .bind(id)
                    .bind(sql::ms(now_ms))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                    == 1;
                if deleted {
                    sqlx::query::<Db>(sql::REVOKE_USER_SESSIONS)
                        .bind(id)
                        .bind(sql::ms(now_ms))
                        .bind("user deleted")
                        .bind(None::<SessionId>)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(deleted)
            }

            async fn set_password(
                &self,
                tenant: &TenantId,
                id: &UserId,
                password_hash: &str,
                keep: Option<&SessionId>,
                now_ms: u64,
            ) -> Result<bool, StoreError> {
                let mut tx = self.writer.begin().await?;
                let updated = sqlx::query::<Db>(sql::SET_PASSWORD)
                    .bind(tenant)
                    .bind(id)
                    .bind(password_hash)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                    == 1;
                if updated {
                    sqlx::query::<Db>(sql::REVOKE_USER_SESSIONS)
                        .bind(id)
                        .bind(sql::ms(now_ms))
                        .bind("password changed")
                        .bind(keep)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(updated)
            }

            async fn create_session(&self, new: NewSession) -> Result<Session, StoreError> {
                let mut tx = self.writer.begin().await?;
                let row = sqlx::query_as::<Db, SessionRow>(sql::INSERT_SESSION)
                    .bind(SessionId::new())
                    .bind(&new.tenant_id)
                    .bind(&new.user_id)
                    .bind(sql::ms(new.now_ms))
                    .bind(sql::ms(new.expires_at_ms))
                    .bind(&new.user_agent)
                    .bind(&new.ip)
                    .fetch_one(&mut *tx)
                    .await?;
                sqlx::query::<Db>(sql::INSERT_REFRESH_TOKEN)
                    .bind(&new.refresh_hash)
                    .bind(&row.id)
                    .bind(sql::ms(new.now_ms))
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(row.into())
            }

            async fn rotate_refresh(
                &self,
                old_hash: &str,
                new_hash: &str,
                now_ms: u64,
                expires_at_ms: u64,
            ) -> Result<Rotation, StoreError> {
                let mut tx = self.writer.begin().await?;
                let used = sqlx::query_as::<Db, IdRow<SessionId>>(sql::USE_REFRESH_TOKEN)
                    .bind(old_hash)
                    .bind(sql::ms(now_ms))
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(IdRow { id: session_id }) = used else {
                    // Unknown, or presented before: a replay revokes the whole session.
                    let known = sqlx::query_as::<Db, IdRow<SessionId>>(sql::REFRESH_TOKEN_SESSION)
                        .bind(old_hash)
                        .fetch_optional(&mut *tx)
                        .await?;
                    let outcome = match known {
                        Some(IdRow { id }) => {
                            let owner: Option<(TenantId, UserId)> =
                                sqlx::query_as::<Db, (TenantId, UserId)>(sql::REVOKE_SESSION_BY_ID)
                                    .bind(&id)
                                    .bind(sql::ms(now_ms))
                                    .bind("refresh token reused")
                                    .fetch_optional(&mut *tx)
                                    .await?;
                            Rotation::Reused {
                                session_id: id,
                                owner,
                            }
                        }
                        None => Rotation::Invalid,
                    };
                    tx.commit().await?;
                    return Ok(outcome);
                };
                let session = sqlx::query_as::<Db, SessionRow>(sql::EXTEND_LIVE_SESSION)
                    .bind(&session_id)
                    .bind(sql::ms(now_ms))
                    .bind(sql::ms(expires_at_ms))
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(session) = session else {
                    tx.commit().await?;
                    return Ok(Rotation::Invalid);
                };
                sqlx::query::<Db>(sql::INSERT_REFRESH_TOKEN)
                    .bind(new_hash)
                    .bind(&session_id)
                    .bind(sql::ms(now_ms))
                    .execute(&mut *tx)
                    .await?;
                let user = sqlx::query_as::<Db, UserRow>(sql::USER_BY_ID)
                    .bind(&session.user_id)
                    .fetch_one(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(Rotation::Rotated {
                    session: Box::new(session.into()),
                    user: Box::new(user.into()),
                })
            }

            async fn authenticate(
                &self,
                tenant: &TenantId,
                user: &UserId,
                session: &SessionId,
                now_ms: u64,
            ) -> Result<Option<User>, StoreError> {
                let row = sqlx::query_as::<Db, UserRow>(sql::AUTHENTICATE)
                    .bind(session)
                    .bind(user)
                    .bind(tenant)
                    .bind(sql::ms(now_ms))
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map(Into::into))
            }

            async fn list_sessions(
                &self,
                tenant: &TenantId,
                user: &UserId,
                now_ms: u64,
            ) -> Result<Vec<Session>, StoreError> {
                let rows = sqlx::query_as::<Db, SessionRow>(sql::LIST_SESSIONS)
                    .bind(tenant)
                    .bind(user)
                    .bind(sql::ms(now_ms))
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn revoke_session(
                &self,
                tenant: &TenantId,
                user: &UserId,
                session: &SessionId,
                reason: &str,
                now_ms: u64,
            ) -> Result<bool, StoreError> {
                let revoked = sqlx::query::<Db>(sql::REVOKE_SESSION)
                    .bind(session)
                    .bind(user)
                    .bind(tenant)
                    .bind(sql::ms(now_ms))
                    .bind(reason)
                    .execute(&self.writer)
                    .await?
                    .rows_affected();
                Ok(revoked == 1)
            }

            async fn insert_message(
                &self,
                new: NewMessage,
                events: Vec<Event>,
                idempotency: Option<Idempotency>,
            ) -> Result<Message, StoreError> {
                let sealed = self.keyring.seal(new.tenant_id.as_str(), new.id.as_str(), &new.content);
                let (requested_kind, requested_ms) = sql::requested_columns(new.requested);
                let metadata = serde_json::to_string(&new.metadata).expect("a string map is JSON");
                let mut tx = self.writer.begin().await?;
                let row = sqlx::query_as::<Db, sql::MessageRow>(sql::INSERT_MESSAGE)
                    .bind(&new.id)
                    .bind(&new.tenant_id)
                    .bind(&new.sender_id)
                    .bind(&new.recipient_id)
                    .bind(new.channel.as_str())
                    .bind(&new.content_type)
                    .bind(metadata)
                    .bind(&sealed.key_id)
                    .bind(&sealed.nonce)
                    .bind(&sealed.ciphertext)
                    .bind(requested_kind)
                    .bind(requested_ms)
                    .bind(sql::ms(new.deliver_at_ms))
                    .bind(sql::ms(new.created_at_ms))
                    .fetch_one(&mut *tx)
                    .await?;
                record_events(&mut tx, &new.id, &events).await?;
                if let Some(key) = &idempotency {
                    let horizon = new.created_at_ms.saturating_sub(crate::store::IDEMPOTENCY_TTL_MS);
                    sqlx::query::<Db>(sql::DELETE_EXPIRED_IDEMPOTENCY)
                        .bind(&new.tenant_id)
                        .bind(&key.user_id)
                        .bind(&key.key)
                        .bind(sql::ms(horizon))
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query::<Db>(sql::INSERT_IDEMPOTENCY)
                        .bind(&new.tenant_id)
                        .bind(&key.user_id)
                        .bind(&key.key)
                        .bind(&key.request_hash)
                        .bind(&key.response)
                        .bind(sql::ms(new.created_at_ms))
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(row.open(&self.keyring)?.0)
            }

            async fn idempotency(
                &self,
                tenant: &TenantId,
                user: &UserId,
                key: &str,
                since_ms: u64,
            ) -> Result<Option<(String, String)>, StoreError> {
                let row = sqlx::query_as::<Db, sql::IdempotencyRow>(sql::IDEMPOTENCY)
                    .bind(tenant)
                    .bind(user)
                    .bind(key)
                    .bind(sql::ms(since_ms))
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map(|row| (row.request_hash, row.response)))
            }

            async fn message(&self, tenant: &TenantId, id: &MessageId) -> Result<Option<Message>, StoreError> {
                let row = sqlx::query_as::<Db, sql::MessageRow>(sql::MESSAGE)
                    .bind(tenant)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(|row| row.open(&self.keyring).map(|(message, _)| message))
                    .transpose()
            }

            async fn list_messages(
                &self,
                tenant: &TenantId,
                query: &MessageQuery,
            ) -> Result<Vec<Message>, StoreError> {
                let mut sql = sqlx::QueryBuilder::<Db>::new(concat!(
                    "SELECT ",
                    sql::message_columns!(),
                    " FROM messages WHERE tenant_id = "
                ));
                sql.push_bind(tenant);
                match &query.mailbox {
                    Mailbox::Sent(user) => {
                        sql.push(" AND sender_id = ").push_bind(user);
                    }
                    Mailbox::Received(user) => {
                        sql.push(" AND recipient_id = ")
                            .push_bind(user)
                            .push(" AND status IN ('delivered', 'read')");
                    }
                    Mailbox::All => {}
                }
                if let Some(status) = query.status {
                    sql.push(" AND status = ").push_bind(status.as_str());
                }
                if let Some(before) = &query.before {
                    sql.push(" AND id < ").push_bind(before);
                }
                sql.push(" ORDER BY id DESC LIMIT ")
                    .push_bind(i64::from(query.limit))
                    .push(" OFFSET ")
                    .push_bind(sql::ms(query.offset));
                let rows = sql.build_query_as::<sql::MessageRow>().fetch_all(&self.pool).await?;
                rows.into_iter()
                    .map(|row| row.open(&self.keyring).map(|(message, _)| message))
                    .collect()
            }

            async fn message_events(&self, tenant: &TenantId, id: &MessageId) -> Result<Vec<Event>, StoreError> {
                let rows = sqlx::query_as::<Db, sql::EventRow>(sql::MESSAGE_EVENTS)
                    .bind(tenant)
                    .bind(id)
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn transition(
                &self,
                tenant: &TenantId,
                id: &MessageId,
                change: &Change,
                now_ms: u64,
            ) -> Result<Option<Message>, StoreError> {
                if change.from.is_empty() {
                    return Ok(None);
                }
                let mut sql = sqlx::QueryBuilder::<Db>::new(
                    "UPDATE messages SET previous_status = status, status = ",
                );
                sql.push_bind(change.to.as_str());
                if let Some(at) = change.deliver_at_ms {
                    sql.push(", deliver_at_ms = ").push_bind(sql::ms(at));
                }
                if change.reset_attempts {
                    sql.push(", attempts = 0, last_error = NULL, lease_token = NULL, lease_until_ms = NULL");
                }
                if change.to == Status::Read {
                    sql.push(", read_at_ms = ").push_bind(sql::ms(now_ms));
                }
                sql.push(", updated_at_ms = ")
                    .push_bind(sql::ms(now_ms))
                    .push(" WHERE tenant_id = ")
                    .push_bind(tenant)
                    .push(" AND id = ")
                    .push_bind(id)
                    .push(" AND status IN (")
                    .push(sql::status_list(&change.from))
                    .push(concat!(") RETURNING ", sql::message_columns!()));
                let mut tx = self.writer.begin().await?;
                let row = sql
                    .build_query_as::<sql::MessageRow>()
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(row) = row else {
                    tx.commit().await?;
                    return Ok(None);
                };
                let (message, previous) = row.open(&self.keyring)?;
                let mut events = change.events.clone();
                events.push(Event::transition(now_ms, previous, change.to, "requested"));
                record_events(&mut tx, id, &events).await?;
                let feed = crate::domain::feed::for_sender(&message, change.to, None, now_ms);
                let feed = match &feed {
                    Some(event) => record_feed(&mut tx, &self.keyring, &[(tenant, event)]).await?,
                    None => Vec::new(),
                };
                tx.commit().await?;
                self.feed.notify(feed);
                Ok(Some(message))
            }

            async fn delete_message(
                &self,
                tenant: &TenantId,
                id: &MessageId,
                status: Status,
            ) -> Result<bool, StoreError> {
                let deleted = sqlx::query::<Db>(sql::DELETE_MESSAGE)
                    .bind(tenant)
                    .bind(id)
                    .bind(status.as_str())
                    .execute(&self.writer)
                    .await?
                    .rows_affected();
                Ok(deleted == 1)
            }

            async fn begin_deliveries(
                &self,
                ids: &[MessageId],
                token: &str,
                now_ms: u64,
                lease_until_ms: u64,
            ) -> Result<Vec<Message>, StoreError> {
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let mut sql = sqlx::QueryBuilder::<Db>::new(
                    "UPDATE messages SET previous_status = status, status = 'delivering', lease_token = ",
                );
                sql.push_bind(token)
                    .push(", lease_until_ms = ")
                    .push_bind(sql::ms(lease_until_ms))
                    .push(", attempts = attempts + 1, updated_at_ms = ")
                    .push_bind(sql::ms(now_ms))
                    .push(" WHERE id IN (");
                let mut list = sql.separated(", ");
                for id in ids {
                    list.push_bind(id);
                }
                sql.push(") AND (status IN ('scheduled', 'retrying') OR (status = 'delivering' AND lease_until_ms <= ")
                    .push_bind(sql::ms(now_ms))
                    .push(concat!(")) RETURNING ", sql::message_columns!()));
                let mut tx = self.writer.begin().await?;
                let rows = sql.build_query_as::<sql::MessageRow>().fetch_all(&mut *tx).await?;
                let mut messages = Vec::with_capacity(rows.len());
                let mut events = Vec::with_capacity(rows.len());
                for row in rows {
                    let (message, previous) = row.open(&self.keyring)?;
                    let reason = if previous == Some(Status::Delivering) {
                        "claimed again: the previous lease expired"
                    } else {
                        "claimed"
                    };
                    events.push(Event::transition(now_ms, previous, Status::Delivering, reason));
                    messages.push(message);
                }
                let pairs: Vec<(&MessageId, &Event)> =
                    messages.iter().map(|message| &message.id).zip(&events).collect();
                insert_events(&mut tx, &pairs).await?;
                tx.commit().await?;
                Ok(messages)
            }

            fn writers(&self) -> usize {
                self.writer.options().get_max_connections() as usize
            }

            async fn finish_deliveries(&self, outcomes: &[Outcome]) -> Result<Vec<bool>, StoreError> {
                if outcomes.is_empty() {
                    return Ok(Vec::new());
                }
                // One UPDATE for the whole group, joined to its outcomes by a VALUES list
                // (columns column1…column7 on both backends), and one INSERT for their events.
                let mut update = sqlx::QueryBuilder::<Db>::new(sql::FINISH_DELIVERIES_HEAD);
                update.push_values(outcomes, |mut row, outcome| {
                    row.push("CAST(")
                        .push_bind_unseparated(&outcome.id)
                        .push_unseparated(" AS TEXT)")
                        .push("CAST(")
                        .push_bind_unseparated(&outcome.tenant_id)
                        .push_unseparated(" AS TEXT)")
                        .push("CAST(")
                        .push_bind_unseparated(&outcome.token)
                        .push_unseparated(" AS TEXT)")
                        .push("CAST(")
                        .push_bind_unseparated(outcome.status.as_str())
                        .push_unseparated(" AS TEXT)")
                        .push("CAST(")
                        .push_bind_unseparated(outcome.deliver_at_ms.map(sql::ms))
                        .push_unseparated(" AS BIGINT)")
                        .push("CAST(")
                        .push_bind_unseparated(&outcome.error)
                        .push_unseparated(" AS TEXT)")
                        .push("CAST(")
                        .push_bind_unseparated(sql::ms(outcome.at_ms))
                        .push_unseparated(" AS BIGINT)");
                });
                update.push(sql::FINISH_DELIVERIES_TAIL);
                let mut tx = self.writer.begin().await?;
                let updated: Vec<MessageId> =
                    update.build_query_scalar().fetch_all(&mut *tx).await?;
                let committed: Vec<bool> = outcomes
                    .iter()
                    .map(|outcome| updated.contains(&outcome.id))
                    .collect();
                let events: Vec<(&MessageId, &Event)> = outcomes
                    .iter()
                    .zip(&committed)
                    .filter(|(_, committed)| **committed)
                    .flat_map(|(outcome, _)| outcome.events.iter().map(|event| (&outcome.id, event)))
                    .collect();
                insert_events(&mut tx, &events).await?;
                let feed: Vec<(&TenantId, &NewFeedEvent)> = outcomes
                    .iter()
                    .zip(&committed)
                    .filter(|(_, committed)| **committed)
                    .flat_map(|(outcome, _)| outcome.feed.iter().map(|event| (&outcome.tenant_id, event)))
                    .collect();
                let feed = record_feed(&mut tx, &self.keyring, &feed).await?;
                tx.commit().await?;
                self.feed.notify(feed);
                Ok(committed)
            }

            fn feed_notifier(&self) -> &crate::store::FeedNotifier {
                &self.feed
            }

            async fn feed_after(
                &self,
                tenant: &TenantId,
                user: &UserId,
                after: u64,
                limit: u32,
            ) -> Result<crate::store::FeedPage, StoreError> {
                // The head first: every cursor up to it is committed (the head row moves in the
                // same transaction as its events), so the events read next include all of them
                // that retention kept.
                let head: Option<i64> = sqlx::query_scalar::<Db, i64>(sql::FEED_HEAD)
                    .bind(tenant)
                    .bind(user)
                    .fetch_optional(&self.pool)
                    .await?;
                let rows = sqlx::query_as::<Db, sql::FeedRow>(sql::FEED_AFTER)
                    .bind(tenant)
                    .bind(user)
                    .bind(sql::ms(after))
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?;
                let events = rows
                    .into_iter()
                    .map(|row| row.open(&self.keyring))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(crate::store::FeedPage {
                    events,
                    head: head.map_or(0, sql::due_from_ms),
                })
            }

            async fn prune_feed(&self, before_ms: u64) -> Result<u64, StoreError> {
                // In slices, so a large backlog never holds the write lock for long.
                const SLICE: i64 = 5_000;
                let mut total = 0;
                loop {
                    let deleted = sqlx::query::<Db>(sql::PRUNE_FEED)
                        .bind(sql::ms(before_ms))
                        .bind(SLICE)
                        .execute(&self.writer)
                        .await?
                        .rows_affected();
                    total += deleted;
                    if deleted < SLICE as u64 {
                        return Ok(total);
                    }
                }
            }

            async fn pending(
                &self,
                after: Option<&MessageId>,
                limit: u32,
            ) -> Result<Vec<(MessageId, u64)>, StoreError> {
                let rows = sqlx::query_as::<Db, sql::PendingRow>(sql::PENDING)
                    .bind(after)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows
                    .into_iter()
                    .map(|row| {
                        let due = row.due();
                        (row.id, due)
                    })
                    .collect())
            }

            async fn queue_counts(&self, now_ms: u64) -> Result<Vec<super::QueueCount>, StoreError> {
                let counts = sqlx::query_as::<Db, sql::QueueRow>(sql::QUEUE_COUNTS)
                    .fetch_all(&self.pool)
                    .await?;
                let pending = sqlx::query_as::<Db, sql::PendingGroupRow>(sql::QUEUE_PENDING)
                    .bind(sql::ms(now_ms))
                    .bind(sql::ms(now_ms.saturating_add(60_000)))
                    .bind(sql::ms(now_ms.saturating_add(3_600_000)))
                    .fetch_all(&self.pool)
                    .await?;
                Ok(sql::queue_report(counts, pending))
            }

            async fn set_webhook(
                &self,
                tenant: &TenantId,
                user: &UserId,
                url: &str,
                secret: &str,
                now_ms: u64,
            ) -> Result<(), StoreError> {
                let mut tx = self.writer.begin().await?;
                sqlx::query::<Db>(sql::UPSERT_WEBHOOK)
                    .bind(user)
                    .bind(tenant)
                    .bind(url)
                    .bind(sql::ms(now_ms))
                    .execute(&mut *tx)
                    .await?;
                sqlx::query::<Db>(sql::DELETE_WEBHOOK_SECRETS)
                    .bind(user)
                    .execute(&mut *tx)
                    .await?;
                insert_secret(&mut tx, &self.keyring, tenant, user, secret, now_ms).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn add_webhook_secret(
                &self,
                tenant: &TenantId,
                user: &UserId,
                secret: &str,
                now_ms: u64,
                retire_at_ms: u64,
            ) -> Result<bool, StoreError> {
                let mut tx = self.writer.begin().await?;
                let exists = sqlx::query::<Db>(sql::TOUCH_WEBHOOK)
                    .bind(user)
                    .bind(tenant)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                    == 1;
                if exists {
                    sqlx::query::<Db>(sql::RETIRE_WEBHOOK_SECRETS)
                        .bind(user)
                        .bind(sql::ms(retire_at_ms))
                        .execute(&mut *tx)
                        .await?;
                    insert_secret(&mut tx, &self.keyring, tenant, user, secret, now_ms).await?;
                }
                tx.commit().await?;
                Ok(exists)
            }

            async fn delete_webhook(&self, tenant: &TenantId, user: &UserId) -> Result<bool, StoreError> {
                let deleted = sqlx::query::<Db>(sql::DELETE_WEBHOOK)
                    .bind(user)
                    .bind(tenant)
                    .execute(&self.writer)
                    .await?
                    .rows_affected();
                Ok(deleted == 1)
            }

            async fn webhook(
                &self,
                tenant: &TenantId,
                user: &UserId,
                now_ms: u64,
            ) -> Result<Option<Webhook>, StoreError> {
                let Some(row) = sqlx::query_as::<Db, sql::WebhookRow>(sql::WEBHOOK)
                    .bind(user)
                    .bind(tenant)
                    .fetch_optional(&self.pool)
                    .await?
                else {
                    return Ok(None);
                };
                let secrets = sqlx::query_as::<Db, sql::SecretRow>(sql::WEBHOOK_SECRETS)
                    .bind(user)
                    .bind(sql::ms(now_ms))
                    .fetch_all(&self.pool)
                    .await?
                    .into_iter()
                    .map(|secret| secret.open(&self.keyring, tenant))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Some(Webhook {
                    url: row.url,
                    secrets,
                    created_at_ms: sql::due_from_ms(row.created_at_ms),
                    disabled: row.disabled_reason,
                }))
            }

            async fn disable_webhook(
                &self,
                tenant: &TenantId,
                user: &UserId,
                reason: &str,
                now_ms: u64,
            ) -> Result<(), StoreError> {
                sqlx::query::<Db>(sql::DISABLE_WEBHOOK)
                    .bind(user)
                    .bind(tenant)
                    .bind(sql::ms(now_ms))
                    .bind(reason)
                    .execute(&self.writer)
                    .await?;
                Ok(())
            }

            async fn insert_plugin(
                &self,
                plugin: $crate::store::NewPlugin,
                quota: $crate::domain::plugin::PluginQuota,
            ) -> Result<$crate::store::PluginInsert, StoreError> {
                use $crate::domain::plugin::PluginUsage;
                use $crate::store::PluginInsert;
                let mut tx = self.writer.begin().await?;
                // A write first: SQLite takes its write lock now (see the module docs), and
                // PostgreSQL locks the tenant's row, so the counts below are current.
                sqlx::query::<Db>(sql::LOCK_TENANT)
                    .bind(&plugin.tenant_id)
                    .execute(&mut *tx)
                    .await?;
                let existing = sqlx::query_as::<Db, sql::PluginRow>(sql::PLUGIN_BY_DIGEST)
                    .bind(&plugin.tenant_id)
                    .bind(&plugin.digest)
                    .fetch_optional(&mut *tx)
                    .await?;
                if let Some(row) = existing {
                    tx.commit().await?;
                    return Ok(PluginInsert::Existing(row.try_into()?));
                }
                let (plugins, bytes): (i64, i64) = sqlx::query_as::<Db, (i64, i64)>(sql::PLUGIN_USAGE)
                    .bind(&plugin.tenant_id)
                    .fetch_one(&mut *tx)
                    .await?;
                let usage = PluginUsage {
                    plugins: u64::try_from(plugins).unwrap_or(0),
                    bytes: u64::try_from(bytes).unwrap_or(0),
                };
                let size = u64::try_from(plugin.component.len()).unwrap_or(u64::MAX);
                if let Err(exceeded) = quota.admit(usage, size) {
                    tx.rollback().await?;
                    return Ok(PluginInsert::OverQuota(exceeded));
                }
                sqlx::query::<Db>(sql::INSERT_PLUGIN)
                    .bind(&plugin.id)
                    .bind(&plugin.tenant_id)
                    .bind(&plugin.name)
                    .bind(&plugin.version)
                    .bind(plugin.world.as_str())
                    .bind(&plugin.digest)
                    .bind(i64::try_from(plugin.component.len()).unwrap_or(i64::MAX))
                    .bind(&plugin.component)
                    .bind(sql::ms(plugin.created_at_ms))
                    .execute(&mut *tx)
                    .await?;
                let row = sqlx::query_as::<Db, sql::PluginRow>(sql::PLUGIN_BY_DIGEST)
                    .bind(&plugin.tenant_id)
                    .bind(&plugin.digest)
                    .fetch_one(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(PluginInsert::Inserted(row.try_into()?))
            }

            async fn plugins(
                &self,
                tenant: &TenantId,
            ) -> Result<Vec<$crate::domain::plugin::PluginRecord>, StoreError> {
                sqlx::query_as::<Db, sql::PluginRow>(sql::LIST_PLUGINS)
                    .bind(tenant)
                    .fetch_all(&self.pool)
                    .await?
                    .into_iter()
                    .map(TryInto::try_into)
                    .collect()
            }

            async fn plugin(
                &self,
                tenant: &TenantId,
                id: &$crate::domain::ids::PluginId,
            ) -> Result<Option<$crate::domain::plugin::PluginRecord>, StoreError> {
                sqlx::query_as::<Db, sql::PluginRow>(sql::PLUGIN)
                    .bind(tenant)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?
                    .map(TryInto::try_into)
                    .transpose()
            }

            async fn plugin_component(
                &self,
                tenant: &TenantId,
                id: &$crate::domain::ids::PluginId,
            ) -> Result<Option<Vec<u8>>, StoreError> {
                let row: Option<(Vec<u8>,)> = sqlx::query_as::<Db, (Vec<u8>,)>(sql::PLUGIN_COMPONENT)
                    .bind(tenant)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map(|(bytes,)| bytes))
            }

            async fn delete_plugin(
                &self,
                tenant: &TenantId,
                id: &$crate::domain::ids::PluginId,
            ) -> Result<$crate::store::PluginDeletion, StoreError> {
                use $crate::store::PluginDeletion;
                let mut tx = self.writer.begin().await?;
                // A write first: SQLite takes its write lock now (see the module docs).
                let deleted = sqlx::query_scalar::<Db, String>(sql::DELETE_PLUGIN)
                    .bind(tenant)
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await;
                let deleted = match deleted {
                    Ok(digest) => digest,
                    Err(sqlx::Error::Database(error)) if error.is_foreign_key_violation() => {
                        tx.rollback().await?;
                        let hooks: Vec<(String,)> = sqlx::query_as::<Db, (String,)>(sql::PLUGIN_HOOKS)
                            .bind(tenant)
                            .bind(id)
                            .fetch_all(&self.writer)
                            .await?;
                        return Ok(PluginDeletion::Bound(
                            hooks.into_iter().map(|(hook,)| hook).collect(),
                        ));
                    }
                    Err(error) => return Err(error.into()),
                };
                let Some(digest) = deleted else {
                    tx.commit().await?;
                    return Ok(PluginDeletion::NotFound);
                };
                let uses: i64 = sqlx::query_scalar::<Db, i64>(sql::DIGEST_USES)
                    .bind(&digest)
                    .fetch_one(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(PluginDeletion::Deleted {
                    digest,
                    shared: uses > 0,
                })
            }

            async fn set_plugin_disabled(
                &self,
                tenant: &TenantId,
                id: &$crate::domain::ids::PluginId,
                disabled: Option<&$crate::domain::plugin::Disabled>,
            ) -> Result<bool, StoreError> {
                let query = match disabled {
                    Some(disabled) => sqlx::query::<Db>(sql::DISABLE_PLUGIN)
                        .bind(tenant)
                        .bind(id)
                        .bind(sql::ms(disabled.at_ms))
                        .bind(&disabled.reason),
                    None => sqlx::query::<Db>(sql::ENABLE_PLUGIN).bind(tenant).bind(id),
                };
                Ok(query.execute(&self.writer).await?.rows_affected() == 1)
            }

            async fn hook_bindings(
                &self,
                tenant: &TenantId,
            ) -> Result<Vec<$crate::domain::plugin::HookBinding>, StoreError> {
                sqlx::query_as::<Db, sql::HookRow>(sql::HOOK_BINDINGS)
                    .bind(tenant)
                    .fetch_all(&self.pool)
                    .await?
                    .into_iter()
                    .map(TryInto::try_into)
                    .collect()
            }

            async fn set_hook(
                &self,
                tenant: &TenantId,
                hook: $crate::domain::plugin::Hook,
                plugins: &[($crate::domain::ids::PluginId, $crate::sandbox::Binding)],
                now_ms: u64,
            ) -> Result<(), StoreError> {
                let mut tx = self.writer.begin().await?;
                sqlx::query::<Db>(sql::DELETE_HOOK)
                    .bind(tenant)
                    .bind(hook.as_str())
                    .execute(&mut *tx)
                    .await?;
                for (position, (plugin, binding)) in plugins.iter().enumerate() {
                    sqlx::query::<Db>(sql::INSERT_HOOK_BINDING)
                        .bind(tenant)
                        .bind(hook.as_str())
                        .bind(i64::try_from(position).unwrap_or(i64::MAX))
                        .bind(plugin)
                        .bind(serde_json::to_string(binding).expect("a binding is JSON"))
                        .bind(sql::ms(now_ms))
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(())
            }
        }

        /// Records history entries for a message, inside the caller's transaction.
        async fn record_events(
            tx: &mut sqlx::Transaction<'static, Db>,
            id: &MessageId,
            events: &[Event],
        ) -> Result<(), sqlx::Error> {
            let pairs: Vec<(&MessageId, &Event)> = events.iter().map(|event| (id, event)).collect();
            insert_events(tx, &pairs).await
        }

        /// Records history entries of several messages with one multi-row INSERT per 1000
        /// (well under both backends' bind-parameter limits), inside the caller's transaction.
        async fn insert_events(
            tx: &mut sqlx::Transaction<'static, Db>,
            events: &[(&MessageId, &Event)],
        ) -> Result<(), sqlx::Error> {
            for chunk in events.chunks(1000) {
                let mut insert = sqlx::QueryBuilder::<Db>::new(sql::INSERT_EVENTS_HEAD);
                insert.push_values(chunk, |mut row, (id, event)| {
                    row.push_bind(*id)
                        .push_bind(sql::ms(event.at_ms))
                        .push_bind(event.kind.as_str())
                        .push_bind(event.from.map(Status::as_str))
                        .push_bind(event.to.map(Status::as_str))
                        .push_bind(event.attempt.map(i64::from))
                        .push_bind(&event.result)
                        .push_bind(event.duration_ms.map(sql::ms))
                        .push_bind(event.plugin.as_ref().map(|plugin| plugin.name.as_str()))
                        .push_bind(event.plugin.as_ref().map(|plugin| plugin.digest.as_str()));
                });
                insert.build().execute(&mut **tx).await?;
            }
            Ok(())
        }

        /// Appends events to users' feeds inside the caller's transaction, and returns them
        /// with their cursors. Each user's head row is locked by one multi-row upsert, in
        /// (tenant, user) order so concurrent transactions cannot deadlock, and hands out as
        /// many cursors as the user gets events here.
        async fn record_feed(
            tx: &mut sqlx::Transaction<'static, Db>,
            keyring: &crate::store::crypto::Keyring,
            events: &[(&TenantId, &NewFeedEvent)],
        ) -> Result<Vec<crate::domain::feed::FeedEvent>, StoreError> {
            use std::collections::BTreeMap;
            if events.is_empty() {
                return Ok(Vec::new());
            }
            let mut by_user: BTreeMap<(&TenantId, &UserId), Vec<&NewFeedEvent>> = BTreeMap::new();
            for (tenant, event) in events {
                by_user.entry((*tenant, &event.user_id)).or_default().push(*event);
            }
            let mut heads: BTreeMap<(TenantId, UserId), u64> = BTreeMap::new();
            let users: Vec<_> = by_user.iter().collect();
            for chunk in users.chunks(1000) {
                let mut upsert = sqlx::QueryBuilder::<Db>::new(sql::FEED_HEADS_HEAD);
                upsert.push_values(chunk, |mut row, ((tenant, user), events)| {
                    row.push_bind(*tenant)
                        .push_bind(*user)
                        .push_bind(i64::try_from(events.len()).unwrap_or(i64::MAX));
                });
                upsert.push(sql::FEED_HEADS_TAIL);
                let rows: Vec<(TenantId, UserId, i64)> =
                    upsert.build_query_as().fetch_all(&mut **tx).await?;
                for (tenant, user, last) in rows {
                    heads.insert((tenant, user), sql::due_from_ms(last));
                }
            }
            let mut stored = Vec::with_capacity(events.len());
            for ((tenant, user), events) in by_user {
                let last = heads
                    .get(&((*tenant).clone(), (*user).clone()))
                    .copied()
                    .ok_or(StoreError::Database(sqlx::Error::RowNotFound))?;
                let first = last + 1 - events.len() as u64;
                for (offset, event) in events.into_iter().enumerate() {
                    stored.push(crate::domain::feed::FeedEvent {
                        tenant_id: tenant.clone(),
                        user_id: user.clone(),
                        cursor: first + offset as u64,
                        at_ms: event.at_ms,
                        body: event.body.clone(),
                    });
                }
            }
            for chunk in stored.chunks(1000) {
                let mut insert = sqlx::QueryBuilder::<Db>::new(sql::INSERT_FEED_HEAD);
                insert.push_values(chunk, |mut row, event| {
                    let body = serde_json::to_vec(&event.body).expect("a JSON value serializes");
                    let record = sql::feed_record(&event.user_id, event.cursor);
                    let sealed = keyring.seal(event.tenant_id.as_str(), &record, &body);
                    row.push_bind(&event.tenant_id)
                        .push_bind(&event.user_id)
                        .push_bind(sql::ms(event.cursor))
                        .push_bind(sql::ms(event.at_ms))
                        .push_bind(crate::domain::feed::kind_of(&event.body).to_owned())
                        .push_bind(sealed.key_id)
                        .push_bind(sealed.nonce)
                        .push_bind(sealed.ciphertext);
                });
                insert.build().execute(&mut **tx).await?;
            }
            Ok(stored)
        }

        /// Seals and stores a webhook secret, inside the caller's transaction.
        async fn insert_secret(
            tx: &mut sqlx::Transaction<'static, Db>,
            keyring: &crate::store::crypto::Keyring,
            tenant: &TenantId,
            user: &UserId,
            secret: &str,
            now_ms: u64,
        ) -> Result<(), StoreError> {
            let id = format!("whs_{}", ulid::Ulid::from(uuid::Uuid::now_v7().as_u128()));
            let sealed = keyring.seal(tenant.as_str(), &id, secret.as_bytes());
            sqlx::query::<Db>(sql::INSERT_WEBHOOK_SECRET)
                .bind(&id)
                .bind(user)
                .bind(&sealed.key_id)
                .bind(&sealed.nonce)
                .bind(&sealed.ciphertext)
                .bind(sql::ms(now_ms))
                .execute(&mut **tx)
                .await?;
            Ok(())
        }
    };
}

pub(super) use impl_store;
