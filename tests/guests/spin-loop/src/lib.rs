//! Never returns: the host's deadline must interrupt it.
use dms_plugin_sdk::{Message, Rejection, validator::Guest};

/// The hostile validator.
pub struct SpinLoop;

impl Guest for SpinLoop {
    fn validate(message: Message) -> Result<(), Rejection> {
        let mut counter = message.content.len() as u64;
        loop {
            counter = std::hint::black_box(counter.wrapping_mul(31).wrapping_add(7));
        }
    }
}

dms_plugin_sdk::export_validator!(SpinLoop);
