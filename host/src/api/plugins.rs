//! `/plugins` (tenant admins): upload a Wasm component, list, show (with this node's call
//! counters), enable after it was disabled, delete when no hook uses it.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{StatusCode, header};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{ApiError, Code};
use super::extract::{ApiQuery, Caller};
use crate::app::AppState;
use crate::clock::rfc3339;
use crate::domain::ids::PluginId;
use crate::domain::plugin::{HookBinding, PluginRecord};
use crate::policies::Upload;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UploadQuery {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    version: Option<String>,
}

/// A plugin as the API shows it.
fn view(state: &AppState, plugin: &PluginRecord, bindings: &[HookBinding]) -> Value {
    let bound_to: Vec<String> = bindings
        .iter()
        .filter(|binding| binding.plugin_id == plugin.id)
        .map(|binding| binding.hook.to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    json!({
        "id": plugin.id,
        "name": plugin.name,
        "version": plugin.version,
        "world": plugin.world.as_str(),
        "digest": format!("sha256:{}", plugin.digest),
        "size": plugin.size,
        "created_at": rfc3339(plugin.created_at_ms),
        "disabled": plugin.disabled.as_ref().map(|disabled| json!({
            "at": rfc3339(disabled.at_ms),
            "reason": disabled.reason,
        })),
        "bound_to": bound_to,
        "stats": state.policies.counters(&plugin.tenant_id, &plugin.id),
    })
}

fn parse_id(id: &str) -> Result<PluginId, ApiError> {
    id.parse().map_err(|_| ApiError::not_found("plugin"))
}

/// `POST /plugins`: the body is the component (`application/wasm`); `?name=&version=`.
/// 201 with the new plugin, or 200 with the one stored before for the same bytes.
pub(super) async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<UploadQuery>,
    request: Request,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require_admin()?;
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
    let limit = state.policies.sandbox().max_component_bytes();
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
    let (plugin, created) = state
        .policies
        .upload(
            caller.tenant(),
            Upload {
                name: query.name,
                version: query.version,
                bytes: bytes.to_vec(),
            },
        )
        .await?;
    let bindings = state.store.hook_bindings(caller.tenant()).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view(&state, &plugin, &bindings))))
}

/// `GET /plugins`: the tenant's plugins, oldest first.
pub(super) async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    let plugins = state.store.plugins(caller.tenant()).await?;
    let bindings = state.store.hook_bindings(caller.tenant()).await?;
    let items: Vec<Value> = plugins
        .iter()
        .map(|plugin| view(&state, plugin, &bindings))
        .collect();
    Ok(Json(json!({ "items": items })))
}

/// `GET /plugins/{id}`.
pub(super) async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    let id = parse_id(&id)?;
    let plugin = state
        .store
        .plugin(caller.tenant(), &id)
        .await?
        .ok_or_else(|| ApiError::not_found("plugin"))?;
    let bindings = state.store.hook_bindings(caller.tenant()).await?;
    Ok(Json(view(&state, &plugin, &bindings)))
}

/// `POST /plugins/{id}/enable`: serves its hooks again after it was disabled.
pub(super) async fn enable(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    let id = parse_id(&id)?;
    let plugin = state.policies.enable_plugin(caller.tenant(), &id).await?;
    let bindings = state.store.hook_bindings(caller.tenant()).await?;
    Ok(Json(view(&state, &plugin, &bindings)))
}

/// `DELETE /plugins/{id}`: 204, or 409 while a hook uses it.
pub(super) async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin()?;
    let id = parse_id(&id)?;
    state.policies.delete_plugin(caller.tenant(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
