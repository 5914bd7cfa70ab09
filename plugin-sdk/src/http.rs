//! HTTP requests performed by the host, for channel plugins.
//!
//! The host sends the request itself: only to hosts on the binding's allow-list, never to
//! loopback, private, link-local or cloud-metadata addresses, without following redirects, and
//! with a timeout. A validator or delay policy that uses this module is refused at upload,
//! because only channels are granted the import.

pub use crate::channel::dms::plugin::channel_host::{
    HttpError as Error, HttpRequest as Request, HttpResponse as Response,
};

/// Sends `request` and returns the response, whatever its status.
pub fn send(request: &Request) -> Result<Response, Error> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::channel::dms::plugin::channel_host::http_send(request)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::testing::with(|host| {
            host.http_requests.push(request.clone());
            host.http_responses.pop_front().unwrap_or_else(|| {
                Err(Error::Connection(
                    "the fake host has no response queued".to_owned(),
                ))
            })
        })
    }
}

impl Request {
    /// A `POST` request to `url` with an empty body and no headers.
    pub fn post(url: impl Into<String>) -> Self {
        Self {
            method: "POST".to_owned(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout_ms: None,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets the total timeout; the host clamps it to its own maximum.
    pub fn timeout_ms(mut self, timeout_ms: u32) -> Self {
        self.timeout_ms = Some(timeout_ms);
        self
    }

    /// The value of the first header called `name` (case-insensitive).
    pub fn header_value(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

impl Response {
    /// A response with `status`, no headers and an empty body (handy in tests).
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            body_truncated: false,
        }
    }

    /// Adds a header (handy in tests).
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The value of the first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}
