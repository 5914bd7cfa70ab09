//! Returns a rejection whose reason is 10 MB: the host's output cap must refuse it.
use dms_plugin_sdk::{Message, Rejection, validator::Guest};

/// The hostile validator.
pub struct HugeOutput;

impl Guest for HugeOutput {
    fn validate(_message: Message) -> Result<(), Rejection> {
        Err(Rejection::new("huge", "x".repeat(10 * 1024 * 1024)))
    }
}

dms_plugin_sdk::export_validator!(HugeOutput);
