//! A plugin sandbox per test, sample messages, a scripted webhook receiver.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use dms::sandbox::{Binding, Message, Recorder, RequestedTime, Sandbox, SandboxConfig};
use tokio::net::TcpListener;

/// A fixed "now" for tests that do not need the real clock: 2023-11-14T22:13:20Z.
pub(crate) const NOW_MS: u64 = 1_700_000_000_000;

/// Compiled components shared by every test process: keyed by digest and engine, so sharing
/// is safe, and it keeps each test from recompiling the built-ins.
pub(crate) fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache")
}

/// A sandbox with a recorder for real-time events, sized for `instances` concurrent calls,
/// reaching loopback receivers.
pub(crate) fn sandbox_with(instances: u32) -> (Sandbox, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::new());
    let sandbox = Sandbox::new(
        SandboxConfig {
            max_instances: instances,
            cache_dir: Some(cache_dir()),
            allow_private_networks: true,
            ..SandboxConfig::default()
        },
        recorder.clone(),
    )
    .expect("the sandbox starts");
    (sandbox, recorder)
}

/// A sandbox for a test with a few concurrent calls.
pub(crate) fn sandbox() -> (Sandbox, Arc<Recorder>) {
    sandbox_with(64)
}

/// A text message with `content`, requested for "now".
pub(crate) fn message(content: &str) -> Message {
    Message {
        id: "msg_01JTEST0000000000000000000".into(),
        tenant_id: "ten_test".into(),
        sender_id: "usr_0000000000000000000000SEND".into(),
        recipient_id: "usr_000000000000000000000RECPT".into(),
        content: content.as_bytes().to_vec(),
        content_type: "text/plain".into(),
        metadata: vec![("subject".into(), "hello".into())],
        requested: RequestedTime::Unspecified,
        created_at_ms: NOW_MS,
    }
}

/// A binding with the given configuration pairs.
pub(crate) fn binding(config: &[(&str, &str)]) -> Arc<Binding> {
    Arc::new(Binding {
        config: config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        allowed_hosts: vec!["*".into()],
        ..Binding::default()
    })
}

/// One request a [`Receiver`] got.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// A webhook receiver on a loopback port that answers with a scripted sequence of responses
/// (the last one repeats) and records every request.
#[derive(Clone)]
pub(crate) struct Receiver {
    pub(crate) url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

/// A scripted answer: status, headers, body, and a delay before answering.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) body: Bytes,
    pub(crate) delay: Duration,
}

impl Answer {
    /// `status` with the body `receiver says hi`.
    pub(crate) fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Bytes::from_static(b"receiver says hi"),
            delay: Duration::ZERO,
        }
    }

    pub(crate) fn body(mut self, body: &[u8]) -> Self {
        self.body = Bytes::copy_from_slice(body);
        self
    }

    pub(crate) fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }

    pub(crate) fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

impl Receiver {
    pub(crate) async fn start(script: Vec<Answer>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(script));
        let app = axum::Router::new().fallback({
            let received = received.clone();
            move |headers: HeaderMap, body: Bytes| {
                let received = received.clone();
                let script = script.clone();
                async move {
                    received.lock().unwrap().push(Received { headers, body });
                    let answer = {
                        let mut script = script.lock().unwrap();
                        if script.len() > 1 {
                            script.remove(0)
                        } else {
                            script[0].clone()
                        }
                    };
                    tokio::time::sleep(answer.delay).await;
                    let mut response = axum::http::Response::builder()
                        .status(StatusCode::from_u16(answer.status).unwrap());
                    for (name, value) in &answer.headers {
                        response = response.header(*name, value);
                    }
                    response.body(axum::body::Body::from(answer.body)).unwrap()
                }
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, received }
    }

    pub(crate) fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}
