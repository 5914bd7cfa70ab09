//! Sleeps inside WASI host calls, where epoch interruption cannot reach it: only the host's
//! async timeout can cancel it.
//!
//! By default one sleep of an hour. With the binding configuration `naps` (and `nap_ms`,
//! default 1), it takes that many short sleeps instead, each a point where the host runs
//! other work before the guest resumes: a validator that is honest but yields.
use dms_plugin_sdk::{Message, Rejection, config, validator::Guest};

/// The hostile validator.
pub struct Sleepy;

impl Guest for Sleepy {
    fn validate(_message: Message) -> Result<(), Rejection> {
        let number = |key: &str| config::get(key).and_then(|value| value.parse::<u64>().ok());
        match number("naps") {
            Some(naps) => {
                let nap = std::time::Duration::from_millis(number("nap_ms").unwrap_or(1));
                for _ in 0..naps {
                    std::thread::sleep(nap);
                }
            }
            None => std::thread::sleep(std::time::Duration::from_secs(3600)),
        }
        Ok(())
    }
}

dms_plugin_sdk::export_validator!(Sleepy);
