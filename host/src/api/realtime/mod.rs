//! The real-time client protocol, served two ways: `GET /ws` (plain WebSocket, JSON text
//! frames; `ws.rs`) and Socket.IO 4 at `/socket.io/` (`socketio.rs`). Both run the same
//! [`connection::Connection`]: authentication, the per-user cursor, resume, acks and limits.
//!
//! Close codes (WebSocket; Socket.IO clients get a `close` event with the same code before
//! the server disconnects them):
//!
//! | code | meaning |
//! |---|---|
//! | 1001 | the server is shutting down: reconnect and resume |
//! | 1009 | a frame over 64 KiB |
//! | 4000 | no `auth` frame within 5 s of connecting |
//! | 4001 | the access token expired without an in-band `auth` refresh |
//! | 4002 | the token in an `auth` frame was refused |
//! | 4003 | the session ended: logout, revocation, password change or user deleted |
//! | 4008 | the client fell behind (its queue filled up): reconnect and resume from its cursor |
//! | 4009 | no heartbeat answer: the peer is gone |
//! | 4010 | the user (or the tenant) already has as many live connections on this node as `DMS_WS_MAX_PER_USER` (`DMS_WS_MAX_PER_TENANT`) allow |
//! | 4029 | more frames per second than `DMS_WS_FRAMES_PER_SECOND` allows |

pub mod connection;
pub mod socketio;
pub mod ws;

use axum::http::{HeaderMap, header};

use super::error::{ApiError, Code};

/// Largest frame either way, in bytes.
pub const MAX_FRAME: usize = 64 << 10;

/// Whether the request comes from a page of this server's own origin (its `Origin` names the
/// `Host` it was sent to). The console's session cookie opens real-time connections only then.
pub fn is_same_origin(headers: &HeaderMap) -> bool {
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|value| value.to_str().ok())
        .map(|origin| origin.trim_end_matches('/').to_ascii_lowercase());
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .map(str::to_ascii_lowercase);
    match (origin, host) {
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_some_and(|(_, authority)| authority == host),
        _ => false,
    }
}

/// Refuses a browser page whose origin is neither this server's nor allowed. Clients that send
/// no `Origin` (servers, mobile apps, tests) pass.
pub fn check_origin(headers: &HeaderMap, allowed: &[String]) -> Result<(), ApiError> {
    let Some(origin) = headers
        .get(header::ORIGIN)
        .and_then(|value| value.to_str().ok())
    else {
        return Ok(());
    };
    let origin = origin.trim_end_matches('/').to_ascii_lowercase();
    let same_origin = is_same_origin(headers);
    if same_origin
        || allowed
            .iter()
            .any(|allowed| allowed == "*" || *allowed == origin)
    {
        Ok(())
    } else {
        Err(ApiError::new(
            Code::OriginNotAllowed,
            format!(
                "pages from {origin} may not open real-time connections here; add it to DMS_ALLOWED_ORIGINS"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(origin: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("dms.example:3000"));
        if let Some(origin) = origin {
            headers.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        }
        headers
    }

    #[test]
    fn origins_pass_when_absent_same_or_allowed() {
        let allowed = vec!["https://app.example".to_owned()];
        assert!(check_origin(&headers(None), &[]).is_ok());
        assert!(check_origin(&headers(Some("http://dms.example:3000")), &[]).is_ok());
        assert!(check_origin(&headers(Some("https://APP.example/")), &allowed).is_ok());
        assert!(check_origin(&headers(Some("https://evil.example")), &["*".into()]).is_ok());
        let refused = check_origin(&headers(Some("https://evil.example")), &allowed).unwrap_err();
        assert_eq!(refused.code(), Code::OriginNotAllowed);
    }
}
