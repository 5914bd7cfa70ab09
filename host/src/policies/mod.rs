//! A tenant's policies: which plugin serves each hook (validators, delay policy, channels), and
//! the fail-safes around every call.
//!
//! Layout: `tenant.rs` resolves and caches what serves each hook of a tenant (its own plugins
//! or the built-ins); `manage.rs` checks and saves uploads and bindings; `health.rs` counts
//! each tenant plugin's calls and failures; `dry_run.rs` runs a tenant's hooks on a sample
//! without storing or sending anything.
//!
//! Each call returns a decision the pipeline can always act on, plus the history entries that
//! say which plugin decided it (by name and digest) and how long it took:
//! - validators: a plugin failure rejects the message (fail closed) with code `plugin_error`;
//! - delay policy: a plugin failure falls back to the built-in `standard-delay` with its
//!   defaults, and the history says so; should that fail too, a last resort delivers at the
//!   requested time (plan) or retries in a minute, up to 8 attempts (retry);
//! - channel: a plugin failure is a retryable failure.
//!
//! A tenant that binds nothing uses the built-ins: `content-guard`, `standard-delay`, and the
//! `inbox` and `webhook` channels. A tenant plugin that fails `failure_limit` calls in a row
//! (on one node) is disabled for its tenant: its hooks return to the built-ins, and the history
//! of the message whose call disabled it, and of every message decided after, says so.
//!
//! Each plugin call runs in a debug-level span naming the plugin (`plugin`, `digest`):
//! `dms.validate`, `dms.plan`, `dms.channel` or `dms.retry`, with one debug line saying what it
//! decided. The caller's span (`dms.submit`, `dms.delivery`) carries the message's id and
//! tenant.

mod dry_run;
mod health;
mod manage;
mod tenant;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument as _;

use crate::clock::Clock;
use crate::domain::feed::NewFeedEvent;
use crate::domain::ids::{PluginId, TenantId};
use crate::domain::message::{Event, EventKind, Message, Requested};
use crate::domain::plugin::{Disabled, PluginQuota};
use crate::realtime::Hub;
use crate::sandbox::{self, Binding, CallError, LoadError, Sandbox};
use crate::store::{Store, StoreError};

pub use dry_run::{DryRun, RetryStep, Simulation};
pub use health::Counters;
pub use manage::{BindingRequest, MAX_VALIDATORS, ManageError, Upload, UploadTurn};
pub use tenant::{Bound, Hooks, Source};
use tenant::{Cache, Defaults};

/// A validator's refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The plugin's code, or `plugin_error` when the plugin failed.
    pub code: String,
    /// Its reason.
    pub reason: String,
    /// The plugin that refused.
    pub plugin: String,
}

/// What the delay policy decided after a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retry {
    /// Try again at this time.
    At(u64),
    /// Dead-letter the message with this reason.
    GiveUp(String),
}

/// The outcome of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempted {
    /// Delivered.
    Delivered,
    /// A temporary failure: its reason and the receiver's retry-after hint.
    Failed {
        /// What went wrong.
        reason: String,
        /// Wait at least this long, in ms.
        retry_after_ms: Option<u64>,
    },
    /// A permanent failure.
    Permanent(String),
}

/// What one delivery attempt did.
#[derive(Debug)]
pub struct Delivered {
    /// How it ended.
    pub attempted: Attempted,
    /// Its history entries.
    pub events: Vec<Event>,
    /// The recipient's own endpoint answered 410 Gone.
    pub endpoint_gone: bool,
    /// What the channel published, to append to users' feeds with the outcome.
    pub published: Vec<NewFeedEvent>,
}

/// Published events as feed events (the import has checked each user id and event).
fn feed_events(published: &[sandbox::Published], at_ms: u64) -> Vec<NewFeedEvent> {
    published
        .iter()
        .filter_map(|published| {
            Some(NewFeedEvent {
                refers_to: None,
                user_id: published.user_id.parse().ok()?,
                at_ms,
                body: published.event.clone(),
            })
        })
        .collect()
}

/// Resolves and calls each tenant's policy plugins.
#[derive(Clone)]
pub struct Policies {
    sandbox: Sandbox,
    clock: Clock,
    defaults: Arc<Defaults>,
    store: Arc<dyn Store>,
    hub: Arc<Hub>,
    cache: Arc<Cache>,
    health: Arc<health::Health>,
    failure_limit: u32,
    quota: PluginQuota,
    uploads: Arc<manage::UploadTurns>,
}

/// Whether a call is for real or part of a dry run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    /// For real: counted in the plugin's health.
    Live,
    /// A dry run: plugins see this time, and nothing is counted.
    Simulated(u64),
}

impl Run {
    fn now(self) -> Option<u64> {
        match self {
            Self::Live => None,
            Self::Simulated(now) => Some(now),
        }
    }
}

impl std::fmt::Debug for Policies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policies").finish_non_exhaustive()
    }
}

/// The last-resort retry interval, when even the built-in delay policy cannot answer.
const LAST_RESORT_RETRY_MS: u64 = 60_000;
/// The last-resort number of attempts.
const LAST_RESORT_ATTEMPTS: u32 = 8;

impl Policies {
    /// Loads the built-in plugins and binds them as every tenant's defaults. `hub` carries
    /// binding changes to other nodes; a tenant plugin failing `failure_limit` calls in a row
    /// is disabled; a tenant stores at most `quota`.
    pub async fn new(
        sandbox: Sandbox,
        store: Arc<dyn Store>,
        hub: Arc<Hub>,
        failure_limit: u32,
        quota: PluginQuota,
    ) -> Result<Self, LoadError> {
        let bind = async |name: &str, binding: Binding| -> Result<Bound, LoadError> {
            Ok(Bound::builtin(sandbox.builtin(name).await?, binding))
        };
        let defaults = Defaults {
            validator: bind("content-guard", Binding::default()).await?,
            delay: bind("standard-delay", Binding::default()).await?,
            inbox: bind("inbox", Binding::default()).await?,
            webhook: bind(
                "webhook",
                Binding {
                    // Recipients choose their own endpoints; the host still refuses private
                    // and loopback addresses.
                    allowed_hosts: vec!["*".into()],
                    ..Binding::default()
                },
            )
            .await?,
        };
        Ok(Self {
            clock: sandbox.clock().clone(),
            sandbox,
            defaults: Arc::new(defaults),
            store,
            hub,
            cache: Arc::default(),
            health: Arc::default(),
            failure_limit: failure_limit.max(1),
            quota,
            uploads: Arc::default(),
        })
    }

    /// The sandbox the hooks run in.
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// What serves each hook of `tenant` now.
    pub async fn hooks(&self, tenant: &TenantId) -> Result<Arc<Hooks>, StoreError> {
        if let Some(hooks) = self.cache.get(tenant) {
            return Ok(hooks);
        }
        let epoch = self.cache.epoch();
        let hooks = Arc::new(
            tenant::resolve(
                self.store.as_ref(),
                &self.sandbox,
                &self.defaults,
                &self.health,
                tenant,
            )
            .await?,
        );
        self.cache.put(tenant, hooks.clone(), epoch);
        Ok(hooks)
    }

    /// The built-in defaults, as a tenant that binds nothing has them.
    pub fn default_hooks(&self) -> Hooks {
        Hooks::defaults(&self.defaults)
    }

    /// The tenant's bindings changed: drop what this node resolved, and tell the other nodes.
    pub fn changed(&self, tenant: &TenantId) {
        self.cache.forget(Some(tenant));
        self.hub.hooks_changed(tenant);
    }

    /// Another node changed a tenant's bindings or plugins (`None`: maybe any tenant's): drop
    /// what this node resolved, and the counters of plugins that were deleted.
    pub fn forget(&self, tenant: Option<&TenantId>) {
        self.cache.forget(tenant);
        self.prune_counters(tenant);
    }

    /// Drops the counters this node keeps for plugins that no longer exist, reading the
    /// tenants' plugins from the database in the background (a failed read is retried at the
    /// next change).
    fn prune_counters(&self, tenant: Option<&TenantId>) {
        let tenants = self.health.tenants(tenant);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if tenants.is_empty() {
            return;
        }
        let (store, health) = (self.store.clone(), self.health.clone());
        runtime.spawn(async move {
            for tenant in tenants {
                match store.plugins(&tenant).await {
                    Ok(plugins) => {
                        health.retain(&tenant, |id| plugins.iter().any(|plugin| &plugin.id == id))
                    }
                    Err(error) => tracing::debug!(
                        message = "Could not read a tenant's plugins to prune their counters.",
                        tenant_id = %tenant,
                        %error,
                    ),
                }
            }
        });
    }

    /// A tenant plugin's counters on this node.
    pub fn counters(&self, tenant: &TenantId, plugin: &PluginId) -> Counters {
        self.health.counters(tenant, plugin)
    }

    /// A tenant plugin was enabled again: its run of failures starts over.
    pub fn enabled(&self, tenant: &TenantId, plugin: &PluginId) {
        self.health.reset_streak(tenant, plugin);
        self.changed(tenant);
    }

    /// The failed calls in a row that disable a tenant plugin.
    pub fn failure_limit(&self) -> u32 {
        self.failure_limit
    }

    /// Runs the tenant's validators in order; the first rejection wins.
    pub async fn validate(
        &self,
        hooks: &Hooks,
        message: &Message,
    ) -> (Result<(), Rejection>, Vec<Event>) {
        self.validate_as(hooks, message, Run::Live).await
    }

    async fn validate_as(
        &self,
        hooks: &Hooks,
        message: &Message,
        run: Run,
    ) -> (Result<(), Rejection>, Vec<Event>) {
        let input = plugin_message(message);
        let mut events = Vec::new();
        for bound in &hooks.validators {
            let span = tracing::debug_span!(
                "dms.validate",
                plugin = %bound.name,
                digest = ?bound.plugin.digest(),
            );
            events.extend(self.standing_in(bound, None, run));
            let started = Instant::now();
            let outcome = self
                .sandbox
                .validate(&bound.plugin, &bound.binding, &input)
                .instrument(span.clone())
                .await;
            events.extend(
                self.observe(
                    &message.tenant_id,
                    bound,
                    started,
                    outcome.as_ref().err(),
                    None,
                    run,
                )
                .await,
            );
            let duration = elapsed_ms(started);
            let rejection = match outcome {
                Ok(Ok(())) => None,
                Ok(Err(rejection)) => Some(Rejection {
                    code: rejection.code,
                    reason: rejection.reason,
                    plugin: bound.name.to_string(),
                }),
                Err(error) => Some(Rejection {
                    code: "plugin_error".into(),
                    reason: format!(
                        "the validator {} failed, so the message is refused: {error}",
                        bound.name
                    ),
                    plugin: bound.name.to_string(),
                }),
            };
            let result = rejection.as_ref().map_or_else(
                || "accepted".to_owned(),
                |r| format!("rejected: {}: {}", r.code, r.reason),
            );
            span.in_scope(|| log_decision("Validator decided.", &result));
            events.push(self.event(EventKind::Decision, bound, None, duration, result));
            if let Some(rejection) = rejection {
                return (Err(rejection), events);
            }
        }
        (Ok(()), events)
    }

    /// Plans the first delivery time, or rejects.
    pub async fn plan(
        &self,
        hooks: &Hooks,
        message: &Message,
    ) -> (Result<u64, Rejection>, Vec<Event>) {
        self.plan_as(hooks, message, Run::Live).await
    }

    async fn plan_as(
        &self,
        hooks: &Hooks,
        message: &Message,
        run: Run,
    ) -> (Result<u64, Rejection>, Vec<Event>) {
        let input = plugin_message(message);
        let bound = &hooks.delay;
        let span = tracing::debug_span!(
            "dms.plan",
            plugin = %bound.name,
            digest = ?bound.plugin.digest(),
        );
        let mut events: Vec<Event> = self.standing_in(bound, None, run).into_iter().collect();
        let started = Instant::now();
        let outcome = self
            .sandbox
            .plan_at(&bound.plugin, &bound.binding, &input, run.now())
            .instrument(span.clone())
            .await;
        events.extend(
            self.observe(
                &message.tenant_id,
                bound,
                started,
                outcome.as_ref().err(),
                None,
                run,
            )
            .await,
        );
        let duration = elapsed_ms(started);
        let decided = match outcome {
            Ok(Ok(at)) => Ok(at),
            Ok(Err(rejection)) => Err(Rejection {
                code: rejection.code,
                reason: rejection.reason,
                plugin: bound.name.to_string(),
            }),
            Err(error) => {
                events.push(span.in_scope(|| self.failure_event(bound, None, duration, &error)));
                return self.plan_fallback(&input, events, run).await;
            }
        };
        let result = match &decided {
            Ok(at) => format!("deliver at {}", crate::clock::rfc3339(*at)),
            Err(r) => format!("rejected: {}: {}", r.code, r.reason),
        };
        span.in_scope(|| log_decision("Delivery planned.", &result));
        events.push(self.event(EventKind::Decision, bound, None, duration, result));
        (decided, events)
    }

    async fn plan_fallback(
        &self,
        input: &sandbox::Message,
        mut events: Vec<Event>,
        run: Run,
    ) -> (Result<u64, Rejection>, Vec<Event>) {
        let fallback = &self.defaults.delay;
        let span = tracing::debug_span!(
            "dms.plan",
            plugin = %fallback.name,
            digest = ?fallback.plugin.digest(),
        );
        let started = Instant::now();
        let outcome = self
            .sandbox
            .plan_at(&fallback.plugin, &fallback.binding, input, run.now())
            .instrument(span.clone())
            .await;
        let duration = elapsed_ms(started);
        let decided = match outcome {
            Ok(Ok(at)) => Ok(at),
            Ok(Err(rejection)) => Err(Rejection {
                code: rejection.code,
                reason: rejection.reason,
                plugin: fallback.name.to_string(),
            }),
            Err(error) => {
                events.push(span.in_scope(|| self.failure_event(fallback, None, duration, &error)));
                let now = run.now().unwrap_or_else(|| self.clock.now_ms());
                let at = representable(match input.requested {
                    sandbox::RequestedTime::Unspecified => now,
                    sandbox::RequestedTime::DelayMs(delay) => {
                        input.created_at_ms.saturating_add(delay)
                    }
                    sandbox::RequestedTime::DeliverAtMs(at) => at.max(now),
                });
                let result = format!(
                    "last resort: no delay policy answered; delivering at the requested time {}",
                    crate::clock::rfc3339(at)
                );
                span.in_scope(|| log_decision("Delivery planned.", &result));
                events.push(Event::host_decision(now, None, result));
                return (Ok(at), events);
            }
        };
        let result = match &decided {
            Ok(at) => format!("fallback: deliver at {}", crate::clock::rfc3339(*at)),
            Err(r) => format!("fallback: rejected: {}: {}", r.code, r.reason),
        };
        span.in_scope(|| log_decision("Delivery planned.", &result));
        events.push(self.event(EventKind::Decision, fallback, None, duration, result));
        (decided, events)
    }

    /// Decides what happens after failed attempt number `attempt`.
    pub async fn retry(
        &self,
        hooks: &Hooks,
        message: &Message,
        attempt: u32,
        last_error: &str,
        retry_after_ms: Option<u64>,
    ) -> (Retry, Vec<Event>) {
        self.retry_as(
            hooks,
            message,
            attempt,
            last_error,
            retry_after_ms,
            Run::Live,
        )
        .await
    }

    async fn retry_as(
        &self,
        hooks: &Hooks,
        message: &Message,
        attempt: u32,
        last_error: &str,
        retry_after_ms: Option<u64>,
        run: Run,
    ) -> (Retry, Vec<Event>) {
        let input = plugin_message(message);
        let attempt_record = sandbox::Attempt {
            number: attempt,
            last_error: Some(last_error.to_owned()),
            retry_after_ms,
        };
        let mut events: Vec<Event> = self
            .standing_in(&hooks.delay, Some(attempt), run)
            .into_iter()
            .collect();
        for (bound, label) in [(&hooks.delay, ""), (&self.defaults.delay, "fallback: ")] {
            let span = tracing::debug_span!(
                "dms.retry",
                plugin = %bound.name,
                digest = ?bound.plugin.digest(),
            );
            let started = Instant::now();
            let outcome = self
                .sandbox
                .retry_at(
                    &bound.plugin,
                    &bound.binding,
                    &input,
                    &attempt_record,
                    run.now(),
                )
                .instrument(span.clone())
                .await;
            events.extend(
                self.observe(
                    &message.tenant_id,
                    bound,
                    started,
                    outcome.as_ref().err(),
                    Some(attempt),
                    run,
                )
                .await,
            );
            let duration = elapsed_ms(started);
            match outcome {
                Ok(decision) => {
                    let (retry, result) = match decision {
                        sandbox::RetryDecision::RetryAtMs(at) => (
                            Retry::At(at),
                            format!("{label}retry at {}", crate::clock::rfc3339(at)),
                        ),
                        sandbox::RetryDecision::GiveUp(reason) => {
                            let result = format!("{label}give up: {reason}");
                            (Retry::GiveUp(reason), result)
                        }
                    };
                    span.in_scope(|| log_decision("Retry decided.", &result));
                    events.push(self.event(
                        EventKind::Decision,
                        bound,
                        Some(attempt),
                        duration,
                        result,
                    ));
                    return (retry, events);
                }
                Err(error) => events.push(
                    span.in_scope(|| self.failure_event(bound, Some(attempt), duration, &error)),
                ),
            }
        }
        let now = run.now().unwrap_or_else(|| self.clock.now_ms());
        let retry = if attempt >= LAST_RESORT_ATTEMPTS {
            Retry::GiveUp(format!(
                "gave up after {attempt} attempts; no delay policy answered; last error: {last_error}"
            ))
        } else {
            // `retry_after_ms` comes from the channel (a receiver's Retry-After) or a dry run's
            // request, and a simulated `now` can already be far out: saturate, never wrap.
            Retry::At(representable(now.saturating_add(
                LAST_RESORT_RETRY_MS.max(retry_after_ms.unwrap_or(0)),
            )))
        };
        let result = match &retry {
            Retry::At(at) => format!(
                "last resort: no delay policy answered; retry at {}",
                crate::clock::rfc3339(*at)
            ),
            Retry::GiveUp(reason) => format!("last resort: {reason}"),
        };
        log_decision("Retry decided.", &result);
        events.push(Event::host_decision(now, Some(attempt), result));
        (retry, events)
    }

    /// Delivers one attempt through the message's channel.
    pub async fn deliver(
        &self,
        hooks: &Hooks,
        message: &Message,
        address: &sandbox::Address,
    ) -> Delivered {
        let input = plugin_message(message);
        let bound = if crate::domain::callback::is_callback(message) {
            &hooks.callback
        } else {
            hooks.channel(message.channel)
        };
        let span = tracing::debug_span!(
            "dms.channel",
            plugin = %bound.name,
            digest = ?bound.plugin.digest(),
        );
        let attempt = Some(message.attempts);
        let mut events: Vec<Event> = self
            .standing_in(bound, attempt, Run::Live)
            .into_iter()
            .collect();
        let started = Instant::now();
        let outcome = self
            .sandbox
            .deliver_to(&bound.plugin, &bound.binding, &input, address)
            .instrument(span.clone())
            .await;
        events.extend(
            self.observe(
                &message.tenant_id,
                bound,
                started,
                outcome.as_ref().err(),
                attempt,
                Run::Live,
            )
            .await,
        );
        let duration = elapsed_ms(started);
        let (endpoint_gone, published) = match &outcome {
            Ok(delivery) => (
                delivery.endpoint_gone,
                feed_events(&delivery.published, self.clock.now_ms()),
            ),
            Err(_) => (false, Vec::new()),
        };
        let (attempted, result) = match outcome.map(|delivery| delivery.result) {
            Ok(sandbox::DeliveryResult::Delivered) => {
                (Attempted::Delivered, "delivered".to_owned())
            }
            Ok(sandbox::DeliveryResult::Retry(later)) => {
                let result = format!("failed, will retry: {}", later.reason);
                (
                    Attempted::Failed {
                        reason: later.reason,
                        retry_after_ms: later.after_ms,
                    },
                    result,
                )
            }
            Ok(sandbox::DeliveryResult::Failed(reason)) => {
                let result = format!("failed permanently: {reason}");
                (Attempted::Permanent(reason), result)
            }
            Err(error) => {
                let reason = format!("the channel plugin failed: {error}");
                let result = format!("failed, will retry: {reason}");
                (
                    Attempted::Failed {
                        reason,
                        retry_after_ms: None,
                    },
                    result,
                )
            }
        };
        // The sender sees what is recorded here; the endpoint's path and query (where
        // receivers keep tokens) are its owner's alone, whoever wrote them into the text.
        let url = address.url.as_deref();
        let attempted = match attempted {
            Attempted::Delivered => Attempted::Delivered,
            Attempted::Permanent(reason) => Attempted::Permanent(hide_endpoint(reason, url)),
            Attempted::Failed {
                reason,
                retry_after_ms,
            } => Attempted::Failed {
                reason: hide_endpoint(reason, url),
                retry_after_ms,
            },
        };
        let result = hide_endpoint(result, url);
        span.in_scope(|| log_decision("Channel attempted.", &result));
        events.push(self.event(EventKind::Attempt, bound, attempt, duration, result));
        Delivered {
            attempted,
            events,
            endpoint_gone,
            published,
        }
    }

    fn event(
        &self,
        kind: EventKind,
        bound: &Bound,
        attempt: Option<u32>,
        duration_ms: u64,
        result: String,
    ) -> Event {
        Event::plugin(
            self.clock.now_ms(),
            kind,
            bound.reference(),
            attempt,
            duration_ms,
            result,
        )
    }

    fn failure_event(
        &self,
        bound: &Bound,
        attempt: Option<u32>,
        duration_ms: u64,
        error: &CallError,
    ) -> Event {
        tracing::warn!(
            message = "A plugin call failed; applying the hook's fail-safe.",
            plugin = &*bound.name,
            kind = error.kind().as_str(),
            %error,
        );
        self.event(
            EventKind::Decision,
            bound,
            attempt,
            duration_ms,
            format!("failed: {error}"),
        )
    }
}

impl Policies {
    /// The history entry saying a built-in stands in for a tenant plugin, if one does.
    fn standing_in(&self, bound: &Bound, attempt: Option<u32>, run: Run) -> Option<Event> {
        let reason = bound.standing_in.as_ref()?;
        Some(Event::host_decision(
            run.now().unwrap_or_else(|| self.clock.now_ms()),
            attempt,
            format!(
                "the tenant's plugin cannot serve ({reason}); the built-in {} decides instead",
                bound.name
            ),
        ))
    }

    /// Counts a tenant plugin's call; when it ends `failure_limit` failures in a row, disables
    /// the plugin for its tenant and returns the history entry that says so.
    async fn observe(
        &self,
        tenant: &TenantId,
        bound: &Bound,
        started: Instant,
        failure: Option<&CallError>,
        attempt: Option<u32>,
        run: Run,
    ) -> Option<Event> {
        let (Source::Tenant(plugin), Some(health), Run::Live) = (&bound.source, &bound.health, run)
        else {
            return None;
        };
        let elapsed: Duration = started.elapsed();
        let streak = health.record(elapsed, failure.map(CallError::kind));
        let error = failure?;
        if streak < self.failure_limit {
            return None;
        }
        let now = self.clock.now_ms();
        // The error may quote the guest's stderr: stored and logged, so made safe for both.
        let reason =
            crate::text::cleaned(format!("{streak} calls in a row failed; the last: {error}"));
        let disabled = Disabled {
            at_ms: now,
            reason: reason.clone(),
        };
        match self
            .store
            .set_plugin_disabled(tenant, plugin, Some(&disabled))
            .await
        {
            Ok(newly) => {
                self.changed(tenant);
                if newly {
                    tracing::warn!(
                        message = "Tenant plugin disabled: too many failures in a row; its hooks use the built-in defaults.",
                        tenant_id = %tenant,
                        plugin_id = %plugin,
                        plugin = &*bound.name,
                        %reason,
                    );
                }
                Some(Event::host_decision(
                    now,
                    attempt,
                    format!(
                        "the plugin {} ({plugin}) is now disabled for this tenant: {reason}; \
                         the built-in default serves its hooks from the next message",
                        bound.name
                    ),
                ))
            }
            Err(store) => {
                tracing::warn!(
                    message = "Could not disable a failing tenant plugin; trying again on its next failure.",
                    tenant_id = %tenant,
                    plugin_id = %plugin,
                    error = %store,
                );
                None
            }
        }
    }
}

/// `text` with the endpoint `url` written as its scheme and host only (`https://example.com/…`):
/// the whole URL as stored and as normalised, and its path and query wherever they appear.
fn hide_endpoint(text: String, url: Option<&str>) -> String {
    let Some(stored) = url.filter(|url| !url.is_empty()) else {
        return text;
    };
    let Ok(parsed) = url::Url::parse(stored) else {
        return text.replace(stored, "the endpoint");
    };
    let shown = match parsed.port() {
        Some(port) => format!(
            "{}://{}:{port}/…",
            parsed.scheme(),
            parsed.host_str().unwrap_or_default()
        ),
        None => format!(
            "{}://{}/…",
            parsed.scheme(),
            parsed.host_str().unwrap_or_default()
        ),
    };
    let path_and_query = &parsed[url::Position::BeforePath..];
    let mut text = text
        .replace(stored, &shown)
        .replace(parsed.as_str(), &shown);
    if path_and_query.len() > 1 {
        text = text.replace(path_and_query, "/…");
    }
    if let Some(query) = parsed.query().filter(|query| !query.is_empty()) {
        text = text.replace(query, "…");
    }
    text
}

/// A time the host works out itself when no delay policy answered, kept to the latest time
/// the API can write (`clock::LATEST_MS`, the end of the year 9999): a simulated failure can
/// already be late, and a retry-after hint long. (A plugin that names a later time has failed:
/// the sandbox refuses its output, and the built-in decides instead.)
fn representable(at: u64) -> u64 {
    at.min(crate::clock::LATEST_MS)
}

/// The debug line of a plugin's decision (or the host's, when no plugin answered), in the
/// span of its call: `result` is what the message's history records, made safe to log.
fn log_decision(what: &'static str, result: &str) {
    tracing::debug!(message = what, result = %crate::text::clean(result));
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The message as a plugin sees it.
pub fn plugin_message(message: &Message) -> sandbox::Message {
    sandbox::Message {
        id: message.id.to_string(),
        tenant_id: message.tenant_id.to_string(),
        sender_id: message.sender_id.to_string(),
        recipient_id: message.recipient_id.to_string(),
        content: message.content.clone(),
        content_type: message.content_type.clone(),
        metadata: message
            .metadata
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect(),
        requested: match message.requested {
            Requested::Unspecified => sandbox::RequestedTime::Unspecified,
            Requested::DelayMs(ms) => sandbox::RequestedTime::DelayMs(ms),
            Requested::AtMs(ms) => sandbox::RequestedTime::DeliverAtMs(ms),
        },
        created_at_ms: message.created_at_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::hide_endpoint;

    #[test]
    fn an_endpoint_path_and_query_never_reach_the_recorded_text() {
        let url = "https://hooks.example.com:8443/in/s3cret-path?token=t0ken";
        let text = format!(
            "error sending request for url ({url}): connection refused; \
             GET /in/s3cret-path?token=t0ken answered; token=t0ken"
        );
        let hidden = hide_endpoint(text, Some(url));
        assert!(!hidden.contains("s3cret"), "{hidden}");
        assert!(!hidden.contains("t0ken"), "{hidden}");
        assert!(
            hidden.contains("https://hooks.example.com:8443/…"),
            "{hidden}"
        );
        assert_eq!(
            hide_endpoint("HTTP 500".into(), Some("https://example.com/")),
            "HTTP 500"
        );
        assert_eq!(hide_endpoint("x".into(), None), "x");
    }
}
