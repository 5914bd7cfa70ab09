//! Flow control (`/console/flow-control`, tenant admins): the limits per flow-key pattern, and
//! forms to set and remove them through the API (`/flow-control/{key}`).

use askama::Template;
use axum::extract::State;
use axum::response::Response;

use crate::console::page::{ForViewer, Layout, PageError, PageQuery, Paging, render, when};
use crate::console::session::AdminViewer;
use crate::state::AppState;

/// Patterns shown on one page.
const PER_PAGE: u32 = 100;

/// A pattern as a row.
pub(crate) struct LimitRow {
    pub(crate) key: String,
    /// The key percent-encoded for the API's path.
    pub(crate) path: String,
    pub(crate) rate: String,
    pub(crate) parallelism: String,
    pub(crate) ordering: &'static str,
    pub(crate) updated: String,
}

/// `/console/flow-control`.
#[derive(Template)]
#[template(path = "flow_control.html")]
pub(crate) struct FlowControlPage {
    pub(crate) layout: Layout,
    pub(crate) limits: Vec<LimitRow>,
    pub(crate) previous: Option<u64>,
    pub(crate) next: Option<u64>,
}

/// `text` percent-encoded as one path segment (everything but RFC 3986's unreserved bytes).
pub(crate) fn path_segment(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// `GET /console/flow-control`: the tenant's patterns, in pattern order.
pub(crate) async fn list(
    State(app): State<AppState>,
    AdminViewer(viewer): AdminViewer,
    PageQuery(paging): PageQuery<Paging>,
) -> Result<Response, PageError> {
    let page = paging.page(PER_PAGE);
    let limits = app
        .flow_limits
        .list(&viewer.user.tenant_id, page)
        .await
        .for_viewer(&viewer)?;
    let shown = limits.len() as u64;
    Ok(render(&FlowControlPage {
        layout: Layout {
            scripts: &["flow-control.js"],
            ..Layout::new(&viewer, "/console/flow-control", "Flow control")
        },
        limits: limits
            .into_iter()
            .map(|limit| LimitRow {
                path: path_segment(&limit.pattern),
                rate: limit.limits.rate.map_or_else(String::new, |rate| {
                    format!("{} per {} s", rate.count, rate.period_seconds)
                }),
                parallelism: limit
                    .limits
                    .parallelism
                    .map_or_else(String::new, |parallelism| parallelism.to_string()),
                ordering: if limit.limits.fifo { "fifo" } else { "any" },
                updated: when(limit.updated_at_ms),
                key: limit.pattern,
            })
            .collect(),
        previous: paging.previous(PER_PAGE),
        next: paging.next(shown, None, PER_PAGE),
    }))
}

#[cfg(test)]
mod tests {
    use super::path_segment;

    #[test]
    fn a_pattern_is_one_path_segment() {
        assert_eq!(
            path_segment("https://api.example.com/*"),
            "https%3A%2F%2Fapi.example.com%2F%2A"
        );
        assert_eq!(path_segment("tenant-a_b.c~"), "tenant-a_b.c~");
        assert_eq!(path_segment("é"), "%C3%A9");
    }
}
