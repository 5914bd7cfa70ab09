//! A tenant's policies: which plugin serves each hook (validators, delay policy, channels), and
//! the fail-safes around every call.
//!
//! Each call returns a decision the pipeline can always act on, plus the history entries that
//! say which plugin decided it (by name and digest) and how long it took:
//! - validators: a plugin failure rejects the message (fail closed) with code `plugin_error`;
//! - delay policy: a plugin failure falls back to the built-in `standard-delay` with its
//!   defaults, and the history says so; should that fail too, a last resort delivers at the
//!   requested time (plan) or retries in a minute, up to 8 attempts (retry);
//! - channel: a plugin failure is a retryable failure.
//!
//! Until tenants bind their own plugins, every tenant uses the built-ins: `content-guard`,
//! `standard-delay`, and the `inbox` and `webhook` channels.

use std::sync::Arc;
use std::time::Instant;

use crate::clock::Clock;
use crate::domain::feed::NewFeedEvent;
use crate::domain::ids::TenantId;
use crate::domain::message::{Channel, Event, EventKind, Message, PluginRef, Requested};
use crate::sandbox::{self, Binding, CallError, LoadError, Plugin, Sandbox};

/// A plugin bound to a hook.
#[derive(Debug, Clone)]
pub struct Bound {
    /// The plugin.
    pub plugin: Arc<Plugin>,
    /// Its configuration and grants.
    pub binding: Arc<Binding>,
}

impl Bound {
    fn reference(&self) -> PluginRef {
        PluginRef {
            name: self.plugin.name().to_owned(),
            digest: format!("sha256:{}", self.plugin.digest()),
        }
    }
}

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
}

impl std::fmt::Debug for Policies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policies").finish_non_exhaustive()
    }
}

/// The built-in bindings.
struct Defaults {
    validator: Bound,
    delay: Bound,
    inbox: Bound,
    webhook: Bound,
}

/// The last-resort retry interval, when even the built-in delay policy cannot answer.
const LAST_RESORT_RETRY_MS: u64 = 60_000;
/// The last-resort number of attempts.
const LAST_RESORT_ATTEMPTS: u32 = 8;

impl Policies {
    /// Loads the built-in plugins and binds them as every tenant's defaults.
    pub async fn new(sandbox: Sandbox) -> Result<Self, LoadError> {
        let bind = async |name: &str, binding: Binding| -> Result<Bound, LoadError> {
            Ok(Bound {
                plugin: sandbox.builtin(name).await?,
                binding: Arc::new(binding),
            })
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
        })
    }

    /// The sandbox the hooks run in.
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// The tenant's validators, in order.
    pub fn validators(&self, _tenant: &TenantId) -> Vec<Bound> {
        vec![self.defaults.validator.clone()]
    }

    /// The tenant's delay policy.
    pub fn delay_policy(&self, _tenant: &TenantId) -> Bound {
        self.defaults.delay.clone()
    }

    /// The tenant's plugin for `channel`.
    pub fn channel(&self, _tenant: &TenantId, channel: Channel) -> Bound {
        match channel {
            Channel::Inbox => self.defaults.inbox.clone(),
            Channel::Webhook => self.defaults.webhook.clone(),
        }
    }

    /// Runs the tenant's validators in order; the first rejection wins.
    pub async fn validate(&self, message: &Message) -> (Result<(), Rejection>, Vec<Event>) {
        let input = plugin_message(message);
        let mut events = Vec::new();
        for bound in self.validators(&message.tenant_id) {
            let started = Instant::now();
            let outcome = self
                .sandbox
                .validate(&bound.plugin, &bound.binding, &input)
                .await;
            let duration = elapsed_ms(started);
            let rejection = match outcome {
                Ok(Ok(())) => None,
                Ok(Err(rejection)) => Some(Rejection {
                    code: rejection.code,
                    reason: rejection.reason,
                    plugin: bound.plugin.name().to_owned(),
                }),
                Err(error) => Some(Rejection {
                    code: "plugin_error".into(),
                    reason: format!(
                        "the validator {} failed, so the message is refused: {error}",
                        bound.plugin.name()
                    ),
                    plugin: bound.plugin.name().to_owned(),
                }),
            };
            let result = rejection.as_ref().map_or_else(
                || "accepted".to_owned(),
                |r| format!("rejected: {}: {}", r.code, r.reason),
            );
            events.push(self.event(EventKind::Decision, &bound, None, duration, result));
            if let Some(rejection) = rejection {
                return (Err(rejection), events);
            }
        }
        (Ok(()), events)
    }

    /// Plans the first delivery time, or rejects.
    pub async fn plan(&self, message: &Message) -> (Result<u64, Rejection>, Vec<Event>) {
        let input = plugin_message(message);
        let bound = self.delay_policy(&message.tenant_id);
        let started = Instant::now();
        let outcome = self
            .sandbox
            .plan(&bound.plugin, &bound.binding, &input)
            .await;
        let duration = elapsed_ms(started);
        let mut events = Vec::new();
        let decided = match outcome {
            Ok(Ok(at)) => Ok(at),
            Ok(Err(rejection)) => Err(Rejection {
                code: rejection.code,
                reason: rejection.reason,
                plugin: bound.plugin.name().to_owned(),
            }),
            Err(error) => {
                events.push(self.failure_event(&bound, None, duration, &error));
                return self.plan_fallback(&input, events).await;
            }
        };
        let result = match &decided {
            Ok(at) => format!("deliver at {}", crate::clock::rfc3339(*at)),
            Err(r) => format!("rejected: {}: {}", r.code, r.reason),
        };
        events.push(self.event(EventKind::Decision, &bound, None, duration, result));
        (decided, events)
    }

    async fn plan_fallback(
        &self,
        input: &sandbox::Message,
        mut events: Vec<Event>,
    ) -> (Result<u64, Rejection>, Vec<Event>) {
        let fallback = &self.defaults.delay;
        let started = Instant::now();
        let outcome = self
            .sandbox
            .plan(&fallback.plugin, &fallback.binding, input)
            .await;
        let duration = elapsed_ms(started);
        let decided = match outcome {
            Ok(Ok(at)) => Ok(at),
            Ok(Err(rejection)) => Err(Rejection {
                code: rejection.code,
                reason: rejection.reason,
                plugin: fallback.plugin.name().to_owned(),
            }),
            Err(error) => {
                events.push(self.failure_event(fallback, None, duration, &error));
                let now = self.clock.now_ms();
                let at = match input.requested {
                    sandbox::RequestedTime::Unspecified => now,
                    sandbox::RequestedTime::DelayMs(delay) => {
                        input.created_at_ms.saturating_add(delay)
                    }
                    sandbox::RequestedTime::DeliverAtMs(at) => at.max(now),
                };
                events.push(Event::host_decision(
                    now,
                    None,
                    format!(
                        "last resort: no delay policy answered; delivering at the requested time {}",
                        crate::clock::rfc3339(at)
                    ),
                ));
                return (Ok(at), events);
            }
        };
        let result = match &decided {
            Ok(at) => format!("fallback: deliver at {}", crate::clock::rfc3339(*at)),
            Err(r) => format!("fallback: rejected: {}: {}", r.code, r.reason),
        };
        events.push(self.event(EventKind::Decision, fallback, None, duration, result));
        (decided, events)
    }

    /// Decides what happens after failed attempt number `attempt`.
    pub async fn retry(
        &self,
        message: &Message,
        attempt: u32,
        last_error: &str,
        retry_after_ms: Option<u64>,
    ) -> (Retry, Vec<Event>) {
        let input = plugin_message(message);
        let attempt_record = sandbox::Attempt {
            number: attempt,
            last_error: Some(last_error.to_owned()),
            retry_after_ms,
        };
        let mut events = Vec::new();
        let primary = self.delay_policy(&message.tenant_id);
        let fallback = self.defaults.delay.clone();
        for (bound, label) in [(primary, ""), (fallback, "fallback: ")] {
            let started = Instant::now();
            let outcome = self
                .sandbox
                .retry(&bound.plugin, &bound.binding, &input, &attempt_record)
                .await;
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
                    events.push(self.event(
                        EventKind::Decision,
                        &bound,
                        Some(attempt),
                        duration,
                        result,
                    ));
                    return (retry, events);
                }
                Err(error) => {
                    events.push(self.failure_event(&bound, Some(attempt), duration, &error))
                }
            }
        }
        let now = self.clock.now_ms();
        let retry = if attempt >= LAST_RESORT_ATTEMPTS {
            Retry::GiveUp(format!(
                "gave up after {attempt} attempts; no delay policy answered; last error: {last_error}"
            ))
        } else {
            Retry::At(now + LAST_RESORT_RETRY_MS.max(retry_after_ms.unwrap_or(0)))
        };
        let result = match &retry {
            Retry::At(at) => format!(
                "last resort: no delay policy answered; retry at {}",
                crate::clock::rfc3339(*at)
            ),
            Retry::GiveUp(reason) => format!("last resort: {reason}"),
        };
        events.push(Event::host_decision(now, Some(attempt), result));
        (retry, events)
    }

    /// Delivers one attempt through the message's channel.
    pub async fn deliver(&self, message: &Message, address: &sandbox::Address) -> Delivered {
        let input = plugin_message(message);
        let bound = self.channel(&message.tenant_id, message.channel);
        let started = Instant::now();
        let outcome = self
            .sandbox
            .deliver_to(&bound.plugin, &bound.binding, &input, address)
            .await;
        let duration = elapsed_ms(started);
        let attempt = Some(message.attempts);
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
        let event = self.event(EventKind::Attempt, &bound, attempt, duration, result);
        Delivered {
            attempted,
            events: vec![event],
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
            plugin = bound.plugin.name(),
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
