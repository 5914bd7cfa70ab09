//! `bind-plugins`: uploads three tenant plugins (the test guests `tenant-validator`,
//! `tenant-delay`, `tenant-channel`) to the admin's tenant and binds them to the validators,
//! delay-policy and inbox hooks, timing each upload (which compiles the component) and the
//! first submit that uses them. `unbind-plugins` returns the hooks to the built-ins.
//! `first-submit`: the time of two submits, for after a restart.

use std::time::Instant;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::{Common, client, login, recipient};

/// Uploads and binds; one JSON line of timings.
pub(super) async fn bind(common: &Common) -> anyhow::Result<Value> {
    let client = client(1)?;
    let token = login(&client, common).await?;
    let mut uploads = serde_json::Map::new();
    let mut ids = Vec::new();
    for (name, bytes) in [
        ("tenant-validator", guest_artifacts::GUEST_TENANT_VALIDATOR),
        ("tenant-delay", guest_artifacts::GUEST_TENANT_DELAY),
        ("tenant-channel", guest_artifacts::GUEST_TENANT_CHANNEL),
    ] {
        let started = Instant::now();
        let response = client
            .post(format!("{}/plugins?name={name}", common.url))
            .bearer_auth(&token)
            .header("content-type", "application/wasm")
            .body(bytes.to_vec())
            .send()
            .await?;
        let took = started.elapsed().as_secs_f64() * 1000.0;
        let status = response.status();
        let body: Value = response.json().await?;
        if !status.is_success() {
            bail!("uploading {name}: {status} {body}");
        }
        uploads.insert(
            name.into(),
            json!({ "upload_ms": took, "bytes": bytes.len(), "status": status.as_u16() }),
        );
        ids.push(body["id"].as_str().context("no plugin id")?.to_owned());
    }
    for (path, body) in [
        (
            "/hooks/validators",
            json!({ "plugins": [{ "plugin_id": ids[0], "config": { "deny": "never-in-a-benchmark" } }] }),
        ),
        ("/hooks/delay-policy", json!({ "plugin_id": ids[1] })),
        ("/hooks/channels/inbox", json!({ "plugin_id": ids[2] })),
    ] {
        let response = client
            .put(format!("{}{path}", common.url))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await?;
        if !response.status().is_success() {
            bail!(
                "binding {path}: {} {}",
                response.status(),
                response.text().await?
            );
        }
    }
    let first = first_submit(common).await?;
    Ok(
        json!({ "scenario": "bind-plugins", "label": common.label, "uploads": uploads, "first_submit": first }),
    )
}

/// Returns the validators, delay-policy and inbox hooks to the built-ins.
pub(super) async fn unbind(common: &Common) -> anyhow::Result<Value> {
    let client = client(1)?;
    let token = login(&client, common).await?;
    for path in [
        "/hooks/validators",
        "/hooks/delay-policy",
        "/hooks/channels/inbox",
    ] {
        let response = client
            .delete(format!("{}{path}", common.url))
            .bearer_auth(&token)
            .send()
            .await?;
        if !response.status().is_success() {
            bail!(
                "unbinding {path}: {} {}",
                response.status(),
                response.text().await?
            );
        }
    }
    Ok(json!({ "scenario": "unbind-plugins", "label": common.label }))
}

/// Times two submits in a row: the first resolves the tenant's hooks (after a restart: reads
/// them from the database and loads the plugins from the disk cache).
pub(super) async fn first_submit(common: &Common) -> anyhow::Result<Value> {
    let client = client(1)?;
    let token = login(&client, common).await?;
    let recipient = recipient(&client, common, &token).await?;
    let mut took = Vec::new();
    for n in 0..2 {
        let started = Instant::now();
        let response = client
            .post(format!("{}/messages", common.url))
            .bearer_auth(&token)
            .json(&json!({ "recipient_id": recipient, "content": format!("first {n}"), "delay_seconds": 3600 }))
            .send()
            .await?;
        took.push(started.elapsed().as_secs_f64() * 1000.0);
        if !response.status().is_success() {
            bail!("submit: {} {}", response.status(), response.text().await?);
        }
    }
    Ok(
        json!({ "scenario": "first-submit", "label": common.label, "first_ms": took[0], "second_ms": took[1] }),
    )
}
