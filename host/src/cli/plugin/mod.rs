//! `dms plugin …`: scaffold a plugin crate, check a component, run one hook call, and ask a
//! running server for a dry run of a tenant's hooks.

mod scaffold;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use crate::clock::{Clock, parse_rfc3339, rfc3339};
use crate::sandbox::{
    Address, Attempt, Binding, CallError, DeliveryResult, Message, Plugin, Recorder, RequestedTime,
    RetryDecision, Sandbox, SandboxConfig, World,
};
use anyhow::{Context, bail};
use base64::Engine as _;
use clap::{Args, Subcommand};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, Subcommand)]
pub(super) enum PluginCommand {
    /// Create a plugin crate that builds and passes its own tests.
    New(scaffold::NewArgs),
    /// Print a component's world, size, digest and imports, or why the host refuses it.
    Check {
        /// The component (`.wasm`).
        file: PathBuf,
    },
    /// Run one hook call and print the decision as JSON.
    Run(RunArgs),
    /// Ask a running server what the tenant's hooks decide for a message (`POST
    /// /hooks/dry-run`): validation, delivery time and the retry schedule. Nothing is stored.
    DryRun(DryRunArgs),
}

#[derive(Debug, Args)]
pub(super) struct DryRunArgs {
    /// The server's base URL.
    #[arg(long, env = "DMS_SERVER", default_value = "http://127.0.0.1:3000")]
    server: String,
    /// A tenant admin's access token (from POST /auth/login).
    #[arg(long, env = "DMS_TOKEN", hide_env_values = true)]
    token: String,
    /// The sample message as `POST /messages` takes it, as JSON (or `@file.json`).
    #[arg(long, conflicts_with = "message_id")]
    message: Option<String>,
    /// A stored message of the tenant instead of a sample.
    #[arg(long)]
    message_id: Option<String>,
    /// Failed attempts to simulate (the server's default when left out).
    #[arg(long)]
    attempts: Option<u32>,
    /// What each simulated failure reports.
    #[arg(long)]
    error: Option<String>,
    /// The channel's retry-after hint with each failure, in milliseconds.
    #[arg(long)]
    retry_after_ms: Option<u64>,
}

/// The largest component the local commands accept. The server's own limit
/// (`DMS_PLUGIN_MAX_UPLOAD_MB`, 10 MiB by default) applies on upload; `check` reports it.
const LOCAL_MAX_BYTES: usize = 1 << 30;
/// The server's default upload limit, for `check`'s note.
const SERVER_DEFAULT_MAX_BYTES: usize = 10 << 20;

#[derive(Debug, Args)]
pub(super) struct RunArgs {
    /// The component (`.wasm`), or `builtin:NAME` for a default plugin.
    plugin: String,
    /// The message, as JSON (or `@file.json`): `content`, `content_type`, `metadata`,
    /// `delay_seconds` or `deliver_at` (RFC 3339), `sender_id`, `recipient_id`, ...
    #[arg(long, default_value = "{}")]
    message: String,
    /// A binding configuration value, as `key=value`; repeat for more.
    #[arg(long = "config", value_name = "KEY=VALUE")]
    config: Vec<String>,
    /// A host a channel may reach over HTTP (`example.com`, `*.example.com`, `*`).
    #[arg(long = "allow-host", value_name = "HOST")]
    allowed_hosts: Vec<String>,
    /// Let a channel reach loopback and private addresses.
    #[arg(long)]
    allow_private_networks: bool,
    /// For a delay policy: decide the retry after this failed attempt instead of planning.
    #[arg(long)]
    attempt: Option<u32>,
    /// With `--attempt`: the error the attempt reported.
    #[arg(long, requires = "attempt")]
    last_error: Option<String>,
    /// With `--attempt`: the channel's retry-after hint, in milliseconds.
    #[arg(long, requires = "attempt")]
    retry_after_ms: Option<u64>,
    /// For a channel: the recipient's webhook URL.
    #[arg(long)]
    url: Option<String>,
    /// For a channel: a signing secret (`whsec_…`); repeat while rotating.
    #[arg(long = "secret", value_name = "SECRET")]
    secrets: Vec<String>,
    /// For a channel: report the recipient as online.
    #[arg(long)]
    online: bool,
}

pub(super) async fn run(command: PluginCommand) -> anyhow::Result<ExitCode> {
    match command {
        PluginCommand::New(args) => scaffold::new(&args),
        PluginCommand::Check { file } => check(&file).await,
        PluginCommand::Run(args) => run_once(args).await,
        PluginCommand::DryRun(args) => dry_run(args).await,
    }
}

async fn dry_run(args: DryRunArgs) -> anyhow::Result<ExitCode> {
    let mut body = serde_json::Map::new();
    match (&args.message, &args.message_id) {
        (Some(message), _) => {
            let text = match message.strip_prefix('@') {
                Some(path) => {
                    std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?
                }
                None => message.clone(),
            };
            let message: Value =
                serde_json::from_str(&text).context("--message is not valid JSON")?;
            body.insert("message".into(), message);
        }
        (None, Some(id)) => {
            body.insert("message_id".into(), json!(id));
        }
        (None, None) => bail!("give --message (a sample message) or --message-id"),
    }
    if let Some(attempts) = args.attempts {
        body.insert("attempts".into(), json!(attempts));
    }
    if let Some(error) = &args.error {
        body.insert("error".into(), json!(error));
    }
    if let Some(ms) = args.retry_after_ms {
        body.insert("retry_after_ms".into(), json!(ms));
    }
    let url = format!("{}/hooks/dry-run", args.server.trim_end_matches('/'));
    let response = reqwest::Client::new()
        .post(&url)
        .bearer_auth(&args.token)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = response.status();
    let text = response.text().await.context("cannot read the answer")?;
    let answer: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if status.is_success() {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "error: the server answered {status}: {}",
            answer["detail"].as_str().unwrap_or(&answer.to_string())
        );
        Ok(ExitCode::FAILURE)
    }
}

async fn check(file: &PathBuf) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let sandbox = Sandbox::new(
        SandboxConfig {
            max_component_bytes: LOCAL_MAX_BYTES,
            ..SandboxConfig::default()
        },
        Arc::new(Recorder::new()),
    )?;
    let name = file
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default();
    match sandbox.load(&name, &bytes).await {
        Ok(plugin) => {
            println!("file:    {}", file.display());
            println!("world:   {}", plugin.world());
            println!("size:    {} bytes", plugin.size());
            if plugin.size() > SERVER_DEFAULT_MAX_BYTES {
                println!(
                    "note:    larger than a server accepts by default ({SERVER_DEFAULT_MAX_BYTES} bytes); \
                     the operator raises DMS_PLUGIN_MAX_UPLOAD_MB"
                );
            }
            println!("digest:  sha256:{}", plugin.digest());
            println!("imports:");
            for import in plugin.imports() {
                println!("  {import}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("refused: {}: {error}", file.display());
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn run_once(args: RunArgs) -> anyhow::Result<ExitCode> {
    let clock = Clock::System;
    let message = parse_message(&args.message, &clock)?;
    let recorder = Arc::new(Recorder::new());
    if args.online {
        recorder.set_online(&message.tenant_id, &message.recipient_id);
    }
    let sandbox = Sandbox::new(
        SandboxConfig {
            allow_private_networks: args.allow_private_networks,
            clock,
            max_component_bytes: LOCAL_MAX_BYTES,
            ..SandboxConfig::default()
        },
        recorder.clone(),
    )?;
    let plugin = load(&sandbox, &args.plugin).await?;
    let binding = Arc::new(Binding {
        config: parse_config(&args.config)?,
        allowed_hosts: args.allowed_hosts.clone(),
        ..Binding::default()
    });

    let outcome = match plugin.world() {
        World::Validator => sandbox
            .validate(&plugin, &binding, &message)
            .await
            .map(|answer| match answer {
                Ok(()) => json!({ "decision": "accept" }),
                Err(rejection) => json!({
                    "decision": "reject",
                    "code": rejection.code,
                    "reason": rejection.reason,
                }),
            }),
        World::DelayPolicy => match args.attempt {
            None => sandbox
                .plan(&plugin, &binding, &message)
                .await
                .map(|answer| match answer {
                    Ok(at) => json!({
                        "decision": "deliver_at",
                        "deliver_at_ms": at,
                        "deliver_at": rfc3339(at),
                    }),
                    Err(rejection) => json!({
                        "decision": "reject",
                        "code": rejection.code,
                        "reason": rejection.reason,
                    }),
                }),
            Some(number) => {
                let attempt = Attempt {
                    number,
                    last_error: args.last_error.clone(),
                    retry_after_ms: args.retry_after_ms,
                };
                sandbox
                    .retry(&plugin, &binding, &message, &attempt)
                    .await
                    .map(|answer| match answer {
                        RetryDecision::RetryAtMs(at) => json!({
                            "decision": "retry_at",
                            "retry_at_ms": at,
                            "retry_at": rfc3339(at),
                        }),
                        RetryDecision::GiveUp(reason) => {
                            json!({ "decision": "give_up", "reason": reason })
                        }
                    })
            }
        },
        World::Channel => {
            let address = Address {
                recipient_id: message.recipient_id.clone(),
                url: args.url.clone(),
                signing_secrets: args.secrets.clone(),
            };
            sandbox
                .deliver_to(&plugin, &binding, &message, &address)
                .await
                .map(|delivery| {
                    let mut output = match delivery.result {
                        DeliveryResult::Delivered => json!({ "decision": "delivered" }),
                        DeliveryResult::Retry(later) => json!({
                            "decision": "retry",
                            "reason": later.reason,
                            "after_ms": later.after_ms,
                        }),
                        DeliveryResult::Failed(reason) => {
                            json!({ "decision": "failed", "reason": reason })
                        }
                    };
                    let published: Vec<Value> = delivery
                        .published
                        .into_iter()
                        .map(|published| {
                            json!({ "user_id": published.user_id, "event": published.event })
                        })
                        .collect();
                    output["published"] = Value::Array(published);
                    output
                })
        }
    };

    let header = json!({
        "plugin": plugin.name(),
        "world": plugin.world().as_str(),
        "digest": format!("sha256:{}", plugin.digest()),
    });
    let (mut output, code) = match outcome {
        Ok(decision) => (decision, ExitCode::SUCCESS),
        Err(error) => (error_json(&error), ExitCode::FAILURE),
    };
    for (key, value) in header.as_object().expect("an object") {
        output[key] = value.clone();
    }
    println!("{}", serde_json::to_string_pretty(&output)?);
    Ok(code)
}

async fn load(sandbox: &Sandbox, source: &str) -> anyhow::Result<Arc<Plugin>> {
    if let Some(name) = source.strip_prefix("builtin:") {
        return Ok(sandbox.builtin(name).await?);
    }
    let bytes = std::fs::read(source).with_context(|| format!("cannot read {source}"))?;
    let name = std::path::Path::new(source)
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default();
    sandbox
        .load(&name, &bytes)
        .await
        .with_context(|| format!("the host refuses {source}"))
}

fn error_json(error: &CallError) -> Value {
    json!({ "error": { "kind": error.kind().as_str(), "message": error.to_string() } })
}

fn parse_config(pairs: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    pairs
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
            _ => bail!("--config {pair:?} is not KEY=VALUE"),
        })
        .collect()
}

/// The message a `dms plugin run` passes to the plugin; every field has a default.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageSpec {
    #[serde(default = "default_message_id")]
    id: String,
    #[serde(default = "default_tenant_id")]
    tenant_id: String,
    #[serde(default = "default_sender_id")]
    sender_id: String,
    #[serde(default = "default_recipient_id")]
    recipient_id: String,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    content_base64: Option<String>,
    #[serde(default = "default_content_type")]
    content_type: String,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    #[serde(default)]
    delay_seconds: Option<u64>,
    #[serde(default)]
    deliver_at: Option<String>,
}

fn default_message_id() -> String {
    "msg_example".into()
}
fn default_tenant_id() -> String {
    "ten_example".into()
}
fn default_sender_id() -> String {
    "usr_0000000000000000000000SEND".into()
}
fn default_recipient_id() -> String {
    "usr_000000000000000000000RECPT".into()
}
fn default_content_type() -> String {
    "text/plain".into()
}

fn parse_message(text: &str, clock: &Clock) -> anyhow::Result<Message> {
    let text = match text.strip_prefix('@') {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?
        }
        None => text.to_owned(),
    };
    let spec: MessageSpec =
        serde_json::from_str(&text).context("--message is not a valid message")?;
    let content = match (spec.content, spec.content_base64) {
        (Some(_), Some(_)) => bail!("--message: give content or content_base64, not both"),
        (Some(text), None) => text.into_bytes(),
        (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .context("--message: content_base64 is not base64")?,
        (None, None) => b"Hello from dms plugin run".to_vec(),
    };
    let requested = match (spec.delay_seconds, spec.deliver_at) {
        (Some(_), Some(_)) => bail!("--message: give delay_seconds or deliver_at, not both"),
        (Some(seconds), None) => RequestedTime::DelayMs(seconds.saturating_mul(1000)),
        (None, Some(at)) => RequestedTime::DeliverAtMs(
            parse_rfc3339(&at)
                .with_context(|| format!("--message: deliver_at {at:?} is not an RFC 3339 time"))?,
        ),
        (None, None) => RequestedTime::Unspecified,
    };
    Ok(Message {
        id: spec.id,
        tenant_id: spec.tenant_id,
        sender_id: spec.sender_id,
        recipient_id: spec.recipient_id,
        content,
        content_type: spec.content_type,
        metadata: spec.metadata.into_iter().collect(),
        requested,
        created_at_ms: clock.now_ms(),
    })
}
