//! `GET /metrics`: the node's Prometheus metrics (see [`crate::metrics`]). No token, like
//! `/health`: keep it on the internal network (the proxy should not route it).

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::app::AppState;
use crate::metrics::{CONTENT_TYPE, Snapshot};

/// `GET /metrics`. State the database or Redis cannot give right now is left at its last
/// value (or -1 for the schedule depth) rather than failing the scrape: an outage is exactly
/// when the other figures matter.
pub(super) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let queue = match state.store.queue_counts(state.clock.now_ms()).await {
        Ok(queue) => Some(queue),
        Err(error) => {
            tracing::warn!(message = "Metrics: cannot read the queue from the database.", %error);
            None
        }
    };
    let schedule_depth = match state.schedule.count().await {
        Ok(depth) => Some(depth),
        Err(error) => {
            tracing::warn!(message = "Metrics: cannot read the schedule index.", %error);
            None
        }
    };
    let snapshot = Snapshot {
        queue,
        schedule_depth,
        connections: state.hub.connections(),
    };
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        state.metrics.render(&snapshot),
    )
}
