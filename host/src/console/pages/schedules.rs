//! Recurring schedules (`/console/schedules`): a member's own, an admin's the whole tenant's;
//! a schedule's page (`/console/schedules/{id}`) with its next occurrences (`?count=`). The
//! forms (create, pause, resume, delete) call the API (`/schedules`).

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;

use crate::api::error::ApiError;
use crate::clock::parse_rfc3339;
use crate::console::page::{ForViewer, Layout, PageError, PageQuery, Paging, render, when};
use crate::console::session::Viewer;
use crate::domain::ids::ScheduleId;
use crate::state::AppState;
use crate::use_cases::schedules::{MAX_NEXT, ScheduleView};

/// Schedules shown on one page.
const PER_PAGE: u32 = 50;

/// Occurrences shown when the query does not say.
const DEFAULT_NEXT: u32 = 10;

/// A schedule as the pages show it (read from its API view, so both say the same).
pub(crate) struct ScheduleRow {
    pub(crate) id: String,
    pub(crate) cron: String,
    pub(crate) timezone: String,
    pub(crate) state: String,
    pub(crate) runs: String,
    pub(crate) max_runs: String,
    pub(crate) next_at: String,
    pub(crate) last_run_at: String,
    pub(crate) last_error: String,
    pub(crate) starts_at: String,
    pub(crate) ends_at: String,
    pub(crate) missed: String,
    pub(crate) owner_id: String,
    /// `user …` or `group …`.
    pub(crate) target: String,
    pub(crate) content: String,
    pub(crate) flow_key: String,
}

impl ScheduleRow {
    fn new(view: &ScheduleView) -> Self {
        let value = serde_json::to_value(view).unwrap_or_default();
        let text = |value: &Value| match value {
            Value::String(text) => text.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        // Times for people, like the other pages (UTC, to the second).
        let time = |value: &Value| {
            let text = text(value);
            parse_rfc3339(&text).map_or(text, when)
        };
        let message = &value["message"];
        let target = match (
            message["recipient_id"].as_str(),
            message["group_id"].as_str(),
        ) {
            (Some(user), _) => format!("user {user}"),
            (None, Some(group)) => format!("group {group}"),
            (None, None) => String::new(),
        };
        Self {
            id: text(&value["id"]),
            cron: text(&value["cron"]),
            timezone: text(&value["timezone"]),
            state: text(&value["state"]),
            runs: text(&value["runs"]),
            max_runs: text(&value["max_runs"]),
            next_at: time(&value["next_at"]),
            last_run_at: time(&value["last_run_at"]),
            last_error: text(&value["last_error"]),
            starts_at: time(&value["starts_at"]),
            ends_at: time(&value["ends_at"]),
            missed: text(&value["missed"]),
            owner_id: text(&value["owner_id"]),
            target,
            content: text(&message["content"]),
            flow_key: text(&message["flow_key"]),
        }
    }
}

/// `/console/schedules`.
#[derive(Template)]
#[template(path = "schedules.html")]
pub(crate) struct SchedulesPage {
    pub(crate) layout: Layout,
    pub(crate) admin: bool,
    /// The viewer's id, the recipient the create form proposes.
    pub(crate) user_id: String,
    pub(crate) schedules: Vec<ScheduleRow>,
    pub(crate) previous: Option<u64>,
    pub(crate) next: Option<u64>,
}

/// `GET /console/schedules`: the schedules the viewer may see, oldest first.
pub(crate) async fn list(
    State(app): State<AppState>,
    viewer: Viewer,
    PageQuery(paging): PageQuery<Paging>,
) -> Result<Response, PageError> {
    let page = paging.page(PER_PAGE);
    let schedules = app
        .schedules
        .list(&viewer.user, page)
        .await
        .for_viewer(&viewer)?;
    let shown = schedules.len() as u64;
    Ok(render(&SchedulesPage {
        layout: Layout {
            scripts: &["schedules.js"],
            ..Layout::new(&viewer, "/console/schedules", "Schedules")
        },
        admin: viewer.is_admin(),
        user_id: viewer.user.id.to_string(),
        schedules: schedules.iter().map(ScheduleRow::new).collect(),
        previous: paging.previous(PER_PAGE),
        next: paging.next(shown, None, PER_PAGE),
    }))
}

/// `?count=`: how many next occurrences to show.
#[derive(Debug, Deserialize)]
pub(crate) struct Occurrences {
    count: Option<String>,
}

/// `/console/schedules/{id}`.
#[derive(Template)]
#[template(path = "schedule.html")]
pub(crate) struct SchedulePage {
    pub(crate) layout: Layout,
    pub(crate) schedule: ScheduleRow,
    pub(crate) count: u32,
    pub(crate) max_count: u32,
    /// Each as (RFC 3339, for people).
    pub(crate) occurrences: Vec<(String, String)>,
}

/// `GET /console/schedules/{id}?count=N`: a schedule and its next `N` occurrences (1 to
/// 100; 10 by default). A schedule the viewer may not see is the 404 page.
pub(crate) async fn schedule(
    State(app): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    PageQuery(query): PageQuery<Occurrences>,
) -> Result<Response, PageError> {
    let Ok(id) = id.parse::<ScheduleId>() else {
        return Ok(crate::console::page::not_found(Some(&viewer)));
    };
    let count = match query.count.as_deref().map(str::trim) {
        None | Some("") => DEFAULT_NEXT,
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|count| (1..=MAX_NEXT).contains(count))
            .ok_or_else(|| {
                ApiError::query(
                    "count",
                    format!("count must be a whole number between 1 and {MAX_NEXT}"),
                )
            })
            .for_viewer(&viewer)?,
    };
    let view = app
        .schedules
        .get(&viewer.user, &id)
        .await
        .for_viewer(&viewer)?;
    let occurrences = app
        .schedules
        .next(&viewer.user, &id, count)
        .await
        .for_viewer(&viewer)?;
    Ok(render(&SchedulePage {
        layout: Layout::new(&viewer, "/console/schedules", format!("Schedule {id}")),
        schedule: ScheduleRow::new(&view),
        count,
        max_count: MAX_NEXT,
        occurrences: occurrences
            .into_iter()
            .map(|at| {
                let shown = parse_rfc3339(&at).map_or_else(|| at.clone(), when);
                (at, shown)
            })
            .collect(),
    }))
}
