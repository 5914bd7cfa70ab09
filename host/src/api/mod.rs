//! The HTTP edge (axum). Nothing below this module knows about HTTP: handlers parse input with
//! the extractors in `extract.rs`, call the store and auth modules, and map every failure to a
//! problem through the one table in `error.rs`.
//!
//! Every response carries `x-request-id` (the client's, or a new UUID); every request is
//! logged once when it completes, and counted in the metrics (`observe.rs`).

pub mod cookies;
pub mod error;
pub mod extract;
mod json;

mod auth;
mod bodies;
mod callbacks;
mod dead_letters;
mod flow_control;
mod groups;
mod health;
mod hooks;
mod messages;
mod metrics;
mod observe;
mod openapi;
mod plugins;
pub mod realtime;
mod schedules;
mod users;
mod webhooks;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, put};
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::connections::{Settings, Shed};
use crate::state::AppState;
use error::{ApiError, Code};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole API, with `pages` (the console's routes, which share its middleware: request ids,
/// logging, metrics, body limits) beside it.
pub fn router(state: AppState, pages: Router<AppState>) -> Router {
    let body_limit = state.config.max_body_bytes;
    let batch_limit = state.config.max_batch_body_bytes;
    let upload_limit = state.policies.sandbox().max_component_bytes();
    let socket_io = realtime::socketio::layer(&state);
    Router::new()
        .route("/auth/login", post(auth::login))
        .route("/auth/refresh", post(auth::refresh))
        .route("/auth/logout", post(auth::logout))
        .route("/auth/sessions", get(auth::sessions))
        .route("/auth/sessions/{id}", delete(auth::end_session))
        .route("/users", post(users::create).get(users::list))
        .route("/users/me", get(users::me))
        .route("/users/me/password", put(users::change_password))
        .route("/users/{id}", get(users::get).delete(users::delete))
        .route("/users/{id}/sessions", get(auth::user_sessions))
        .route(
            "/users/{id}/sessions/{session_id}",
            delete(auth::end_user_session),
        )
        .route(
            "/users/me/webhook",
            get(webhooks::get)
                .put(webhooks::set)
                .delete(webhooks::delete),
        )
        .route("/users/me/webhook/rotate", post(webhooks::rotate))
        .route(
            "/users/me/callbacks",
            get(callbacks::get)
                .put(callbacks::set)
                .delete(callbacks::delete),
        )
        .route("/users/me/callbacks/rotate", post(callbacks::rotate))
        .route("/messages", post(messages::submit).get(messages::list))
        .route(
            "/messages/batch",
            post(messages::submit_batch).layer(DefaultBodyLimit::max(batch_limit)),
        )
        .route(
            "/messages/{id}",
            get(messages::get)
                .delete(messages::cancel)
                .merge(patch(messages::reschedule)),
        )
        .route("/messages/{id}/status", get(messages::status))
        .route("/messages/{id}/events", get(messages::events))
        .route("/messages/{id}/deliver-now", post(messages::deliver_now))
        .route("/messages/{id}/read", post(messages::read))
        .route("/groups", post(groups::create).get(groups::list))
        .route("/groups/{id}", get(groups::get).delete(groups::delete))
        .route(
            "/groups/{id}/members",
            post(groups::add_members).get(groups::members),
        )
        .route(
            "/groups/{id}/members/{user_id}",
            put(groups::add_member).delete(groups::remove_member),
        )
        .route("/fan-outs/{id}", get(groups::fan_out))
        .route("/schedules", post(schedules::create).get(schedules::list))
        .route(
            "/schedules/{id}",
            get(schedules::get)
                .delete(schedules::delete)
                .merge(patch(schedules::update)),
        )
        .route("/schedules/{id}/pause", post(schedules::pause))
        .route("/schedules/{id}/resume", post(schedules::resume))
        .route("/schedules/{id}/next", get(schedules::next))
        .route("/dead-letters", get(dead_letters::list))
        .route("/dead-letters/replay", post(dead_letters::replay_many))
        .route("/dead-letters/{id}/replay", post(dead_letters::replay))
        .route("/dead-letters/{id}", delete(dead_letters::delete))
        .route("/flow-control", get(flow_control::list))
        .route(
            "/flow-control/{key}",
            put(flow_control::put)
                .get(flow_control::get)
                .delete(flow_control::delete),
        )
        .route(
            "/plugins",
            post(plugins::upload)
                .get(plugins::list)
                .layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route("/plugins/{id}", get(plugins::get).delete(plugins::delete))
        .route("/plugins/{id}/enable", post(plugins::enable))
        .route("/hooks", get(hooks::get))
        .route(
            "/hooks/validators",
            put(hooks::put_validators).delete(hooks::delete_validators),
        )
        .route(
            "/hooks/delay-policy",
            put(hooks::put_delay_policy).delete(hooks::delete_delay_policy),
        )
        .route(
            "/hooks/channels/{name}",
            put(hooks::put_channel).delete(hooks::delete_channel),
        )
        .route("/hooks/dry-run", post(hooks::dry_run))
        .route("/ws", get(realtime::ws::upgrade))
        .route("/health", get(health::health))
        .route("/health/db", get(health::db))
        .route("/health/redis", get(health::redis))
        .route("/metrics", get(metrics::metrics))
        .route("/problems/{code}", get(error::describe))
        .route("/openapi.json", get(openapi::document))
        .merge(pages)
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state.clone())
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(|request: &Request| {
                            let request_id = request
                                .headers()
                                .get(&REQUEST_ID)
                                .and_then(|value| value.to_str().ok())
                                .unwrap_or("-");
                            tracing::info_span!(
                                "request",
                                method = %request.method(),
                                path = request.uri().path(),
                                request_id,
                            )
                        })
                        // `observe` logs each request once, with its route and status.
                        .on_request(())
                        .on_response(())
                        .on_failure(()),
                )
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    observe::observe,
                ))
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(axum::middleware::from_fn(error::problem_details))
                .layer(axum::middleware::from_fn_with_state(
                    bodies::BodyLimits {
                        max_body_bytes: body_limit,
                        max_batch_bytes: batch_limit,
                        max_upload_bytes: upload_limit,
                    },
                    bodies::limit,
                ))
                .layer(DefaultBodyLimit::max(body_limit)),
        )
        .layer(socket_io)
        .layer(axum::middleware::from_fn_with_state(
            state,
            realtime::socketio::admit,
        ))
}

async fn route_not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        Code::RouteNotFound,
        format!("no endpoint matches {method} {}", uri.path()),
    )
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> Response {
    // axum adds the `allow` header to this response itself.
    let mut response = ApiError::new(
        Code::MethodNotAllowed,
        format!("{} does not take {method}", uri.path()),
    )
    .into_response();
    *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    response
}

/// The answers to connections over a cap ([`Shed`]): problems, like every other refusal.
pub fn shed(settings: &Settings) -> Shed {
    let (per_address, total) = refusals(settings);
    Shed::new(http1_answer(&per_address), http1_answer(&total))
}

/// The problems answered over the per-address cap and over the server's.
fn refusals(settings: &Settings) -> (ApiError, ApiError) {
    let per_address = ApiError::new(
        Code::TooManyConnections,
        format!(
            "this address already holds {} open connections, the most this server allows from one address (DMS_MAX_CONNECTIONS_PER_ADDRESS); reuse or close some",
            settings.max_per_address.unwrap_or(0)
        ),
    );
    let total = ApiError::new(
        Code::ServerBusy,
        format!(
            "the server holds {} open connections, the most it allows (DMS_MAX_CONNECTIONS); retry shortly",
            settings.max_total
        ),
    );
    (per_address, total)
}

/// A whole HTTP/1.1 response carrying `error`'s problem, ending the connection.
fn http1_answer(error: &ApiError) -> axum::body::Bytes {
    let status = error.code().status();
    let body = serde_json::to_vec(&error.problem()).expect("JSON");
    let head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/problem+json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    );
    let mut bytes = head.into_bytes();
    bytes.extend(body);
    axum::body::Bytes::from(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_over_a_cap_are_whole_problem_responses() {
        let settings = Settings {
            max_total: 100,
            max_per_address: Some(8),
            header_timeout: std::time::Duration::from_secs(1),
            idle_timeout: std::time::Duration::from_secs(1),
            body_timeout: std::time::Duration::from_secs(1),
            open_file_limit: 1024,
        };
        let (per_address, total) = refusals(&settings);
        let text = String::from_utf8(http1_answer(&per_address).to_vec()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.1 429 Too Many Requests\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\nretry-after: 1\r\n"));
        assert!(head.contains(&format!("\r\ncontent-length: {}", body.len())));
        let problem: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(problem["code"], "too_many_connections");
        let text = String::from_utf8(http1_answer(&total).to_vec()).unwrap();
        assert!(text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(text.contains("\"code\":\"server_busy\""));
    }
}
