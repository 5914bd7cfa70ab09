//! Who is looking at a console page: the session behind its cookies (see
//! [`api::cookies`](crate::api::cookies)), refreshed on the way in when its access token has
//! run out, and the anti-forgery token the page hands to its scripts and forms.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;

use crate::api::cookies::{self, CSRF, REFRESH, REFRESH_PATH, SESSION};
use crate::api::error::ApiError;
use crate::auth::rate_limit::Limit;
use crate::domain::ids::SessionId;
use crate::domain::user::{Role, User};
use crate::state::AppState;
use crate::use_cases::accounts::{Error as AccountError, Issued};

/// How long a rotated refresh token still yields the tokens it was traded for: a page load
/// and a script's request (or two tabs) that find the access token expired at the same moment
/// both present the same refresh token, and the second must not look like a stolen token.
const REFRESH_GRACE: Duration = Duration::from_secs(30);

/// Refresh tokens traded in the last [`REFRESH_GRACE`], by the old token's hash.
#[derive(Clone, Default)]
pub(crate) struct RecentRefreshes(Arc<Mutex<HashMap<String, (Instant, Issued)>>>);

impl RecentRefreshes {
    fn get(&self, hash: &str) -> Option<Issued> {
        let mut recent = self.0.lock().unwrap_or_else(|poison| poison.into_inner());
        recent.retain(|_, (at, _)| at.elapsed() < REFRESH_GRACE);
        recent.get(hash).map(|(_, issued)| issued.clone())
    }

    fn put(&self, hash: String, issued: Issued) {
        let mut recent = self.0.lock().unwrap_or_else(|poison| poison.into_inner());
        recent.insert(hash, (Instant::now(), issued));
    }
}

/// The signed-in user of a console page.
#[derive(Debug, Clone)]
pub(crate) struct Viewer {
    /// The user, as stored now.
    pub(crate) user: User,
    /// The console session.
    pub(crate) session: SessionId,
    /// The anti-forgery token for the page's forms and scripts.
    pub(crate) csrf: String,
}

impl Viewer {
    /// Whether the viewer is an admin of their tenant.
    pub(crate) fn is_admin(&self) -> bool {
        self.user.role == Role::Admin
    }
}

/// The anti-forgery token of the request (the cookie's, or a new one the response sets).
#[derive(Debug, Clone)]
pub(crate) struct Csrf(pub String);

/// Middleware for every console route: makes sure the browser holds an anti-forgery cookie,
/// refreshes a session whose access token expired (setting the new cookies on the response),
/// and leaves the [`Viewer`] in the request when a live session is signed in.
pub(crate) async fn resolve(
    State(app): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let secure = app.tls.is_some();
    let recent = request
        .extensions()
        .get::<RecentRefreshes>()
        .cloned()
        .unwrap_or_default();
    let mut set_cookies = Vec::new();
    let csrf = match cookies::get(request.headers(), CSRF) {
        Some(csrf) => csrf,
        None => {
            let csrf = new_csrf();
            set_cookies.push(csrf_cookie(&csrf, secure));
            csrf
        }
    };
    request.extensions_mut().insert(Csrf(csrf.clone()));
    let access = cookies::get(request.headers(), SESSION);
    let mut signed_in = match &access {
        Some(token) => app.sessions.authenticate(token).await,
        None => Err(AccountError::TokenExpired(String::new())),
    };
    if matches!(signed_in, Err(AccountError::TokenExpired(_)))
        && let Some(refresh_token) = cookies::get(request.headers(), REFRESH)
    {
        match refresh(&app, &recent, &refresh_token).await {
            Ok(issued) => {
                set_cookies.extend(session_cookies(&app, &issued, secure));
                signed_in = app.sessions.authenticate(&issued.token).await;
            }
            Err(_) => set_cookies.extend(clear_session_cookies(secure)),
        }
    }
    if let Ok((user, claims)) = signed_in {
        if let Err(limited) = app.limits.check(Limit::ApiPerUser, user.id.as_str()).await {
            return super::page::error_page(None, ApiError::rate_limited(limited));
        }
        request.extensions_mut().insert(Viewer {
            user,
            session: claims.sid,
            csrf,
        });
    }
    let mut response = next.run(request).await;
    for cookie in set_cookies {
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

async fn refresh(
    app: &AppState,
    recent: &RecentRefreshes,
    refresh_token: &str,
) -> Result<Issued, AccountError> {
    let hash = crate::auth::refresh::hash(refresh_token);
    if let Some(issued) = recent.get(&hash) {
        return Ok(issued);
    }
    let issued = app.sessions.refresh(refresh_token).await?;
    recent.put(hash, issued.clone());
    Ok(issued)
}

/// The cookies that carry a session's tokens to the console.
pub(crate) fn session_cookies(app: &AppState, issued: &Issued, secure: bool) -> [String; 2] {
    [
        cookies::set(
            SESSION,
            issued.token.clone(),
            "/",
            issued.expires_in,
            secure,
            false,
        ),
        cookies::set(
            REFRESH,
            issued.refresh_token.clone(),
            REFRESH_PATH,
            app.config.session_ttl_days.saturating_mul(86_400),
            secure,
            false,
        ),
    ]
}

/// Cookies that remove the session's.
pub(crate) fn clear_session_cookies(secure: bool) -> [String; 2] {
    [
        cookies::set(SESSION, String::new(), "/", 0, secure, false),
        cookies::set(REFRESH, String::new(), REFRESH_PATH, 0, secure, false),
    ]
}

/// A fresh anti-forgery token.
pub(crate) fn new_csrf() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(crate::random::random_bytes::<32>())
}

/// The anti-forgery cookie (readable by the console's scripts, which send it back as a
/// header; a page of another origin cannot read it).
pub(crate) fn csrf_cookie(csrf: &str, secure: bool) -> String {
    cookies::set(CSRF, csrf.to_owned(), "/", 400 * 86_400, secure, true)
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Response> {
        parts.extensions.get::<Viewer>().cloned().ok_or_else(|| {
            let next = parts
                .uri
                .path_and_query()
                .map_or("/console/", |path| path.as_str());
            Redirect::to(&format!("/console/login?next={}", encode(next))).into_response()
        })
    }
}

impl axum::extract::OptionalFromRequestParts<AppState> for Viewer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _: &AppState,
    ) -> Result<Option<Self>, std::convert::Infallible> {
        Ok(parts.extensions.get::<Viewer>().cloned())
    }
}

impl FromRequestParts<AppState> for Csrf {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Response> {
        Ok(parts
            .extensions
            .get::<Csrf>()
            .cloned()
            .unwrap_or_else(|| Csrf(new_csrf())))
    }
}

/// A tenant admin looking at a console page; anyone else gets the 404 page (a member does not
/// learn which admin pages exist).
#[derive(Debug, Clone)]
pub(crate) struct AdminViewer(pub Viewer);

impl FromRequestParts<AppState> for AdminViewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let viewer = Viewer::from_request_parts(parts, state).await?;
        if viewer.is_admin() {
            Ok(Self(viewer))
        } else {
            Err(super::page::not_found(Some(&viewer)))
        }
    }
}

/// `text` for a query string.
pub(crate) fn encode(text: &str) -> String {
    serde_urlencoded::to_string([("", text)])
        .map(|pair| pair.trim_start_matches('=').to_owned())
        .unwrap_or_default()
}

/// Where to go after signing in: a console path, never another site.
pub(crate) fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(next)
            if next.starts_with("/console/")
                && !next.starts_with("//")
                && !next.contains('\\')
                && !next.starts_with("/console/login") =>
        {
            next
        }
        _ => "/console/",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_console_paths_are_followed_after_sign_in() {
        assert_eq!(
            safe_next(Some("/console/messages?box=sent")),
            "/console/messages?box=sent"
        );
        for bad in [
            None,
            Some("https://evil.example/"),
            Some("//evil.example/console/"),
            Some("/console\\..\\evil"),
            Some("/console/login?next=/x"),
            Some("/api"),
        ] {
            assert_eq!(safe_next(bad), "/console/");
        }
    }

    #[test]
    fn next_paths_are_query_encoded() {
        assert_eq!(
            encode("/console/messages?a=1&b=2"),
            "%2Fconsole%2Fmessages%3Fa%3D1%26b%3D2"
        );
    }
}
