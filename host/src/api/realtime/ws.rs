//! `GET /ws`: the plain WebSocket transport, JSON text frames.
//!
//! The token comes as `Authorization: Bearer`, as `?token=` (browsers cannot set headers on
//! WebSocket requests), as a console page's session cookie (same origin only), or in a first
//! `{"type":"auth","token":…}` frame within 5 s. A bad
//! token in the request is refused before the upgrade with the API's problem body; `?cursor=`
//! replays everything after that cursor right after `ready`.

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{
    CloseFrame, Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection,
};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use serde::Deserialize;
use tokio::time::Instant;

use super::connection::{self, Authed, ClientFrame, Connection, Out, close};
use super::{MAX_FRAME, check_origin, is_same_origin};
use crate::api::error::{ApiError, Code};
use crate::api::extract::{ApiQuery, ClientIp};
use crate::realtime::{Next, Unauthenticated};
use crate::state::AppState;

/// How long a closing connection waits for the client's close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// The query of `GET /ws`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Query {
    /// An access token (for browsers).
    token: Option<String>,
    /// Replay everything after this cursor.
    cursor: Option<u64>,
}

/// Upgrades to a WebSocket after checking the origin and any token sent with the request.
#[utoipa::path(
    get,
    path = "/ws",
    tag = "realtime",
    summary = "Open a WebSocket",
    description = "Upgrades to a WebSocket of JSON text frames. The token comes as `Authorization: Bearer`, as `?token=`, or in a first `{\"type\":\"auth\",\"token\":…}` frame within 5 s. A bad token in the request is refused before the upgrade; `?cursor=` replays everything after that cursor right after `ready`.",
    params(Query),
    security((), ("bearer" = [])),
    responses(
        (status = 101, description = "Switched to the WebSocket protocol."),
        (status = 401, description = "`invalid_token`, `token_expired` or `session_ended`: the token sent with the request was refused.", body = crate::api::openapi::Problem, content_type = crate::api::openapi::PROBLEM),
        (status = 403, description = "`origin_not_allowed`: a browser page of this origin may not connect.", body = crate::api::openapi::Problem, content_type = crate::api::openapi::PROBLEM),
        (status = 426, description = "`websocket_required`: send `Upgrade: websocket`.", body = crate::api::openapi::Problem, content_type = crate::api::openapi::PROBLEM),
        (status = 429, description = "`too_many_connections` (with `retry-after`): without a token, the client's address already has `DMS_WS_MAX_UNAUTHENTICATED_PER_ADDRESS` connections waiting to authenticate.", body = crate::api::openapi::Problem, content_type = crate::api::openapi::PROBLEM),
    ),
)]
pub async fn upgrade(
    State(app): State<AppState>,
    headers: HeaderMap,
    ClientIp(address): ClientIp,
    ApiQuery(query): ApiQuery<Query>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    check_origin(&headers, &app.config.allowed_origins())?;
    let upgrade = upgrade.map_err(|rejection| {
        ApiError::new(
            Code::WebSocketRequired,
            format!("GET /ws takes WebSocket connections only: {rejection}"),
        )
    })?;
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .map(|value| {
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
                .map(str::trim)
                .map(str::to_owned)
                .ok_or_else(|| {
                    ApiError::new(
                        Code::InvalidToken,
                        "the Authorization header must be \"Bearer <token>\"",
                    )
                })
        })
        .transpose()?;
    // A console page of this origin sends its session cookie instead of a token.
    let cookie = is_same_origin(&headers)
        .then(|| crate::api::cookies::get(&headers, crate::api::cookies::SESSION))
        .flatten();
    let token = match bearer.or(query.token).or(cookie) {
        Some(token) => Token::Sent(connection::authenticate(&app, &token).await?),
        None => Token::InFirstFrame(unauthenticated(&app, &address)?),
    };
    let heartbeat = Duration::from_millis(app.config.ws_heartbeat_ms);
    Ok(upgrade
        .max_message_size(MAX_FRAME)
        .max_frame_size(MAX_FRAME)
        .read_buffer_size(4 << 10)
        .write_buffer_size(0)
        .on_upgrade(move |socket| serve(app, socket, token, query.cursor, heartbeat)))
}

/// How the connection authenticates.
enum Token {
    /// With the request: checked before the upgrade.
    Sent(Authed),
    /// With its first frame; until then it counts against its address.
    InFirstFrame(Unauthenticated),
}

/// A place among `address`'s connections waiting to authenticate (a `/ws` socket before its
/// `auth` frame, a Socket.IO session before its connect), or the 429 when it has none left.
pub fn unauthenticated(app: &AppState, address: &str) -> Result<Unauthenticated, ApiError> {
    app.hub.admit_unauthenticated(address).ok_or_else(|| {
        ApiError::new(
            Code::TooManyConnections,
            format!(
                "{address} already has {} real-time connections waiting to authenticate (DMS_WS_MAX_UNAUTHENTICATED_PER_ADDRESS); send the token with the request, or authenticate those first",
                app.config.ws_max_unauthenticated_per_address
            ),
        )
        .retry_after(1)
    })
}

async fn serve(
    app: AppState,
    mut socket: WebSocket,
    token: Token,
    cursor: Option<u64>,
    heartbeat: Duration,
) {
    let authed = match token {
        Token::Sent(authed) => authed,
        Token::InFirstFrame(waiting) => {
            let authed = first_auth(&app, &mut socket).await;
            waiting.release();
            match authed {
                Ok(authed) => authed,
                Err(out) => {
                    send(&mut socket, out).await;
                    return;
                }
            }
        }
    };
    let (mut connection, hello) = match Connection::open(app, authed, cursor).await {
        Ok(opened) => opened,
        Err(refused) => {
            for out in refused {
                if !send(&mut socket, out).await {
                    break;
                }
            }
            return;
        }
    };
    for out in hello {
        if !send(&mut socket, out).await {
            return;
        }
    }
    let mut beat = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
    let mut last_heard = Instant::now();

    enum Step {
        Frame(Option<Result<Message, axum::Error>>),
        Hub(Next),
        Beat,
        Expired,
    }
    loop {
        let deadline = connection.deadline();
        let step = tokio::select! {
            message = socket.recv() => Step::Frame(message),
            next = connection.next() => Step::Hub(next),
            _ = beat.tick() => Step::Beat,
            () = tokio::time::sleep_until(deadline) => Step::Expired,
        };
        let outs = match step {
            Step::Frame(None | Some(Ok(Message::Close(_)))) => return,
            Step::Frame(Some(Err(error))) => {
                drop(connection);
                if is_too_big(&error) {
                    send(
                        &mut socket,
                        Out::Close(
                            close::TOO_BIG,
                            format!("frames are limited to {MAX_FRAME} bytes"),
                        ),
                    )
                    .await;
                }
                return;
            }
            Step::Frame(Some(Ok(message))) => {
                last_heard = Instant::now();
                match message {
                    Message::Text(text) => {
                        connection.on_frame(connection::parse(text.as_str())).await
                    }
                    Message::Binary(_) => {
                        connection
                            .on_frame(Err::<ClientFrame, _>(
                                "binary frames are not part of the protocol; send JSON text".into(),
                            ))
                            .await
                    }
                    _ => Vec::new(),
                }
            }
            Step::Hub(next) => connection.on_next(next).await,
            Step::Beat => {
                if last_heard.elapsed() > heartbeat * 2 {
                    vec![Out::Close(
                        close::HEARTBEAT,
                        "no answer to heartbeats".into(),
                    )]
                } else if socket
                    .send(Message::Ping(Default::default()))
                    .await
                    .is_err()
                {
                    return;
                } else {
                    Vec::new()
                }
            }
            Step::Expired => vec![connection.expired()],
        };
        for out in outs {
            if matches!(out, Out::Close(..)) {
                // Leave the hub (and presence) before the closing handshake.
                drop(connection);
                send(&mut socket, out).await;
                return;
            }
            if !send(&mut socket, out).await {
                return;
            }
        }
    }
}

/// Waits up to 5 s for an `auth` frame.
async fn first_auth(app: &AppState, socket: &mut WebSocket) -> Result<Authed, Out> {
    let timeout = || {
        Out::Close(
            close::AUTH_TIMEOUT,
            "send {\"type\":\"auth\",\"token\":…} within 5 s of connecting".into(),
        )
    };
    let deadline = Instant::now() + connection::AUTH_WITHIN;
    loop {
        let message = tokio::time::timeout_at(deadline, socket.recv())
            .await
            .map_err(|_| timeout())?;
        match message {
            Some(Ok(Message::Text(text))) => {
                return match connection::parse(text.as_str()) {
                    Ok(ClientFrame::Auth { token }) => connection::authenticate(app, &token)
                        .await
                        .map_err(|error| {
                            Out::Close(close::AUTH_REFUSED, error.detail().to_owned())
                        }),
                    _ => Err(Out::Close(
                        close::AUTH_REFUSED,
                        "the first frame must be {\"type\":\"auth\",\"token\":…}".into(),
                    )),
                };
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Err(error)) if is_too_big(&error) => {
                return Err(Out::Close(
                    close::TOO_BIG,
                    format!("frames are limited to {MAX_FRAME} bytes"),
                ));
            }
            _ => return Err(timeout()),
        }
    }
}

fn is_too_big(error: &axum::Error) -> bool {
    let text = error.to_string();
    text.contains("Space limit exceeded")
        || text.contains("too long")
        || text.contains("Message too big")
        || text.contains("Capacity")
}

/// Sends one output; false when the connection is over (closed by us, or gone).
async fn send(socket: &mut WebSocket, out: Out) -> bool {
    match out {
        Out::Frame(frame) => socket
            .send(Message::Text(frame.to_string().into()))
            .await
            .is_ok(),
        Out::Close(code, reason) => {
            // A close reason is at most 123 bytes.
            let mut reason = reason;
            while reason.len() > 123 {
                reason.pop();
            }
            let _ = socket
                .send(Message::Close(Some(CloseFrame {
                    code,
                    reason: reason.into(),
                })))
                .await;
            // Finish the closing handshake: reading what the client still sends until its
            // close lets the close frame reach it (closing with unread input resets the TCP
            // connection, and the client may lose the frame).
            let _ = tokio::time::timeout(CLOSE_WAIT, async {
                while let Some(Ok(message)) = socket.recv().await {
                    if matches!(message, Message::Close(_)) {
                        break;
                    }
                }
            })
            .await;
            false
        }
    }
}
