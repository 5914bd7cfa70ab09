//! Signing in and out: the same sessions as `POST /auth/login` and `/auth/logout`, carried
//! by cookies (see [`api::cookies`](crate::api::cookies)).

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::api::cookies;
use crate::api::error::ApiError;
use crate::api::extract::ClientIp;
use crate::console::page::{Layout, PageQuery, error_page, render, render_with_status};
use crate::console::session::{
    Csrf, Viewer, clear_session_cookies, csrf_cookie, new_csrf, safe_next, session_cookies,
};
use crate::state::AppState;

/// The sign-in page.
#[derive(Template)]
#[template(path = "login.html")]
pub(crate) struct LoginPage {
    pub(crate) layout: Layout,
    pub(crate) next: String,
    pub(crate) username: String,
    pub(crate) problem: Option<String>,
}

impl LoginPage {
    fn new(csrf: String, next: &str, username: String, problem: Option<String>) -> Self {
        Self {
            layout: Layout {
                title: "Sign in".into(),
                section: "",
                user: None,
                csrf,
                scripts: &[],
            },
            next: next.to_owned(),
            username,
            problem,
        }
    }
}

/// Where to go after signing in.
#[derive(Debug, Deserialize)]
pub(crate) struct Next {
    next: Option<String>,
}

/// `GET /console/login`: the form (or straight on, when already signed in).
pub(crate) async fn form(
    viewer: Option<Viewer>,
    Csrf(csrf): Csrf,
    PageQuery(query): PageQuery<Next>,
) -> Response {
    let next = safe_next(query.next.as_deref());
    if viewer.is_some() {
        return Redirect::to(next).into_response();
    }
    render(&LoginPage::new(csrf, next, String::new(), None))
}

/// The sign-in form's fields.
#[derive(Debug, Deserialize)]
pub(crate) struct Credentials {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    next: String,
}

/// `POST /console/login`: starts a session and sets its cookies, or shows the form again
/// with the problem's detail under the password.
pub(crate) async fn sign_in(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Csrf(csrf): Csrf,
    Form(form): Form<Credentials>,
) -> Response {
    let next = safe_next(Some(&form.next)).to_owned();
    if let Err(error) = cookies::check_csrf(&headers, Some(&form.csrf)) {
        return refused(csrf, &next, form.username, &error);
    }
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|value| value.to_str().ok());
    match app
        .sessions
        .login(&form.username, &form.password, &ip, user_agent)
        .await
    {
        Ok(issued) => {
            let secure = app.tls.is_some();
            let mut response = Redirect::to(&next).into_response();
            // A new anti-forgery token for the new session.
            let cookies = session_cookies(&app, &issued, secure)
                .into_iter()
                .chain([csrf_cookie(&new_csrf(), secure)]);
            for cookie in cookies {
                if let Ok(value) = HeaderValue::from_str(&cookie) {
                    response.headers_mut().append(header::SET_COOKIE, value);
                }
            }
            response
        }
        Err(error) => refused(csrf, &next, form.username, &ApiError::from(error)),
    }
}

fn refused(csrf: String, next: &str, username: String, error: &ApiError) -> Response {
    let status = error.code().status();
    let mut response = render_with_status(
        status,
        &LoginPage::new(csrf, next, username, Some(error.detail().to_owned())),
    );
    if let Some(seconds) = error.retry_after_seconds() {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// The sign-out form's field.
#[derive(Debug, Deserialize)]
pub(crate) struct SignOut {
    #[serde(default)]
    csrf: String,
}

/// `POST /console/logout`: ends the session (its tokens stop working, its live connections
/// close) and removes the cookies.
pub(crate) async fn sign_out(
    State(app): State<AppState>,
    viewer: Option<Viewer>,
    headers: HeaderMap,
    Form(form): Form<SignOut>,
) -> Response {
    if let Err(error) = cookies::check_csrf(&headers, Some(&form.csrf)) {
        return error_page(viewer.as_ref(), error);
    }
    if let Some(viewer) = &viewer
        && let Err(error) = app.sessions.logout(&viewer.user, &viewer.session).await
    {
        return error_page(Some(viewer), error.into());
    }
    let mut response = Redirect::to("/console/login").into_response();
    for cookie in clear_session_cookies(app.tls.is_some()) {
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

/// `POST /console/session/refresh`: the console's scripts call this when the API answers
/// `token_expired`; the session middleware has refreshed the cookies by the time it runs.
pub(crate) async fn refresh(viewer: Option<Viewer>) -> StatusCode {
    if viewer.is_some() {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::UNAUTHORIZED
    }
}
