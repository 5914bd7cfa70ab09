//! The console: server-rendered pages at `/console/` for tenant admins and senders, on the
//! same origin as the API and signed in with the same sessions.
//!
//! Pages read through the use cases, exactly as the API's handlers do, and are rendered by
//! compiled templates (askama) that escape every value as HTML text. Changes (cancel, replay,
//! upload, ...) are made by the pages' small scripts calling the JSON API itself with the
//! session cookie and the anti-forgery header, so the API's rules, problems and tests are the
//! console's too. Every console response forbids inline script and style, framing, and
//! loading anything from another origin (`Content-Security-Policy`).
//!
//! - [`session`]: the signed-in viewer, cookie refresh, anti-forgery token;
//! - [`page`]: the layout, rendering, error and 404 pages;
//! - [`assets`]: the embedded stylesheet and scripts;
//! - [`pages`]: one module per section.

mod assets;
mod page;
mod pages;
mod session;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::state::AppState;
use session::{RecentRefreshes, Viewer};

/// What every console response allows: its own scripts, styles, images and connections
/// (fetch and the WebSocket), nothing inline, no framing.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The console's routes, under `/console/`.
pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route(
            "/console/login",
            get(pages::sign_in::form).post(pages::sign_in::sign_in),
        )
        .route("/console/logout", post(pages::sign_in::sign_out))
        .route("/console/session/refresh", post(pages::sign_in::refresh))
        .route("/console/assets/{*path}", get(assets::serve))
        // Users and sessions.
        .route("/console/users", get(pages::users::list))
        .route("/console/users/{id}", get(pages::users::user))
        .route("/console/sessions", get(pages::users::sessions))
        // Messages, a message's page, dead letters.
        .route("/console/messages", get(pages::messages::list))
        .route("/console/messages/{id}", get(pages::messages::show))
        .route("/console/dead-letters", get(pages::messages::dead_letters))
        // Plugins, hooks and dry runs; the webhook endpoint.
        .route("/console/plugins", get(pages::plugins::plugins))
        .route("/console/hooks", get(pages::plugins::hooks))
        .route("/console/webhook", get(pages::webhook::page))
        // The overview, the live feed, groups, schedules and flow control.
        .route("/console/", get(pages::overview::page))
        .route("/console/overview.json", get(pages::overview::data))
        .route("/console/live", get(pages::live::page))
        .route("/console/groups", get(pages::groups::list))
        .route("/console/groups/{id}", get(pages::groups::group))
        .route("/console/schedules", get(pages::schedules::list))
        .route("/console/schedules/{id}", get(pages::schedules::schedule))
        .route("/console/flow-control", get(pages::flow::list))
        .route("/console/{*rest}", get(not_found).post(not_found))
        .layer(axum::middleware::from_fn_with_state(
            state,
            session::resolve,
        ))
        .layer(axum::Extension(RecentRefreshes::default()))
        .layer(axum::middleware::from_fn(security_headers))
}

async fn not_found(viewer: Option<Viewer>) -> Response {
    page::not_found(viewer.as_ref())
}

/// Middleware: the console's security headers on every response.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await.into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
