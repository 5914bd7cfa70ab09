//! `/health`, `/health/db`, `/health/redis`: for load balancers, container health checks and
//! people. They need no token and reveal no internals.

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::error::{ApiError, Code};
use crate::app::AppState;

/// `GET /health`: the process is up.
pub(super) async fn health(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started.elapsed().as_secs(),
        "storage": state.store.backend(),
    }))
}

fn latency_ms(started: Instant) -> f64 {
    (started.elapsed().as_secs_f64() * 1000.0 * 100.0).round() / 100.0
}

/// `GET /health/db`: 200 with the round-trip time, or 503.
pub(super) async fn db(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let started = Instant::now();
    match state.store.ping().await {
        Ok(()) => Ok(Json(json!({
            "status": "ok",
            "backend": state.store.backend(),
            "latency_ms": latency_ms(started),
        }))),
        Err(error) => {
            tracing::warn!(message = "Database health check failed.", %error);
            Err(ApiError::new(
                Code::Unavailable,
                "the database is unavailable",
            ))
        }
    }
}

/// `GET /health/redis`: 200 with the round-trip time, 503, or 200 `disabled` when Redis is not
/// configured.
pub(super) async fn redis(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let Some(redis) = &state.redis else {
        return Ok(Json(json!({ "status": "disabled" })));
    };
    match redis.ping().await {
        Ok(latency) => Ok(Json(json!({
            "status": "ok",
            "latency_ms": (latency.as_secs_f64() * 1000.0 * 100.0).round() / 100.0,
        }))),
        Err(error) => {
            tracing::warn!(message = "Redis health check failed.", %error);
            Err(ApiError::new(Code::Unavailable, "Redis is unavailable"))
        }
    }
}
