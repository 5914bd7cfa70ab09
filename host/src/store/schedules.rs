//! Recurring schedules as stored: `schedules` (the definition, its template's content sealed
//! like message content, and `next_at_ms`, the runner's index) and `schedule_runs` (one row per
//! occurrence created, keyed by schedule and occurrence time).
//!
//! An occurrence is created once across all nodes: its messages are stored in the same
//! transaction as a compare-and-set that moves the schedule from that occurrence to the next
//! ([`OccurrenceClaim`], run by `insert_messages`), and its `schedule_runs` row's key refuses a
//! second message for the same occurrence time.

use std::collections::BTreeMap;

use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Type};

use super::backend::Backend;
use super::crypto::{Keyring, Sealed};
use super::rows::{from_ms, ms};
use super::sql::SqlStore;
use super::{Page, StoreError};
use crate::domain::ids::{FanOutId, GroupId, MessageId, ScheduleId, TenantId, UserId};
use crate::domain::message::Channel;
use crate::domain::schedule::{Missed, Schedule, ScheduleState, Target, Template};

/// A schedule's move from one occurrence to the next, applied only if the schedule is still
/// active at `revision` and waits for `occurrence_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OccurrenceClaim {
    /// Its tenant.
    pub tenant_id: TenantId,
    /// The schedule.
    pub schedule_id: ScheduleId,
    /// The revision it was read at.
    pub revision: u64,
    /// The occurrence it waited for (its `next_at_ms` when read).
    pub expected_next_ms: u64,
    /// The occurrence time the message stands for (the last missed one for `missed: once`).
    pub occurrence_ms: u64,
    /// Its next occurrence after this one (`None`: finished).
    pub next_at_ms: Option<u64>,
    /// When to create that one.
    pub due_at_ms: Option<u64>,
    /// Its runs after this one.
    pub runs: u64,
    /// Why no message was made, when none was.
    pub last_error: Option<String>,
    /// Now.
    pub now_ms: u64,
}

/// The schedule operations of the store.
#[async_trait::async_trait]
pub trait ScheduleStore {
    /// Stores a new schedule.
    async fn insert_schedule(&self, schedule: &Schedule) -> Result<(), StoreError>;

    /// A schedule of the tenant.
    async fn schedule(
        &self,
        tenant: &TenantId,
        id: &ScheduleId,
    ) -> Result<Option<Schedule>, StoreError>;

    /// The tenant's schedules (only `owner`'s when given), oldest first.
    async fn list_schedules(
        &self,
        tenant: &TenantId,
        owner: Option<&UserId>,
        page: Page,
    ) -> Result<Vec<Schedule>, StoreError>;

    /// Replaces a schedule's definition and state if it is still at `revision` (which it bumps);
    /// whether it was.
    async fn update_schedule(&self, schedule: &Schedule, revision: u64)
    -> Result<bool, StoreError>;

    /// Deletes a schedule and its runs' links; whether it existed.
    async fn delete_schedule(&self, tenant: &TenantId, id: &ScheduleId)
    -> Result<bool, StoreError>;

    /// Up to `limit` active schedules whose next occurrence is due to be created at or
    /// before `before_ms`, earliest first.
    async fn due_schedules(&self, before_ms: u64, limit: u32) -> Result<Vec<Schedule>, StoreError>;

    /// The earliest time an active schedule's next occurrence is due to be created.
    async fn earliest_schedule(&self) -> Result<Option<u64>, StoreError>;

    /// Moves a schedule past an occurrence without a message (skipped, or refused); whether
    /// it still waited for it.
    async fn advance_schedule(&self, claim: &OccurrenceClaim) -> Result<bool, StoreError>;

    /// The schedule and occurrence time a message was created for (itself, or the fan-out it
    /// is one of).
    async fn message_occurrence(
        &self,
        tenant: &TenantId,
        message: &MessageId,
        fan_out: Option<&FanOutId>,
    ) -> Result<Option<(ScheduleId, u64)>, StoreError>;

    /// Deletes up to `limit` schedules finished before `before_ms`, and the links of
    /// occurrences before it; how many rows went.
    async fn prune_schedules(&self, before_ms: u64, limit: u32) -> Result<u64, StoreError>;
}

const COLUMNS: &str = "id, tenant_id, owner_id, cron, timezone, recipient_id, channel, \
     content_type, metadata, key_id, nonce, content, starts_at_ms, ends_at_ms, max_runs, missed, \
     state, runs, next_at_ms, due_at_ms, last_run_at_ms, last_error, revision, created_at_ms, \
     updated_at_ms, group_id, flow_key";

const INSERT: &str = "INSERT INTO schedules (id, tenant_id, owner_id, cron, timezone, \
     recipient_id, channel, content_type, metadata, key_id, nonce, content, starts_at_ms, \
     ends_at_ms, max_runs, missed, state, runs, next_at_ms, due_at_ms, last_run_at_ms, \
     last_error, revision, created_at_ms, updated_at_ms, group_id, flow_key) VALUES ($1, $2, \
     $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, \
     $22, $23, $24, $25, $26, $27)";
const UPDATE: &str = "UPDATE schedules SET cron = $4, timezone = $5, recipient_id = $6, \
     channel = $7, content_type = $8, metadata = $9, key_id = $10, nonce = $11, content = $12, \
     starts_at_ms = $13, ends_at_ms = $14, max_runs = $15, missed = $16, state = $17, \
     next_at_ms = $18, last_error = $19, updated_at_ms = $20, due_at_ms = $21, \
     group_id = $22, flow_key = $23, revision = revision + 1 \
     WHERE tenant_id = $1 AND id = $2 AND revision = $3";
const DELETE_RUNS: &str = "DELETE FROM schedule_runs WHERE tenant_id = $1 AND schedule_id = $2";
const DELETE: &str = "DELETE FROM schedules WHERE tenant_id = $1 AND id = $2";
const CLAIM: &str = "UPDATE schedules SET next_at_ms = CAST($5 AS BIGINT), due_at_ms = $10, \
     state = CASE WHEN CAST($5 AS BIGINT) IS NULL THEN 'finished' ELSE state END, runs = $6, \
     last_run_at_ms = COALESCE(CAST($8 AS BIGINT), last_run_at_ms), last_error = $7, \
     revision = revision + 1, updated_at_ms = $9 \
     WHERE tenant_id = $1 AND id = $2 AND revision = $3 AND next_at_ms = $4 AND state = 'active'";
const INSERT_RUN: &str = "INSERT INTO schedule_runs \
     (schedule_id, occurrence_ms, tenant_id, message_id, fan_out_id) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (schedule_id, occurrence_ms) DO NOTHING";
/// The occurrence a message is: its own run, or (sent to a group) its fan-out's.
const RUN_OF: &str = "SELECT schedule_id, occurrence_ms FROM schedule_runs \
     WHERE tenant_id = $1 AND (message_id = $2 OR fan_out_id = $3)";
const EARLIEST: &str = "SELECT MIN(due_at_ms) FROM schedules WHERE due_at_ms IS NOT NULL";
const PRUNE_RUNS: &str = "DELETE FROM schedule_runs WHERE (schedule_id, occurrence_ms) IN \
     (SELECT schedule_id, occurrence_ms FROM schedule_runs WHERE occurrence_ms < $1 LIMIT $2)";
const PRUNE_FINISHED: &str = "DELETE FROM schedules WHERE id IN (SELECT id FROM schedules \
     WHERE state = 'finished' AND updated_at_ms < $1 LIMIT $2)";
/// A deleted user's schedules: those they own and those addressed to them.
const USER_RUNS: &str = "DELETE FROM schedule_runs WHERE schedule_id IN (SELECT id FROM schedules \
     WHERE tenant_id = $1 AND (owner_id = $2 OR recipient_id = $2))";
const USER_SCHEDULES: &str =
    "DELETE FROM schedules WHERE tenant_id = $1 AND (owner_id = $2 OR recipient_id = $2)";

#[derive(sqlx::FromRow)]
struct ScheduleRow {
    id: ScheduleId,
    tenant_id: TenantId,
    owner_id: UserId,
    cron: String,
    timezone: String,
    recipient_id: Option<UserId>,
    group_id: Option<GroupId>,
    flow_key: Option<String>,
    channel: String,
    content_type: String,
    metadata: String,
    key_id: String,
    nonce: Vec<u8>,
    content: Vec<u8>,
    starts_at_ms: Option<i64>,
    ends_at_ms: Option<i64>,
    max_runs: Option<i64>,
    missed: String,
    state: String,
    runs: i64,
    next_at_ms: Option<i64>,
    due_at_ms: Option<i64>,
    last_run_at_ms: Option<i64>,
    last_error: Option<String>,
    revision: i64,
    created_at_ms: i64,
    updated_at_ms: i64,
}

/// The recipient column of a template (set when it is for one user).
fn recipient_of(template: &Template) -> Option<&str> {
    match &template.target {
        Target::Recipient(user) => Some(user.as_str()),
        Target::Group(_) => None,
    }
}

/// The group column of a template (set when it is for a group).
fn group_of(template: &Template) -> Option<&str> {
    match &template.target {
        Target::Recipient(_) => None,
        Target::Group(group) => Some(group.as_str()),
    }
}

fn corrupt(what: String) -> StoreError {
    StoreError::Database(sqlx::Error::Decode(what.into()))
}

impl ScheduleRow {
    fn open(self, keyring: &Keyring) -> Result<Schedule, StoreError> {
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
        let metadata: BTreeMap<String, String> = serde_json::from_str(&self.metadata)
            .map_err(|error| corrupt(format!("schedule metadata: {error}")))?;
        let channel: Channel = self.channel.parse().map_err(corrupt)?;
        let target = match (self.recipient_id, self.group_id) {
            (Some(user), None) => Target::Recipient(user),
            (None, Some(group)) => Target::Group(group),
            _ => {
                return Err(corrupt(format!(
                    "schedule {} has both or neither of a recipient and a group",
                    self.id
                )));
            }
        };
        Ok(Schedule {
            id: self.id,
            tenant_id: self.tenant_id,
            owner_id: self.owner_id,
            cron: self.cron,
            timezone: self.timezone,
            template: Template {
                target,
                flow_key: self.flow_key,
                channel,
                content,
                content_type: self.content_type,
                metadata,
            },
            starts_at_ms: self.starts_at_ms.map(from_ms),
            ends_at_ms: self.ends_at_ms.map(from_ms),
            max_runs: self.max_runs.map(from_ms),
            missed: self.missed.parse::<Missed>().map_err(corrupt)?,
            state: self.state.parse::<ScheduleState>().map_err(corrupt)?,
            runs: from_ms(self.runs),
            next_at_ms: self.next_at_ms.map(from_ms),
            due_at_ms: self.due_at_ms.map(from_ms),
            last_run_at_ms: self.last_run_at_ms.map(from_ms),
            last_error: self.last_error,
            revision: from_ms(self.revision),
            created_at_ms: from_ms(self.created_at_ms),
            updated_at_ms: from_ms(self.updated_at_ms),
        })
    }
}

/// Applies `claim` inside the caller's transaction: whether the schedule still waited for its
/// occurrence (and now waits for the next). With `message`, links it to the occurrence; a link
/// already there (the occurrence was created before) also answers `false`.
pub(super) async fn claim_occurrence<B>(
    conn: &mut B::Connection,
    claim: &OccurrenceClaim,
    message: Option<(&MessageId, Option<&FanOutId>)>,
) -> Result<bool, StoreError>
where
    B: Backend,
    for<'c> &'c mut B::Connection: Executor<'c, Database = B>,
    B::Arguments: IntoArguments<B>,
    for<'q> &'q str: Encode<'q, B> + Type<B>,
    for<'q> Option<&'q str>: Encode<'q, B> + Type<B>,
    for<'q> Option<i64>: Encode<'q, B> + Type<B>,
    for<'q> i64: Encode<'q, B> + Type<B>,
{
    let moved = sqlx::query::<B>(CLAIM)
        .bind(claim.tenant_id.as_str())
        .bind(claim.schedule_id.as_str())
        .bind(ms(claim.revision))
        .bind(ms(claim.expected_next_ms))
        .bind(claim.next_at_ms.map(ms))
        .bind(ms(claim.runs))
        .bind(claim.last_error.as_deref())
        .bind(message.map(|_| ms(claim.occurrence_ms)))
        .bind(ms(claim.now_ms))
        .bind(claim.due_at_ms.map(ms))
        .execute(&mut *conn)
        .await?;
    if B::rows_affected(&moved) != 1 {
        return Ok(false);
    }
    let Some((message, fan_out)) = message else {
        return Ok(true);
    };
    let linked = sqlx::query::<B>(INSERT_RUN)
        .bind(claim.schedule_id.as_str())
        .bind(ms(claim.occurrence_ms))
        .bind(claim.tenant_id.as_str())
        .bind(message.as_str())
        .bind(fan_out.map(FanOutId::as_str))
        .execute(&mut *conn)
        .await?;
    Ok(B::rows_affected(&linked) == 1)
}

/// Deletes the schedules a deleted user owns or receives, inside the caller's transaction.
pub(super) async fn delete_user_schedules<B>(
    conn: &mut B::Connection,
    tenant: &TenantId,
    user: &UserId,
) -> Result<(), StoreError>
where
    B: Backend,
    for<'c> &'c mut B::Connection: Executor<'c, Database = B>,
    B::Arguments: IntoArguments<B>,
    for<'q> &'q str: Encode<'q, B> + Type<B>,
{
    for statement in [USER_RUNS, USER_SCHEDULES] {
        sqlx::query::<B>(statement)
            .bind(tenant.as_str())
            .bind(user.as_str())
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// The row values of a schedule's definition, its content sealed.
struct Sealing {
    metadata: String,
    sealed: Sealed,
}

fn seal(keyring: &Keyring, schedule: &Schedule) -> Sealing {
    Sealing {
        metadata: serde_json::to_string(&schedule.template.metadata).expect("metadata is JSON"),
        sealed: keyring.seal(
            schedule.tenant_id.as_str(),
            schedule.id.as_str(),
            &schedule.template.content,
        ),
    }
}

#[async_trait::async_trait]
impl<B> ScheduleStore for SqlStore<B>
where
    B: Backend,
    for<'c> &'c mut B::Connection: Executor<'c, Database = B>,
    B::Arguments: IntoArguments<B>,
    for<'q> &'q str: Encode<'q, B> + Type<B>,
    for<'q> Option<&'q str>: Encode<'q, B> + Type<B>,
    for<'q> Option<i64>: Encode<'q, B> + Decode<'q, B> + Type<B>,
    for<'q> &'q [u8]: Encode<'q, B> + Type<B>,
    for<'q> String: Encode<'q, B> + Decode<'q, B> + Type<B>,
    for<'q> i64: Encode<'q, B> + Decode<'q, B> + Type<B>,
    for<'q> Vec<u8>: Encode<'q, B> + Decode<'q, B> + Type<B>,
    for<'r> &'r str: ColumnIndex<B::Row>,
    usize: ColumnIndex<B::Row>,
{
    async fn insert_schedule(&self, schedule: &Schedule) -> Result<(), StoreError> {
        let sealing = seal(&self.keyring, schedule);
        sqlx::query::<B>(INSERT)
            .bind(schedule.id.as_str())
            .bind(schedule.tenant_id.as_str())
            .bind(schedule.owner_id.as_str())
            .bind(schedule.cron.as_str())
            .bind(schedule.timezone.as_str())
            .bind(recipient_of(&schedule.template))
            .bind(schedule.template.channel.as_str())
            .bind(schedule.template.content_type.as_str())
            .bind(sealing.metadata.as_str())
            .bind(sealing.sealed.key_id.as_str())
            .bind(sealing.sealed.nonce.as_slice())
            .bind(sealing.sealed.ciphertext.as_slice())
            .bind(schedule.starts_at_ms.map(ms))
            .bind(schedule.ends_at_ms.map(ms))
            .bind(schedule.max_runs.map(ms))
            .bind(schedule.missed.as_str())
            .bind(schedule.state.as_str())
            .bind(ms(schedule.runs))
            .bind(schedule.next_at_ms.map(ms))
            .bind(schedule.due_at_ms.map(ms))
            .bind(schedule.last_run_at_ms.map(ms))
            .bind(schedule.last_error.as_deref())
            .bind(ms(schedule.revision))
            .bind(ms(schedule.created_at_ms))
            .bind(ms(schedule.updated_at_ms))
            .bind(group_of(&schedule.template))
            .bind(schedule.template.flow_key.as_deref())
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn schedule(
        &self,
        tenant: &TenantId,
        id: &ScheduleId,
    ) -> Result<Option<Schedule>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM schedules WHERE tenant_id = $1 AND id = $2");
        let row = sqlx::query_as::<B, ScheduleRow>(sqlx::AssertSqlSafe(sql))
            .bind(tenant.as_str())
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| row.open(&self.keyring)).transpose()
    }

    async fn list_schedules(
        &self,
        tenant: &TenantId,
        owner: Option<&UserId>,
        page: Page,
    ) -> Result<Vec<Schedule>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM schedules WHERE tenant_id = $1 \
             AND (CAST($2 AS TEXT) IS NULL OR owner_id = $2) ORDER BY id LIMIT $3 OFFSET $4"
        );
        let rows = sqlx::query_as::<B, ScheduleRow>(sqlx::AssertSqlSafe(sql))
            .bind(tenant.as_str())
            .bind(owner.map(UserId::as_str))
            .bind(i64::from(page.limit))
            .bind(ms(page.offset))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|row| row.open(&self.keyring))
            .collect()
    }

    async fn update_schedule(
        &self,
        schedule: &Schedule,
        revision: u64,
    ) -> Result<bool, StoreError> {
        let sealing = seal(&self.keyring, schedule);
        let result = sqlx::query::<B>(UPDATE)
            .bind(schedule.tenant_id.as_str())
            .bind(schedule.id.as_str())
            .bind(ms(revision))
            .bind(schedule.cron.as_str())
            .bind(schedule.timezone.as_str())
            .bind(recipient_of(&schedule.template))
            .bind(schedule.template.channel.as_str())
            .bind(schedule.template.content_type.as_str())
            .bind(sealing.metadata.as_str())
            .bind(sealing.sealed.key_id.as_str())
            .bind(sealing.sealed.nonce.as_slice())
            .bind(sealing.sealed.ciphertext.as_slice())
            .bind(schedule.starts_at_ms.map(ms))
            .bind(schedule.ends_at_ms.map(ms))
            .bind(schedule.max_runs.map(ms))
            .bind(schedule.missed.as_str())
            .bind(schedule.state.as_str())
            .bind(schedule.next_at_ms.map(ms))
            .bind(schedule.last_error.as_deref())
            .bind(ms(schedule.updated_at_ms))
            .bind(schedule.due_at_ms.map(ms))
            .bind(group_of(&schedule.template))
            .bind(schedule.template.flow_key.as_deref())
            .execute(&self.writer)
            .await?;
        Ok(B::rows_affected(&result) == 1)
    }

    async fn delete_schedule(
        &self,
        tenant: &TenantId,
        id: &ScheduleId,
    ) -> Result<bool, StoreError> {
        let mut tx = B::begin_write(&self.writer).await?;
        sqlx::query::<B>(DELETE_RUNS)
            .bind(tenant.as_str())
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        let result = sqlx::query::<B>(DELETE)
            .bind(tenant.as_str())
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(B::rows_affected(&result) == 1)
    }

    async fn due_schedules(&self, before_ms: u64, limit: u32) -> Result<Vec<Schedule>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM schedules WHERE due_at_ms IS NOT NULL AND due_at_ms <= $1 \
             ORDER BY due_at_ms LIMIT $2"
        );
        let rows = sqlx::query_as::<B, ScheduleRow>(sqlx::AssertSqlSafe(sql))
            .bind(ms(before_ms))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|row| row.open(&self.keyring))
            .collect()
    }

    async fn earliest_schedule(&self) -> Result<Option<u64>, StoreError> {
        let earliest: Option<i64> = sqlx::query_scalar::<B, Option<i64>>(EARLIEST)
            .fetch_one(&self.pool)
            .await?;
        Ok(earliest.map(from_ms))
    }

    async fn advance_schedule(&self, claim: &OccurrenceClaim) -> Result<bool, StoreError> {
        let mut tx = B::begin_write(&self.writer).await?;
        let moved = claim_occurrence::<B>(&mut tx, claim, None).await?;
        tx.commit().await?;
        Ok(moved)
    }

    async fn message_occurrence(
        &self,
        tenant: &TenantId,
        message: &MessageId,
        fan_out: Option<&FanOutId>,
    ) -> Result<Option<(ScheduleId, u64)>, StoreError> {
        let row: Option<(ScheduleId, i64)> = sqlx::query_as::<B, (ScheduleId, i64)>(RUN_OF)
            .bind(tenant.as_str())
            .bind(message.as_str())
            .bind(fan_out.map(FanOutId::as_str))
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|(id, at)| (id, from_ms(at))))
    }

    async fn prune_schedules(&self, before_ms: u64, limit: u32) -> Result<u64, StoreError> {
        let mut pruned = 0;
        for statement in [PRUNE_RUNS, PRUNE_FINISHED] {
            let result = sqlx::query::<B>(statement)
                .bind(ms(before_ms))
                .bind(i64::from(limit))
                .execute(&self.writer)
                .await?;
            pruned += B::rows_affected(&result);
        }
        Ok(pruned)
    }
}
