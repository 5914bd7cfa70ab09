//! `/hooks` (tenant admins): which plugin serves each hook, binding the tenant's own plugins,
//! returning a hook to the built-in default, and dry runs.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use utoipa::ToSchema;

use super::error::{ApiError, Code};
use super::extract::{ApiJson, Caller, from_json_value};
use super::openapi::{PROBLEM, Problem};
use crate::clock::rfc3339;
use crate::domain::ids::{MessageId, PluginId};
use crate::domain::message::Channel;
use crate::domain::plugin::Hook;
use crate::policies::{BindingRequest, Bound, Hooks, Retry, Simulation, Source};
use crate::sandbox::LimitOverrides;
use crate::state::AppState;
use crate::use_cases::messages::submit::{Submission, draft};
use crate::use_cases::messages::view::EventView;

/// Simulated attempts when a dry run does not say.
const DEFAULT_ATTEMPTS: u32 = 10;
/// The most attempts a dry run simulates.
const MAX_ATTEMPTS: u32 = 50;
/// The longest simulated retry-after hint: a year, the longest a channel may give
/// (`MAX_RETRY_AFTER_MS` of `sandbox/hooks.rs`, which refuses a longer one from a plugin).
const MAX_RETRY_AFTER_MS: u64 = 365 * 86_400_000;

/// The validators to run, in order.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ValidatorsBody {
    plugins: Vec<BindingRequest>,
}

/// What serves one hook (built with `json!` by `bound_view`).
#[derive(ToSchema)]
#[allow(
    dead_code,
    reason = "documents the JSON `bound_view` builds; never constructed"
)]
pub(super) struct BoundHook {
    /// The plugin's name (a built-in's, or the tenant plugin's).
    name: String,
    /// `sha256:` and the hex SHA-256 of its component.
    digest: String,
    /// Whether it is a built-in default.
    builtin: bool,
    /// The tenant plugin, when it is not a built-in.
    plugin_id: Option<PluginId>,
    /// Values the plugin reads with `config(key)`.
    config: BTreeMap<String, String>,
    /// For channels: hosts `http-send` may reach.
    allowed_hosts: Vec<String>,
    limits: LimitOverrides,
    /// Why a built-in stands in for the tenant's plugin (it is disabled), if it does.
    standing_in_because: Option<String>,
}

/// The channel hooks.
#[derive(ToSchema)]
#[allow(
    dead_code,
    reason = "documents the JSON `hooks_view` builds; never constructed"
)]
pub(super) struct ChannelHooks {
    inbox: BoundHook,
    webhook: BoundHook,
}

/// What serves each hook now (built with `json!` by `hooks_view`).
#[derive(ToSchema)]
#[allow(
    dead_code,
    reason = "documents the JSON `hooks_view` builds; never constructed"
)]
pub(super) struct HooksView {
    /// Run in order; each may refuse a message.
    validators: Vec<BoundHook>,
    /// Plans delivery times and retries.
    #[schema(rename = "delay-policy")]
    delay_policy: BoundHook,
    channels: ChannelHooks,
}

fn channel_hook(name: &str) -> Result<Hook, ApiError> {
    let channel: Channel = name
        .parse()
        .map_err(|reason: String| ApiError::new(Code::NotFound, reason))?;
    Ok(Hook::Channel(channel))
}

fn bound_view(bound: &Bound) -> Value {
    let (builtin, plugin_id) = match &bound.source {
        Source::Builtin => (true, None),
        Source::Tenant(id) => (false, Some(id)),
    };
    json!({
        "name": &*bound.name,
        "digest": format!("sha256:{}", bound.plugin.digest()),
        "builtin": builtin,
        "plugin_id": plugin_id,
        "config": bound.binding.config,
        "allowed_hosts": bound.binding.allowed_hosts,
        "limits": bound.binding.limits,
        "standing_in_because": bound.standing_in.as_deref(),
    })
}

fn hooks_view(hooks: &Hooks) -> Value {
    json!({
        "validators": hooks.validators.iter().map(bound_view).collect::<Vec<_>>(),
        "delay-policy": bound_view(&hooks.delay),
        "channels": {
            "inbox": bound_view(&hooks.inbox),
            "webhook": bound_view(&hooks.webhook),
        },
    })
}

/// `GET /hooks`: what serves each hook now (the tenant's plugins, or the built-ins).
#[utoipa::path(
    get,
    path = "/hooks",
    tag = "hooks",
    summary = "What serves each hook (admin)",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The tenant's plugins, or the built-ins.", body = HooksView),
        (status = 403, description = "`admin_required`: only an admin of the tenant may do this.", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn get(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    let hooks = state.policies.hooks(caller.tenant()).await?;
    Ok(Json(hooks_view(&hooks)))
}

async fn bind(
    state: &AppState,
    caller: &Caller,
    hook: Hook,
    requests: &[BindingRequest],
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    state.policies.bind(caller.tenant(), hook, requests).await?;
    let hooks = state.policies.hooks(caller.tenant()).await?;
    Ok(Json(hooks_view(&hooks)))
}

async fn unbind(state: &AppState, caller: &Caller, hook: Hook) -> Result<Json<Value>, ApiError> {
    bind(state, caller, hook, &[]).await
}

/// `PUT /hooks/validators`: `{"plugins": [binding, ...]}`, run in order (`[]`: none).
#[utoipa::path(
    put,
    path = "/hooks/validators",
    tag = "hooks",
    summary = "Bind validators (admin)",
    description = "The tenant's validator plugins, run in order. Returns what serves each hook now.",
    request_body = ValidatorsBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Bound.", body = HooksView),
        (status = 403, description = "`admin_required`: only an admin of the tenant may do this.", body = Problem, content_type = PROBLEM),
        (status = 422, description = "`invalid_field`: a binding is not possible (the plugin is unknown, disabled or of another world, or a limit or host is not allowed); `field` names it.", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn put_validators(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<ValidatorsBody>,
) -> Result<Json<Value>, ApiError> {
    if body.plugins.is_empty() {
        return Err(ApiError::field(
            "/plugins",
            "/plugins: bind at least one validator, or DELETE /hooks/validators to return to the built-in",
        ));
    }
    bind(&state, &caller, Hook::Validators, &body.plugins).await
}

/// `DELETE /hooks/validators`: back to the built-in validator.
#[utoipa::path(
    delete,
    path = "/hooks/validators",
    tag = "hooks",
    summary = "Return to the built-in validator (admin)",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Unbound.", body = HooksView),
        (status = 403, description = "`admin_required`: only an admin of the tenant may do this.", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn delete_validators(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    unbind(&state, &caller, Hook::Validators).await
}

/// `PUT /hooks/delay-policy`: one binding.
#[utoipa::path(
    put,
    path = "/hooks/delay-policy",
    tag = "hooks",
    summary = "Bind the delay policy (admin)",
    request_body = BindingRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Bound.", body = HooksView),
        (status = 403, description = "`admin_required`: only an admin of the tenant may do this.", body = Problem, content_type = PROBLEM),
        (status = 422, description = "`invalid_field`: a binding is not possible (the plugin is unknown, disabled or of another world, or a limit or host is not allowed); `field` names it.", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn put_delay_policy(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<BindingRequest>,
) -> Result<Json<Value>, ApiError> {
    bind(&state, &caller, Hook::DelayPolicy, &[body]).await
}

/// `DELETE /hooks/delay-policy`: back to the built-in.
#[utoipa::path(
    delete,
    path = "/hooks/delay-policy",
    tag = "hooks",
    summary = "Return to the built-in delay policy (admin)",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Unbound.", body = HooksView),
        (status = 403, description = "`admin_required`: only an admin of the tenant may do this.", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn delete_delay_policy(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    unbind(&state, &caller, Hook::DelayPolicy).await
}

/// `PUT /hooks/channels/{name}`: one binding, with its HTTP allow-list.
#[utoipa::path(
    put,
    path = "/hooks/channels/{name}",
    tag = "hooks",
    summary = "Bind a channel (admin)",
    description = "One channel plugin, with the hosts its `http-send` may reach.",
    params(("name" = Channel, Path, description = "The channel: `inbox` or `webhook`.")),
    request_body = BindingRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Bound.", body = HooksView),
        (status = 403, description = "`admin_required`: only an admin of the tenant may do this.", body = Problem, content_type = PROBLEM),
        (status = 404, description = "`not_found`: there is no such channel.", body = Problem, content_type = PROBLEM),
        (status = 422, description = "`invalid_field`: a binding is not possible (the plugin is unknown, disabled or of another world, or a limit or host is not allowed); `field` names it.", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn put_channel(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<BindingRequest>,
) -> Result<Json<Value>, ApiError> {
    let hook = channel_hook(&name)?;
    bind(&state, &caller, hook, &[body]).await
}

/// `DELETE /hooks/channels/{name}`: back to the built-in.
#[utoipa::path(
    delete,
    path = "/hooks/channels/{name}",
    tag = "hooks",
    summary = "Return a channel to its built-in (admin)",
    params(("name" = Channel, Path, description = "The channel: `inbox` or `webhook`.")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Unbound.", body = HooksView),
        (status = 403, description = "`admin_required`: only an admin of the tenant may do this.", body = Problem, content_type = PROBLEM),
        (status = 404, description = "`not_found`: there is no such channel.", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn delete_channel(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let hook = channel_hook(&name)?;
    unbind(&state, &caller, hook).await
}

/// What to dry-run: `message` or `message_id`, and the simulated failures.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct DryRunBody {
    /// A sample message, as `POST /messages` takes it.
    #[serde(default)]
    #[schema(value_type = Option<Submission>)]
    message: Option<Value>,
    /// Or a stored message of the tenant.
    #[serde(default)]
    #[schema(value_type = Option<MessageId>)]
    message_id: Option<String>,
    /// Failed attempts to simulate (default 10, at most 50).
    #[serde(default)]
    #[schema(maximum = 50)]
    attempts: Option<u32>,
    /// What each simulated failure reports.
    #[serde(default)]
    error: Option<String>,
    /// The channel's retry-after hint with each failure, in ms: at most a year, as from a
    /// real channel.
    #[serde(default)]
    #[schema(maximum = 31_536_000_000_u64)]
    retry_after_ms: Option<u64>,
    /// Proposed bindings to use instead of the current ones.
    #[serde(default)]
    hooks: Option<ProposedHooks>,
}

/// Bindings to try instead of the current ones.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ProposedHooks {
    #[serde(default)]
    validators: Option<ValidatorsBody>,
    #[serde(default, rename = "delay-policy")]
    delay_policy: Option<BindingRequest>,
}

/// A refusal in a dry run.
#[derive(ToSchema)]
#[allow(
    dead_code,
    reason = "documents the JSON `dry_run` builds; never constructed"
)]
pub(super) struct DryRunRejection {
    /// The plugin's reason code.
    code: String,
    reason: String,
    /// The plugin that refused.
    plugin: String,
}

/// The validators' verdict in a dry run.
#[derive(ToSchema)]
#[allow(
    dead_code,
    reason = "documents the JSON `dry_run` builds; never constructed"
)]
pub(super) struct DryRunValidation {
    accepted: bool,
    /// When not accepted.
    rejection: Option<DryRunRejection>,
}

/// The delay policy's plan in a dry run: a time, or a refusal.
#[derive(ToSchema)]
#[allow(
    dead_code,
    reason = "documents the JSON `dry_run` builds; never constructed"
)]
pub(super) struct DryRunDelivery {
    #[schema(format = DateTime)]
    deliver_at: Option<String>,
    /// `deliver_at` in Unix milliseconds.
    deliver_at_ms: Option<u64>,
    rejection: Option<DryRunRejection>,
}

/// One simulated failure and the delay policy's answer: a retry time, or giving up.
#[derive(ToSchema)]
#[allow(
    dead_code,
    reason = "documents the JSON `dry_run` builds; never constructed"
)]
pub(super) struct DryRunRetry {
    attempt: u32,
    #[schema(format = DateTime)]
    failed_at: String,
    #[schema(format = DateTime)]
    retry_at: Option<String>,
    wait_ms: Option<u64>,
    /// Why the policy gave up (the message would be dead).
    give_up: Option<String>,
}

/// What a dry run decided (built with `json!`). Nothing is stored or sent.
#[derive(ToSchema)]
#[allow(
    dead_code,
    reason = "documents the JSON `dry_run` builds; never constructed"
)]
pub(super) struct DryRunResult {
    /// The sample's (new, unstored) id, or the stored message's.
    message_id: MessageId,
    hooks: HooksView,
    validation: DryRunValidation,
    /// Absent (`null`) when validation refused the message.
    delivery: Option<DryRunDelivery>,
    retries: Vec<DryRunRetry>,
    events: Vec<EventView>,
    /// Always `false`.
    stored: bool,
}

/// `POST /hooks/dry-run`: every decision the tenant's hooks (or proposed ones) make on a
/// sample message, and the retry schedule for simulated failures. Stores and sends nothing.
#[utoipa::path(
    post,
    path = "/hooks/dry-run",
    tag = "hooks",
    summary = "Dry-run the hooks on a message (admin)",
    description = "Every decision the tenant's hooks (or proposed ones) make on a sample or stored message, and the retry schedule for simulated failures. Stores and sends nothing.",
    request_body = DryRunBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The decisions.", body = DryRunResult),
        (status = 403, description = "`admin_required`: only an admin of the tenant may do this.", body = Problem, content_type = PROBLEM),
        (status = 404, description = "`not_found`: no such message (`message_id`) in your tenant.", body = Problem, content_type = PROBLEM),
        (status = 422, description = "`invalid_field`: the sample message (`field` is then `/message/…`), a proposed binding, `attempts` or `retry_after_ms` is invalid; `field` names it.", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn dry_run(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<DryRunBody>,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    let attempts = body.attempts.unwrap_or(DEFAULT_ATTEMPTS);
    if attempts > MAX_ATTEMPTS {
        return Err(ApiError::field(
            "/attempts",
            format!("/attempts: at most {MAX_ATTEMPTS} attempts are simulated"),
        ));
    }
    // A hint no channel may give; a year of them still ends long before the year 9999.
    if let Some(wait) = body.retry_after_ms
        && wait > MAX_RETRY_AFTER_MS
    {
        return Err(ApiError::field(
            "/retry_after_ms",
            format!(
                "/retry_after_ms: at most {MAX_RETRY_AFTER_MS} ms (a year), the longest a channel may ask for"
            ),
        ));
    }
    let message = match (body.message, body.message_id) {
        (Some(_), Some(_)) => {
            return Err(ApiError::field(
                "/message_id",
                "/message_id: give message or message_id, not both",
            ));
        }
        (None, None) => {
            return Err(ApiError::field(
                "/message",
                "/message: give a sample message (as POST /messages takes it) or a message_id",
            ));
        }
        (Some(sample), None) => {
            // The sample's errors name its fields inside the body: `/message/content`.
            let within = |field: &str, detail: &str| {
                let inner = if field == "/" { "" } else { field };
                let reason = detail.strip_prefix(&format!("{field}: ")).unwrap_or(detail);
                let field = format!("/message{inner}");
                ApiError::field(field.clone(), format!("{field}: {reason}"))
            };
            let submission: Submission = from_json_value(sample)
                .map_err(|error| within(error.field_name().unwrap_or("/"), error.detail()))?;
            draft(
                &state.messages,
                &caller.user,
                submission,
                state.clock.now_ms(),
            )
            .await
            .map_err(|error| match error {
                crate::use_cases::messages::Error::Invalid { field, reason } => {
                    within(&field, &reason)
                }
                other => other.into(),
            })?
        }
        (None, Some(id)) => {
            let id: MessageId = id.parse().map_err(|_| ApiError::not_found("message"))?;
            state
                .store
                .message(caller.tenant(), &id)
                .await?
                .ok_or_else(|| ApiError::not_found("message"))?
        }
    };
    let hooks = match body.hooks {
        None => state.policies.hooks(caller.tenant()).await?,
        Some(proposed) => {
            let mut proposals = Vec::new();
            if let Some(validators) = proposed.validators {
                proposals.push((Hook::Validators, validators.plugins));
            }
            if let Some(delay) = proposed.delay_policy {
                proposals.push((Hook::DelayPolicy, vec![delay]));
            }
            std::sync::Arc::new(state.policies.proposed(caller.tenant(), &proposals).await?)
        }
    };
    let simulation = Simulation {
        attempts,
        error: body.error.unwrap_or_else(|| "simulated failure".into()),
        retry_after_ms: body.retry_after_ms,
    };
    let run = state.policies.dry_run(&hooks, &message, &simulation).await;
    let rejection = |rejection: &crate::policies::Rejection| {
        json!({
            "code": rejection.code,
            "reason": rejection.reason,
            "plugin": rejection.plugin,
        })
    };
    let retries: Vec<Value> = run
        .retries
        .iter()
        .map(|step| match &step.decision {
            Retry::At(at) => json!({
                "attempt": step.attempt,
                "failed_at": rfc3339(step.failed_at_ms),
                "retry_at": rfc3339(*at),
                "wait_ms": at.saturating_sub(step.failed_at_ms),
            }),
            Retry::GiveUp(reason) => json!({
                "attempt": step.attempt,
                "failed_at": rfc3339(step.failed_at_ms),
                "give_up": reason,
            }),
        })
        .collect();
    Ok(Json(json!({
        "message_id": message.id,
        "hooks": hooks_view(&hooks),
        "validation": match &run.validation {
            Ok(()) => json!({ "accepted": true }),
            Err(refused) => json!({ "accepted": false, "rejection": rejection(refused) }),
        },
        "delivery": match &run.delivery {
            None => Value::Null,
            Some(Ok(at)) => json!({ "deliver_at": rfc3339(*at), "deliver_at_ms": at }),
            Some(Err(refused)) => json!({ "rejection": rejection(refused) }),
        },
        "retries": retries,
        "events": run.events.into_iter().map(EventView::from).collect::<Vec<_>>(),
        "stored": false,
    })))
}
