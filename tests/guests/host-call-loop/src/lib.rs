//! Calls the host in an endless loop: the deadline must still interrupt it, and the host's
//! log cap must keep it from flooding the log. It logs the message's content first, as a
//! careless plugin might: that must not forge lines of the server's log.
use dms_plugin_sdk::{Message, Rejection, log, now_ms, validator::Guest};

/// The hostile validator.
pub struct HostCallLoop;

impl Guest for HostCallLoop {
    fn validate(message: Message) -> Result<(), Rejection> {
        // What a tenant's plugin logs can be anything, a sender's content included.
        log::info(&String::from_utf8_lossy(&message.content));
        loop {
            log::info(&format!("still here at {}", now_ms()));
        }
    }
}

dms_plugin_sdk::export_validator!(HostCallLoop);
