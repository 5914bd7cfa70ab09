//! Operations: what an operator asks of a deployment, whichever way they ask (the CLI, the
//! health endpoints, the server's own upkeep):
//! - the queue report of `dms queue status` ([`queue`]): per tenant and status, due soon,
//!   overdue, leases, dead letters, and the Redis index's size;
//! - retention ([`prune`]): feed events, ended messages, idempotency keys and emptied fan-outs
//!   past their time.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::clock::rfc3339;
use crate::domain::ids::TenantId;
use crate::domain::message::Status;
use crate::flow::Limiter;
use crate::schedule::Schedule;
use crate::store::{IDEMPOTENCY_TTL_MS, QueueCount, Store, StoreError};

/// One tenant's line of the queue report (or the total's).
#[derive(Debug, Default, Clone, Serialize)]
pub struct QueueSummary {
    /// The tenant's name, or `(all)`.
    pub tenant: String,
    /// Messages per status (every status, zeros included).
    pub statuses: BTreeMap<&'static str, u64>,
    /// Waiting messages due within a minute.
    pub due_next_minute: u64,
    /// Waiting messages due within an hour.
    pub due_next_hour: u64,
    /// Waiting messages past their due time.
    pub overdue: u64,
    /// When the oldest overdue message was due (RFC 3339).
    pub oldest_overdue: Option<String>,
    /// The same, in Unix milliseconds.
    pub oldest_overdue_ms: Option<u64>,
    /// Deliveries in flight (leases held).
    pub leases_held: u64,
    /// Dead letters.
    pub dead_letters: u64,
}

impl QueueSummary {
    fn new(tenant: String) -> Self {
        Self {
            tenant,
            statuses: Status::ALL
                .iter()
                .map(|status| (status.as_str(), 0))
                .collect(),
            ..Self::default()
        }
    }

    fn add(&mut self, row: &QueueCount) {
        *self.statuses.entry(row.status.as_str()).or_default() += row.count;
        self.due_next_minute += row.due_next_minute;
        self.due_next_hour += row.due_next_hour;
        self.overdue += row.overdue;
        self.leases_held += row.leases_held;
        if row.status == Status::Dead {
            self.dead_letters += row.count;
        }
        if let Some(oldest) = row.oldest_overdue_ms
            && self.oldest_overdue_ms.is_none_or(|seen| oldest < seen)
        {
            self.oldest_overdue_ms = Some(oldest);
            self.oldest_overdue = Some(rfc3339(oldest));
        }
    }
}

/// The queue, read from the database (the source of truth).
#[derive(Debug, Clone, Serialize)]
pub struct QueueReport {
    /// When it was read (RFC 3339).
    pub at: String,
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    /// One line per tenant (every tenant, by name).
    pub tenants: Vec<QueueSummary>,
    /// Every tenant together.
    pub total: QueueSummary,
    /// Ids in the schedule index (due or leased), when asked for; absent when it could not be
    /// read (see [`Queue::index_error`]).
    pub schedule_index: Option<u64>,
    /// Messages held back by their flow key, when the limiter was given (Redis) and could be
    /// read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow_waiting: Option<FlowWaiting>,
}

/// Messages held back by their flow key's limit or pause.
#[derive(Debug, Clone, Serialize)]
pub struct FlowWaiting {
    /// All of them.
    pub total: u64,
    /// The keys with the most, most first (at most ten).
    pub keys: Vec<FlowKeyWaiting>,
}

/// One key's waiting messages.
#[derive(Debug, Clone, Serialize)]
pub struct FlowKeyWaiting {
    /// The tenant's name.
    pub tenant: String,
    /// The key.
    pub key: String,
    /// How many wait.
    pub waiting: u64,
}

/// A queue report and, if the index could not be counted, why.
#[derive(Debug)]
pub struct Queue {
    /// The report.
    pub report: QueueReport,
    /// Why the schedule index was not counted.
    pub index_error: Option<String>,
}

/// Reads the queue at `now_ms`; counts `index` too when given (the Redis index, which other
/// nodes share; the in-process one lives in a server, not here).
pub async fn queue(
    store: &dyn Store,
    index: Option<&dyn Schedule>,
    flow: Option<&dyn Limiter>,
    now_ms: u64,
) -> Result<Queue, StoreError> {
    let rows = store.queue_counts(now_ms).await?;
    let known = store.list_tenants().await?;
    let names: HashMap<TenantId, String> = known
        .iter()
        .map(|tenant| (tenant.id.clone(), tenant.name.clone()))
        .collect();
    let mut tenants: BTreeMap<String, QueueSummary> = known
        .into_iter()
        .map(|tenant| (tenant.name.clone(), QueueSummary::new(tenant.name)))
        .collect();
    let mut total = QueueSummary::new("(all)".to_owned());
    for row in &rows {
        tenants
            .entry(row.tenant.clone())
            .or_insert_with(|| QueueSummary::new(row.tenant.clone()))
            .add(row);
        total.add(row);
    }
    let (schedule_index, index_error) = match index {
        Some(index) => match index.count().await {
            Ok(count) => (Some(count), None),
            Err(error) => (None, Some(error.to_string())),
        },
        None => (None, None),
    };
    let (flow_waiting, index_error) = match flow {
        Some(flow) => match flow.waiting(now_ms, 10).await {
            Ok((keys, total)) => (
                Some(FlowWaiting {
                    total,
                    keys: keys
                        .into_iter()
                        .map(|(key, waiting)| FlowKeyWaiting {
                            tenant: names
                                .get(&key.tenant)
                                .cloned()
                                .unwrap_or_else(|| key.tenant.to_string()),
                            key: key.key,
                            waiting,
                        })
                        .collect(),
                }),
                index_error,
            ),
            Err(error) => (None, index_error.or(Some(error.to_string()))),
        },
        None => (None, index_error),
    };
    Ok(Queue {
        report: QueueReport {
            at: rfc3339(now_ms),
            backend: store.backend(),
            tenants: tenants.into_values().collect(),
            total,
            schedule_index,
            flow_waiting,
        },
        index_error,
    })
}

/// How long what the database holds is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Users' feed events, for clients resuming from a cursor.
    pub feed_ms: u64,
    /// Messages after they ended (delivered, read, dead, cancelled), with their history.
    pub messages_ms: u64,
}

/// Messages deleted in one slice of pruning: small enough that a slice never holds the write
/// lock for long.
const PRUNE_SLICE: u32 = 5_000;

/// What one pass of [`prune`] could not do (it goes on with the rest).
#[derive(Debug, Default)]
pub struct Pruned {
    /// Why feed events were not pruned.
    pub feed: Option<StoreError>,
    /// Why ended messages were not (all) pruned.
    pub messages: Option<StoreError>,
    /// Why idempotency keys were not pruned.
    pub idempotency_keys: Option<StoreError>,
    /// Why fan-outs whose messages are all gone were not pruned.
    pub fan_outs: Option<StoreError>,
    /// Why finished schedules were not pruned.
    pub schedules: Option<StoreError>,
}

/// One pass of retention at `now_ms`: feed events older than `retention.feed_ms`, messages
/// that ended more than `retention.messages_ms` ago (in slices, yielding between them),
/// idempotency keys past their 24 hours, fan-outs older than the messages' retention none of
/// whose messages is left, and schedules finished (and occurrence links made) longer ago than
/// the messages' retention.
pub async fn prune(store: &dyn Store, retention: Retention, now_ms: u64) -> Pruned {
    let mut pruned = Pruned {
        feed: store
            .prune_feed(now_ms.saturating_sub(retention.feed_ms))
            .await
            .err(),
        ..Pruned::default()
    };
    let ended_before = now_ms.saturating_sub(retention.messages_ms);
    loop {
        match store.prune_messages(ended_before, PRUNE_SLICE).await {
            Ok(deleted) if deleted == u64::from(PRUNE_SLICE) => tokio::task::yield_now().await,
            Ok(_) => break,
            Err(error) => {
                pruned.messages = Some(error);
                break;
            }
        }
    }
    pruned.idempotency_keys = store
        .prune_idempotency_keys(now_ms.saturating_sub(IDEMPOTENCY_TTL_MS))
        .await
        .err();
    pruned.fan_outs = store.prune_fan_outs(ended_before).await.err();
    pruned.schedules = store.prune_schedules(ended_before, PRUNE_SLICE).await.err();
    pruned
}
