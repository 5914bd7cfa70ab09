//! `/health`, `/health/db`, `/health/redis`: for load balancers, container health checks and
//! people. They need no token and reveal no internals.

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, Code};
use super::openapi::{PROBLEM, Problem};

/// `GET /health`: the process is up.
#[derive(Serialize, ToSchema)]
pub(super) struct Health {
    /// Always `ok`.
    #[schema(example = "ok")]
    status: &'static str,
    /// The server's version.
    #[schema(example = "0.1.0")]
    version: &'static str,
    /// Seconds since the process started.
    uptime_seconds: u64,
    /// `sqlite` or `postgres`.
    #[schema(example = "sqlite")]
    storage: &'static str,
}

/// `GET /health/db`: the database answers.
#[derive(Serialize, ToSchema)]
pub(super) struct DbHealth {
    /// Always `ok` (a database that does not answer is a 503).
    #[schema(example = "ok")]
    status: &'static str,
    /// `sqlite` or `postgres`.
    #[schema(example = "sqlite")]
    backend: &'static str,
    /// The round trip of a trivial query, in milliseconds.
    latency_ms: f64,
}

/// `GET /health/redis`: `ok` with the round trip, or `disabled` (no `latency_ms`) when Redis is
/// not configured.
#[derive(Serialize, ToSchema)]
pub(super) struct RedisHealth {
    /// `ok` or `disabled`.
    #[schema(example = "ok")]
    status: &'static str,
    /// The round trip of a PING, in milliseconds (absent when `disabled`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
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
pub(super) async fn health(State(state): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: state.started.elapsed().as_secs(),
        storage: state.store.backend(),
    })
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
pub(super) async fn db(State(state): State<AppState>) -> Result<Json<DbHealth>, ApiError> {
    let started = Instant::now();
    match state.store.ping().await {
        Ok(()) => Ok(Json(DbHealth {
            status: "ok",
            backend: state.store.backend(),
            latency_ms: latency_ms(started),
        })),
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
pub(super) async fn redis(State(state): State<AppState>) -> Result<Json<RedisHealth>, ApiError> {
    let Some(redis) = &state.redis else {
        return Ok(Json(RedisHealth {
            status: "disabled",
            latency_ms: None,
        }));
    };
    match redis.ping().await {
        Ok(latency) => Ok(Json(RedisHealth {
            status: "ok",
            latency_ms: Some((latency.as_secs_f64() * 1000.0 * 100.0).round() / 100.0),
        })),
        Err(error) => {
            tracing::warn!(message = "Redis health check failed.", %error);
            Err(ApiError::new(Code::Unavailable, "Redis is unavailable"))
        }
    }
}
