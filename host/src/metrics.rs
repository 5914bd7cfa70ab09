//! The node's Prometheus metrics: one registry per server (not a process-wide global, so the
//! servers a test process starts never share counts), served as Prometheus text at `/metrics`.
//!
//! Two kinds of figures:
//! - **events**, counted where they happen: HTTP requests (by route template, method and
//!   status, with a latency histogram), messages submitted and refused, delivery attempts by
//!   outcome, and the lateness of each attempt;
//! - **state**, read at scrape time: messages by status (the counts the database keeps as
//!   statuses change: every node reports the same, and no scrape scans the messages), the
//!   overdue ones, leases held and the index's size (from the schedule index, shared by every
//!   node with Redis), live real-time connections, every loaded plugin's
//!   calls, failures by kind and time (from the sandbox's lock-free counters), and what the
//!   sandbox keeps: plugins loaded, compiled code cached in memory, compiles running.
//!
//! The console's overview reads [`activity`]: the same events, per tenant and minute over the
//! last hour.
//!
//! Labels are bounded: routes are templates (`/messages/{id}`), never raw paths; plugins are
//! named by name and digest, and only while loaded on this node (held by the built-ins, a
//! tenant's resolved hooks or a call): a deleted plugin's series go with it, and a plugin
//! loaded again starts its counters at zero, which Prometheus reads as a counter reset.

pub mod activity;

use std::sync::Mutex;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::domain::ids::TenantId;
use crate::domain::message::Status;
use crate::sandbox::{FailureKind, Sandbox};
use crate::schedule::IndexStats;
use crate::store::StatusCount;
use activity::Activity;

/// The media type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    method: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FlowKeyLabels {
    tenant: String,
    key: String,
}

/// The flow keys `/metrics` names one by one: the ones with the most waiting messages. The
/// rest are in the total only, so a tenant with a million keys adds ten series, not a million.
pub const FLOW_KEYS_SHOWN: usize = 10;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    plugin: String,
    digest: String,
    world: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginFailureLabels {
    plugin: String,
    digest: String,
    world: &'static str,
    kind: &'static str,
}

/// How a delivery attempt ended, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Delivered.
    Delivered,
    /// Failed; a retry is scheduled.
    Retried,
    /// Given up: dead-lettered.
    Dead,
    /// Refused at commit: a newer claim had taken the message over.
    Stale,
}

impl Attempt {
    fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Retried => "retried",
            Self::Dead => "dead",
            Self::Stale => "stale",
        }
    }
}

/// Messages waiting for their flow key: the keys with the most, as `(tenant, key, count)`,
/// and the total.
pub type FlowWaiting = (Vec<(String, String, u64)>, u64);

/// The state read at scrape time; see [`Metrics::render`].
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Messages per tenant and status (summed over tenants here), from the counts the store
    /// keeps as statuses change; `None` when the database could not be read, which leaves
    /// the status gauges at their last values.
    pub counts: Option<Vec<StatusCount>>,
    /// The schedule index's figures (overdue, leases, depth); `None` when it could not be
    /// read, which leaves overdue and leases at their last values and the depth at -1.
    pub index: Option<IndexStats>,
    /// Live real-time connections on this node.
    pub connections: usize,
    /// Messages waiting for their flow key: the keys with the most (`(tenant, key, count)`,
    /// at most [`FLOW_KEYS_SHOWN`]) and the total; `None` when the limiter cannot be read.
    pub flow_waiting: Option<FlowWaiting>,
}

/// The node's metrics. Cheap to share (`Arc`); every method takes `&self`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabels, Histogram, fn() -> Histogram>,
    submitted: Counter,
    refused: Counter,
    attempts: Family<OutcomeLabels, Counter>,
    lateness: Histogram,
    messages: Family<StatusLabels, Gauge>,
    overdue: Gauge,
    leases: Gauge,
    dead_letters: Gauge,
    schedule_depth: Gauge,
    flow_waiting: Gauge,
    flow_waiting_by_key: Family<FlowKeyLabels, Gauge>,
    connections: Gauge,
    /// Serializes renders: the state gauges are set, then encoded, as one step.
    render: Mutex<()>,
    /// The last hour per tenant and minute, for the console's overview.
    activity: Activity,
}

fn request_buckets() -> Histogram {
    // 0.5 ms to about 16 s.
    Histogram::new(exponential_buckets(0.000_5, 2.0, 16))
}

impl Metrics {
    /// Every metric family at zero, with the sandbox's plugins read at each scrape.
    pub fn new(sandbox: Sandbox) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "dms_http_requests",
            "HTTP requests answered, by route template, method and status",
            requests.clone(),
        );
        let durations = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            request_buckets,
        );
        registry.register(
            "dms_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template and method",
            durations.clone(),
        );
        let submitted = Counter::default();
        registry.register(
            "dms_messages_submitted",
            "Messages accepted by POST /messages (idempotent replays not counted)",
            submitted.clone(),
        );
        let refused = Counter::default();
        registry.register(
            "dms_messages_rejected",
            "Messages a tenant's validator refused",
            refused.clone(),
        );
        let attempts = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "dms_delivery_attempts",
            "Delivery attempts by outcome: delivered, retried, dead (dead-lettered), stale (lease lost)",
            attempts.clone(),
        );
        // 1 ms to about 9 minutes: a node that was down makes its backlog late by as long.
        let lateness = Histogram::new(exponential_buckets(0.001, 2.0, 20));
        registry.register(
            "dms_delivery_lateness_seconds",
            "How long after its due time a delivery attempt started",
            lateness.clone(),
        );
        let messages = Family::<StatusLabels, Gauge>::default();
        registry.register(
            "dms_messages",
            "Messages in the database by status, all tenants",
            messages.clone(),
        );
        let overdue = Gauge::default();
        registry.register(
            "dms_messages_overdue",
            "Messages waiting (scheduled or retrying) past their due time",
            overdue.clone(),
        );
        let leases = Gauge::default();
        registry.register(
            "dms_leases_held",
            "Messages being delivered under a lease that has not expired",
            leases.clone(),
        );
        let dead_letters = Gauge::default();
        registry.register(
            "dms_dead_letters",
            "Messages whose delivery was given up (GET /dead-letters)",
            dead_letters.clone(),
        );
        let schedule_depth = Gauge::default();
        registry.register(
            "dms_schedule_depth",
            "Ids in the schedule index (due or leased); -1 when the index cannot be read",
            schedule_depth.clone(),
        );
        let flow_waiting = Gauge::default();
        registry.register(
            "dms_flow_waiting_messages",
            "Messages held back by their flow key's limit or pause, all keys; -1 when the limiter cannot be read",
            flow_waiting.clone(),
        );
        let flow_waiting_by_key = Family::<FlowKeyLabels, Gauge>::default();
        registry.register(
            "dms_flow_waiting_by_key",
            "Messages held back per flow key, for the ten keys with the most",
            flow_waiting_by_key.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "dms_realtime_connections",
            "Live WebSocket and Socket.IO connections on this node",
            connections.clone(),
        );
        registry.register_collector(Box::new(PluginCollector(sandbox)));
        Self {
            registry,
            requests,
            durations,
            submitted,
            refused,
            attempts,
            lateness,
            messages,
            overdue,
            leases,
            dead_letters,
            schedule_depth,
            flow_waiting,
            flow_waiting_by_key,
            connections,
            render: Mutex::new(()),
            activity: Activity::default(),
        }
    }

    /// Counts an answered HTTP request. `route` is the matched template.
    pub fn request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                method: method.to_owned(),
                status,
            })
            .inc();
        self.durations
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
                method: method.to_owned(),
            })
            .observe(seconds);
    }

    /// Counts `count` messages `tenant` submitted at `now_ms`.
    pub fn submitted(&self, tenant: &TenantId, count: u64, now_ms: u64) {
        self.submitted.inc_by(count);
        self.activity.submitted(tenant, count, now_ms);
    }

    /// The last hour per tenant and minute (see [`activity`]).
    pub fn activity(&self) -> &Activity {
        &self.activity
    }

    /// Counts a message a validator refused.
    pub fn rejected(&self) {
        self.refused.inc();
    }

    /// Counts `tenant`'s delivery attempt that started `late_ms` after its due time and ended
    /// at `now_ms`.
    pub fn attempt(&self, tenant: &TenantId, outcome: Attempt, late_ms: u64, now_ms: u64) {
        if outcome != Attempt::Stale {
            self.activity
                .attempt(tenant, outcome == Attempt::Delivered, late_ms, now_ms);
        }
        self.attempts
            .get_or_create(&OutcomeLabels {
                outcome: outcome.as_str(),
            })
            .inc();
        self.lateness.observe(late_ms as f64 / 1000.0);
    }

    fn set_counts(&self, counts: &[StatusCount]) {
        let mut by_status = [0u64; Status::ALL.len()];
        for row in counts {
            if let Some(index) = Status::ALL.iter().position(|status| *status == row.status) {
                by_status[index] += row.count;
            }
        }
        for (status, count) in Status::ALL.iter().zip(by_status) {
            self.messages
                .get_or_create(&StatusLabels {
                    status: status.as_str(),
                })
                .set(gauge(count));
            if *status == Status::Dead {
                self.dead_letters.set(gauge(count));
            }
        }
    }

    /// The Prometheus text of every metric, with the state gauges set from `snapshot`.
    pub fn render(&self, snapshot: &Snapshot) -> String {
        let _rendering = self.render.lock().expect("metrics render lock");
        if let Some(counts) = &snapshot.counts {
            self.set_counts(counts);
        }
        match &snapshot.index {
            Some(index) => {
                self.overdue.set(gauge(index.overdue));
                self.leases
                    .set(gauge(index.leased.saturating_sub(index.leases_expired)));
                self.schedule_depth.set(gauge(index.due + index.leased));
            }
            None => {
                self.schedule_depth.set(-1);
            }
        }
        self.flow_waiting_by_key.clear();
        match &snapshot.flow_waiting {
            Some((top, total)) => {
                self.flow_waiting.set(gauge(*total));
                for (tenant, key, count) in top {
                    self.flow_waiting_by_key
                        .get_or_create(&FlowKeyLabels {
                            tenant: tenant.clone(),
                            key: key.clone(),
                        })
                        .set(gauge(*count));
                }
            }
            None => {
                self.flow_waiting.set(-1);
            }
        }
        self.connections
            .set(i64::try_from(snapshot.connections).unwrap_or(i64::MAX));
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// A count as a gauge's value.
fn gauge(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Reads every loaded plugin's counters at scrape time.
#[derive(Debug)]
struct PluginCollector(Sandbox);

impl Collector for PluginCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let usage = self.0.cache_usage();
        let plugins: Vec<_> = self
            .0
            .plugins()
            .into_iter()
            .map(|plugin| {
                let digest = plugin.digest().to_string();
                let labels = PluginLabels {
                    plugin: plugin.name().to_owned(),
                    digest: digest.chars().take(12).collect(),
                    world: plugin.world().as_str(),
                };
                (labels, plugin.stats())
            })
            .collect();
        let gauge = |value: usize| ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
        for (name, help, value) in [
            (
                "dms_plugins_loaded",
                "Plugins loaded on this node (built-ins included)",
                plugins.len(),
            ),
            (
                "dms_plugin_cache_components",
                "Compiled plugin components kept in memory by the cache",
                usage.components,
            ),
            (
                "dms_plugin_cache_bytes",
                "Bytes of compiled code the cache keeps in memory (at most DMS_PLUGIN_CACHE_MEMORY_MB)",
                usage.bytes,
            ),
            (
                "dms_plugin_compiles",
                "Plugin compiles running now (at most DMS_PLUGIN_COMPILE_CONCURRENCY)",
                usage.compiling,
            ),
        ] {
            let family = encoder.encode_descriptor(
                name,
                help,
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            gauge(value).encode(family)?;
        }
        {
            let mut family = encoder.encode_descriptor(
                "dms_plugin_calls",
                "Calls into a plugin, by plugin",
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for (labels, stats) in &plugins {
                ConstCounter::new(stats.calls).encode(family.encode_family(labels)?)?;
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "dms_plugin_call_seconds",
                "Wall time spent in calls into a plugin, by plugin",
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for (labels, stats) in &plugins {
                ConstCounter::new(stats.time.as_secs_f64())
                    .encode(family.encode_family(labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "dms_plugin_failures",
            "Failed calls into a plugin, by plugin and kind (trap, timeout, memory_limit, ...)",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (labels, stats) in &plugins {
            for kind in FailureKind::ALL {
                let labels = PluginFailureLabels {
                    plugin: labels.plugin.clone(),
                    digest: labels.digest.clone(),
                    world: labels.world,
                    kind: kind.as_str(),
                };
                ConstCounter::new(stats.failures_of(kind))
                    .encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
