//! Logs of the real binary: one line per request with its request id, route, status and
//! duration; JSON lines with `DMS_LOG_FORMAT=json`; `DEBUG=dms:*` turns debug logs on, and with
//! them the spans that trace one message from its submit to its delivery.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::harness::{Served, dms, serve};

/// Every line the served process writes to stderr, once it ends.
fn stderr_lines(served: &mut Served) -> tokio::task::JoinHandle<Vec<String>> {
    let stderr = served.child.stderr.take().unwrap();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        let mut all = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            all.push(line);
        }
        all
    })
}

/// Serves with stderr captured, makes two requests, stops, and returns every stderr line.
async fn logs_of(command: tokio::process::Command, request_id: &str) -> Vec<String> {
    let mut command = command;
    command.stderr(Stdio::piped());
    let mut served: Served = serve(command).await;
    let lines = stderr_lines(&mut served);
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

/// The fields of the span named `name` among the line's spans (outermost first), if it is in
/// one.
fn span<'a>(line: &'a Value, name: &str) -> Option<&'a Value> {
    line["spans"]
        .as_array()?
        .iter()
        .find(|span| span["name"] == name)
}

/// Whether `line` is about message `id`: one of its spans or its own fields name it.
fn about(line: &Value, id: &str) -> bool {
    let names = |value: &Value| {
        value["message_id"] == id
            || value["message_ids"]
                .as_str()
                .is_some_and(|ids| ids.contains(id))
    };
    names(line)
        || line["spans"]
            .as_array()
            .is_some_and(|spans| spans.iter().any(names))
}

#[tokio::test]
async fn debug_dms_traces_one_message_from_its_request_to_its_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = dms(dir.path());
    command
        .env("DMS_ADMIN_PASSWORD", "trace-admin-password")
        .env("DMS_LOG_FORMAT", "json")
        .env("RUST_LOG", "warn,dms=info")
        .env("DEBUG", "dms:*")
        .stderr(Stdio::piped());
    let mut served: Served = serve(command).await;
    let lines = stderr_lines(&mut served);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = |path: &str| format!("{}{path}", served.url);
    let login: Value = http
        .post(url("/auth/login"))
        .json(&json!({ "username": "admin", "password": "trace-admin-password" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().unwrap().to_owned();
    let me: Value = http
        .get(url("/users/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (user_id, tenant_id) = (
        me["id"].as_str().unwrap(),
        me["tenant_id"].as_str().unwrap(),
    );
    // Two seconds' delay: the dispatcher claims it only after the submit has answered (with
    // room for a slow machine), so the log's order is the message's.
    let submitted = http
        .post(url("/messages"))
        .bearer_auth(&token)
        .header("x-request-id", "req-trace-1")
        .json(&json!({ "recipient_id": user_id, "content": "follow me", "delay_seconds": 2 }))
        .send()
        .await
        .unwrap();
    assert_eq!(submitted.status(), 201);
    let submitted: Value = submitted.json().await.unwrap();
    let id = submitted["id"].as_str().unwrap().to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status: Value = http
            .get(url(&format!("/messages/{id}/status")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if status["status"] == "delivered" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "delivered within 30 s: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let history: Value = http
        .get(url(&format!("/messages/{id}/events")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // The plugins that decided, as the history names them: the log names the same.
    let decided_by = |name: &str| -> (Value, Value) {
        let entry = history["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|entry| entry["plugin"]["name"] == name)
            .unwrap_or_else(|| panic!("{name} decided: {history:#}"));
        (entry["plugin"]["digest"].clone(), entry["result"].clone())
    };
    let (guard_digest, guard_result) = decided_by("content-guard");
    let (delay_digest, planned) = decided_by("standard-delay");
    let (inbox_digest, attempted) = decided_by("inbox");
    assert!(
        guard_digest.as_str().unwrap().starts_with("sha256:"),
        "{guard_digest}"
    );
    assert_eq!(guard_result, "accepted");
    assert_eq!(attempted, "delivered");

    assert!(served.terminate().await.success());
    let lines = tokio::time::timeout(Duration::from_secs(10), lines)
        .await
        .expect("stderr closes when the server exits")
        .unwrap();
    let events: Vec<Value> = lines
        .iter()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|error| panic!("not JSON ({error}): {line}"))
        })
        .collect();
    let path: Vec<&Value> = events.iter().filter(|line| about(line, &id)).collect();
    let steps: Vec<(&str, &str)> = path
        .iter()
        .map(|line| {
            (
                line["span"]["name"].as_str().unwrap_or("-"),
                line["message"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("dms.validate", "Validator decided."),
            ("dms.plan", "Delivery planned."),
            ("dms.commit", "Submission committed."),
            ("dms.claim", "Message claimed."),
            ("dms.channel", "Channel attempted."),
            ("dms.commit", "Outcome committed."),
        ],
        "one message's path, in order: {path:#?}"
    );
    let [
        validated,
        planned_line,
        committed,
        claimed,
        channel,
        outcome,
    ] = path[..]
    else {
        unreachable!()
    };

    // The submit: in the request's span, then the message's, then the plugin's.
    for line in [validated, planned_line, committed] {
        assert_eq!(line["level"], "DEBUG", "{line:#}");
        assert_eq!(span(line, "request").unwrap()["request_id"], "req-trace-1");
        let submit = span(line, "dms.submit").unwrap_or_else(|| panic!("{line:#}"));
        assert_eq!(submit["message_id"], id.as_str());
        assert_eq!(submit["tenant_id"], tenant_id);
    }
    assert_eq!(validated["span"]["plugin"], "content-guard");
    assert_eq!(validated["span"]["digest"], guard_digest);
    assert_eq!(validated["result"], "accepted");
    assert_eq!(planned_line["span"]["plugin"], "standard-delay");
    assert_eq!(planned_line["span"]["digest"], delay_digest);
    assert_eq!(planned_line["result"], planned);
    assert_eq!(committed["span"]["tenant_id"], tenant_id);
    assert_eq!(committed["span"]["message_ids"], format!("[{id}]"));
    assert_eq!(committed["stored"], "Committed");

    // The delivery: the claim, then the attempt through the inbox channel, then its commit.
    assert_eq!(claimed["level"], "DEBUG");
    assert_eq!(claimed["message_id"], id.as_str());
    assert_eq!(claimed["tenant_id"], tenant_id);
    assert_eq!(claimed["attempt"], 1);
    assert_eq!(claimed["previous"], "scheduled");
    for line in [channel, outcome] {
        assert_eq!(line["level"], "DEBUG", "{line:#}");
        assert!(span(line, "request").is_none(), "{line:#}");
        let delivery = span(line, "dms.delivery").unwrap_or_else(|| panic!("{line:#}"));
        assert_eq!(delivery["message_id"], id.as_str());
        assert_eq!(delivery["tenant_id"], tenant_id);
        assert_eq!(delivery["attempt"], 1);
    }
    assert_eq!(channel["span"]["plugin"], "inbox");
    assert_eq!(channel["span"]["digest"], inbox_digest);
    assert_eq!(channel["result"], "delivered");
    assert_eq!(outcome["span"]["status"], "delivered");
    assert_eq!(outcome["committed"], true);
}
