//! Per-plugin counters: calls, failures by kind, time spent. Lock-free; read by the metrics
//! endpoint and `GET /plugins/{id}`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::FailureKind;

#[derive(Debug, Default)]
pub(crate) struct PluginStats {
    calls: AtomicU64,
    nanos: AtomicU64,
    failures: [AtomicU64; FailureKind::ALL.len()],
}

/// A point-in-time copy of a plugin's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Calls made, successful or not.
    pub calls: u64,
    /// Total wall time spent in calls.
    pub time: Duration,
    /// Failed calls by kind; kinds that never happened are left out.
    pub failures: Vec<(FailureKind, u64)>,
}

impl StatsSnapshot {
    /// Failed calls of all kinds.
    pub fn failed(&self) -> u64 {
        self.failures.iter().map(|(_, count)| count).sum()
    }

    /// Failed calls of one kind.
    pub fn failures_of(&self, kind: FailureKind) -> u64 {
        self.failures
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(0, |(_, count)| *count)
    }
}

impl PluginStats {
    pub(crate) fn record(&self, elapsed: Duration, failure: Option<FailureKind>) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.nanos.fetch_add(
            u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        if let Some(kind) = failure {
            self.failures[index(kind)].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            calls: self.calls.load(Ordering::Relaxed),
            time: Duration::from_nanos(self.nanos.load(Ordering::Relaxed)),
            failures: FailureKind::ALL
                .into_iter()
                .map(|kind| (kind, self.failures[index(kind)].load(Ordering::Relaxed)))
                .filter(|(_, count)| *count > 0)
                .collect(),
        }
    }
}

fn index(kind: FailureKind) -> usize {
    FailureKind::ALL
        .iter()
        .position(|k| *k == kind)
        .expect("every kind is in ALL")
}
