//! The store both backends run: [`SqlStore`], generic over the backend's sqlx database. The
//! statements here are the same on both (placeholders `$1…$N`, which PostgreSQL and sqlx's
//! SQLite driver both bind by number); what differs is behind [`Backend`].
//!
//! Writes go through a pool of their own (`writer`): on SQLite one connection, where they
//! queue in order instead of contending for the file's single write lock; on PostgreSQL half of
//! `DB_MAX_CONNECTIONS`, so a burst of reads never holds a commit back. Every write transaction
//! starts with [`Backend::begin_write`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Type};

use super::backend::{Backend, FinishRow};
use super::crypto::Keyring;
use super::rows::{
    self, CallbackRow, ClaimRow, CredentialsRow, EventRow, FanOutRow, FeedInsertRow, FeedRow,
    FlowLimitRow, GroupRow, HookRow, IdempotencyKeyRow, IdempotencyRow, MessageRow, NewMessageRow,
    PendingGroupRow, PendingRow, PluginRow, SessionRow, StateRow, StepKind, StepRow, TenantRow,
    UserRow, from_ms, ms,
};
use super::{
    Accepted, Callback, Change, Changed, Claimed, FeedNotifier, FeedPage, Finished, FlowRoute,
    Mailbox, MembersAdded, MessageQuery, NewCallback, NewMessage, NewPlugin, NewSession, NewUser,
    Outcome, Page, PluginDeletion, PluginInsert, QueueCount, Rotation, StatusCount, Store,
    StoreError, Stored, Webhook,
};
use crate::domain::callback::{self, CallbackEvent, Notice};
use crate::domain::feed::{self, FeedEvent, NewFeedEvent};
use crate::domain::flow::{FlowLimit, Limits};
use crate::domain::group::{FanOutSummary, Group};
use crate::domain::ids::{FanOutId, GroupId, MessageId, PluginId, SessionId, TenantId, UserId};
use crate::domain::message::{Channel, Event, Message, MessageState, Requested, Status};
use crate::domain::plugin::Binding;
use crate::domain::plugin::{Disabled, Hook, HookBinding, PluginQuota, PluginRecord, PluginUsage};
use crate::domain::user::{Session, Tenant, User};

/// The store over one backend.
pub(super) struct SqlStore<B: Backend> {
    /// Reads.
    pub(super) pool: sqlx::Pool<B>,
    /// Writes (see the module docs).
    pub(super) writer: sqlx::Pool<B>,
    /// Seals and opens message content, webhook secrets and feed bodies.
    pub(super) keyring: Arc<Keyring>,
    /// Where committed feed events go.
    pub(super) feed: FeedNotifier,
}

impl<B: Backend> std::fmt::Debug for SqlStore<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("backend", &B::BACKEND)
            .finish_non_exhaustive()
    }
}

const INSERT_TENANT: &str = "INSERT INTO tenants (id, name, created_at_ms) VALUES ($1, $2, $3) \
     RETURNING id, name, created_at_ms";
const TENANT_BY_NAME: &str = "SELECT id, name, created_at_ms FROM tenants WHERE name = $1";
const LIST_TENANTS: &str = "SELECT id, name, created_at_ms FROM tenants ORDER BY name";

const INSERT_USER: &str = "INSERT INTO users \
     (id, tenant_id, username, display_name, role, password_hash, created_at_ms, \
     username_key, username_skeleton) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
     RETURNING id, tenant_id, username, display_name, role, created_at_ms";
const USER: &str = "SELECT id, tenant_id, username, display_name, role, created_at_ms \
     FROM users WHERE tenant_id = $1 AND id = $2 AND deleted_at_ms IS NULL";
/// By the name's key (`$2`); a user left without one (its name collided with an older
/// user's when keys were introduced) by its exact name (`$1`), which wins when both match.
const CREDENTIALS: &str = "SELECT id, tenant_id, username, display_name, role, created_at_ms, \
     password_hash FROM users WHERE deleted_at_ms IS NULL \
     AND (username_key = $2 OR (username_key IS NULL AND username = $1)) \
     ORDER BY CASE WHEN username = $1 THEN 0 ELSE 1 END LIMIT 1";
/// Users whose key or skeleton is still to be computed (the migration that added them).
const USERS_WITHOUT_KEYS: &str = "SELECT id, username FROM users \
     WHERE username_key IS NULL OR username_skeleton IS NULL ORDER BY created_at_ms, id";
const SET_USERNAME_KEY: &str =
    "UPDATE users SET username_key = $2 WHERE id = $1 AND username_key IS NULL";
const SET_USERNAME_SKELETON: &str =
    "UPDATE users SET username_skeleton = $2 WHERE id = $1 AND username_skeleton IS NULL";
const LIST_USERS: &str = "SELECT id, tenant_id, username, display_name, role, created_at_ms \
     FROM users WHERE tenant_id = $1 AND deleted_at_ms IS NULL ORDER BY id LIMIT $2 OFFSET $3";
const COUNT_USERS: &str =
    "SELECT COUNT(*) FROM users WHERE tenant_id = $1 AND deleted_at_ms IS NULL";
const DELETE_USER: &str = "UPDATE users SET deleted_at_ms = $3 \
     WHERE tenant_id = $1 AND id = $2 AND deleted_at_ms IS NULL";
const SET_PASSWORD: &str = "UPDATE users SET password_hash = $3 \
     WHERE tenant_id = $1 AND id = $2 AND deleted_at_ms IS NULL";
const REVOKE_USER_SESSIONS: &str = "UPDATE sessions SET revoked_at_ms = $2, revoked_reason = $3 \
     WHERE user_id = $1 AND revoked_at_ms IS NULL AND ($4 IS NULL OR id <> $4)";

const INSERT_SESSION: &str = "INSERT INTO sessions \
     (id, tenant_id, user_id, created_at_ms, last_used_at_ms, expires_at_ms, user_agent, ip) \
     VALUES ($1, $2, $3, $4, $4, $5, $6, $7) \
     RETURNING id, user_id, tenant_id, created_at_ms, last_used_at_ms, expires_at_ms, user_agent, ip";
const INSERT_REFRESH_TOKEN: &str =
    "INSERT INTO refresh_tokens (hash, session_id, created_at_ms) VALUES ($1, $2, $3)";
/// Marks a token used if it was not: the single statement that decides who rotates.
const USE_REFRESH_TOKEN: &str = "UPDATE refresh_tokens SET used_at_ms = $2 \
     WHERE hash = $1 AND used_at_ms IS NULL RETURNING session_id";
const REFRESH_TOKEN_SESSION: &str = "SELECT session_id FROM refresh_tokens WHERE hash = $1";
const EXTEND_LIVE_SESSION: &str = "UPDATE sessions SET last_used_at_ms = $2, expires_at_ms = $3 \
     WHERE id = $1 AND revoked_at_ms IS NULL AND expires_at_ms > $2 \
     AND user_id IN (SELECT id FROM users WHERE deleted_at_ms IS NULL) \
     RETURNING id, user_id, tenant_id, created_at_ms, last_used_at_ms, expires_at_ms, user_agent, ip";
const REVOKE_SESSION_BY_ID: &str = "UPDATE sessions SET revoked_at_ms = $2, revoked_reason = $3 \
     WHERE id = $1 AND revoked_at_ms IS NULL RETURNING tenant_id, user_id";
const USER_BY_ID: &str = "SELECT id, tenant_id, username, display_name, role, created_at_ms \
     FROM users WHERE id = $1";
const AUTHENTICATE: &str = "SELECT u.id, u.tenant_id, u.username, u.display_name, u.role, \
     u.created_at_ms FROM sessions s JOIN users u ON u.id = s.user_id \
     WHERE s.id = $1 AND s.user_id = $2 AND s.tenant_id = $3 AND s.revoked_at_ms IS NULL \
     AND s.expires_at_ms > $4 AND u.deleted_at_ms IS NULL";
const LIST_SESSIONS: &str = "SELECT id, user_id, tenant_id, created_at_ms, last_used_at_ms, \
     expires_at_ms, user_agent, ip FROM sessions \
     WHERE tenant_id = $1 AND user_id = $2 AND revoked_at_ms IS NULL AND expires_at_ms > $3 \
     ORDER BY created_at_ms DESC, id DESC";
const REVOKE_SESSION: &str = "UPDATE sessions SET revoked_at_ms = $4, revoked_reason = $5 \
     WHERE id = $1 AND user_id = $2 AND tenant_id = $3 AND revoked_at_ms IS NULL";

const INSERT_GROUP: &str =
    "INSERT INTO groups (id, tenant_id, name, created_at_ms) VALUES ($1, $2, $3, $4)";
/// The tenant's groups with their member counts (rows of [`GroupRow`]).
const LIST_GROUPS: &str = "SELECT g.id, g.tenant_id, g.name, g.created_at_ms, \
     (SELECT COUNT(*) FROM group_members gm WHERE gm.group_id = g.id) AS members FROM groups g \
     WHERE g.tenant_id = $1 ORDER BY g.id LIMIT $2 OFFSET $3";
const GROUP: &str = "SELECT g.id, g.tenant_id, g.name, g.created_at_ms, \
     (SELECT COUNT(*) FROM group_members gm WHERE gm.group_id = g.id) AS members FROM groups g \
     WHERE g.tenant_id = $1 AND g.id = $2";
const COUNT_GROUPS: &str = "SELECT COUNT(*) FROM groups WHERE tenant_id = $1";
const LOCK_GROUP: &str = "SELECT id FROM groups WHERE tenant_id = $1 AND id = $2";
const DELETE_GROUP_MEMBERS: &str =
    "DELETE FROM group_members WHERE tenant_id = $1 AND group_id = $2";
const DELETE_GROUP: &str = "DELETE FROM groups WHERE tenant_id = $1 AND id = $2";
const COUNT_MEMBERS: &str = "SELECT COUNT(*) FROM group_members WHERE group_id = $1";
const REMOVE_MEMBER: &str = "DELETE FROM group_members WHERE group_id = $1 AND user_id = $2";
/// A user who is deleted leaves every group.
const LEAVE_GROUPS: &str = "DELETE FROM group_members WHERE user_id = $1";
const MEMBERS: &str = "SELECT u.id, u.tenant_id, u.username, u.display_name, u.role, \
     u.created_at_ms FROM group_members gm JOIN users u ON u.id = gm.user_id \
     WHERE gm.group_id = $1 AND gm.tenant_id = $2 AND u.deleted_at_ms IS NULL \
     ORDER BY u.id LIMIT $3 OFFSET $4";
const MEMBER_IDS: &str = "SELECT gm.user_id FROM group_members gm \
     JOIN users u ON u.id = gm.user_id \
     WHERE gm.group_id = $1 AND gm.tenant_id = $2 AND u.deleted_at_ms IS NULL ORDER BY gm.user_id";
const INSERT_FAN_OUT: &str = "INSERT INTO fan_outs \
     (id, tenant_id, sender_id, group_id, count, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6)";
const FAN_OUT: &str = "SELECT id, tenant_id, sender_id, group_id, count, created_at_ms \
     FROM fan_outs WHERE tenant_id = $1 AND id = $2";
const FAN_OUT_STATUSES: &str = "SELECT s.status, COUNT(*) FROM messages m \
     JOIN message_states s ON s.message_id = m.id \
     WHERE m.fan_out_id = $1 AND m.tenant_id = $2 GROUP BY s.status";
/// Fan-outs whose messages retention has deleted, all of them.
const PRUNE_FAN_OUTS: &str = "DELETE FROM fan_outs WHERE created_at_ms < $1 \
     AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.fan_out_id = fan_outs.id)";

const IDEMPOTENCY: &str = "SELECT request_hash, response FROM idempotency_keys \
     WHERE tenant_id = $1 AND user_id = $2 AND key = $3 AND created_at_ms >= $4";
/// Up to `$2` idempotency keys stored before `$1`, deleted (in slices, so a backlog never holds
/// the write lock for long).
const PRUNE_IDEMPOTENCY: &str = "DELETE FROM idempotency_keys \
     WHERE (tenant_id, user_id, key) IN (SELECT tenant_id, user_id, key FROM idempotency_keys \
     WHERE created_at_ms < $1 LIMIT $2)";

/// `messages m JOIN message_states s`, the message and where it is.
const MESSAGE_JOIN: &str = " FROM messages m JOIN message_states s ON s.message_id = m.id";

/// A step's entries, oldest first, for a message of the tenant.
const MESSAGE_EVENTS: &str = "SELECT e.at_ms, e.kind, e.from_status, e.to_status, e.attempt, \
     e.result, e.duration_ms, e.plugin_name, e.plugin_digest, e.steps \
     FROM message_events e JOIN messages m ON m.id = e.message_id \
     WHERE m.tenant_id = $1 AND e.message_id = $2 ORDER BY e.id";
/// A message's status, read to decide a requested change (and locked for it on PostgreSQL).
const STATE_STATUS: &str =
    "SELECT status FROM message_states WHERE tenant_id = $1 AND message_id = $2";
/// A requested change, from the status just read ($7): to $3; a new due time ($4) if given;
/// attempts, error and lease reset when $5 (replay); the read time when it becomes `read`.
const CHANGE_STATE: &str = "UPDATE message_states SET status = $3, \
     deliver_at_ms = COALESCE($4, deliver_at_ms), \
     attempts = CASE WHEN $5 THEN 0 ELSE attempts END, \
     last_error = CASE WHEN $5 THEN NULL ELSE last_error END, \
     lease_token = CASE WHEN $5 THEN NULL ELSE lease_token END, \
     lease_until_ms = CASE WHEN $5 THEN NULL ELSE lease_until_ms END, \
     read_at_ms = CASE WHEN $3 = 'read' THEN $6 ELSE read_at_ms END, \
     updated_at_ms = $6 \
     WHERE tenant_id = $1 AND message_id = $2 AND status = $7";

const FEED_AFTER_TAIL: &str = " FROM feed_events f LEFT JOIN messages m ON m.id = f.message_id \
     WHERE f.tenant_id = $1 AND f.user_id = $2 AND f.cursor_no > $3 \
     ORDER BY f.cursor_no LIMIT $4";
const FEED_HEAD: &str = "SELECT last_cursor FROM feed_heads WHERE tenant_id = $1 AND user_id = $2";
const PRUNE_FEED: &str = "DELETE FROM feed_events WHERE (tenant_id, user_id, cursor_no) IN \
     (SELECT tenant_id, user_id, cursor_no FROM feed_events WHERE at_ms < $1 LIMIT $2)";

/// What the schedule index is rebuilt from: the narrow state rows in key order, after `$1`
/// (a range of the key: the reconciler reads only what was stored since its last pass).
const PENDING: &str = "SELECT message_id, status, deliver_at_ms, lease_until_ms \
     FROM message_states WHERE message_id > $1 \
     AND status IN ('scheduled', 'retrying', 'delivering') ORDER BY message_id LIMIT $2";
/// The kept counts, shards summed.
const STATUS_COUNTS: &str = "SELECT tenant_id, status, CAST(SUM(count) AS BIGINT) AS count \
     FROM message_counts GROUP BY tenant_id, status";
/// The queue report's due times, over the waiting and leased messages: $1 now, $2 a minute
/// from now, $3 an hour from now. The CASE sums give integers on both backends.
const QUEUE_PENDING: &str = "SELECT tenant_id, status, \
     CAST(SUM(CASE WHEN status <> 'delivering' AND deliver_at_ms <= $1 THEN 1 ELSE 0 END) AS BIGINT) AS overdue, \
     MIN(CASE WHEN status <> 'delivering' AND deliver_at_ms <= $1 THEN deliver_at_ms END) AS oldest_overdue_ms, \
     CAST(SUM(CASE WHEN status <> 'delivering' AND deliver_at_ms > $1 AND deliver_at_ms <= $2 THEN 1 ELSE 0 END) AS BIGINT) AS due_next_minute, \
     CAST(SUM(CASE WHEN status <> 'delivering' AND deliver_at_ms > $1 AND deliver_at_ms <= $3 THEN 1 ELSE 0 END) AS BIGINT) AS due_next_hour, \
     CAST(SUM(CASE WHEN status = 'delivering' AND lease_until_ms > $1 THEN 1 ELSE 0 END) AS BIGINT) AS leases_held \
     FROM message_states WHERE status IN ('scheduled', 'retrying', 'delivering') \
     GROUP BY tenant_id, status";
/// Up to $3 messages that ended before $1, oldest first. Ids grow with time and a message
/// ends after it is created, so none is newer than the first id of $1 ($2): the scan reads
/// the key's range up to there only.
const ENDED_BEFORE: &str = "SELECT message_id, tenant_id, status FROM message_states \
     WHERE message_id < $2 AND status IN ('delivered', 'read', 'dead', 'cancelled') \
     AND updated_at_ms < $1 ORDER BY message_id LIMIT $3";

const UPSERT_WEBHOOK: &str = "INSERT INTO webhooks (user_id, tenant_id, url, created_at_ms) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (user_id) DO UPDATE SET url = excluded.url, \
     tenant_id = excluded.tenant_id, created_at_ms = excluded.created_at_ms, \
     disabled_at_ms = NULL, disabled_reason = NULL";
const DELETE_WEBHOOK_SECRETS: &str = "DELETE FROM webhook_secrets WHERE user_id = $1";
const INSERT_WEBHOOK_SECRET: &str = "INSERT INTO webhook_secrets \
     (id, user_id, key_id, nonce, secret, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6)";
const TOUCH_WEBHOOK: &str = "UPDATE webhooks SET url = url WHERE user_id = $1 AND tenant_id = $2";
const RETIRE_WEBHOOK_SECRETS: &str = "UPDATE webhook_secrets SET expires_at_ms = $2 \
     WHERE user_id = $1 AND (expires_at_ms IS NULL OR expires_at_ms > $2)";
const FLOW_LIMITS: &str = "SELECT pattern, rate, period_seconds, parallelism, ordering, \
     created_at_ms, updated_at_ms FROM flow_limits WHERE tenant_id = $1 ORDER BY pattern";
const PUT_FLOW_LIMIT: &str = "INSERT INTO flow_limits (tenant_id, pattern, rate, period_seconds, \
     parallelism, ordering, created_at_ms, updated_at_ms) \
     VALUES ($1, $2, $3, $4, $5, $7, $6, $6) \
     ON CONFLICT (tenant_id, pattern) DO UPDATE SET rate = excluded.rate, \
     period_seconds = excluded.period_seconds, parallelism = excluded.parallelism, \
     ordering = excluded.ordering, updated_at_ms = excluded.updated_at_ms \
     RETURNING pattern, rate, period_seconds, parallelism, ordering, created_at_ms, \
     updated_at_ms";
const DELETE_FLOW_LIMIT: &str = "DELETE FROM flow_limits WHERE tenant_id = $1 AND pattern = $2";
const DELETE_WEBHOOK: &str = "DELETE FROM webhooks WHERE user_id = $1 AND tenant_id = $2";
const DISABLE_WEBHOOK: &str = "UPDATE webhooks SET disabled_at_ms = $3, disabled_reason = $4 \
     WHERE user_id = $1 AND tenant_id = $2";

const UPSERT_CALLBACK: &str = "INSERT INTO callbacks \
     (user_id, tenant_id, url, events, key_id, nonce, secrets, created_at_ms, updated_at_ms) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) ON CONFLICT (user_id) DO UPDATE SET \
     tenant_id = excluded.tenant_id, url = excluded.url, events = excluded.events, \
     key_id = excluded.key_id, nonce = excluded.nonce, secrets = excluded.secrets, \
     created_at_ms = excluded.created_at_ms, updated_at_ms = excluded.updated_at_ms";
const CALLBACK: &str = "SELECT url, events, key_id, nonce, secrets, created_at_ms \
     FROM callbacks WHERE tenant_id = $1 AND user_id = $2";
const SET_CALLBACK_SECRETS: &str = "UPDATE callbacks SET key_id = $3, nonce = $4, secrets = $5, \
     updated_at_ms = $6 WHERE tenant_id = $1 AND user_id = $2";
const DELETE_CALLBACK: &str = "DELETE FROM callbacks WHERE tenant_id = $1 AND user_id = $2";

const PLUGIN_COLUMNS: &str = "id, tenant_id, name, version, world, digest, size, created_at_ms, \
     disabled_at_ms, disabled_reason";
const INSERT_PLUGIN: &str = "INSERT INTO plugins \
     (id, tenant_id, name, version, world, digest, size, component, created_at_ms) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (tenant_id, digest) DO NOTHING";
const PLUGIN_COMPONENT: &str = "SELECT component FROM plugins WHERE tenant_id = $1 AND id = $2";
const DELETE_PLUGIN: &str = "DELETE FROM plugins WHERE tenant_id = $1 AND id = $2 RETURNING digest";
/// A write to the tenant's row that changes nothing: it locks the row (PostgreSQL), so two
/// uploads of one tenant check and fill its quota one after the other.
const LOCK_TENANT: &str = "UPDATE tenants SET created_at_ms = created_at_ms WHERE id = $1";
const PLUGIN_USAGE: &str = "SELECT CAST(count(*) AS BIGINT), \
     CAST(coalesce(sum(size), 0) AS BIGINT) FROM plugins WHERE tenant_id = $1";
const DIGEST_USES: &str = "SELECT CAST(count(*) AS BIGINT) FROM plugins WHERE digest = $1";
const PLUGIN_HOOKS: &str = "SELECT DISTINCT hook FROM hook_bindings \
     WHERE tenant_id = $1 AND plugin_id = $2 ORDER BY hook";
const DISABLE_PLUGIN: &str = "UPDATE plugins SET disabled_at_ms = $3, disabled_reason = $4 \
     WHERE tenant_id = $1 AND id = $2 AND disabled_at_ms IS NULL";
const ENABLE_PLUGIN: &str = "UPDATE plugins SET disabled_at_ms = NULL, disabled_reason = NULL \
     WHERE tenant_id = $1 AND id = $2";
const HOOK_BINDINGS: &str = "SELECT hook, position, plugin_id, binding FROM hook_bindings \
     WHERE tenant_id = $1 ORDER BY hook, position";
const DELETE_HOOK: &str = "DELETE FROM hook_bindings WHERE tenant_id = $1 AND hook = $2";
const INSERT_HOOK_BINDING: &str = "INSERT INTO hook_bindings \
     (tenant_id, hook, position, plugin_id, binding, updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6)";

/// A count shard for one write transaction: spread at random over the backend's shards.
fn shard<B: Backend>() -> i64 {
    if B::COUNT_SHARDS <= 1 {
        return 0;
    }
    let [byte] = crate::random::random_bytes::<1>();
    i64::from(u32::from(byte) % B::COUNT_SHARDS)
}

/// Appends events to users' feeds inside the caller's transaction, and returns them with
/// their cursors. Each user's head row is locked by one batched upsert, in (tenant, user)
/// order so concurrent transactions cannot deadlock, and hands out as many cursors as the user
/// gets events here. A body that carries its message's content is stored without it.
async fn record_feed<B: Backend>(
    conn: &mut B::Connection,
    keyring: &Keyring,
    events: &[(&TenantId, &NewFeedEvent)],
) -> Result<Vec<FeedEvent>, StoreError> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let mut by_user: BTreeMap<(&TenantId, &UserId), Vec<&NewFeedEvent>> = BTreeMap::new();
    for (tenant, event) in events {
        by_user
            .entry((*tenant, &event.user_id))
            .or_default()
            .push(*event);
    }
    let counts: Vec<(&TenantId, &UserId, i64)> = by_user
        .iter()
        .map(|((tenant, user), events)| (*tenant, *user, ms(events.len() as u64)))
        .collect();
    let heads: HashMap<(TenantId, UserId), i64> = B::advance_feed_heads(conn, &counts)
        .await?
        .into_iter()
        .map(|(tenant, user, last)| ((tenant, user), last))
        .collect();
    let mut stored = Vec::with_capacity(events.len());
    let mut rows = Vec::with_capacity(events.len());
    for ((tenant, user), events) in by_user {
        let last = heads
            .get(&(tenant.clone(), user.clone()))
            .copied()
            .map(from_ms)
            .ok_or(StoreError::Database(sqlx::Error::RowNotFound))?;
        let first = last + 1 - events.len() as u64;
        for (offset, event) in events.into_iter().enumerate() {
            let cursor = first + offset as u64;
            let kept = match &event.refers_to {
                Some(_) => feed::without_content(&event.body),
                None => event.body.clone(),
            };
            let body = serde_json::to_vec(&kept).expect("a JSON value serializes");
            let sealed = keyring.seal(tenant.as_str(), &rows::feed_record(user, cursor), &body);
            rows.push(FeedInsertRow {
                tenant_id: tenant.clone(),
                user_id: user.clone(),
                cursor_no: ms(cursor),
                at_ms: ms(event.at_ms),
                kind: feed::kind_of(&event.body).to_owned(),
                key_id: sealed.key_id,
                nonce: sealed.nonce,
                body: sealed.ciphertext,
                message_id: event.refers_to.clone(),
            });
            stored.push(FeedEvent {
                tenant_id: tenant.clone(),
                user_id: user.clone(),
                cursor,
                at_ms: event.at_ms,
                body: event.body.clone(),
            });
        }
    }
    B::insert_feed(conn, &rows).await?;
    Ok(stored)
}

/// Stores, inside the caller's transaction, the status callbacks of `notices` whose senders
/// asked for their events (a live sender with a callback endpoint): each a `scheduled` webhook
/// message from and to the sender, due at once. Returns them with their due times, to index
/// after the commit. One lookup for all their senders.
async fn record_callbacks<B: Backend>(
    conn: &mut B::Connection,
    keyring: &Keyring,
    notices: &[&Notice],
    now_ms: u64,
) -> Result<Vec<(MessageId, u64)>, StoreError> {
    if notices.is_empty() {
        return Ok(Vec::new());
    }
    let mut senders: Vec<&str> = notices
        .iter()
        .map(|notice| notice.sender_id.as_str())
        .collect();
    senders.sort_unstable();
    senders.dedup();
    let mut wanted: HashMap<(TenantId, UserId), Vec<CallbackEvent>> = HashMap::new();
    for (user, tenant, events) in B::callback_events(conn, &senders).await? {
        let events = serde_json::from_str::<Vec<CallbackEvent>>(&events).map_err(|error| {
            StoreError::Refused(format!(
                "a stored callback's events are unreadable: {error}"
            ))
        })?;
        wanted.insert((tenant, user), events);
    }
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let messages: Vec<NewMessage> = notices
        .iter()
        .filter(|notice| {
            wanted
                .get(&(notice.tenant_id.clone(), notice.sender_id.clone()))
                .is_some_and(|events| events.contains(&notice.event))
        })
        .map(|notice| NewMessage {
            id: MessageId::new(),
            tenant_id: notice.tenant_id.clone(),
            sender_id: notice.sender_id.clone(),
            recipient_id: notice.sender_id.clone(),
            channel: Channel::Webhook,
            content: notice.body.clone(),
            content_type: callback::CONTENT_TYPE.to_owned(),
            metadata: BTreeMap::from([
                ("callback_for".to_owned(), notice.message_id.to_string()),
                (
                    "callback_event".to_owned(),
                    notice.event.as_str().to_owned(),
                ),
            ]),
            requested: Requested::Unspecified,
            deliver_at_ms: now_ms,
            created_at_ms: now_ms,
            // Its key is the sender's callback URL (see the flow routes' query).
            flow_key: None,
            fan_out_id: None,
            history: vec![Event::transition(
                now_ms,
                None,
                Status::Scheduled,
                format!(
                    "status callback: {} is {}",
                    notice.message_id,
                    notice.event.as_str()
                ),
            )],
        })
        .collect();
    if messages.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<NewMessageRow<'_>> = messages
        .iter()
        .map(|message| NewMessageRow::seal(message, keyring))
        .collect();
    B::insert_messages(conn, &rows).await?;
    B::insert_states(conn, &rows, ms(now_ms)).await?;
    let steps: Vec<StepRow<'_>> = messages
        .iter()
        .map(|message| StepRow::new(&message.id, StepKind::Submitted, &message.history))
        .collect();
    B::insert_steps(conn, &steps).await?;
    let deltas = rows::count_deltas(
        messages
            .iter()
            .map(|message| (&message.tenant_id, None, Some(Status::Scheduled))),
        shard::<B>(),
    );
    B::add_counts(conn, &deltas).await?;
    Ok(messages
        .into_iter()
        .map(|message| (message.id, message.deliver_at_ms))
        .collect())
}

/// The associated data of a user's sealed callback secrets.
fn callback_record(user: &UserId) -> String {
    format!("callback:{user}")
}

/// One signing secret of a callback endpoint, as sealed (newest first, in one JSON array).
#[derive(serde::Serialize, serde::Deserialize)]
struct CallbackSecret {
    secret: String,
    expires_at_ms: Option<u64>,
}

#[async_trait::async_trait]
impl<B> Store for SqlStore<B>
where
    B: Backend,
    for<'c> &'c mut B::Connection: Executor<'c, Database = B>,
    B::Arguments: IntoArguments<B>,
    for<'q> &'q str: Encode<'q, B> + Type<B>,
    for<'q> Option<&'q str>: Encode<'q, B> + Type<B>,
    for<'q> Option<i64>: Encode<'q, B> + Type<B>,
    for<'q> &'q [u8]: Encode<'q, B> + Type<B>,
    for<'q> String: Encode<'q, B> + Decode<'q, B> + Type<B>,
    for<'q> i64: Encode<'q, B> + Decode<'q, B> + Type<B>,
    for<'q> bool: Encode<'q, B> + Decode<'q, B> + Type<B>,
    for<'q> Vec<u8>: Encode<'q, B> + Decode<'q, B> + Type<B>,
    for<'r> &'r str: ColumnIndex<B::Row>,
    usize: ColumnIndex<B::Row>,
{
    fn backend(&self) -> &'static str {
        B::BACKEND
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query::<B>("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn create_tenant(&self, name: &str, now_ms: u64) -> Result<Tenant, StoreError> {
        let row = sqlx::query_as::<B, TenantRow>(INSERT_TENANT)
            .bind(TenantId::new())
            .bind(name)
            .bind(ms(now_ms))
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
        let row = sqlx::query_as::<B, TenantRow>(TENANT_BY_NAME)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(Into::into))
    }

    async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        let rows = sqlx::query_as::<B, TenantRow>(LIST_TENANTS)
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
        let row = sqlx::query_as::<B, UserRow>(INSERT_USER)
            .bind(UserId::new())
            .bind(tenant)
            .bind(&user.username)
            .bind(user.display_name.as_deref())
            .bind(user.role.as_str())
            .bind(&user.password_hash)
            .bind(ms(now_ms))
            .bind(crate::domain::user::username_key(&user.username))
            .bind(crate::domain::user::username_skeleton(&user.username))
            .fetch_one(&self.writer)
            .await
            .map_err(|error| match StoreError::from(error) {
                // The same words whichever tenant holds the name, and whether it is equal or
                // only alike: docs/OPERATIONS.md, "Login".
                StoreError::Conflict(_) => StoreError::Conflict(format!(
                    "the username {:?} is not available: usernames are unique on the whole server, and this one, or one that looks like it, is in use",
                    user.username
                )),
                other => other,
            })?;
        Ok(row.into())
    }

    async fn fill_username_keys(&self) -> Result<(), StoreError> {
        let rows = sqlx::query_as::<B, (UserId, String)>(USERS_WITHOUT_KEYS)
            .fetch_all(&self.writer)
            .await?;
        for (id, username) in rows {
            for (statement, column, value) in [
                (
                    SET_USERNAME_KEY,
                    "key",
                    crate::domain::user::username_key(&username),
                ),
                (
                    SET_USERNAME_SKELETON,
                    "skeleton",
                    crate::domain::user::username_skeleton(&username),
                ),
            ] {
                let set = sqlx::query::<B>(statement)
                    .bind(&id)
                    .bind(&value)
                    .execute(&self.writer)
                    .await;
                match set.map_err(StoreError::from) {
                    Ok(_) => {}
                    // An older live user's name compares equal (or looks alike): that one
                    // keeps the key; this one still logs in by its exact name.
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

    async fn user(&self, tenant: &TenantId, id: &UserId) -> Result<Option<User>, StoreError> {
        let row = sqlx::query_as::<B, UserRow>(USER)
            .bind(tenant)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(Into::into))
    }

    async fn live_users(
        &self,
        tenant: &TenantId,
        ids: &[UserId],
    ) -> Result<HashSet<UserId>, StoreError> {
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        let ids: Vec<&str> = ids.iter().map(UserId::as_str).collect();
        Ok(B::live_users(&self.pool, tenant.as_str(), &ids)
            .await?
            .into_iter()
            .collect())
    }

    async fn credentials(&self, username: &str) -> Result<Option<(User, String)>, StoreError> {
        let row = sqlx::query_as::<B, CredentialsRow>(CREDENTIALS)
            .bind(username)
            .bind(crate::domain::user::username_key(username))
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(Into::into))
    }

    async fn list_users(
        &self,
        tenant: &TenantId,
        page: Page,
    ) -> Result<(Vec<User>, u64), StoreError> {
        let rows = sqlx::query_as::<B, UserRow>(LIST_USERS)
            .bind(tenant)
            .bind(i64::from(page.limit))
            .bind(ms(page.offset))
            .fetch_all(&self.pool)
            .await?;
        let total: i64 = sqlx::query_scalar::<B, i64>(COUNT_USERS)
            .bind(tenant)
            .fetch_one(&self.pool)
            .await?;
        Ok((rows.into_iter().map(Into::into).collect(), from_ms(total)))
    }

    async fn delete_user(
        &self,
        tenant: &TenantId,
        id: &UserId,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let mut tx = B::begin_write(&self.writer).await?;
        let result = sqlx::query::<B>(DELETE_USER)
            .bind(tenant)
            .bind(id)
            .bind(ms(now_ms))
            .execute(&mut *tx)
            .await?;
        let deleted = B::rows_affected(&result) == 1;
        if deleted {
            super::schedules::delete_user_schedules::<B>(&mut tx, tenant, id).await?;
            sqlx::query::<B>(REVOKE_USER_SESSIONS)
                .bind(id)
                .bind(ms(now_ms))
                .bind("user deleted")
                .bind(None::<&str>)
                .execute(&mut *tx)
                .await?;
            sqlx::query::<B>(LEAVE_GROUPS)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            // A deleted sender is told of nothing more.
            sqlx::query::<B>(DELETE_CALLBACK)
                .bind(tenant)
                .bind(id)
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
        let mut tx = B::begin_write(&self.writer).await?;
        let result = sqlx::query::<B>(SET_PASSWORD)
            .bind(tenant)
            .bind(id)
            .bind(password_hash)
            .execute(&mut *tx)
            .await?;
        let updated = B::rows_affected(&result) == 1;
        if updated {
            sqlx::query::<B>(REVOKE_USER_SESSIONS)
                .bind(id)
                .bind(ms(now_ms))
                .bind("password changed")
                .bind(keep.map(SessionId::as_str))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(updated)
    }

    async fn create_session(&self, new: NewSession) -> Result<Session, StoreError> {
        let mut tx = B::begin_write(&self.writer).await?;
        let row = sqlx::query_as::<B, SessionRow>(INSERT_SESSION)
            .bind(SessionId::new())
            .bind(&new.tenant_id)
            .bind(&new.user_id)
            .bind(ms(new.now_ms))
            .bind(ms(new.expires_at_ms))
            .bind(new.user_agent.as_deref())
            .bind(new.ip.as_deref())
            .fetch_one(&mut *tx)
            .await?;
        sqlx::query::<B>(INSERT_REFRESH_TOKEN)
            .bind(&new.refresh_hash)
            .bind(&row.id)
            .bind(ms(new.now_ms))
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
        let mut tx = B::begin_write(&self.writer).await?;
        let used = sqlx::query_scalar::<B, SessionId>(USE_REFRESH_TOKEN)
            .bind(old_hash)
            .bind(ms(now_ms))
            .fetch_optional(&mut *tx)
            .await?;
        let Some(session_id) = used else {
            // Unknown, or presented before: a replay revokes the whole session.
            let known = sqlx::query_scalar::<B, SessionId>(REFRESH_TOKEN_SESSION)
                .bind(old_hash)
                .fetch_optional(&mut *tx)
                .await?;
            let outcome = match known {
                Some(id) => {
                    let owner = sqlx::query_as::<B, (TenantId, UserId)>(REVOKE_SESSION_BY_ID)
                        .bind(&id)
                        .bind(ms(now_ms))
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
        let session = sqlx::query_as::<B, SessionRow>(EXTEND_LIVE_SESSION)
            .bind(&session_id)
            .bind(ms(now_ms))
            .bind(ms(expires_at_ms))
            .fetch_optional(&mut *tx)
            .await?;
        let Some(session) = session else {
            tx.commit().await?;
            return Ok(Rotation::Invalid);
        };
        sqlx::query::<B>(INSERT_REFRESH_TOKEN)
            .bind(new_hash)
            .bind(&session_id)
            .bind(ms(now_ms))
            .execute(&mut *tx)
            .await?;
        let user = sqlx::query_as::<B, UserRow>(USER_BY_ID)
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
        let row = sqlx::query_as::<B, UserRow>(AUTHENTICATE)
            .bind(session)
            .bind(user)
            .bind(tenant)
            .bind(ms(now_ms))
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
        let rows = sqlx::query_as::<B, SessionRow>(LIST_SESSIONS)
            .bind(tenant)
            .bind(user)
            .bind(ms(now_ms))
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
        let result = sqlx::query::<B>(REVOKE_SESSION)
            .bind(session)
            .bind(user)
            .bind(tenant)
            .bind(ms(now_ms))
            .bind(reason)
            .execute(&self.writer)
            .await?;
        Ok(B::rows_affected(&result) == 1)
    }

    async fn insert_messages(&self, requests: &[Accepted]) -> Result<Vec<Stored>, StoreError> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<IdempotencyKeyRow<'_>> = requests
            .iter()
            .filter_map(|request| request.idempotency.as_ref())
            .map(|key| IdempotencyKeyRow {
                tenant_id: key.tenant_id.as_str(),
                user_id: key.user_id.as_str(),
                key: &key.key,
                request_hash: &key.request_hash,
                response: &key.response,
                created_at_ms: ms(key.created_at_ms),
            })
            .collect();
        let horizon = requests
            .iter()
            .filter_map(|request| request.idempotency.as_ref())
            .map(|key| key.created_at_ms)
            .min()
            .map_or(0, |now| ms(now.saturating_sub(super::IDEMPOTENCY_TTL_MS)));
        let mut tx = B::begin_write(&self.writer).await?;
        let inserted: HashSet<(String, String)> = if keys.is_empty() {
            HashSet::new()
        } else {
            B::insert_idempotency_keys(&mut tx, &keys, horizon)
                .await?
                .into_iter()
                .collect()
        };
        // Of two requests with the same key in this batch, the first stores it.
        let mut claimed: HashSet<(&str, &str)> = HashSet::new();
        let stored: Vec<Stored> = requests
            .iter()
            .map(|request| match &request.idempotency {
                None => Stored::Committed,
                Some(key) => {
                    let pair = (key.user_id.as_str(), key.key.as_str());
                    let ours = inserted.contains(&(pair.0.to_owned(), pair.1.to_owned()))
                        && claimed.insert(pair);
                    if ours {
                        Stored::Committed
                    } else {
                        Stored::KeyTaken
                    }
                }
            })
            .collect();
        // A schedule's occurrence is stored once: only if the schedule still waits for it.
        let mut stored = stored;
        for (request, stored) in requests.iter().zip(stored.iter_mut()) {
            if let (Some(claim), Stored::Committed) = (&request.occurrence, *stored) {
                let message = request
                    .messages
                    .first()
                    .map(|message| (&message.id, message.fan_out_id.as_ref()));
                if !super::schedules::claim_occurrence::<B>(&mut tx, claim, message).await? {
                    *stored = Stored::OccurrenceTaken;
                }
            }
        }
        let messages: Vec<&super::NewMessage> = requests
            .iter()
            .zip(&stored)
            .filter(|(_, stored)| **stored == Stored::Committed)
            .flat_map(|(request, _)| &request.messages)
            .collect();
        if !messages.is_empty() {
            let rows: Vec<NewMessageRow<'_>> = messages
                .iter()
                .map(|message| NewMessageRow::seal(message, &self.keyring))
                .collect();
            B::insert_messages(&mut tx, &rows).await?;
            let now = messages.iter().map(|m| m.created_at_ms).max().unwrap_or(0);
            B::insert_states(&mut tx, &rows, ms(now)).await?;
            let steps: Vec<StepRow<'_>> = messages
                .iter()
                .map(|message| StepRow::new(&message.id, StepKind::Submitted, &message.history))
                .collect();
            B::insert_steps(&mut tx, &steps).await?;
            let deltas = rows::count_deltas(
                messages
                    .iter()
                    .map(|message| (&message.tenant_id, None, Some(Status::Scheduled))),
                shard::<B>(),
            );
            B::add_counts(&mut tx, &deltas).await?;
        }
        for fan_out in requests
            .iter()
            .zip(&stored)
            .filter(|(_, stored)| **stored == Stored::Committed)
            .filter_map(|(request, _)| request.fan_out.as_ref())
        {
            sqlx::query::<B>(INSERT_FAN_OUT)
                .bind(&fan_out.id)
                .bind(&fan_out.tenant_id)
                .bind(&fan_out.sender_id)
                .bind(&fan_out.group_id)
                .bind(ms(fan_out.count))
                .bind(ms(fan_out.created_at_ms))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(stored)
    }

    async fn idempotency(
        &self,
        tenant: &TenantId,
        user: &UserId,
        key: &str,
        since_ms: u64,
    ) -> Result<Option<(String, String)>, StoreError> {
        let row = sqlx::query_as::<B, IdempotencyRow>(IDEMPOTENCY)
            .bind(tenant)
            .bind(user)
            .bind(key)
            .bind(ms(since_ms))
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| (row.request_hash, row.response)))
    }

    async fn message(
        &self,
        tenant: &TenantId,
        id: &MessageId,
    ) -> Result<Option<Message>, StoreError> {
        let sql = format!(
            "SELECT {}{MESSAGE_JOIN} WHERE m.tenant_id = $1 AND m.id = $2",
            rows::MESSAGE_COLUMNS
        );
        let row = sqlx::query_as::<B, MessageRow>(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| row.open(&self.keyring)).transpose()
    }

    async fn message_state(
        &self,
        tenant: &TenantId,
        id: &MessageId,
    ) -> Result<Option<MessageState>, StoreError> {
        let sql = format!(
            "SELECT {}{MESSAGE_JOIN} WHERE m.tenant_id = $1 AND m.id = $2",
            rows::STATE_COLUMNS
        );
        let row = sqlx::query_as::<B, StateRow>(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(Into::into))
    }

    async fn nth_message_id(
        &self,
        tenant: &TenantId,
        mailbox: &Mailbox,
        before: Option<&MessageId>,
        n: u64,
    ) -> Result<Option<MessageId>, StoreError> {
        // One walk of the mailbox's index (the sender's, the recipient's or the tenant's).
        let mut sql =
            sqlx::QueryBuilder::<B>::new("SELECT m.id FROM messages m WHERE m.tenant_id = ");
        sql.push_bind(tenant);
        match mailbox {
            Mailbox::Sent(user) => {
                sql.push(" AND m.sender_id = ").push_bind(user);
            }
            Mailbox::Received(user) => {
                sql.push(" AND m.recipient_id = ").push_bind(user);
            }
            Mailbox::All => {}
        }
        if let Some(before) = before {
            sql.push(" AND m.id < ").push_bind(before);
        }
        sql.push(" ORDER BY m.id DESC LIMIT 1 OFFSET ")
            .push_bind(ms(n));
        Ok(sql
            .build_query_scalar::<MessageId>()
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn list_messages(
        &self,
        tenant: &TenantId,
        query: &MessageQuery,
    ) -> Result<Vec<Message>, StoreError> {
        // A rare status is found on SQLite through its partial index (`message_states_dead`,
        // `_cancelled`; PostgreSQL has none, see that migration), bounded and ordered by the
        // state's key; any other listing walks one of the messages' indexes.
        // The status is one of a fixed set of words, written into the SQL so that SQLite can
        // match the partial index's condition (it cannot with a bound parameter).
        let rare = query
            .status
            .filter(|status| matches!(status, Status::Dead | Status::Cancelled));
        let key = if rare.is_some() {
            "s.message_id"
        } else {
            "m.id"
        };
        let mut sql = sqlx::QueryBuilder::<B>::new(format!(
            "SELECT {}{MESSAGE_JOIN} WHERE m.tenant_id = ",
            rows::MESSAGE_COLUMNS
        ));
        sql.push_bind(tenant);
        match &query.mailbox {
            // A user's status callbacks are not messages they sent or received.
            Mailbox::Sent(user) => {
                sql.push(" AND m.sender_id = ")
                    .push_bind(user)
                    .push(" AND m.content_type <> ")
                    .push_bind(callback::CONTENT_TYPE);
            }
            Mailbox::Received(user) => {
                sql.push(" AND m.recipient_id = ")
                    .push_bind(user)
                    .push(" AND s.status IN ('delivered', 'read')")
                    .push(" AND m.content_type <> ")
                    .push_bind(callback::CONTENT_TYPE);
            }
            Mailbox::All => {}
        }
        match (rare, query.status) {
            (Some(status), _) => {
                sql.push(" AND s.tenant_id = ")
                    .push_bind(tenant)
                    .push(format!(" AND s.status = '{}'", status.as_str()));
            }
            (None, Some(status)) => {
                sql.push(" AND s.status = ").push_bind(status.as_str());
            }
            (None, None) => {}
        }
        if let Some(recipient) = &query.recipient {
            sql.push(" AND m.recipient_id = ").push_bind(recipient);
        }
        if let Some(before) = &query.before {
            sql.push(format!(" AND {key} < ")).push_bind(before);
        }
        if let Some(since) = &query.since {
            sql.push(format!(" AND {key} >= ")).push_bind(since);
        }
        sql.push(format!(" ORDER BY {key} DESC LIMIT "))
            .push_bind(i64::from(query.limit))
            .push(" OFFSET ")
            .push_bind(ms(query.offset));
        let rows = sql
            .build_query_as::<MessageRow>()
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|row| row.open(&self.keyring))
            .collect()
    }

    async fn message_events(
        &self,
        tenant: &TenantId,
        id: &MessageId,
    ) -> Result<Vec<Event>, StoreError> {
        let rows = sqlx::query_as::<B, EventRow>(MESSAGE_EVENTS)
            .bind(tenant)
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
        let mut events = Vec::with_capacity(rows.len());
        for row in rows {
            events.extend(row.entries()?);
        }
        Ok(events)
    }

    async fn transition(
        &self,
        tenant: &TenantId,
        id: &MessageId,
        change: &Change,
        now_ms: u64,
    ) -> Result<Option<Changed>, StoreError> {
        if change.from.is_empty() {
            return Ok(None);
        }
        let mut tx = B::begin_write(&self.writer).await?;
        let current: Option<Status> = sqlx::query_scalar::<B, String>(sqlx::AssertSqlSafe(
            format!("{STATE_STATUS}{}", B::LOCK_ROWS),
        ))
        .bind(tenant)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .and_then(|status| status.parse().ok());
        let Some(previous) = current.filter(|status| change.from.contains(status)) else {
            tx.rollback().await?;
            return Ok(None);
        };
        let result = sqlx::query::<B>(CHANGE_STATE)
            .bind(tenant)
            .bind(id)
            .bind(change.to.as_str())
            .bind(change.deliver_at_ms.map(ms))
            .bind(change.reset_attempts)
            .bind(ms(now_ms))
            .bind(previous.as_str())
            .execute(&mut *tx)
            .await?;
        if B::rows_affected(&result) != 1 {
            tx.rollback().await?;
            return Ok(None);
        }
        let message = B::messages(&mut tx, &[id.as_str()])
            .await?
            .into_iter()
            .next()
            .ok_or(StoreError::Database(sqlx::Error::RowNotFound))?
            .open(&self.keyring)?;
        let mut events = change.events.clone();
        events.push(Event::transition(
            now_ms,
            Some(previous),
            change.to,
            "requested",
        ));
        B::insert_steps(&mut tx, &[StepRow::new(id, StepKind::Change, &events)]).await?;
        let feed = crate::domain::feed::for_sender(&message, change.to, None, now_ms);
        let feed = match &feed {
            Some(event) => record_feed::<B>(&mut tx, &self.keyring, &[(tenant, event)]).await?,
            None => Vec::new(),
        };
        let deltas = rows::count_deltas([(tenant, Some(previous), Some(change.to))], shard::<B>());
        B::add_counts(&mut tx, &deltas).await?;
        let notice = callback::notice(&message, change.to, None, None, now_ms);
        let notices: Vec<&Notice> = notice.iter().collect();
        let callbacks = record_callbacks::<B>(&mut tx, &self.keyring, &notices, now_ms).await?;
        tx.commit().await?;
        self.feed.notify(feed);
        Ok(Some(Changed { message, callbacks }))
    }

    async fn delete_message(
        &self,
        tenant: &TenantId,
        id: &MessageId,
        status: Status,
    ) -> Result<bool, StoreError> {
        let mut tx = B::begin_write(&self.writer).await?;
        let current: Option<String> = sqlx::query_scalar::<B, String>(sqlx::AssertSqlSafe(
            format!("{STATE_STATUS}{}", B::LOCK_ROWS),
        ))
        .bind(tenant)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        if current.as_deref() != Some(status.as_str()) {
            tx.rollback().await?;
            return Ok(false);
        }
        B::delete_messages(&mut tx, &[id.as_str()]).await?;
        let deltas = rows::count_deltas([(tenant, Some(status), None)], shard::<B>());
        B::add_counts(&mut tx, &deltas).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn begin_deliveries(
        &self,
        ids: &[MessageId],
        token: &str,
        now_ms: u64,
        lease_until_ms: u64,
    ) -> Result<Claimed, StoreError> {
        if ids.is_empty() {
            return Ok(Claimed::default());
        }
        let found: Vec<ClaimRow> = B::claim(
            &self.writer,
            ids,
            token,
            ms(now_ms),
            ms(lease_until_ms),
            shard::<B>(),
        )
        .await?;
        let mut claimed = Claimed::default();
        let mut previous: HashMap<MessageId, Status> = HashMap::new();
        for row in found {
            match (row.claimed, row.previous) {
                (true, status) => {
                    previous.insert(row.message_id, status);
                }
                (false, Status::Scheduled | Status::Retrying) => claimed
                    .not_due
                    .push((row.message_id, from_ms(row.deliver_at_ms))),
                // Leased by a live claim the index does not know of: look again when that
                // lease ends, rather than lose the id if its holder cannot release it.
                (false, Status::Delivering) => claimed.not_due.push((
                    row.message_id,
                    from_ms(row.lease_until_ms.unwrap_or(row.deliver_at_ms)),
                )),
                (false, _) => claimed.skipped.push(row.message_id),
            }
        }
        let missing: Vec<MessageId> = ids
            .iter()
            .filter(|id| {
                !previous.contains_key(*id)
                    && !claimed.not_due.iter().any(|(due, _)| due == *id)
                    && !claimed.skipped.contains(id)
            })
            .cloned()
            .collect();
        claimed.skipped.extend(missing);
        if !previous.is_empty() {
            let wanted: Vec<&str> = previous.keys().map(MessageId::as_str).collect();
            let mut conn = self.pool.acquire().await?;
            for row in B::messages(&mut conn, &wanted).await? {
                let message = row.open(&self.keyring)?;
                let before = previous[&message.id];
                claimed.messages.push((message, before));
            }
            // In the order the index gave them (earliest due first).
            let order: HashMap<&MessageId, usize> =
                ids.iter().enumerate().map(|(n, id)| (id, n)).collect();
            claimed
                .messages
                .sort_by_key(|(message, _)| order.get(&message.id).copied());
        }
        Ok(claimed)
    }

    fn writers(&self) -> usize {
        self.writer.options().get_max_connections() as usize
    }

    async fn finish_deliveries(&self, outcomes: &[Outcome]) -> Result<Finished, StoreError> {
        if outcomes.is_empty() {
            return Ok(Finished::default());
        }
        let finishing: Vec<FinishRow<'_>> = outcomes
            .iter()
            .map(|outcome| FinishRow {
                id: outcome.id.as_str(),
                token: &outcome.token,
                status: outcome.status.as_str(),
                deliver_at_ms: outcome.deliver_at_ms.map(ms),
                error: outcome.error.as_deref(),
                at_ms: ms(outcome.at_ms),
            })
            .collect();
        let mut tx = B::begin_write(&self.writer).await?;
        let updated: HashSet<MessageId> = B::finish_states(&mut tx, &finishing)
            .await?
            .into_iter()
            .collect();
        let committed: Vec<bool> = outcomes
            .iter()
            .map(|outcome| updated.contains(&outcome.id))
            .collect();
        let done: Vec<&Outcome> = outcomes
            .iter()
            .zip(&committed)
            .filter(|(_, committed)| **committed)
            .map(|(outcome, _)| outcome)
            .collect();
        let steps: Vec<StepRow<'_>> = done
            .iter()
            .filter(|outcome| !outcome.events.is_empty())
            .map(|outcome| StepRow::new(&outcome.id, StepKind::Attempt, &outcome.events))
            .collect();
        B::insert_steps(&mut tx, &steps).await?;
        let feed: Vec<(&TenantId, &NewFeedEvent)> = done
            .iter()
            .flat_map(|outcome| outcome.feed.iter().map(|event| (&outcome.tenant_id, event)))
            .collect();
        let feed = record_feed::<B>(&mut tx, &self.keyring, &feed).await?;
        let deltas = rows::count_deltas(
            done.iter().map(|outcome| {
                (
                    &outcome.tenant_id,
                    Some(Status::Delivering),
                    Some(outcome.status),
                )
            }),
            shard::<B>(),
        );
        B::add_counts(&mut tx, &deltas).await?;
        let notices: Vec<&Notice> = done
            .iter()
            .filter_map(|outcome| outcome.callback.as_ref())
            .collect();
        let now = done.iter().map(|outcome| outcome.at_ms).max().unwrap_or(0);
        let callbacks = record_callbacks::<B>(&mut tx, &self.keyring, &notices, now).await?;
        tx.commit().await?;
        self.feed.notify(feed);
        Ok(Finished {
            committed,
            callbacks,
        })
    }

    async fn webhooks(
        &self,
        users: &[(TenantId, UserId)],
        now_ms: u64,
    ) -> Result<HashMap<UserId, Webhook>, StoreError> {
        if users.is_empty() {
            return Ok(HashMap::new());
        }
        let mut ids: Vec<&str> = users.iter().map(|(_, user)| user.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let (found, secrets) = B::webhooks(&self.pool, &ids, ms(now_ms)).await?;
        rows::webhooks(&self.keyring, users, found, secrets)
    }

    fn feed_notifier(&self) -> &FeedNotifier {
        &self.feed
    }

    async fn feed_after(
        &self,
        tenant: &TenantId,
        user: &UserId,
        after: u64,
        limit: u32,
    ) -> Result<FeedPage, StoreError> {
        // The head first: every cursor up to it is committed (the head row moves in the same
        // transaction as its events), so the events read next include all of them that
        // retention kept.
        let head: Option<i64> = sqlx::query_scalar::<B, i64>(FEED_HEAD)
            .bind(tenant)
            .bind(user)
            .fetch_optional(&self.pool)
            .await?;
        let sql = format!("SELECT {}{FEED_AFTER_TAIL}", rows::FEED_COLUMNS);
        let rows = sqlx::query_as::<B, FeedRow>(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .bind(user)
            .bind(ms(after))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        let events = rows
            .into_iter()
            .map(|row| row.open(&self.keyring))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(FeedPage {
            events,
            head: head.map_or(0, from_ms),
        })
    }

    async fn prune_feed(&self, before_ms: u64) -> Result<u64, StoreError> {
        // In slices, so a large backlog never holds the write lock for long.
        const SLICE: i64 = 5_000;
        let mut total = 0;
        loop {
            let result = sqlx::query::<B>(PRUNE_FEED)
                .bind(ms(before_ms))
                .bind(SLICE)
                .execute(&self.writer)
                .await?;
            let deleted = B::rows_affected(&result);
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
        // Every id sorts after the empty string.
        let rows = sqlx::query_as::<B, PendingRow>(PENDING)
            .bind(after.map_or("", MessageId::as_str))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let due = row.due();
                (row.message_id, due)
            })
            .collect())
    }

    async fn status_counts(&self) -> Result<Vec<StatusCount>, StoreError> {
        let rows = sqlx::query_as::<B, rows::CountRow>(STATUS_COUNTS)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .filter(|row| row.count != 0)
            .map(|row| StatusCount {
                tenant_id: row.tenant_id,
                status: row.status,
                count: from_ms(row.count),
            })
            .collect())
    }

    async fn queue_counts(&self, now_ms: u64) -> Result<Vec<QueueCount>, StoreError> {
        let counts = sqlx::query_as::<B, rows::CountRow>(STATUS_COUNTS)
            .fetch_all(&self.pool)
            .await?;
        let tenants: HashMap<TenantId, String> = self
            .list_tenants()
            .await?
            .into_iter()
            .map(|tenant| (tenant.id, tenant.name))
            .collect();
        let pending = sqlx::query_as::<B, PendingGroupRow>(QUEUE_PENDING)
            .bind(ms(now_ms))
            .bind(ms(now_ms.saturating_add(60_000)))
            .bind(ms(now_ms.saturating_add(3_600_000)))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows::queue_report(counts, &tenants, pending))
    }

    async fn prune_messages(&self, before_ms: u64, limit: u32) -> Result<u64, StoreError> {
        let mut tx = B::begin_write(&self.writer).await?;
        let ended = sqlx::query_as::<B, (MessageId, TenantId, String)>(sqlx::AssertSqlSafe(
            format!("{ENDED_BEFORE}{}", B::LOCK_ROWS),
        ))
        .bind(ms(before_ms))
        .bind(MessageId::first_at(before_ms))
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        if ended.is_empty() {
            tx.rollback().await?;
            return Ok(0);
        }
        let ids: Vec<&str> = ended.iter().map(|(id, _, _)| id.as_str()).collect();
        B::delete_messages(&mut tx, &ids).await?;
        let deltas = rows::count_deltas(
            ended
                .iter()
                .map(|(_, tenant, status)| (tenant, status.parse().ok(), None)),
            shard::<B>(),
        );
        B::add_counts(&mut tx, &deltas).await?;
        tx.commit().await?;
        Ok(ended.len() as u64)
    }

    async fn prune_idempotency_keys(&self, before_ms: u64) -> Result<u64, StoreError> {
        const SLICE: i64 = 5_000;
        let mut total = 0;
        loop {
            let result = sqlx::query::<B>(PRUNE_IDEMPOTENCY)
                .bind(ms(before_ms))
                .bind(SLICE)
                .execute(&self.writer)
                .await?;
            let deleted = B::rows_affected(&result);
            total += deleted;
            if deleted < SLICE as u64 {
                return Ok(total);
            }
        }
    }

    async fn set_webhook(
        &self,
        tenant: &TenantId,
        user: &UserId,
        url: &str,
        secret: &str,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let mut tx = B::begin_write(&self.writer).await?;
        sqlx::query::<B>(UPSERT_WEBHOOK)
            .bind(user)
            .bind(tenant)
            .bind(url)
            .bind(ms(now_ms))
            .execute(&mut *tx)
            .await?;
        sqlx::query::<B>(DELETE_WEBHOOK_SECRETS)
            .bind(user)
            .execute(&mut *tx)
            .await?;
        let (id, sealed) = self.seal_secret(tenant, secret);
        sqlx::query::<B>(INSERT_WEBHOOK_SECRET)
            .bind(&id)
            .bind(user)
            .bind(&sealed.key_id)
            .bind(&sealed.nonce)
            .bind(&sealed.ciphertext)
            .bind(ms(now_ms))
            .execute(&mut *tx)
            .await?;
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
        let mut tx = B::begin_write(&self.writer).await?;
        let result = sqlx::query::<B>(TOUCH_WEBHOOK)
            .bind(user)
            .bind(tenant)
            .execute(&mut *tx)
            .await?;
        let exists = B::rows_affected(&result) == 1;
        if exists {
            sqlx::query::<B>(RETIRE_WEBHOOK_SECRETS)
                .bind(user)
                .bind(ms(retire_at_ms))
                .execute(&mut *tx)
                .await?;
            let (id, sealed) = self.seal_secret(tenant, secret);
            sqlx::query::<B>(INSERT_WEBHOOK_SECRET)
                .bind(&id)
                .bind(user)
                .bind(&sealed.key_id)
                .bind(&sealed.nonce)
                .bind(&sealed.ciphertext)
                .bind(ms(now_ms))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(exists)
    }

    async fn delete_webhook(&self, tenant: &TenantId, user: &UserId) -> Result<bool, StoreError> {
        let result = sqlx::query::<B>(DELETE_WEBHOOK)
            .bind(user)
            .bind(tenant)
            .execute(&self.writer)
            .await?;
        Ok(B::rows_affected(&result) == 1)
    }

    async fn webhook(
        &self,
        tenant: &TenantId,
        user: &UserId,
        now_ms: u64,
    ) -> Result<Option<Webhook>, StoreError> {
        let mut found = self
            .webhooks(&[(tenant.clone(), user.clone())], now_ms)
            .await?;
        Ok(found.remove(user))
    }

    async fn set_callback(&self, callback: NewCallback<'_>) -> Result<(), StoreError> {
        let secrets = [CallbackSecret {
            secret: callback.secret.to_owned(),
            expires_at_ms: None,
        }];
        let sealed = self.keyring.seal(
            callback.tenant_id.as_str(),
            &callback_record(callback.user_id),
            &serde_json::to_vec(&secrets).expect("secrets serialize"),
        );
        let events: Vec<&str> = callback.events.iter().map(|event| event.as_str()).collect();
        sqlx::query::<B>(UPSERT_CALLBACK)
            .bind(callback.user_id)
            .bind(callback.tenant_id)
            .bind(callback.url)
            .bind(serde_json::to_string(&events).expect("names serialize"))
            .bind(&sealed.key_id)
            .bind(&sealed.nonce)
            .bind(&sealed.ciphertext)
            .bind(ms(callback.now_ms))
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn add_callback_secret(
        &self,
        tenant: &TenantId,
        user: &UserId,
        secret: &str,
        now_ms: u64,
        retire_at_ms: u64,
    ) -> Result<bool, StoreError> {
        let mut tx = B::begin_write(&self.writer).await?;
        let row = sqlx::query_as::<B, CallbackRow>(sqlx::AssertSqlSafe(format!(
            "{CALLBACK}{}",
            B::LOCK_ROWS
        )))
        .bind(tenant)
        .bind(user)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(false);
        };
        let mut secrets = self.open_callback_secrets(tenant, user, &row)?;
        secrets.retain(|old| old.expires_at_ms.is_none_or(|at| at > now_ms));
        for old in &mut secrets {
            old.expires_at_ms = Some(
                old.expires_at_ms
                    .map_or(retire_at_ms, |at| at.min(retire_at_ms)),
            );
        }
        secrets.insert(
            0,
            CallbackSecret {
                secret: secret.to_owned(),
                expires_at_ms: None,
            },
        );
        let sealed = self.keyring.seal(
            tenant.as_str(),
            &callback_record(user),
            &serde_json::to_vec(&secrets).expect("secrets serialize"),
        );
        sqlx::query::<B>(SET_CALLBACK_SECRETS)
            .bind(tenant)
            .bind(user)
            .bind(&sealed.key_id)
            .bind(&sealed.nonce)
            .bind(&sealed.ciphertext)
            .bind(ms(now_ms))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn delete_callback(&self, tenant: &TenantId, user: &UserId) -> Result<bool, StoreError> {
        let result = sqlx::query::<B>(DELETE_CALLBACK)
            .bind(tenant)
            .bind(user)
            .execute(&self.writer)
            .await?;
        Ok(B::rows_affected(&result) == 1)
    }

    async fn callback(
        &self,
        tenant: &TenantId,
        user: &UserId,
        now_ms: u64,
    ) -> Result<Option<Callback>, StoreError> {
        let row = sqlx::query_as::<B, CallbackRow>(CALLBACK)
            .bind(tenant)
            .bind(user)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let secrets = self
            .open_callback_secrets(tenant, user, &row)?
            .into_iter()
            .filter(|secret| secret.expires_at_ms.is_none_or(|at| at > now_ms))
            .map(|secret| secret.secret)
            .collect();
        let events = serde_json::from_str::<Vec<CallbackEvent>>(&row.events).map_err(|error| {
            StoreError::Refused(format!(
                "a stored callback's events are unreadable: {error}"
            ))
        })?;
        Ok(Some(Callback {
            url: row.url,
            events,
            secrets,
            created_at_ms: from_ms(row.created_at_ms),
        }))
    }

    async fn disable_webhook(
        &self,
        tenant: &TenantId,
        user: &UserId,
        reason: &str,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        sqlx::query::<B>(DISABLE_WEBHOOK)
            .bind(user)
            .bind(tenant)
            .bind(ms(now_ms))
            .bind(reason)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn insert_plugin(
        &self,
        plugin: NewPlugin,
        quota: PluginQuota,
    ) -> Result<PluginInsert, StoreError> {
        let by_digest =
            format!("SELECT {PLUGIN_COLUMNS} FROM plugins WHERE tenant_id = $1 AND digest = $2");
        let mut tx = B::begin_write(&self.writer).await?;
        // PostgreSQL locks the tenant's row, so the counts below are current (SQLite's write
        // transaction holds the database already).
        sqlx::query::<B>(LOCK_TENANT)
            .bind(&plugin.tenant_id)
            .execute(&mut *tx)
            .await?;
        let existing = sqlx::query_as::<B, PluginRow>(sqlx::AssertSqlSafe(by_digest.clone()))
            .bind(&plugin.tenant_id)
            .bind(&plugin.digest)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(row) = existing {
            tx.commit().await?;
            return Ok(PluginInsert::Existing(row.try_into()?));
        }
        let (plugins, bytes) = sqlx::query_as::<B, (i64, i64)>(PLUGIN_USAGE)
            .bind(&plugin.tenant_id)
            .fetch_one(&mut *tx)
            .await?;
        let usage = PluginUsage {
            plugins: from_ms(plugins),
            bytes: from_ms(bytes),
        };
        let size = u64::try_from(plugin.component.len()).unwrap_or(u64::MAX);
        if let Err(exceeded) = quota.admit(usage, size) {
            tx.rollback().await?;
            return Ok(PluginInsert::OverQuota(exceeded));
        }
        sqlx::query::<B>(INSERT_PLUGIN)
            .bind(&plugin.id)
            .bind(&plugin.tenant_id)
            .bind(&plugin.name)
            .bind(plugin.version.as_deref())
            .bind(plugin.world.as_str())
            .bind(&plugin.digest)
            .bind(ms(size))
            .bind(&plugin.component)
            .bind(ms(plugin.created_at_ms))
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query_as::<B, PluginRow>(sqlx::AssertSqlSafe(by_digest))
            .bind(&plugin.tenant_id)
            .bind(&plugin.digest)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(PluginInsert::Inserted(row.try_into()?))
    }

    async fn plugins(&self, tenant: &TenantId) -> Result<Vec<PluginRecord>, StoreError> {
        let sql = format!("SELECT {PLUGIN_COLUMNS} FROM plugins WHERE tenant_id = $1 ORDER BY id");
        sqlx::query_as::<B, PluginRow>(sqlx::AssertSqlSafe(sql))
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
        id: &PluginId,
    ) -> Result<Option<PluginRecord>, StoreError> {
        let sql = format!("SELECT {PLUGIN_COLUMNS} FROM plugins WHERE tenant_id = $1 AND id = $2");
        sqlx::query_as::<B, PluginRow>(sqlx::AssertSqlSafe(sql))
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
        id: &PluginId,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(sqlx::query_scalar::<B, Vec<u8>>(PLUGIN_COMPONENT)
            .bind(tenant)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn delete_plugin(
        &self,
        tenant: &TenantId,
        id: &PluginId,
    ) -> Result<PluginDeletion, StoreError> {
        let mut tx = B::begin_write(&self.writer).await?;
        let deleted = sqlx::query_scalar::<B, String>(DELETE_PLUGIN)
            .bind(tenant)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await;
        let deleted = match deleted {
            Ok(digest) => digest,
            Err(sqlx::Error::Database(error)) if error.is_foreign_key_violation() => {
                tx.rollback().await?;
                let hooks = sqlx::query_scalar::<B, String>(PLUGIN_HOOKS)
                    .bind(tenant)
                    .bind(id)
                    .fetch_all(&self.writer)
                    .await?;
                return Ok(PluginDeletion::Bound(hooks));
            }
            Err(error) => return Err(error.into()),
        };
        let Some(digest) = deleted else {
            tx.commit().await?;
            return Ok(PluginDeletion::NotFound);
        };
        let uses: i64 = sqlx::query_scalar::<B, i64>(DIGEST_USES)
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
        id: &PluginId,
        disabled: Option<&Disabled>,
    ) -> Result<bool, StoreError> {
        let query = match disabled {
            Some(disabled) => sqlx::query::<B>(DISABLE_PLUGIN)
                .bind(tenant)
                .bind(id)
                .bind(ms(disabled.at_ms))
                .bind(&disabled.reason),
            None => sqlx::query::<B>(ENABLE_PLUGIN).bind(tenant).bind(id),
        };
        let result = query.execute(&self.writer).await?;
        Ok(B::rows_affected(&result) == 1)
    }

    async fn flow_limits(&self, tenant: &TenantId) -> Result<Vec<FlowLimit>, StoreError> {
        let rows = sqlx::query_as::<B, FlowLimitRow>(FLOW_LIMITS)
            .bind(tenant)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(FlowLimit::from).collect())
    }

    async fn put_flow_limit(
        &self,
        tenant: &TenantId,
        pattern: &str,
        limits: Limits,
        now_ms: u64,
    ) -> Result<FlowLimit, StoreError> {
        let row = sqlx::query_as::<B, FlowLimitRow>(PUT_FLOW_LIMIT)
            .bind(tenant)
            .bind(pattern)
            .bind(limits.rate.map(|rate| i64::from(rate.count)))
            .bind(limits.rate.map(|rate| i64::from(rate.period_seconds)))
            .bind(limits.parallelism.map(i64::from))
            .bind(ms(now_ms))
            .bind(if limits.fifo { "fifo" } else { "any" })
            .fetch_one(&self.writer)
            .await?;
        Ok(FlowLimit::from(row))
    }

    async fn delete_flow_limit(
        &self,
        tenant: &TenantId,
        pattern: &str,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query::<B>(DELETE_FLOW_LIMIT)
            .bind(tenant)
            .bind(pattern)
            .execute(&self.writer)
            .await?;
        Ok(B::rows_affected(&result) == 1)
    }

    async fn flow_routes(&self, ids: &[MessageId]) -> Result<Vec<FlowRoute>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let wanted: Vec<&str> = ids.iter().map(MessageId::as_str).collect();
        let rows = B::flow_routes(&self.pool, &wanted).await?;
        Ok(rows.into_iter().map(FlowRoute::from).collect())
    }

    async fn hook_bindings(&self, tenant: &TenantId) -> Result<Vec<HookBinding>, StoreError> {
        sqlx::query_as::<B, HookRow>(HOOK_BINDINGS)
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
        hook: Hook,
        plugins: &[(PluginId, Binding)],
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let mut tx = B::begin_write(&self.writer).await?;
        sqlx::query::<B>(DELETE_HOOK)
            .bind(tenant)
            .bind(hook.as_str())
            .execute(&mut *tx)
            .await?;
        for (position, (plugin, binding)) in plugins.iter().enumerate() {
            sqlx::query::<B>(INSERT_HOOK_BINDING)
                .bind(tenant)
                .bind(hook.as_str())
                .bind(ms(position as u64))
                .bind(plugin)
                .bind(serde_json::to_string(binding).expect("a binding is JSON"))
                .bind(ms(now_ms))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn create_group(&self, group: &Group) -> Result<(), StoreError> {
        sqlx::query::<B>(INSERT_GROUP)
            .bind(&group.id)
            .bind(&group.tenant_id)
            .bind(group.name.as_str())
            .bind(ms(group.created_at_ms))
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn groups(&self, tenant: &TenantId, page: Page) -> Result<(Vec<Group>, u64), StoreError> {
        let rows = sqlx::query_as::<B, GroupRow>(LIST_GROUPS)
            .bind(tenant)
            .bind(i64::from(page.limit))
            .bind(ms(page.offset))
            .fetch_all(&self.pool)
            .await?;
        let total: i64 = sqlx::query_scalar::<B, i64>(COUNT_GROUPS)
            .bind(tenant)
            .fetch_one(&self.pool)
            .await?;
        Ok((rows.into_iter().map(Into::into).collect(), from_ms(total)))
    }

    async fn group(&self, tenant: &TenantId, id: &GroupId) -> Result<Option<Group>, StoreError> {
        let row = sqlx::query_as::<B, GroupRow>(GROUP)
            .bind(tenant)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(Into::into))
    }

    async fn delete_group(&self, tenant: &TenantId, id: &GroupId) -> Result<bool, StoreError> {
        let mut tx = B::begin_write(&self.writer).await?;
        sqlx::query::<B>(DELETE_GROUP_MEMBERS)
            .bind(tenant)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let result = sqlx::query::<B>(DELETE_GROUP)
            .bind(tenant)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let deleted = B::rows_affected(&result) == 1;
        tx.commit().await?;
        Ok(deleted)
    }

    async fn add_members(
        &self,
        tenant: &TenantId,
        group: &GroupId,
        users: &[UserId],
        limit: u64,
        now_ms: u64,
    ) -> Result<MembersAdded, StoreError> {
        let mut tx = B::begin_write(&self.writer).await?;
        // The group's row, locked (PostgreSQL): concurrent additions count one after another.
        let found = sqlx::query_scalar::<B, String>(sqlx::AssertSqlSafe(format!(
            "{LOCK_GROUP}{}",
            B::LOCK_ROWS
        )))
        .bind(tenant)
        .bind(group)
        .fetch_optional(&mut *tx)
        .await?;
        if found.is_none() {
            tx.rollback().await?;
            return Ok(MembersAdded::NoGroup);
        }
        let ids: Vec<&str> = users.iter().map(UserId::as_str).collect();
        B::insert_members(&mut tx, tenant.as_str(), group.as_str(), &ids, ms(now_ms)).await?;
        let members = from_ms(
            sqlx::query_scalar::<B, i64>(COUNT_MEMBERS)
                .bind(group)
                .fetch_one(&mut *tx)
                .await?,
        );
        if members > limit {
            tx.rollback().await?;
            return Ok(MembersAdded::OverLimit { members, limit });
        }
        tx.commit().await?;
        Ok(MembersAdded::Added { members })
    }

    async fn remove_member(
        &self,
        tenant: &TenantId,
        group: &GroupId,
        user: &UserId,
    ) -> Result<Option<bool>, StoreError> {
        let mut tx = B::begin_write(&self.writer).await?;
        let found = sqlx::query_scalar::<B, String>(LOCK_GROUP)
            .bind(tenant)
            .bind(group)
            .fetch_optional(&mut *tx)
            .await?;
        if found.is_none() {
            tx.rollback().await?;
            return Ok(None);
        }
        let result = sqlx::query::<B>(REMOVE_MEMBER)
            .bind(group)
            .bind(user)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(B::rows_affected(&result) == 1))
    }

    async fn members(
        &self,
        tenant: &TenantId,
        group: &GroupId,
        page: Page,
    ) -> Result<Option<(Vec<User>, u64)>, StoreError> {
        let Some(found) = self.group(tenant, group).await? else {
            return Ok(None);
        };
        let rows = sqlx::query_as::<B, UserRow>(MEMBERS)
            .bind(group)
            .bind(tenant)
            .bind(i64::from(page.limit))
            .bind(ms(page.offset))
            .fetch_all(&self.pool)
            .await?;
        Ok(Some((
            rows.into_iter().map(Into::into).collect(),
            found.members,
        )))
    }

    async fn member_ids(
        &self,
        tenant: &TenantId,
        group: &GroupId,
    ) -> Result<Option<Vec<UserId>>, StoreError> {
        let found = sqlx::query_scalar::<B, String>(LOCK_GROUP)
            .bind(tenant)
            .bind(group)
            .fetch_optional(&self.pool)
            .await?;
        if found.is_none() {
            return Ok(None);
        }
        let ids = sqlx::query_scalar::<B, UserId>(MEMBER_IDS)
            .bind(group)
            .bind(tenant)
            .fetch_all(&self.pool)
            .await?;
        Ok(Some(ids))
    }

    async fn fan_out(
        &self,
        tenant: &TenantId,
        id: &FanOutId,
    ) -> Result<Option<FanOutSummary>, StoreError> {
        let Some(row) = sqlx::query_as::<B, FanOutRow>(FAN_OUT)
            .bind(tenant)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let counts = sqlx::query_as::<B, (String, i64)>(FAN_OUT_STATUSES)
            .bind(id)
            .bind(tenant)
            .fetch_all(&self.pool)
            .await?;
        let mut statuses: Vec<(Status, u64)> = counts
            .into_iter()
            .filter_map(|(status, count)| Some((status.parse().ok()?, from_ms(count))))
            .collect();
        statuses.sort_by_key(|(status, _)| status.as_str());
        Ok(Some(FanOutSummary {
            fan_out: row.into(),
            statuses,
        }))
    }

    async fn prune_fan_outs(&self, before_ms: u64) -> Result<u64, StoreError> {
        let result = sqlx::query::<B>(PRUNE_FAN_OUTS)
            .bind(ms(before_ms))
            .execute(&self.writer)
            .await?;
        Ok(B::rows_affected(&result))
    }
}

impl<B: Backend> SqlStore<B> {
    /// A callback endpoint's secrets, opened.
    fn open_callback_secrets(
        &self,
        tenant: &TenantId,
        user: &UserId,
        row: &CallbackRow,
    ) -> Result<Vec<CallbackSecret>, StoreError> {
        let record = callback_record(user);
        let sealed = super::crypto::Sealed {
            key_id: row.key_id.clone(),
            nonce: row.nonce.clone(),
            ciphertext: row.secrets.clone(),
        };
        let unreadable = |source| StoreError::Sealed {
            record: record.clone(),
            source,
        };
        let bytes = self
            .keyring
            .open(tenant.as_str(), &record, &sealed)
            .map_err(unreadable)?;
        serde_json::from_slice(&bytes).map_err(|_| unreadable(super::crypto::CryptoError::Mismatch))
    }

    /// A new webhook secret's id, and the secret sealed under it.
    fn seal_secret(&self, tenant: &TenantId, secret: &str) -> (String, super::crypto::Sealed) {
        let id = format!("whs_{}", ulid::Ulid::from(uuid::Uuid::now_v7().as_u128()));
        let sealed = self.keyring.seal(tenant.as_str(), &id, secret.as_bytes());
        (id, sealed)
    }
}
