//! The request-body limits that act around the handlers: a declared `Content-Length` over the
//! limit is refused before any of the body is read (a client declaring 100 MB and sending
//! nothing would otherwise hold the request open), and a body that did not arrive within
//! `DMS_HTTP_BODY_TIMEOUT_SECONDS` (the connection cut it off, see
//! [`BodyDeadline`](crate::connections::BodyDeadline)) is answered 408, whatever reading the
//! cut-off body led the handler to answer.

use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, Code};
use crate::connections::BodyDeadline;

/// The body limits: `max_body_bytes`, and the limits of the routes with their own
/// `DefaultBodyLimit` in `router`: `POST /messages/batch` and `POST /plugins` (uploads).
#[derive(Debug, Clone, Copy)]
pub(super) struct BodyLimits {
    pub(super) max_body_bytes: usize,
    pub(super) max_batch_bytes: usize,
    pub(super) max_upload_bytes: usize,
}

impl BodyLimits {
    /// The 413 for a request declaring more than its route accepts.
    fn refuse_declared(&self, request: &Request) -> Option<ApiError> {
        let declared: u64 = request
            .headers()
            .get(header::CONTENT_LENGTH)?
            .to_str()
            .ok()?
            .trim()
            .parse()
            .ok()?;
        if request.method() == Method::POST && request.uri().path() == "/plugins" {
            let limit = self.max_upload_bytes;
            return (declared > limit as u64).then(|| {
                ApiError::new(
                    Code::ComponentTooLarge,
                    format!(
                        "the request declares a component of {declared} bytes, over the limit of {limit} bytes"
                    ),
                )
                .with("size", declared)
                .with("limit", limit)
            });
        }
        if request.method() == Method::POST && request.uri().path() == "/messages/batch" {
            return (declared > self.max_batch_bytes as u64)
                .then(|| batch_too_large(self.max_batch_bytes));
        }
        // The same answer as for a body that turns out too large while it is read.
        (declared > self.max_body_bytes as u64).then(|| {
            ApiError::new(
                Code::PayloadTooLarge,
                "the request body is larger than the server accepts (max_body_bytes)",
            )
        })
    }
}

/// The 413 for a batch body over its limit (`DMS_MAX_BATCH_BODY_BYTES`).
pub(super) fn batch_too_large(limit: usize) -> ApiError {
    ApiError::new(
        Code::PayloadTooLarge,
        format!(
            "the batch is larger than the server accepts: at most {limit} bytes (DMS_MAX_BATCH_BODY_BYTES); send fewer messages per batch"
        ),
    )
    .with("limit", limit)
}

/// Middleware: see the module docs.
pub(super) async fn limit(
    State(limits): State<BodyLimits>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(refused) = limits.refuse_declared(&request) {
        // The body stays unread, so the connection cannot carry another request: say so, or
        // a client reusing it would find it closed under its next request.
        let mut response = refused.into_response();
        response.headers_mut().insert(
            header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
        return response;
    }
    let deadline = request.extensions().get::<BodyDeadline>().cloned();
    let response = next.run(request).await;
    match deadline {
        Some(deadline) if deadline.expired() => ApiError::new(
            Code::RequestTimeout,
            format!(
                "the request body did not arrive within {} s of the server reading it (DMS_HTTP_BODY_TIMEOUT_SECONDS)",
                deadline.timeout.as_secs()
            ),
        )
        .into_response(),
        _ => response,
    }
}
