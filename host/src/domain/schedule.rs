//! Recurring schedules: a cron pattern read in an IANA time zone, and the message template each
//! occurrence turns into an ordinary message.
//!
//! Patterns have 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first;
//! `croner` parses and evaluates them, `chrono-tz` holds the zone data. Daylight saving time,
//! as `croner` resolves it (the Vixie cron rules):
//! - a wall time the clocks skip (spring forward): a pattern that names that time (a fixed
//!   second, minute and hour, such as `30 2 * * *`) runs once, at the first instant after the
//!   gap (03:00 local); an interval pattern (a `*` or a step in the second, minute or hour
//!   field) simply has no occurrences in the missing hour;
//! - a wall time the clocks repeat (fall back): a fixed-time pattern runs once, at the first
//!   (earlier) of the two instants; an interval pattern runs at every real instant that
//!   matches, so `*/15 * * * *` keeps firing every 15 minutes through both passes of the hour.
//!
//! Every occurrence is an instant (Unix milliseconds), computed strictly after the previous
//! one, so no instant ever occurs twice.

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::TimeZone as _;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use super::ids::{GroupId, ScheduleId, TenantId, UserId};
use super::message::Channel;

/// A cron pattern in a time zone: when a schedule's occurrences are.
#[derive(Debug, Clone)]
pub struct Recurrence {
    cron: Cron,
    zone: chrono_tz::Tz,
}

/// Why a pattern or a zone is unusable (the text says what to do).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecurrenceError {
    /// The cron pattern does not parse, or never matches.
    #[error("{0}")]
    Cron(String),
    /// The zone is not an IANA zone name.
    #[error("{0}")]
    Zone(String),
}

impl Recurrence {
    /// `cron` read in `zone`.
    pub fn parse(cron: &str, zone: &str) -> Result<Self, RecurrenceError> {
        let zone = parse_zone(zone)?;
        let fields = cron.split_whitespace().count();
        if !(5..=6).contains(&fields) || cron.contains('@') {
            return Err(RecurrenceError::Cron(format!(
                "{cron:?} has {fields} fields; give 5 (minute hour day-of-month month day-of-week) or 6 with seconds first, such as \"0 9 * * MON-FRI\" or \"*/2 * * * * *\""
            )));
        }
        let parser = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build();
        let cron = parser.parse(cron).map_err(|error| {
            RecurrenceError::Cron(format!(
                "{cron:?} is not a cron pattern ({error}); each field takes a number in its range, `*`, a list `1,5`, a range `1-5` or a step `*/10` (minute 0-59, hour 0-23, day of month 1-31, month 1-12 or JAN-DEC, day of week 0-7 or SUN-SAT)"
            ))
        })?;
        Ok(Self { cron, zone })
    }

    /// The first occurrence strictly after `after_ms` (Unix ms), if there is one before the
    /// latest time the API writes.
    pub fn next_after(&self, after_ms: u64) -> Option<u64> {
        let seconds = i64::try_from(after_ms / 1000).ok()?;
        let start = self.zone.timestamp_opt(seconds, 0).single()?;
        let next = self.cron.find_next_occurrence(&start, false).ok()?;
        let ms = u64::try_from(next.timestamp_millis()).ok()?;
        (ms <= crate::clock::LATEST_MS).then_some(ms)
    }

    /// The latest occurrence at or before `at_ms`, if any after `after_ms`.
    pub fn last_between(&self, after_ms: u64, at_ms: u64) -> Option<u64> {
        let seconds = i64::try_from(at_ms / 1000).ok()?;
        let start = self.zone.timestamp_opt(seconds, 0).single()?;
        let previous = self.cron.find_previous_occurrence(&start, true).ok()?;
        let ms = u64::try_from(previous.timestamp_millis()).ok()?;
        (ms > after_ms && ms <= at_ms).then_some(ms)
    }
}

/// The most an occurrence is created ahead of its time: a minute.
pub const MAX_LEAD_MS: u64 = 60_000;

impl Recurrence {
    /// When to create the occurrence at `occurrence_ms`: ahead of it by a minute, or by one
    /// period when the pattern recurs sooner (so at most about one occurrence of a schedule
    /// waits as a message, and a pause or change applies from the next one).
    pub fn due_at(&self, occurrence_ms: u64) -> u64 {
        let period = self
            .next_after(occurrence_ms)
            .map_or(MAX_LEAD_MS, |next| next - occurrence_ms);
        occurrence_ms.saturating_sub(period.min(MAX_LEAD_MS))
    }
}

/// An IANA zone by name.
fn parse_zone(zone: &str) -> Result<chrono_tz::Tz, RecurrenceError> {
    chrono_tz::Tz::from_str(zone).map_err(|_| {
        RecurrenceError::Zone(format!(
            "{zone:?} is not a time zone of the IANA database; give a name such as \"Europe/Berlin\", \"America/New_York\" or \"UTC\""
        ))
    })
}

/// What happens to occurrences whose time passed while no node ran.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Missed {
    /// Skip them: continue with the next occurrence still to come.
    Skip,
    /// Send one message now for all of them, then continue.
    Once,
}

impl Missed {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Skip => "skip",
            Self::Once => "once",
        }
    }
}

impl FromStr for Missed {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        match value {
            "skip" => Ok(Self::Skip),
            "once" => Ok(Self::Once),
            other => Err(format!("{other:?} is not skip or once")),
        }
    }
}

/// Where a schedule is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleState {
    /// Creating its occurrences.
    Active,
    /// Paused by its owner or an admin: creates nothing until resumed.
    Paused,
    /// Done: `max_runs` reached, past `ends_at`, or its pattern has no occurrence left.
    Finished,
}

impl ScheduleState {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Paused => "paused",
            Self::Finished => "finished",
        }
    }
}

impl FromStr for ScheduleState {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        match value {
            "active" => Ok(Self::Active),
            "paused" => Ok(Self::Paused),
            "finished" => Ok(Self::Finished),
            other => Err(format!("unknown schedule state {other:?}")),
        }
    }
}

/// Whom each occurrence is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One user of the tenant.
    Recipient(UserId),
    /// Each member of a group of the tenant, at the occurrence (a fan-out).
    Group(GroupId),
}

/// The message each occurrence sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// Whom it is for.
    pub target: Target,
    /// Its flow-control key, when it names one.
    pub flow_key: Option<String>,
    /// Its channel.
    pub channel: Channel,
    /// Its content.
    pub content: Vec<u8>,
    /// Its media type.
    pub content_type: String,
    /// Its metadata.
    pub metadata: BTreeMap<String, String>,
}

/// A recurring schedule as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// Its id.
    pub id: ScheduleId,
    /// Its tenant.
    pub tenant_id: TenantId,
    /// Who created it: the sender of its messages.
    pub owner_id: UserId,
    /// The cron pattern.
    pub cron: String,
    /// The IANA zone it is read in.
    pub timezone: String,
    /// The message of each occurrence.
    pub template: Template,
    /// No occurrence before this (Unix ms).
    pub starts_at_ms: Option<u64>,
    /// No occurrence after this (Unix ms).
    pub ends_at_ms: Option<u64>,
    /// At most this many messages.
    pub max_runs: Option<u64>,
    /// What happens to occurrences missed while no node ran.
    pub missed: Missed,
    /// Where it is.
    pub state: ScheduleState,
    /// Messages created so far.
    pub runs: u64,
    /// The next occurrence not created yet (set only while active).
    pub next_at_ms: Option<u64>,
    /// When to create it ([`Recurrence::due_at`]).
    pub due_at_ms: Option<u64>,
    /// The occurrence time of the last message created.
    pub last_run_at_ms: Option<u64>,
    /// Why the last occurrence made no message (a validator refused it, the recipient is gone).
    pub last_error: Option<String>,
    /// Bumped by every change.
    pub revision: u64,
    /// When it was created.
    pub created_at_ms: u64,
    /// When it last changed.
    pub updated_at_ms: u64,
}

impl Schedule {
    /// The first occurrence after `after_ms` that its bounds allow (`starts_at`, `ends_at`;
    /// `max_runs` is the caller's), given its recurrence.
    pub fn next_allowed(&self, recurrence: &Recurrence, after_ms: u64) -> Option<u64> {
        let from = match self.starts_at_ms {
            // An occurrence exactly at `starts_at` counts.
            Some(start) if start > after_ms => start.saturating_sub(1).max(after_ms),
            _ => after_ms,
        };
        let next = recurrence.next_after(from)?;
        match self.ends_at_ms {
            Some(end) if next > end => None,
            _ => Some(next),
        }
    }

    /// Whether `runs` messages are all it may create.
    pub fn runs_exhausted(&self, runs: u64) -> bool {
        self.max_runs.is_some_and(|max| runs >= max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> u64 {
        crate::clock::parse_rfc3339(text).unwrap()
    }

    fn times(cron: &str, zone: &str, from: &str, count: usize) -> Vec<String> {
        let recurrence = Recurrence::parse(cron, zone).unwrap();
        let mut after = at(from);
        let mut out = Vec::new();
        for _ in 0..count {
            after = recurrence.next_after(after).unwrap();
            out.push(crate::clock::rfc3339(after));
        }
        out
    }

    #[test]
    fn berlin_spring_forward_runs_a_skipped_fixed_time_once_after_the_gap() {
        assert_eq!(
            times("30 2 * * *", "Europe/Berlin", "2027-03-27T00:00:00Z", 3),
            [
                "2027-03-27T01:30:00.000Z",
                "2027-03-28T01:00:00.000Z",
                "2027-03-29T00:30:00.000Z"
            ]
        );
    }

    #[test]
    fn berlin_fall_back_runs_a_doubled_fixed_time_once() {
        assert_eq!(
            times("30 2 * * *", "Europe/Berlin", "2027-10-30T00:00:00Z", 3),
            [
                "2027-10-30T00:30:00.000Z",
                "2027-10-31T00:30:00.000Z",
                "2027-11-01T01:30:00.000Z"
            ]
        );
    }

    #[test]
    fn bad_patterns_and_zones_say_what_is_wrong() {
        assert!(matches!(
            Recurrence::parse("* * *", "UTC"),
            Err(RecurrenceError::Cron(_))
        ));
        assert!(matches!(
            Recurrence::parse("61 * * * *", "UTC"),
            Err(RecurrenceError::Cron(_))
        ));
        assert!(matches!(
            Recurrence::parse("* * * * *", "Mars/Olympus"),
            Err(RecurrenceError::Zone(_))
        ));
    }
}
