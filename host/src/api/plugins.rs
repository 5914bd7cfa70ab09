//! `/plugins` (tenant admins): upload a Wasm component, list, show (with this node's call
//! counters), enable after it was disabled, delete when no hook uses it.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{StatusCode, header};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, Code};
use super::extract::{Admin, ApiQuery, Id};
use super::openapi::{PROBLEM, Problem};
use crate::clock::rfc3339;
use crate::domain::ids::PluginId;
use crate::policies::{Counters, Upload};
use crate::state::AppState;
use crate::use_cases::policies::PluginDetails;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct UploadQuery {
    /// Its name (default: its world and the start of its digest).
    #[serde(default)]
    #[param(pattern = r"^[A-Za-z0-9._+\-]{1,64}$")]
    name: Option<String>,
    /// Its version.
    #[serde(default)]
    #[param(pattern = r"^[A-Za-z0-9._+\-]{1,64}$")]
    version: Option<String>,
}

/// A plugin as the API shows it.
#[derive(Serialize, ToSchema)]
pub(super) struct Plugin {
    id: PluginId,
    /// The name it was uploaded with (or its world and the start of its digest).
    name: String,
    /// The version it was uploaded with.
    version: Option<String>,
    /// The DMS world it exports: `validator`, `delay-policy` or `channel`.
    #[schema(example = "validator")]
    world: &'static str,
    /// `sha256:` and the hex SHA-256 of the component.
    digest: String,
    /// The component's size in bytes.
    size: u64,
    /// When it was uploaded.
    #[schema(format = DateTime)]
    created_at: String,
    /// Set when the host stopped using it (it kept failing); POST /plugins/{id}/enable serves
    /// it again.
    disabled: Option<PluginDisabled>,
    /// The hooks it serves (`validators`, `delay-policy`, `channels/inbox`, ...).
    bound_to: Vec<String>,
    /// This node's call counters.
    stats: Counters,
}

/// Why and when a plugin was disabled.
#[derive(Serialize, ToSchema)]
pub(super) struct PluginDisabled {
    /// When the host disabled it.
    #[schema(format = DateTime)]
    at: String,
    /// Why: the failures that made the host stop using it.
    reason: String,
}

/// The tenant's plugins.
#[derive(Serialize, ToSchema)]
pub(super) struct PluginList {
    /// Oldest first.
    items: Vec<Plugin>,
}

impl From<PluginDetails> for Plugin {
    fn from(details: PluginDetails) -> Self {
        let plugin = details.record;
        Self {
            id: plugin.id,
            name: plugin.name,
            version: plugin.version,
            world: plugin.world.as_str(),
            digest: format!("sha256:{}", plugin.digest),
            size: plugin.size,
            created_at: rfc3339(plugin.created_at_ms),
            disabled: plugin.disabled.map(|disabled| PluginDisabled {
                at: rfc3339(disabled.at_ms),
                reason: disabled.reason,
            }),
            bound_to: details.bound_to,
            stats: details.stats,
        }
    }
}

/// `POST /plugins`: the body is the component (`application/wasm`); `?name=&version=`.
/// 201 with the new plugin, or 200 with the one stored before for the same bytes.
#[utoipa::path(
    post,
    path = "/plugins",
    tag = "plugins",
    summary = "Upload a plugin (admin)",
    description = "The body is a WebAssembly component (`application/wasm`) built for wasm32-wasip2 that exports one DMS world. The host checks its imports, compiles and stores it, within the tenant's quota of plugins and bytes. A tenant's uploads are taken one at a time, and compiles wait for the node's compiler: a burst of uploads queues rather than fails.",
    params(UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/wasm", description = "The component."),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Stored.", body = Plugin),
        (status = 200, description = "The tenant uploaded these bytes before: the plugin stored then.", body = Plugin),
        (status = 403, description = "`admin_required`: only an admin of the tenant may do this.", body = Problem, content_type = PROBLEM),
        (status = 409, description = "`plugin_quota_exceeded`: the tenant's plugins fill its quota (`quota` is `plugins` or `bytes`; `limit`, and for bytes `used` and `size`, say by how much). Nothing is stored.", body = Problem, content_type = PROBLEM),
        (status = 413, description = "`component_too_large`: larger than the operator allows (`size` and `limit` say by how much).", body = Problem, content_type = PROBLEM),
        (status = 415, description = "`unsupported_media_type`: send `content-type: application/wasm`.", body = Problem, content_type = PROBLEM),
        (status = 422, description = "`not_a_component`, `core_module`, `unknown_world`, `import_not_granted` or `invalid_component` (the component is refused), or `invalid_field` (`name`, `version`).", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn upload(
    State(state): State<AppState>,
    admin: Admin,
    ApiQuery(query): ApiQuery<UploadQuery>,
    request: Request,
) -> Result<(StatusCode, Json<Plugin>), ApiError> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    if !essence.eq_ignore_ascii_case("application/wasm") {
        return Err(ApiError::new(
            Code::UnsupportedMediaType,
            format!(
                "send the component as the body with content-type: application/wasm; got {}",
                if content_type.is_empty() {
                    "no content-type"
                } else {
                    content_type
                }
            ),
        ));
    }
    // The tenant's turn first, so its queued uploads wait with their bodies unread.
    let turn = state.tenant_policies.upload_turn(admin.tenant()).await;
    let limit = state.tenant_policies.max_upload_bytes();
    let bytes = Bytes::from_request(request, &state)
        .await
        .map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    Code::ComponentTooLarge,
                    format!("the component is larger than the limit of {limit} bytes"),
                )
                .with("limit", limit)
            } else {
                ApiError::new(
                    Code::MalformedJson,
                    format!("the body could not be read: {rejection}"),
                )
            }
        })?;
    let upload = Upload {
        name: query.name,
        version: query.version,
        bytes: bytes.to_vec(),
    };
    let (plugin, created) = state.tenant_policies.upload(turn, upload).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(plugin.into())))
}

/// `GET /plugins`: the tenant's plugins, oldest first.
#[utoipa::path(
    get,
    path = "/plugins",
    tag = "plugins",
    summary = "List the tenant's plugins (admin)",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The tenant's plugins, oldest first.", body = PluginList),
        (status = 403, description = "`admin_required`: only an admin of the tenant may do this.", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn list(
    State(state): State<AppState>,
    admin: Admin,
) -> Result<Json<PluginList>, ApiError> {
    let plugins = state.tenant_policies.plugins(admin.tenant()).await?;
    let items = plugins.into_iter().map(Plugin::from).collect();
    Ok(Json(PluginList { items }))
}

/// `GET /plugins/{id}`.
#[utoipa::path(
    get,
    path = "/plugins/{id}",
    tag = "plugins",
    summary = "A plugin, with this node's call counters (admin)",
    params(("id" = PluginId, Path, description = "A plugin of the tenant.")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The plugin.", body = Plugin),
        (status = 403, description = "`admin_required`: only an admin of the tenant may do this.", body = Problem, content_type = PROBLEM),
        (status = 404, description = "`not_found`: no such plugin in your tenant.", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn get(
    State(state): State<AppState>,
    admin: Admin,
    Id(id): Id<PluginId>,
) -> Result<Json<Plugin>, ApiError> {
    let plugin = state.tenant_policies.plugin(admin.tenant(), &id).await?;
    Ok(Json(plugin.into()))
}

/// `POST /plugins/{id}/enable`: serves its hooks again after it was disabled.
#[utoipa::path(
    post,
    path = "/plugins/{id}/enable",
    tag = "plugins",
    summary = "Enable a disabled plugin (admin)",
    params(("id" = PluginId, Path, description = "A plugin of the tenant.")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Enabled.", body = Plugin),
        (status = 403, description = "`admin_required`: only an admin of the tenant may do this.", body = Problem, content_type = PROBLEM),
        (status = 404, description = "`not_found`: no such plugin in your tenant.", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn enable(
    State(state): State<AppState>,
    admin: Admin,
    Id(id): Id<PluginId>,
) -> Result<Json<Plugin>, ApiError> {
    let plugin = state.tenant_policies.enable(admin.tenant(), &id).await?;
    Ok(Json(plugin.into()))
}

/// `DELETE /plugins/{id}`: 204, or 409 while a hook uses it.
#[utoipa::path(
    delete,
    path = "/plugins/{id}",
    tag = "plugins",
    summary = "Delete a plugin (admin)",
    params(("id" = PluginId, Path, description = "A plugin of the tenant.")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted."),
        (status = 403, description = "`admin_required`: only an admin of the tenant may do this.", body = Problem, content_type = PROBLEM),
        (status = 404, description = "`not_found`: no such plugin in your tenant.", body = Problem, content_type = PROBLEM),
        (status = 409, description = "`conflict`: a hook uses it (`hooks` lists them).", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn delete(
    State(state): State<AppState>,
    admin: Admin,
    Id(id): Id<PluginId>,
) -> Result<StatusCode, ApiError> {
    state.tenant_policies.delete(admin.tenant(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
