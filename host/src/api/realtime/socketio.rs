//! Socket.IO 4 at `/socket.io/` (socketioxide), for existing Socket.IO clients: the same
//! events as `/ws`, as Socket.IO events named by their `type` (`ready`, `message`, `status`,
//! `read`, `resumed`, `resync_required`, `acked`, `authenticated`, `pong`, `error`).
//!
//! The client authenticates in the handshake, `io(url, { auth: { token, cursor } })` (a
//! refused token is a `connect_error` with the problem's detail), and emits `ack`
//! `{message_id}`, `resume` `{cursor}`, `auth` `{token}` and `ping`. Where `/ws` closes with a
//! code, Socket.IO clients get a `close` event `{code, reason}` and are disconnected.
//! Heartbeats are Engine.IO's own ping/pong, every `DMS_WS_HEARTBEAT_MS`.
//!
//! Sessions that do not authenticate do not pile up: a session that has not connected with a
//! valid token within 5 s (as `/ws`'s `auth` frame) is closed, and each client address may
//! hold `DMS_WS_MAX_UNAUTHENTICATED_PER_ADDRESS` such sessions at once (one more handshake is
//! answered `429 too_many_connections`; see [`admit`]).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::extract::{Data, SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::layer::SocketIoLayer;
use tokio::sync::mpsc;

use super::connection::{self, Authed, ClientFrame, Connection, Out};
use super::{MAX_FRAME, check_origin};
use crate::api::extract::ClientIp;
use crate::realtime::Unauthenticated;
use crate::state::AppState;

/// Where Socket.IO is served (socketioxide's default).
const PATH: &str = "/socket.io/";

/// The events a client may emit.
const CLIENT_EVENTS: [&str; 4] = ["ack", "resume", "auth", "ping"];

/// The handshake's `auth` object.
#[derive(Debug, Clone, Deserialize)]
struct Handshake {
    token: String,
    cursor: Option<u64>,
}

/// The handshake, checked, for the connect handler.
#[derive(Debug, Clone)]
struct Accepted {
    authed: Authed,
    cursor: Option<u64>,
}

/// The tower layer serving `/socket.io/`.
pub fn layer(app: &AppState) -> SocketIoLayer {
    let heartbeat = Duration::from_millis(app.config.ws_heartbeat_ms);
    let (layer, io) = SocketIo::builder()
        .ping_interval(heartbeat)
        .ping_timeout(heartbeat)
        .max_payload(MAX_FRAME as u64)
        .ws_max_message_size(MAX_FRAME)
        .ws_max_frame_size(MAX_FRAME)
        .ws_read_buffer_size(4 << 10)
        // Engine.IO sessions that never connect to a namespace end as a tokenless `/ws` does.
        .connect_timeout(connection::AUTH_WITHIN)
        .build_layer();
    let check = {
        let app = app.clone();
        move |socket: SocketRef, TryData(handshake): TryData<Handshake>| {
            let app = app.clone();
            async move { accept(&app, &socket, handshake).await }
        }
    };
    let connected = {
        let app = app.clone();
        move |socket: SocketRef| {
            let app = app.clone();
            async move {
                if let Some(accepted) = socket.extensions.get::<Accepted>() {
                    let frames = listen(&socket);
                    tokio::spawn(serve(app, socket, accepted, frames));
                }
            }
        }
    };
    io.ns("/", connected.with(check));
    layer
}

/// The connect middleware: origin, then the handshake's token. An error becomes the client's
/// `connect_error`.
async fn accept(
    app: &AppState,
    socket: &SocketRef,
    handshake: Result<Handshake, socketioxide::ParserError>,
) -> Result<(), String> {
    check_origin(&socket.req_parts().headers, &app.config.allowed_origins())
        .map_err(|error| error.detail().to_owned())?;
    let handshake = handshake.map_err(|error| {
        format!("connect with auth: {{ token: \"<access token>\", cursor: <optional> }} ({error})")
    })?;
    let authed = connection::authenticate(app, &handshake.token)
        .await
        .map_err(|error| error.detail().to_owned())?;
    if let Some(waiting) = socket.req_parts().extensions.get::<Arc<Unauthenticated>>() {
        waiting.release();
    }
    socket.extensions.insert(Accepted {
        authed,
        cursor: handshake.cursor,
    });
    Ok(())
}

/// Middleware in front of Socket.IO: a request that opens an Engine.IO session (it has no
/// `sid`) takes a place among its address's unauthenticated connections, or is answered 429.
/// The place travels with the session (in its request's extensions) and is given back when
/// the session connects with a valid token ([`accept`]) or ends.
pub async fn admit(
    State(app): State<AppState>,
    ClientIp(address): ClientIp,
    mut request: Request,
    next: Next,
) -> Response {
    let opens_session = request.uri().path().starts_with(PATH)
        && !url::form_urlencoded::parse(request.uri().query().unwrap_or_default().as_bytes())
            .any(|(key, _)| key == "sid");
    if opens_session {
        match super::ws::unauthenticated(&app, &address) {
            Ok(waiting) => {
                request.extensions_mut().insert(Arc::new(waiting));
            }
            Err(refused) => return refused.into_response(),
        }
    }
    next.run(request).await
}

enum Inbound {
    Frame(Result<ClientFrame, String>),
    Gone,
}

/// Registers the client events and the disconnect, before anything else can happen.
fn listen(socket: &SocketRef) -> mpsc::UnboundedReceiver<Inbound> {
    let (inbound, frames) = mpsc::unbounded_channel();
    for event in CLIENT_EVENTS {
        let inbound = inbound.clone();
        socket.on(event, move |Data(data): Data<Value>| {
            let inbound = inbound.clone();
            async move {
                let _ = inbound.send(Inbound::Frame(frame(event, data)));
            }
        });
    }
    socket.on_disconnect(move || {
        let inbound = inbound.clone();
        async move {
            let _ = inbound.send(Inbound::Gone);
        }
    });
    frames
}

async fn serve(
    app: AppState,
    socket: SocketRef,
    accepted: Accepted,
    mut frames: mpsc::UnboundedReceiver<Inbound>,
) {
    let (mut connection, hello) =
        match Connection::open(app, accepted.authed, accepted.cursor).await {
            Ok(opened) => opened,
            Err(refused) => {
                for out in refused {
                    if !emit(&socket, out) {
                        break;
                    }
                }
                return;
            }
        };
    for out in hello {
        if !emit(&socket, out) {
            return;
        }
    }
    enum Step {
        Client(Option<Inbound>),
        Hub(crate::realtime::Next),
        Expired,
    }
    loop {
        let deadline = connection.deadline();
        let step = tokio::select! {
            inbound = frames.recv() => Step::Client(inbound),
            next = connection.next() => Step::Hub(next),
            () = tokio::time::sleep_until(deadline) => Step::Expired,
        };
        let outs = match step {
            Step::Client(None | Some(Inbound::Gone)) => return,
            Step::Client(Some(Inbound::Frame(frame))) => connection.on_frame(frame).await,
            Step::Hub(next) => connection.on_next(next).await,
            Step::Expired => vec![connection.expired()],
        };
        for out in outs {
            if !emit(&socket, out) {
                return;
            }
        }
    }
}

/// A client event as a protocol frame: the event name is its `type`.
fn frame(event: &str, data: Value) -> Result<ClientFrame, String> {
    let mut object = match data {
        Value::Object(object) => object,
        Value::Null => serde_json::Map::new(),
        other => return Err(format!("the {event} event takes an object, not {other}")),
    };
    object.insert("type".into(), Value::from(event));
    serde_json::from_value(Value::Object(object)).map_err(|error| format!("{event}: {error}"))
}

/// Emits one output; false when the socket is done (closed by us, or gone).
fn emit(socket: &SocketRef, out: Out) -> bool {
    match out {
        Out::Frame(frame) => {
            let event = frame["type"].as_str().unwrap_or("event").to_owned();
            match socket.emit(event, &frame) {
                Ok(()) => true,
                Err(error) => {
                    // Socket.IO's own buffer is full (a reader this far behind resumes from
                    // its cursor) or the socket is gone: either way this connection is over.
                    let _ = socket.emit(
                        "close",
                        &json!({ "code": connection::close::SLOW_CONSUMER, "reason": error.to_string() }),
                    );
                    let _ = socket.clone().disconnect();
                    false
                }
            }
        }
        Out::Close(code, reason) => {
            let _ = socket.emit("close", &json!({ "code": code, "reason": reason }));
            let _ = socket.clone().disconnect();
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_events_become_frames() {
        assert_eq!(
            frame("resume", json!({ "cursor": 4 })),
            Ok(ClientFrame::Resume { cursor: 4 })
        );
        assert_eq!(frame("ping", Value::Null), Ok(ClientFrame::Ping));
        assert!(frame("ack", json!(3)).is_err());
        assert!(frame("ack", json!({})).unwrap_err().contains("message_id"));
    }
}
