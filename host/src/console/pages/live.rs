//! The live feed (`/console/live`): the signed-in user's real-time events over `/ws` (which
//! takes the console's cookie from a page of the same origin), shown as they arrive; after a
//! reconnect the page's script resumes from the last cursor it saw (`?cursor=`), so nothing
//! is missed and nothing shown twice.

use askama::Template;
use axum::response::Response;

use crate::console::page::{Layout, render};
use crate::console::session::Viewer;

/// `/console/live`.
#[derive(Template)]
#[template(path = "live.html")]
pub(crate) struct LivePage {
    pub(crate) layout: Layout,
}

/// `GET /console/live`.
pub(crate) async fn page(viewer: Viewer) -> Response {
    render(&LivePage {
        layout: Layout {
            scripts: &["live.js"],
            ..Layout::new(&viewer, "/console/live", "Live")
        },
    })
}
