//! `content-guard`: the default validator.
//!
//! Rejects, in this order:
//! 1. empty content (`content_empty`);
//! 2. content over `max_bytes` (`content_too_large`; default 65536);
//! 3. content that is not UTF-8 when the content type is text (`content_not_utf8`);
//! 4. content containing one of `blocked_terms`, compared case-insensitively
//!    (`blocked_term`; a comma-separated list, empty by default).
//!
//! A malformed configuration value rejects with `invalid_config`, naming the key, so a
//! misconfigured binding is noticed at once instead of letting everything through.

use dms_plugin_sdk::{Message, Rejection, config, validator::Guest};

/// The validator's settings, read from the binding configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// The largest content accepted, in bytes.
    pub max_bytes: usize,
    /// Terms that may not appear in text content, lowercased.
    pub blocked_terms: Vec<String>,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            max_bytes: 64 * 1024,
            blocked_terms: Vec::new(),
        }
    }
}

impl Rules {
    /// Reads the rules from the binding configuration.
    pub fn from_config() -> Result<Self, config::ConfigError> {
        let defaults = Self::default();
        Ok(Self {
            max_bytes: config::parse_or("max_bytes", defaults.max_bytes, "a number of bytes")?,
            blocked_terms: config::list("blocked_terms")
                .into_iter()
                .map(|term| term.to_lowercase())
                .collect(),
        })
    }
}

/// Whether a media type carries text, so its content must be valid UTF-8.
pub fn is_text(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence.starts_with("text/")
        || essence == "application/json"
        || essence == "application/xml"
        || essence.ends_with("+json")
        || essence.ends_with("+xml")
}

/// The decision, as a plain function of the content and the rules.
pub fn check(content: &[u8], content_type: &str, rules: &Rules) -> Result<(), Rejection> {
    if content.is_empty() {
        return Err(Rejection::new(
            "content_empty",
            "content is empty; send at least one byte",
        ));
    }
    if content.len() > rules.max_bytes {
        return Err(Rejection::new(
            "content_too_large",
            format!(
                "content is {} bytes; the limit (max_bytes) is {}",
                content.len(),
                rules.max_bytes
            ),
        ));
    }
    let text = std::str::from_utf8(content).ok();
    if text.is_none() && is_text(content_type) {
        return Err(Rejection::new(
            "content_not_utf8",
            format!("content type {content_type} is text but the content is not valid UTF-8"),
        ));
    }
    if let Some(text) = text
        && !rules.blocked_terms.is_empty()
    {
        let lowered = text.to_lowercase();
        if let Some(term) = rules
            .blocked_terms
            .iter()
            .find(|term| lowered.contains(term.as_str()))
        {
            return Err(Rejection::new(
                "blocked_term",
                format!("content contains the blocked term {term:?} (rule: blocked_terms)"),
            ));
        }
    }
    Ok(())
}

/// The validator exported by this component.
pub struct ContentGuard;

impl Guest for ContentGuard {
    fn validate(message: Message) -> Result<(), Rejection> {
        let rules = Rules::from_config()?;
        check(&message.content, &message.content_type, &rules)
    }
}

dms_plugin_sdk::export_validator!(ContentGuard);

#[cfg(test)]
mod tests {
    use super::*;
    use dms_plugin_sdk::testing::FakeHost;

    fn code(result: Result<(), Rejection>) -> String {
        result.expect_err("expected a rejection").code
    }

    #[test]
    fn accepts_ordinary_text() {
        assert!(check(b"hello", "text/plain", &Rules::default()).is_ok());
    }

    #[test]
    fn rejects_empty_content() {
        assert_eq!(
            code(check(b"", "text/plain", &Rules::default())),
            "content_empty"
        );
    }

    #[test]
    fn rejects_content_over_the_limit_and_names_it() {
        let rules = Rules {
            max_bytes: 4,
            ..Rules::default()
        };
        let rejection = check(b"hello", "text/plain", &rules).unwrap_err();
        assert_eq!(rejection.code, "content_too_large");
        assert_eq!(
            rejection.reason,
            "content is 5 bytes; the limit (max_bytes) is 4"
        );
        assert!(check(b"hell", "text/plain", &rules).is_ok());
    }

    #[test]
    fn rejects_invalid_utf8_only_for_text_types() {
        let bytes = [0xff, 0xfe, 0x00];
        assert_eq!(
            code(check(
                &bytes,
                "text/plain; charset=utf-8",
                &Rules::default()
            )),
            "content_not_utf8"
        );
        assert_eq!(
            code(check(&bytes, "application/vnd.api+json", &Rules::default())),
            "content_not_utf8"
        );
        assert!(check(&bytes, "application/octet-stream", &Rules::default()).is_ok());
    }

    #[test]
    fn blocked_terms_match_case_insensitively() {
        let rules = Rules {
            blocked_terms: vec!["spam".into()],
            ..Rules::default()
        };
        let rejection = check(b"Buy SPAM now", "text/plain", &rules).unwrap_err();
        assert_eq!(rejection.code, "blocked_term");
        assert!(
            rejection.reason.contains("\"spam\""),
            "{}",
            rejection.reason
        );
        assert!(check(b"Buy ham now", "text/plain", &rules).is_ok());
    }

    #[test]
    fn reads_rules_from_config() {
        FakeHost::new()
            .config("max_bytes", "10")
            .config("blocked_terms", " Foo , ,bar ")
            .install();
        assert_eq!(
            Rules::from_config().unwrap(),
            Rules {
                max_bytes: 10,
                blocked_terms: vec!["foo".into(), "bar".into()],
            }
        );
    }

    #[test]
    fn malformed_config_rejects_with_the_key() {
        FakeHost::new().config("max_bytes", "ten").install();
        let message = Message {
            id: "msg_1".into(),
            tenant_id: "ten_1".into(),
            sender_id: "usr_1".into(),
            recipient_id: "usr_2".into(),
            content: b"hi".to_vec(),
            content_type: "text/plain".into(),
            metadata: Vec::new(),
            requested: dms_plugin_sdk::RequestedTime::Unspecified,
            created_at_ms: 0,
        };
        let rejection = ContentGuard::validate(message).unwrap_err();
        assert_eq!(rejection.code, "invalid_config");
        assert!(
            rejection.reason.contains("max_bytes"),
            "{}",
            rejection.reason
        );
    }
}
