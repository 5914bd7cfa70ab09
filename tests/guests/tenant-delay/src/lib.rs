//! A tenant's own delay policy with a schedule that is a plain function of its inputs:
//! first delivery `delay` after now (unless the sender asked for a time), retry `n` after
//! `n × step`, give up after `max_attempts` failed attempts.
use dms_plugin_sdk::{
    Attempt, Message, Rejection, RequestedTime, RetryDecision, config, delay_policy::Guest, now_ms,
};

/// The policy.
pub struct Fixed;

fn setting(key: &str, default: u64) -> u64 {
    config::duration_ms(key, default).unwrap_or(default)
}

impl Guest for Fixed {
    fn plan(message: Message) -> Result<u64, Rejection> {
        let now = now_ms();
        Ok(match message.requested {
            RequestedTime::Unspecified => now + setting("delay", 0),
            RequestedTime::DelayMs(ms) => message.created_at_ms + ms,
            RequestedTime::DeliverAtMs(at) => at.max(now),
        })
    }

    fn retry(_message: Message, attempt: Attempt) -> RetryDecision {
        let max = config::parse_or("max_attempts", 3u32, "a number").unwrap_or(3);
        if attempt.number >= max {
            return RetryDecision::GiveUp(format!(
                "the tenant's policy gives up after {max} attempts"
            ));
        }
        let wait = setting("step", 1_000) * u64::from(attempt.number);
        RetryDecision::RetryAtMs(now_ms() + wait.max(attempt.retry_after_ms.unwrap_or(0)))
    }
}

dms_plugin_sdk::export_delay_policy!(Fixed);
