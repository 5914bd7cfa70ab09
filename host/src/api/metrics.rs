//! `GET /metrics`: the node's Prometheus metrics (see [`crate::metrics`]). No token, like
//! `/health`: keep it on the internal network (the proxy should not route it).

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::metrics::{CONTENT_TYPE, Snapshot};
use crate::state::AppState;

/// `GET /metrics`. State the database or Redis cannot give right now is left at its last
/// value (or -1 for the schedule depth) rather than failing the scrape: an outage is exactly
/// when the other figures matter.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    summary = "Prometheus metrics of this node",
    description = "Prometheus text (version 0.0.4): requests by route and status, submits, delivery attempts and lateness, the queue by status, leases, dead letters, schedule depth, plugin calls and failures, live connections. No token: keep it off the public proxy.",
    responses((status = 200, description = "The metrics, as Prometheus text.", body = String, content_type = "text/plain; version=0.0.4; charset=utf-8")),
)]
pub(super) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let counts = match state.store.status_counts().await {
        Ok(counts) => Some(counts),
        Err(error) => {
            tracing::warn!(message = "Metrics: cannot read the message counts from the database.", %error);
            None
        }
    };
    let index = match state.schedule.stats(state.clock.now_ms()).await {
        Ok(stats) => Some(stats),
        Err(error) => {
            tracing::warn!(message = "Metrics: cannot read the schedule index.", %error);
            None
        }
    };
    let flow_waiting = match state
        .flow
        .limiter()
        .waiting(state.clock.now_ms(), crate::metrics::FLOW_KEYS_SHOWN)
        .await
    {
        Ok((top, total)) => Some((
            top.into_iter()
                .map(|(key, count)| (key.tenant.to_string(), key.key, count))
                .collect(),
            total,
        )),
        Err(error) => {
            tracing::warn!(message = "Metrics: cannot read the flow limiter.", %error);
            None
        }
    };
    let snapshot = Snapshot {
        counts,
        index,
        flow_waiting,
        connections: state.hub.connections(),
    };
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        state.metrics.render(&snapshot),
    )
}
