//! Extractors that turn bad input into the right problem, never a 500:
//! - [`ApiJson`]: 415 without a JSON content type, 413 over the body limit, 400 for malformed
//!   JSON, 422 naming the field (`/display_name`) for a missing or mistyped one;
//! - [`ApiQuery`]: 400 naming the query parameter;
//! - [`Paged`]: a listing's `limit` and `offset` (400 out of range) and its other parameters;
//! - [`Id`]: an id from the path (404 when malformed, like one that does not exist);
//! - [`Admin`]: a [`Caller`] who is an admin of their tenant (403 otherwise);
//! - [`Caller`]: the authenticated user, from a bearer token (or a console page's session
//!   cookie, see [`cookies`](super::cookies)) whose session is still live, after the per-user
//!   rate limit;
//! - [`ClientIp`]: the client's address, for login rate limits.

use std::net::SocketAddr;
use std::str::FromStr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use utoipa::IntoParams;

use super::cookies;
use super::error::{ApiError, Code};
use super::json;
use crate::auth::jwt::Claims;
use crate::auth::rate_limit::Limit;
use crate::domain::ids::{
    FanOutId, GroupId, MessageId, PluginId, ScheduleId, SessionId, TenantId, UserId,
};
use crate::domain::user::{Role, User};
use crate::state::AppState;
use crate::store::Page;

/// A JSON body, parsed with exact errors.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        JsonBody::from_request(request, state)
            .await?
            .parse()
            .map(ApiJson)
    }
}

/// A JSON body read into a tree once: the handler parses it into its types (or parts of it,
/// as a batch does item by item) and hashes it only when it must (an `Idempotency-Key`).
#[derive(Debug, Clone)]
pub struct JsonBody(pub(super) json::Node);

impl JsonBody {
    /// The body as `T`, with the same field errors as [`parse_json`].
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        from_node(&self.0)
    }

    /// The SHA-256 of the body in canonical form (object keys sorted, no whitespace), so the
    /// same request with other whitespace or key order has the same hash.
    pub fn canonical_hash(&self) -> String {
        use sha2::Digest as _;
        let canonical = serde_json::Value::from(&self.0).to_string();
        hex::encode(sha2::Sha256::digest(canonical.as_bytes()))
    }
}

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        if !is_json(&content_type) {
            let got = if content_type.is_empty() {
                "no content-type".to_owned()
            } else {
                format!("content-type {content_type}")
            };
            return Err(ApiError::new(
                Code::UnsupportedMediaType,
                format!("the body must be JSON (content-type: application/json); got {got}"),
            ));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        Code::PayloadTooLarge,
                        "the request body is larger than the server accepts (max_body_bytes)",
                    )
                } else {
                    ApiError::new(
                        Code::MalformedJson,
                        format!("the body could not be read: {rejection}"),
                    )
                }
            })?;
        read_json(&bytes).map(JsonBody)
    }
}

/// Parses JSON, telling syntax errors (400) from field errors (422, with the field's path).
/// A key given twice in one object, and an array where the type wants an object, are field
/// errors too (see [`json`](super::json)): a body means one thing or is refused.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    from_node(&read_json(bytes)?)
}

/// Reads JSON into a tree: syntax errors are 400, a key given twice is a 422 at its pointer.
fn read_json(bytes: &[u8]) -> Result<json::Node, ApiError> {
    json::read(bytes).map_err(|error| match error {
        json::ReadError::Syntax(error) => ApiError::new(
            Code::MalformedJson,
            format!("the body is not valid JSON: {error}"),
        ),
        json::ReadError::DuplicateKey(pointer) => ApiError::field(
            pointer.clone(),
            format!("{pointer}: this key is given more than once in its object; give it once"),
        ),
    })
}

/// Converts parsed JSON into `T`, with the same field errors as [`parse_json`].
pub fn from_json_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    from_node(&json::Node::from(&value))
}

pub(super) fn from_node<T: DeserializeOwned>(node: &json::Node) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(json::Strict(node)).map_err(|error| {
        let path = error.path().to_string();
        // Errors from a tree carry no line and column: the path says where.
        let message = error.into_inner().to_string();
        let mut field = if path == "." {
            String::new()
        } else {
            // serde_path_to_error writes `plugins[0].extra`; a JSON pointer is `/plugins/0/extra`.
            format!(
                "/{}",
                path.replace('[', ".").replace(']', "").replace('.', "/")
            )
        };
        // A missing field is reported at its parent; name the field itself.
        if let Some(name) = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
        {
            field = format!("{field}/{name}");
        }
        if field.is_empty() {
            field.push('/');
        }
        ApiError::field(field.clone(), format!("{field}: {message}"))
    })
}

/// Query parameters, parsed with the parameter's name in errors.
#[derive(Debug, Clone)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parse_query(parts.uri.query().unwrap_or_default()).map(ApiQuery)
    }
}

/// Parses a query string into `T`, naming the parameter in errors (400).
fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let deserializer =
        serde_urlencoded::Deserializer::new(url::form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let field = error.path().to_string();
        let message = error.into_inner().to_string();
        ApiError::query(field.clone(), format!("query parameter {field}: {message}"))
    })
}

/// The default page size of a listing.
pub const DEFAULT_LIMIT: u32 = 20;
/// The largest page size.
pub const MAX_LIMIT: u32 = 100;
/// The largest offset: the `int64` the document gives `offset`, and what SQL's `OFFSET` takes.
/// (utoipa writes a `u64` as `int64`; the `maximum` of the parameter says it too.)
pub const MAX_OFFSET: u64 = i64::MAX.unsigned_abs();

/// `limit` and `offset` of a listing, as documented (`params(PageParams, …)`).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page size, 1 to 100 (default 20).
    #[serde(default)]
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// Items to skip (default 0; after the cursor, where a listing takes one).
    #[serde(default)]
    #[param(maximum = 9_223_372_036_854_775_807_u64)]
    offset: Option<u64>,
}

impl PageParams {
    fn page(&self) -> Result<Page, ApiError> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::query(
                "limit",
                format!("limit must be between 1 and {MAX_LIMIT}"),
            ));
        }
        let offset = self.offset.unwrap_or(0);
        if offset > MAX_OFFSET {
            return Err(ApiError::query(
                "offset",
                format!("offset must be between 0 and {MAX_OFFSET}"),
            ));
        }
        Ok(Page { limit, offset })
    }
}

/// A listing's query: its page (`limit`, `offset`: checked here, once for every listing) and
/// its own parameters `F` (anything else; unknown ones are refused as `F` says).
#[derive(Debug, Clone)]
pub struct Paged<F> {
    /// The page asked for.
    pub page: Page,
    /// The listing's other parameters.
    pub query: F,
}

impl<S: Send + Sync, F: DeserializeOwned> FromRequestParts<S> for Paged<F> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        let mut paging = url::form_urlencoded::Serializer::new(String::new());
        let mut others = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match name.as_ref() {
                "limit" | "offset" => paging.append_pair(&name, &value),
                _ => others.append_pair(&name, &value),
            };
        }
        let page: PageParams = parse_query(&paging.finish())?;
        let query = parse_query(&others.finish())?;
        Ok(Self {
            page: page.page()?,
            query,
        })
    }
}

/// No parameters besides the page (a listing without filters).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoFilter {}

/// An id from the request path. A malformed id names nothing that can exist, so it is the
/// same 404 as an unknown one ("there is no such user in your tenant").
#[derive(Debug, Clone)]
pub struct Id<T>(pub T);

/// What a path id names, for its 404.
pub trait Named: FromStr {
    /// `user`, `message`, …
    const NAME: &'static str;
}

impl Named for UserId {
    const NAME: &'static str = "user";
}

impl Named for SessionId {
    const NAME: &'static str = "session";
}

impl Named for MessageId {
    const NAME: &'static str = "message";
}

impl Named for PluginId {
    const NAME: &'static str = "plugin";
}

impl Named for GroupId {
    const NAME: &'static str = "group";
}

impl Named for FanOutId {
    const NAME: &'static str = "fan-out";
}

impl Named for ScheduleId {
    const NAME: &'static str = "schedule";
}

impl<S: Send + Sync, T: Named> FromRequestParts<S> for Id<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::not_found(T::NAME))?;
        id.parse().map(Id).map_err(|_| ApiError::not_found(T::NAME))
    }
}

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The user, as stored now (role changes apply at once).
    pub user: User,
    /// The session the token belongs to.
    pub session: SessionId,
}

impl Caller {
    /// The caller's tenant: every query of a handler is scoped by it.
    pub fn tenant(&self) -> &TenantId {
        &self.user.tenant_id
    }

    /// Refuses non-admins.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.user.role == Role::Admin {
            Ok(())
        } else {
            Err(ApiError::new(
                Code::AdminRequired,
                "only an admin of your tenant may do this",
            ))
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = match parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
        {
            Some(header) => header
                .strip_prefix("Bearer ")
                .or_else(|| header.strip_prefix("bearer "))
                .ok_or_else(|| {
                    ApiError::new(
                        Code::InvalidToken,
                        "the Authorization header must be \"Bearer <token>\"",
                    )
                })?
                .trim()
                .to_owned(),
            // A console page: the session cookie, and for a change the anti-forgery header.
            None => {
                let token = cookies::get(&parts.headers, cookies::SESSION).ok_or_else(|| {
                    ApiError::new(
                        Code::Unauthenticated,
                        "this endpoint needs an access token: Authorization: Bearer <token>",
                    )
                })?;
                if cookies::is_unsafe(&parts.method) {
                    let sent = parts
                        .headers
                        .get(cookies::CSRF_HEADER)
                        .and_then(|value| value.to_str().ok());
                    cookies::check_csrf(&parts.headers, sent)?;
                }
                token
            }
        };
        let token = token.as_str();
        let (user, claims) = authenticate(state, token).await?;
        state
            .limits
            .check(Limit::ApiPerUser, user.id.as_str())
            .await
            .map_err(ApiError::rate_limited)?;
        Ok(Self {
            user,
            session: claims.sid,
        })
    }
}

/// A caller who is an admin of their tenant; anyone else is refused (403 `admin_required`)
/// before the handler runs.
#[derive(Debug, Clone)]
pub struct Admin(pub Caller);

impl std::ops::Deref for Admin {
    type Target = Caller;

    fn deref(&self) -> &Caller {
        &self.0
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        caller.require_admin()?;
        Ok(Self(caller))
    }
}

/// The user behind an access token whose session is still live, and the token's claims.
pub async fn authenticate(state: &AppState, token: &str) -> Result<(User, Claims), ApiError> {
    Ok(state.sessions.authenticate(token).await?)
}

/// The client's address: the peer, or the first address of the configured proxy header.
#[derive(Debug, Clone)]
pub struct ClientIp(pub String);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = &state.config.client_ip_header;
        if !header.is_empty()
            && let Some(forwarded) = parts
                .headers
                .get(header.as_str())
                .and_then(|v| v.to_str().ok())
            && let Some(first) = forwarded
                .split(',')
                .next()
                .map(str::trim)
                .filter(|s| !s.is_empty())
        {
            return Ok(Self(first.to_owned()));
        }
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or_else(|| "unknown".to_owned(), |info| info.0.ip().to_string());
        Ok(Self(peer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code, reason = "only parsed")]
    struct Login {
        username: String,
        password: String,
        nested: Option<Nested>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code, reason = "only parsed")]
    struct Nested {
        depth: u8,
    }

    #[test]
    fn json_errors_name_the_field() {
        let error = parse_json::<Login>(br#"{"username": "a"}"#).unwrap_err();
        assert_eq!(error.code(), Code::InvalidField);
        let error = parse_json::<Login>(br#"{"username": "a", "password": 5}"#).unwrap_err();
        assert!(format!("{error:?}").contains("/password"));
        let error =
            parse_json::<Login>(br#"{"username": "a", "password": "b", "nested": {"depth": 300}}"#)
                .unwrap_err();
        assert!(format!("{error:?}").contains("/nested/depth"), "{error:?}");
        let error = parse_json::<Login>(b"{\"username\": ").unwrap_err();
        assert_eq!(error.code(), Code::MalformedJson);
        let error =
            parse_json::<Login>(br#"{"username":"a","password":"b"} trailing"#).unwrap_err();
        assert_eq!(error.code(), Code::MalformedJson);
        let error =
            parse_json::<Login>(br#"{"username":"a","password":"b","username":"c"}"#).unwrap_err();
        assert_eq!(error.code(), Code::InvalidField);
        assert_eq!(error.field_name(), Some("/username"));
        let error = parse_json::<Login>(br#"["a", "b", null]"#).unwrap_err();
        assert_eq!(error.field_name(), Some("/"));
        let error =
            parse_json::<Login>(br#"{"username":"a","password":"b","nested":[1]}"#).unwrap_err();
        assert_eq!(error.field_name(), Some("/nested"));
        // The first bad field of the body is the one named, in the body's order.
        let error = parse_json::<Login>(br#"{"username": 1, "password": 2}"#).unwrap_err();
        assert_eq!(error.field_name(), Some("/username"));
    }

    #[test]
    fn json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("application/json; charset=utf-8"));
        assert!(is_json("application/merge-patch+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json(""));
    }
}
