//! The overview (`/console/`): the tenant's last hour per minute, as charts the page's script
//! redraws from `/console/overview.json` every few seconds, and the deployment.
//!
//! Scope: every user of a tenant, admin or member, sees the tenant's own figures (counts per
//! minute carry no message, recipient or content); no tenant sees another's. The figures come
//! from [`crate::metrics::activity`]: this node's memory, fed as messages are submitted and
//! delivered and by the node's sampler of the kept status counts, so reading them makes no
//! query whatever the size of the database. They are per node and start empty when it starts.

use askama::Template;
use axum::Json;
use axum::extract::State;
use axum::response::Response;
use serde::Serialize;

use crate::console::page::{Layout, render, when};
use crate::console::session::Viewer;
use crate::metrics::activity::MinuteView;
use crate::state::AppState;

/// The deployment, as the overview shows it.
#[derive(Debug, Serialize)]
pub(crate) struct Deployment {
    /// `SQLite (embedded)` or `PostgreSQL`.
    pub(crate) database: &'static str,
    /// Whether the nodes share Redis (index, flow control, real time).
    pub(crate) redis: bool,
    /// Nodes online: this one alone without Redis; with it, those that told Redis so in the
    /// last half minute (none when Redis has not answered lately).
    pub(crate) nodes_online: Option<u64>,
    /// Whether this node delivers messages.
    pub(crate) worker: bool,
    /// The server's version.
    pub(crate) version: &'static str,
}

/// The tenant's last hour and the deployment: what the page's script draws.
#[derive(Debug, Serialize)]
pub(crate) struct Overview {
    /// When it was read (Unix ms).
    pub(crate) at_ms: u64,
    /// Sixty minutes, oldest first, the current one last.
    pub(crate) minutes: Vec<MinuteView>,
    /// Submitted in the hour.
    pub(crate) submitted: u64,
    /// Delivered in the hour.
    pub(crate) delivered: u64,
    /// Failed attempts in the hour.
    pub(crate) failed: u64,
    /// The last sampled queue depth.
    pub(crate) queue_depth: Option<u64>,
    /// The last sampled dead letters.
    pub(crate) dead_letters: Option<u64>,
    /// The deployment.
    pub(crate) deployment: Deployment,
}

impl Overview {
    fn read(app: &AppState, viewer: &Viewer) -> Self {
        let now = app.clock.now_ms();
        let minutes = app
            .metrics
            .activity()
            .last_hour(&viewer.user.tenant_id, now);
        let latest = |value: fn(&MinuteView) -> Option<u64>| minutes.iter().rev().find_map(value);
        Self {
            at_ms: now,
            submitted: minutes.iter().map(|minute| minute.submitted).sum(),
            delivered: minutes.iter().map(|minute| minute.delivered).sum(),
            failed: minutes.iter().map(|minute| minute.failed).sum(),
            queue_depth: latest(|minute| minute.queue_depth),
            dead_letters: latest(|minute| minute.dead_letters),
            deployment: Deployment {
                database: match app.store.backend() {
                    "sqlite" => "SQLite (embedded)",
                    "postgres" => "PostgreSQL",
                    other => other,
                },
                redis: app.redis.is_some(),
                nodes_online: if app.redis.is_some() {
                    app.metrics.activity().nodes_online(now)
                } else {
                    Some(1)
                },
                worker: app.config.worker_enabled,
                version: env!("CARGO_PKG_VERSION"),
            },
            minutes,
        }
    }
}

/// `/console/`.
#[derive(Template)]
#[template(path = "overview.html")]
pub(crate) struct OverviewPage {
    pub(crate) layout: Layout,
    pub(crate) overview: Overview,
    pub(crate) read_at: String,
    pub(crate) depth: String,
    pub(crate) dead: String,
    pub(crate) nodes: String,
}

/// A figure for people: the number, or a dash when it is not known yet.
fn figure(value: Option<u64>) -> String {
    value.map_or_else(|| "—".to_owned(), |value| value.to_string())
}

/// `GET /console/`: the overview.
pub(crate) async fn page(State(app): State<AppState>, viewer: Viewer) -> Response {
    let overview = Overview::read(&app, &viewer);
    render(&OverviewPage {
        layout: Layout {
            scripts: &["overview.js"],
            ..Layout::new(&viewer, "/console/", "Overview")
        },
        read_at: when(overview.at_ms),
        depth: figure(overview.queue_depth),
        dead: figure(overview.dead_letters),
        nodes: figure(overview.deployment.nodes_online),
        overview,
    })
}

/// `GET /console/overview.json`: the same, for the page's script.
pub(crate) async fn data(State(app): State<AppState>, viewer: Viewer) -> Json<Overview> {
    Json(Overview::read(&app, &viewer))
}
