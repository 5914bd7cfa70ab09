//! Logs of the real binary: one line per request with its request id, route, status and
//! duration; JSON lines with `DMS_LOG_FORMAT=json`; `DEBUG=dms:*` turns debug logs on.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::harness::{Served, dms, serve};

/// Serves with stderr captured, makes two requests, stops, and returns every stderr line.
async fn logs_of(command: tokio::process::Command, request_id: &str) -> Vec<String> {
    let mut command = command;
    command.stderr(Stdio::piped());
    let mut served: Served = serve(command).await;
    let stderr = served.child.stderr.take().unwrap();
    let lines = tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        let mut all = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            all.push(line);
        }
        all
    });
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let health = http
        .get(format!("{}/health", served.url))
        .header("x-request-id", request_id)
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let missing = http
        .get(format!("{}/messages/msg_x", served.url))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 401);
    assert!(served.terminate().await.success());
    tokio::time::timeout(Duration::from_secs(10), lines)
        .await
        .expect("stderr closes when the server exits")
        .unwrap()
}

#[tokio::test]
async fn json_logs_have_one_line_per_request_with_its_id_route_status_and_duration() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = dms(dir.path());
    command
        .env("DMS_LOG_FORMAT", "json")
        .env("RUST_LOG", "warn,dms=info");
    let lines = logs_of(command, "req-json-1").await;
    let events: Vec<Value> = lines
        .iter()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|error| panic!("not JSON ({error}): {line}"))
        })
        .collect();
    let requests: Vec<&Value> = events
        .iter()
        .filter(|event| event["message"] == "request")
        .collect();
    assert_eq!(requests.len(), 2, "one line per request: {lines:#?}");
    let health = requests
        .iter()
        .find(|event| event["request_id"] == "req-json-1")
        .expect("the client's request id is logged");
    assert_eq!(health["level"], "INFO");
    assert_eq!(health["target"], "dms::http");
    assert_eq!(health["method"], "GET");
    assert_eq!(health["route"], "/health");
    assert_eq!(health["status"], 200);
    assert!(health["duration_ms"].as_f64().unwrap() >= 0.0);
    assert!(health["timestamp"].is_string());
    let missing = requests
        .iter()
        .find(|event| event["status"] == 401)
        .unwrap();
    assert_eq!(missing["route"], "/messages/{id}");
    let generated = missing["request_id"].as_str().unwrap();
    assert_eq!(generated.len(), 36, "a generated UUID: {generated}");
    assert!(
        events.iter().all(|event| event["level"] != "DEBUG"),
        "no debug logs without DEBUG"
    );
}

#[tokio::test]
async fn text_logs_by_default_and_debug_dms_turns_debug_logs_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = dms(dir.path());
    command.env("RUST_LOG", "warn,dms=info");
    let lines = logs_of(command, "req-text-1").await;
    let request = lines
        .iter()
        .find(|line| line.contains("req-text-1"))
        .unwrap_or_else(|| panic!("the request is logged: {lines:#?}"));
    assert!(request.contains(" INFO "), "{request}");
    assert!(request.contains("route=\"/health\""), "{request}");
    assert!(request.contains("status=200"), "{request}");
    assert!(
        !lines.iter().any(|line| line.contains("DEBUG")),
        "{lines:#?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let mut command = dms(dir.path());
    command
        .env("RUST_LOG", "warn,dms=info")
        .env("DEBUG", "dms:*");
    let lines = logs_of(command, "req-debug-1").await;
    let loaded = lines
        .iter()
        .find(|line| line.contains("Configuration loaded."))
        .unwrap_or_else(|| panic!("DEBUG=dms:* shows debug logs: {lines:#?}"));
    assert!(loaded.contains("DEBUG"), "{loaded}");
    assert!(
        loaded.contains("jwt_secret: [unset]") || loaded.contains("jwt_secret: [redacted]"),
        "secrets stay redacted: {loaded}"
    );
}
