//! `/health`, `/health/db`, `/health/redis`: for load balancers, container health checks and
//! people. They need no token and reveal no internals.

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::error::{ApiError, Code};
use super::openapi::{PROBLEM, Problem};

/// `GET /health` (built with `json!`).
#[derive(ToSchema)]
#[allow(
    dead_code,
    reason = "documents the JSON `health` builds; never constructed"
)]
pub(super) struct Health {
    #[schema(example = "ok")]
    status: String,
    /// The server's version.
    version: String,
    uptime_seconds: u64,
    /// `sqlite` or `postgres`.
    #[schema(example = "sqlite")]
    storage: String,
}

/// `GET /health/db` (built with `json!`).
#[derive(ToSchema)]
#[allow(
    dead_code,
    reason = "documents the JSON `db` builds; never constructed"
)]
pub(super) struct DbHealth {
    #[schema(example = "ok")]
    status: String,
    /// `sqlite` or `postgres`.
    backend: String,
    /// The round trip of a trivial query.
    latency_ms: f64,
}

/// `GET /health/redis` (built with `json!`): `ok` with the round trip, or `disabled` (no
/// `latency_ms`) when Redis is not configured.
#[derive(ToSchema)]
#[allow(
    dead_code,
    reason = "documents the JSON `redis` builds; never constructed"
)]
pub(super) struct RedisHealth {
    /// `ok` or `disabled`.
    #[schema(example = "ok")]
    status: String,
    /// The round trip of a PING (absent when `disabled`).
    latency_ms: Option<f64>,
}
use crate::state::AppState;

/// `GET /health`: the process is up.
#[utoipa::path(
    get,
    path = "/health",
    tag = "health",
    summary = "The process is up",
    responses((status = 200, description = "Up.", body = Health)),
)]
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
#[utoipa::path(
    get,
    path = "/health/db",
    tag = "health",
    summary = "The database answers",
    responses(
        (status = 200, description = "The database answers.", body = DbHealth),
        (status = 503, description = "`service_unavailable`: the database does not answer.", body = Problem, content_type = PROBLEM),
    ),
)]
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
#[utoipa::path(
    get,
    path = "/health/redis",
    tag = "health",
    summary = "Redis answers",
    responses(
        (status = 200, description = "Redis answers, or is not configured (`disabled`).", body = RedisHealth),
        (status = 503, description = "`service_unavailable`: Redis does not answer.", body = Problem, content_type = PROBLEM),
    ),
)]
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
