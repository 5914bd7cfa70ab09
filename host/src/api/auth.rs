//! `/auth`: login, refresh-token rotation, logout, and the caller's sessions.

use crate::realtime::Revoke;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, Code};
use super::extract::{ApiJson, Caller, ClientIp};
use super::openapi::{PROBLEM, Problem};
use super::users::UserBody;
use crate::app::AppState;
use crate::auth::rate_limit::{self, Limit};
use crate::auth::refresh;
use crate::clock::rfc3339;
use crate::domain::ids::SessionId;
use crate::domain::user::{Session, User, username_key};
use crate::store::{NewSession, Rotation};

/// The longest user agent kept with a session.
const MAX_USER_AGENT: usize = 256;

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

fn tokens(state: &AppState, user: User, session: &SessionId, refresh_token: String) -> Tokens {
    Tokens {
        token: state.tokens.issue(&user, session),
        refresh_token,
        token_type: "Bearer",
        expires_in: state.tokens.ttl_seconds(),
        user: user.into(),
    }
}

fn session_expiry(state: &AppState, now_ms: u64) -> u64 {
    now_ms + state.config.session_ttl_days * 86_400_000
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
    // In this order, so an attempt refused by one limit is not counted by the next: an
    // address over its own limits cannot use up the ceiling every address shares.
    let name = username_key(&body.username);
    for (limit, key) in [
        (Limit::LoginPerIp, ip.clone()),
        (Limit::LoginPerUsernameFromIp, rate_limit::pair(&ip, &name)),
        (Limit::LoginPerUsername, name),
    ] {
        state
            .limits
            .check(limit, &key)
            .await
            .map_err(ApiError::rate_limited)?;
    }
    // No username holds a NUL (`check_username` refuses control characters), and PostgreSQL
    // text cannot even be queried with one: such a login is simply wrong, on both backends.
    let found = if body.username.contains('\0') {
        None
    } else {
        state.store.credentials(&body.username).await?
    };
    let hash = found.as_ref().map(|(_, hash)| hash.as_str());
    let valid = state.passwords.verify(&body.password, hash).await;
    let Some((user, _)) = found.filter(|_| valid) else {
        return Err(ApiError::new(
            Code::InvalidCredentials,
            "the username or the password is wrong",
        ));
    };
    let (refresh_token, refresh_hash) = refresh::issue();
    let now = state.clock.now_ms();
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|value| value.to_str().ok())
        .map(|agent| agent.chars().take(MAX_USER_AGENT).collect());
    let session = state
        .store
        .create_session(NewSession {
            tenant_id: user.tenant_id.clone(),
            user_id: user.id.clone(),
            refresh_hash,
            now_ms: now,
            expires_at_ms: session_expiry(&state, now),
            user_agent,
            ip: Some(ip),
        })
        .await?;
    Ok(Json(tokens(&state, user, &session.id, refresh_token)))
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
    let (refresh_token, new_hash) = refresh::issue();
    let now = state.clock.now_ms();
    let rotation = state
        .store
        .rotate_refresh(
            &refresh::hash(&body.refresh_token),
            &new_hash,
            now,
            session_expiry(&state, now),
        )
        .await?;
    match rotation {
        Rotation::Rotated { session, user } => {
            Ok(Json(tokens(&state, *user, &session.id, refresh_token)))
        }
        Rotation::Reused { session_id, owner } => {
            tracing::warn!(
                message = "A used refresh token was presented again; its session is revoked.",
                session_id = %session_id,
            );
            if let Some((tenant, user)) = owner {
                state.hub.revoke(
                    &tenant,
                    &user,
                    Revoke::Session(session_id),
                    "the session was revoked: its refresh token was used twice",
                );
            }
            Err(ApiError::new(
                Code::RefreshTokenReused,
                "this refresh token was already used, so its session has been revoked; log in again",
            ))
        }
        Rotation::Invalid => Err(ApiError::new(
            Code::InvalidRefreshToken,
            "the refresh token is unknown or its session has ended; log in again",
        )),
    }
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
    state
        .store
        .revoke_session(
            caller.tenant(),
            &caller.user.id,
            &caller.session,
            "logged out",
            state.clock.now_ms(),
        )
        .await?;
    state.hub.revoke(
        caller.tenant(),
        &caller.user.id,
        Revoke::Session(caller.session.clone()),
        "the session logged out",
    );
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
    let sessions = state
        .store
        .list_sessions(caller.tenant(), &caller.user.id, state.clock.now_ms())
        .await?;
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
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id: SessionId = id.parse().map_err(|_| ApiError::not_found("session"))?;
    let revoked = state
        .store
        .revoke_session(
            caller.tenant(),
            &caller.user.id,
            &id,
            "ended by its user",
            state.clock.now_ms(),
        )
        .await?;
    if revoked {
        state.hub.revoke(
            caller.tenant(),
            &caller.user.id,
            Revoke::Session(id),
            "the session was ended by its user",
        );
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("session"))
    }
}
