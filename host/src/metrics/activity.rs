//! The last hour, per tenant and minute, for the console's overview: messages submitted,
//! delivery attempts delivered and failed with their lateness, and samples of the queue depth
//! and dead letters.
//!
//! Kept in this node's memory, fed where the Prometheus counters are (a submit through the
//! API, a finished delivery attempt) and by the node's sampler (the kept status counts every
//! [`SAMPLE_EVERY`]): reading it costs no query, whatever the size of the database. It is per
//! node and starts empty when the node starts; with several nodes, each shows the submits it
//! took and the deliveries it made (the queue samples are the database's, the same on all).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

use crate::domain::ids::TenantId;
use crate::domain::message::Status;
use crate::redis_link::RedisLink;
use crate::store::StatusCount;

/// Minutes kept.
pub const MINUTES: usize = 60;

/// How often the node samples the queue (and tells Redis it is online).
pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// A node not heard from for this long is offline.
pub const NODE_TIMEOUT_MS: u64 = 30_000;

const MINUTE_MS: u64 = 60_000;

/// Lateness buckets per doubling: a quantile is exact to within 19 %.
const STEPS_PER_DOUBLING: f64 = 4.0;

/// One minute of a tenant.
#[derive(Debug, Default, Clone)]
struct Minute {
    /// The minute (Unix ms / 60,000) this slot holds; a slot of another minute is empty.
    minute: u64,
    submitted: u64,
    delivered: u64,
    failed: u64,
    /// Attempts per lateness bucket ([`bucket`]).
    lateness: BTreeMap<u16, u64>,
    depth: Option<u64>,
    dead: Option<u64>,
}

/// A minute of the last hour, as the overview draws it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MinuteView {
    /// The minute's start (Unix ms).
    pub at_ms: u64,
    /// Messages accepted through the API (each member's of a fan-out counts).
    pub submitted: u64,
    /// Delivery attempts that delivered.
    pub delivered: u64,
    /// Delivery attempts that failed (retried later, or dead-lettered).
    pub failed: u64,
    /// The median lateness of those attempts (ms after their due time), at most this; none
    /// without attempts.
    pub lateness_p50_ms: Option<u64>,
    /// The 99th percentile, likewise.
    pub lateness_p99_ms: Option<u64>,
    /// Messages waiting (scheduled, retrying or being delivered) when last sampled in the
    /// minute; none when the minute was not sampled.
    pub queue_depth: Option<u64>,
    /// Dead letters when last sampled in the minute.
    pub dead_letters: Option<u64>,
}

/// Every tenant's last hour on this node.
#[derive(Debug, Default)]
pub struct Activity {
    tenants: Mutex<HashMap<TenantId, Vec<Minute>>>,
    /// Nodes online as Redis last said, and when (ms); none before the first heartbeat.
    nodes: Mutex<Option<(u64, u64)>>,
}

/// The lateness bucket of `ms`: 0 for on time, then [`STEPS_PER_DOUBLING`] per doubling.
fn bucket(ms: u64) -> u16 {
    if ms == 0 {
        return 0;
    }
    ((ms as f64).log2() * STEPS_PER_DOUBLING).floor() as u16 + 1
}

/// The largest lateness of `bucket` (ms).
fn bucket_bound(bucket: u16) -> u64 {
    if bucket == 0 {
        return 0;
    }
    (f64::from(bucket) / STEPS_PER_DOUBLING).exp2().ceil() as u64
}

/// The `q` quantile (0 to 1) of a minute's lateness buckets.
fn quantile(buckets: &BTreeMap<u16, u64>, q: f64) -> Option<u64> {
    let total: u64 = buckets.values().sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (&bucket, &count) in buckets {
        seen += count;
        if seen >= rank {
            return Some(bucket_bound(bucket));
        }
    }
    buckets.keys().next_back().copied().map(bucket_bound)
}

impl Activity {
    /// Changes `tenant`'s slot for the minute of `now_ms`.
    fn with_minute(&self, tenant: &TenantId, now_ms: u64, change: impl FnOnce(&mut Minute)) {
        let minute = now_ms / MINUTE_MS;
        let mut tenants = self
            .tenants
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let ring = tenants
            .entry(tenant.clone())
            .or_insert_with(|| vec![Minute::default(); MINUTES]);
        let slot = &mut ring[(minute % MINUTES as u64) as usize];
        if slot.minute != minute {
            *slot = Minute {
                minute,
                ..Minute::default()
            };
        }
        change(slot);
    }

    /// Counts `count` messages `tenant` submitted at `now_ms`.
    pub fn submitted(&self, tenant: &TenantId, count: u64, now_ms: u64) {
        self.with_minute(tenant, now_ms, |slot| slot.submitted += count);
    }

    /// Counts a delivery attempt of `tenant` that ended at `now_ms`, `late_ms` after its due
    /// time: delivered, or failed.
    pub fn attempt(&self, tenant: &TenantId, delivered: bool, late_ms: u64, now_ms: u64) {
        self.with_minute(tenant, now_ms, |slot| {
            if delivered {
                slot.delivered += 1;
            } else {
                slot.failed += 1;
            }
            *slot.lateness.entry(bucket(late_ms)).or_default() += 1;
        });
    }

    /// Records the queue as the kept status counts say at `now_ms`, for every tenant in them.
    pub fn sample(&self, counts: &[StatusCount], now_ms: u64) {
        let mut per_tenant: HashMap<&TenantId, (u64, u64)> = HashMap::new();
        for row in counts {
            let (depth, dead) = per_tenant.entry(&row.tenant_id).or_default();
            match row.status {
                Status::Scheduled | Status::Retrying | Status::Delivering => *depth += row.count,
                Status::Dead => *dead += row.count,
                Status::Delivered | Status::Read | Status::Cancelled => {}
            }
        }
        for (tenant, (depth, dead)) in per_tenant {
            self.with_minute(tenant, now_ms, |slot| {
                slot.depth = Some(depth);
                slot.dead = Some(dead);
            });
        }
    }

    /// `tenant`'s last hour at `now_ms`: [`MINUTES`] minutes, oldest first, the current one
    /// last.
    pub fn last_hour(&self, tenant: &TenantId, now_ms: u64) -> Vec<MinuteView> {
        let now = now_ms / MINUTE_MS;
        let tenants = self
            .tenants
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let ring = tenants.get(tenant);
        (0..MINUTES as u64)
            .rev()
            .map(|ago| {
                let minute = now.saturating_sub(ago);
                let slot = ring
                    .map(|ring| &ring[(minute % MINUTES as u64) as usize])
                    .filter(|slot| slot.minute == minute);
                MinuteView {
                    at_ms: minute * MINUTE_MS,
                    submitted: slot.map_or(0, |slot| slot.submitted),
                    delivered: slot.map_or(0, |slot| slot.delivered),
                    failed: slot.map_or(0, |slot| slot.failed),
                    lateness_p50_ms: slot.and_then(|slot| quantile(&slot.lateness, 0.5)),
                    lateness_p99_ms: slot.and_then(|slot| quantile(&slot.lateness, 0.99)),
                    queue_depth: slot.and_then(|slot| slot.depth),
                    dead_letters: slot.and_then(|slot| slot.dead),
                }
            })
            .collect()
    }
}

impl Activity {
    /// Tells Redis this node (`node`) is online at `now_ms` and records how many are.
    pub async fn heartbeat(
        &self,
        redis: &RedisLink,
        node: &str,
        now_ms: u64,
    ) -> Result<u64, redis::RedisError> {
        let key = redis.key(&["nodes"]);
        let mut connection = redis.connection();
        let (online,): (u64,) = redis::pipe()
            .atomic()
            .cmd("ZADD")
            .arg(&key)
            .arg(now_ms)
            .arg(node)
            .ignore()
            .cmd("ZREMRANGEBYSCORE")
            .arg(&key)
            .arg(0)
            .arg(now_ms.saturating_sub(NODE_TIMEOUT_MS))
            .ignore()
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(NODE_TIMEOUT_MS * 2)
            .ignore()
            .cmd("ZCARD")
            .arg(&key)
            .query_async(&mut connection)
            .await?;
        *self
            .nodes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some((online, now_ms));
        Ok(online)
    }

    /// Nodes online, when Redis said so within [`NODE_TIMEOUT_MS`] of `now_ms`.
    pub fn nodes_online(&self, now_ms: u64) -> Option<u64> {
        self.nodes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .filter(|(_, at)| now_ms.saturating_sub(*at) <= NODE_TIMEOUT_MS)
            .map(|(online, _)| online)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_are_counted_per_tenant_and_forgotten_after_an_hour() {
        let activity = Activity::default();
        let (a, b) = (TenantId::new(), TenantId::new());
        let start = 1_000 * MINUTE_MS + 5_000;
        activity.submitted(&a, 3, start);
        activity.attempt(&a, true, 0, start + 1_000);
        activity.attempt(&a, false, 2_000, start + MINUTE_MS);
        activity.submitted(&b, 1, start);

        let hour = activity.last_hour(&a, start + MINUTE_MS);
        assert_eq!(hour.len(), MINUTES);
        let (before, now) = (&hour[MINUTES - 2], &hour[MINUTES - 1]);
        assert_eq!(before.at_ms, 1_000 * MINUTE_MS);
        assert_eq!(
            (before.submitted, before.delivered, before.failed),
            (3, 1, 0)
        );
        assert_eq!(before.lateness_p50_ms, Some(0));
        assert_eq!((now.submitted, now.delivered, now.failed), (0, 0, 1));
        assert!(
            now.lateness_p99_ms
                .is_some_and(|ms| (2_000..2_400).contains(&ms))
        );
        assert_eq!(activity.last_hour(&b, start)[MINUTES - 1].submitted, 1);

        // Past the hour the old minutes are gone: a reused slot starts afresh (the failed
        // attempt's), one not yet reused is not read as a newer minute (the submits').
        let later = start + (MINUTES as u64 + 1) * MINUTE_MS;
        activity.submitted(&a, 1, later);
        let hour = activity.last_hour(&a, later);
        assert_eq!(hour.iter().map(|minute| minute.submitted).sum::<u64>(), 1);
        assert_eq!(hour.iter().map(|minute| minute.failed).sum::<u64>(), 0);
    }

    #[test]
    fn quantiles_bound_the_lateness_within_a_fifth() {
        let mut buckets = BTreeMap::new();
        for ms in 1..=1_000u64 {
            *buckets.entry(bucket(ms)).or_default() += 1;
        }
        let p50 = quantile(&buckets, 0.5).unwrap_or_default();
        let p99 = quantile(&buckets, 0.99).unwrap_or_default();
        assert!((500..=600).contains(&p50), "{p50}");
        assert!((990..=1_200).contains(&p99), "{p99}");
        assert_eq!(quantile(&BTreeMap::new(), 0.5), None);
    }

    #[test]
    fn samples_sum_waiting_statuses_and_dead_letters() {
        let activity = Activity::default();
        let a = TenantId::new();
        let row = |status, count| StatusCount {
            tenant_id: a.clone(),
            status,
            count,
        };
        activity.sample(
            &[
                row(Status::Scheduled, 4),
                row(Status::Retrying, 2),
                row(Status::Delivered, 9),
                row(Status::Dead, 1),
            ],
            MINUTE_MS,
        );
        let hour = activity.last_hour(&a, MINUTE_MS);
        assert_eq!(hour[MINUTES - 1].queue_depth, Some(6));
        assert_eq!(hour[MINUTES - 1].dead_letters, Some(1));
        assert_eq!(hour[MINUTES - 2].queue_depth, None);
    }
}
