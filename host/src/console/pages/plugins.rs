//! The tenant's plugins (with this node's call counters and the upload form) and its hooks
//! (what serves each one, the forms that bind them, and the dry run). Tenant admins only.

use askama::Template;
use axum::extract::State;
use axum::response::Response;

use crate::console::page::{ForViewer, Layout, PageError, render, when};
use crate::console::session::AdminViewer;
use crate::domain::message::Channel;
use crate::domain::plugin::World;
use crate::policies::{Bound, Source};
use crate::state::AppState;
use crate::store::Page;
use crate::use_cases::messages::manage::{self, BoxName, ListFilter};
use crate::use_cases::policies::PluginDetails;

/// The start of a message's content, as text, for a list.
fn preview(content: &[u8]) -> String {
    let text = String::from_utf8_lossy(content);
    let mut short: String = text.chars().take(40).collect();
    if text.chars().count() > 40 {
        short.push('…');
    }
    short
}

/// A plugin as a row.
pub(crate) struct PluginRow {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) world: &'static str,
    pub(crate) size: u64,
    pub(crate) digest: String,
    pub(crate) uploaded: String,
    pub(crate) uploaded_rfc3339: String,
    /// Why and since when the host stopped using it, when it did.
    pub(crate) disabled: Option<(String, String)>,
    pub(crate) bound_to: String,
    pub(crate) calls: u64,
    pub(crate) failures: u64,
    /// Failures by kind: `timeout 2, trap 1`.
    pub(crate) failure_kinds: String,
    pub(crate) failing_streak: u32,
    /// Total time in calls, in ms (three decimals).
    pub(crate) time_ms: String,
    /// Mean time per call, in ms, when it was called.
    pub(crate) mean_ms: Option<String>,
}

impl From<PluginDetails> for PluginRow {
    fn from(details: PluginDetails) -> Self {
        let plugin = details.record;
        let stats = details.stats;
        let failures = stats.failures.values().sum();
        let failure_kinds = stats
            .failures
            .iter()
            .filter(|(_, count)| **count > 0)
            .map(|(kind, count)| format!("{kind} {count}"))
            .collect::<Vec<_>>()
            .join(", ");
        Self {
            id: plugin.id.to_string(),
            name: plugin.name,
            version: plugin.version.unwrap_or_default(),
            world: plugin.world.as_str(),
            size: plugin.size,
            digest: format!("sha256:{}", plugin.digest),
            uploaded: when(plugin.created_at_ms),
            uploaded_rfc3339: crate::clock::rfc3339(plugin.created_at_ms),
            disabled: plugin
                .disabled
                .map(|disabled| (disabled.reason, when(disabled.at_ms))),
            bound_to: details.bound_to.join(", "),
            calls: stats.calls,
            failures,
            failure_kinds,
            failing_streak: stats.failing_streak,
            time_ms: milliseconds(stats.time_us),
            mean_ms: (stats.calls > 0).then(|| milliseconds(stats.time_us / stats.calls)),
        }
    }
}

fn milliseconds(us: u64) -> String {
    format!("{}.{:03}", us / 1000, us % 1000)
}

/// `/console/plugins`.
#[derive(Template)]
#[template(path = "plugins.html")]
pub(crate) struct PluginsPage {
    pub(crate) layout: Layout,
    pub(crate) plugins: Vec<PluginRow>,
    pub(crate) max_upload_bytes: usize,
}

/// `GET /console/plugins`: the tenant's plugins with their counters, and the upload form.
pub(crate) async fn plugins(
    State(app): State<AppState>,
    AdminViewer(viewer): AdminViewer,
) -> Result<Response, PageError> {
    let plugins = app
        .tenant_policies
        .plugins(&viewer.user.tenant_id)
        .await
        .for_viewer(&viewer)?;
    Ok(render(&PluginsPage {
        layout: Layout {
            scripts: &["plugins.js"],
            ..Layout::new(&viewer, "/console/plugins", "Plugins")
        },
        plugins: plugins.into_iter().map(PluginRow::from).collect(),
        max_upload_bytes: app.tenant_policies.max_upload_bytes(),
    }))
}

/// What serves a hook, as a row.
pub(crate) struct BoundRow {
    pub(crate) name: String,
    pub(crate) digest: String,
    /// The tenant plugin's id; none for a built-in.
    pub(crate) plugin_id: Option<String>,
    /// Its configuration, as JSON.
    pub(crate) config: String,
    pub(crate) allowed_hosts: String,
    pub(crate) standing_in: Option<String>,
}

impl From<&Bound> for BoundRow {
    fn from(bound: &Bound) -> Self {
        Self {
            name: bound.name.to_string(),
            digest: format!("sha256:{}", bound.plugin.digest()),
            plugin_id: match &bound.source {
                Source::Builtin => None,
                Source::Tenant(id) => Some(id.to_string()),
            },
            config: serde_json::to_string(&bound.binding.config).unwrap_or_default(),
            allowed_hosts: bound.binding.allowed_hosts.join("\n"),
            standing_in: bound.standing_in.as_deref().map(str::to_owned),
        }
    }
}

/// A plugin to choose in a binding form.
pub(crate) struct Choice {
    pub(crate) id: String,
    pub(crate) label: String,
}

/// A channel's binding form.
pub(crate) struct ChannelForm {
    pub(crate) name: &'static str,
    pub(crate) bound: BoundRow,
}

/// A user to address a dry run's sample message to.
pub(crate) struct Recipient {
    pub(crate) id: String,
    pub(crate) username: String,
}

/// `/console/hooks`.
#[derive(Template)]
#[template(path = "hooks.html")]
pub(crate) struct HooksPage {
    pub(crate) layout: Layout,
    pub(crate) validators: Vec<BoundRow>,
    /// The validators' bindings as `PUT /hooks/validators` takes them.
    pub(crate) validators_json: String,
    pub(crate) delay: BoundRow,
    pub(crate) channels: Vec<ChannelForm>,
    pub(crate) validator_plugins: Vec<Choice>,
    pub(crate) delay_plugins: Vec<Choice>,
    pub(crate) channel_plugins: Vec<Choice>,
    pub(crate) recipients: Vec<Recipient>,
    pub(crate) viewer_id: String,
    /// The viewer's latest sent messages, to pick as a dry run's sample.
    pub(crate) recent: Vec<Choice>,
    /// An example of proposed hooks, with the tenant's first validator when it has one.
    pub(crate) proposal_example: String,
}

/// Users offered as a sample's recipient.
const RECIPIENTS: u32 = 100;
/// The viewer's sent messages offered as a sample.
const RECENT_MESSAGES: u32 = 20;

/// `GET /console/hooks`: what serves each hook, the forms to bind them, and the dry run.
pub(crate) async fn hooks(
    State(app): State<AppState>,
    AdminViewer(viewer): AdminViewer,
) -> Result<Response, PageError> {
    let tenant = &viewer.user.tenant_id;
    let hooks = app
        .tenant_policies
        .hooks(tenant)
        .await
        .for_viewer(&viewer)?;
    let plugins = app
        .tenant_policies
        .plugins(tenant)
        .await
        .for_viewer(&viewer)?;
    let (users, _) = app
        .accounts
        .users(
            tenant,
            Page {
                limit: RECIPIENTS,
                offset: 0,
            },
        )
        .await
        .for_viewer(&viewer)?;
    let recent = manage::list(
        &app.messages,
        &viewer.user,
        BoxName::Sent,
        &ListFilter::default(),
        Page {
            limit: RECENT_MESSAGES,
            offset: 0,
        },
        None,
    )
    .await
    .for_viewer(&viewer)?;
    let choices = |world: World| -> Vec<Choice> {
        plugins
            .iter()
            .filter(|plugin| plugin.record.world == world && plugin.record.disabled.is_none())
            .map(|plugin| Choice {
                id: plugin.record.id.to_string(),
                label: format!(
                    "{} {} (sha256:{})",
                    plugin.record.name,
                    plugin.record.version.as_deref().unwrap_or_default(),
                    plugin.record.digest.get(..12).unwrap_or_default()
                ),
            })
            .collect()
    };
    let validator_plugins = choices(World::Validator);
    let current: Vec<serde_json::Value> = hooks
        .validators
        .iter()
        .filter_map(|bound| match &bound.source {
            Source::Tenant(id) => Some(serde_json::json!({
                "plugin_id": id.to_string(),
                "config": bound.binding.config,
            })),
            Source::Builtin => None,
        })
        .collect();
    let example_id = validator_plugins
        .first()
        .map_or_else(|| "plg_…".to_owned(), |choice| choice.id.clone());
    let proposal_example = serde_json::json!({
        "validators": {"plugins": [{"plugin_id": example_id, "config": {}}]}
    })
    .to_string();
    Ok(render(&HooksPage {
        layout: Layout {
            scripts: &["hooks.js"],
            ..Layout::new(&viewer, "/console/hooks", "Hooks and dry run")
        },
        validators: hooks.validators.iter().map(BoundRow::from).collect(),
        validators_json: serde_json::to_string_pretty(&current).unwrap_or_default(),
        delay: BoundRow::from(&hooks.delay),
        channels: vec![
            ChannelForm {
                name: Channel::Inbox.as_str(),
                bound: BoundRow::from(&hooks.inbox),
            },
            ChannelForm {
                name: Channel::Webhook.as_str(),
                bound: BoundRow::from(&hooks.webhook),
            },
        ],
        validator_plugins,
        delay_plugins: choices(World::DelayPolicy),
        channel_plugins: choices(World::Channel),
        recipients: users
            .into_iter()
            .map(|user| Recipient {
                id: user.id.to_string(),
                username: user.username,
            })
            .collect(),
        viewer_id: viewer.user.id.to_string(),
        recent: recent
            .into_iter()
            .map(|message| Choice {
                label: format!(
                    "{} · {} · {}",
                    when(message.created_at_ms),
                    message.status.as_str(),
                    preview(&message.content)
                ),
                id: message.id.to_string(),
            })
            .collect(),
        proposal_example,
    }))
}
