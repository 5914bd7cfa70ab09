//! Proof that the webhook plugin's signatures are right: a delivery to a real loopback
//! receiver, verified by the reference Standard Webhooks library (PyPI `standardwebhooks`,
//! installed by `.ci/run`).

use std::io::Write;
use std::process::{Command, Stdio};

use dms::sandbox::{Address, DeliveryResult};

use crate::harness::{Answer, Receiver, binding, message, sandbox};

/// Verifies one delivery with `standardwebhooks.Webhook(secret).verify(body, headers)`.
pub(crate) fn verify_with_reference_library(
    secret: &str,
    received: &crate::harness::Received,
) -> Result<(), String> {
    let headers: serde_json::Map<String, serde_json::Value> =
        ["webhook-id", "webhook-timestamp", "webhook-signature"]
            .into_iter()
            .map(|name| {
                let value = received.headers[name].to_str().unwrap().to_owned();
                (name.to_owned(), serde_json::Value::String(value))
            })
            .collect();
    let input = serde_json::json!({
        "secret": secret,
        "headers": headers,
        "body": String::from_utf8(received.body.to_vec()).unwrap(),
    });
    let script = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
data = json.load(sys.stdin)
payload = Webhook(data["secret"]).verify(data["body"], data["headers"])
print(json.dumps(payload))
"#;
    let python = std::env::var("DMS_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut child = Command::new(&python)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run {python}: {error}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

#[tokio::test]
async fn the_reference_library_verifies_webhook_signatures_also_while_rotating() {
    let (sandbox, _) = sandbox();
    let webhook = sandbox.builtin("webhook").await.unwrap();
    let receiver = Receiver::start(vec![Answer::status(200)]).await;
    let old = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let new = "whsec_bmV3IHNlY3JldCBmb3IgdGhlIGRtcyB0ZXN0cw==";
    let address = Address {
        recipient_id: "usr_000000000000000000000RECPT".into(),
        url: Some(receiver.url.clone()),
        signing_secrets: vec![new.into(), old.into()],
    };
    let result = sandbox
        .deliver(&webhook, &binding(&[]), &message("héllo, wörld"), &address)
        .await
        .unwrap();
    assert_eq!(result, DeliveryResult::Delivered);
    let received = receiver.received();
    assert_eq!(received.len(), 1);
    let delivery = &received[0];
    assert_eq!(
        delivery.headers["webhook-id"],
        "msg_01JTEST0000000000000000000"
    );

    // Either secret verifies while rotating; a wrong one does not.
    verify_with_reference_library(new, delivery).expect("the new secret verifies");
    verify_with_reference_library(old, delivery).expect("the old secret verifies");
    let wrong = verify_with_reference_library("whsec_d3Jvbmcgc2VjcmV0", delivery)
        .expect_err("a wrong secret must not verify");
    assert!(wrong.contains("WebhookVerificationError"), "{wrong}");

    // A tampered body fails too.
    let mut tampered = delivery.clone();
    tampered.body = axum::body::Bytes::from(
        String::from_utf8(delivery.body.to_vec())
            .unwrap()
            .replace("wörld", "world"),
    );
    assert!(verify_with_reference_library(new, &tampered).is_err());
}
