//! Middleware that sees every request once it is answered: one log line (request id, method,
//! route template, status, duration) and the HTTP metrics. Routes are the matched templates
//! (`/messages/{id}`), so neither the log's route nor a metric label grows with the ids in
//! paths; requests no route matched are `unmatched`.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::state::AppState;

/// The route label of requests that matched no route.
const UNMATCHED: &str = "unmatched";

pub(super) async fn observe(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED, MatchedPath::as_str)
        .to_owned();
    let method = request.method().clone();
    let request_id = request
        .headers()
        .get(super::REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let response = next.run(request).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    let method = match method.as_str() {
        known @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS") => known,
        _ => "other",
    };
    state
        .metrics
        .request(&route, method, status, elapsed.as_secs_f64());
    tracing::info!(
        target: "dms::http",
        message = "request",
        request_id,
        method,
        route,
        status,
        duration_ms = (elapsed.as_secs_f64() * 1000.0 * 100.0).round() / 100.0,
    );
    response
}
