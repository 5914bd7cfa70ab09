//! Sleeps for an hour inside a WASI host call, where epoch interruption cannot reach it: only
//! the host's async timeout can cancel it.
use dms_plugin_sdk::{Message, Rejection, validator::Guest};

/// The hostile validator.
pub struct Sleepy;

impl Guest for Sleepy {
    fn validate(_message: Message) -> Result<(), Rejection> {
        std::thread::sleep(std::time::Duration::from_secs(3600));
        Ok(())
    }
}

dms_plugin_sdk::export_validator!(Sleepy);
