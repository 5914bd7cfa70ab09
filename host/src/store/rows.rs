//! Rows as the database gives them, and what they become: the conversions between the
//! schema's columns and the domain's types, shared by both backends.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::StoreError;
use super::crypto::{CryptoError, Keyring, Sealed};
use crate::domain::feed::{self, FeedEvent};
use crate::domain::group::{FanOut, Group};
use crate::domain::ids::{FanOutId, GroupId, MessageId, PluginId, SessionId, TenantId, UserId};
use crate::domain::message::{
    Channel, Event, EventKind, Message, MessageState, PluginRef, Requested, Status,
};
use crate::domain::plugin::{Disabled, Hook, HookBinding, PluginRecord};
use crate::domain::user::{Role, Session, Tenant, User};

/// Timestamps and counts are stored as signed 64-bit integers (neither backend has an
/// unsigned type).
pub(super) fn ms(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A stored integer as the unsigned value it was written from.
pub(super) fn from_ms(value: i64) -> u64 {
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

/// A group and its member count.
#[derive(sqlx::FromRow)]
pub(super) struct GroupRow {
    id: GroupId,
    tenant_id: TenantId,
    name: String,
    created_at_ms: i64,
    members: i64,
}

impl From<GroupRow> for Group {
    fn from(row: GroupRow) -> Self {
        Self {
            id: row.id,
            tenant_id: row.tenant_id,
            name: row.name,
            created_at_ms: from_ms(row.created_at_ms),
            members: from_ms(row.members),
        }
    }
}

/// A fan-out.
#[derive(sqlx::FromRow)]
pub(super) struct FanOutRow {
    id: FanOutId,
    tenant_id: TenantId,
    sender_id: UserId,
    group_id: GroupId,
    count: i64,
    created_at_ms: i64,
}

impl From<FanOutRow> for FanOut {
    fn from(row: FanOutRow) -> Self {
        Self {
            id: row.id,
            tenant_id: row.tenant_id,
            sender_id: row.sender_id,
            group_id: row.group_id,
            count: from_ms(row.count),
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

/// The columns of a message and its state, in the order of [`MessageRow`]: `m` is `messages`,
/// `s` is `message_states`.
pub(super) const MESSAGE_COLUMNS: &str = "m.id, m.tenant_id, m.sender_id, m.recipient_id, \
     m.channel, m.content_type, m.metadata, m.key_id, m.nonce, m.content, m.requested_kind, \
     m.requested_ms, m.flow_key, m.created_at_ms, s.status, s.deliver_at_ms, s.attempts, \
     s.last_error, s.delivered_at_ms, s.read_at_ms, m.fan_out_id";

/// A message and its state, content still sealed.
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
    flow_key: Option<String>,
    created_at_ms: i64,
    #[sqlx(try_from = "String")]
    status: Status,
    deliver_at_ms: i64,
    attempts: i64,
    last_error: Option<String>,
    delivered_at_ms: Option<i64>,
    read_at_ms: Option<i64>,
    fan_out_id: Option<FanOutId>,
}

/// Opens a message's sealed content: bound to its tenant and id, so content moved to another
/// row fails to open.
pub(super) fn open_content(
    keyring: &Keyring,
    tenant: &TenantId,
    id: &MessageId,
    sealed: Sealed,
) -> Result<Vec<u8>, StoreError> {
    keyring
        .open(tenant.as_str(), id.as_str(), &sealed)
        .map_err(|source| StoreError::Sealed {
            record: id.to_string(),
            source,
        })
}

impl MessageRow {
    /// The message, content opened.
    pub(super) fn open(self, keyring: &Keyring) -> Result<Message, StoreError> {
        let content = open_content(
            keyring,
            &self.tenant_id,
            &self.id,
            Sealed {
                key_id: self.key_id,
                nonce: self.nonce,
                ciphertext: self.content,
            },
        )?;
        let requested = match (self.requested_kind.as_str(), self.requested_ms) {
            ("delay", Some(ms)) => Requested::DelayMs(from_ms(ms)),
            ("at", Some(ms)) => Requested::AtMs(from_ms(ms)),
            _ => Requested::Unspecified,
        };
        let metadata: BTreeMap<String, String> =
            serde_json::from_str(&self.metadata).unwrap_or_default();
        Ok(Message {
            id: self.id,
            tenant_id: self.tenant_id,
            sender_id: self.sender_id,
            recipient_id: self.recipient_id,
            channel: self.channel,
            content,
            content_type: self.content_type,
            metadata,
            requested,
            flow_key: self.flow_key,
            status: self.status,
            deliver_at_ms: from_ms(self.deliver_at_ms),
            attempts: u32::try_from(self.attempts).unwrap_or(u32::MAX),
            last_error: self.last_error,
            created_at_ms: from_ms(self.created_at_ms),
            delivered_at_ms: self.delivered_at_ms.map(from_ms),
            read_at_ms: self.read_at_ms.map(from_ms),
            fan_out_id: self.fan_out_id,
        })
    }
}

/// The columns of [`StateRow`].
pub(super) const STATE_COLUMNS: &str = "m.id, m.tenant_id, m.sender_id, m.recipient_id, \
     s.status, s.deliver_at_ms, s.attempts, s.last_error, s.delivered_at_ms, s.read_at_ms";

/// Where a message is, without its content.
#[derive(sqlx::FromRow)]
pub(super) struct StateRow {
    id: MessageId,
    tenant_id: TenantId,
    sender_id: UserId,
    recipient_id: UserId,
    #[sqlx(try_from = "String")]
    status: Status,
    deliver_at_ms: i64,
    attempts: i64,
    last_error: Option<String>,
    delivered_at_ms: Option<i64>,
    read_at_ms: Option<i64>,
}

impl From<StateRow> for MessageState {
    fn from(row: StateRow) -> Self {
        Self {
            id: row.id,
            tenant_id: row.tenant_id,
            sender_id: row.sender_id,
            recipient_id: row.recipient_id,
            status: row.status,
            deliver_at_ms: from_ms(row.deliver_at_ms),
            attempts: u32::try_from(row.attempts).unwrap_or(u32::MAX),
            last_error: row.last_error,
            delivered_at_ms: row.delivered_at_ms.map(from_ms),
            read_at_ms: row.read_at_ms.map(from_ms),
        }
    }
}

/// `requested` as its two columns.
pub(super) fn requested_columns(requested: Requested) -> (&'static str, Option<i64>) {
    match requested {
        Requested::Unspecified => ("none", None),
        Requested::DelayMs(delay) => ("delay", Some(ms(delay))),
        Requested::AtMs(at) => ("at", Some(ms(at))),
    }
}

/// What a message row of a new message holds, sealed and encoded for the database.
pub(super) struct NewMessageRow<'a> {
    pub(super) id: &'a str,
    pub(super) tenant_id: &'a str,
    pub(super) sender_id: &'a str,
    pub(super) recipient_id: &'a str,
    pub(super) channel: &'static str,
    pub(super) content_type: &'a str,
    pub(super) metadata: String,
    pub(super) key_id: String,
    pub(super) nonce: Vec<u8>,
    pub(super) content: Vec<u8>,
    pub(super) requested_kind: &'static str,
    pub(super) requested_ms: Option<i64>,
    pub(super) created_at_ms: i64,
    pub(super) deliver_at_ms: i64,
    pub(super) flow_key: Option<&'a str>,
    pub(super) fan_out_id: Option<&'a str>,
}

impl<'a> NewMessageRow<'a> {
    /// `message`'s row, its content sealed with `keyring`.
    pub(super) fn seal(message: &'a super::NewMessage, keyring: &Keyring) -> Self {
        let sealed = keyring.seal(
            message.tenant_id.as_str(),
            message.id.as_str(),
            &message.content,
        );
        let (requested_kind, requested_ms) = requested_columns(message.requested);
        Self {
            id: message.id.as_str(),
            tenant_id: message.tenant_id.as_str(),
            sender_id: message.sender_id.as_str(),
            recipient_id: message.recipient_id.as_str(),
            channel: message.channel.as_str(),
            content_type: &message.content_type,
            metadata: serde_json::to_string(&message.metadata).expect("a string map is JSON"),
            key_id: sealed.key_id,
            nonce: sealed.nonce,
            content: sealed.ciphertext,
            requested_kind,
            requested_ms,
            created_at_ms: ms(message.created_at_ms),
            deliver_at_ms: ms(message.deliver_at_ms),
            flow_key: message.flow_key.as_deref(),
            fan_out_id: message.fan_out_id.as_ref().map(FanOutId::as_str),
        }
    }
}

/// One entry of a step as kept in the `steps` JSON column: short keys, since every message
/// carries a few of them.
#[derive(Serialize, Deserialize)]
struct StoredEntry {
    at: u64,
    kind: EventKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    from: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    to: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    attempt: Option<u32>,
    result: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ms: Option<u64>,
    /// Name and digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    plugin: Option<(String, String)>,
}

impl From<&Event> for StoredEntry {
    fn from(event: &Event) -> Self {
        Self {
            at: event.at_ms,
            kind: event.kind,
            from: event.from,
            to: event.to,
            attempt: event.attempt,
            result: event.result.clone(),
            ms: event.duration_ms,
            plugin: event
                .plugin
                .as_ref()
                .map(|plugin| (plugin.name.clone(), plugin.digest.clone())),
        }
    }
}

impl From<StoredEntry> for Event {
    fn from(entry: StoredEntry) -> Self {
        Self {
            at_ms: entry.at,
            kind: entry.kind,
            from: entry.from,
            to: entry.to,
            attempt: entry.attempt,
            result: entry.result,
            duration_ms: entry.ms,
            plugin: entry
                .plugin
                .map(|(name, digest)| PluginRef { name, digest }),
        }
    }
}

/// What kind of step a history row records.
#[derive(Debug, Clone, Copy)]
pub(super) enum StepKind {
    /// The submit: validation, planning, acceptance.
    Submitted,
    /// One delivery attempt, from its claim to its outcome.
    Attempt,
    /// A change someone asked for: cancel, reschedule, deliver now, read, replay.
    Change,
}

impl StepKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Submitted => "submitted",
            Self::Attempt => "attempt",
            Self::Change => "change",
        }
    }
}

/// One history row: a step's entries, and a summary of it in columns (when it began, the
/// statuses it went from and to, the attempt, its result, and the plugin that did the main
/// work with its call's duration) for queries that read history without the JSON.
pub(super) struct StepRow<'a> {
    pub(super) message_id: &'a str,
    pub(super) at_ms: i64,
    pub(super) kind: &'static str,
    pub(super) from_status: Option<&'static str>,
    pub(super) to_status: Option<&'static str>,
    pub(super) attempt: Option<i64>,
    pub(super) result: String,
    pub(super) duration_ms: Option<i64>,
    pub(super) plugin_name: Option<String>,
    pub(super) plugin_digest: Option<String>,
    pub(super) steps: String,
}

impl<'a> StepRow<'a> {
    /// The row of a step of `kind` made of `events` (at least one).
    pub(super) fn new(message_id: &'a MessageId, kind: StepKind, events: &[Event]) -> Self {
        let transitions = || events.iter().filter(|e| e.kind == EventKind::Transition);
        // The channel's attempt in an attempt step; otherwise the last plugin decision.
        let main = events
            .iter()
            .rev()
            .find(|event| event.kind == EventKind::Attempt)
            .or_else(|| events.iter().rev().find(|event| event.plugin.is_some()));
        let entries: Vec<StoredEntry> = events.iter().map(StoredEntry::from).collect();
        Self {
            message_id: message_id.as_str(),
            at_ms: ms(events.first().map_or(0, |event| event.at_ms)),
            kind: kind.as_str(),
            from_status: transitions()
                .next()
                .and_then(|event| event.from)
                .map(Status::as_str),
            to_status: transitions()
                .next_back()
                .and_then(|event| event.to)
                .map(Status::as_str),
            attempt: events.iter().find_map(|event| event.attempt).map(i64::from),
            result: events
                .last()
                .map(|event| event.result.clone())
                .unwrap_or_default(),
            duration_ms: main.and_then(|event| event.duration_ms).map(ms),
            plugin_name: main
                .and_then(|event| event.plugin.as_ref())
                .map(|plugin| plugin.name.clone()),
            plugin_digest: main
                .and_then(|event| event.plugin.as_ref())
                .map(|plugin| plugin.digest.clone()),
            steps: serde_json::to_string(&entries).expect("entries are JSON"),
        }
    }
}

/// A stored history row: one step (with `steps`), or one entry (written before steps).
#[derive(sqlx::FromRow)]
pub(super) struct EventRow {
    at_ms: i64,
    kind: String,
    from_status: Option<String>,
    to_status: Option<String>,
    attempt: Option<i64>,
    result: String,
    duration_ms: Option<i64>,
    plugin_name: Option<String>,
    plugin_digest: Option<String>,
    steps: Option<String>,
}

impl EventRow {
    /// The row's entries, in order.
    pub(super) fn entries(self) -> Result<Vec<Event>, StoreError> {
        if let Some(steps) = &self.steps {
            let entries: Vec<StoredEntry> = serde_json::from_str(steps)
                .map_err(|error| StoreError::Database(sqlx::Error::Decode(error.into())))?;
            return Ok(entries.into_iter().map(Event::from).collect());
        }
        let kind = EventKind::try_from(self.kind)
            .map_err(|error| StoreError::Database(sqlx::Error::Decode(error.into())))?;
        Ok(vec![Event {
            at_ms: from_ms(self.at_ms),
            kind,
            from: self.from_status.and_then(|status| status.parse().ok()),
            to: self.to_status.and_then(|status| status.parse().ok()),
            attempt: self.attempt.and_then(|n| u32::try_from(n).ok()),
            result: self.result,
            duration_ms: self.duration_ms.map(from_ms),
            plugin: match (self.plugin_name, self.plugin_digest) {
                (Some(name), Some(digest)) => Some(PluginRef { name, digest }),
                _ => None,
            },
        }])
    }
}

/// A message as the schedule index needs it.
#[derive(sqlx::FromRow)]
pub(super) struct PendingRow {
    pub(super) message_id: MessageId,
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

/// What a claim found for one id it was asked about: its state before the claim, and whether
/// the claim took it.
#[derive(sqlx::FromRow)]
pub(super) struct ClaimRow {
    pub(super) message_id: MessageId,
    #[sqlx(try_from = "String")]
    pub(super) previous: Status,
    pub(super) deliver_at_ms: i64,
    pub(super) lease_until_ms: Option<i64>,
    pub(super) claimed: bool,
}

/// Counts of a tenant's messages in one status (the shards summed).
#[derive(sqlx::FromRow)]
pub(super) struct CountRow {
    pub(super) tenant_id: TenantId,
    #[sqlx(try_from = "String")]
    pub(super) status: Status,
    pub(super) count: i64,
}

/// What one statement adds to the kept count of a tenant's messages in a status.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct CountDelta {
    pub(super) tenant_id: TenantId,
    pub(super) status: &'static str,
    pub(super) shard: i64,
    pub(super) delta: i64,
}

/// The counts to add for messages changing status: `-1` from each old status, `+1` to each
/// new one (`None`: it did not exist before, or is gone after), summed per tenant and status,
/// sorted (so concurrent writers lock count rows in one order) and without zeros.
pub(super) fn count_deltas<'a>(
    changes: impl IntoIterator<Item = (&'a TenantId, Option<Status>, Option<Status>)>,
    shard: i64,
) -> Vec<CountDelta> {
    let mut sums: BTreeMap<(TenantId, &'static str), i64> = BTreeMap::new();
    for (tenant, from, to) in changes {
        if from == to {
            continue;
        }
        if let Some(from) = from {
            *sums.entry((tenant.clone(), from.as_str())).or_default() -= 1;
        }
        if let Some(to) = to {
            *sums.entry((tenant.clone(), to.as_str())).or_default() += 1;
        }
    }
    sums.into_iter()
        .filter(|(_, delta)| *delta != 0)
        .map(|((tenant_id, status), delta)| CountDelta {
            tenant_id,
            status,
            shard,
            delta,
        })
        .collect()
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

/// Joins the kept counts with the pending messages' due times into the queue report, ordered
/// by tenant name and status.
pub(super) fn queue_report(
    counts: Vec<CountRow>,
    tenants: &HashMap<TenantId, String>,
    pending: Vec<PendingGroupRow>,
) -> Vec<super::QueueCount> {
    let pending: HashMap<(TenantId, Status), PendingGroupRow> = pending
        .into_iter()
        .map(|group| ((group.tenant_id.clone(), group.status), group))
        .collect();
    let mut report: Vec<super::QueueCount> = counts
        .into_iter()
        .filter(|row| row.count != 0)
        .map(|row| {
            let mut count = super::QueueCount {
                tenant: tenants.get(&row.tenant_id).cloned().unwrap_or_default(),
                tenant_id: row.tenant_id,
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
        .collect();
    report.sort_by(|a, b| {
        (a.tenant.as_str(), a.status.as_str()).cmp(&(b.tenant.as_str(), b.status.as_str()))
    });
    report
}

#[derive(sqlx::FromRow)]
pub(super) struct IdempotencyRow {
    pub(super) request_hash: String,
    pub(super) response: String,
}

/// An idempotency key as stored with its request.
pub(super) struct IdempotencyKeyRow<'a> {
    pub(super) tenant_id: &'a str,
    pub(super) user_id: &'a str,
    pub(super) key: &'a str,
    pub(super) request_hash: &'a str,
    pub(super) response: &'a str,
    pub(super) created_at_ms: i64,
}

/// A user's status callback endpoint as stored (its secrets sealed as one JSON array).
#[derive(sqlx::FromRow)]
pub(super) struct CallbackRow {
    pub(super) url: String,
    pub(super) events: String,
    pub(super) key_id: String,
    pub(super) nonce: Vec<u8>,
    pub(super) secrets: Vec<u8>,
    pub(super) created_at_ms: i64,
}

#[derive(sqlx::FromRow)]
pub(super) struct WebhookRow {
    pub(super) user_id: UserId,
    pub(super) tenant_id: TenantId,
    pub(super) url: String,
    pub(super) created_at_ms: i64,
    pub(super) disabled_reason: Option<String>,
}

#[derive(sqlx::FromRow)]
pub(super) struct SecretRow {
    pub(super) user_id: UserId,
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
            source: CryptoError::Mismatch,
        })
    }
}

/// Webhooks with their secrets, by user; secrets are newest first, and a webhook whose
/// tenant is not the one asked for is left out.
pub(super) fn webhooks(
    keyring: &Keyring,
    asked: &[(TenantId, UserId)],
    rows: Vec<WebhookRow>,
    secrets: Vec<SecretRow>,
) -> Result<HashMap<UserId, super::Webhook>, StoreError> {
    let tenants: HashMap<&UserId, &TenantId> = asked.iter().map(|(t, u)| (u, t)).collect();
    let mut found: HashMap<UserId, super::Webhook> = HashMap::new();
    let mut tenant_of: HashMap<UserId, TenantId> = HashMap::new();
    for row in rows {
        if tenants.get(&row.user_id) != Some(&&row.tenant_id) {
            continue;
        }
        tenant_of.insert(row.user_id.clone(), row.tenant_id);
        found.insert(
            row.user_id,
            super::Webhook {
                url: row.url,
                secrets: Vec::new(),
                created_at_ms: from_ms(row.created_at_ms),
                disabled: row.disabled_reason,
            },
        );
    }
    for secret in secrets {
        let Some(tenant) = tenant_of.get(&secret.user_id).cloned() else {
            continue;
        };
        let user = secret.user_id.clone();
        let opened = secret.open(keyring, &tenant)?;
        if let Some(webhook) = found.get_mut(&user) {
            webhook.secrets.push(opened);
        }
    }
    Ok(found)
}

/// The sealing record of a feed event: moving a sealed body to another user or cursor makes
/// it fail to open.
pub(super) fn feed_record(user: &UserId, cursor: u64) -> String {
    format!("feed:{user}:{cursor}")
}

/// A stored feed event, body still sealed; with the message it refers to, when it does (its
/// content, sealed, from a join).
#[derive(sqlx::FromRow)]
pub(super) struct FeedRow {
    tenant_id: TenantId,
    user_id: UserId,
    cursor_no: i64,
    at_ms: i64,
    key_id: String,
    nonce: Vec<u8>,
    body: Vec<u8>,
    message_id: Option<MessageId>,
    message_key_id: Option<String>,
    message_nonce: Option<Vec<u8>>,
    message_content: Option<Vec<u8>>,
}

/// The columns of [`FeedRow`]: `f` is `feed_events`, `m` the message it refers to (a left
/// join).
pub(super) const FEED_COLUMNS: &str = "f.tenant_id, f.user_id, f.cursor_no, f.at_ms, f.key_id, \
     f.nonce, f.body, f.message_id, m.key_id AS message_key_id, m.nonce AS message_nonce, \
     m.content AS message_content";

impl FeedRow {
    /// The event, body opened, with the content of the message it refers to put back.
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
        let mut body = serde_json::from_slice(&body).map_err(|_| StoreError::Sealed {
            record,
            source: CryptoError::Mismatch,
        })?;
        if let (Some(id), Some(key_id), Some(nonce), Some(ciphertext)) = (
            self.message_id,
            self.message_key_id,
            self.message_nonce,
            self.message_content,
        ) {
            let content = open_content(
                keyring,
                &self.tenant_id,
                &id,
                Sealed {
                    key_id,
                    nonce,
                    ciphertext,
                },
            )?;
            feed::embed_content(&mut body, &content);
        }
        Ok(FeedEvent {
            tenant_id: self.tenant_id,
            user_id: self.user_id,
            cursor,
            at_ms: from_ms(self.at_ms),
            body,
        })
    }
}

/// A feed event as stored: body sealed, content left out when it refers to its message.
pub(super) struct FeedInsertRow {
    pub(super) tenant_id: TenantId,
    pub(super) user_id: UserId,
    pub(super) cursor_no: i64,
    pub(super) at_ms: i64,
    pub(super) kind: String,
    pub(super) key_id: String,
    pub(super) nonce: Vec<u8>,
    pub(super) body: Vec<u8>,
    pub(super) message_id: Option<MessageId>,
}

#[derive(sqlx::FromRow)]
pub(super) struct PluginRow {
    id: PluginId,
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

impl TryFrom<PluginRow> for PluginRecord {
    type Error = StoreError;

    fn try_from(row: PluginRow) -> Result<Self, StoreError> {
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
    hook: Hook,
    position: i64,
    plugin_id: PluginId,
    binding: String,
}

impl TryFrom<HookRow> for HookBinding {
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

/// A stored flow limit.
#[derive(sqlx::FromRow)]
pub(super) struct FlowLimitRow {
    pattern: String,
    rate: Option<i64>,
    period_seconds: Option<i64>,
    parallelism: Option<i64>,
    ordering: String,
    created_at_ms: i64,
    updated_at_ms: i64,
}

impl From<FlowLimitRow> for crate::domain::flow::FlowLimit {
    fn from(row: FlowLimitRow) -> Self {
        use crate::domain::flow::{Limits, Rate};
        let rate = row.rate.map(|count| Rate {
            count: u32::try_from(count).unwrap_or(u32::MAX),
            period_seconds: row
                .period_seconds
                .and_then(|period| u32::try_from(period).ok())
                .unwrap_or(1),
        });
        Self {
            pattern: row.pattern,
            limits: Limits {
                rate,
                parallelism: row
                    .parallelism
                    .map(|cap| u32::try_from(cap).unwrap_or(u32::MAX)),
                fifo: row.ordering == "fifo",
            },
            created_at_ms: from_ms(row.created_at_ms),
            updated_at_ms: from_ms(row.updated_at_ms),
        }
    }
}

/// What the flow limiter needs of a claimed message.
#[derive(sqlx::FromRow)]
pub(super) struct FlowRouteRow {
    id: MessageId,
    tenant_id: TenantId,
    recipient_id: UserId,
    #[sqlx(try_from = "String")]
    channel: Channel,
    flow_key: Option<String>,
    url: Option<String>,
    deliver_at_ms: i64,
}

impl From<FlowRouteRow> for super::FlowRoute {
    fn from(row: FlowRouteRow) -> Self {
        Self {
            key: crate::domain::flow::key_of(
                row.flow_key.as_deref(),
                row.channel,
                &row.recipient_id,
                row.url.as_deref(),
            ),
            id: row.id,
            tenant_id: row.tenant_id,
            due_ms: from_ms(row.deliver_at_ms),
        }
    }
}
