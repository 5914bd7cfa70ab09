//! `/hooks` (tenant admins): which plugin serves each hook, binding the tenant's own plugins,
//! returning a hook to the built-in default, and dry runs.

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::ToSchema;

use super::error::{ApiError, Code};
use super::extract::{Admin, ApiJson, from_json_value};
use super::openapi::{PROBLEM, Problem};
use crate::clock::rfc3339;
use crate::domain::ids::{MessageId, PluginId};
use crate::domain::message::Channel;
use crate::domain::plugin::Hook;
use crate::policies::{
    BindingRequest, Bound, Hooks, Rejection, Retry, RetryStep, Simulation, Source,
};
use crate::sandbox::LimitOverrides;
use crate::state::AppState;
use crate::use_cases::messages::submit::Submission;
use crate::use_cases::messages::view::EventView;
use crate::use_cases::policies::{DryRunOutcome, Sample, within_message};

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

/// What serves one hook.
#[derive(Serialize, ToSchema)]
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
    /// Limits lower than the operator's.
    limits: LimitOverrides,
    /// Why a built-in stands in for the tenant's plugin (it is disabled), if it does.
    standing_in_because: Option<String>,
}

/// The channel hooks.
#[derive(Serialize, ToSchema)]
pub(super) struct ChannelHooks {
    /// Delivers to the recipient's inbox and live connections.
    inbox: BoundHook,
    /// POSTs to the recipient's webhook endpoint.
    webhook: BoundHook,
}

/// What serves each hook now.
#[derive(Serialize, ToSchema)]
pub(super) struct HooksView {
    /// Run in order; each may refuse a message.
    validators: Vec<BoundHook>,
    /// Plans delivery times and retries.
    #[serde(rename = "delay-policy")]
    delay_policy: BoundHook,
    /// Deliver messages, one plugin per channel.
    channels: ChannelHooks,
}

fn channel_hook(name: &str) -> Result<Hook, ApiError> {
    let channel: Channel = name
        .parse()
        .map_err(|reason: String| ApiError::new(Code::NotFound, reason))?;
    Ok(Hook::Channel(channel))
}

impl From<&Bound> for BoundHook {
    fn from(bound: &Bound) -> Self {
        let plugin_id = match &bound.source {
            Source::Builtin => None,
            Source::Tenant(id) => Some(id.clone()),
        };
        Self {
            name: bound.name.to_string(),
            digest: format!("sha256:{}", bound.plugin.digest()),
            builtin: plugin_id.is_none(),
            plugin_id,
            config: bound.binding.config.clone(),
            allowed_hosts: bound.binding.allowed_hosts.clone(),
            limits: bound.binding.limits,
            standing_in_because: bound.standing_in.as_deref().map(str::to_owned),
        }
    }
}

impl From<&Hooks> for HooksView {
    fn from(hooks: &Hooks) -> Self {
        Self {
            validators: hooks.validators.iter().map(BoundHook::from).collect(),
            delay_policy: BoundHook::from(&hooks.delay),
            channels: ChannelHooks {
                inbox: BoundHook::from(&hooks.inbox),
                webhook: BoundHook::from(&hooks.webhook),
            },
        }
    }
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
    admin: Admin,
) -> Result<Json<HooksView>, ApiError> {
    let hooks = state.tenant_policies.hooks(admin.tenant()).await?;
    Ok(Json(HooksView::from(&*hooks)))
}

async fn bind(
    state: &AppState,
    admin: &Admin,
    hook: Hook,
    requests: &[BindingRequest],
) -> Result<Json<HooksView>, ApiError> {
    let hooks = state
        .tenant_policies
        .bind(admin.tenant(), hook, requests)
        .await?;
    Ok(Json(HooksView::from(&*hooks)))
}

async fn unbind(state: &AppState, admin: &Admin, hook: Hook) -> Result<Json<HooksView>, ApiError> {
    bind(state, admin, hook, &[]).await
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
    admin: Admin,
    ApiJson(body): ApiJson<ValidatorsBody>,
) -> Result<Json<HooksView>, ApiError> {
    if body.plugins.is_empty() {
        return Err(ApiError::field(
            "/plugins",
            "/plugins: bind at least one validator, or DELETE /hooks/validators to return to the built-in",
        ));
    }
    bind(&state, &admin, Hook::Validators, &body.plugins).await
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
    admin: Admin,
) -> Result<Json<HooksView>, ApiError> {
    unbind(&state, &admin, Hook::Validators).await
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
    admin: Admin,
    ApiJson(body): ApiJson<BindingRequest>,
) -> Result<Json<HooksView>, ApiError> {
    bind(&state, &admin, Hook::DelayPolicy, &[body]).await
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
    admin: Admin,
) -> Result<Json<HooksView>, ApiError> {
    unbind(&state, &admin, Hook::DelayPolicy).await
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
    admin: Admin,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<BindingRequest>,
) -> Result<Json<HooksView>, ApiError> {
    let hook = channel_hook(&name)?;
    bind(&state, &admin, hook, &[body]).await
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
    admin: Admin,
    Path(name): Path<String>,
) -> Result<Json<HooksView>, ApiError> {
    let hook = channel_hook(&name)?;
    unbind(&state, &admin, hook).await
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
#[derive(Serialize, ToSchema)]
pub(super) struct DryRunRejection {
    /// The plugin's reason code.
    code: String,
    /// Its reason, a sentence a person can act on.
    reason: String,
    /// The plugin that refused.
    plugin: String,
}

impl From<&Rejection> for DryRunRejection {
    fn from(rejection: &Rejection) -> Self {
        Self {
            code: rejection.code.clone(),
            reason: rejection.reason.clone(),
            plugin: rejection.plugin.clone(),
        }
    }
}

/// The validators' verdict in a dry run.
#[derive(Serialize, ToSchema)]
pub(super) struct DryRunValidation {
    /// Whether every validator accepted the message.
    accepted: bool,
    /// Why not, when not accepted (absent when accepted).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    rejection: Option<DryRunRejection>,
}

/// The delay policy's plan in a dry run: a time (`deliver_at` and `deliver_at_ms`), or a
/// refusal (`rejection`).
#[derive(Serialize, ToSchema)]
pub(super) struct DryRunDelivery {
    /// When the first delivery is planned.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, format = DateTime)]
    deliver_at: Option<String>,
    /// `deliver_at` in Unix milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    deliver_at_ms: Option<u64>,
    /// Why the delay policy refused the message.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    rejection: Option<DryRunRejection>,
}

/// One simulated failure and the delay policy's answer: a retry time (`retry_at` and
/// `wait_ms`), or giving up (`give_up`).
#[derive(Serialize, ToSchema)]
pub(super) struct DryRunRetry {
    /// The attempt that failed: 1 for the first delivery.
    attempt: u32,
    /// When it failed (the time it was due).
    #[schema(format = DateTime)]
    failed_at: String,
    /// When the policy would try again.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, format = DateTime)]
    retry_at: Option<String>,
    /// From the failure to the retry, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    wait_ms: Option<u64>,
    /// Why the policy gave up (the message would be dead).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    give_up: Option<String>,
}

impl From<&RetryStep> for DryRunRetry {
    fn from(step: &RetryStep) -> Self {
        let (retry_at, wait_ms, give_up) = match &step.decision {
            Retry::At(at) => (
                Some(rfc3339(*at)),
                Some(at.saturating_sub(step.failed_at_ms)),
                None,
            ),
            Retry::GiveUp(reason) => (None, None, Some(reason.clone())),
        };
        Self {
            attempt: step.attempt,
            failed_at: rfc3339(step.failed_at_ms),
            retry_at,
            wait_ms,
            give_up,
        }
    }
}

/// What a dry run decided. Nothing is stored or sent.
#[derive(Serialize, ToSchema)]
pub(super) struct DryRunResult {
    /// The sample's (new, unstored) id, or the stored message's.
    message_id: MessageId,
    /// The hooks that decided: the tenant's, or the proposed ones.
    hooks: HooksView,
    /// The validators' verdict.
    validation: DryRunValidation,
    /// The delay policy's plan; `null` when validation refused the message.
    delivery: Option<DryRunDelivery>,
    /// The retry schedule for the simulated failures.
    retries: Vec<DryRunRetry>,
    /// Every decision, as a message's history records it.
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
    admin: Admin,
    ApiJson(body): ApiJson<DryRunBody>,
) -> Result<Json<DryRunResult>, ApiError> {
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
    let sample = match (body.message, body.message_id) {
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
            let submission: Submission = from_json_value(sample).map_err(|error| {
                let inner = error.field_name().unwrap_or("/");
                let detail = error.detail();
                let reason = detail.strip_prefix(&format!("{inner}: ")).unwrap_or(detail);
                let field = within_message(inner);
                ApiError::field(field.clone(), format!("{field}: {reason}"))
            })?;
            Sample::New(submission)
        }
        (None, Some(id)) => Sample::Stored(id.parse().map_err(|_| ApiError::not_found("message"))?),
    };
    let mut proposals = Vec::new();
    if let Some(proposed) = body.hooks {
        if let Some(validators) = proposed.validators {
            proposals.push((Hook::Validators, validators.plugins));
        }
        if let Some(delay) = proposed.delay_policy {
            proposals.push((Hook::DelayPolicy, vec![delay]));
        }
    }
    let simulation = Simulation {
        attempts,
        error: body.error.unwrap_or_else(|| "simulated failure".into()),
        retry_after_ms: body.retry_after_ms,
    };
    let DryRunOutcome {
        message_id,
        hooks,
        run,
    } = state
        .tenant_policies
        .dry_run(&admin.user, sample, &proposals, &simulation)
        .await?;
    Ok(Json(DryRunResult {
        message_id,
        hooks: HooksView::from(&*hooks),
        validation: match &run.validation {
            Ok(()) => DryRunValidation {
                accepted: true,
                rejection: None,
            },
            Err(refused) => DryRunValidation {
                accepted: false,
                rejection: Some(DryRunRejection::from(refused)),
            },
        },
        delivery: run.delivery.as_ref().map(|planned| match planned {
            Ok(at) => DryRunDelivery {
                deliver_at: Some(rfc3339(*at)),
                deliver_at_ms: Some(*at),
                rejection: None,
            },
            Err(refused) => DryRunDelivery {
                deliver_at: None,
                deliver_at_ms: None,
                rejection: Some(DryRunRejection::from(refused)),
            },
        }),
        retries: run.retries.iter().map(DryRunRetry::from).collect(),
        events: run.events.into_iter().map(EventView::from).collect(),
        stored: false,
    }))
}
