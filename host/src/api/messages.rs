//! `/messages`: submit, list, read, follow, cancel, reschedule, deliver now, mark read.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, Code};
use super::extract::{ApiJson, Caller, Id, JsonBody, PageParams, Paged};
use super::openapi::{PROBLEM, Problem};
use crate::clock::{self, parse_rfc3339};
use crate::domain::ids::{GroupId, MessageId, UserId};
use crate::domain::message::{Requested, Status};
use crate::state::AppState;
use crate::store::Page;
use crate::use_cases::messages;
use crate::use_cases::messages::fan_out::FanOutAccepted;
use crate::use_cases::messages::manage::{self, BoxName, ListFilter};
use crate::use_cases::messages::submit::{ItemOutcome, Key, MAX_BATCH, Submission, Submitted};
use crate::use_cases::messages::view::{EventView, MessageView, StatusView};
use time::format_description::well_known::Rfc3339;

const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// A message to each member of a group: `POST /messages` with `group_id` instead of
/// `recipient_id` (documents the body; the handler reads it as a `Submission`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(
    dead_code,
    reason = "documents the body; the handler reads it as a Submission"
)]
pub(super) struct GroupSubmission {
    /// A group of the sender's tenant, with at least one member.
    #[schema(value_type = GroupId)]
    group_id: String,
    /// The content (text).
    content: String,
    /// Its media type (default `text/plain`).
    #[serde(default)]
    content_type: Option<String>,
    /// Deliver this many seconds from now (ending by 9999-12-31T23:59:59.999Z).
    #[serde(default)]
    delay_seconds: Option<u64>,
    /// Deliver at this time (RFC 3339, up to 9999-12-31T23:59:59.999Z).
    #[serde(default)]
    #[schema(format = DateTime)]
    deliver_at: Option<String>,
    /// `inbox` (default) or `webhook`.
    #[serde(default)]
    #[schema(value_type = Option<crate::domain::message::Channel>)]
    channel: Option<String>,
    /// Free-form string pairs, at most 16 KiB.
    #[serde(default)]
    metadata: std::collections::BTreeMap<String, String>,
    /// The flow-control key of each member's message (1 to 128 bytes, no `*`); without one,
    /// the key is the member's webhook endpoint (webhook channel) or the member.
    #[serde(default)]
    flow_key: Option<String>,
}

/// The body of `POST /messages`: to one recipient, or to each member of a group.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code, reason = "documents the body")]
pub(super) enum SubmitBody {
    /// To one recipient.
    One(Submission),
    /// To each member of a group.
    Group(GroupSubmission),
}

/// The answer to `POST /messages`: the message, or (sent to a group) the fan-out.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
#[allow(
    dead_code,
    clippy::large_enum_variant,
    reason = "documents the answer; the use case writes it, and no value is ever made"
)]
pub(super) enum SubmitAnswer {
    /// Sent to one recipient: the message.
    Message(MessageView),
    /// Sent to a group: the fan-out.
    FanOut(FanOutAccepted),
}

/// `POST /messages`.
#[utoipa::path(
    post,
    path = "/messages",
    tag = "messages",
    summary = "Submit a message, to one recipient or to a group",
    description = "Validates the message with the tenant's validators, plans its delivery with the delay policy, stores it and schedules it. Give exactly one of `recipient_id` and `group_id`. With `group_id`, one ordinary message is created for each member of the group (each with its own id, status and history, and the fan-out's `fan_out_id`), each decided by the validators and the delay policy as any message is, all committed together or none (one refused: the request's 422, nothing stored); the answer is the fan-out (`GET /fan-outs/{id}`). With an `Idempotency-Key`, the same request within 24 hours returns the first response again (`idempotent-replayed: true`).",
    request_body = SubmitBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retried submission safe: visible ASCII, at most 255 characters.", pattern = "^[!-~]{1,255}$")),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Accepted and scheduled: the message, or (sent to a group) the fan-out with the number of messages it created.", body = SubmitAnswer,
            headers(
                ("location" = String, description = "`/messages/{id}`, or `/fan-outs/{id}` for a group"),
                ("idempotent-replayed" = String, description = "`true` when this is the stored response of an earlier request with the same key."),
            )),
        (status = 404, description = "`not_found`: no such group in your tenant.", body = Problem, content_type = PROBLEM),
        (status = 422, description = "`invalid_field` (the field is named: `/recipient_id` when neither it nor `group_id` is given, `/group_id` when both are or the group has no members), `rejected` (a validator refused it, or a member's message; `reason_code` and `plugin` say which) or `idempotency_key_reused`.", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn submit(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers, &body)?;
    let submission: Submission = body.parse()?;
    let submitted = messages::submit::submit(&state.messages, &caller.user, submission, key)
        .await
        .inspect_err(|error| {
            if matches!(error, messages::Error::Rejected(_)) {
                state.metrics.rejected();
            }
        })?;
    let (body, replayed) = match submitted {
        Submitted::Created(body) => (body, false),
        Submitted::Replayed(body) => (body, true),
    };
    let answer = serde_json::from_str::<serde_json::Value>(&body).unwrap_or_default();
    if !replayed {
        // A fan-out submitted one message per member.
        state.metrics.submitted(
            &caller.user.tenant_id,
            answer["count"].as_u64().unwrap_or(1),
            state.clock.now_ms(),
        );
    }
    let location = match (answer["id"].as_str(), answer["fan_out_id"].as_str()) {
        (Some(id), _) => format!("/messages/{id}"),
        (None, Some(id)) => format!("/fan-outs/{id}"),
        (None, None) => String::new(),
    };
    let mut response = created(StatusCode::CREATED, body, replayed);
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// The request's `Idempotency-Key`, with the hash of its body (computed only when there is a
/// key).
fn idempotency_key(headers: &HeaderMap, body: &JsonBody) -> Result<Option<Key>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = value.to_str().map_err(|_| {
        ApiError::field(
            "Idempotency-Key",
            "Idempotency-Key: the key must be visible ASCII",
        )
    })?;
    Ok(Some(Key {
        key: key.to_owned(),
        hash: body.canonical_hash(),
    }))
}

/// A JSON answer with `status`, marked when it is a stored one replayed.
fn created(status: StatusCode, body: String, replayed: bool) -> Response {
    let mut response = (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// A batch of messages: `POST /messages/batch`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(
    dead_code,
    reason = "documents the body; the handler reads each item on its own"
)]
pub(super) struct BatchRequest {
    /// 1 to 1,000 messages, each as `POST /messages` takes it.
    #[schema(min_items = 1, max_items = 1000)]
    messages: Vec<Submission>,
}

/// What became of one item of a batch: `message` when it was accepted, `problem` when not.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct BatchItem {
    /// The item's position in the request, from 0.
    index: usize,
    /// 201 when accepted, else the problem's status.
    status: u16,
    /// The accepted message.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    message: Option<MessageView>,
    /// Why the item was refused: a problem as any endpoint answers it (`field` is a JSON
    /// pointer within the item).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    problem: Option<Problem>,
}

/// The answer to a batch: every item in order.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct BatchAnswer {
    /// How many items were accepted (and committed together).
    accepted: usize,
    /// How many were refused.
    rejected: usize,
    /// Every item, in the order of the request.
    items: Vec<BatchItem>,
}

/// `POST /messages/batch`.
#[utoipa::path(
    post,
    path = "/messages/batch",
    tag = "messages",
    summary = "Submit up to 1,000 messages at once",
    description = "The body must be well-formed as a whole: an item with a malformed field is a 422 naming it (`/messages/3/deliver_at`) and nothing is stored. Each well-formed item is then decided on its own, exactly as `POST /messages` decides: addressed to no user of the tenant, or refused by a policy plugin, it is that item's problem; the accepted ones are committed together (all or none of them). The answer lists every item in order with its message or its problem. With an `Idempotency-Key`, the same request within 24 hours returns the first answer again (`idempotent-replayed: true`). The body may be up to `DMS_MAX_BATCH_BODY_BYTES`.",
    request_body = BatchRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retried batch safe: visible ASCII, at most 255 characters; it covers the whole batch.", pattern = "^[!-~]{1,255}$")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every item's outcome; `accepted` of them were committed.", body = BatchAnswer,
            headers(("idempotent-replayed" = String, description = "`true` when this is the stored answer of an earlier request with the same key."))),
        (status = 413, description = "`payload_too_large`: the body is over `DMS_MAX_BATCH_BODY_BYTES` (`limit` says how many bytes).", body = Problem, content_type = PROBLEM),
        (status = 422, description = "`invalid_field`: `/messages` is missing, empty or holds more than 1,000 items (`limit`), another field is present, or an item is malformed (`field` names it within the body, `index` is the item); or `idempotency_key_reused`.", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn submit_batch(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<JsonBody, ApiError>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|error| match error.code() {
        // Read past its limit (no Content-Length declared it): name the batch's limit.
        Code::PayloadTooLarge => super::bodies::batch_too_large(state.config.max_batch_body_bytes),
        _ => error,
    })?;
    let key = idempotency_key(&headers, &body)?;
    let items = batch_items(&body)?;
    let (submitted, accepted) =
        messages::submit::submit_batch(&state.messages, &caller.user, items, key, |outcomes| {
            render_batch(outcomes)
        })
        .await?;
    state.metrics.submitted(
        &caller.user.tenant_id,
        accepted as u64,
        state.clock.now_ms(),
    );
    let (body, replayed) = match submitted {
        Submitted::Created(body) => (body, false),
        Submitted::Replayed(body) => (body, true),
    };
    Ok(created(StatusCode::OK, body, replayed))
}

/// The items of a batch body. The body must be well-formed as a whole: an item that is not a
/// message (a wrong type, an unknown or missing field) is a 422 naming it
/// (`/messages/3/content`), like any malformed body; whether each well-formed item is accepted
/// is then decided item by item.
fn batch_items(body: &JsonBody) -> Result<Vec<Submission>, ApiError> {
    use super::json::Node;
    let Node::Object(members) = &body.0 else {
        return Err(ApiError::field(
            "/",
            "/: the body must be an object: {\"messages\": [...]}",
        ));
    };
    if let Some((name, _)) = members.iter().find(|(name, _)| name != "messages") {
        return Err(ApiError::field(
            format!("/{name}"),
            format!("/{name}: unknown field; the body has only `messages`"),
        ));
    }
    let Some((_, Node::Array(items))) = members.iter().find(|(name, _)| name == "messages") else {
        return Err(ApiError::field(
            "/messages",
            "/messages: give the messages as an array of 1 to 1000 objects",
        ));
    };
    if items.is_empty() || items.len() > MAX_BATCH {
        return Err(ApiError::field(
            "/messages",
            format!(
                "/messages: a batch holds 1 to {MAX_BATCH} messages; this one has {}",
                items.len()
            ),
        )
        .with("limit", MAX_BATCH));
    }
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            super::extract::from_node::<Submission>(item).map_err(|error| {
                let field = error.field_name().unwrap_or("/");
                let reason = error
                    .detail()
                    .strip_prefix(&format!("{field}: "))
                    .unwrap_or(error.detail());
                let inner = if field == "/" { "" } else { field };
                let pointer = format!("/messages/{index}{inner}");
                ApiError::field(pointer.clone(), format!("{pointer}: {reason}"))
                    .with("index", index)
            })
        })
        .collect()
}

/// The answer to a batch, from each item's outcome.
fn render_batch(outcomes: &[ItemOutcome]) -> String {
    let items: Vec<BatchItem> = outcomes
        .iter()
        .enumerate()
        .map(|(index, outcome)| match outcome {
            Ok(view) => BatchItem {
                index,
                status: 201,
                message: Some(view.clone()),
                problem: None,
            },
            Err(error) => {
                let problem = ApiError::from(error);
                BatchItem {
                    index,
                    status: problem.code().status().as_u16(),
                    message: None,
                    problem: Some(problem.problem()),
                }
            }
        })
        .collect();
    let accepted = items.iter().filter(|item| item.message.is_some()).count();
    serde_json::to_string(&BatchAnswer {
        accepted,
        rejected: items.len() - accepted,
        items,
    })
    .expect("an answer is JSON")
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// `sent` (default), `received`, or `all` (admins: the whole tenant).
    #[serde(rename = "box", default)]
    #[param(inline)]
    mailbox: Option<BoxName>,
    /// Only messages with this status.
    #[serde(default)]
    status: Option<Status>,
    /// The `next_cursor` of the previous page: the page starts after it.
    #[serde(default)]
    #[param(value_type = Option<MessageId>)]
    cursor: Option<String>,
    /// Only messages to this recipient.
    #[serde(default)]
    #[param(value_type = Option<UserId>)]
    recipient_id: Option<String>,
    /// Only messages created at or after this time (RFC 3339).
    #[serde(default)]
    #[param(format = DateTime)]
    created_from: Option<String>,
    /// Only messages created before this time (RFC 3339; at or before `created_from`, the
    /// period is empty and so is the page).
    #[serde(default)]
    #[param(format = DateTime)]
    created_to: Option<String>,
}

impl ListQuery {
    /// The filter the query asks for; a malformed part is a 400 naming it.
    fn filter(&self) -> Result<ListFilter, ApiError> {
        let time = |name: &'static str, value: &Option<String>| match value {
            None => Ok(None),
            // Before 1970 is the start of every id's time: no message is older.
            Some(text) => time::OffsetDateTime::parse(text, &Rfc3339)
                .map(|at| Some(u64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)))
                .map_err(|_| {
                    ApiError::query(name, format!("{name}: {text:?} is not an RFC 3339 time"))
                }),
        };
        Ok(ListFilter {
            status: self.status,
            recipient: match &self.recipient_id {
                None => None,
                Some(id) => Some(id.parse::<UserId>().map_err(|error| {
                    ApiError::query("recipient_id", format!("recipient_id: {error}"))
                })?),
            },
            created_from_ms: time("created_from", &self.created_from)?,
            created_to_ms: time("created_to", &self.created_to)?,
            floor: None,
        })
    }
}

/// A page of messages, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct MessagePage {
    items: Vec<MessageView>,
    limit: u32,
    offset: u64,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    next_cursor: Option<MessageId>,
}

/// `GET /messages?box=sent|received|all&status=…&recipient_id=…&created_from=…&created_to=…&limit=…&offset=…|cursor=…`,
/// newest first.
#[utoipa::path(
    get,
    path = "/messages",
    tag = "messages",
    summary = "List messages",
    description = "Newest first. Page with `cursor` (each page costs the same however deep it is); the filters combine, and each keeps the listing a range of one index: `recipient_id`, and the creation time bounds `created_from` (inclusive) and `created_to` (exclusive).",
    params(PageParams, ListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Messages, newest first.", body = MessagePage),
        (status = 400, description = "`invalid_query`: a malformed `cursor`, `recipient_id`, `created_from` or `created_to` (`field` names it).", body = Problem, content_type = PROBLEM),
        (status = 403, description = "`admin_required`: `box=all` is for admins.", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Paged { page, query }: Paged<ListQuery>,
) -> Result<Json<MessagePage>, ApiError> {
    let before =
        match &query.cursor {
            None => None,
            Some(cursor) => Some(cursor.parse::<MessageId>().map_err(|_| {
                ApiError::query("cursor", "the cursor is not one this API returned")
            })?),
        };
    let mailbox = query.mailbox.unwrap_or(BoxName::Sent);
    let filter = query.filter()?;
    let items = manage::list(
        &state.messages,
        &caller.user,
        mailbox,
        &filter,
        page,
        before,
    )
    .await?;
    let Page { limit, offset } = page;
    let next_cursor = (items.len() == limit as usize)
        .then(|| items.last().map(|m| m.id.clone()))
        .flatten();
    Ok(Json(MessagePage {
        items: items.iter().map(MessageView::from).collect(),
        limit,
        offset,
        next_cursor,
    }))
}

/// `GET /messages/{id}`.
#[utoipa::path(
    get,
    path = "/messages/{id}",
    tag = "messages",
    summary = "A message",
    params(("id" = MessageId, Path, description = "A message the caller sent or received.")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The message (with `schedule` when a schedule's occurrence created it).", body = MessageView),
        (status = 404, description = "`not_found`: no such message visible to you.", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id<MessageId>,
) -> Result<Json<MessageView>, ApiError> {
    let message = manage::visible(&state.messages, &caller.user, &id).await?;
    let view = crate::use_cases::schedules::message_view(state.store.as_ref(), &message).await?;
    Ok(Json(view))
}

/// `GET /messages/{id}/status`.
#[utoipa::path(
    get,
    path = "/messages/{id}/status",
    tag = "messages",
    summary = "Where a message is",
    params(("id" = MessageId, Path, description = "A message the caller sent or received.")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Its status.", body = StatusView),
        (status = 404, description = "`not_found`: no such message visible to you.", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn status(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id<MessageId>,
) -> Result<Json<StatusView>, ApiError> {
    let message = manage::visible_state(&state.messages, &caller.user, &id).await?;
    Ok(Json(StatusView::from(&message)))
}

/// A message's history, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct EventList {
    items: Vec<EventView>,
}

/// `GET /messages/{id}/events`: the history, oldest first. Recipients see it only as admins.
#[utoipa::path(
    get,
    path = "/messages/{id}/events",
    tag = "messages",
    summary = "A message's history",
    description = "Every decision, transition and delivery attempt, oldest first. Recipients see it only as admins.",
    params(("id" = MessageId, Path, description = "A message the caller sent or received.")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The history.", body = EventList),
        (status = 404, description = "`not_found`: no such message visible to you.", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn events(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id<MessageId>,
) -> Result<Json<EventList>, ApiError> {
    let events = manage::history(&state.messages, &caller.user, &id).await?;
    Ok(Json(EventList {
        items: events.into_iter().map(EventView::from).collect(),
    }))
}

/// `DELETE /messages/{id}`: cancels a waiting message.
#[utoipa::path(
    delete,
    path = "/messages/{id}",
    tag = "messages",
    summary = "Cancel a waiting message",
    params(("id" = MessageId, Path, description = "A message the caller sent or received.")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Cancelled.", body = MessageView),
        (status = 403, description = "`forbidden`: only its sender (or an admin) may cancel it.", body = Problem, content_type = PROBLEM),
        (status = 404, description = "`not_found`: no such message visible to you.", body = Problem, content_type = PROBLEM),
        (status = 409, description = "`conflict`: the message is no longer waiting (`message_status` says what it is).", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id<MessageId>,
) -> Result<Json<MessageView>, ApiError> {
    let message = manage::cancel(&state.messages, &caller.user, &id).await?;
    Ok(Json(MessageView::from(&message)))
}

/// A new delivery time: exactly one of `delay_seconds` and `deliver_at`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Reschedule {
    /// Deliver this many seconds from now (ending by 9999-12-31T23:59:59.999Z).
    #[serde(default)]
    delay_seconds: Option<u64>,
    /// Deliver at this time (RFC 3339, up to 9999-12-31T23:59:59.999Z).
    #[serde(default)]
    #[schema(format = DateTime)]
    deliver_at: Option<String>,
}

/// `PATCH /messages/{id}`: a new delivery time, through the delay policy.
#[utoipa::path(
    patch,
    path = "/messages/{id}",
    tag = "messages",
    summary = "Reschedule a waiting message",
    description = "A new delivery time, planned again by the tenant's delay policy.",
    params(("id" = MessageId, Path, description = "A message the caller sent or received.")),
    request_body = Reschedule,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Rescheduled.", body = MessageView),
        (status = 403, description = "`forbidden`: only its sender (or an admin) may reschedule it.", body = Problem, content_type = PROBLEM),
        (status = 404, description = "`not_found`: no such message visible to you.", body = Problem, content_type = PROBLEM),
        (status = 409, description = "`conflict`: the message is no longer waiting (`message_status` says what it is).", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn reschedule(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id<MessageId>,
    ApiJson(body): ApiJson<Reschedule>,
) -> Result<Json<MessageView>, ApiError> {
    let requested = match (body.delay_seconds, body.deliver_at) {
        (Some(seconds), None) => {
            let delay = seconds.saturating_mul(1000);
            clock::after(state.clock.now_ms(), delay).ok_or_else(|| {
                ApiError::field(
                    "/delay_seconds",
                    format!(
                        "/delay_seconds: {seconds} seconds from now is past {}, the latest time the API can write",
                        clock::rfc3339(clock::LATEST_MS)
                    ),
                )
            })?;
            Requested::DelayMs(delay)
        }
        (None, Some(at)) => Requested::AtMs(parse_rfc3339(&at).ok_or_else(|| {
            ApiError::field(
                "/deliver_at",
                format!("/deliver_at: {at:?} is not an RFC 3339 time from 1970 to 9999"),
            )
        })?),
        _ => {
            return Err(ApiError::field(
                "/delay_seconds",
                "/delay_seconds: give exactly one of delay_seconds and deliver_at",
            ));
        }
    };
    let message = manage::reschedule(&state.messages, &caller.user, &id, requested).await?;
    Ok(Json(MessageView::from(&message)))
}

/// `POST /messages/{id}/deliver-now`.
#[utoipa::path(
    post,
    path = "/messages/{id}/deliver-now",
    tag = "messages",
    summary = "Deliver a waiting message now",
    params(("id" = MessageId, Path, description = "A message the caller sent or received.")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Due now.", body = MessageView),
        (status = 403, description = "`forbidden`: only its sender (or an admin) may do this.", body = Problem, content_type = PROBLEM),
        (status = 404, description = "`not_found`: no such message visible to you.", body = Problem, content_type = PROBLEM),
        (status = 409, description = "`conflict`: the message is no longer waiting (`message_status` says what it is).", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn deliver_now(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id<MessageId>,
) -> Result<Json<MessageView>, ApiError> {
    let message = manage::deliver_now(&state.messages, &caller.user, &id).await?;
    Ok(Json(MessageView::from(&message)))
}

/// `POST /messages/{id}/read`: the recipient has read it.
#[utoipa::path(
    post,
    path = "/messages/{id}/read",
    tag = "messages",
    summary = "Mark a delivered message read",
    params(("id" = MessageId, Path, description = "A message the caller sent or received.")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Read.", body = MessageView),
        (status = 403, description = "`forbidden`: only its recipient may mark it read.", body = Problem, content_type = PROBLEM),
        (status = 404, description = "`not_found`: no such message visible to you.", body = Problem, content_type = PROBLEM),
        (status = 409, description = "`conflict`: it has not been delivered (`message_status` says what it is).", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id<MessageId>,
) -> Result<Json<MessageView>, ApiError> {
    let message = manage::read(&state.messages, &caller.user, &id).await?;
    Ok(Json(MessageView::from(&message)))
}
