//! The limits every plugin call runs under, and the memory limiter that enforces them.
//!
//! The operator sets the maximums (configuration); a binding may lower them, never raise them.
//! Each value says why it has that default.

use std::time::Duration;

use crate::domain::plugin::LimitOverrides;

/// Limits for one plugin call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory a plugin may grow to, in bytes. 32 MiB holds a Rust plugin (about 1 MiB
    /// at rest) with a wide margin, and Python/JS plugins (9–13 MiB at rest) with room to work;
    /// a guest allocating past it sees allocation failure and traps.
    pub memory_bytes: usize,
    /// Wall-clock budget of a validator or delay-policy call. These run on the request path
    /// of `POST /messages`, where a Rust plugin answers in microseconds: 10 ms is generous
    /// for honest code and caps the latency a broken plugin can add.
    pub decision_deadline: Duration,
    /// Wall-clock budget of a channel call. Channels wait on the network (the webhook's HTTP
    /// request has its own 5 s default timeout); 10 s bounds a delivery attempt.
    pub channel_deadline: Duration,
    /// The largest string or list a plugin may return, in bytes. Plugin output becomes API
    /// responses, log lines and database rows; 64 KiB is plenty for a reason or an error and
    /// keeps a plugin from inflating them.
    pub output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 32 << 20,
            decision_deadline: Duration::from_millis(10),
            channel_deadline: Duration::from_secs(10),
            output_bytes: 64 << 10,
        }
    }
}

impl Limits {
    /// These limits, lowered where `lower` is lower.
    pub fn lowered_by(self, lower: &LimitOverrides) -> Self {
        let min_duration = |ours: Duration, theirs: Option<u64>| {
            theirs.map_or(ours, |ms| ours.min(Duration::from_millis(ms)))
        };
        Self {
            memory_bytes: lower
                .memory_bytes
                .map_or(self.memory_bytes, |bytes| self.memory_bytes.min(bytes)),
            decision_deadline: min_duration(self.decision_deadline, lower.decision_deadline_ms),
            channel_deadline: min_duration(self.channel_deadline, lower.channel_deadline_ms),
            output_bytes: self.output_bytes,
        }
    }
}

/// Enforces the memory cap of one call and remembers whether the plugin hit it, so a trap that
/// follows a refused `memory.grow` is reported as "memory limit" rather than a generic trap.
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    limit: usize,
    pub(crate) hit: bool,
}

impl MemoryLimiter {
    pub(crate) fn new(limit: usize) -> Self {
        Self { limit, hit: false }
    }
}

/// Table elements a plugin may grow to. Rust components use a few hundred; 20 000 matches
/// wasmtime's pooling default and covers large C#/Python runtimes.
const MAX_TABLE_ELEMENTS: usize = 20_000;

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_only_lower() {
        let operator = Limits::default();
        let lowered = operator.lowered_by(&LimitOverrides {
            memory_bytes: Some(1 << 40),
            decision_deadline_ms: Some(5),
            channel_deadline_ms: None,
        });
        assert_eq!(lowered.memory_bytes, operator.memory_bytes);
        assert_eq!(lowered.decision_deadline, Duration::from_millis(5));
        assert_eq!(lowered.channel_deadline, operator.channel_deadline);
    }
}
