//! Panics: the host must report a trap with the panic message from the guest's stderr.
use dms_plugin_sdk::{Message, Rejection, validator::Guest};

/// The hostile validator.
pub struct Panic;

impl Guest for Panic {
    fn validate(message: Message) -> Result<(), Rejection> {
        panic!("guest panicked on purpose for {}", message.id);
    }
}

dms_plugin_sdk::export_validator!(Panic);
