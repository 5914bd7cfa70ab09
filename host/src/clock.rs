//! The server's clock. Every "now" in DMS comes from here, so tests can move time by hand
//! instead of sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Where "now" comes from: the system clock, or a manual clock a test advances.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// The system's wall clock.
    #[default]
    System,
    /// A clock that only moves when told to, in Unix milliseconds.
    Manual(Arc<AtomicU64>),
}

impl Clock {
    /// A manual clock starting at `start_ms` (Unix milliseconds).
    pub fn manual(start_ms: u64) -> Self {
        Self::Manual(Arc::new(AtomicU64::new(start_ms)))
    }

    /// The current time as Unix milliseconds.
    pub fn now_ms(&self) -> u64 {
        match self {
            Self::System => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |elapsed| {
                    u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
                }),
            Self::Manual(now) => now.load(Ordering::SeqCst),
        }
    }

    /// Moves a manual clock forward by `ms`; does nothing to the system clock.
    pub fn advance(&self, ms: u64) {
        if let Self::Manual(now) = self {
            now.fetch_add(ms, Ordering::SeqCst);
        }
    }
}

/// The latest time RFC 3339 can write, `9999-12-31T23:59:59.999Z` (its years have four
/// digits), in Unix milliseconds. Times the API takes are refused past it; times plugins
/// decide are brought back to it (`policies`).
pub const LATEST_MS: u64 = 253_402_300_799_999;

/// Formats Unix milliseconds as RFC 3339 in UTC with millisecond precision
/// (`2026-01-02T03:04:05.678Z`), the one time format of the API and the CLI. A time past
/// [`LATEST_MS`] (none is stored since inputs and plugin decisions are bounded, but older rows
/// may hold one) is written as `LATEST_MS`: the answer is always RFC 3339.
pub fn rfc3339(ms: u64) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'_>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    let nanos = i128::from(ms.min(LATEST_MS)) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|at| at.format(FORMAT).ok())
        .expect("every time up to LATEST_MS has an RFC 3339 form")
}

/// Parses an RFC 3339 time (any offset) into Unix milliseconds; times before 1970 or past
/// [`LATEST_MS`] (`9999-12-31T23:59:59-01:00` is in the year 10000) are `None`.
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    let at =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    u64::try_from(at.unix_timestamp_nanos() / 1_000_000)
        .ok()
        .filter(|ms| *ms <= LATEST_MS)
}

/// `now` plus `ms`, when that is at most [`LATEST_MS`]: a delay a client may ask for.
pub fn after(now: u64, ms: u64) -> Option<u64> {
    now.checked_add(ms).filter(|at| *at <= LATEST_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_rfc3339() {
        assert_eq!(rfc3339(1_700_000_000_000), "2023-11-14T22:13:20.000Z");
        assert_eq!(rfc3339(1_700_000_000_042), "2023-11-14T22:13:20.042Z");
        assert_eq!(
            parse_rfc3339("2023-11-14T23:13:20.042+01:00"),
            Some(1_700_000_000_042)
        );
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), None);
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn times_stop_at_the_last_millisecond_of_9999() {
        assert_eq!(rfc3339(LATEST_MS), "9999-12-31T23:59:59.999Z");
        assert_eq!(parse_rfc3339("9999-12-31T23:59:59.999Z"), Some(LATEST_MS));
        // Past it: refused when read, and never written as anything but RFC 3339.
        assert_eq!(parse_rfc3339("9999-12-31T23:59:59-01:00"), None);
        for ms in [LATEST_MS + 1, 10_000_000_000_000_000, u64::MAX] {
            assert_eq!(rfc3339(ms), "9999-12-31T23:59:59.999Z");
        }
        assert_eq!(after(0, LATEST_MS), Some(LATEST_MS));
        assert_eq!(after(1, LATEST_MS), None);
        assert_eq!(after(u64::MAX, 1), None);
    }

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let clock = Clock::manual(1_000);
        assert_eq!(clock.now_ms(), 1_000);
        clock.advance(500);
        assert_eq!(clock.now_ms(), 1_500);
    }
}
