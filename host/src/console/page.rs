//! What every console page shares: the layout (navigation, the signed-in user, the
//! anti-forgery token), rendering a template into a response, and the error pages.

use askama::Template;
use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::session::Viewer;
use crate::api::error::{ApiError, Code};
use crate::clock::rfc3339;
use crate::state::AppState;
use crate::store::Page;

/// A link of the navigation.
pub(crate) struct Link {
    /// Where it goes.
    pub(crate) href: &'static str,
    /// What it says.
    pub(crate) label: &'static str,
    /// Whether it is the page shown.
    pub(crate) current: bool,
}

/// The console's sections, in navigation order: (path, label, admins only).
const SECTIONS: &[(&str, &str, bool)] = &[
    ("/console/", "Overview", false),
    ("/console/messages", "Messages", false),
    ("/console/dead-letters", "Dead letters", true),
    ("/console/live", "Live", false),
    ("/console/groups", "Groups", false),
    ("/console/schedules", "Schedules", false),
    ("/console/webhook", "Webhook", false),
    ("/console/plugins", "Plugins", true),
    ("/console/hooks", "Hooks & dry run", true),
    ("/console/flow-control", "Flow control", true),
    ("/console/users", "Users", true),
    ("/console/sessions", "Sessions", false),
];

/// The frame of a page: its title, its section, who is signed in, and its scripts.
pub(crate) struct Layout {
    /// The page's title (shown in the tab and as its heading).
    pub(crate) title: String,
    /// The section's path, to mark its link.
    pub(crate) section: &'static str,
    /// The signed-in user's name, and whether they are a tenant admin.
    pub(crate) user: Option<(String, bool)>,
    /// The anti-forgery token for forms and scripts.
    pub(crate) csrf: String,
    /// The page's own scripts, under /console/assets/.
    pub(crate) scripts: &'static [&'static str],
}

impl Layout {
    /// The frame for `viewer` in `section` (a path of [`SECTIONS`]).
    pub(crate) fn new(viewer: &Viewer, section: &'static str, title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            section,
            user: Some((viewer.user.username.clone(), viewer.is_admin())),
            csrf: viewer.csrf.clone(),
            scripts: &[],
        }
    }

    /// The navigation the viewer may follow.
    pub(crate) fn links(&self) -> Vec<Link> {
        let Some((_, admin)) = &self.user else {
            return Vec::new();
        };
        SECTIONS
            .iter()
            .filter(|(_, _, admins_only)| *admin || !admins_only)
            .map(|&(href, label, _)| Link {
                href,
                label,
                current: href == self.section,
            })
            .collect()
    }
}

/// A rendered page, with the console's security headers (set for every console response by
/// [`super::security_headers`]).
pub(crate) fn render(template: &impl Template) -> Response {
    render_with_status(StatusCode::OK, template)
}

/// [`render`] with another status.
pub(crate) fn render_with_status(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(error) => {
            tracing::error!(message = "A console template failed to render.", %error);
            let mut response = (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page failed to render",
            )
                .into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            response
        }
    }
}

/// The page for an error: the problem's title and detail, with its status.
#[derive(Template)]
#[template(path = "error.html")]
pub(crate) struct ErrorPage {
    pub(crate) layout: Layout,
    pub(crate) status: u16,
    pub(crate) detail: String,
    pub(crate) request_id_hint: bool,
}

/// The page for `error` (the cause of a 500 is logged, as for the API).
pub(crate) fn error_page(viewer: Option<&Viewer>, error: ApiError) -> Response {
    let code = error.code();
    let page = ErrorPage {
        layout: frame(viewer, code.title()),
        status: code.status().as_u16(),
        detail: error.detail().to_owned(),
        request_id_hint: code.status().is_server_error(),
    };
    if code.status().is_server_error() {
        tracing::error!(message = "A console page failed.", ?error);
    }
    render_with_status(code.status(), &page)
}

/// The 404 page.
pub(crate) fn not_found(viewer: Option<&Viewer>) -> Response {
    error_page(
        viewer,
        ApiError::new(
            Code::NotFound,
            "There is no such page in your tenant, or you may not see it.",
        ),
    )
}

fn frame(viewer: Option<&Viewer>, title: &str) -> Layout {
    match viewer {
        Some(viewer) => Layout::new(viewer, "", title),
        None => Layout {
            title: title.to_owned(),
            section: "",
            user: None,
            csrf: String::new(),
            scripts: &[],
        },
    }
}

/// A handler's failure: the problem, shown as a page to `viewer`.
pub(crate) struct PageError(pub Option<Viewer>, pub ApiError);

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        if self.1.code() == Code::NotFound {
            return not_found(self.0.as_ref());
        }
        error_page(self.0.as_ref(), self.1)
    }
}

/// Adds the viewer to an error, so its page keeps the navigation.
#[allow(
    clippy::result_large_err,
    reason = "the error is rendered at once as the handler's response, never passed along"
)]
pub(crate) trait ForViewer<T> {
    /// The error as a page for `viewer`.
    #[allow(
        clippy::result_large_err,
        reason = "a page's error is rendered once, at the end of its handler; its size costs nothing"
    )]
    fn for_viewer(self, viewer: &Viewer) -> Result<T, PageError>;
}

impl<T, E: Into<ApiError>> ForViewer<T> for Result<T, E> {
    fn for_viewer(self, viewer: &Viewer) -> Result<T, PageError> {
        self.map_err(|error| PageError(Some(viewer.clone()), error.into()))
    }
}

/// A time for people: `2026-12-05 21:04:05 UTC` (the element's `datetime` keeps RFC 3339).
pub(crate) fn when(ms: u64) -> String {
    let text = rfc3339(ms);
    match text.split_once('T') {
        Some((day, rest)) => format!("{day} {} UTC", rest.get(..8).unwrap_or(rest)),
        None => text,
    }
}

/// A page's query string (its filters, cursor, offset): a malformed one is the error page
/// with a 400 naming what is wrong, never a bare text answer.
pub(crate) struct PageQuery<T>(pub(crate) T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for PageQuery<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(query)) => Ok(Self(query)),
            Err(rejection) => Err(error_page(
                parts.extensions.get::<Viewer>(),
                ApiError::new(
                    Code::InvalidQuery,
                    format!(
                        "This link's query string is not one the console makes: {}. Open the page from its menu.",
                        rejection.body_text()
                    ),
                ),
            )),
        }
    }
}

/// `?offset=` of a page of one of a tenant's short lists (users, groups, schedules, flow
/// limits: its own configuration, not its traffic), which page by offset.
#[derive(Debug, Deserialize)]
pub(crate) struct Paging {
    #[serde(default)]
    pub(crate) offset: u64,
}

impl Paging {
    /// The page of `per_page` rows at this offset.
    pub(crate) fn page(&self, per_page: u32) -> Page {
        Page {
            limit: per_page,
            offset: self.offset,
        }
    }

    /// The previous page's offset, unless this is the first.
    pub(crate) fn previous(&self, per_page: u32) -> Option<u64> {
        (self.offset > 0).then(|| self.offset.saturating_sub(per_page.into()))
    }

    /// The next page's offset after `shown` rows: while fewer than `total` were shown, or
    /// (without a total) when the page was full.
    pub(crate) fn next(&self, shown: u64, total: Option<u64>, per_page: u32) -> Option<u64> {
        let end = self.offset + shown;
        match total {
            Some(total) => (end < total).then_some(end),
            None => (shown == u64::from(per_page)).then_some(end),
        }
    }
}
