//! Calls the host in an endless loop: the deadline must still interrupt it, and the host's
//! log cap must keep it from flooding the log.
use dms_plugin_sdk::{Message, Rejection, log, now_ms, validator::Guest};

/// The hostile validator.
pub struct HostCallLoop;

impl Guest for HostCallLoop {
    fn validate(_message: Message) -> Result<(), Rejection> {
        loop {
            log::info(&format!("still here at {}", now_ms()));
        }
    }
}

dms_plugin_sdk::export_validator!(HostCallLoop);
