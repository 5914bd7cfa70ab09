//! Recurring schedules: create, list, read, change, pause, resume, delete, the next
//! occurrences; and the runner that turns each occurrence into an ordinary message.
//!
//! A member sees and manages the schedules they created; an admin those of the whole tenant.
//! Anything else is "not found", like an id that does not exist.
//!
//! **The runner** ([`Schedules::run`], background work on every node) wakes when the earliest
//! active schedule's next occurrence is due to be created (its `due_at_ms`, indexed: it never
//! scans all schedules), or when a schedule is created, changed or resumed on this node, and at
//! least every [`MAX_IDLE`]. Each occurrence is created ahead of its time (a minute, or one
//! period of a pattern that recurs sooner, [`Recurrence::due_at`]) through the normal submit
//! ([`submit::submit_occurrence`]: the recipient is checked, validators and delay policy run),
//! with `deliver_at` the occurrence, so it is as punctual as any message. Its message is stored
//! in the same transaction as the schedule's move to the next occurrence, only if the schedule
//! still waited for it: once across all nodes.
//!
//! **Missed occurrences** are those more than [`MISSED_AFTER_MS`] past when the runner reaches
//! them (no node ran). `skip`: the schedule moves on to its next occurrence still to come.
//! `once`: one message, due now, stands for all of them (its occurrence time is the last
//! missed one), and the schedule moves on.
//!
//! An occurrence the tenant's policies refuse (or whose recipient is gone) makes no message;
//! the schedule records why (`last_error`) and moves on.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::messages::fan_out;
use super::messages::submit::{self, Submission};
use super::messages::view::{MessageView, OccurrenceView};
use super::messages::{self, Messages};
use crate::clock::{Clock, parse_rfc3339, rfc3339};
use crate::domain::ids::{GroupId, ScheduleId, UserId};
use crate::domain::message::Channel;
use crate::domain::schedule::{
    Missed, Recurrence, RecurrenceError, Schedule, ScheduleState, Target, Template,
};
use crate::domain::user::{Role, User};
use crate::store::{OccurrenceClaim, Page, Store, StoreError};

/// Why a schedule operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such schedule visible to the caller.
    #[error("there is no such schedule in your tenant")]
    NotFound,
    /// A field of the request is unusable.
    #[error("{field}: {reason}")]
    Invalid {
        /// A JSON pointer to the field.
        field: std::borrow::Cow<'static, str>,
        /// What is wrong.
        reason: String,
    },
    /// The schedule is not in a state that allows this.
    #[error("{0}")]
    Conflict(String),
    /// The message template was refused as a message would be.
    #[error(transparent)]
    Message(messages::Error),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The most times `GET /schedules/{id}/next` computes.
pub const MAX_NEXT: u32 = 100;
/// An occurrence more than this late when the runner reaches it was missed (no node ran).
pub const MISSED_AFTER_MS: u64 = 5_000;
/// The longest the runner sleeps: it notices schedules created on other nodes within this.
pub const MAX_IDLE: Duration = Duration::from_secs(1);
/// The shortest the runner sleeps between passes.
const MIN_IDLE: Duration = Duration::from_millis(100);
/// Schedules read per runner query.
const BATCH: u32 = 100;
/// Attempts at a change that races with the runner.
const ATTEMPTS: usize = 5;

/// The message a schedule sends at each occurrence.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageTemplate {
    /// The recipient, a user of the tenant (or give `group_id`).
    #[serde(default)]
    #[schema(value_type = Option<UserId>)]
    pub recipient_id: Option<String>,
    /// A group of the tenant: each occurrence sends one message to each of its members then
    /// (a fan-out), in place of `recipient_id`.
    #[serde(default)]
    #[schema(value_type = Option<GroupId>)]
    pub group_id: Option<String>,
    /// The content (text).
    pub content: String,
    /// `inbox` (default) or `webhook`.
    #[serde(default)]
    #[schema(value_type = Option<Channel>)]
    pub channel: Option<String>,
    /// Its media type (default `text/plain`).
    #[serde(default)]
    pub content_type: Option<String>,
    /// Free-form string pairs, at most 16 KiB.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// The flow-control key of its messages (1 to 128 bytes, no `*`).
    #[serde(default)]
    pub flow_key: Option<String>,
}

/// `POST /schedules`.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSchedule {
    /// A cron pattern: 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds
    /// first.
    #[schema(example = "0 9 * * MON-FRI")]
    pub cron: String,
    /// The IANA time zone the pattern is read in.
    #[schema(example = "Europe/Berlin")]
    pub timezone: String,
    /// The message each occurrence sends.
    pub message: MessageTemplate,
    /// No occurrence before this time (RFC 3339).
    #[serde(default)]
    #[schema(format = DateTime)]
    pub starts_at: Option<String>,
    /// No occurrence after this time (RFC 3339).
    #[serde(default)]
    #[schema(format = DateTime)]
    pub ends_at: Option<String>,
    /// At most this many messages (at least 1).
    #[serde(default)]
    #[schema(minimum = 1)]
    pub max_runs: Option<u64>,
    /// What happens to occurrences missed while no node ran (default `skip`).
    #[serde(default)]
    pub missed: Option<Missed>,
}

/// `PATCH /schedules/{id}`: the fields given replace the schedule's; `null` clears
/// `starts_at`, `ends_at` and `max_runs`.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleChange {
    /// A new cron pattern.
    #[serde(default)]
    pub cron: Option<String>,
    /// A new time zone.
    #[serde(default)]
    pub timezone: Option<String>,
    /// A new message (the whole template).
    #[serde(default)]
    pub message: Option<MessageTemplate>,
    /// A new start (`null`: none).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub starts_at: Option<Option<String>>,
    /// A new end (`null`: none).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ends_at: Option<Option<String>>,
    /// A new limit (`null`: none).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u64>, minimum = 1)]
    pub max_runs: Option<Option<u64>>,
    /// What happens to missed occurrences.
    #[serde(default)]
    pub missed: Option<Missed>,
}

/// A field that is present, `null` or not: `Some(None)` for `null`.
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(deserializer).map(Some)
}

/// The message template as the API shows it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct TemplateView {
    /// Its recipient (absent when it is for a group).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    recipient_id: Option<UserId>,
    /// Its group (absent when it is for one recipient).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    group_id: Option<GroupId>,
    /// Its flow-control key (absent when it names none).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    flow_key: Option<String>,
    content: String,
    channel: Channel,
    content_type: String,
    metadata: BTreeMap<String, String>,
}

/// A schedule as the API shows it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ScheduleView {
    id: ScheduleId,
    /// Who created it: the sender of its messages.
    owner_id: UserId,
    cron: String,
    timezone: String,
    message: TemplateView,
    #[schema(format = DateTime)]
    starts_at: Option<String>,
    #[schema(format = DateTime)]
    ends_at: Option<String>,
    max_runs: Option<u64>,
    missed: Missed,
    /// `active`, `paused`, or `finished` (`max_runs` reached, past `ends_at`, or no occurrence
    /// left).
    state: ScheduleState,
    /// Messages created so far.
    runs: u64,
    /// The next occurrence not created yet (absent unless active).
    #[schema(format = DateTime)]
    next_at: Option<String>,
    /// The occurrence time of the last message created.
    #[schema(format = DateTime)]
    last_run_at: Option<String>,
    /// Why the last occurrence made no message, when it did not.
    last_error: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

impl ScheduleView {
    /// Its id.
    pub fn id(&self) -> &ScheduleId {
        &self.id
    }
}

impl From<&Schedule> for ScheduleView {
    fn from(schedule: &Schedule) -> Self {
        let template = &schedule.template;
        Self {
            id: schedule.id.clone(),
            owner_id: schedule.owner_id.clone(),
            cron: schedule.cron.clone(),
            timezone: schedule.timezone.clone(),
            message: TemplateView {
                recipient_id: match &template.target {
                    Target::Recipient(user) => Some(user.clone()),
                    Target::Group(_) => None,
                },
                group_id: match &template.target {
                    Target::Recipient(_) => None,
                    Target::Group(group) => Some(group.clone()),
                },
                flow_key: template.flow_key.clone(),
                content: String::from_utf8_lossy(&template.content).into_owned(),
                channel: template.channel,
                content_type: template.content_type.clone(),
                metadata: template.metadata.clone(),
            },
            starts_at: schedule.starts_at_ms.map(rfc3339),
            ends_at: schedule.ends_at_ms.map(rfc3339),
            max_runs: schedule.max_runs,
            missed: schedule.missed,
            state: schedule.state,
            runs: schedule.runs,
            next_at: schedule.next_at_ms.map(rfc3339),
            last_run_at: schedule.last_run_at_ms.map(rfc3339),
            last_error: schedule.last_error.clone(),
            created_at: rfc3339(schedule.created_at_ms),
            updated_at: rfc3339(schedule.updated_at_ms),
        }
    }
}

/// What the schedule use cases work with. Cheap to clone.
#[derive(Clone)]
pub struct Schedules {
    store: Arc<dyn Store>,
    messages: Messages,
    clock: Clock,
    wake: Arc<Notify>,
}

fn invalid(field: &'static str, reason: String) -> Error {
    Error::Invalid {
        field: field.into(),
        reason,
    }
}

fn recurrence(cron: &str, zone: &str) -> Result<Recurrence, Error> {
    Recurrence::parse(cron, zone).map_err(|error| match error {
        RecurrenceError::Cron(reason) => invalid("/cron", reason),
        RecurrenceError::Zone(reason) => invalid("/timezone", reason),
    })
}

fn time(field: &'static str, text: &str) -> Result<u64, Error> {
    parse_rfc3339(text).ok_or_else(|| {
        invalid(
            field,
            format!(
                "{text:?} is not an RFC 3339 time from 1970 to 9999 such as 2030-01-02T03:04:05Z"
            ),
        )
    })
}

fn optional_time(field: &'static str, text: Option<&str>) -> Result<Option<u64>, Error> {
    text.map(|text| time(field, text)).transpose()
}

fn check_max_runs(max_runs: Option<u64>) -> Result<(), Error> {
    if max_runs == Some(0) {
        return Err(invalid("/max_runs", "max_runs must be at least 1".into()));
    }
    Ok(())
}

fn check_bounds(schedule: &Schedule) -> Result<(), Error> {
    if let (Some(start), Some(end)) = (schedule.starts_at_ms, schedule.ends_at_ms)
        && end < start
    {
        return Err(invalid(
            "/ends_at",
            format!(
                "ends_at ({}) is before starts_at ({})",
                rfc3339(end),
                rfc3339(start)
            ),
        ));
    }
    Ok(())
}

impl Schedules {
    /// The schedule use cases over these parts.
    pub fn new(store: Arc<dyn Store>, messages: Messages, clock: Clock) -> Self {
        Self {
            store,
            messages,
            clock,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Checks a template as a submission would be checked (its fields, and that its recipient
    /// or group exists), and returns it; errors name the field under `/message`.
    async fn template(&self, owner: &User, template: MessageTemplate) -> Result<Template, Error> {
        let target = match (template.recipient_id, template.group_id) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "/message/group_id",
                    "give recipient_id or group_id, not both".to_owned(),
                ));
            }
            (None, None) => {
                return Err(invalid(
                    "/message/recipient_id",
                    "give the recipient (recipient_id) or a group (group_id)".to_owned(),
                ));
            }
            (Some(recipient), None) => Err(recipient),
            (None, Some(group)) => Ok(group),
        };
        let no_group = || Error::Message(messages::Error::Missing("group"));
        let (recipient_id, group) = match target {
            Err(recipient) => (recipient, None),
            Ok(group) => {
                let group: GroupId = group.parse().map_err(|_| no_group())?;
                self.store
                    .group(&owner.tenant_id, &group)
                    .await?
                    .ok_or_else(no_group)?;
                // The fields are checked as a message to the owner (who exists); each
                // occurrence goes to the group's members then.
                (owner.id.to_string(), Some(group))
            }
        };
        let submission = Submission {
            recipient_id: Some(recipient_id),
            group_id: None,
            content: template.content,
            content_type: template.content_type,
            delay_seconds: None,
            deliver_at: None,
            channel: template.channel,
            metadata: template.metadata,
            flow_key: template.flow_key,
        };
        let now = self.clock.now_ms();
        let message = submit::draft(&self.messages, owner, submission, now)
            .await
            .map_err(|error| match error {
                messages::Error::Invalid { field, reason } => Error::Invalid {
                    field: format!("/message{field}").into(),
                    reason,
                },
                messages::Error::Store(error) => Error::Store(error),
                other => Error::Message(other),
            })?;
        Ok(Template {
            target: match group {
                Some(group) => Target::Group(group),
                None => Target::Recipient(message.recipient_id),
            },
            flow_key: message.flow_key,
            channel: message.channel,
            content: message.content,
            content_type: message.content_type,
            metadata: message.metadata,
        })
    }

    /// Creates a schedule owned by `owner`.
    pub async fn create(&self, owner: &User, new: NewSchedule) -> Result<ScheduleView, Error> {
        let recurrence = recurrence(&new.cron, &new.timezone)?;
        let starts_at_ms = optional_time("/starts_at", new.starts_at.as_deref())?;
        let ends_at_ms = optional_time("/ends_at", new.ends_at.as_deref())?;
        check_max_runs(new.max_runs)?;
        let template = self.template(owner, new.message).await?;
        let now = self.clock.now_ms();
        let mut schedule = Schedule {
            id: ScheduleId::new(),
            tenant_id: owner.tenant_id.clone(),
            owner_id: owner.id.clone(),
            cron: new.cron.trim().to_owned(),
            timezone: new.timezone,
            template,
            starts_at_ms,
            ends_at_ms,
            max_runs: new.max_runs,
            missed: new.missed.unwrap_or(Missed::Skip),
            state: ScheduleState::Active,
            runs: 0,
            next_at_ms: None,
            due_at_ms: None,
            last_run_at_ms: None,
            last_error: None,
            revision: 0,
            created_at_ms: now,
            updated_at_ms: now,
        };
        check_bounds(&schedule)?;
        plan(&mut schedule, &recurrence, now);
        if schedule.state == ScheduleState::Finished {
            return Err(never_runs(&schedule));
        }
        self.store.insert_schedule(&schedule).await?;
        self.wake.notify_one();
        Ok(ScheduleView::from(&schedule))
    }

    /// A schedule `caller` may see.
    async fn visible(&self, caller: &User, id: &ScheduleId) -> Result<Schedule, Error> {
        self.store
            .schedule(&caller.tenant_id, id)
            .await?
            .filter(|schedule| caller.role == Role::Admin || schedule.owner_id == caller.id)
            .ok_or(Error::NotFound)
    }

    /// A schedule.
    pub async fn get(&self, caller: &User, id: &ScheduleId) -> Result<ScheduleView, Error> {
        Ok(ScheduleView::from(&self.visible(caller, id).await?))
    }

    /// The caller's schedules (an admin's: the tenant's), oldest first.
    pub async fn list(&self, caller: &User, page: Page) -> Result<Vec<ScheduleView>, Error> {
        let owner = (caller.role != Role::Admin).then_some(&caller.id);
        let schedules = self
            .store
            .list_schedules(&caller.tenant_id, owner, page)
            .await?;
        Ok(schedules.iter().map(ScheduleView::from).collect())
    }

    /// Deletes a schedule. Messages it created already stay (they can be cancelled).
    pub async fn delete(&self, caller: &User, id: &ScheduleId) -> Result<(), Error> {
        let schedule = self.visible(caller, id).await?;
        if !self
            .store
            .delete_schedule(&schedule.tenant_id, &schedule.id)
            .await?
        {
            return Err(Error::NotFound);
        }
        Ok(())
    }

    /// Applies `change` to the schedule as it is now, again if the runner moved it meanwhile.
    async fn modify(
        &self,
        caller: &User,
        id: &ScheduleId,
        change: impl Fn(&mut Schedule) -> Result<(), Error>,
    ) -> Result<ScheduleView, Error> {
        for _ in 0..ATTEMPTS {
            let mut schedule = self.visible(caller, id).await?;
            let revision = schedule.revision;
            change(&mut schedule)?;
            let recurrence = recurrence(&schedule.cron, &schedule.timezone)?;
            let now = self.clock.now_ms();
            schedule.updated_at_ms = now;
            if schedule.state != ScheduleState::Paused {
                plan(&mut schedule, &recurrence, now);
            }
            if self.store.update_schedule(&schedule, revision).await? {
                schedule.revision = revision + 1;
                self.wake.notify_one();
                return Ok(ScheduleView::from(&schedule));
            }
        }
        Err(Error::Conflict(
            "the schedule kept changing meanwhile; try again".into(),
        ))
    }

    /// Changes a schedule. Its next occurrence is computed again (after the last one created).
    pub async fn update(
        &self,
        caller: &User,
        id: &ScheduleId,
        change: ScheduleChange,
    ) -> Result<ScheduleView, Error> {
        if let (Some(cron), Some(zone)) = (&change.cron, &change.timezone) {
            recurrence(cron, zone)?;
        }
        let starts_at_ms = change
            .starts_at
            .as_ref()
            .map(|text| optional_time("/starts_at", text.as_deref()))
            .transpose()?;
        let ends_at_ms = change
            .ends_at
            .as_ref()
            .map(|text| optional_time("/ends_at", text.as_deref()))
            .transpose()?;
        if let Some(max_runs) = change.max_runs {
            check_max_runs(max_runs)?;
        }
        let template = match change.message.clone() {
            Some(template) => Some(self.template(caller, template).await?),
            None => None,
        };
        self.modify(caller, id, |schedule| {
            if let Some(cron) = &change.cron {
                schedule.cron = cron.trim().to_owned();
            }
            if let Some(zone) = &change.timezone {
                schedule.timezone = zone.clone();
            }
            // Checked here too: one of the pair may be the stored one.
            recurrence(&schedule.cron, &schedule.timezone)?;
            if let Some(template) = &template {
                schedule.template = template.clone();
            }
            if let Some(starts_at) = starts_at_ms {
                schedule.starts_at_ms = starts_at;
            }
            if let Some(ends_at) = ends_at_ms {
                schedule.ends_at_ms = ends_at;
            }
            if let Some(max_runs) = change.max_runs {
                schedule.max_runs = max_runs;
            }
            if let Some(missed) = change.missed {
                schedule.missed = missed;
            }
            check_bounds(schedule)?;
            if schedule.state == ScheduleState::Finished {
                schedule.state = ScheduleState::Active;
            }
            Ok(())
        })
        .await
    }

    /// Pauses a schedule: no occurrence is created until it is resumed.
    pub async fn pause(&self, caller: &User, id: &ScheduleId) -> Result<ScheduleView, Error> {
        self.modify(caller, id, |schedule| {
            if schedule.state == ScheduleState::Finished {
                return Err(Error::Conflict(
                    "the schedule is finished; change it (PATCH) to give it occurrences again"
                        .into(),
                ));
            }
            schedule.state = ScheduleState::Paused;
            schedule.next_at_ms = None;
            schedule.due_at_ms = None;
            Ok(())
        })
        .await
    }

    /// Resumes a paused schedule from its next occurrence still to come (occurrences while it
    /// was paused are not sent).
    pub async fn resume(&self, caller: &User, id: &ScheduleId) -> Result<ScheduleView, Error> {
        self.modify(caller, id, |schedule| {
            if schedule.state == ScheduleState::Paused {
                schedule.state = ScheduleState::Active;
            }
            Ok(())
        })
        .await
    }

    /// The next `count` occurrences still to be created (of an active schedule from its next
    /// one; of a paused one as if resumed now), computed: nothing is created.
    pub async fn next(
        &self,
        caller: &User,
        id: &ScheduleId,
        count: u32,
    ) -> Result<Vec<String>, Error> {
        let schedule = self.visible(caller, id).await?;
        let recurrence = recurrence(&schedule.cron, &schedule.timezone)?;
        let left = schedule
            .max_runs
            .map_or(u64::MAX, |max| max.saturating_sub(schedule.runs));
        let wanted = u64::from(count).min(left);
        let mut times = Vec::new();
        let mut next = match schedule.state {
            ScheduleState::Finished => None,
            ScheduleState::Active => schedule.next_at_ms,
            ScheduleState::Paused => schedule.next_allowed(
                &recurrence,
                self.clock
                    .now_ms()
                    .max(schedule.last_run_at_ms.unwrap_or(0)),
            ),
        };
        while let Some(at) = next
            && (times.len() as u64) < wanted
        {
            times.push(rfc3339(at));
            next = schedule.next_allowed(&recurrence, at);
        }
        Ok(times)
    }

    /// Runs the schedules' occurrences until `stop` resolves (background work on every node).
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            let now = self.clock.now_ms();
            if let Err(error) = self.pass(now).await {
                tracing::warn!(message = "Could not create schedule occurrences; retrying.", %error);
            }
            let wait = match self.store.earliest_schedule().await {
                Ok(Some(due)) => Duration::from_millis(due.saturating_sub(self.clock.now_ms())),
                Ok(None) => MAX_IDLE,
                Err(error) => {
                    tracing::warn!(message = "Could not read the next schedule; retrying.", %error);
                    MAX_IDLE
                }
            }
            // Not less than a floor: a schedule whose occurrence keeps failing (the database
            // refused it) stays due, and is retried at this pace rather than in a busy loop.
            .clamp(MIN_IDLE, MAX_IDLE);
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(wait) => {}
                () = self.wake.notified() => {}
            }
        }
    }

    /// Creates every occurrence due to be created at `now`.
    pub async fn pass(&self, now: u64) -> Result<(), Error> {
        loop {
            let due = self.store.due_schedules(now, BATCH).await?;
            let mut moved = 0;
            for schedule in &due {
                match self.occurrence(schedule, now).await {
                    Ok(()) => moved += 1,
                    Err(error) => tracing::warn!(
                        message = "Could not create a schedule occurrence; retrying later.",
                        schedule_id = %schedule.id,
                        %error,
                    ),
                }
            }
            // Again while something moved: a schedule moved on may be due again (a missed
            // stretch skipped to an occurrence due now, a pattern that recurs within the lead).
            if due.is_empty() || moved == 0 {
                return Ok(());
            }
        }
    }

    /// Creates the next occurrence of `schedule` (or skips it), moving it on.
    async fn occurrence(&self, schedule: &Schedule, now: u64) -> Result<(), Error> {
        let Some(expected) = schedule.next_at_ms else {
            return Ok(());
        };
        let recurrence = match recurrence(&schedule.cron, &schedule.timezone) {
            Ok(recurrence) => recurrence,
            Err(error) => {
                // Stored patterns were checked; one the crate no longer reads ends the schedule.
                let claim = self.claim(schedule, expected, expected, None, now);
                let claim = OccurrenceClaim {
                    last_error: Some(error.to_string()),
                    ..claim
                };
                self.store.advance_schedule(&claim).await?;
                return Ok(());
            }
        };
        let missed_before = now.saturating_sub(MISSED_AFTER_MS);
        let (occurrence, deliver_at, note) = if expected < missed_before {
            // Missed: its time passed while no node ran.
            let last = match schedule.ends_at_ms {
                Some(end) => end.min(missed_before),
                None => missed_before,
            };
            let last = recurrence
                .last_between(expected.saturating_sub(1), last)
                .unwrap_or(expected);
            let next = schedule.next_allowed(&recurrence, last.max(missed_before));
            match schedule.missed {
                Missed::Skip => {
                    let claim = self.claim(schedule, expected, last, next, now);
                    let claim = OccurrenceClaim {
                        runs: schedule.runs,
                        next_at_ms: claim
                            .next_at_ms
                            .filter(|_| !schedule.runs_exhausted(schedule.runs)),
                        ..claim
                    };
                    let claim = OccurrenceClaim {
                        due_at_ms: claim.next_at_ms.map(|at| recurrence.due_at(at)),
                        ..claim
                    };
                    tracing::info!(
                        message = "Skipped the occurrences missed while no node ran.",
                        schedule_id = %schedule.id,
                        first = %rfc3339(expected),
                        last = %rfc3339(last),
                    );
                    self.store.advance_schedule(&claim).await?;
                    return Ok(());
                }
                Missed::Once => (
                    (last, next),
                    now,
                    format!(
                        "accepted: the occurrences of schedule {} from {} to {}, missed while no node ran, sent once",
                        schedule.id,
                        rfc3339(expected),
                        rfc3339(last)
                    ),
                ),
            }
        } else {
            let next = schedule.next_allowed(&recurrence, expected);
            (
                (expected, next),
                expected,
                format!(
                    "accepted: occurrence {} of schedule {}",
                    rfc3339(expected),
                    schedule.id
                ),
            )
        };
        let (occurrence_ms, next) = occurrence;
        let mut claim = self.claim(schedule, expected, occurrence_ms, next, now);
        if schedule.runs_exhausted(claim.runs) {
            claim.next_at_ms = None;
        }
        claim.due_at_ms = claim.next_at_ms.map(|at| recurrence.due_at(at));
        let owner = self
            .store
            .user(&schedule.tenant_id, &schedule.owner_id)
            .await?;
        let created = match owner {
            None => Err(messages::Error::Forbidden(
                "the schedule's owner no longer exists",
            )),
            Some(owner) => {
                let submission = occurrence_submission(&schedule.template, deliver_at);
                let claim = claim.clone();
                match &schedule.template.target {
                    Target::Recipient(_) => {
                        submit::submit_occurrence(&self.messages, &owner, submission, claim, &note)
                            .await
                            .map(|created| created.is_some())
                    }
                    Target::Group(_) => fan_out::submit_group_occurrence(
                        &self.messages,
                        &owner,
                        submission,
                        claim,
                        &note,
                    )
                    .await
                    .map(|created| created.is_some()),
                }
            }
        };
        match created {
            Ok(_) => Ok(()),
            Err(messages::Error::Store(error)) => Err(Error::Store(error)),
            Err(refused) => {
                // Refused by a policy (or its recipient is gone): no message; say why, move on.
                let claim = OccurrenceClaim {
                    runs: schedule.runs,
                    last_error: Some(format!("occurrence {}: {refused}", rfc3339(occurrence_ms))),
                    ..claim
                };
                tracing::info!(
                    message = "A schedule occurrence was refused; no message.",
                    schedule_id = %schedule.id,
                    error = %refused,
                );
                self.store.advance_schedule(&claim).await?;
                Ok(())
            }
        }
    }

    fn claim(
        &self,
        schedule: &Schedule,
        expected: u64,
        occurrence_ms: u64,
        next_at_ms: Option<u64>,
        now: u64,
    ) -> OccurrenceClaim {
        OccurrenceClaim {
            tenant_id: schedule.tenant_id.clone(),
            schedule_id: schedule.id.clone(),
            revision: schedule.revision,
            expected_next_ms: expected,
            occurrence_ms,
            next_at_ms,
            due_at_ms: None,
            runs: schedule.runs + 1,
            last_error: None,
            now_ms: now,
        }
    }
}

/// The submission one occurrence of a schedule makes from its template, due at `deliver_at`:
/// the one place a schedule's target becomes a message.
pub fn occurrence_submission(template: &Template, deliver_at_ms: u64) -> Submission {
    let (recipient_id, group_id) = match &template.target {
        Target::Recipient(user) => (Some(user.to_string()), None),
        Target::Group(group) => (None, Some(group.to_string())),
    };
    Submission {
        recipient_id,
        group_id,
        content: String::from_utf8_lossy(&template.content).into_owned(),
        content_type: Some(template.content_type.clone()),
        delay_seconds: None,
        deliver_at: Some(rfc3339(deliver_at_ms)),
        channel: Some(template.channel.as_str().to_owned()),
        metadata: template.metadata.clone(),
        flow_key: template.flow_key.clone(),
    }
}

/// Sets the schedule's next occurrence from now (after the last one created), or finishes it.
fn plan(schedule: &mut Schedule, recurrence: &Recurrence, now: u64) {
    let after = now.max(schedule.last_run_at_ms.unwrap_or(0));
    let next = if schedule.runs_exhausted(schedule.runs) {
        None
    } else {
        schedule.next_allowed(recurrence, after)
    };
    schedule.next_at_ms = next;
    schedule.due_at_ms = next.map(|at| recurrence.due_at(at));
    schedule.state = match next {
        Some(_) => ScheduleState::Active,
        None => ScheduleState::Finished,
    };
}

fn never_runs(schedule: &Schedule) -> Error {
    match schedule.ends_at_ms {
        Some(end) => invalid(
            "/ends_at",
            format!(
                "the pattern has no occurrence from now until ends_at ({})",
                rfc3339(end)
            ),
        ),
        None => invalid(
            "/cron",
            "the pattern has no occurrence from now on (such as February 30)".into(),
        ),
    }
}

/// The schedule occurrence a message was created for, if any.
pub async fn occurrence_of(
    store: &dyn Store,
    message: &crate::domain::message::Message,
) -> Result<Option<OccurrenceView>, StoreError> {
    Ok(store
        .message_occurrence(&message.tenant_id, &message.id, message.fan_out_id.as_ref())
        .await?
        .map(|(schedule_id, at)| OccurrenceView {
            schedule_id,
            occurrence_at: rfc3339(at),
        }))
}

/// A message as the API shows it, with the schedule occurrence it was created for.
pub async fn message_view(
    store: &dyn Store,
    message: &crate::domain::message::Message,
) -> Result<MessageView, StoreError> {
    let mut view = MessageView::from(message);
    view.schedule = occurrence_of(store, message).await?;
    Ok(view)
}
