//! The OpenAPI 3.1 document, served at `GET /openapi.json` and committed as
//! `docs/openapi.json` (a test fails when the two differ).
//!
//! It is generated from the code: each handler carries `#[utoipa::path]` with its success
//! response and the errors it answers itself, and the request and response types derive
//! `ToSchema` where they are defined. This module owns what is shared: the list of operations
//! (it must match `router()`, which a test checks in both directions), the `Problem` schema
//! and the problem responses, the bearer security scheme, and the errors the extractors add
//! to every operation that uses them (see [`ExtractorErrors`]):
//!
//! - a bearer token ([`Caller`](super::extract::Caller)): 401 and 429;
//! - a JSON body ([`ApiJson`](super::extract::ApiJson)): 400, 413, 415 and 422;
//! - any request body: 408 (it did not arrive in time, `api::bodies`);
//! - query parameters ([`ApiQuery`](super::extract::ApiQuery)): 400;
//! - and every operation: 413 (a declared `Content-Length` over the limit is refused before
//!   routing, `api::bodies`), 500 and 503.
//!
//! Operation ids are the tag and the handler's name (`users_get`), unique across the document.
//!
//! Regenerate the committed copy with `DMS_UPDATE_OPENAPI=1 cargo test -p dms --test e2e
//! openapi`.

use axum::Json;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, Ref, RefOr, Response};
use utoipa::{Modify, OpenApi, ToResponse};

use super::error::Code;

/// `GET /openapi.json`: this document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API.", body = Object)),
)]
pub(super) async fn document() -> Json<Document> {
    Json(api())
}

/// The document, built from the handlers.
fn api() -> Document {
    ApiDoc::openapi()
}

const DESCRIPTION: &str = "\
DMS accepts messages now and delivers them later, through the recipient's inbox or a signed \
webhook; every policy decision is made by a sandboxed WebAssembly plugin.

Log in with `POST /auth/login` and send the access token as `Authorization: Bearer <token>`. \
Every error is an RFC 9457 problem (`application/problem+json`) with a stable `code`; \
`GET /problems/{code}` explains each one.

Real time: `GET /ws` upgrades to a WebSocket (JSON text frames), and Socket.IO 4 clients \
connect at `/socket.io/` (not listed as a path: its handshake is Socket.IO's own protocol). \
Both speak the same frames: `auth {token}`, `ack {message_id}`, `resume {cursor}` and `ping`.";

#[derive(OpenApi)]
#[openapi(
    info(title = "DMS", description = DESCRIPTION, license(name = "Apache-2.0", identifier = "Apache-2.0")),
    paths(
        super::auth::login,
        super::auth::refresh,
        super::auth::logout,
        super::auth::sessions,
        super::auth::end_session,
        super::auth::user_sessions,
        super::auth::end_user_session,
        super::users::create,
        super::users::list,
        super::users::me,
        super::users::change_password,
        super::users::get,
        super::users::delete,
        super::webhooks::get,
        super::webhooks::set,
        super::webhooks::delete,
        super::webhooks::rotate,
        super::callbacks::get,
        super::callbacks::set,
        super::callbacks::delete,
        super::callbacks::rotate,
        super::messages::submit,
        super::messages::submit_batch,
        super::messages::list,
        super::messages::get,
        super::messages::cancel,
        super::messages::reschedule,
        super::messages::status,
        super::messages::events,
        super::messages::deliver_now,
        super::messages::read,
        super::groups::fan_out,
        super::groups::create,
        super::groups::list,
        super::groups::get,
        super::groups::delete,
        super::groups::add_members,
        super::groups::members,
        super::groups::add_member,
        super::groups::remove_member,
        super::schedules::create,
        super::schedules::list,
        super::schedules::get,
        super::schedules::update,
        super::schedules::delete,
        super::schedules::pause,
        super::schedules::resume,
        super::schedules::next,
        super::dead_letters::list,
        super::dead_letters::replay_many,
        super::dead_letters::replay,
        super::dead_letters::delete,
        super::flow_control::list,
        super::flow_control::put,
        super::flow_control::get,
        super::flow_control::delete,
        super::plugins::upload,
        super::plugins::list,
        super::plugins::get,
        super::plugins::delete,
        super::plugins::enable,
        super::hooks::get,
        super::hooks::put_validators,
        super::hooks::delete_validators,
        super::hooks::put_delay_policy,
        super::hooks::delete_delay_policy,
        super::hooks::put_channel,
        super::hooks::delete_channel,
        super::hooks::dry_run,
        super::realtime::ws::upgrade,
        super::health::health,
        super::health::db,
        super::health::redis,
        super::metrics::metrics,
        super::error::describe,
        document,
    ),
    components(
        schemas(Problem, crate::domain::callback::CallbackBody),
        responses(
            BadRequest,
            Unauthorized,
            Forbidden,
            NotFound,
            RequestTimeout,
            Conflict,
            PayloadTooLarge,
            UnsupportedMediaType,
            Unprocessable,
            UpgradeRequired,
            TooManyRequests,
            ServerError,
            Unavailable,
        ),
    ),
    modifiers(&BearerScheme, &ExtractorErrors, &ProblemCodes, &OperationIds),
    tags(
        (name = "auth", description = "Log in, rotate refresh tokens, log out, list and end sessions."),
        (name = "users", description = "The tenant's users; admins manage them."),
        (name = "webhooks", description = "The caller's webhook endpoint for the `webhook` channel."),
        (name = "callbacks", description = "The caller's status callback endpoint: told of the statuses of the messages they send (the body POSTed is `CallbackBody`)."),
        (name = "messages", description = "Submit (to one recipient or to a group), list, follow, cancel, reschedule and read messages."),
        (name = "groups", description = "The tenant's groups of users, which a message may be sent to; admins change them."),
        (name = "schedules", description = "Recurring schedules: each occurrence of a cron pattern in a time zone becomes a message."),
        (name = "dead-letters", description = "Messages that could not be delivered (tenant admins)."),
        (name = "flow-control", description = "Limits per flow key pattern: rate, parallelism, the tenant-wide default (tenant admins)."),
        (name = "plugins", description = "The tenant's WebAssembly plugins (tenant admins)."),
        (name = "hooks", description = "Which plugin serves each hook, and dry runs (tenant admins)."),
        (name = "realtime", description = "Live delivery over WebSocket."),
        (name = "health", description = "Liveness, backing services and metrics; no token needed."),
        (name = "meta", description = "This document and the problem types."),
    ),
)]
struct ApiDoc;

/// The content type of problem responses, for `content_type = PROBLEM` in handlers.
pub(super) const PROBLEM: &str = "application/problem+json";

/// The problem body every error answer carries, as `api::error` writes it.
pub(super) use super::error::Problem;

/// The request is malformed: its JSON body does not parse, or a query parameter is invalid.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
#[allow(dead_code, reason = "documents a problem response; never constructed")]
pub(super) struct BadRequest(Problem);

/// No valid access token: missing, malformed, expired, or its session has ended.
#[derive(ToResponse)]
#[response(
    content_type = "application/problem+json",
    headers(("www-authenticate" = String, description = "`Bearer`, for missing or refused access tokens."))
)]
#[allow(dead_code, reason = "documents a problem response; never constructed")]
pub(super) struct Unauthorized(Problem);

/// The caller may not do this.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
#[allow(dead_code, reason = "documents a problem response; never constructed")]
pub(super) struct Forbidden(Problem);

/// No such resource in the caller's tenant (another tenant's resource is not found either).
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
#[allow(dead_code, reason = "documents a problem response; never constructed")]
pub(super) struct NotFound(Problem);

/// The request body did not arrive in time.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
#[allow(dead_code, reason = "documents a problem response; never constructed")]
pub(super) struct RequestTimeout(Problem);

/// The request conflicts with the current state.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
#[allow(dead_code, reason = "documents a problem response; never constructed")]
pub(super) struct Conflict(Problem);

/// The body is larger than the server accepts.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
#[allow(dead_code, reason = "documents a problem response; never constructed")]
pub(super) struct PayloadTooLarge(Problem);

/// The body has the wrong content type.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
#[allow(dead_code, reason = "documents a problem response; never constructed")]
pub(super) struct UnsupportedMediaType(Problem);

/// A field is missing, mistyped or not allowed (`field` names it), or a policy refused it.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
#[allow(dead_code, reason = "documents a problem response; never constructed")]
pub(super) struct Unprocessable(Problem);

/// The endpoint takes WebSocket connections only.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
#[allow(dead_code, reason = "documents a problem response; never constructed")]
pub(super) struct UpgradeRequired(Problem);

/// Too many requests: wait the `retry-after` seconds.
#[derive(ToResponse)]
#[response(
    content_type = "application/problem+json",
    headers(("retry-after" = u64, description = "Seconds to wait before retrying."))
)]
#[allow(dead_code, reason = "documents a problem response; never constructed")]
pub(super) struct TooManyRequests(Problem);

/// The server failed; the cause is logged with the request id.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
#[allow(dead_code, reason = "documents a problem response; never constructed")]
pub(super) struct ServerError(Problem);

/// A backing service (database or Redis) is unavailable, or (`server_busy`, before the
/// request is read) the node holds as many connections as it allows; retry shortly.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
#[allow(dead_code, reason = "documents a problem response; never constructed")]
pub(super) struct Unavailable(Problem);

/// The problem responses by status, as the components name them.
const PROBLEM_RESPONSES: &[(u16, &str)] = &[
    (400, "BadRequest"),
    (401, "Unauthorized"),
    (403, "Forbidden"),
    (404, "NotFound"),
    (408, "RequestTimeout"),
    (409, "Conflict"),
    (413, "PayloadTooLarge"),
    (415, "UnsupportedMediaType"),
    (422, "Unprocessable"),
    (426, "UpgradeRequired"),
    (429, "TooManyRequests"),
    (500, "ServerError"),
    (503, "Unavailable"),
];

/// The bearer scheme operations with `security(("bearer" = []))` use.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "The access token (`token`) from POST /auth/login or POST /auth/refresh.",
                    ))
                    .build(),
            ),
        );
    }
}

/// Adds the errors the extractors answer to each operation that uses them, so no handler has
/// to repeat them (a handler's own entry for the same status wins).
struct ExtractorErrors;

impl Modify for ExtractorErrors {
    fn modify(&self, openapi: &mut Document) {
        for operation in operations(openapi) {
            add_extractor_errors(operation);
        }
    }
}

/// Every operation of the document.
fn operations(openapi: &mut Document) -> impl Iterator<Item = &mut Operation> {
    openapi.paths.paths.values_mut().flat_map(|item| {
        [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
    })
}

fn add_extractor_errors(operation: &mut Operation) {
    let mut statuses = Vec::new();
    if operation
        .security
        .as_ref()
        .is_some_and(|security| !security.is_empty())
    {
        statuses.extend([401, 429]);
    }
    let json_body = operation.request_body.as_ref().is_some_and(|body| {
        body.content
            .keys()
            .any(|content_type| content_type == "application/json")
    });
    if json_body {
        statuses.extend([400, 415, 422]);
    }
    if operation.request_body.is_some() {
        statuses.push(408);
    }
    let query = operation.parameters.as_ref().is_some_and(|parameters| {
        parameters
            .iter()
            .any(|parameter| parameter.parameter_in == ParameterIn::Query)
    });
    if query {
        statuses.push(400);
    }
    statuses.extend([413, 500, 503]);
    for status in statuses {
        let name = problem_response(status);
        operation
            .responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
    }
}

/// The component name of the problem response for `status`.
fn problem_response(status: u16) -> &'static str {
    PROBLEM_RESPONSES
        .iter()
        .find(|(known, _)| *known == status)
        .map(|(_, name)| *name)
        .expect("a problem response for every status the extractors answer")
}

/// Makes operation ids unique: handlers are named for what they do in their module (`get`,
/// `list`, `delete`), so the id is the tag and the handler (`users_get`, `dead_letters_list`).
struct OperationIds;

impl Modify for OperationIds {
    fn modify(&self, openapi: &mut Document) {
        for operation in operations(openapi) {
            let tag = operation
                .tags
                .as_ref()
                .and_then(|tags| tags.first())
                .map(|tag| tag.replace('-', "_"));
            if let (Some(tag), Some(id)) = (tag, operation.operation_id.as_mut()) {
                *id = format!("{tag}_{id}");
            }
        }
    }
}

/// Lists, in each problem response's description, the codes of the table with its status.
struct ProblemCodes;

impl Modify for ProblemCodes {
    fn modify(&self, openapi: &mut Document) {
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        for (status, name) in PROBLEM_RESPONSES {
            let codes: Vec<String> = Code::ALL
                .iter()
                .filter(|code| code.status().as_u16() == *status)
                .map(|code| format!("`{}`", code.as_str()))
                .collect();
            if let Some(RefOr::T(Response { description, .. })) =
                components.responses.get_mut(*name)
            {
                description.push_str(&format!(" Codes: {}.", codes.join(", ")));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_with_every_problem_status() {
        let document = serde_json::to_value(api()).unwrap();
        assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
        // Every status in the error table has a problem response naming its codes, except
        // 405 (the router answers it for methods no operation has, so no operation lists it).
        let responses = &document["components"]["responses"];
        for code in Code::ALL {
            let status = code.status().as_u16();
            if status == 405 {
                continue;
            }
            let name = problem_response(status);
            let description = responses[name]["description"].as_str().unwrap();
            assert!(
                description.contains(&format!("`{}`", code.as_str())),
                "{name}: {description}"
            );
            assert!(
                responses[name]["content"]["application/problem+json"].is_object(),
                "{name}"
            );
        }
    }

    #[test]
    fn operations_with_a_token_answer_401_and_429() {
        let document = serde_json::to_value(api()).unwrap();
        let mut secured = 0;
        for (path, item) in document["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let responses = operation["responses"].as_object().unwrap();
                assert!(responses.contains_key("500"), "{method} {path}");
                if operation.get("security").is_some() {
                    secured += 1;
                    assert!(responses.contains_key("401"), "{method} {path}");
                    assert!(responses.contains_key("429"), "{method} {path}");
                }
                assert!(
                    responses
                        .keys()
                        .any(|status| status.starts_with('2') || status == "101"),
                    "{method} {path} has no success response"
                );
            }
        }
        assert!(secured > 30, "{secured}");
    }

    #[test]
    fn operation_ids_are_unique() {
        let document = serde_json::to_value(api()).unwrap();
        let mut seen = std::collections::HashSet::new();
        for item in document["paths"].as_object().unwrap().values() {
            for operation in item.as_object().unwrap().values() {
                let id = operation["operationId"].as_str().unwrap();
                assert!(seen.insert(id.to_owned()), "duplicate operation id {id}");
            }
        }
    }
}
