//! `/metrics`: Prometheus text that a Prometheus parser reads, and figures that move as
//! messages flow — requests by route and status, submits, rejections, delivery outcomes,
//! lateness, messages by status (from the database), schedule depth, plugin calls, sockets.

use std::process::Stdio;

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;

use crate::harness::{Answer, Backend, Receiver, TestServer, WsClient, on_both_backends};

on_both_backends!(metrics_parse_and_move_as_messages_flow);

/// Parses Prometheus text with the reference parser (the Python `prometheus_client`) into
/// `[{family, type, name, labels, value}]`; fails on anything it cannot read.
const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    if not family.documentation:
        sys.exit(f"{family.name} has no HELP")
    for sample in family.samples:
        out.append({"family": family.name, "type": family.type, "name": sample.name,
                    "labels": sample.labels, "value": sample.value})
print(json.dumps(out))
"#;

/// The samples of one scrape.
struct Scrape(Vec<Value>);

impl Scrape {
    async fn of(server: &TestServer) -> Self {
        let response = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .get(format!("{}/metrics", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        let text = response.text().await.unwrap();
        let mut parser = tokio::process::Command::new("python3")
            .args(["-c", PARSE])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut stdin = parser.stdin.take().unwrap();
        stdin.write_all(text.as_bytes()).await.unwrap();
        drop(stdin);
        let parsed = parser.wait_with_output().await.unwrap();
        assert!(
            parsed.status.success(),
            "/metrics does not parse: {}\n{text}",
            String::from_utf8_lossy(&parsed.stderr)
        );
        Self(serde_json::from_slice(&parsed.stdout).unwrap())
    }

    /// The sum of the samples named `name` with every label of `labels` (0 when none).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|sample| sample["name"] == name)
            .filter(|sample| {
                labels
                    .iter()
                    .all(|(label, value)| sample["labels"][label] == *value)
            })
            .map(|sample| sample["value"].as_f64().unwrap())
            .sum()
    }

    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|sample| sample["name"] == name)
    }
}

async fn metrics_parse_and_move_as_messages_flow(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let bob = server.member(&admin, "bob").await;

    let before = Scrape::of(&server).await;
    for family in [
        "dms_messages",
        "dms_messages_overdue",
        "dms_leases_held",
        "dms_dead_letters",
        "dms_schedule_depth",
        "dms_realtime_connections",
        "dms_messages_submitted_total",
        "dms_plugin_calls_total",
        "dms_plugin_failures_total",
        "dms_plugin_call_seconds_total",
    ] {
        assert!(before.has(family), "{family} is missing before any message");
    }
    assert_eq!(
        before.value("dms_messages", &[("status", "scheduled")]),
        0.0
    );
    assert_eq!(before.value("dms_messages_submitted_total", &[]), 0.0);

    // Three for the inbox, due now; one due in an hour; one refused by the content guard; one
    // webhook that fails once.
    let receiver = Receiver::start(vec![Answer::status(500), Answer::status(200)]).await;
    bob.api
        .put("/users/me/webhook", json!({ "url": receiver.url }))
        .await
        .expect(200);
    for _ in 0..3 {
        admin
            .api
            .post(
                "/messages",
                json!({ "recipient_id": bob.user_id(), "content": "now" }),
            )
            .await
            .expect(201);
    }
    admin
        .api
        .post(
            "/messages",
            json!({ "recipient_id": bob.user_id(), "content": "later", "delay_seconds": 3600 }),
        )
        .await
        .expect(201);
    admin
        .api
        .post(
            "/messages",
            json!({ "recipient_id": bob.user_id(), "content": "" }),
        )
        .await
        .problem(422, "rejected");
    admin
        .api
        .post(
            "/messages",
            json!({ "recipient_id": bob.user_id(), "content": "hook", "channel": "webhook" }),
        )
        .await
        .expect(201);
    admin.api.get("/messages/msg_nope").await;

    let queued = Scrape::of(&server).await;
    assert_eq!(queued.value("dms_messages_submitted_total", &[]), 5.0);
    assert_eq!(queued.value("dms_messages_rejected_total", &[]), 1.0);
    assert_eq!(
        queued.value("dms_messages", &[("status", "scheduled")]),
        5.0
    );
    assert_eq!(queued.value("dms_schedule_depth", &[]), 5.0);
    assert_eq!(
        queued.value(
            "dms_http_requests_total",
            &[
                ("route", "/messages"),
                ("method", "POST"),
                ("status", "201")
            ]
        ),
        5.0
    );
    assert_eq!(
        queued.value(
            "dms_http_requests_total",
            &[
                ("route", "/messages"),
                ("method", "POST"),
                ("status", "422")
            ]
        ),
        1.0
    );
    assert!(
        queued.value(
            "dms_http_requests_total",
            &[("route", "/messages/{id}"), ("method", "GET")]
        ) >= 1.0,
        "routes are labelled by template, not by the id in the path: {:?}",
        queued
            .0
            .iter()
            .filter(|sample| sample["name"] == "dms_http_requests_total")
            .collect::<Vec<_>>()
    );
    assert!(
        queued.value(
            "dms_http_request_duration_seconds_count",
            &[("route", "/messages"), ("method", "POST")]
        ) >= 6.0
    );
    assert!(
        queued.value("dms_plugin_calls_total", &[("plugin", "content-guard")]) >= 6.0,
        "every submit called the validator"
    );

    // Deliver what is due: three to the inbox, the webhook's first attempt fails.
    let round = server.dispatch().await;
    assert_eq!((round.delivered, round.retried), (3, 1));
    let (socket, _) = WsClient::connect(&server.url, &bob.token).await;
    let flowed = Scrape::of(&server).await;
    assert_eq!(
        flowed.value("dms_delivery_attempts_total", &[("outcome", "delivered")]),
        3.0
    );
    assert_eq!(
        flowed.value("dms_delivery_attempts_total", &[("outcome", "retried")]),
        1.0
    );
    assert_eq!(
        flowed.value("dms_delivery_lateness_seconds_count", &[]),
        4.0
    );
    assert_eq!(
        flowed.value("dms_messages", &[("status", "delivered")]),
        3.0
    );
    assert_eq!(flowed.value("dms_messages", &[("status", "retrying")]), 1.0);
    assert_eq!(
        flowed.value("dms_messages", &[("status", "scheduled")]),
        1.0
    );
    assert_eq!(flowed.value("dms_schedule_depth", &[]), 2.0);
    assert_eq!(flowed.value("dms_realtime_connections", &[]), 1.0);
    assert!(flowed.value("dms_plugin_calls_total", &[("plugin", "inbox")]) >= 3.0);
    assert!(flowed.value("dms_plugin_calls_total", &[("plugin", "webhook")]) >= 1.0);
    assert_eq!(
        flowed.value(
            "dms_plugin_failures_total",
            &[("plugin", "inbox"), ("kind", "trap")]
        ),
        0.0
    );
    drop(socket);
}
