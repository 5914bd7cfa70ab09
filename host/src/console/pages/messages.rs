//! Messages: the listing (filters in the query string, keyset pages), a message's page (its
//! content, its history as a timeline, the changes its status allows, kept live by
//! `message.js`), and the tenant's dead letters (admins; replayed in bulk by
//! `dead-letters.js`).
//!
//! Every listing is one range of one index, however deep the page: it is bounded by the
//! cursor (the last id shown) rather than skipped to with OFFSET, the creation-time filters are
//! bounds on the ids (which begin with their creation time), and nothing is counted.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;

use crate::clock::{parse_rfc3339, rfc3339};
use crate::console::page::{ForViewer, Layout, PageError, PageQuery, render, when};
use crate::console::session::{AdminViewer, Viewer};
use crate::domain::ids::{MessageId, UserId};
use crate::domain::message::{Event, Message, Status};
use crate::state::AppState;
use crate::store::Page;
use crate::use_cases::messages::manage::{self, BoxName, ListFilter};
use crate::use_cases::messages::{Error as MessageError, dead_letters};

/// Rows shown on one page.
const PER_PAGE: u32 = 50;

/// How much of a message's content a row shows.
const PREVIEW_CHARS: usize = 80;

/// The listing's query string, every part as typed (a malformed one is shown next to its
/// control instead of refusing the page).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ListParams {
    #[serde(rename = "box", default)]
    mailbox: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    recipient: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    cursor: Option<String>,
}

/// A message as a row of a listing.
pub(crate) struct MessageRow {
    pub(crate) id: String,
    pub(crate) status: &'static str,
    pub(crate) channel: &'static str,
    pub(crate) sender: String,
    pub(crate) recipient: String,
    pub(crate) created: String,
    pub(crate) created_rfc3339: String,
    pub(crate) due: String,
    pub(crate) due_rfc3339: String,
    pub(crate) attempts: u32,
    pub(crate) last_error: String,
    pub(crate) preview: String,
}

impl MessageRow {
    fn new(message: &Message, viewer: &Viewer) -> Self {
        Self {
            id: message.id.to_string(),
            status: message.status.as_str(),
            channel: message.channel.as_str(),
            sender: party(&message.sender_id, viewer),
            recipient: party(&message.recipient_id, viewer),
            created: when(message.created_at_ms),
            created_rfc3339: rfc3339(message.created_at_ms),
            due: when(message.deliver_at_ms),
            due_rfc3339: rfc3339(message.deliver_at_ms),
            attempts: message.attempts,
            last_error: message.last_error.clone().unwrap_or_default(),
            preview: preview(&message.content),
        }
    }
}

/// A user as a party of a message: "you", or their id.
fn party(id: &UserId, viewer: &Viewer) -> String {
    if *id == viewer.user.id {
        format!("you ({id})")
    } else {
        id.to_string()
    }
}

/// The start of the content, as text.
fn preview(content: &[u8]) -> String {
    let text = String::from_utf8_lossy(content);
    let mut preview: String = text.chars().take(PREVIEW_CHARS).collect();
    if text.chars().nth(PREVIEW_CHARS).is_some() {
        preview.push('…');
    }
    preview
}

/// A choice of a `<select>`.
pub(crate) struct Choice {
    pub(crate) value: &'static str,
    pub(crate) label: &'static str,
    pub(crate) selected: bool,
}

/// A problem with one filter, shown next to its control.
pub(crate) struct FilterProblem {
    pub(crate) field: &'static str,
    pub(crate) detail: String,
}

/// `/console/messages`.
#[derive(Template)]
#[template(path = "messages.html")]
pub(crate) struct MessagesPage {
    pub(crate) layout: Layout,
    pub(crate) boxes: Vec<Choice>,
    pub(crate) statuses: Vec<Choice>,
    pub(crate) recipient: String,
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) problems: Vec<FilterProblem>,
    pub(crate) messages: Vec<MessageRow>,
    /// The query string of the filters alone (for "first page" and the next page's link).
    pub(crate) filters_query: String,
    pub(crate) paged: bool,
    pub(crate) next: Option<String>,
    /// How many messages a status search walks per page.
    pub(crate) searched: u64,
    /// Where a status search stopped without filling the page (the next page's cursor).
    pub(crate) searched_to: Option<String>,
}

impl MessagesPage {
    /// The problem of `field`, if its filter is malformed.
    pub(crate) fn problem(&self, field: &str) -> Option<&str> {
        self.problems
            .iter()
            .find(|problem| problem.field == field)
            .map(|problem| problem.detail.as_str())
    }
}

/// A time typed in a filter: RFC 3339, or a `datetime-local` value (taken as UTC, the time
/// the console shows).
fn filter_time(text: &str) -> Option<u64> {
    parse_rfc3339(text)
        .or_else(|| parse_rfc3339(&format!("{text}Z")))
        .or_else(|| parse_rfc3339(&format!("{text}:00Z")))
}

/// The listing's filter from its query string, with a problem for each malformed part.
fn read_filter(
    params: &ListParams,
    viewer: &Viewer,
) -> (BoxName, ListFilter, Option<MessageId>, Vec<FilterProblem>) {
    let mut problems = Vec::new();
    let given = |value: &Option<String>| {
        value
            .as_deref()
            .map(str::trim)
            .filter(|value| !value.is_empty())
            .map(str::to_owned)
    };
    let default_box = if viewer.is_admin() {
        BoxName::All
    } else {
        BoxName::Sent
    };
    let mailbox = match given(&params.mailbox).as_deref() {
        None => default_box,
        Some("sent") => BoxName::Sent,
        Some("received") => BoxName::Received,
        Some("all") if viewer.is_admin() => BoxName::All,
        Some("all") => {
            problems.push(FilterProblem {
                field: "box",
                detail: "Only an admin of your tenant may see all of its messages.".to_owned(),
            });
            BoxName::Sent
        }
        Some(other) => {
            problems.push(FilterProblem {
                field: "box",
                detail: format!("{other:?} is not a box: choose sent, received or all."),
            });
            default_box
        }
    };
    let status = given(&params.status).and_then(|text| match text.parse::<Status>() {
        Ok(status) => Some(status),
        Err(_) => {
            problems.push(FilterProblem {
                field: "status",
                detail: format!("{text:?} is not a status."),
            });
            None
        }
    });
    let recipient = given(&params.recipient).and_then(|text| match text.parse::<UserId>() {
        Ok(id) => Some(id),
        Err(error) => {
            problems.push(FilterProblem {
                field: "recipient",
                detail: format!("{error}."),
            });
            None
        }
    });
    let mut time = |field: &'static str, value: &Option<String>| {
        given(value).and_then(|text| match filter_time(&text) {
            Some(ms) => Some(ms),
            None => {
                problems.push(FilterProblem {
                    field,
                    detail: format!("{text:?} is not a time (YYYY-MM-DDTHH:MM, in UTC)."),
                });
                None
            }
        })
    };
    let created_from_ms = time("from", &params.from);
    let mut created_to_ms = time("to", &params.to);
    if let (Some(from), Some(to)) = (created_from_ms, created_to_ms)
        && to <= from
    {
        problems.push(FilterProblem {
            field: "to",
            detail: "The end of the period must be later than its start.".to_owned(),
        });
        created_to_ms = None;
    }
    let cursor = given(&params.cursor).and_then(|text| match text.parse::<MessageId>() {
        Ok(id) => Some(id),
        Err(_) => {
            problems.push(FilterProblem {
                field: "cursor",
                detail: "This page's position is not one the console made; showing the first page."
                    .to_owned(),
            });
            None
        }
    });
    let filter = ListFilter {
        status,
        recipient,
        created_from_ms,
        created_to_ms,
        floor: None,
    };
    (mailbox, filter, cursor, problems)
}

/// The query string of the filters (without the cursor).
fn filters_query(params: &ListParams) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in [
        ("box", &params.mailbox),
        ("status", &params.status),
        ("recipient", &params.recipient),
        ("from", &params.from),
        ("to", &params.to),
    ] {
        if let Some(value) = value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
            query.append_pair(name, value);
        }
    }
    query.finish()
}

/// A page of rows from a listing that asked for one more row than it shows: the rows, and
/// the cursor of the next page when there is one.
fn split_page(mut messages: Vec<Message>) -> (Vec<Message>, Option<String>) {
    let more = messages.len() > PER_PAGE as usize;
    messages.truncate(PER_PAGE as usize);
    let next = more
        .then(|| messages.last().map(|message| message.id.to_string()))
        .flatten();
    (messages, next)
}

/// `GET /console/messages`: the viewer's messages (an admin's default is the whole tenant),
/// filtered by box, status, recipient and creation time, fifty at a time, and a form to send
/// one.
pub(crate) async fn list(
    State(app): State<AppState>,
    viewer: Viewer,
    PageQuery(params): PageQuery<ListParams>,
) -> Result<Response, PageError> {
    let (mailbox, filter, cursor, problems) = read_filter(&params, &viewer);
    let page = Page {
        limit: PER_PAGE + 1,
        offset: 0,
    };
    let paged = cursor.is_some();
    let (messages, stopped) =
        manage::search(&app.messages, &viewer.user, mailbox, &filter, page, cursor)
            .await
            .for_viewer(&viewer)?;
    let (messages, next) = split_page(messages);
    // A status search that did not fill the page goes on below where it stopped.
    let searched_to = next
        .is_none()
        .then(|| stopped.map(|id| id.to_string()))
        .flatten();
    let mut boxes = vec![
        Choice {
            value: "sent",
            label: "Sent by me",
            selected: mailbox == BoxName::Sent,
        },
        Choice {
            value: "received",
            label: "Received by me",
            selected: mailbox == BoxName::Received,
        },
    ];
    if viewer.is_admin() {
        boxes.insert(
            0,
            Choice {
                value: "all",
                label: "The whole tenant",
                selected: mailbox == BoxName::All,
            },
        );
    }
    let statuses = Status::ALL
        .into_iter()
        .map(|status| Choice {
            value: status.as_str(),
            label: status.as_str(),
            selected: filter.status == Some(status),
        })
        .collect();
    let keep = |value: &Option<String>| value.as_deref().unwrap_or_default().trim().to_owned();
    Ok(render(&MessagesPage {
        layout: Layout::new(&viewer, "/console/messages", "Messages"),
        boxes,
        statuses,
        recipient: keep(&params.recipient),
        from: keep(&params.from),
        to: keep(&params.to),
        problems,
        messages: messages
            .iter()
            .map(|message| MessageRow::new(message, &viewer))
            .collect(),
        filters_query: filters_query(&params),
        paged,
        next,
        searched: manage::SEARCH_WINDOW,
        searched_to,
    }))
}

/// A metadata entry.
pub(crate) struct Pair {
    pub(crate) key: String,
    pub(crate) value: String,
}

/// One entry of a message's history.
pub(crate) struct EventRow {
    pub(crate) at: String,
    pub(crate) at_rfc3339: String,
    pub(crate) kind: &'static str,
    pub(crate) change: String,
    pub(crate) attempt: Option<u32>,
    pub(crate) plugin: Option<(String, String)>,
    pub(crate) duration_ms: Option<u64>,
    pub(crate) result: String,
}

impl From<Event> for EventRow {
    fn from(event: Event) -> Self {
        let change = match (event.from, event.to) {
            (Some(from), Some(to)) => format!("{from} → {to}"),
            (None, Some(to)) => format!("→ {to}"),
            (Some(from), None) => format!("{from} →"),
            (None, None) => String::new(),
        };
        Self {
            at: when(event.at_ms),
            at_rfc3339: rfc3339(event.at_ms),
            kind: event.kind.as_str(),
            change,
            attempt: event.attempt,
            plugin: event.plugin.map(|plugin| (plugin.name, plugin.digest)),
            duration_ms: event.duration_ms,
            result: event.result,
        }
    }
}

/// `/console/messages/{id}`.
#[derive(Template)]
#[template(path = "message.html")]
pub(crate) struct MessagePage {
    pub(crate) layout: Layout,
    pub(crate) id: String,
    pub(crate) status: &'static str,
    pub(crate) final_status: bool,
    pub(crate) channel: &'static str,
    pub(crate) sender: String,
    pub(crate) recipient: String,
    pub(crate) content: String,
    pub(crate) binary: bool,
    pub(crate) content_type: String,
    pub(crate) metadata: Vec<Pair>,
    pub(crate) flow_key: String,
    pub(crate) created: String,
    pub(crate) created_rfc3339: String,
    pub(crate) due: String,
    pub(crate) due_rfc3339: String,
    pub(crate) attempts: u32,
    pub(crate) last_error: String,
    pub(crate) delivered: String,
    pub(crate) read: String,
    /// The history, when the viewer may see it (the sender and admins).
    pub(crate) history: Option<Vec<EventRow>>,
    /// Whether the viewer may cancel, reschedule or deliver it now (and its status allows).
    pub(crate) changeable: bool,
    /// Whether the viewer may mark it read.
    pub(crate) readable: bool,
    /// Whether it is a dead letter the viewer (an admin) may replay.
    pub(crate) replayable: bool,
}

/// Whether the message has reached a status it leaves only by someone's hand.
fn is_final(status: Status) -> bool {
    matches!(
        status,
        Status::Delivered | Status::Read | Status::Dead | Status::Cancelled
    )
}

/// `GET /console/messages/{id}`: the message, if the viewer may see it (the 404 page
/// otherwise, as for a malformed id).
pub(crate) async fn show(
    State(app): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let Ok(id) = id.parse::<MessageId>() else {
        return Err(PageError(Some(viewer), MessageError::NotFound.into()));
    };
    let message = manage::visible(&app.messages, &viewer.user, &id)
        .await
        .for_viewer(&viewer)?;
    let sender_or_admin = viewer.is_admin() || message.sender_id == viewer.user.id;
    let history = if sender_or_admin {
        let events = manage::history(&app.messages, &viewer.user, &id)
            .await
            .for_viewer(&viewer)?;
        Some(events.into_iter().map(EventRow::from).collect())
    } else {
        None
    };
    let (content, binary) = match String::from_utf8(message.content.clone()) {
        Ok(text) => (text, false),
        Err(_) => (
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &message.content),
            true,
        ),
    };
    let title = format!("Message {}", message.id);
    Ok(render(&MessagePage {
        layout: Layout {
            scripts: &["message.js"],
            ..Layout::new(&viewer, "/console/messages", title)
        },
        id: message.id.to_string(),
        status: message.status.as_str(),
        final_status: is_final(message.status),
        channel: message.channel.as_str(),
        sender: party(&message.sender_id, &viewer),
        recipient: party(&message.recipient_id, &viewer),
        content,
        binary,
        content_type: message.content_type.clone(),
        metadata: message
            .metadata
            .iter()
            .map(|(key, value)| Pair {
                key: key.clone(),
                value: value.clone(),
            })
            .collect(),
        flow_key: message.flow_key.clone().unwrap_or_default(),
        created: when(message.created_at_ms),
        created_rfc3339: rfc3339(message.created_at_ms),
        due: when(message.deliver_at_ms),
        due_rfc3339: rfc3339(message.deliver_at_ms),
        attempts: message.attempts,
        last_error: message.last_error.clone().unwrap_or_default(),
        delivered: message.delivered_at_ms.map(when).unwrap_or_default(),
        read: message.read_at_ms.map(when).unwrap_or_default(),
        history,
        changeable: sender_or_admin && message.status.is_pending(),
        readable: message.recipient_id == viewer.user.id && message.status == Status::Delivered,
        replayable: viewer.is_admin() && message.status == Status::Dead,
    }))
}

/// The dead letters' query string.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct DeadParams {
    #[serde(default)]
    recipient: Option<String>,
    #[serde(default)]
    cursor: Option<String>,
}

/// `/console/dead-letters`.
#[derive(Template)]
#[template(path = "dead_letters.html")]
pub(crate) struct DeadLettersPage {
    pub(crate) layout: Layout,
    pub(crate) recipient: String,
    pub(crate) problems: Vec<FilterProblem>,
    pub(crate) messages: Vec<MessageRow>,
    pub(crate) filters_query: String,
    pub(crate) paged: bool,
    pub(crate) next: Option<String>,
}

impl DeadLettersPage {
    /// The problem of `field`, if its filter is malformed.
    pub(crate) fn problem(&self, field: &str) -> Option<&str> {
        self.problems
            .iter()
            .find(|problem| problem.field == field)
            .map(|problem| problem.detail.as_str())
    }
}

/// `GET /console/dead-letters` (admins): the tenant's dead letters, newest first, for one
/// recipient when asked, fifty at a time; replayed (one or many, with progress) or deleted
/// through the API.
pub(crate) async fn dead_letters(
    State(app): State<AppState>,
    AdminViewer(viewer): AdminViewer,
    PageQuery(params): PageQuery<DeadParams>,
) -> Result<Response, PageError> {
    let mut problems = Vec::new();
    let given = |value: &Option<String>| {
        value
            .as_deref()
            .map(str::trim)
            .filter(|value| !value.is_empty())
            .map(str::to_owned)
    };
    let recipient = given(&params.recipient).and_then(|text| match text.parse::<UserId>() {
        Ok(id) => Some(id),
        Err(error) => {
            problems.push(FilterProblem {
                field: "recipient",
                detail: format!("{error}."),
            });
            None
        }
    });
    let cursor = given(&params.cursor).and_then(|text| text.parse::<MessageId>().ok());
    let paged = cursor.is_some();
    let page = Page {
        limit: PER_PAGE + 1,
        offset: 0,
    };
    let messages = dead_letters::list(&app.messages, &viewer.user, recipient, page, cursor)
        .await
        .for_viewer(&viewer)?;
    let (messages, next) = split_page(messages);
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    if let Some(recipient) = given(&params.recipient) {
        query.append_pair("recipient", &recipient);
    }
    Ok(render(&DeadLettersPage {
        layout: Layout {
            scripts: &["dead-letters.js"],
            ..Layout::new(&viewer, "/console/dead-letters", "Dead letters")
        },
        recipient: given(&params.recipient).unwrap_or_default(),
        problems,
        messages: messages
            .iter()
            .map(|message| MessageRow::new(message, &viewer))
            .collect(),
        filters_query: query.finish(),
        paged,
        next,
    }))
}
