//! The viewer's webhook endpoint: set, rotate its secret (shown once), remove, and the latest
//! attempts to deliver to it with their HTTP status and latency. Every user.

use askama::Template;
use axum::extract::State;
use axum::response::Response;

use crate::console::page::{ForViewer, Layout, PageError, render, when};
use crate::console::session::Viewer;
use crate::domain::callback::CallbackEvent;
use crate::state::AppState;
use crate::use_cases::messages::{self, callbacks, endpoint};

/// Attempts shown.
const ATTEMPTS: usize = 25;

/// The endpoint, without its secrets.
pub(crate) struct EndpointView {
    pub(crate) url: String,
    pub(crate) created: String,
    pub(crate) active_secrets: usize,
    pub(crate) disabled: Option<String>,
}

/// The status callback endpoint, without its secrets.
pub(crate) struct CallbacksView {
    pub(crate) url: String,
    pub(crate) events: String,
    pub(crate) created: String,
    pub(crate) active_secrets: usize,
}

/// A status a callback can be asked for, and whether it is asked for now.
pub(crate) struct EventChoice {
    pub(crate) name: &'static str,
    pub(crate) chosen: bool,
}

/// An attempt as a row.
pub(crate) struct AttemptRow {
    pub(crate) message_id: String,
    pub(crate) at: String,
    pub(crate) attempt: String,
    pub(crate) status: String,
    pub(crate) delivered: bool,
    pub(crate) latency: String,
    pub(crate) result: String,
}

/// `/console/webhook`.
#[derive(Template)]
#[template(path = "webhook.html")]
pub(crate) struct WebhookPage {
    pub(crate) layout: Layout,
    pub(crate) endpoint: Option<EndpointView>,
    pub(crate) callbacks: Option<CallbacksView>,
    pub(crate) events: Vec<EventChoice>,
    pub(crate) attempts: Vec<AttemptRow>,
    pub(crate) looked_at: u32,
}

/// `GET /console/webhook`: the viewer's endpoint and the latest attempts to deliver to it.
pub(crate) async fn page(
    State(app): State<AppState>,
    viewer: Viewer,
) -> Result<Response, PageError> {
    let endpoint = match endpoint::get(&app.messages, &viewer.user).await {
        Ok(webhook) => Some(EndpointView {
            url: webhook.url,
            created: when(webhook.created_at_ms),
            active_secrets: webhook.secrets.len(),
            disabled: webhook.disabled,
        }),
        Err(messages::Error::NotFound) => None,
        Err(error) => return Err(error).for_viewer(&viewer),
    };
    let callbacks = match callbacks::get(&app.messages, &viewer.user).await {
        Ok(callback) => Some(callback),
        Err(messages::Error::NotFound) => None,
        Err(error) => return Err(error).for_viewer(&viewer),
    };
    let events = CallbackEvent::ALL
        .into_iter()
        .map(|event| EventChoice {
            name: event.as_str(),
            chosen: callbacks
                .as_ref()
                .is_none_or(|callback| callback.events.contains(&event)),
        })
        .collect();
    let attempts = endpoint::recent_attempts(&app.messages, &viewer.user, ATTEMPTS)
        .await
        .for_viewer(&viewer)?;
    Ok(render(&WebhookPage {
        layout: Layout {
            scripts: &["webhook.js"],
            ..Layout::new(&viewer, "/console/webhook", "Your webhook")
        },
        endpoint,
        callbacks: callbacks.map(|callback| CallbacksView {
            url: callback.url,
            events: callback
                .events
                .iter()
                .map(|event| event.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            created: when(callback.created_at_ms),
            active_secrets: callback.secrets.len(),
        }),
        events,
        attempts: attempts
            .into_iter()
            .map(|attempt| AttemptRow {
                status: attempt.http_status().unwrap_or_else(|| "no answer".into()),
                delivered: attempt.result == "delivered",
                message_id: attempt.message_id.to_string(),
                at: when(attempt.at_ms),
                attempt: attempt.attempt.map(|n| n.to_string()).unwrap_or_default(),
                latency: attempt
                    .duration_ms
                    .map(|ms| format!("{ms} ms"))
                    .unwrap_or_default(),
                result: attempt.result,
            })
            .collect(),
        looked_at: endpoint::RECENT_RECEIVED,
    }))
}
