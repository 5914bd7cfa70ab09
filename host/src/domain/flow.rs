//! Flow control per key: which key a message belongs to, the limits a tenant sets per key
//! pattern, and which of them applies to a key.
//!
//! A **key** is the message's `flow_key` when it has one; otherwise its recipient's webhook
//! endpoint (webhook channel) or its recipient's id (inbox, or a webhook recipient with no
//! endpoint). Keys are per tenant.
//!
//! A **pattern** is an exact key, a prefix ending in `*` (`https://api.example.com/*`), or `*`
//! alone: the tenant-wide default. For a key, the exact pattern wins, then the longest matching
//! prefix, then `*`; no pattern, no limit.

use crate::domain::ids::UserId;
use crate::domain::message::Channel;

/// The longest key or pattern, in bytes.
pub const MAX_KEY_BYTES: usize = 128;
/// The pattern of the tenant-wide default.
pub const DEFAULT_PATTERN: &str = "*";
/// The most deliveries a rate may allow per period.
pub const MAX_RATE: u32 = 1_000_000;
/// The longest period, in seconds (a day).
pub const MAX_PERIOD_SECONDS: u32 = 86_400;
/// The most deliveries of one key in flight at once.
pub const MAX_PARALLELISM: u32 = 100_000;

/// Deliveries per period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Deliveries allowed per period.
    pub count: u32,
    /// The period, in seconds.
    pub period_seconds: u32,
}

impl Rate {
    /// The spacing of deliveries: one every `period / count`, in µs (at least 1).
    pub fn interval_us(&self) -> u64 {
        (u64::from(self.period_seconds) * 1_000_000)
            .div_ceil(u64::from(self.count.max(1)))
            .max(1)
    }

    /// How far ahead of the spacing deliveries may run, in µs: `count` may leave at once
    /// after a quiet period, then one every [`interval_us`](Self::interval_us) (GCRA's burst
    /// tolerance, `(count - 1) × interval`).
    pub fn tolerance_us(&self) -> u64 {
        self.interval_us() * u64::from(self.count.max(1) - 1)
    }
}

/// What a tenant asks of one pattern's keys (at least one of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deliveries per period.
    pub rate: Option<Rate>,
    /// Deliveries in flight at once.
    pub parallelism: Option<u32>,
    /// One at a time in due order (then id); a retrying message holds the key until it is
    /// delivered or dead.
    pub fifo: bool,
}

/// A tenant's limits for one pattern, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowLimit {
    /// The pattern (see the module's documentation).
    pub pattern: String,
    /// The limits.
    pub limits: Limits,
    /// When it was first set, Unix ms.
    pub created_at_ms: u64,
    /// When it was last set, Unix ms.
    pub updated_at_ms: u64,
}

/// Why a key, a pattern or limits are refused: the field (a JSON pointer) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The field.
    pub field: &'static str,
    /// What is wrong, for a person.
    pub reason: String,
}

fn refused(field: &'static str, reason: impl Into<String>) -> Refused {
    Refused {
        field,
        reason: reason.into(),
    }
}

/// Checks a message's `flow_key`: 1 to 128 bytes, no control characters, no `*` (which
/// patterns reserve).
pub fn check_key(key: &str, field: &'static str) -> Result<(), Refused> {
    if key.is_empty() {
        return Err(refused(field, "must not be empty"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(refused(
            field,
            format!("is {} bytes; the limit is {MAX_KEY_BYTES}", key.len()),
        ));
    }
    if key.chars().any(char::is_control) {
        return Err(refused(field, "must not contain control characters"));
    }
    if key.contains('*') {
        return Err(refused(
            field,
            "must not contain `*`, which flow-control patterns reserve",
        ));
    }
    Ok(())
}

/// Checks a pattern: `*` alone, or a key optionally ending in one `*`.
pub fn check_pattern(pattern: &str, field: &'static str) -> Result<(), Refused> {
    if pattern == DEFAULT_PATTERN {
        return Ok(());
    }
    let stem = pattern.strip_suffix('*').unwrap_or(pattern);
    if stem.contains('*') {
        return Err(refused(
            field,
            "`*` may only end a pattern (a prefix match) or stand alone (the tenant-wide default)",
        ));
    }
    if pattern.len() > MAX_KEY_BYTES {
        return Err(refused(
            field,
            format!("is {} bytes; the limit is {MAX_KEY_BYTES}", pattern.len()),
        ));
    }
    if stem.is_empty() {
        return Err(refused(field, "must not be empty"));
    }
    if pattern.chars().any(char::is_control) {
        return Err(refused(field, "must not contain control characters"));
    }
    Ok(())
}

/// Checks limits as asked: `rate` 1 to 1,000,000 per `period` 1 to 86,400 seconds (1 when not
/// given; a `period` needs a `rate`), `parallelism` 1 to 100,000, `ordering` `fifo` or `any`
/// (`fifo` delivers one at a time); at least one of them.
pub fn limits(
    rate: Option<u64>,
    period: Option<u64>,
    parallelism: Option<u64>,
    ordering: Option<&str>,
) -> Result<Limits, Refused> {
    let fifo = match ordering {
        None | Some("any") => false,
        Some("fifo") => true,
        Some(other) => {
            return Err(refused(
                "/ordering",
                format!("{other:?} is not an ordering; use \"fifo\" or \"any\""),
            ));
        }
    };
    let rate = match (rate, period) {
        (None, Some(_)) => return Err(refused("/period", "is only meaningful with a `rate`")),
        (None, None) => None,
        (Some(count), period) => {
            let count = u32::try_from(count)
                .ok()
                .filter(|count| (1..=MAX_RATE).contains(count))
                .ok_or_else(|| {
                    refused(
                        "/rate",
                        format!("must be between 1 and {MAX_RATE} deliveries per period"),
                    )
                })?;
            let period_seconds = u32::try_from(period.unwrap_or(1))
                .ok()
                .filter(|period| (1..=MAX_PERIOD_SECONDS).contains(period))
                .ok_or_else(|| {
                    refused(
                        "/period",
                        format!("must be between 1 and {MAX_PERIOD_SECONDS} seconds"),
                    )
                })?;
            Some(Rate {
                count,
                period_seconds,
            })
        }
    };
    let parallelism = parallelism
        .map(|parallelism| {
            u32::try_from(parallelism)
                .ok()
                .filter(|parallelism| (1..=MAX_PARALLELISM).contains(parallelism))
                .ok_or_else(|| {
                    refused(
                        "/parallelism",
                        format!("must be between 1 and {MAX_PARALLELISM} deliveries in flight"),
                    )
                })
        })
        .transpose()?;
    if fifo && parallelism.is_some_and(|parallelism| parallelism > 1) {
        return Err(refused(
            "/parallelism",
            "a \"fifo\" key delivers one message at a time; leave `parallelism` out or make it 1",
        ));
    }
    if rate.is_none() && parallelism.is_none() && !fifo {
        return Err(refused(
            "/rate",
            "give a `rate` (with an optional `period`), a `parallelism`, an `ordering` of \"fifo\", or several",
        ));
    }
    Ok(Limits {
        rate,
        parallelism,
        fifo,
    })
}

/// The limit that applies to `key` among a tenant's: the exact pattern, else the longest
/// matching prefix, else `*`.
pub fn applying<'a>(limits: &'a [FlowLimit], key: &str) -> Option<&'a FlowLimit> {
    let mut best: Option<(usize, &FlowLimit)> = None;
    for limit in limits {
        let rank = if limit.pattern == key {
            usize::MAX
        } else if limit.pattern == DEFAULT_PATTERN {
            0
        } else if let Some(prefix) = limit.pattern.strip_suffix('*') {
            if !key.starts_with(prefix) {
                continue;
            }
            prefix.len() + 1
        } else {
            continue;
        };
        if best.is_none_or(|(known, _)| rank > known) {
            best = Some((rank, limit));
        }
    }
    best.map(|(_, limit)| limit)
}

/// A message's key: its own, or its recipient's webhook endpoint (webhook channel, when set;
/// for a status callback, its sender's callback URL), or its recipient's id.
pub fn key_of(
    flow_key: Option<&str>,
    channel: Channel,
    recipient: &UserId,
    endpoint: Option<&str>,
) -> String {
    match (flow_key, channel, endpoint) {
        (Some(key), _, _) => key.to_owned(),
        (None, Channel::Webhook, Some(url)) => url.to_owned(),
        _ => recipient.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(pattern: &str) -> FlowLimit {
        FlowLimit {
            pattern: pattern.to_owned(),
            limits: Limits {
                rate: None,
                parallelism: Some(1),
                fifo: false,
            },
            created_at_ms: 0,
            updated_at_ms: 0,
        }
    }

    #[test]
    fn the_most_specific_pattern_applies() {
        let limits = [limit("*"), limit("a*"), limit("ab*"), limit("abc")];
        let pattern = |limits, key| super::applying(limits, key).map(|limit| limit.pattern.clone());
        assert_eq!(pattern(&limits, "abc").as_deref(), Some("abc"));
        assert_eq!(pattern(&limits, "abd").as_deref(), Some("ab*"));
        assert_eq!(pattern(&limits, "ax").as_deref(), Some("a*"));
        assert_eq!(pattern(&limits, "zzz").as_deref(), Some("*"));
        assert_eq!(pattern(&limits[1..], "zzz"), None);
    }

    #[test]
    fn rates_space_deliveries_evenly_after_a_burst_of_their_count() {
        let rate = Rate {
            count: 3,
            period_seconds: 1,
        };
        assert_eq!(
            (rate.interval_us(), rate.tolerance_us()),
            (333_334, 666_668)
        );
        let one = Rate {
            count: 1,
            period_seconds: 10,
        };
        assert_eq!((one.interval_us(), one.tolerance_us()), (10_000_000, 0));
    }

    #[test]
    fn limits_name_the_wrong_field() {
        assert_eq!(limits(None, None, None, None).unwrap_err().field, "/rate");
        assert_eq!(
            limits(None, Some(1), Some(1), None).unwrap_err().field,
            "/period"
        );
        assert_eq!(
            limits(Some(0), None, None, None).unwrap_err().field,
            "/rate"
        );
        assert_eq!(
            limits(Some(1), Some(0), None, None).unwrap_err().field,
            "/period"
        );
        assert_eq!(
            limits(Some(1), None, Some(0), None).unwrap_err().field,
            "/parallelism"
        );
        assert!(limits(Some(5), Some(60), Some(2), None).is_ok());
        assert_eq!(
            limits(None, None, Some(2), Some("fifo")).unwrap_err().field,
            "/parallelism"
        );
        assert_eq!(
            limits(None, None, None, Some("lifo")).unwrap_err().field,
            "/ordering"
        );
        assert!(limits(None, None, None, Some("fifo")).unwrap().fifo);
        assert!(check_pattern("a*b", "/key").is_err());
        assert!(check_pattern("https://x/*", "/key").is_ok());
        assert!(check_key(&"k".repeat(129), "/flow_key").is_err());
    }
}
