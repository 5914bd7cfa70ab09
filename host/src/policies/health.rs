//! How each tenant plugin is doing on this node: calls, failures by kind, time spent, and the
//! current run of failures in a row that disables a plugin when it reaches the limit.
//!
//! Counters are per node and start at zero on restart; the disabled state they lead to is
//! stored, so it holds on every node.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use crate::domain::ids::{PluginId, TenantId};
use crate::sandbox::FailureKind;

/// A tenant plugin's counters on this node.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    /// Calls made, successful or not.
    pub calls: u64,
    /// Failed calls, by kind (`timeout`, `trap`, `memory`, ...).
    pub failures: BTreeMap<&'static str, u64>,
    /// Failed calls in a row, now.
    pub failing_streak: u32,
    /// Total time spent in calls, in microseconds.
    pub time_us: u64,
}

/// Every tenant plugin's counters.
#[derive(Debug, Default)]
pub(super) struct Health(Mutex<HashMap<(TenantId, PluginId), Counters>>);

impl Health {
    /// Counts a call; the failures in a row after it.
    pub(super) fn record(
        &self,
        tenant: &TenantId,
        plugin: &PluginId,
        elapsed: Duration,
        failure: Option<FailureKind>,
    ) -> u32 {
        let mut all = self.0.lock().expect("health lock");
        let counters = all.entry((tenant.clone(), plugin.clone())).or_default();
        counters.calls += 1;
        counters.time_us = counters
            .time_us
            .saturating_add(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
        match failure {
            Some(kind) => {
                *counters.failures.entry(kind.as_str()).or_default() += 1;
                counters.failing_streak += 1;
            }
            None => counters.failing_streak = 0,
        }
        counters.failing_streak
    }

    /// Starts the run of failures again (the plugin was enabled).
    pub(super) fn reset_streak(&self, tenant: &TenantId, plugin: &PluginId) {
        if let Some(counters) = self
            .0
            .lock()
            .expect("health lock")
            .get_mut(&(tenant.clone(), plugin.clone()))
        {
            counters.failing_streak = 0;
        }
    }

    /// A plugin's counters (zero before its first call).
    pub(super) fn counters(&self, tenant: &TenantId, plugin: &PluginId) -> Counters {
        self.0
            .lock()
            .expect("health lock")
            .get(&(tenant.clone(), plugin.clone()))
            .cloned()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_success_ends_the_run_of_failures() {
        let health = Health::default();
        let (tenant, plugin) = (TenantId::new(), PluginId::new());
        let ms = Duration::from_millis(1);
        assert_eq!(
            health.record(&tenant, &plugin, ms, Some(FailureKind::Trap)),
            1
        );
        assert_eq!(
            health.record(&tenant, &plugin, ms, Some(FailureKind::Timeout)),
            2
        );
        assert_eq!(health.record(&tenant, &plugin, ms, None), 0);
        let counters = health.counters(&tenant, &plugin);
        assert_eq!(counters.calls, 3);
        assert_eq!(counters.failures.get("trap"), Some(&1));
        assert_eq!(counters.time_us, 3_000);
        assert_eq!(
            health.counters(&TenantId::new(), &plugin),
            Counters::default()
        );
    }
}
