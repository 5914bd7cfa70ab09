//! `/hooks` (tenant admins): which plugin serves each hook, binding the tenant's own plugins,
//! returning a hook to the built-in default, and dry runs.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{ApiError, Code};
use super::extract::{ApiJson, Caller, from_json_value};
use crate::app::AppState;
use crate::clock::rfc3339;
use crate::domain::ids::MessageId;
use crate::domain::message::Channel;
use crate::domain::plugin::Hook;
use crate::messages::submit::{Submission, draft};
use crate::messages::view::EventView;
use crate::policies::{BindingRequest, Bound, Hooks, Retry, Simulation, Source};

/// Simulated attempts when a dry run does not say.
const DEFAULT_ATTEMPTS: u32 = 10;
/// The most attempts a dry run simulates.
const MAX_ATTEMPTS: u32 = 50;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ValidatorsBody {
    plugins: Vec<BindingRequest>,
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
pub(super) async fn delete_validators(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    unbind(&state, &caller, Hook::Validators).await
}

/// `PUT /hooks/delay-policy`: one binding.
pub(super) async fn put_delay_policy(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<BindingRequest>,
) -> Result<Json<Value>, ApiError> {
    bind(&state, &caller, Hook::DelayPolicy, &[body]).await
}

/// `DELETE /hooks/delay-policy`: back to the built-in.
pub(super) async fn delete_delay_policy(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    unbind(&state, &caller, Hook::DelayPolicy).await
}

/// `PUT /hooks/channels/{name}`: one binding, with its HTTP allow-list.
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
pub(super) async fn delete_channel(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let hook = channel_hook(&name)?;
    unbind(&state, &caller, hook).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DryRunBody {
    /// A sample message, as `POST /messages` takes it.
    #[serde(default)]
    message: Option<Value>,
    /// Or a stored message of the tenant.
    #[serde(default)]
    message_id: Option<String>,
    /// Failed attempts to simulate.
    #[serde(default)]
    attempts: Option<u32>,
    /// What each simulated failure reports.
    #[serde(default)]
    error: Option<String>,
    /// The channel's retry-after hint with each failure, in ms.
    #[serde(default)]
    retry_after_ms: Option<u64>,
    /// Proposed bindings to use instead of the current ones.
    #[serde(default)]
    hooks: Option<ProposedHooks>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ProposedHooks {
    #[serde(default)]
    validators: Option<ValidatorsBody>,
    #[serde(default, rename = "delay-policy")]
    delay_policy: Option<BindingRequest>,
}

/// `POST /hooks/dry-run`: every decision the tenant's hooks (or proposed ones) make on a
/// sample message, and the retry schedule for simulated failures. Stores and sends nothing.
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
            let submission: Submission = from_json_value(sample).map_err(|error| {
                let field = format!("/message{}", error.field_name().unwrap_or_default());
                ApiError::field(field.clone(), format!("{field}: {}", error.detail()))
            })?;
            draft(&state, &caller.user, submission, state.clock.now_ms()).await?
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
