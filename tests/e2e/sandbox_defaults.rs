//! The four default plugins, running as real components in the sandbox.

use std::sync::Arc;
use std::time::Duration;

use dms::sandbox::{
    Address, Attempt, Binding, DeliveryResult, FailureKind, Origin, Recorder, RequestedTime,
    RetryDecision, RetryLater, Sandbox, SandboxConfig,
};

use crate::harness::{Answer, Receiver, binding, message, sandbox, sandbox_with};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn webhook_address(url: &str) -> Address {
    Address {
        recipient_id: "usr_000000000000000000000RECPT".into(),
        url: Some(url.into()),
        signing_secrets: vec![SECRET.into()],
    }
}

#[tokio::test]
async fn content_guard_applies_each_rule() {
    let (sandbox, _) = sandbox();
    let guard = sandbox.builtin("content-guard").await.unwrap();
    let config = binding(&[("max_bytes", "10"), ("blocked_terms", "spam,scam")]);
    let code = async |content: &[u8], content_type: &str| {
        let mut msg = message("");
        msg.content = content.to_vec();
        msg.content_type = content_type.into();
        match sandbox.validate(&guard, &config, &msg).await.unwrap() {
            Ok(()) => "accept".to_string(),
            Err(rejection) => rejection.code,
        }
    };
    assert_eq!(code(b"hello", "text/plain").await, "accept");
    assert_eq!(code(b"", "text/plain").await, "content_empty");
    assert_eq!(
        code(b"hello world!", "text/plain").await,
        "content_too_large"
    );
    assert_eq!(code(&[0xff, 0xfe], "text/plain").await, "content_not_utf8");
    assert_eq!(
        code(&[0xff, 0xfe], "application/octet-stream").await,
        "accept"
    );
    assert_eq!(code(b"a SCAM", "text/plain").await, "blocked_term");
}

#[tokio::test]
async fn standard_delay_plans_and_retries() {
    let (sandbox, _) = sandbox();
    let delay = sandbox.builtin("standard-delay").await.unwrap();
    let mut msg = message("hi");
    let now = sandbox.clock().now_ms();
    msg.created_at_ms = now;
    msg.requested = RequestedTime::DelayMs(5_000);
    let at = sandbox
        .plan(&delay, &binding(&[]), &msg)
        .await
        .unwrap()
        .unwrap();
    // Planned from the creation time; the host clock moved a little in between.
    assert_eq!(at, now + 5_000);

    msg.requested = RequestedTime::DelayMs(2 * 3_600_000);
    let rejection = sandbox
        .plan(&delay, &binding(&[("max_delay", "1h")]), &msg)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(rejection.code, "delay_too_long");

    let attempt = Attempt {
        number: 1,
        last_error: Some("HTTP 503".into()),
        retry_after_ms: Some(60_000),
    };
    let RetryDecision::RetryAtMs(retry_at) = sandbox
        .retry(&delay, &binding(&[]), &msg, &attempt)
        .await
        .unwrap()
    else {
        panic!("a first failure is retried");
    };
    assert!(
        retry_at >= now + 60_000,
        "never before the retry-after hint"
    );
    let last = Attempt {
        number: 8,
        ..attempt
    };
    assert_eq!(
        sandbox
            .retry(&delay, &binding(&[]), &msg, &last)
            .await
            .unwrap(),
        RetryDecision::GiveUp(
            "gave up after 8 attempts (max_attempts); last error: HTTP 503".into()
        )
    );
}

#[tokio::test]
async fn inbox_publishes_the_message_to_the_recipient() {
    let (sandbox, _) = sandbox();
    let inbox = sandbox.builtin("inbox").await.unwrap();
    let recipient = dms::domain::ids::UserId::new().to_string();
    let address = Address {
        recipient_id: recipient.clone(),
        url: None,
        signing_secrets: Vec::new(),
    };
    let delivery = sandbox
        .deliver_to(&inbox, &binding(&[]), &message("hello"), &address)
        .await
        .unwrap();
    assert_eq!(delivery.result, DeliveryResult::Delivered);
    assert_eq!(delivery.published.len(), 1);
    let published = &delivery.published[0];
    assert_eq!(published.user_id, recipient);
    assert_eq!(published.event["type"], "message");
    assert_eq!(published.event["message"]["content"], "hello");
}

#[tokio::test]
async fn publishing_to_something_that_is_not_a_user_fails_the_publish() {
    let (sandbox, _) = sandbox();
    let inbox = sandbox.builtin("inbox").await.unwrap();
    let address = Address {
        recipient_id: "not-a-user".into(),
        url: None,
        signing_secrets: Vec::new(),
    };
    let delivery = sandbox
        .deliver_to(&inbox, &binding(&[]), &message("hello"), &address)
        .await
        .unwrap();
    assert!(delivery.published.is_empty());
    match delivery.result {
        DeliveryResult::Retry(later) => {
            assert!(
                later.reason.contains("\"not-a-user\" is not a user id"),
                "{}",
                later.reason
            )
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn webhook_maps_receiver_answers() {
    let (sandbox, _) = sandbox();
    let webhook = sandbox.builtin("webhook").await.unwrap();
    let deliver = async |answer: Answer| {
        let receiver = Receiver::start(vec![answer]).await;
        let result = sandbox
            .deliver(
                &webhook,
                &binding(&[]),
                &message("hello"),
                &webhook_address(&receiver.url),
            )
            .await
            .unwrap();
        (result, receiver.received().len())
    };
    assert_eq!(
        deliver(Answer::status(204)).await,
        (DeliveryResult::Delivered, 1)
    );
    assert_eq!(
        deliver(Answer::status(503)).await,
        (
            DeliveryResult::Retry(RetryLater {
                reason: "HTTP 503: receiver says hi".into(),
                after_ms: None
            }),
            1
        )
    );
    assert_eq!(
        deliver(Answer::status(429).header("retry-after", "7")).await,
        (
            DeliveryResult::Retry(RetryLater {
                reason: "HTTP 429: receiver says hi".into(),
                after_ms: Some(7_000)
            }),
            1
        )
    );
    assert_eq!(
        deliver(Answer::status(410)).await,
        (
            DeliveryResult::Failed("the endpoint is gone: HTTP 410: receiver says hi".into()),
            1
        )
    );
    // A redirect is a failure, and the host does not follow it (one request only).
    let (result, requests) =
        deliver(Answer::status(302).header("location", "http://127.0.0.1:1/elsewhere")).await;
    assert!(
        matches!(&result, DeliveryResult::Failed(reason) if reason.contains("redirects are not followed")),
        "{result:?}"
    );
    assert_eq!(requests, 1);
}

#[tokio::test]
async fn webhook_times_out_and_retries() {
    let (sandbox, _) = sandbox();
    let webhook = sandbox.builtin("webhook").await.unwrap();
    let receiver = Receiver::start(vec![Answer::status(200).after(Duration::from_secs(5))]).await;
    let result = sandbox
        .deliver(
            &webhook,
            &binding(&[("timeout", "200ms")]),
            &message("hello"),
            &webhook_address(&receiver.url),
        )
        .await
        .unwrap();
    assert_eq!(
        result,
        DeliveryResult::Retry(RetryLater {
            reason: "the endpoint did not answer in time".into(),
            after_ms: None
        })
    );
}

#[tokio::test]
async fn webhook_cannot_reach_private_addresses_unless_allowed() {
    let recorder = Arc::new(Recorder::new());
    let strict = Sandbox::new(
        SandboxConfig {
            max_instances: 8,
            cache_dir: Some(crate::harness::cache_dir()),
            ..SandboxConfig::default()
        },
        recorder,
    )
    .unwrap();
    let webhook = strict.builtin("webhook").await.unwrap();
    let receiver = Receiver::start(vec![Answer::status(200)]).await;
    let result = strict
        .deliver(
            &webhook,
            &binding(&[]),
            &message("hello"),
            &webhook_address(&receiver.url),
        )
        .await
        .unwrap();
    assert_eq!(
        result,
        DeliveryResult::Failed(
            "endpoint refused by the host: 127.0.0.1 is a loopback address".into()
        )
    );
    assert!(
        receiver.received().is_empty(),
        "nothing reached the receiver"
    );

    // Not on the binding's allow-list.
    let (open, _) = sandbox();
    let webhook = open.builtin("webhook").await.unwrap();
    let narrow = Arc::new(Binding {
        allowed_hosts: vec!["hooks.example.com".into()],
        ..Binding::default()
    });
    let result = open
        .deliver(
            &webhook,
            &narrow,
            &message("hello"),
            &webhook_address(&receiver.url),
        )
        .await
        .unwrap();
    assert_eq!(
        result,
        DeliveryResult::Failed(
            "endpoint refused by the host: 127.0.0.1 is not on this binding's allow-list".into()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_calls_across_the_defaults_all_answer_correctly() {
    let (sandbox, _) = sandbox_with(1000);
    let published = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let receiver = Receiver::start(vec![Answer::status(200)]).await;
    let guard = sandbox.builtin("content-guard").await.unwrap();
    let delay = sandbox.builtin("standard-delay").await.unwrap();
    let inbox = sandbox.builtin("inbox").await.unwrap();
    let webhook = sandbox.builtin("webhook").await.unwrap();
    let config = binding(&[("blocked_terms", "forbidden")]);

    let calls: Vec<_> = (0..1000u64)
        .map(|i| {
            let (sandbox, config, url) = (sandbox.clone(), config.clone(), receiver.url.clone());
            let published = published.clone();
            let (guard, delay, inbox, webhook) =
                (guard.clone(), delay.clone(), inbox.clone(), webhook.clone());
            tokio::spawn(async move {
                let mut msg = message(&format!("message number {i}"));
                msg.id = format!("msg_{i:026}");
                match i % 4 {
                    0 => {
                        if i % 8 == 0 {
                            msg.content = b"this is forbidden".to_vec();
                        }
                        let answer = sandbox.validate(&guard, &config, &msg).await.unwrap();
                        assert_eq!(answer.is_ok(), i % 8 != 0, "call {i}");
                    }
                    1 => {
                        msg.created_at_ms = sandbox.clock().now_ms();
                        let wanted = msg.created_at_ms + 60_000 + i * 1000;
                        msg.requested = RequestedTime::DeliverAtMs(wanted);
                        let at = sandbox.plan(&delay, &config, &msg).await.unwrap();
                        assert_eq!(at, Ok(wanted), "call {i}");
                    }
                    2 => {
                        let address = Address {
                            recipient_id: dms::domain::ids::UserId::new().to_string(),
                            url: None,
                            signing_secrets: Vec::new(),
                        };
                        let delivery = sandbox.deliver_to(&inbox, &config, &msg, &address).await;
                        let delivery = delivery.unwrap();
                        assert_eq!(delivery.result, DeliveryResult::Delivered, "call {i}");
                        published.fetch_add(
                            delivery.published.len(),
                            std::sync::atomic::Ordering::Relaxed,
                        );
                    }
                    _ => {
                        let result = sandbox
                            .deliver(&webhook, &config, &msg, &webhook_address(&url))
                            .await;
                        assert_eq!(result, Ok(DeliveryResult::Delivered), "call {i}");
                    }
                }
            })
        })
        .collect();
    for call in calls {
        call.await.unwrap();
    }
    assert_eq!(
        published.load(std::sync::atomic::Ordering::Relaxed),
        250,
        "every inbox call published once"
    );
    assert_eq!(
        receiver.received().len(),
        250,
        "every webhook call posted once"
    );
    for plugin in [&guard, &delay, &inbox, &webhook] {
        assert_eq!(plugin.stats().calls, 250, "{}", plugin.name());
        assert_eq!(plugin.stats().failed(), 0, "{}", plugin.name());
    }
}

#[tokio::test]
async fn compiled_components_are_reused_from_disk_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let start = || {
        Sandbox::new(
            SandboxConfig {
                max_instances: 8,
                cache_dir: Some(dir.path().to_path_buf()),
                ..SandboxConfig::default()
            },
            Arc::new(Recorder::new()),
        )
        .unwrap()
    };
    let first = start();
    assert_eq!(
        first.builtin("standard-delay").await.unwrap().origin(),
        Origin::Compiled
    );
    assert_eq!(
        first.builtin("standard-delay").await.unwrap().origin(),
        Origin::Compiled
    );
    drop(first);
    let second = start();
    let delay = second.builtin("standard-delay").await.unwrap();
    assert_eq!(delay.origin(), Origin::Disk);
    let mut msg = message("hi");
    msg.created_at_ms = second.clock().now_ms();
    assert!(
        second
            .plan(&delay, &binding(&[]), &msg)
            .await
            .unwrap()
            .is_ok()
    );
}

#[tokio::test]
async fn a_failing_call_is_counted_by_kind() {
    let (sandbox, _) = sandbox();
    let delay = sandbox.builtin("standard-delay").await.unwrap();
    let _ = sandbox
        .deliver(
            &delay,
            &Arc::new(Binding::default()),
            &message("x"),
            &webhook_address("http://x"),
        )
        .await;
    let stats = delay.stats();
    assert_eq!(stats.failures_of(FailureKind::WrongWorld), 1);
    assert_eq!(stats.failed(), 1);
}
