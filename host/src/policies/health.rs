//! How each tenant plugin is doing on this node: calls, failures by kind, time spent, and the
//! current run of failures in a row that disables a plugin when it reaches the limit.
//!
//! Each tenant plugin has one set of atomic counters, handed to its bindings when a tenant's
//! hooks are resolved, so counting a call takes no lock. Counters are per node and start at
//! zero on restart; the disabled state they lead to is stored, so it holds on every node.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::domain::ids::{PluginId, TenantId};
use crate::sandbox::FailureKind;

/// A tenant plugin's counters on this node, as the API shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Counters {
    /// Calls made, successful or not.
    pub calls: u64,
    /// Failed calls, by kind (`timeout`, `trap`, `memory_limit`, ...).
    pub failures: BTreeMap<&'static str, u64>,
    /// Failed calls in a row, now.
    pub failing_streak: u32,
    /// Total time spent in calls, in microseconds.
    pub time_us: u64,
}

/// One tenant plugin's live counters.
#[derive(Debug, Default)]
pub struct PluginHealth {
    calls: AtomicU64,
    time_us: AtomicU64,
    streak: AtomicU32,
    failures: [AtomicU64; FailureKind::ALL.len()],
}

impl PluginHealth {
    /// Counts a call; the failures in a row after it.
    pub(super) fn record(&self, elapsed: Duration, failure: Option<FailureKind>) -> u32 {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.time_us.fetch_add(
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        match failure {
            Some(kind) => {
                let index = FailureKind::ALL
                    .iter()
                    .position(|k| *k == kind)
                    .expect("every kind is in ALL");
                self.failures[index].fetch_add(1, Ordering::Relaxed);
                self.streak.fetch_add(1, Ordering::Relaxed) + 1
            }
            None => {
                self.streak.store(0, Ordering::Relaxed);
                0
            }
        }
    }

    fn snapshot(&self) -> Counters {
        Counters {
            calls: self.calls.load(Ordering::Relaxed),
            failures: FailureKind::ALL
                .iter()
                .zip(&self.failures)
                .map(|(kind, count)| (kind.as_str(), count.load(Ordering::Relaxed)))
                .filter(|(_, count)| *count > 0)
                .collect(),
            failing_streak: self.streak.load(Ordering::Relaxed),
            time_us: self.time_us.load(Ordering::Relaxed),
        }
    }
}

/// Every tenant plugin's counters on this node.
#[derive(Debug, Default)]
pub(super) struct Health(Mutex<HashMap<(TenantId, PluginId), Arc<PluginHealth>>>);

impl Health {
    /// The counters of one tenant plugin (created at zero).
    pub(super) fn of(&self, tenant: &TenantId, plugin: &PluginId) -> Arc<PluginHealth> {
        self.0
            .lock()
            .expect("health lock")
            .entry((tenant.clone(), plugin.clone()))
            .or_default()
            .clone()
    }

    /// Starts the run of failures again (the plugin was enabled).
    pub(super) fn reset_streak(&self, tenant: &TenantId, plugin: &PluginId) {
        self.of(tenant, plugin).streak.store(0, Ordering::Relaxed);
    }

    /// A plugin's counters (zero before its first call). Reading them keeps nothing.
    pub(super) fn counters(&self, tenant: &TenantId, plugin: &PluginId) -> Counters {
        self.0
            .lock()
            .expect("health lock")
            .get(&(tenant.clone(), plugin.clone()))
            .map(|health| health.snapshot())
            .unwrap_or_default()
    }

    /// Drops a deleted plugin's counters.
    pub(super) fn forget(&self, tenant: &TenantId, plugin: &PluginId) {
        self.0
            .lock()
            .expect("health lock")
            .remove(&(tenant.clone(), plugin.clone()));
    }

    /// The tenants with counters here (`Some`: that one, if it has any).
    pub(super) fn tenants(&self, only: Option<&TenantId>) -> Vec<TenantId> {
        let counters = self.0.lock().expect("health lock");
        let mut tenants: Vec<TenantId> = counters
            .keys()
            .map(|(tenant, _)| tenant)
            .filter(|tenant| only.is_none_or(|only| only == *tenant))
            .cloned()
            .collect();
        tenants.sort();
        tenants.dedup();
        tenants
    }

    /// Keeps the counters of `tenant`'s plugins for which `exists` holds.
    pub(super) fn retain(&self, tenant: &TenantId, exists: impl Fn(&PluginId) -> bool) {
        self.0
            .lock()
            .expect("health lock")
            .retain(|(of, plugin), _| of != tenant || exists(plugin));
    }

    /// How many plugins have counters here.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().expect("health lock").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_success_ends_the_run_of_failures() {
        let health = Health::default();
        let (tenant, plugin) = (TenantId::new(), PluginId::new());
        let counters = health.of(&tenant, &plugin);
        let ms = Duration::from_millis(1);
        assert_eq!(counters.record(ms, Some(FailureKind::Trap)), 1);
        assert_eq!(counters.record(ms, Some(FailureKind::Timeout)), 2);
        assert_eq!(health.counters(&tenant, &plugin).failing_streak, 2);
        assert_eq!(counters.record(ms, None), 0);
        let snapshot = health.counters(&tenant, &plugin);
        assert_eq!(snapshot.calls, 3);
        assert_eq!(snapshot.failures.get("trap"), Some(&1));
        assert_eq!(snapshot.time_us, 3_000);
        assert_eq!(
            health.counters(&TenantId::new(), &plugin),
            Counters::default()
        );
        // Reading counters of a plugin never called keeps nothing; forgetting drops them.
        assert_eq!(health.len(), 1);
        health.forget(&tenant, &plugin);
        assert_eq!(health.counters(&tenant, &plugin), Counters::default());
        assert_eq!(health.len(), 0);
    }

    #[test]
    fn pruning_keeps_the_counters_of_plugins_that_exist() {
        let health = Health::default();
        let (a, b) = (TenantId::new(), TenantId::new());
        let (kept, gone, other) = (PluginId::new(), PluginId::new(), PluginId::new());
        for (tenant, plugin) in [(&a, &kept), (&a, &gone), (&b, &other)] {
            health.of(tenant, plugin);
        }
        assert_eq!(health.tenants(Some(&a)), std::slice::from_ref(&a));
        assert_eq!(health.tenants(None).len(), 2);
        health.retain(&a, |id| *id == kept);
        assert_eq!(health.len(), 2);
        assert_eq!(health.tenants(Some(&a)), std::slice::from_ref(&a));
        health.retain(&a, |_| false);
        assert!(health.tenants(Some(&a)).is_empty());
        assert_eq!(health.tenants(None), [b]);
    }
}
