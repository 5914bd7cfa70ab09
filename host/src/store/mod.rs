//! Storage: the database is the source of truth.
//!
//! [`Store`] is the seam with exactly two implementations: [`sqlite::SqliteStore`] (the
//! embedded default, one file under `DATA_DIR`) and [`postgres::PostgresStore`] (scale-out).
//! Both are [`sql::SqlStore`], generic over the backend: the statements they share are written
//! once in `sql.rs`, the rows they read in `rows.rs`; what differs between the two SQL
//! dialects is the [`backend::Backend`] trait, which each backend module implements along with
//! how it connects and its migrations (`migrations/<backend>/`). Batched statements have one
//! text whatever their size (PostgreSQL binds arrays and `UNNEST`s them, SQLite binds one JSON
//! array and reads it with `json_each`), so each is prepared once per connection.
//!
//! Every method that reads or writes tenant data takes the [`TenantId`] first, so no query can
//! forget the tenant boundary. Times are Unix milliseconds, passed in by the caller (the
//! server's clock), never taken from the database's own clock.

pub mod admin;
mod backend;
pub mod backup;
pub mod crypto;
pub mod group_commit;
pub mod postgres;
mod rows;
mod schedules;
mod sql;
pub mod sqlite;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use crate::domain::callback::{CallbackEvent, Notice};
use crate::domain::feed::{FeedEvent, NewFeedEvent};
use crate::domain::flow::{FlowLimit, Limits};
use crate::domain::group::{FanOut, FanOutSummary, Group};
use crate::domain::ids::{FanOutId, GroupId, MessageId, PluginId, SessionId, TenantId, UserId};
use crate::domain::message::{Channel, Event, Message, MessageState, Requested, Status};
use crate::domain::plugin::{Binding, World};
use crate::domain::plugin::{
    Disabled, Hook, HookBinding, PluginQuota, PluginRecord, QuotaExceeded,
};
use crate::domain::user::{Role, Session, Tenant, User};
use crypto::{CryptoError, Keyring};
pub use schedules::{OccurrenceClaim, ScheduleStore};

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique value (a tenant name, a username) is taken.
    #[error("{0}")]
    Conflict(String),
    /// The database cannot be reached, or has no free connection in time.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// The database URL or file location is unusable.
    #[error("{0}")]
    Config(String),
    /// Applying migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A sealed value could not be opened (wrong key ring, or a value moved or altered).
    #[error("cannot open the sealed content of {record}: {source}")]
    Sealed {
        /// The record.
        record: String,
        /// Why.
        source: CryptoError,
    },
    /// The database answered but refused a value it cannot hold or a rule of the schema (a
    /// NUL in text, a number out of range, a check): the same statement will fail again, so
    /// retrying it is pointless.
    #[error("the database refused the data: {0}")]
    Refused(String),
    /// Any other database error: a bug or a corrupted database, never the caller's input.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
}

/// Whether a database error means the database cannot serve now (a restart, a connection
/// broken or refused, out of resources) rather than that the statement is wrong.
///
/// PostgreSQL: SQLSTATE classes 08 (connection exception), 53 (insufficient resources) and 57
/// (operator intervention: "terminating connection due to administrator command" during a
/// restart is 57P01). SQLite: busy, locked, I/O error, disk full, cannot open.
fn unavailable(database: &dyn sqlx::error::DatabaseError) -> bool {
    let code = database.code().unwrap_or_default();
    if database
        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        .is_some()
    {
        return ["08", "53", "57"]
            .iter()
            .any(|class| code.starts_with(class));
    }
    code.parse::<i32>()
        .is_ok_and(|code| matches!(code & 0xff, 5 | 6 | 10 | 13 | 14))
}

/// Whether a database error means it refused the data itself (see [`StoreError::Refused`]).
///
/// PostgreSQL: classes 22 (data exception: `invalid byte sequence for encoding "UTF8": 0x00`,
/// numeric out of range) and 23 (integrity: not null, check). SQLite: constraint (a check, a
/// trigger's `RAISE`), too big, type mismatch, out of range.
fn refused(database: &dyn sqlx::error::DatabaseError) -> bool {
    let code = database.code().unwrap_or_default();
    if database
        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        .is_some()
    {
        return code.starts_with("22") || code.starts_with("23");
    }
    code.parse::<i32>()
        .is_ok_and(|code| matches!(code & 0xff, 18 | 19 | 20 | 25))
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => Self::Unavailable(error.to_string()),
            sqlx::Error::Database(database) if unavailable(database.as_ref()) => {
                Self::Unavailable(database.message().to_owned())
            }
            sqlx::Error::Database(database) if database.is_unique_violation() => {
                Self::Conflict(database.message().to_owned())
            }
            // Only a concurrent delete can break a reference the caller checked.
            sqlx::Error::Database(database) if database.is_foreign_key_violation() => {
                Self::Conflict(format!(
                    "a record this refers to was deleted meanwhile: {}",
                    database.message()
                ))
            }
            sqlx::Error::Database(database) if refused(database.as_ref()) => {
                Self::Refused(crate::text::cleaned(database.message()))
            }
            // A value sqlx could not encode for the database (out of its range).
            sqlx::Error::Encode(cause) => Self::Refused(crate::text::cleaned(cause.to_string())),
            _ => Self::Database(error),
        }
    }
}

/// A user to create.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// The login name.
    pub username: String,
    /// The free-form name.
    pub display_name: Option<String>,
    /// The role.
    pub role: Role,
    /// The argon2id PHC string.
    pub password_hash: String,
}

/// A session to create, with its first refresh token.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The user.
    pub user_id: UserId,
    /// SHA-256 of the first refresh token, hex.
    pub refresh_hash: String,
    /// Now.
    pub now_ms: u64,
    /// When the session ends unless refreshed.
    pub expires_at_ms: u64,
    /// The client's user agent.
    pub user_agent: Option<String>,
    /// The client's address.
    pub ip: Option<String>,
}

/// The outcome of presenting a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The token was current: it is now used, and `new_hash` is the session's current token.
    Rotated {
        /// The session, with its new expiry.
        session: Box<Session>,
        /// Its user.
        user: Box<User>,
    },
    /// The token had been used before: someone replayed it, so the whole session is revoked.
    Reused {
        /// The revoked session.
        session_id: SessionId,
        /// Its tenant and user, when this presentation revoked it (not revoked before).
        owner: Option<(TenantId, UserId)>,
    },
    /// No such token, or its session has ended.
    Invalid,
}

/// A page of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// At most this many items.
    pub limit: u32,
    /// After skipping this many.
    pub offset: u64,
}

/// How long an `Idempotency-Key` is remembered: 24 hours.
pub const IDEMPOTENCY_TTL_MS: u64 = 24 * 3_600_000;

/// A message to store.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// Its id, chosen by the caller so plugins see it before it is stored.
    pub id: MessageId,
    /// Its tenant.
    pub tenant_id: TenantId,
    /// The sender.
    pub sender_id: UserId,
    /// The recipient.
    pub recipient_id: UserId,
    /// The channel.
    pub channel: Channel,
    /// The content, sealed before it is written.
    pub content: Vec<u8>,
    /// Its media type.
    pub content_type: String,
    /// Metadata (stored in plaintext: do not put secrets there).
    pub metadata: BTreeMap<String, String>,
    /// What the sender asked for.
    pub requested: Requested,
    /// Its own flow key, if the sender gave one.
    pub flow_key: Option<String>,
    /// The planned delivery time.
    pub deliver_at_ms: u64,
    /// Now.
    pub created_at_ms: u64,
    /// The entries of its submit: each decision, then the transition to `scheduled`. Stored
    /// as one history row.
    pub history: Vec<Event>,
    /// The fan-out that created it, when it was sent to a group.
    pub fan_out_id: Option<FanOutId>,
}

/// The messages one request was accepted with (one, or a batch), stored together or not at
/// all, with the request's idempotency key.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The messages.
    pub messages: Vec<NewMessage>,
    /// The request's `Idempotency-Key`, when it had one.
    pub idempotency: Option<Idempotency>,
    /// The fan-out the messages are, when they were sent to a group.
    pub fan_out: Option<FanOut>,
    /// The schedule occurrence these messages are, when they are one: stored only if the
    /// schedule still waits for exactly that occurrence.
    pub occurrence: Option<OccurrenceClaim>,
}

/// What adding members to a group did (all of them, or none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembersAdded {
    /// Added (those who were members already stay as they were): the group's members now.
    Added {
        /// Members now.
        members: u64,
    },
    /// The tenant has no such group.
    NoGroup,
    /// The group would have `members` members, over `limit`: nothing was added.
    OverLimit {
        /// Members it would have.
        members: u64,
        /// The most it may have.
        limit: u64,
    },
}

/// What storing an [`Accepted`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Its messages are committed.
    Committed,
    /// Its idempotency key was stored already (by a concurrent request, in the last 24 hours):
    /// nothing of it was stored; the caller answers with what that request stored.
    KeyTaken,
    /// Its schedule occurrence was created already (by another node) or the schedule changed
    /// since it was read: nothing of it was stored.
    OccurrenceTaken,
}

/// An `Idempotency-Key` and the response to replay for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    /// The tenant of the user who sent it.
    pub tenant_id: TenantId,
    /// The user who sent the key (keys are per user).
    pub user_id: UserId,
    /// The key.
    pub key: String,
    /// SHA-256 of the request body.
    pub request_hash: String,
    /// The response body to replay.
    pub response: String,
    /// When the request came (the key expires [`IDEMPOTENCY_TTL_MS`] later).
    pub created_at_ms: u64,
}

/// Which messages a listing shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mailbox {
    /// Sent by this user.
    Sent(UserId),
    /// Delivered to this user.
    Received(UserId),
    /// Every message of the tenant (admins).
    All,
}

/// A listing of messages, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageQuery {
    /// Whose messages.
    pub mailbox: Mailbox,
    /// Only this status.
    pub status: Option<Status>,
    /// At most this many.
    pub limit: u32,
    /// After skipping this many (offset form).
    pub offset: u64,
    /// Only messages older than this one (cursor form).
    pub before: Option<MessageId>,
    /// Only messages this one or newer: ids begin with their creation time, so
    /// [`MessageId::first_at`] makes "created at or after" a bound of the same index range.
    pub since: Option<MessageId>,
    /// Only messages to this recipient (the `messages_received` index).
    pub recipient: Option<UserId>,
}

/// A status change requested by a person (cancel, reschedule, deliver now, read, replay).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The statuses it applies from; always a subset of what the transition table allows.
    pub from: Vec<Status>,
    /// The new status.
    pub to: Status,
    /// A new due time.
    pub deliver_at_ms: Option<u64>,
    /// Start counting attempts again (replay).
    pub reset_attempts: bool,
    /// History entries to record with it.
    pub events: Vec<Event>,
}

impl Change {
    /// A change to `to` from those of `from` that the transition table allows.
    pub fn new(from: &[Status], to: Status) -> Self {
        let allowed: Vec<Status> = from
            .iter()
            .copied()
            .filter(|status| status.can_transition_to(to))
            .collect();
        debug_assert_eq!(allowed.len(), from.len(), "a transition the table forbids");
        Self {
            from: allowed,
            to,
            deliver_at_ms: None,
            reset_attempts: false,
            events: Vec::new(),
        }
    }
}

/// How a delivery attempt ended, committed under the lease token that started it.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The message.
    pub id: MessageId,
    /// Its tenant.
    pub tenant_id: TenantId,
    /// The lease token of the claim.
    pub token: String,
    /// `Delivered`, `Retrying` or `Dead`.
    pub status: Status,
    /// The retry time, for `Retrying`.
    pub deliver_at_ms: Option<u64>,
    /// The attempt's error, if it failed.
    pub error: Option<String>,
    /// The attempt's entries, from its claim to its end (the claim, the channel's attempt, the
    /// delay policy's decision, the transition): one history row.
    pub events: Vec<Event>,
    /// Feed events to append with it (what the channel published, the sender's `status`).
    pub feed: Vec<NewFeedEvent>,
    /// When the attempt ended (Unix ms).
    pub at_ms: u64,
    /// The sender's status callback, stored with the outcome if they asked for its event.
    pub callback: Option<Notice>,
}

/// What [`Store::finish_deliveries`] committed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Finished {
    /// One entry per outcome, in order: false when a newer claim took the message over.
    pub committed: Vec<bool>,
    /// The status callbacks stored with them, with their due times, for the index.
    pub callbacks: Vec<(MessageId, u64)>,
}

/// What [`Store::transition`] changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Changed {
    /// The message after the change.
    pub message: Message,
    /// The status callback stored with it, with its due time, for the index.
    pub callbacks: Vec<(MessageId, u64)>,
}

/// A status callback endpoint to set.
#[derive(Debug, Clone)]
pub struct NewCallback<'a> {
    /// The owner's tenant.
    pub tenant_id: &'a TenantId,
    /// The owner: the sender told of their messages.
    pub user_id: &'a UserId,
    /// Where callbacks are POSTed.
    pub url: &'a str,
    /// The statuses that produce one.
    pub events: &'a [CallbackEvent],
    /// The first signing secret.
    pub secret: &'a str,
    /// Now.
    pub now_ms: u64,
}

/// A user's status callback endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callback {
    /// Where callbacks are POSTed.
    pub url: String,
    /// The statuses that produce one.
    pub events: Vec<CallbackEvent>,
    /// Secrets to sign with, newest first (expired ones left out).
    pub secrets: Vec<String>,
    /// When it was set.
    pub created_at_ms: u64,
}

/// What [`Store::begin_deliveries`] found for the ids it was given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Claimed {
    /// Now `delivering` under the lease, with the status each had before (`delivering` when
    /// its previous lease had expired).
    pub messages: Vec<(Message, Status)>,
    /// Still waiting, but not due yet (the index had it too early): its due time, for the
    /// index.
    pub not_due: Vec<(MessageId, u64)>,
    /// No longer deliverable (done, cancelled, gone) or leased by a live claim: the index
    /// should drop the claim.
    pub skipped: Vec<MessageId>,
}

/// A page of a user's feed.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedPage {
    /// Events after the cursor asked for, oldest first.
    pub events: Vec<FeedEvent>,
    /// The user's newest cursor (0 before their first event).
    pub head: u64,
}

/// Called with the feed events of each commit, after it commits: the real-time hub pushes them
/// to live connections.
pub type FeedListener = Arc<dyn Fn(Vec<FeedEvent>) + Send + Sync>;

/// Where a store hands committed feed events (set once, by the server; unset in tools).
#[derive(Clone, Default)]
pub struct FeedNotifier(Arc<std::sync::OnceLock<FeedListener>>);

impl std::fmt::Debug for FeedNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedNotifier")
            .field("listening", &self.0.get().is_some())
            .finish()
    }
}

impl FeedNotifier {
    /// Sets the listener; false when one was set already.
    pub fn listen(&self, listener: FeedListener) -> bool {
        self.0.set(listener).is_ok()
    }

    /// Hands `events` to the listener.
    pub fn notify(&self, events: Vec<FeedEvent>) {
        if !events.is_empty()
            && let Some(listener) = self.0.get()
        {
            listener(events);
        }
    }
}

/// A user's webhook endpoint, secrets opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// Where to POST.
    pub url: String,
    /// Secrets to sign with, newest first (expired ones left out).
    pub secrets: Vec<String>,
    /// When it was created.
    pub created_at_ms: u64,
    /// Why it is disabled, if it is.
    pub disabled: Option<String>,
}

/// The storage operations of the server.
#[async_trait::async_trait]
pub trait Store: ScheduleStore + Send + Sync + 'static {
    /// Which backend this is: `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;

    /// A trivial query, to check the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Creates a tenant. [`StoreError::Conflict`] when the name is taken.
    async fn create_tenant(&self, name: &str, now_ms: u64) -> Result<Tenant, StoreError>;

    /// A tenant by name.
    async fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>, StoreError>;

    /// Every tenant, by name.
    async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError>;

    /// Creates a user. [`StoreError::Conflict`] when the username is taken.
    async fn create_user(
        &self,
        tenant: &TenantId,
        user: NewUser,
        now_ms: u64,
    ) -> Result<User, StoreError>;

    /// A live user of the tenant.
    async fn user(&self, tenant: &TenantId, id: &UserId) -> Result<Option<User>, StoreError>;

    /// Which of `ids` are live users of the tenant (one lookup for a whole batch).
    async fn live_users(
        &self,
        tenant: &TenantId,
        ids: &[UserId],
    ) -> Result<std::collections::HashSet<UserId>, StoreError>;

    /// A live user and their password hash, by username: any spelling with the same
    /// [`username_key`](crate::domain::user::username_key) finds the one user (keys are unique
    /// on the server).
    async fn credentials(&self, username: &str) -> Result<Option<(User, String)>, StoreError>;

    /// Computes the username key and skeleton of users stored before they existed; run at
    /// every connect (it finds nothing to do once done). A user whose name now collides with
    /// an older user's is left without one, logged, and logs in by its exact name.
    async fn fill_username_keys(&self) -> Result<(), StoreError>;

    /// A page of the tenant's live users, oldest first, and how many there are in all.
    async fn list_users(
        &self,
        tenant: &TenantId,
        page: Page,
    ) -> Result<(Vec<User>, u64), StoreError>;

    /// Deletes a user and revokes their sessions, in one transaction. False when there is no
    /// such live user in the tenant.
    async fn delete_user(
        &self,
        tenant: &TenantId,
        id: &UserId,
        now_ms: u64,
    ) -> Result<bool, StoreError>;

    /// Sets a user's password hash and revokes their sessions except `keep`, in one
    /// transaction. False when there is no such live user in the tenant.
    async fn set_password(
        &self,
        tenant: &TenantId,
        id: &UserId,
        password_hash: &str,
        keep: Option<&SessionId>,
        now_ms: u64,
    ) -> Result<bool, StoreError>;

    /// Starts a session with its first refresh token.
    async fn create_session(&self, session: NewSession) -> Result<Session, StoreError>;

    /// Presents a refresh token: rotates it, or detects its reuse. Atomic: of two concurrent
    /// presentations of the same token exactly one rotates it.
    async fn rotate_refresh(
        &self,
        old_hash: &str,
        new_hash: &str,
        now_ms: u64,
        expires_at_ms: u64,
    ) -> Result<Rotation, StoreError>;

    /// The user behind an access token, if its session is still live (not revoked, not
    /// expired, user not deleted).
    async fn authenticate(
        &self,
        tenant: &TenantId,
        user: &UserId,
        session: &SessionId,
        now_ms: u64,
    ) -> Result<Option<User>, StoreError>;

    /// The user's live sessions, newest first.
    async fn list_sessions(
        &self,
        tenant: &TenantId,
        user: &UserId,
        now_ms: u64,
    ) -> Result<Vec<Session>, StoreError>;

    /// Revokes one of the user's sessions. False when it is not theirs or already ended.
    async fn revoke_session(
        &self,
        tenant: &TenantId,
        user: &UserId,
        session: &SessionId,
        reason: &str,
        now_ms: u64,
    ) -> Result<bool, StoreError>;

    /// Stores what requests were accepted with, in one transaction: each request's messages
    /// (status `scheduled`, content sealed, one history row each) and its idempotency key.
    /// One answer per request, in order; a request whose key another request stored first
    /// stores nothing ([`Stored::KeyTaken`]). An error stores none of them.
    async fn insert_messages(&self, requests: &[Accepted]) -> Result<Vec<Stored>, StoreError>;

    /// The stored request hash and response of an idempotency key newer than `since_ms`.
    async fn idempotency(
        &self,
        tenant: &TenantId,
        user: &UserId,
        key: &str,
        since_ms: u64,
    ) -> Result<Option<(String, String)>, StoreError>;

    /// A message of the tenant, content opened.
    async fn message(
        &self,
        tenant: &TenantId,
        id: &MessageId,
    ) -> Result<Option<Message>, StoreError>;

    /// Where a message of the tenant is, without reading its content.
    async fn message_state(
        &self,
        tenant: &TenantId,
        id: &MessageId,
    ) -> Result<Option<MessageState>, StoreError>;

    /// The id of the `n`-th newest message of `mailbox` (0: the newest) older than `before`,
    /// whatever its status: the lower bound of a listing that searches at most `n + 1`
    /// messages. `None` when no more than `n` remain.
    async fn nth_message_id(
        &self,
        tenant: &TenantId,
        mailbox: &Mailbox,
        before: Option<&MessageId>,
        n: u64,
    ) -> Result<Option<MessageId>, StoreError>;

    /// Messages of the tenant, newest first.
    async fn list_messages(
        &self,
        tenant: &TenantId,
        query: &MessageQuery,
    ) -> Result<Vec<Message>, StoreError>;

    /// A message's history, oldest first.
    async fn message_events(
        &self,
        tenant: &TenantId,
        id: &MessageId,
    ) -> Result<Vec<Event>, StoreError>;

    /// Applies a requested status change if the message is in a status it is allowed from,
    /// and appends the sender's `status` (or `read`) event to their feed; `None` when it is not
    /// (or does not exist).
    async fn transition(
        &self,
        tenant: &TenantId,
        id: &MessageId,
        change: &Change,
        now_ms: u64,
    ) -> Result<Option<Changed>, StoreError>;

    /// Deletes a message that is in `status`, with its history. False when there is none.
    async fn delete_message(
        &self,
        tenant: &TenantId,
        id: &MessageId,
        status: Status,
    ) -> Result<bool, StoreError>;

    /// Marks claimed messages `delivering` under a lease, in one statement: those waiting and
    /// due at `now_ms`, and those whose previous lease expired (at its `lease_until_ms`, as the
    /// schedule index sees it). Says of the others which are waiting but not due yet (and
    /// when they are due) and which are no longer deliverable.
    async fn begin_deliveries(
        &self,
        ids: &[MessageId],
        token: &str,
        now_ms: u64,
        lease_until_ms: u64,
    ) -> Result<Claimed, StoreError>;

    /// How many write transactions the backend runs at once (its writer connections).
    fn writers(&self) -> usize;

    /// Commits attempts' outcomes with their history and feed events in one transaction (a
    /// group commit), each only if its message is still `delivering` under its token. The
    /// answer has one entry per outcome, in order: false means a newer claim took over (the
    /// lease expired) and that stale result was refused. An error commits none of them. The
    /// status callbacks of committed outcomes whose senders asked for them are stored in the
    /// same transaction (the answer's `callbacks`, to index).
    async fn finish_deliveries(&self, outcomes: &[Outcome]) -> Result<Finished, StoreError>;

    /// The webhook endpoints of these users (of these tenants), with their secrets valid at
    /// `now_ms`; users without one are left out. One lookup for a whole claim.
    async fn webhooks(
        &self,
        users: &[(TenantId, UserId)],
        now_ms: u64,
    ) -> Result<HashMap<UserId, Webhook>, StoreError>;

    /// A page of the messages the schedule index must hold, by id: pending ones with their due
    /// time, and leased ones with their lease expiry. With `after`, only ids after it (ids
    /// grow with time, so the messages stored since).
    async fn pending(
        &self,
        after: Option<&MessageId>,
        limit: u32,
    ) -> Result<Vec<(MessageId, u64)>, StoreError>;

    /// Messages per tenant and status, from the counts kept as statuses change (no scan).
    async fn status_counts(&self) -> Result<Vec<StatusCount>, StoreError>;

    /// The queue, per tenant and status, as at `now_ms` (for `dms queue status`): the kept
    /// counts, and due times read from the waiting messages (a scan of their states).
    async fn queue_counts(&self, now_ms: u64) -> Result<Vec<QueueCount>, StoreError>;

    /// Deletes up to `limit` messages that ended (delivered, read, dead, cancelled) before
    /// `before_ms`, with their history; how many went (retention).
    async fn prune_messages(&self, before_ms: u64, limit: u32) -> Result<u64, StoreError>;

    /// Deletes idempotency keys stored before `before_ms`; how many went.
    async fn prune_idempotency_keys(&self, before_ms: u64) -> Result<u64, StoreError>;

    /// Where committed feed events go.
    fn feed_notifier(&self) -> &FeedNotifier;

    /// Up to `limit` events of a user's feed after `after`, oldest first, and the user's
    /// newest cursor as it was just before they were read (events newer than it may follow).
    async fn feed_after(
        &self,
        tenant: &TenantId,
        user: &UserId,
        after: u64,
        limit: u32,
    ) -> Result<FeedPage, StoreError>;

    /// Deletes feed events older than `before_ms` (retention); how many went.
    async fn prune_feed(&self, before_ms: u64) -> Result<u64, StoreError>;

    /// Sets a user's webhook endpoint with one new secret, replacing any previous endpoint.
    async fn set_webhook(
        &self,
        tenant: &TenantId,
        user: &UserId,
        url: &str,
        secret: &str,
        now_ms: u64,
    ) -> Result<(), StoreError>;

    /// Adds a secret to a user's webhook; the others expire at `retire_at_ms`. False when the
    /// user has no webhook.
    async fn add_webhook_secret(
        &self,
        tenant: &TenantId,
        user: &UserId,
        secret: &str,
        now_ms: u64,
        retire_at_ms: u64,
    ) -> Result<bool, StoreError>;

    /// Removes a user's webhook. False when there was none.
    async fn delete_webhook(&self, tenant: &TenantId, user: &UserId) -> Result<bool, StoreError>;

    /// A user's webhook, with its secrets valid at `now_ms`.
    async fn webhook(
        &self,
        tenant: &TenantId,
        user: &UserId,
        now_ms: u64,
    ) -> Result<Option<Webhook>, StoreError>;

    /// Sets a user's status callback endpoint with one new secret, replacing any previous one.
    async fn set_callback(&self, callback: NewCallback<'_>) -> Result<(), StoreError>;

    /// Adds a signing secret to a user's callback endpoint; the current ones sign until
    /// `retire_at_ms`. False when the user has none.
    async fn add_callback_secret(
        &self,
        tenant: &TenantId,
        user: &UserId,
        secret: &str,
        now_ms: u64,
        retire_at_ms: u64,
    ) -> Result<bool, StoreError>;

    /// Removes a user's callback endpoint. False when there was none.
    async fn delete_callback(&self, tenant: &TenantId, user: &UserId) -> Result<bool, StoreError>;

    /// A user's callback endpoint with its secrets valid at `now_ms`.
    async fn callback(
        &self,
        tenant: &TenantId,
        user: &UserId,
        now_ms: u64,
    ) -> Result<Option<Callback>, StoreError>;

    /// Disables a user's webhook (for example after a 410 Gone).
    async fn disable_webhook(
        &self,
        tenant: &TenantId,
        user: &UserId,
        reason: &str,
        now_ms: u64,
    ) -> Result<(), StoreError>;

    /// Stores an uploaded plugin if it fits the tenant's `quota`, unless the tenant has the
    /// same bytes already. Concurrent inserts for one tenant are serialized, so together they
    /// never exceed the quota.
    async fn insert_plugin(
        &self,
        plugin: NewPlugin,
        quota: PluginQuota,
    ) -> Result<PluginInsert, StoreError>;

    /// The tenant's plugins, oldest first.
    async fn plugins(&self, tenant: &TenantId) -> Result<Vec<PluginRecord>, StoreError>;

    /// One of the tenant's plugins.
    async fn plugin(
        &self,
        tenant: &TenantId,
        id: &PluginId,
    ) -> Result<Option<PluginRecord>, StoreError>;

    /// The component bytes of one of the tenant's plugins.
    async fn plugin_component(
        &self,
        tenant: &TenantId,
        id: &PluginId,
    ) -> Result<Option<Vec<u8>>, StoreError>;

    /// Deletes a plugin that no hook uses.
    async fn delete_plugin(
        &self,
        tenant: &TenantId,
        id: &PluginId,
    ) -> Result<PluginDeletion, StoreError>;

    /// Disables a plugin (`Some`, unless it is disabled already) or enables it (`None`). False
    /// when nothing changed.
    async fn set_plugin_disabled(
        &self,
        tenant: &TenantId,
        id: &PluginId,
        disabled: Option<&Disabled>,
    ) -> Result<bool, StoreError>;

    /// The tenant's flow limits, by pattern.
    async fn flow_limits(&self, tenant: &TenantId) -> Result<Vec<FlowLimit>, StoreError>;

    /// Sets the limits of one of the tenant's patterns (created or replaced); returns it as
    /// stored.
    async fn put_flow_limit(
        &self,
        tenant: &TenantId,
        pattern: &str,
        limits: Limits,
        now_ms: u64,
    ) -> Result<FlowLimit, StoreError>;

    /// Removes one of the tenant's patterns; false when it had no such pattern.
    async fn delete_flow_limit(&self, tenant: &TenantId, pattern: &str)
    -> Result<bool, StoreError>;

    /// The flow key, tenant and due time of each of these messages (for the flow limiter,
    /// between the schedule's claim and the database's); unknown ids are left out.
    async fn flow_routes(&self, ids: &[MessageId]) -> Result<Vec<FlowRoute>, StoreError>;

    /// The tenant's hook bindings, by hook and position.
    async fn hook_bindings(&self, tenant: &TenantId) -> Result<Vec<HookBinding>, StoreError>;

    /// Replaces a hook's bindings in one transaction (none: back to the built-in default).
    async fn set_hook(
        &self,
        tenant: &TenantId,
        hook: Hook,
        plugins: &[(PluginId, Binding)],
        now_ms: u64,
    ) -> Result<(), StoreError>;

    /// Stores a new group (no members yet).
    async fn create_group(&self, group: &Group) -> Result<(), StoreError>;

    /// A page of the tenant's groups, oldest first, and how many there are in all.
    async fn groups(&self, tenant: &TenantId, page: Page) -> Result<(Vec<Group>, u64), StoreError>;

    /// One of the tenant's groups.
    async fn group(&self, tenant: &TenantId, id: &GroupId) -> Result<Option<Group>, StoreError>;

    /// Deletes a group and its memberships (its fan-outs and their messages stay). False
    /// when the tenant has no such group.
    async fn delete_group(&self, tenant: &TenantId, id: &GroupId) -> Result<bool, StoreError>;

    /// Adds those of `users` that are live users of the tenant to a group, in one
    /// transaction, unless the group would then have more than `limit` members.
    async fn add_members(
        &self,
        tenant: &TenantId,
        group: &GroupId,
        users: &[UserId],
        limit: u64,
        now_ms: u64,
    ) -> Result<MembersAdded, StoreError>;

    /// Removes a user from a group: `None` when the tenant has no such group, else whether
    /// the user was a member.
    async fn remove_member(
        &self,
        tenant: &TenantId,
        group: &GroupId,
        user: &UserId,
    ) -> Result<Option<bool>, StoreError>;

    /// A page of a group's live members (by id) and how many it has; `None` when the tenant
    /// has no such group.
    async fn members(
        &self,
        tenant: &TenantId,
        group: &GroupId,
        page: Page,
    ) -> Result<Option<(Vec<User>, u64)>, StoreError>;

    /// Every live member of a group, by id; `None` when the tenant has no such group.
    async fn member_ids(
        &self,
        tenant: &TenantId,
        group: &GroupId,
    ) -> Result<Option<Vec<UserId>>, StoreError>;

    /// A fan-out of the tenant, and how many of its messages are in each status.
    async fn fan_out(
        &self,
        tenant: &TenantId,
        id: &FanOutId,
    ) -> Result<Option<FanOutSummary>, StoreError>;

    /// Deletes fan-outs accepted before `before_ms` none of whose messages is left
    /// (retention); how many went.
    async fn prune_fan_outs(&self, before_ms: u64) -> Result<u64, StoreError>;
}

/// What the flow limiter needs of a claimed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowRoute {
    /// The message.
    pub id: MessageId,
    /// Its tenant.
    pub tenant_id: TenantId,
    /// Its flow key (its own, or derived: see `domain::flow::key_of`).
    pub key: String,
    /// When it is due, Unix ms.
    pub due_ms: u64,
}

/// How many of a tenant's messages are in a status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCount {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The status.
    pub status: Status,
    /// How many.
    pub count: u64,
}

/// One tenant's messages in one status.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QueueCount {
    /// The tenant.
    pub tenant_id: TenantId,
    /// Its name.
    pub tenant: String,
    /// The status.
    pub status: Status,
    /// How many messages of the tenant are in it.
    pub count: u64,
    /// Of these, waiting (`scheduled`, `retrying`) and due already: the dispatcher is behind.
    pub overdue: u64,
    /// The due time of the oldest overdue one (Unix ms).
    pub oldest_overdue_ms: Option<u64>,
    /// Of these, waiting and due within the next minute (not yet due).
    pub due_next_minute: u64,
    /// Of these, waiting and due within the next hour (not yet due).
    pub due_next_hour: u64,
    /// Of these, `delivering` under a lease that has not expired.
    pub leases_held: u64,
}

/// A plugin to store.
#[derive(Debug, Clone)]
pub struct NewPlugin {
    /// Its id (ignored when the tenant has these bytes already).
    pub id: PluginId,
    /// Its tenant.
    pub tenant_id: TenantId,
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: Option<String>,
    /// Its world.
    pub world: World,
    /// SHA-256 of the component, hex.
    pub digest: String,
    /// The component.
    pub component: Vec<u8>,
    /// Now.
    pub created_at_ms: u64,
}

/// What storing a plugin did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginInsert {
    /// Stored.
    Inserted(PluginRecord),
    /// The tenant had these bytes already: the plugin stored then.
    Existing(PluginRecord),
    /// It does not fit the tenant's quota; nothing was stored.
    OverQuota(QuotaExceeded),
}

/// What deleting a plugin did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginDeletion {
    /// It is gone.
    Deleted {
        /// Its digest (hex SHA-256).
        digest: String,
        /// Another plugin, of this tenant or another, has the same digest.
        shared: bool,
    },
    /// The tenant has no such plugin.
    NotFound,
    /// It is bound to these hooks; nothing was deleted.
    Bound(Vec<String>),
}

/// Which database to use.
#[derive(Debug, Clone)]
pub enum Location<'a> {
    /// A SQLite file (created if missing).
    Sqlite(&'a Path),
    /// A PostgreSQL URL.
    Postgres(&'a str),
}

/// Connects to the database and applies pending migrations. `keyring` seals and opens
/// message content and webhook secrets.
pub async fn connect(
    location: Location<'_>,
    max_connections: u32,
    keyring: Arc<Keyring>,
) -> Result<Arc<dyn Store>, StoreError> {
    let store: Arc<dyn Store> = match location {
        Location::Sqlite(path) => {
            Arc::new(sqlite::SqliteStore::connect(path, max_connections, keyring).await?)
        }
        Location::Postgres(url) => {
            Arc::new(postgres::PostgresStore::connect(url, max_connections, keyring).await?)
        }
    };
    store.fill_username_keys().await?;
    Ok(store)
}
