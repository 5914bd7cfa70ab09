//! A tenant's own validator: refuses content containing the word configured as `deny`
//! (default `forbidden`), with code `denied_word`.
use dms_plugin_sdk::{Message, Rejection, config, validator::Guest};

/// The validator.
pub struct DenyWord;

impl Guest for DenyWord {
    fn validate(message: Message) -> Result<(), Rejection> {
        let word = config::get("deny").unwrap_or_else(|| "forbidden".into());
        let text = String::from_utf8_lossy(&message.content).to_lowercase();
        if text.contains(&word.to_lowercase()) {
            return Err(Rejection::new(
                "denied_word",
                format!("the content contains the word {word:?}, which this tenant refuses"),
            ));
        }
        Ok(())
    }
}

dms_plugin_sdk::export_validator!(DenyWord);
