//! Every error the API can answer, in one table, and the one mapping to
//! `application/problem+json` (RFC 9457).
//!
//! A problem body carries `type` (`/problems/<code>`, served by the API itself), `title`,
//! `status`, `detail` (a sentence a person can act on), the stable `code`, the `request_id`
//! (also in the `x-request-id` header) and, for field errors, the `field`. Internal causes are
//! never shown: the client gets a generic 500 with the request id, and [`problem_details`]
//! logs the cause once, with that id.

use std::collections::BTreeMap;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::store::StoreError;

macro_rules! codes {
    ($($variant:ident = ($code:literal, $status:literal, $title:literal, $description:literal);)*) => {
        /// A stable error code. Clients match on it; its status and title never change.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Code {
            $(#[doc = $description] $variant,)*
        }

        impl Code {
            /// Every code, in table order.
            pub const ALL: &'static [Code] = &[$(Code::$variant),*];

            /// The code as clients see it.
            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $code,)* }
            }

            /// Its HTTP status.
            pub fn status(self) -> StatusCode {
                let status = match self { $(Code::$variant => $status,)* };
                StatusCode::from_u16(status).expect("valid status in the table")
            }

            /// Its short title.
            pub fn title(self) -> &'static str {
                match self { $(Code::$variant => $title,)* }
            }

            /// What it means and what to do about it.
            pub fn description(self) -> &'static str {
                match self { $(Code::$variant => $description,)* }
            }

            /// The code named `text`.
            pub fn parse(text: &str) -> Option<Code> {
                Self::ALL.iter().copied().find(|code| code.as_str() == text)
            }
        }
    };
}

codes! {
    MalformedJson = ("malformed_json", 400, "Malformed JSON", "The request body is not valid JSON.");
    InvalidQuery = ("invalid_query", 400, "Invalid query parameter", "A query parameter is malformed or out of range; `field` names it.");
    Unauthenticated = ("unauthenticated", 401, "Authentication required", "Send an access token: `Authorization: Bearer <token>` from POST /auth/login.");
    InvalidCredentials = ("invalid_credentials", 401, "Invalid credentials", "The username or the password is wrong.");
    InvalidToken = ("invalid_token", 401, "Invalid token", "The access token is malformed, not signed by this server, or for another audience.");
    TokenExpired = ("token_expired", 401, "Token expired", "The access token has expired; get a new one with POST /auth/refresh.");
    SessionEnded = ("session_ended", 401, "Session ended", "The token's session was logged out or revoked, or its user deleted; log in again.");
    InvalidRefreshToken = ("invalid_refresh_token", 401, "Invalid refresh token", "The refresh token is unknown or its session has ended; log in again.");
    RefreshTokenReused = ("refresh_token_reused", 401, "Refresh token reused", "This refresh token was used before, so it may have been stolen: its whole session is now revoked. Log in again.");
    WrongPassword = ("wrong_password", 403, "Wrong password", "The current password does not match.");
    Forbidden = ("forbidden", 403, "Forbidden", "You can see this resource but may not do this to it.");
    OriginNotAllowed = ("origin_not_allowed", 403, "Origin not allowed", "A browser page of this origin may not open real-time connections; the operator lists allowed origins in DMS_ALLOWED_ORIGINS.");
    CsrfRejected = ("csrf_rejected", 403, "Cross-site request refused", "A change sent with the console's session cookie must carry the `x-dms-csrf` header with the `dms_csrf` cookie's value (a console page does this); reload the console and try again.");
    AdminRequired = ("admin_required", 403, "Admin role required", "Only an admin of the tenant may do this.");
    NotFound = ("not_found", 404, "Not found", "There is no such resource in your tenant.");
    RouteNotFound = ("route_not_found", 404, "No such route", "No endpoint has this path; see /openapi.json.");
    MethodNotAllowed = ("method_not_allowed", 405, "Method not allowed", "The endpoint exists but not with this method; the `allow` header lists the methods it takes.");
    RequestTimeout = ("request_timeout", 408, "Request timeout", "The request body did not arrive within DMS_HTTP_BODY_TIMEOUT_SECONDS of the server starting to read it; send it faster, or ask the operator to allow more time.");
    Conflict = ("conflict", 409, "Conflict", "The request conflicts with the current state: a name is taken, or the action is not possible now.");
    PluginQuotaExceeded = ("plugin_quota_exceeded", 409, "Plugin quota exceeded", "Your tenant's plugins fill the quota the operator set (DMS_PLUGIN_MAX_PER_TENANT plugins, DMS_PLUGIN_MAX_TENANT_MB of components); `quota` says which (`plugins` or `bytes`), `limit` the maximum. Delete plugins no hook uses (DELETE /plugins/{id}), then upload again.");
    PayloadTooLarge = ("payload_too_large", 413, "Payload too large", "The request body is larger than the server accepts.");
    ComponentTooLarge = ("component_too_large", 413, "Component too large", "The plugin component is larger than the operator allows (DMS_PLUGIN_MAX_UPLOAD_MB); build it smaller (release profile, LTO, strip) or ask the operator.");
    UnsupportedMediaType = ("unsupported_media_type", 415, "Unsupported media type", "Send the body as JSON with `content-type: application/json` (POST /plugins takes `application/wasm`).");
    InvalidField = ("invalid_field", 422, "Invalid field", "A field is missing, has the wrong type, or has a value that is not allowed; `field` names it.");
    NotAComponent = ("not_a_component", 422, "Not a WebAssembly component", "The upload is not WebAssembly: send the `.wasm` file a wasm32-wasip2 build produces.");
    CoreModule = ("core_module", 422, "Core module, not a component", "The upload is a core WebAssembly module; build for wasm32-wasip2 or wrap it with `wasm-tools component new`.");
    UnknownWorld = ("unknown_world", 422, "No DMS world", "The component exports none (or several) of the DMS worlds: validator (`validate`), delay-policy (`plan`, `retry`) or channel (`deliver`); see wit/dms-plugin.wit.");
    ImportNotGranted = ("import_not_granted", 422, "Import not granted", "The component imports an interface the host does not grant to its world; `import` names it. Plugins get only the dms:plugin imports and a locked-down WASI.");
    InvalidComponent = ("invalid_component", 422, "Invalid component", "The component does not validate, does not compile, or does not match its world's types in dms:plugin@0.1.0.");
    Rejected = ("rejected", 422, "Rejected by policy", "A policy plugin of your tenant refused the message; `reason_code` is the plugin's code and `plugin` its name.");
    IdempotencyKeyReused = ("idempotency_key_reused", 422, "Idempotency key reused", "This Idempotency-Key came with a different request body in the last 24 hours; use a new key for a new request.");
    WebSocketRequired = ("websocket_required", 426, "WebSocket required", "This endpoint takes WebSocket connections: GET with `Upgrade: websocket`.");
    RateLimited = ("rate_limited", 429, "Too many requests", "Slow down: retry after the number of seconds in the `retry-after` header.");
    TooManyConnections = ("too_many_connections", 429, "Too many connections", "Your address holds as many connections as the server allows from one address (DMS_MAX_CONNECTIONS_PER_ADDRESS), or as many real-time connections waiting to authenticate (DMS_WS_MAX_UNAUTHENTICATED_PER_ADDRESS): reuse or close some, then retry after the `retry-after` seconds.");
    Internal = ("internal_error", 500, "Internal error", "The server failed; the cause is logged with the request id. Quote it when reporting the problem.");
    ContentUnreadable = ("content_unreadable", 500, "Content unreadable", "Stored content could not be decrypted: its encryption key is missing from DMS_ENCRYPTION_KEYS, or the stored value was moved or altered.");
    Unavailable = ("service_unavailable", 503, "Service unavailable", "A backing service (database or Redis) is unavailable; retry shortly.");
    ServerBusy = ("server_busy", 503, "Server busy", "The server holds as many connections as it allows (DMS_MAX_CONNECTIONS); retry after the `retry-after` seconds, or on another node.");
}

/// An API error: a code from the table and the details of this occurrence. Boxed, so a
/// `Result<_, ApiError>` stays small on the happy path.
#[derive(Debug, Clone)]
pub struct ApiError(Box<Inner>);

#[derive(Debug, Clone)]
struct Inner {
    code: Code,
    detail: String,
    field: Option<String>,
    /// Extra members of the problem body.
    extra: BTreeMap<String, serde_json::Value>,
    retry_after_seconds: Option<u64>,
    allow: Option<String>,
    /// The cause, for the log only.
    internal: Option<String>,
}

impl ApiError {
    /// An error with `code` and a `detail` sentence.
    pub fn new(code: Code, detail: impl Into<String>) -> Self {
        Self(Box::new(Inner {
            code,
            detail: detail.into(),
            field: None,
            extra: BTreeMap::new(),
            retry_after_seconds: None,
            allow: None,
            internal: None,
        }))
    }

    /// A 422 about one field (a JSON pointer such as `/recipient_id`, or a name).
    pub fn field(field: impl Into<String>, detail: impl Into<String>) -> Self {
        let mut error = Self::new(Code::InvalidField, detail);
        error.0.field = Some(field.into());
        error
    }

    /// A 400 about one query parameter.
    pub fn query(field: impl Into<String>, detail: impl Into<String>) -> Self {
        let mut error = Self::new(Code::InvalidQuery, detail);
        error.0.field = Some(field.into());
        error
    }

    /// A 404 that reveals nothing about whether the resource exists elsewhere.
    pub fn not_found(what: &str) -> Self {
        Self::new(
            Code::NotFound,
            format!("there is no such {what} in your tenant"),
        )
    }

    /// A 429 with the wait in seconds (at least 1).
    pub fn rate_limited(wait: std::time::Duration) -> Self {
        let seconds = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
        let mut error = Self::new(
            Code::RateLimited,
            format!("too many requests; retry in {seconds} s"),
        );
        error.0.retry_after_seconds = Some(seconds);
        error
    }

    /// Tells the client to retry after `seconds` (the `retry-after` header).
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.0.retry_after_seconds = Some(seconds);
        self
    }

    /// A 405 listing the allowed methods.
    pub fn method_not_allowed(allow: Option<String>) -> Self {
        let mut error = Self::new(
            Code::MethodNotAllowed,
            "this endpoint does not take this method",
        );
        error.0.allow = allow;
        error
    }

    /// A 500 whose `cause` is logged and not shown.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self::new(
            Code::Internal,
            "the server failed to handle the request; it has been logged",
        )
        .logging(cause)
    }

    /// A 503 about a backing service; the cause is logged.
    pub fn unavailable(service: &str, cause: impl std::fmt::Display) -> Self {
        Self::new(
            Code::Unavailable,
            format!("the {service} is unavailable; retry shortly"),
        )
        .logging(cause)
    }

    /// Logs `cause` (once, with the request id) when this error is answered.
    pub fn logging(mut self, cause: impl std::fmt::Display) -> Self {
        self.0.internal = Some(cause.to_string());
        self
    }

    /// Adds a member to the problem body.
    pub fn with(mut self, name: &str, value: impl Into<serde_json::Value>) -> Self {
        self.0.extra.insert(name.to_owned(), value.into());
        self
    }

    /// The code.
    pub fn code(&self) -> Code {
        self.0.code
    }

    /// The detail sentence.
    pub fn detail(&self) -> &str {
        &self.0.detail
    }

    /// The seconds to wait before retrying, when it says.
    pub fn retry_after_seconds(&self) -> Option<u64> {
        self.0.retry_after_seconds
    }

    /// The field it is about, for field errors.
    pub fn field_name(&self) -> Option<&str> {
        self.0.field.as_deref()
    }

    /// The problem body without a request id: for answers written before any request was
    /// read (a connection over a cap).
    pub fn problem(&self) -> Problem {
        self.body(None)
    }

    fn body(&self, request_id: Option<&str>) -> Problem {
        let problem = &self.0;
        Problem {
            r#type: format!("/problems/{}", problem.code.as_str()),
            title: problem.code.title(),
            status: problem.code.status().as_u16(),
            detail: problem.detail.clone(),
            code: problem.code.as_str(),
            field: problem.field.clone(),
            extra: problem.extra.clone(),
            request_id: request_id.map(str::to_owned),
        }
    }
}

/// An RFC 9457 problem: the body of every error answer (`application/problem+json`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// `/problems/<code>`: `GET` it for what the code means.
    #[schema(example = "/problems/not_found")]
    r#type: String,
    /// The code's short title; it never changes for a code.
    #[schema(example = "Not found")]
    title: &'static str,
    /// The HTTP status.
    #[schema(example = 404)]
    status: u16,
    /// What went wrong this time, in a sentence a person can act on.
    #[schema(example = "there is no such message in your tenant")]
    detail: String,
    /// The stable error code clients match on (the table is in `GET /problems/{code}`).
    #[schema(example = "not_found")]
    code: &'static str,
    /// For `invalid_field` and `invalid_query`: the field (a JSON pointer such as
    /// `/recipient_id`) or the query parameter.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    field: Option<String>,
    /// Some codes add members: `reason_code` and `plugin` (`rejected`), `message_status`
    /// (`conflict` on a message), `hooks` (`conflict` on a bound plugin), `size` and `limit`
    /// (`component_too_large`), `import` and `world` (`import_not_granted`).
    #[serde(flatten)]
    extra: BTreeMap<String, serde_json::Value>,
    /// The request id, also in the `x-request-id` header; quote it when reporting a problem.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    request_id: Option<String>,
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        Self::from(&error)
    }
}

impl From<&StoreError> for ApiError {
    fn from(error: &StoreError) -> Self {
        match error {
            StoreError::Conflict(detail) => Self::new(Code::Conflict, detail.clone()),
            StoreError::Unavailable(cause) => Self::unavailable("database", cause),
            // Input validation should have caught it; still the client's data, not a fault.
            StoreError::Refused(detail) => Self::field(
                "/",
                format!("a value of the request cannot be stored: {detail}"),
            )
            .logging(format!("the database refused a request's data: {detail}")),
            StoreError::Sealed { record, source } => Self::new(
                Code::ContentUnreadable,
                format!("the stored content of {record} cannot be decrypted: {source}"),
            )
            .logging(format!("{record}: {source}")),
            other => Self::internal(other),
        }
    }
}

impl From<crate::use_cases::messages::Error> for ApiError {
    fn from(error: crate::use_cases::messages::Error) -> Self {
        Self::from(&error)
    }
}

/// The problem of a message use case's error (by reference: a batch answers many of them).
impl From<&crate::use_cases::messages::Error> for ApiError {
    fn from(error: &crate::use_cases::messages::Error) -> Self {
        use crate::use_cases::messages::Error;
        match error {
            Error::NotFound => Self::not_found("message"),
            Error::Missing(what) => Self::not_found(what),
            Error::AdminRequired => Self::new(Code::AdminRequired, error.to_string()),
            Error::Forbidden(reason) => Self::new(Code::Forbidden, *reason),
            Error::Invalid { field, reason } => {
                Self::field(field.to_string(), format!("{field}: {reason}"))
            }
            Error::Rejected(rejection) => Self::new(Code::Rejected, rejection.reason.clone())
                .with("reason_code", rejection.code.clone())
                .with("plugin", rejection.plugin.clone()),
            Error::NotPending(status) => Self::new(
                Code::Conflict,
                format!("the message is {status}; it can no longer be changed this way"),
            )
            .with("message_status", status.as_str()),
            Error::IdempotencyMismatch => Self::new(Code::IdempotencyKeyReused, error.to_string()),
            Error::Store(store) => store.into(),
        }
    }
}

impl From<crate::use_cases::flow::Error> for ApiError {
    fn from(error: crate::use_cases::flow::Error) -> Self {
        use crate::use_cases::flow::Error;
        match error {
            Error::NotFound => Self::not_found("flow-control key"),
            Error::Invalid { field, reason } => {
                Self::field(field.to_owned(), format!("{field}: {reason}"))
            }
            Error::Store(store) => store.into(),
        }
    }
}

impl From<crate::use_cases::groups::Error> for ApiError {
    fn from(error: crate::use_cases::groups::Error) -> Self {
        use crate::use_cases::groups::Error;
        match error {
            Error::NotFound(what) => Self::not_found(what),
            Error::Invalid { field, reason } => {
                Self::field(field.to_string(), format!("{field}: {reason}"))
            }
            Error::TooManyMembers {
                ref field, limit, ..
            } => Self::field(field.to_string(), error.to_string()).with("limit", limit),
            Error::Store(store) => store.into(),
        }
    }
}

impl From<crate::use_cases::schedules::Error> for ApiError {
    fn from(error: crate::use_cases::schedules::Error) -> Self {
        use crate::use_cases::schedules::Error;
        match error {
            Error::NotFound => Self::not_found("schedule"),
            Error::Invalid { field, reason } => {
                Self::field(field.to_string(), format!("{field}: {reason}"))
            }
            Error::Conflict(detail) => Self::new(Code::Conflict, detail),
            Error::Message(error) => error.into(),
            Error::Store(store) => store.into(),
        }
    }
}

impl From<crate::use_cases::policies::DryRunError> for ApiError {
    fn from(error: crate::use_cases::policies::DryRunError) -> Self {
        use crate::use_cases::policies::DryRunError;
        match error {
            DryRunError::Binding(error) => error.into(),
            DryRunError::Message(error) => error.into(),
        }
    }
}

impl From<crate::use_cases::accounts::Error> for ApiError {
    fn from(error: crate::use_cases::accounts::Error) -> Self {
        use crate::use_cases::accounts::Error;
        match error {
            Error::Invalid { field, reason } => Self::field(field.to_string(), reason),
            Error::NotFound(what) => Self::not_found(what),
            Error::Conflict(detail) => Self::new(Code::Conflict, detail),
            Error::WrongPassword => Self::new(Code::WrongPassword, error.to_string()),
            Error::InvalidCredentials => Self::new(Code::InvalidCredentials, error.to_string()),
            Error::RateLimited(wait) => Self::rate_limited(wait),
            Error::TokenExpired(detail) => Self::new(Code::TokenExpired, detail),
            Error::InvalidToken(detail) => Self::new(Code::InvalidToken, detail),
            Error::SessionEnded(detail) => Self::new(Code::SessionEnded, detail),
            Error::RefreshTokenReused => Self::new(Code::RefreshTokenReused, error.to_string()),
            Error::InvalidRefreshToken => Self::new(Code::InvalidRefreshToken, error.to_string()),
            Error::Hash(cause) => Self::internal(cause),
            Error::Store(store) => store.into(),
        }
    }
}

impl From<crate::policies::ManageError> for ApiError {
    fn from(error: crate::policies::ManageError) -> Self {
        use crate::policies::ManageError;
        use crate::sandbox::LoadError;
        match error {
            ManageError::Load(load) => {
                let detail = load.to_string();
                match load {
                    LoadError::TooLarge { size, limit } => {
                        Self::new(Code::ComponentTooLarge, detail)
                            .with("size", size)
                            .with("limit", limit)
                    }
                    LoadError::Empty | LoadError::NotWasm | LoadError::UnknownBuiltin(_) => {
                        Self::new(Code::NotAComponent, detail)
                    }
                    LoadError::CoreModule => Self::new(Code::CoreModule, detail),
                    LoadError::UnknownWorld { .. } | LoadError::AmbiguousWorld(_) => {
                        Self::new(Code::UnknownWorld, detail)
                    }
                    LoadError::ForbiddenImport { import, world } => {
                        Self::new(Code::ImportNotGranted, detail)
                            .with("import", import)
                            .with("world", world.as_str())
                    }
                    LoadError::Invalid(_) | LoadError::Incompatible { .. } => {
                        Self::new(Code::InvalidComponent, detail)
                    }
                }
            }
            ManageError::Quota(exceeded) => {
                use crate::domain::plugin::QuotaExceeded;
                let error = Self::new(Code::PluginQuotaExceeded, exceeded.to_string());
                match exceeded {
                    QuotaExceeded::Plugins { limit } => {
                        error.with("quota", "plugins").with("limit", limit)
                    }
                    QuotaExceeded::Bytes { limit, used, size } => error
                        .with("quota", "bytes")
                        .with("limit", limit)
                        .with("used", used)
                        .with("size", size),
                }
            }
            ManageError::NotFound => Self::not_found("plugin"),
            ManageError::Invalid { field, reason } => {
                Self::field(field.clone(), format!("{field}: {reason}"))
            }
            ManageError::Bound(ref hooks) => {
                let hooks = hooks.clone();
                Self::new(Code::Conflict, error.to_string()).with("hooks", hooks)
            }
            ManageError::Store(store) => store.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.0.code.status(), axum::Json(self.body(None))).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(seconds) = self.0.retry_after_seconds {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(allow) = self
            .0
            .allow
            .as_deref()
            .and_then(|allow| HeaderValue::from_str(allow).ok())
        {
            headers.insert(header::ALLOW, allow);
        }
        if matches!(
            self.0.code,
            Code::Unauthenticated | Code::InvalidToken | Code::TokenExpired | Code::SessionEnded
        ) {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response.extensions_mut().insert(self);
        response
    }
}

/// Middleware: adds the request id to problem bodies and logs internal causes, once.
pub async fn problem_details(request: Request, next: Next) -> Response {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let mut response = next.run(request).await;
    if let Some(error) = response.extensions_mut().remove::<ApiError>() {
        if let Some(cause) = &error.0.internal {
            tracing::error!(
                message = "Request failed.",
                request_id = request_id.as_deref().unwrap_or("-"),
                %method,
                path,
                code = error.0.code.as_str(),
                error = cause.as_str(),
            );
        }
        let body = serde_json::to_vec(&error.body(request_id.as_deref())).expect("JSON");
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        *response.body_mut() = axum::body::Body::from(body);
    }
    response
}

/// What a problem type means: `GET /problems/{code}`.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct ProblemType {
    /// The code, as in a problem's `code`.
    #[schema(example = "not_found")]
    code: &'static str,
    /// The HTTP status it comes with.
    #[schema(example = 404)]
    status: u16,
    /// Its short title.
    #[schema(example = "Not found")]
    title: &'static str,
    /// What it means and what to do about it.
    description: &'static str,
}

/// `GET /problems/{code}`: what a problem `type` means.
#[utoipa::path(
    get,
    path = "/problems/{code}",
    tag = "meta",
    summary = "What a problem type means",
    params(("code" = String, Path, description = "An error code, as in a problem's `code`.", example = "not_found")),
    responses(
        (status = 200, description = "The code's status, title and meaning.", body = ProblemType),
        (status = 404, description = "`not_found`: there is no such code.", body = super::openapi::Problem, content_type = super::openapi::PROBLEM),
    ),
)]
pub async fn describe(axum::extract::Path(code): axum::extract::Path<String>) -> Response {
    match Code::parse(&code) {
        Some(code) => axum::Json(ProblemType {
            code: code.as_str(),
            status: code.status().as_u16(),
            title: code.title(),
            description: code.description(),
        })
        .into_response(),
        None => ApiError::new(Code::NotFound, format!("there is no problem type {code:?}"))
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for code in Code::ALL {
            assert!(seen.insert(code.as_str()), "duplicate {}", code.as_str());
            assert!(
                code.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_')
            );
            assert!(code.description().ends_with('.'));
        }
    }
}
