//! `standard-delay`: the default delay policy.
//!
//! **First delivery** (`plan`): at the requested `deliver_at`, or creation time + the requested
//! delay, or now when nothing was requested. A time earlier than now + `min_delay` moves up to
//! it (so a past time means now); a time later than now + `max_delay` is rejected with
//! `delay_too_long`, naming the limit, unless `clamp_max` is true, in which case it moves down
//! to the limit. Quiet hours, when configured, move a delivery that falls inside the window to
//! the window's end.
//!
//! **Retries** (`retry`): exponential backoff with full jitter. After attempt `n` the wait is a
//! value in `[0, min(retry_cap, retry_base × retry_factor^(n-1))]`, never shorter than the
//! channel's retry-after hint; quiet hours apply too. After `max_attempts` failed attempts the
//! policy gives up and the message is dead-lettered. The jitter is derived from the message id
//! and attempt number, so the same failure always gets the same schedule: a dry run shows
//! exactly what the dispatcher will do.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `min_delay` | `0` | earliest delivery, from now |
//! | `max_delay` | `365d` | latest delivery, from now |
//! | `clamp_max` | `false` | move too-late requests to the limit instead of rejecting |
//! | `quiet_hours_start`, `quiet_hours_end` | unset | `HH:MM` local times; the window may wrap midnight |
//! | `utc_offset` | `+00:00` | the fixed offset the quiet hours are in |
//! | `retry_base` | `1s` | first backoff ceiling |
//! | `retry_factor` | `2` | backoff growth per attempt |
//! | `retry_cap` | `1h` | largest backoff ceiling |
//! | `max_attempts` | `8` | attempts before giving up |

use dms_plugin_sdk::{
    Attempt, Message, Rejection, RequestedTime, RetryDecision, config, delay_policy::Guest, now_ms,
};

const MS_PER_DAY: u64 = 86_400_000;

/// The policy's settings, read from the binding configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Earliest delivery, in ms from now.
    pub min_delay_ms: u64,
    /// Latest delivery, in ms from now.
    pub max_delay_ms: u64,
    /// Move too-late requests to the limit instead of rejecting them.
    pub clamp_max: bool,
    /// Quiet hours, if any.
    pub quiet_hours: Option<QuietHours>,
    /// First backoff ceiling, in ms.
    pub retry_base_ms: u64,
    /// Backoff growth per attempt.
    pub retry_factor: f64,
    /// Largest backoff ceiling, in ms.
    pub retry_cap_ms: u64,
    /// Attempts before giving up.
    pub max_attempts: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            min_delay_ms: 0,
            max_delay_ms: 365 * MS_PER_DAY,
            clamp_max: false,
            quiet_hours: None,
            retry_base_ms: 1_000,
            retry_factor: 2.0,
            retry_cap_ms: 3_600_000,
            max_attempts: 8,
        }
    }
}

/// A daily window, in a fixed UTC offset, during which nothing is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    /// Start of the window, in ms after local midnight.
    pub start_ms: u64,
    /// End of the window, in ms after local midnight. Before `start_ms` when the window wraps
    /// midnight.
    pub end_ms: u64,
    /// The offset of local time from UTC, in ms.
    pub offset_ms: i64,
}

impl QuietHours {
    /// If `at` (Unix ms) falls inside the window, the end of the window; otherwise `at`.
    pub fn defer(&self, at: u64) -> u64 {
        let local = at as i64 + self.offset_ms;
        let time_of_day = local.rem_euclid(MS_PER_DAY as i64) as u64;
        let inside = if self.start_ms < self.end_ms {
            (self.start_ms..self.end_ms).contains(&time_of_day)
        } else {
            time_of_day >= self.start_ms || time_of_day < self.end_ms
        };
        if inside {
            at + (self.end_ms + MS_PER_DAY - time_of_day) % MS_PER_DAY
        } else {
            at
        }
    }
}

impl Policy {
    /// Reads the policy from the binding configuration.
    pub fn from_config() -> Result<Self, config::ConfigError> {
        let defaults = Self::default();
        let policy = Self {
            min_delay_ms: config::duration_ms("min_delay", defaults.min_delay_ms)?,
            max_delay_ms: config::duration_ms("max_delay", defaults.max_delay_ms)?,
            clamp_max: config::flag("clamp_max", defaults.clamp_max)?,
            quiet_hours: quiet_hours_from_config()?,
            retry_base_ms: config::duration_ms("retry_base", defaults.retry_base_ms)?,
            retry_factor: config::parse_or(
                "retry_factor",
                defaults.retry_factor,
                "a number of at least 1, such as 2",
            )?,
            retry_cap_ms: config::duration_ms("retry_cap", defaults.retry_cap_ms)?,
            max_attempts: config::parse_or(
                "max_attempts",
                defaults.max_attempts,
                "a whole number of at least 1",
            )?,
        };
        if policy.min_delay_ms > policy.max_delay_ms {
            return Err(config::ConfigError {
                key: "min_delay".into(),
                value: config::get("min_delay").unwrap_or_default(),
                expected: "a duration no longer than max_delay",
            });
        }
        if !(policy.retry_factor >= 1.0 && policy.retry_factor.is_finite()) {
            return Err(config::ConfigError {
                key: "retry_factor".into(),
                value: config::get("retry_factor").unwrap_or_default(),
                expected: "a number of at least 1, such as 2",
            });
        }
        if policy.max_attempts == 0 {
            return Err(config::ConfigError {
                key: "max_attempts".into(),
                value: "0".into(),
                expected: "a whole number of at least 1",
            });
        }
        Ok(policy)
    }

    /// When to deliver first, as a plain function of the request, the clock and the policy.
    pub fn plan(
        &self,
        now: u64,
        created_at: u64,
        requested: &RequestedTime,
    ) -> Result<u64, Rejection> {
        let wanted = match requested {
            RequestedTime::Unspecified => now,
            RequestedTime::DelayMs(delay) => created_at.saturating_add(*delay),
            RequestedTime::DeliverAtMs(at) => *at,
        };
        let latest = now.saturating_add(self.max_delay_ms);
        let at = if wanted > latest {
            if !self.clamp_max {
                return Err(Rejection::new(
                    "delay_too_long",
                    format!(
                        "the requested delivery time is {} from now; the limit (max_delay) is {}",
                        human(wanted - now),
                        human(self.max_delay_ms)
                    ),
                ));
            }
            latest
        } else {
            wanted.max(now.saturating_add(self.min_delay_ms))
        };
        Ok(self.defer(at))
    }

    /// What to do after a failed attempt, as a plain function of the attempt and the clock.
    pub fn retry(&self, now: u64, message_id: &str, attempt: &Attempt) -> RetryDecision {
        if attempt.number >= self.max_attempts {
            let last = attempt.last_error.as_deref().unwrap_or("unknown error");
            return RetryDecision::GiveUp(format!(
                "gave up after {} attempts (max_attempts); last error: {last}",
                attempt.number
            ));
        }
        let wait = self
            .backoff_ms(message_id, attempt.number)
            .max(attempt.retry_after_ms.unwrap_or(0));
        RetryDecision::RetryAtMs(self.defer(now.saturating_add(wait)))
    }

    /// The jittered wait after attempt `number`: a value in `[0, ceiling]`, where the ceiling
    /// grows by `retry_factor` per attempt up to `retry_cap`.
    pub fn backoff_ms(&self, message_id: &str, number: u32) -> u64 {
        let exponent = number.saturating_sub(1).min(1_000) as i32;
        let ceiling = (self.retry_base_ms as f64 * self.retry_factor.powi(exponent))
            .min(self.retry_cap_ms as f64) as u64;
        jitter(message_id, number) % (ceiling + 1)
    }

    fn defer(&self, at: u64) -> u64 {
        self.quiet_hours.map_or(at, |quiet| quiet.defer(at))
    }
}

fn quiet_hours_from_config() -> Result<Option<QuietHours>, config::ConfigError> {
    let start = config::get("quiet_hours_start");
    let end = config::get("quiet_hours_end");
    let (start, end) = match (start, end) {
        (None, None) => return Ok(None),
        (Some(start), Some(end)) => (start, end),
        (start, _) => {
            let missing = if start.is_none() {
                "quiet_hours_start"
            } else {
                "quiet_hours_end"
            };
            return Err(config::ConfigError {
                key: missing.into(),
                value: String::new(),
                expected: "a local time HH:MM (quiet hours need both a start and an end)",
            });
        }
    };
    let parse_time = |key: &str, value: String| {
        parse_hh_mm(&value).ok_or(config::ConfigError {
            key: key.into(),
            value,
            expected: "a local time HH:MM such as 22:00",
        })
    };
    let start_ms = parse_time("quiet_hours_start", start)?;
    let end_ms = parse_time("quiet_hours_end", end)?;
    if start_ms == end_ms {
        return Err(config::ConfigError {
            key: "quiet_hours_end".into(),
            value: config::get("quiet_hours_end").unwrap_or_default(),
            expected: "a time different from quiet_hours_start",
        });
    }
    let offset = config::get("utc_offset").unwrap_or_else(|| "+00:00".into());
    let offset_ms = parse_offset(&offset).ok_or(config::ConfigError {
        key: "utc_offset".into(),
        value: offset,
        expected: "an offset such as +02:00 or -05:30",
    })?;
    Ok(Some(QuietHours {
        start_ms,
        end_ms,
        offset_ms,
    }))
}

/// `HH:MM` as milliseconds after midnight.
fn parse_hh_mm(value: &str) -> Option<u64> {
    let (hours, minutes) = value.trim().split_once(':')?;
    let (hours, minutes): (u64, u64) = (hours.parse().ok()?, minutes.parse().ok()?);
    (hours < 24 && minutes < 60).then_some((hours * 60 + minutes) * 60_000)
}

/// `±HH:MM` as signed milliseconds.
fn parse_offset(value: &str) -> Option<i64> {
    let value = value.trim();
    let (sign, rest) = match value.as_bytes().first()? {
        b'+' => (1, &value[1..]),
        b'-' => (-1, &value[1..]),
        _ => return None,
    };
    let ms = parse_hh_mm(rest)? as i64;
    (ms <= 14 * 3_600_000).then_some(sign * ms)
}

/// A deterministic value for (message, attempt): FNV-1a over the id and the attempt number,
/// finished with the SplitMix64 mixer so nearby inputs spread over the whole range.
fn jitter(message_id: &str, attempt: u32) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in message_id.bytes().chain(attempt.to_le_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

/// A duration for people: whole days, hours, minutes or seconds when exact, else seconds.
fn human(ms: u64) -> String {
    for (unit, size) in [("d", MS_PER_DAY), ("h", 3_600_000), ("m", 60_000)] {
        if ms >= size && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// The delay policy exported by this component.
pub struct StandardDelay;

impl Guest for StandardDelay {
    fn plan(message: Message) -> Result<u64, Rejection> {
        let policy = Policy::from_config()?;
        policy.plan(now_ms(), message.created_at_ms, &message.requested)
    }

    fn retry(message: Message, attempt: Attempt) -> RetryDecision {
        match Policy::from_config() {
            Ok(policy) => policy.retry(now_ms(), &message.id, &attempt),
            Err(error) => RetryDecision::GiveUp(error.to_string()),
        }
    }
}

dms_plugin_sdk::export_delay_policy!(StandardDelay);

#[cfg(test)]
mod tests {
    use super::*;
    use dms_plugin_sdk::testing::FakeHost;

    const NOW: u64 = 1_700_000_000_000; // 2023-11-14T22:13:20Z

    fn attempt(number: u32, retry_after_ms: Option<u64>) -> Attempt {
        Attempt {
            number,
            last_error: Some("HTTP 503".into()),
            retry_after_ms,
        }
    }

    #[test]
    fn unspecified_delivers_now() {
        let policy = Policy::default();
        assert_eq!(
            policy.plan(NOW, NOW, &RequestedTime::Unspecified).unwrap(),
            NOW
        );
    }

    #[test]
    fn delay_counts_from_creation_and_past_times_mean_now() {
        let policy = Policy::default();
        assert_eq!(
            policy
                .plan(NOW, NOW - 100, &RequestedTime::DelayMs(5_000))
                .unwrap(),
            NOW + 4_900
        );
        assert_eq!(
            policy
                .plan(NOW, NOW, &RequestedTime::DeliverAtMs(NOW - 60_000))
                .unwrap(),
            NOW
        );
    }

    #[test]
    fn min_delay_moves_early_requests_up() {
        let policy = Policy {
            min_delay_ms: 30_000,
            ..Policy::default()
        };
        assert_eq!(
            policy
                .plan(NOW, NOW, &RequestedTime::DelayMs(1_000))
                .unwrap(),
            NOW + 30_000
        );
    }

    #[test]
    fn beyond_max_delay_is_rejected_naming_the_limit_or_clamped() {
        let policy = Policy {
            max_delay_ms: 3_600_000,
            ..Policy::default()
        };
        let rejection = policy
            .plan(NOW, NOW, &RequestedTime::DelayMs(7_200_000))
            .unwrap_err();
        assert_eq!(rejection.code, "delay_too_long");
        assert_eq!(
            rejection.reason,
            "the requested delivery time is 2h from now; the limit (max_delay) is 1h"
        );
        let clamping = Policy {
            clamp_max: true,
            ..policy
        };
        assert_eq!(
            clamping
                .plan(NOW, NOW, &RequestedTime::DelayMs(7_200_000))
                .unwrap(),
            NOW + 3_600_000
        );
    }

    #[test]
    fn quiet_hours_move_delivery_to_the_end_of_the_window() {
        // 22:00-07:00 at UTC+02:00. NOW is 22:13:20 UTC = 00:13:20 local: inside.
        let quiet = QuietHours {
            start_ms: 22 * 3_600_000,
            end_ms: 7 * 3_600_000,
            offset_ms: 2 * 3_600_000,
        };
        let local_midnight = NOW - (13 * 60_000 + 20_000);
        assert_eq!(quiet.defer(NOW), local_midnight + 7 * 3_600_000);
        // 12:00 local is outside the window.
        let noon = local_midnight + 12 * 3_600_000;
        assert_eq!(quiet.defer(noon), noon);
        // A non-wrapping window: 01:00-03:00 local.
        let night = QuietHours {
            start_ms: 3_600_000,
            end_ms: 3 * 3_600_000,
            offset_ms: 2 * 3_600_000,
        };
        assert_eq!(
            night.defer(local_midnight + 2 * 3_600_000),
            local_midnight + 3 * 3_600_000
        );
        assert_eq!(night.defer(NOW), NOW);
    }

    #[test]
    fn backoff_is_full_jitter_under_a_growing_capped_ceiling() {
        let policy = Policy::default();
        for number in 1..=12 {
            let ceiling = (1_000u64 << (number - 1)).min(3_600_000);
            let waits: Vec<u64> = (0..200)
                .map(|i| policy.backoff_ms(&format!("msg_{i}"), number))
                .collect();
            assert!(waits.iter().all(|&w| w <= ceiling), "attempt {number}");
            // Full jitter spreads over the whole range, not just near the ceiling.
            assert!(
                waits.iter().any(|&w| w < ceiling / 2),
                "attempt {number}: {waits:?}"
            );
            assert!(waits.iter().any(|&w| w > ceiling / 2), "attempt {number}");
        }
    }

    #[test]
    fn retry_is_deterministic_and_honours_retry_after() {
        let policy = Policy::default();
        let first = policy.retry(NOW, "msg_a", &attempt(3, None));
        assert_eq!(first, policy.retry(NOW, "msg_a", &attempt(3, None)));
        assert_eq!(
            policy.retry(NOW, "msg_a", &attempt(1, Some(120_000))),
            RetryDecision::RetryAtMs(NOW + 120_000)
        );
    }

    #[test]
    fn gives_up_after_max_attempts_with_the_last_error() {
        let policy = Policy {
            max_attempts: 3,
            ..Policy::default()
        };
        assert!(matches!(
            policy.retry(NOW, "msg_a", &attempt(2, None)),
            RetryDecision::RetryAtMs(_)
        ));
        assert_eq!(
            policy.retry(NOW, "msg_a", &attempt(3, None)),
            RetryDecision::GiveUp(
                "gave up after 3 attempts (max_attempts); last error: HTTP 503".into()
            )
        );
    }

    #[test]
    fn reads_the_policy_from_config() {
        FakeHost::new()
            .config("min_delay", "30s")
            .config("max_delay", "7d")
            .config("quiet_hours_start", "22:00")
            .config("quiet_hours_end", "07:00")
            .config("utc_offset", "-05:30")
            .config("retry_base", "500ms")
            .config("retry_factor", "3")
            .config("retry_cap", "10m")
            .config("max_attempts", "5")
            .install();
        assert_eq!(
            Policy::from_config().unwrap(),
            Policy {
                min_delay_ms: 30_000,
                max_delay_ms: 7 * MS_PER_DAY,
                clamp_max: false,
                quiet_hours: Some(QuietHours {
                    start_ms: 22 * 3_600_000,
                    end_ms: 7 * 3_600_000,
                    offset_ms: -(5 * 3_600_000 + 30 * 60_000),
                }),
                retry_base_ms: 500,
                retry_factor: 3.0,
                retry_cap_ms: 600_000,
                max_attempts: 5,
            }
        );
    }

    #[test]
    fn bad_config_names_the_key() {
        FakeHost::new()
            .config("quiet_hours_start", "22:00")
            .install();
        assert_eq!(Policy::from_config().unwrap_err().key, "quiet_hours_end");
        FakeHost::new().config("max_delay", "soon").install();
        assert_eq!(Policy::from_config().unwrap_err().key, "max_delay");
        FakeHost::new().config("retry_factor", "0.5").install();
        assert_eq!(Policy::from_config().unwrap_err().key, "retry_factor");
    }
}
