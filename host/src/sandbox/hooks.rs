//! The typed hook calls — `validate`, `plan`, `retry`, `deliver` — and the checks on what a
//! plugin returns: strings within the output cap, rejection codes that are codes, times that
//! are times. Anything else is a [`CallError`], and the caller applies the hook's fail-safe.

use std::sync::Arc;

use super::call::Call;
use super::plugin::{Plugin, Pre};
use super::state::{Observed, Published};
use super::{
    Address, Attempt, Binding, CallError, DeliveryResult, Message, Rejection, RetryDecision,
    Sandbox, World,
};

/// A delivery attempt's result, and what the host observed during it.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// What the channel reported.
    pub result: DeliveryResult,
    /// The recipient's own endpoint (the address URL) answered 410 Gone: Standard Webhooks
    /// says to stop sending to it.
    pub endpoint_gone: bool,
    /// What the channel published, to append to the users' feeds with the delivery's commit.
    pub published: Vec<Published>,
}

/// The latest time a plugin may name: 9999-12-31T23:59:59.999Z in Unix milliseconds.
const LATEST_MS: u64 = 253_402_300_799_999;
/// The longest retry-after hint a channel may give: a year.
const MAX_RETRY_AFTER_MS: u64 = 365 * 86_400_000;
/// The longest rejection code.
const MAX_CODE: usize = 64;

impl Sandbox {
    /// Runs a validator: `Ok(Ok(()))` accepts, `Ok(Err(rejection))` rejects.
    pub async fn validate(
        &self,
        plugin: &Plugin,
        binding: &Arc<Binding>,
        message: &Message,
    ) -> Result<Result<(), Rejection>, CallError> {
        let Pre::Validator(pre) = &plugin.pre else {
            return Err(self.wrong_world(plugin, World::Validator));
        };
        self.run(
            plugin,
            pre,
            Call {
                binding,
                message,
                delivery: None,
                now_ms: None,
            },
            async |store, instance| instance.call_validate(store, message).await,
            |answer, limit| match answer {
                Ok(()) => Ok(()),
                Err(rejection) => check_rejection(rejection, limit),
            },
        )
        .await
    }

    /// Runs a delay policy's `plan`: the Unix time in ms to deliver at, or a rejection.
    pub async fn plan(
        &self,
        plugin: &Plugin,
        binding: &Arc<Binding>,
        message: &Message,
    ) -> Result<Result<u64, Rejection>, CallError> {
        self.plan_at(plugin, binding, message, None).await
    }

    /// [`Sandbox::plan`] with the plugin's clock reading `now_ms` (a simulation), or the
    /// host's clock when `None`.
    pub async fn plan_at(
        &self,
        plugin: &Plugin,
        binding: &Arc<Binding>,
        message: &Message,
        now_ms: Option<u64>,
    ) -> Result<Result<u64, Rejection>, CallError> {
        let Pre::DelayPolicy(pre) = &plugin.pre else {
            return Err(self.wrong_world(plugin, World::DelayPolicy));
        };
        self.run(
            plugin,
            pre,
            Call {
                binding,
                message,
                delivery: None,
                now_ms,
            },
            async |store, instance| instance.call_plan(store, message).await,
            |answer, limit| match answer {
                Ok(at) => check_time(*at, "delivery time"),
                Err(rejection) => check_rejection(rejection, limit),
            },
        )
        .await
    }

    /// Runs a delay policy's `retry` after a failed attempt.
    pub async fn retry(
        &self,
        plugin: &Plugin,
        binding: &Arc<Binding>,
        message: &Message,
        attempt: &Attempt,
    ) -> Result<RetryDecision, CallError> {
        self.retry_at(plugin, binding, message, attempt, None).await
    }

    /// [`Sandbox::retry`] with the plugin's clock reading `now_ms` (a simulation), or the
    /// host's clock when `None`.
    pub async fn retry_at(
        &self,
        plugin: &Plugin,
        binding: &Arc<Binding>,
        message: &Message,
        attempt: &Attempt,
        now_ms: Option<u64>,
    ) -> Result<RetryDecision, CallError> {
        let Pre::DelayPolicy(pre) = &plugin.pre else {
            return Err(self.wrong_world(plugin, World::DelayPolicy));
        };
        self.run(
            plugin,
            pre,
            Call {
                binding,
                message,
                delivery: None,
                now_ms,
            },
            async |store, instance| instance.call_retry(store, message, attempt).await,
            |answer, limit| match answer {
                RetryDecision::RetryAtMs(at) => check_time(*at, "retry time"),
                RetryDecision::GiveUp(reason) => check_text(reason, "give-up reason", limit),
            },
        )
        .await
    }

    /// Runs a channel's `deliver`.
    pub async fn deliver(
        &self,
        plugin: &Plugin,
        binding: &Arc<Binding>,
        message: &Message,
        address: &Address,
    ) -> Result<DeliveryResult, CallError> {
        self.deliver_to(plugin, binding, message, address)
            .await
            .map(|delivery| delivery.result)
    }

    /// Runs a channel's `deliver`, also reporting what the host observed.
    pub async fn deliver_to(
        &self,
        plugin: &Plugin,
        binding: &Arc<Binding>,
        message: &Message,
        address: &Address,
    ) -> Result<Delivery, CallError> {
        let Pre::Channel(pre) = &plugin.pre else {
            return Err(self.wrong_world(plugin, World::Channel));
        };
        let observed = Arc::new(std::sync::Mutex::new(Observed::default()));
        let result = self
            .run(
                plugin,
                pre,
                Call {
                    binding,
                    message,
                    delivery: Some((address.url.as_deref(), &observed)),
                    now_ms: None,
                },
                async |store, instance| instance.call_deliver(store, message, address).await,
                |answer, limit| match answer {
                    DeliveryResult::Delivered => Ok(()),
                    DeliveryResult::Retry(later) => {
                        check_text(&later.reason, "retry reason", limit)?;
                        match later.after_ms {
                            Some(ms) if ms > MAX_RETRY_AFTER_MS => Err(CallError::InvalidOutput {
                                what: "retry-after hint",
                                reason: format!("{ms} ms is longer than a year"),
                            }),
                            _ => Ok(()),
                        }
                    }
                    DeliveryResult::Failed(reason) => check_text(reason, "failure reason", limit),
                },
            )
            .await?;
        let observed = std::mem::take(&mut *observed.lock().expect("observed lock"));
        Ok(Delivery {
            result,
            endpoint_gone: observed.endpoint_gone,
            published: observed.published,
        })
    }

    fn wrong_world(&self, plugin: &Plugin, expected: World) -> CallError {
        let error = CallError::WrongWorld {
            expected,
            actual: plugin.world,
        };
        plugin
            .stats
            .record(std::time::Duration::ZERO, Some(error.kind()));
        error
    }
}

fn check_text(text: &str, what: &'static str, limit: usize) -> Result<(), CallError> {
    if text.len() > limit {
        return Err(CallError::OutputTooLarge {
            what,
            size: text.len(),
            limit,
        });
    }
    Ok(())
}

fn check_rejection(rejection: &Rejection, limit: usize) -> Result<(), CallError> {
    check_text(&rejection.code, "rejection code", limit)?;
    check_text(&rejection.reason, "rejection reason", limit)?;
    let code = &rejection.code;
    let well_formed = !code.is_empty()
        && code.len() <= MAX_CODE
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !well_formed {
        return Err(CallError::InvalidOutput {
            what: "rejection code",
            reason: format!(
                "{:?} is not 1 to {MAX_CODE} characters of a-z, 0-9 and _",
                super::imports::host::truncate(code, 80)
            ),
        });
    }
    if rejection.reason.trim().is_empty() {
        return Err(CallError::InvalidOutput {
            what: "rejection reason",
            reason: "it is empty; say why the message is refused".into(),
        });
    }
    Ok(())
}

fn check_time(at: u64, what: &'static str) -> Result<(), CallError> {
    if at > LATEST_MS {
        return Err(CallError::InvalidOutput {
            what,
            reason: format!("{at} is not a Unix time in milliseconds before the year 10000"),
        });
    }
    Ok(())
}
