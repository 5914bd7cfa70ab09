//! `/flow-control` (tenant admins): limits per flow key pattern. A pattern is an exact key, a
//! prefix ending in `*`, or `*` alone (the tenant-wide default); in a path, percent-encode it
//! (`https%3A%2F%2Fapi.example.com%2F*`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::{Admin, ApiJson, NoFilter, PageParams, Paged};
use super::openapi::{PROBLEM, Problem};
use crate::clock::rfc3339;
use crate::domain::flow::FlowLimit;
use crate::state::AppState;
use crate::store::Page;
use crate::use_cases::flow::Asked;

/// The limits of a pattern's keys: a `rate`, a `parallelism`, or both.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SetLimits {
    /// Deliveries per `period` (1 to 1,000,000): up to `rate` at once after a quiet period,
    /// then one every `period / rate`.
    #[schema(example = 10, minimum = 1, maximum = 1_000_000)]
    rate: Option<u64>,
    /// The rate's period in seconds (1 to 86,400; default 1). Only with a `rate`.
    #[schema(example = 1, minimum = 1, maximum = 86_400)]
    period: Option<u64>,
    /// Deliveries of one key in flight at once (1 to 100,000).
    #[schema(example = 2, minimum = 1, maximum = 100_000)]
    parallelism: Option<u64>,
    /// `fifo`: one at a time, in due order (then id); a message that is retrying holds the
    /// key until it is delivered or dead. `any` (the default): no order.
    #[schema(example = "any")]
    ordering: Option<String>,
}

/// A pattern's limits.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct FlowLimitView {
    /// The pattern: an exact key, a prefix ending in `*`, or `*` (the tenant-wide default).
    #[schema(example = "https://api.example.com/*")]
    key: String,
    /// Deliveries per `period`.
    rate: Option<u32>,
    /// The rate's period, in seconds.
    period: Option<u32>,
    /// Deliveries of one key in flight at once.
    parallelism: Option<u32>,
    /// `fifo` or `any`.
    ordering: &'static str,
    /// When it was first set.
    #[schema(format = DateTime)]
    created_at: String,
    /// When it was last set.
    #[schema(format = DateTime)]
    updated_at: String,
}

impl From<&FlowLimit> for FlowLimitView {
    fn from(limit: &FlowLimit) -> Self {
        Self {
            key: limit.pattern.clone(),
            rate: limit.limits.rate.map(|rate| rate.count),
            period: limit.limits.rate.map(|rate| rate.period_seconds),
            parallelism: limit.limits.parallelism,
            ordering: if limit.limits.fifo { "fifo" } else { "any" },
            created_at: rfc3339(limit.created_at_ms),
            updated_at: rfc3339(limit.updated_at_ms),
        }
    }
}

/// A page of the tenant's patterns, in pattern order.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct FlowLimits {
    items: Vec<FlowLimitView>,
    limit: u32,
    offset: u64,
}

/// `GET /flow-control`: the tenant's patterns.
#[utoipa::path(
    get,
    path = "/flow-control",
    tag = "flow-control",
    summary = "List flow-control limits (admin)",
    params(PageParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The tenant's patterns, in pattern order.", body = FlowLimits),
        (status = 403, description = "`admin_required`: only an admin of the tenant may do this.", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn list(
    State(state): State<AppState>,
    admin: Admin,
    Paged { page, .. }: Paged<NoFilter>,
) -> Result<Json<FlowLimits>, ApiError> {
    let items = state.flow_limits.list(admin.tenant(), page).await?;
    let Page { limit, offset } = page;
    Ok(Json(FlowLimits {
        items: items.iter().map(FlowLimitView::from).collect(),
        limit,
        offset,
    }))
}

/// `PUT /flow-control/{key}`: sets a pattern's limits.
#[utoipa::path(
    put,
    path = "/flow-control/{key}",
    tag = "flow-control",
    summary = "Set a flow-control limit (admin)",
    description = "Sets the limits of the keys the pattern matches (at least one of `rate`, `parallelism`, `ordering: \"fifo\"`; a `period` only with a `rate`; a `fifo` key's `parallelism`, if given, is 1): an exact key, a prefix ending in `*`, or `*` alone (the tenant-wide default). For a key the exact pattern wins, then the longest prefix, then `*`. A message over its key's limit waits; it is not rejected and not counted as an attempt.",
    params(("key" = String, Path, description = "The pattern, percent-encoded (1 to 128 bytes).")),
    request_body = SetLimits,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Replaced.", body = FlowLimitView),
        (status = 201, description = "Created.", body = FlowLimitView),
        (status = 403, description = "`admin_required`: only an admin of the tenant may do this.", body = Problem, content_type = PROBLEM),
        (status = 422, description = "`invalid_field`: `/key`, `/rate`, `/period`, `/parallelism` or `/ordering` is unusable.", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn put(
    State(state): State<AppState>,
    admin: Admin,
    Path(key): Path<String>,
    ApiJson(body): ApiJson<SetLimits>,
) -> Result<(StatusCode, Json<FlowLimitView>), ApiError> {
    let asked = Asked {
        rate: body.rate,
        period: body.period,
        parallelism: body.parallelism,
        ordering: body.ordering,
    };
    let (limit, created) = state.flow_limits.put(admin.tenant(), &key, asked).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(FlowLimitView::from(&limit))))
}

/// `GET /flow-control/{key}`: one pattern's limits.
#[utoipa::path(
    get,
    path = "/flow-control/{key}",
    tag = "flow-control",
    summary = "A flow-control limit (admin)",
    params(("key" = String, Path, description = "The pattern, percent-encoded.")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The pattern's limits.", body = FlowLimitView),
        (status = 403, description = "`admin_required`: only an admin of the tenant may do this.", body = Problem, content_type = PROBLEM),
        (status = 404, description = "`not_found`: your tenant has no limits for this pattern.", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn get(
    State(state): State<AppState>,
    admin: Admin,
    Path(key): Path<String>,
) -> Result<Json<FlowLimitView>, ApiError> {
    let limit = state.flow_limits.get(admin.tenant(), &key).await?;
    Ok(Json(FlowLimitView::from(&limit)))
}

/// `DELETE /flow-control/{key}`: removes a pattern's limits.
#[utoipa::path(
    delete,
    path = "/flow-control/{key}",
    tag = "flow-control",
    summary = "Remove a flow-control limit (admin)",
    params(("key" = String, Path, description = "The pattern, percent-encoded.")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Removed; the pattern's keys are no longer limited by it."),
        (status = 403, description = "`admin_required`: only an admin of the tenant may do this.", body = Problem, content_type = PROBLEM),
        (status = 404, description = "`not_found`: your tenant has no limits for this pattern.", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn delete(
    State(state): State<AppState>,
    admin: Admin,
    Path(key): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.flow_limits.delete(admin.tenant(), &key).await?;
    Ok(StatusCode::NO_CONTENT)
}
