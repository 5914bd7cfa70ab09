//! `webhook`: the default HTTP channel, signed per the Standard Webhooks specification.
//!
//! POSTs the message as JSON (see [`payload`]: the SDK's [`MessagePayload`] as `data`) to the
//! recipient's endpoint through the host's `http-send`, with the headers `webhook-id` (the
//! message id, for de-duplication), `webhook-timestamp` (Unix seconds) and `webhook-signature`
//! (`v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, one per secret, space-separated while a
//! secret rotates). Any Standard Webhooks library verifies it.
//!
//! The endpoint and secrets come from the recipient's address (set with
//! `PUT /users/me/webhook`); the binding configuration may supply them instead (`url`, and
//! `secret` or a comma-separated `secrets`).
//!
//! | response | result |
//! |---|---|
//! | 2xx | delivered |
//! | 408, 429, 5xx | retry, no earlier than `Retry-After` (seconds or HTTP date) |
//! | 410 | failed permanently: the endpoint is gone |
//! | 3xx, other 4xx | failed permanently (redirects are not followed) |
//! | timeout, connection error | retry |
//! | address refused by the host (allow-list, private network, bad URL) | failed permanently |

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use dms_plugin_sdk::payload::{MessagePayload, rfc3339};
use dms_plugin_sdk::{
    Address, DeliveryResult, Message, RetryLater, channel::Guest, config, http, now_ms,
};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;
use std::time::UNIX_EPOCH;

/// The prefix of Standard Webhooks secrets.
pub const SECRET_PREFIX: &str = "whsec_";

/// A secret that is not `whsec_` followed by standard base64.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadSecret;

/// Decodes a `whsec_<base64>` secret into its key bytes.
pub fn secret_key(secret: &str) -> Result<Vec<u8>, BadSecret> {
    let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    match BASE64.decode(encoded.trim()) {
        Ok(key) if !key.is_empty() => Ok(key),
        _ => Err(BadSecret),
    }
}

/// The `webhook-signature` header value: `v1,<signature>` for each key, space-separated.
pub fn signature_header(keys: &[Vec<u8>], id: &str, timestamp: u64, body: &[u8]) -> String {
    keys.iter()
        .map(|key| {
            let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
            mac.update(id.as_bytes());
            mac.update(b".");
            mac.update(timestamp.to_string().as_bytes());
            mac.update(b".");
            mac.update(body);
            format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The media type of a sender's status callback, whose content is the whole body to post
/// (the host makes them; the API refuses it on submit).
pub const CALLBACK_CONTENT_TYPE: &str = "application/vnd.dms.callback+json";

/// The JSON body posted for `message`: `{"type": "message", "timestamp": …, "data": {…}}`,
/// where `data` is the SDK's [`MessagePayload`], the shape the HTTP API and the inbox event use
/// too; a status callback's content as it is.
pub fn payload(message: &Message, now_ms: u64) -> Vec<u8> {
    if message.content_type == CALLBACK_CONTENT_TYPE {
        return message.content.clone();
    }
    json!({
        "type": "message",
        "timestamp": rfc3339(now_ms),
        "data": MessagePayload::from(message),
    })
    .to_string()
    .into_bytes()
}

/// `Retry-After` in milliseconds from `now_ms`: delta-seconds or an HTTP date.
pub fn retry_after_ms(value: &str, now_ms: u64) -> Option<u64> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(seconds.saturating_mul(1000));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let at_ms = u64::try_from(at.duration_since(UNIX_EPOCH).ok()?.as_millis()).ok()?;
    Some(at_ms.saturating_sub(now_ms))
}

/// Maps the host's answer to a delivery result, per the table in the crate docs.
pub fn outcome(answer: Result<http::Response, http::Error>, now_ms: u64) -> DeliveryResult {
    let response = match answer {
        Ok(response) => response,
        Err(http::Error::Timeout) => {
            return DeliveryResult::Retry(RetryLater {
                reason: "the endpoint did not answer in time".into(),
                after_ms: None,
            });
        }
        Err(http::Error::Connection(error)) => {
            return DeliveryResult::Retry(RetryLater {
                reason: format!("could not reach the endpoint: {error}"),
                after_ms: None,
            });
        }
        Err(http::Error::NotAllowed(error)) => {
            return DeliveryResult::Failed(format!("endpoint refused by the host: {error}"));
        }
        Err(http::Error::BlockedAddress(error)) => {
            return DeliveryResult::Failed(format!("endpoint refused by the host: {error}"));
        }
        Err(http::Error::InvalidRequest(error)) => {
            return DeliveryResult::Failed(format!("invalid webhook request: {error}"));
        }
    };
    let status = response.status;
    let described = describe(&response);
    match status {
        200..=299 => DeliveryResult::Delivered,
        408 | 429 | 500..=599 => DeliveryResult::Retry(RetryLater {
            reason: described,
            after_ms: response
                .header("retry-after")
                .and_then(|value| retry_after_ms(value, now_ms)),
        }),
        410 => DeliveryResult::Failed(format!("the endpoint is gone: {described}")),
        300..=399 => DeliveryResult::Failed(format!(
            "{described}; redirects are not followed (location: {})",
            response.header("location").map_or("none".into(), origin)
        )),
        _ => DeliveryResult::Failed(described),
    }
}

/// `HTTP <status>`, followed by the start of the body when there is one.
fn describe(response: &http::Response) -> String {
    let body = String::from_utf8_lossy(&response.body);
    let body = body.trim();
    if body.is_empty() {
        format!("HTTP {}", response.status)
    } else {
        let snippet: String = body.chars().take(200).collect();
        format!("HTTP {}: {snippet}", response.status)
    }
}

/// The scheme and host of a URL, with its path and query cut to `…`: the result is recorded
/// on the message, which the sender reads, and a URL's path or query may hold a token.
fn origin(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return if url.starts_with('/') {
            "/…".into()
        } else {
            "…".into()
        };
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    if authority.len() == rest.len() {
        format!("{scheme}://{host}")
    } else {
        format!("{scheme}://{host}/…")
    }
}

/// The secrets to sign with: the address's, else the binding configuration's.
fn secrets(address: &Address) -> Vec<String> {
    if !address.signing_secrets.is_empty() {
        return address.signing_secrets.clone();
    }
    let mut secrets = config::list("secrets");
    if let Some(secret) = config::get("secret") {
        secrets.insert(0, secret);
    }
    secrets
}

/// The channel exported by this component.
pub struct Webhook;

impl Guest for Webhook {
    fn deliver(message: Message, address: Address) -> DeliveryResult {
        let Some(url) = address.url.clone().or_else(|| config::get("url")) else {
            return DeliveryResult::Failed(format!(
                "recipient {} has no webhook endpoint; set one with PUT /users/me/webhook",
                address.recipient_id
            ));
        };
        let secrets = secrets(&address);
        if secrets.is_empty() {
            return DeliveryResult::Failed(
                "no signing secret: the recipient's webhook has none and the binding sets neither \
                 `secret` nor `secrets`"
                    .into(),
            );
        }
        let keys: Result<Vec<_>, _> = secrets.iter().map(|secret| secret_key(secret)).collect();
        let Ok(keys) = keys else {
            return DeliveryResult::Failed(
                "a signing secret is not `whsec_` followed by base64".into(),
            );
        };
        let timeout = match config::duration_ms("timeout", 5_000) {
            Ok(ms) => u32::try_from(ms).unwrap_or(u32::MAX),
            Err(error) => return DeliveryResult::Failed(error.to_string()),
        };

        let now = now_ms();
        let timestamp = now / 1000;
        let body = payload(&message, now);
        let request = http::Request::post(url)
            .header("content-type", "application/json")
            .header("user-agent", "DMS-Webhook/0.1")
            .header("webhook-id", message.id.clone())
            .header("webhook-timestamp", timestamp.to_string())
            .header(
                "webhook-signature",
                signature_header(&keys, &message.id, timestamp, &body),
            )
            .body(body)
            .timeout_ms(timeout);
        outcome(http::send(&request), now)
    }
}

dms_plugin_sdk::export_channel!(Webhook);

#[cfg(test)]
mod tests {
    use super::*;
    use dms_plugin_sdk::{RequestedTime, testing};
    use serde_json::Value;

    const NOW: u64 = 1_700_000_000_000;

    fn message() -> Message {
        Message {
            id: "msg_p5jXN8AQM9LWM0D4loKWxJek".into(),
            tenant_id: "ten_1".into(),
            sender_id: "usr_a".into(),
            recipient_id: "usr_b".into(),
            content: b"hello".to_vec(),
            content_type: "text/plain".into(),
            metadata: Vec::new(),
            requested: RequestedTime::Unspecified,
            created_at_ms: NOW,
        }
    }

    fn address(secrets: &[&str]) -> Address {
        Address {
            recipient_id: "usr_b".into(),
            url: Some("https://example.com/hook".into()),
            signing_secrets: secrets.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn signs_like_the_standard_webhooks_reference() {
        // The example from the Standard Webhooks specification's reference libraries.
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            signature_header(&[key], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn signs_with_every_secret_while_rotating() {
        let keys = vec![
            secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap(),
            secret_key("whsec_c2Vjb25k").unwrap(),
        ];
        let header = signature_header(&keys, "msg_1", 1, b"{}");
        let parts: Vec<_> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|part| part.starts_with("v1,")));
    }

    #[test]
    fn rejects_secrets_that_are_not_base64() {
        assert_eq!(secret_key("whsec_!!!"), Err(BadSecret));
        assert_eq!(secret_key("whsec_"), Err(BadSecret));
    }

    #[test]
    fn a_status_callback_is_posted_as_it_is() {
        let mut callback = message();
        callback.content_type = CALLBACK_CONTENT_TYPE.into();
        callback.content = br#"{"type":"message.delivered"}"#.to_vec();
        assert_eq!(payload(&callback, NOW), callback.content);
        let ordinary: Value = serde_json::from_slice(&payload(&message(), NOW)).unwrap();
        assert_eq!(ordinary["type"], "message");
    }

    #[test]
    fn posts_signed_json_through_the_host() {
        testing::FakeHost::new()
            .at(NOW)
            .respond(Ok(http::Response::new(204)))
            .install();
        let result = Webhook::deliver(
            message(),
            address(&["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]),
        );
        assert_eq!(result, DeliveryResult::Delivered);
        let host = testing::take();
        let request = &host.http_requests[0];
        assert_eq!(request.method, "POST");
        assert_eq!(request.url, "https://example.com/hook");
        assert_eq!(
            request.header_value("webhook-id"),
            Some("msg_p5jXN8AQM9LWM0D4loKWxJek")
        );
        assert_eq!(
            request.header_value("webhook-timestamp"),
            Some("1700000000")
        );
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            request.header_value("webhook-signature").unwrap(),
            signature_header(
                &[key],
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1_700_000_000,
                &request.body
            )
        );
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body["type"], "message");
        assert_eq!(body["timestamp"], "2023-11-14T22:13:20.000Z");
        assert_eq!(body["data"]["content"], "hello");
        assert_eq!(body["data"].get("content_encoding"), None);
        assert_eq!(body["data"]["id"], "msg_p5jXN8AQM9LWM0D4loKWxJek");
    }

    #[test]
    fn maps_statuses_as_documented() {
        let answer = |status| Ok(http::Response::new(status));
        assert_eq!(outcome(answer(200), NOW), DeliveryResult::Delivered);
        assert_eq!(outcome(answer(299), NOW), DeliveryResult::Delivered);
        for status in [408, 429, 500, 503] {
            assert!(
                matches!(outcome(answer(status), NOW), DeliveryResult::Retry(_)),
                "{status}"
            );
        }
        for status in [301, 302, 400, 401, 404, 410, 422] {
            assert!(
                matches!(outcome(answer(status), NOW), DeliveryResult::Failed(_)),
                "{status}"
            );
        }
        let DeliveryResult::Failed(reason) = outcome(answer(410), NOW) else {
            panic!("410 must fail");
        };
        assert_eq!(reason, "the endpoint is gone: HTTP 410");
    }

    #[test]
    fn honours_retry_after_in_seconds_and_as_a_date() {
        let throttled = http::Response::new(429).with_header("Retry-After", "30");
        assert_eq!(
            outcome(Ok(throttled), NOW),
            DeliveryResult::Retry(RetryLater {
                reason: "HTTP 429".into(),
                after_ms: Some(30_000)
            })
        );
        // NOW is 2023-11-14T22:13:20Z.
        assert_eq!(
            retry_after_ms("Tue, 14 Nov 2023 22:15:20 GMT", NOW),
            Some(120_000)
        );
        assert_eq!(
            retry_after_ms("Tue, 14 Nov 2023 22:00:00 GMT", NOW),
            Some(0)
        );
        assert_eq!(retry_after_ms("soon", NOW), None);
    }

    #[test]
    fn redirects_fail_and_name_the_location_without_its_path() {
        let moved = http::Response::new(302).with_header("location", "https://elsewhere/");
        assert_eq!(
            outcome(Ok(moved), NOW),
            DeliveryResult::Failed(
                "HTTP 302; redirects are not followed (location: https://elsewhere/…)".into()
            )
        );
        let secret = http::Response::new(307).with_header(
            "location",
            "https://user:pw@elsewhere:8443/in/tok3n?key=k3y",
        );
        assert_eq!(
            outcome(Ok(secret), NOW),
            DeliveryResult::Failed(
                "HTTP 307; redirects are not followed (location: https://elsewhere:8443/…)".into()
            )
        );
        assert_eq!(origin("/login?next=tok3n"), "/…");
        assert_eq!(origin("https://elsewhere"), "https://elsewhere");
    }

    #[test]
    fn transport_errors_retry_and_refusals_fail() {
        assert!(matches!(
            outcome(Err(http::Error::Timeout), NOW),
            DeliveryResult::Retry(_)
        ));
        assert!(matches!(
            outcome(Err(http::Error::Connection("refused".into())), NOW),
            DeliveryResult::Retry(_)
        ));
        assert!(matches!(
            outcome(Err(http::Error::BlockedAddress("10.0.0.1".into())), NOW),
            DeliveryResult::Failed(_)
        ));
    }

    #[test]
    fn without_an_endpoint_or_secret_it_fails_clearly() {
        testing::FakeHost::new().install();
        let mut no_url = address(&["whsec_c2Vjb25k"]);
        no_url.url = None;
        assert_eq!(
            Webhook::deliver(message(), no_url),
            DeliveryResult::Failed(
                "recipient usr_b has no webhook endpoint; set one with PUT /users/me/webhook"
                    .into()
            )
        );
        assert!(matches!(
            Webhook::deliver(message(), address(&[])),
            DeliveryResult::Failed(reason) if reason.starts_with("no signing secret")
        ));
    }
}
