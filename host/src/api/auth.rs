//! `/auth`: login, refresh-token rotation, logout, and the caller's sessions.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::{Admin, ApiJson, Caller, ClientIp, Id};
use super::openapi::{PROBLEM, Problem};
use super::users::UserBody;
use crate::clock::rfc3339;
use crate::domain::ids::{SessionId, UserId};
use crate::domain::user::Session;
use crate::state::AppState;
use crate::use_cases::accounts::Issued;

/// Credentials.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Login {
    #[schema(example = "admin")]
    username: String,
    password: String,
}

/// What login and refresh return. `token` is the access token (the original system's name).
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Tokens {
    /// The access token (a JWT): send it as `Authorization: Bearer <token>`.
    token: String,
    /// Trades for new tokens at POST /auth/refresh, once.
    refresh_token: String,
    #[schema(example = "Bearer")]
    token_type: &'static str,
    /// Seconds until the access token expires.
    expires_in: u64,
    user: UserBody,
}

impl From<Issued> for Tokens {
    fn from(issued: Issued) -> Self {
        Self {
            token: issued.token,
            refresh_token: issued.refresh_token,
            token_type: "Bearer",
            expires_in: issued.expires_in,
            user: issued.user.into(),
        }
    }
}

/// `POST /auth/login`.
#[utoipa::path(
    post,
    path = "/auth/login",
    tag = "auth",
    summary = "Log in",
    description = "Starts a session: an access token and a refresh token. Any spelling of a username that compares equal (case, width, composition) logs in as that user. Rate limited per client address, per username from one address, and per username from all addresses together (a much higher ceiling), so that wrong passwords sent from one address do not lock the user out elsewhere.",
    request_body = Login,
    responses(
        (status = 200, description = "Logged in.", body = Tokens),
        (status = 401, description = "`invalid_credentials`: the username or the password is wrong.", body = Problem, content_type = PROBLEM),
        (status = 429, description = "`rate_limited`: too many logins from this address, for this username from this address, or for this username from everywhere; see `retry-after`.", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Login>,
) -> Result<Json<Tokens>, ApiError> {
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|value| value.to_str().ok());
    let issued = state
        .sessions
        .login(&body.username, &body.password, &ip, user_agent)
        .await?;
    Ok(Json(issued.into()))
}

/// A refresh token to trade.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Refresh {
    refresh_token: String,
}

/// `POST /auth/refresh`: trades a refresh token for a new access token and a new refresh
/// token. A refresh token works once; presenting it again revokes its whole session.
#[utoipa::path(
    post,
    path = "/auth/refresh",
    tag = "auth",
    summary = "Rotate the refresh token",
    description = "Trades a refresh token for a new access token and a new refresh token. A refresh token works once: presenting it again revokes its whole session (`refresh_token_reused`).",
    request_body = Refresh,
    responses(
        (status = 200, description = "New tokens.", body = Tokens),
        (status = 401, description = "`invalid_refresh_token` or `refresh_token_reused`.", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn refresh(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Refresh>,
) -> Result<Json<Tokens>, ApiError> {
    let issued = state.sessions.refresh(&body.refresh_token).await?;
    Ok(Json(issued.into()))
}

/// `POST /auth/logout`: ends the caller's session.
#[utoipa::path(
    post,
    path = "/auth/logout",
    tag = "auth",
    summary = "Log out",
    description = "Ends the caller's session; its tokens stop working and its live connections close.",
    security(("bearer" = [])),
    responses((status = 204, description = "Logged out.")),
)]
pub(super) async fn logout(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<StatusCode, ApiError> {
    state.sessions.logout(&caller.user, &caller.session).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A live session.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct SessionBody {
    id: SessionId,
    /// Whether the request's token belongs to it.
    current: bool,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    last_used_at: String,
    #[schema(format = DateTime)]
    expires_at: String,
    user_agent: Option<String>,
    ip: Option<String>,
}

impl SessionBody {
    fn new(session: Session, current: &SessionId) -> Self {
        Self {
            current: &session.id == current,
            id: session.id,
            created_at: rfc3339(session.created_at_ms),
            last_used_at: rfc3339(session.last_used_at_ms),
            expires_at: rfc3339(session.expires_at_ms),
            user_agent: session.user_agent,
            ip: session.ip,
        }
    }
}

/// The caller's live sessions.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct SessionList {
    items: Vec<SessionBody>,
}

/// `GET /auth/sessions`: the caller's live sessions, newest first.
#[utoipa::path(
    get,
    path = "/auth/sessions",
    tag = "auth",
    summary = "List the caller's sessions",
    security(("bearer" = [])),
    responses((status = 200, description = "Live sessions, newest first.", body = SessionList)),
)]
pub(super) async fn sessions(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<SessionList>, ApiError> {
    let sessions = state.sessions.list(&caller.user).await?;
    Ok(Json(SessionList {
        items: sessions
            .into_iter()
            .map(|session| SessionBody::new(session, &caller.session))
            .collect(),
    }))
}

/// `DELETE /auth/sessions/{id}`: ends one of the caller's sessions.
#[utoipa::path(
    delete,
    path = "/auth/sessions/{id}",
    tag = "auth",
    summary = "End a session",
    params(("id" = SessionId, Path, description = "One of the caller's sessions.")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Ended."),
        (status = 404, description = "`not_found`: no such session of the caller.", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn end_session(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id<SessionId>,
) -> Result<StatusCode, ApiError> {
    state.sessions.end(&caller.user, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A user and one of their sessions, from the path: malformed ids are the same 404 as
/// unknown ones.
type UserSessionPath = Result<Path<(String, String)>, PathRejection>;

/// `GET /users/{id}/sessions` (admin): a user's live sessions.
#[utoipa::path(
    get,
    path = "/users/{id}/sessions",
    tag = "auth",
    summary = "List a user's sessions (admin)",
    description = "The live sessions of a user of the caller's tenant, newest first: console sign-ins and API logins alike.",
    params(("id" = UserId, Path, description = "A user of the caller's tenant.")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Live sessions, newest first.", body = SessionList),
        (status = 403, description = "`admin_required`: only an admin of the tenant may do this.", body = Problem, content_type = PROBLEM),
        (status = 404, description = "`not_found`: no such user in your tenant.", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn user_sessions(
    State(state): State<AppState>,
    admin: Admin,
    Id(id): Id<UserId>,
) -> Result<Json<SessionList>, ApiError> {
    let sessions = state.sessions.list_of(&admin.user, &id).await?;
    Ok(Json(SessionList {
        items: sessions
            .into_iter()
            .map(|session| SessionBody::new(session, &admin.session))
            .collect(),
    }))
}

/// `DELETE /users/{id}/sessions/{session_id}` (admin): ends a user's session.
#[utoipa::path(
    delete,
    path = "/users/{id}/sessions/{session_id}",
    tag = "auth",
    summary = "End a user's session (admin)",
    description = "Ends a session of a user of the caller's tenant: its tokens stop working and its live connections close.",
    params(
        ("id" = UserId, Path, description = "A user of the caller's tenant."),
        ("session_id" = SessionId, Path, description = "One of that user's live sessions."),
    ),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Ended."),
        (status = 403, description = "`admin_required`: only an admin of the tenant may do this.", body = Problem, content_type = PROBLEM),
        (status = 404, description = "`not_found`: no such user in your tenant, or no such live session of theirs.", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn end_user_session(
    State(state): State<AppState>,
    admin: Admin,
    path: UserSessionPath,
) -> Result<StatusCode, ApiError> {
    let Path((user, session)) = path.map_err(|_| ApiError::not_found("user"))?;
    let user: UserId = user.parse().map_err(|_| ApiError::not_found("user"))?;
    let session: SessionId = session
        .parse()
        .map_err(|_| ApiError::not_found("session"))?;
    state.sessions.end_of(&admin.user, &user, &session).await?;
    Ok(StatusCode::NO_CONTENT)
}
