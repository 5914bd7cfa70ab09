//! One real-time connection, whatever carries it: who it is, the last cursor it was sent, and
//! what it does with each client frame and each hub signal. The transports turn frames into
//! calls here and [`Out`]s back into frames.
//!
//! Ordering: a user's cursors are committed in order (the store locks the user's feed head),
//! but commits can reach the hub out of order. So the connection only ever sends the next
//! cursor: an event further ahead makes it read the gap from the feed first, and events it has
//! already sent are skipped. A client sees every event once, in cursor order.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::api::error::ApiError;
use crate::domain::feed::FeedEvent;
use crate::domain::ids::SessionId;
use crate::domain::user::User;
use crate::realtime::{Closed, Next, Subscription};
use crate::state::AppState;
use crate::use_cases::messages::{self, manage};

/// WebSocket close codes; the table is in the module docs of `api::realtime`.
pub mod close {
    /// The server is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// A frame over 64 KiB.
    pub const TOO_BIG: u16 = 1009;
    /// No `auth` frame in time.
    pub const AUTH_TIMEOUT: u16 = 4000;
    /// The access token expired.
    pub const TOKEN_EXPIRED: u16 = 4001;
    /// The token of an `auth` frame was refused.
    pub const AUTH_REFUSED: u16 = 4002;
    /// The session ended.
    pub const SESSION_ENDED: u16 = 4003;
    /// The client fell behind.
    pub const SLOW_CONSUMER: u16 = 4008;
    /// No heartbeat answer.
    pub const HEARTBEAT: u16 = 4009;
    /// The user or the tenant has as many live connections as allowed.
    pub const TOO_MANY: u16 = 4010;
    /// Too many frames.
    pub const RATE_LIMITED: u16 = 4029;
}

/// How long a client that connected without a token has to send its `auth` frame.
pub const AUTH_WITHIN: Duration = Duration::from_secs(5);

/// Feed events read per query while resuming.
const PAGE: u32 = 1000;

/// A frame a client sends.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    /// Authenticates, or refreshes the token in band.
    Auth {
        /// An access token.
        token: String,
    },
    /// Marks a delivered message read.
    Ack {
        /// The message.
        message_id: String,
    },
    /// Replays every event after `cursor`.
    Resume {
        /// The last cursor the client has.
        cursor: u64,
    },
    /// Asks for a `pong`.
    Ping,
}

/// Parses a client's text frame.
pub fn parse(text: &str) -> Result<ClientFrame, String> {
    serde_json::from_str(text).map_err(|error| {
        format!(
            "{error}; frames are JSON objects with a type: auth {{token}}, ack {{message_id}}, resume {{cursor}} or ping"
        )
    })
}

/// What to send.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    /// A JSON frame.
    Frame(Value),
    /// Close with a code and reason.
    Close(u16, String),
}

/// An authenticated client.
#[derive(Debug, Clone)]
pub struct Authed {
    /// The user.
    pub user: User,
    /// The session of the token.
    pub session: SessionId,
    /// When the token expires (Unix ms).
    pub expires_at_ms: u64,
}

/// Checks an access token as every API call does.
pub async fn authenticate(app: &AppState, token: &str) -> Result<Authed, ApiError> {
    let (user, claims) = crate::api::extract::authenticate(app, token).await?;
    Ok(Authed {
        user,
        session: claims.sid,
        expires_at_ms: claims.exp.saturating_mul(1000),
    })
}

/// An error frame for `error`.
pub fn error_frame(error: &ApiError) -> Value {
    json!({ "type": "error", "code": error.code().as_str(), "detail": error.detail() })
}

/// The instant a token expiring at `expires_at_ms` (the server's clock) runs out.
fn deadline(app: &AppState, expires_at_ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(expires_at_ms.saturating_sub(app.clock.now_ms()))
}

/// A live, authenticated connection.
pub struct Connection {
    app: AppState,
    user: User,
    expires_at_ms: u64,
    /// When the connection closes unless the token is refreshed in band.
    deadline: Instant,
    subscription: Subscription,
    /// The last cursor sent.
    last: u64,
    limiter: DefaultDirectRateLimiter,
}

impl Connection {
    /// Joins the hub and answers `ready`; with `cursor`, also replays what came after it.
    /// Refused, what to send the client before closing: a close with 4010 when the user or
    /// the tenant is at its cap, an error frame and 1011 when the feed cannot be read.
    pub async fn open(
        app: AppState,
        authed: Authed,
        cursor: Option<u64>,
    ) -> Result<(Self, Vec<Out>), Vec<Out>> {
        let user = authed.user;
        // Subscribe before reading the head: nothing committed in between is missed.
        let subscription = app
            .hub
            .subscribe(&user.tenant_id, &user.id, authed.session)
            .map_err(|full| vec![Out::Close(close::TOO_MANY, full.to_string())])?;
        let unavailable = |error: ApiError| {
            vec![
                Out::Frame(error_frame(&error)),
                Out::Close(1011, "try again shortly".into()),
            ]
        };
        let head = app
            .store
            .feed_after(&user.tenant_id, &user.id, u64::MAX >> 1, 0)
            .await
            .map_err(|error| unavailable(error.into()))?
            .head;
        let per_second = NonZeroU32::new(app.config.ws_frames_per_second.max(1)).expect("≥ 1");
        let burst = per_second.saturating_mul(NonZeroU32::new(2).expect("2"));
        let deadline = deadline(&app, authed.expires_at_ms);
        let mut connection = Self {
            limiter: RateLimiter::direct(Quota::per_second(per_second).allow_burst(burst)),
            app,
            user,
            deadline,
            expires_at_ms: authed.expires_at_ms,
            subscription,
            last: head,
        };
        let mut out = vec![Out::Frame(json!({
            "type": "ready",
            "user_id": connection.user.id,
            "cursor": head,
            "expires_at_ms": connection.expires_at_ms,
        }))];
        if let Some(cursor) = cursor {
            out.extend(connection.resume(cursor).await.map_err(unavailable)?);
        }
        Ok((connection, out))
    }

    /// When the token expires, on the runtime's clock (moved by an in-band refresh).
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The close for an expired token.
    pub fn expired(&self) -> Out {
        Out::Close(
            close::TOKEN_EXPIRED,
            "the access token expired; reconnect with a fresh one or send auth before it expires"
                .into(),
        )
    }

    /// Waits for the hub.
    pub async fn next(&mut self) -> Next {
        self.subscription.next().await
    }

    /// Acts on a hub signal.
    pub async fn on_next(&mut self, next: Next) -> Vec<Out> {
        let result = match next {
            Next::Event(event) if event.cursor <= self.last => Ok(Vec::new()),
            Next::Event(event) if event.cursor == self.last + 1 => Ok(vec![self.send(&event)]),
            // Ahead: read the gap (committed before this event) and the event from the feed.
            Next::Event(event) => self.read_feed(event.cursor).await,
            Next::CatchUp => self.read_feed(u64::MAX >> 1).await,
            Next::Closed(Closed::Revoked(reason)) => {
                return vec![Out::Close(close::SESSION_ENDED, reason)];
            }
            Next::Closed(Closed::ShuttingDown) => {
                return vec![Out::Close(
                    close::GOING_AWAY,
                    "the server is shutting down; reconnect and resume from your last cursor"
                        .into(),
                )];
            }
            Next::Closed(Closed::Overflowed) => {
                return vec![Out::Close(
                    close::SLOW_CONSUMER,
                    format!(
                        "the client fell {} events behind; reconnect and resume from your last cursor",
                        self.app.config.ws_outbound_queue
                    ),
                )];
            }
        };
        result.unwrap_or_else(|error| vec![Out::Frame(error_frame(&error))])
    }

    /// Acts on a client frame (or a frame that did not parse).
    pub async fn on_frame(&mut self, frame: Result<ClientFrame, String>) -> Vec<Out> {
        if self.limiter.check().is_err() {
            return vec![Out::Close(
                close::RATE_LIMITED,
                format!(
                    "more than {} frames per second",
                    self.app.config.ws_frames_per_second
                ),
            )];
        }
        let frame = match frame {
            Ok(frame) => frame,
            Err(detail) => {
                return vec![Out::Frame(
                    json!({ "type": "error", "code": "invalid_frame", "detail": detail }),
                )];
            }
        };
        match frame {
            ClientFrame::Ping => vec![Out::Frame(json!({ "type": "pong" }))],
            ClientFrame::Auth { token } => self.refresh(&token).await,
            ClientFrame::Ack { message_id } => {
                let read = match message_id.parse() {
                    Ok(id) => manage::read(&self.app.messages, &self.user, &id).await,
                    // A malformed id names no message.
                    Err(_) => Err(messages::Error::NotFound),
                };
                match read {
                    Ok(_) => vec![Out::Frame(
                        json!({ "type": "acked", "message_id": message_id }),
                    )],
                    Err(error) => {
                        let mut frame = error_frame(&ApiError::from(error));
                        frame["message_id"] = json!(message_id);
                        vec![Out::Frame(frame)]
                    }
                }
            }
            ClientFrame::Resume { cursor } => self
                .resume(cursor)
                .await
                .unwrap_or_else(|error| vec![Out::Frame(error_frame(&error))]),
        }
    }

    /// A new token for the same user: the connection goes on under its session and expiry.
    async fn refresh(&mut self, token: &str) -> Vec<Out> {
        match authenticate(&self.app, token).await {
            Ok(authed) if authed.user.id == self.user.id => {
                self.subscription.set_session(authed.session);
                self.expires_at_ms = authed.expires_at_ms;
                self.deadline = deadline(&self.app, authed.expires_at_ms);
                self.user = authed.user;
                vec![Out::Frame(json!({
                    "type": "authenticated",
                    "expires_at_ms": self.expires_at_ms,
                }))]
            }
            Ok(_) => vec![Out::Close(
                close::AUTH_REFUSED,
                "the token is another user's; open a new connection for them".into(),
            )],
            Err(error) => vec![Out::Close(close::AUTH_REFUSED, error.detail().to_owned())],
        }
    }

    /// Replays every event after `cursor`, then `resumed`; or `resync_required` when some of
    /// them are past retention (or the cursor was never handed out), never a silent gap.
    async fn resume(&mut self, cursor: u64) -> Result<Vec<Out>, ApiError> {
        let tenant = self.user.tenant_id.clone();
        let page = self
            .app
            .store
            .feed_after(&tenant, &self.user.id, cursor, PAGE)
            .await?;
        // Every cursor up to the head was committed before the events were read: unless
        // retention removed it, the one after `cursor` is there.
        let complete = cursor == page.head
            || (cursor < page.head
                && page.events.first().map(|event| event.cursor) == Some(cursor + 1));
        if !complete {
            self.last = self.last.max(page.head);
            let reason = if cursor > page.head {
                format!(
                    "cursor {cursor} was never handed out (the newest is {})",
                    page.head
                )
            } else {
                format!(
                    "events after cursor {cursor} are past retention ({} s)",
                    self.app.config.feed_retention_seconds
                )
            };
            return Ok(vec![Out::Frame(json!({
                "type": "resync_required",
                "cursor": page.head,
                "detail": format!("{reason}; reload your state from the API and continue from cursor {}", page.head),
            }))]);
        }
        self.last = cursor;
        let mut out: Vec<Out> = Vec::new();
        let full = page.events.len() == PAGE as usize;
        out.extend(page.events.iter().map(|event| self.send(event)));
        if full {
            out.extend(self.read_feed(u64::MAX >> 1).await?);
        }
        out.push(Out::Frame(
            json!({ "type": "resumed", "cursor": self.last }),
        ));
        Ok(out)
    }

    /// Sends the feed from the last cursor sent up to `until`.
    async fn read_feed(&mut self, until: u64) -> Result<Vec<Out>, ApiError> {
        let mut out = Vec::new();
        while self.last < until {
            let want = u32::try_from(until - self.last).unwrap_or(PAGE).min(PAGE);
            let page = self
                .app
                .store
                .feed_after(&self.user.tenant_id, &self.user.id, self.last, want)
                .await?;
            let count = page.events.len();
            out.extend(page.events.iter().map(|event| self.send(event)));
            if count < want as usize {
                break;
            }
        }
        Ok(out)
    }

    fn send(&mut self, event: &FeedEvent) -> Out {
        self.last = event.cursor;
        Out::Frame(event.to_json())
    }
}
