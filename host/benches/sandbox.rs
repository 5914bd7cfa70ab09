//! Plugin call costs: one hook call on a fresh instance for each default plugin, the same
//! decision as native Rust, compiling a component, and loading it from the disk cache.
//!
//! Run: `cargo bench -p dms --bench sandbox`. Results and the machine are in
//! docs/BENCHMARKS.md.

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use dms::sandbox::{
    Address, Attempt, Binding, Message, Recorder, RequestedTime, Sandbox, SandboxConfig,
};

fn message() -> Message {
    Message {
        id: "msg_01JBENCH000000000000000000".into(),
        tenant_id: "ten_bench".into(),
        sender_id: "usr_0000000000000000000000SEND".into(),
        recipient_id: "usr_000000000000000000000RECPT".into(),
        content: b"Hello! This is a typical short message body.".to_vec(),
        content_type: "text/plain".into(),
        metadata: vec![("subject".into(), "greetings".into())],
        requested: RequestedTime::DelayMs(5_000),
        created_at_ms: 1_700_000_000_000,
    }
}

/// `bytes` with a custom section appended: the same component under a new digest, so the
/// caches cannot answer.
fn with_salt(bytes: &[u8], salt: u64) -> Vec<u8> {
    let name = b"dms-bench-salt";
    let payload = salt.to_le_bytes();
    let size = 1 + name.len() + payload.len();
    let mut out = bytes.to_vec();
    out.extend_from_slice(&[0x00, size as u8, name.len() as u8]);
    out.extend_from_slice(name);
    out.extend_from_slice(&payload);
    out
}

fn sandbox(cache_dir: Option<std::path::PathBuf>) -> Sandbox {
    Sandbox::new(
        SandboxConfig {
            cache_dir,
            ..SandboxConfig::default()
        },
        Arc::new(Recorder::new()),
    )
    .expect("the sandbox starts")
}

fn hook_calls(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let sandbox = sandbox(None);
    let (guard, delay, inbox) = runtime.block_on(async {
        (
            sandbox.builtin("content-guard").await.unwrap(),
            sandbox.builtin("standard-delay").await.unwrap(),
            sandbox.builtin("inbox").await.unwrap(),
        )
    });
    let binding = Arc::new(Binding::default());
    let msg = message();
    let address = Address {
        recipient_id: "usr_000000000000000000000RECPT".into(),
        url: None,
        signing_secrets: Vec::new(),
    };
    let attempt = Attempt {
        number: 3,
        last_error: Some("HTTP 503".into()),
        retry_after_ms: None,
    };

    let mut group = c.benchmark_group("fresh instance per call");
    group.bench_function("content-guard validate", |b| {
        b.to_async(&runtime)
            .iter(|| async { sandbox.validate(&guard, &binding, &msg).await.unwrap() })
    });
    group.bench_function("standard-delay plan", |b| {
        b.to_async(&runtime)
            .iter(|| async { sandbox.plan(&delay, &binding, &msg).await.unwrap() })
    });
    group.bench_function("standard-delay retry", |b| {
        b.to_async(&runtime).iter(|| async {
            sandbox
                .retry(&delay, &binding, &msg, &attempt)
                .await
                .unwrap()
        })
    });
    group.bench_function("inbox deliver (recorded publish)", |b| {
        b.to_async(&runtime).iter(|| async {
            sandbox
                .deliver(&inbox, &binding, &msg, &address)
                .await
                .unwrap()
        })
    });
    group.finish();

    let mut group = c.benchmark_group("native Rust, same decision");
    let rules = content_guard::Rules::default();
    group.bench_function("content-guard check", |b| {
        b.iter(|| content_guard::check(&msg.content, &msg.content_type, &rules))
    });
    let policy = standard_delay::Policy::default();
    // The native plugin crates see the SDK's own copy of the WIT types.
    let requested = dms_plugin_sdk::RequestedTime::DelayMs(5_000);
    group.bench_function("standard-delay plan", |b| {
        b.iter(|| policy.plan(1_700_000_000_100, msg.created_at_ms, &requested))
    });
    group.finish();
}

fn webhook_call(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let recorder = Arc::new(Recorder::new());
    let sandbox = Sandbox::new(
        SandboxConfig {
            allow_private_networks: true,
            ..SandboxConfig::default()
        },
        recorder,
    )
    .unwrap();
    let (webhook, url) = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let app = axum::Router::new().fallback(|| async { "ok" });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (sandbox.builtin("webhook").await.unwrap(), url)
    });
    let binding = Arc::new(Binding {
        allowed_hosts: vec!["*".into()],
        ..Binding::default()
    });
    let msg = message();
    let address = Address {
        recipient_id: "usr_000000000000000000000RECPT".into(),
        url: Some(url),
        signing_secrets: vec!["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()],
    };
    let mut group = c.benchmark_group("fresh instance per call");
    group.bench_function("webhook deliver (signed POST to loopback)", |b| {
        b.to_async(&runtime).iter(|| async {
            sandbox
                .deliver(&webhook, &binding, &msg, &address)
                .await
                .unwrap()
        })
    });
    group.finish();
}

fn loading(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut group = c.benchmark_group("load content-guard");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(10));

    let cold = sandbox(None);
    let mut salt = 0;
    group.bench_function("cold compile (Cranelift)", |b| {
        b.to_async(&runtime).iter(|| {
            salt += 1;
            let bytes = with_salt(plugin_artifacts::CONTENT_GUARD, salt);
            let cold = &cold;
            async move {
                let plugin = cold.load("content-guard", &bytes).await.unwrap();
                cold.unload(&plugin.digest());
            }
        })
    });

    let dir = tempfile::tempdir().unwrap();
    let cached = sandbox(Some(dir.path().to_path_buf()));
    let digest = runtime
        .block_on(cached.load("content-guard", plugin_artifacts::CONTENT_GUARD))
        .unwrap()
        .digest();
    cached.unload(&digest);
    group.bench_function("from the disk cache", |b| {
        b.to_async(&runtime).iter(|| async {
            let plugin = cached
                .load("content-guard", plugin_artifacts::CONTENT_GUARD)
                .await
                .unwrap();
            assert_eq!(plugin.origin(), dms::sandbox::Origin::Disk);
            cached.unload(&plugin.digest());
        })
    });
    group.finish();
}

criterion_group!(benches, hook_calls, webhook_call, loading);
criterion_main!(benches);
