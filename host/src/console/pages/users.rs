//! Users of the tenant (admins) and the viewer's own sessions.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;

use crate::console::page::{
    ForViewer, Layout, PageError, PageQuery, Paging, not_found, render, when,
};
use crate::console::session::{AdminViewer, Viewer};
use crate::domain::ids::UserId;
use crate::domain::user::{Role, Session, User};
use crate::state::AppState;

/// Users shown on one page.
const PER_PAGE: u32 = 50;

/// A user as a row.
pub(crate) struct UserRow {
    pub(crate) id: String,
    pub(crate) username: String,
    pub(crate) display_name: String,
    pub(crate) admin: bool,
    pub(crate) created: String,
    pub(crate) created_rfc3339: String,
    pub(crate) is_viewer: bool,
}

impl UserRow {
    fn new(user: User, viewer: &Viewer) -> Self {
        Self {
            is_viewer: user.id == viewer.user.id,
            id: user.id.to_string(),
            username: user.username,
            display_name: user.display_name.unwrap_or_default(),
            admin: user.role == Role::Admin,
            created: when(user.created_at_ms),
            created_rfc3339: crate::clock::rfc3339(user.created_at_ms),
        }
    }
}

/// `/console/users`.
#[derive(Template)]
#[template(path = "users.html")]
pub(crate) struct UsersPage {
    pub(crate) layout: Layout,
    pub(crate) users: Vec<UserRow>,
    pub(crate) total: u64,
    pub(crate) previous: Option<u64>,
    pub(crate) next: Option<u64>,
}

/// `GET /console/users`: the tenant's users, fifty at a time, and a form to add one.
pub(crate) async fn list(
    State(app): State<AppState>,
    AdminViewer(viewer): AdminViewer,
    PageQuery(paging): PageQuery<Paging>,
) -> Result<Response, PageError> {
    let page = paging.page(PER_PAGE);
    let (users, total) = app
        .accounts
        .users(&viewer.user.tenant_id, page)
        .await
        .for_viewer(&viewer)?;
    let shown = users.len() as u64;
    Ok(render(&UsersPage {
        layout: Layout::new(&viewer, "/console/users", "Users"),
        users: users
            .into_iter()
            .map(|user| UserRow::new(user, &viewer))
            .collect(),
        total,
        previous: paging.previous(PER_PAGE),
        next: paging.next(shown, Some(total), PER_PAGE),
    }))
}

/// A session as a row.
pub(crate) struct SessionRow {
    pub(crate) id: String,
    pub(crate) current: bool,
    pub(crate) started: String,
    pub(crate) last_used: String,
    pub(crate) expires: String,
    pub(crate) user_agent: String,
    pub(crate) ip: String,
}

impl SessionRow {
    fn new(session: Session, viewer: &Viewer) -> Self {
        Self {
            current: session.id == viewer.session,
            id: session.id.to_string(),
            started: when(session.created_at_ms),
            last_used: when(session.last_used_at_ms),
            expires: when(session.expires_at_ms),
            user_agent: session.user_agent.unwrap_or_default(),
            ip: session.ip.unwrap_or_default(),
        }
    }
}

/// `/console/sessions`.
#[derive(Template)]
#[template(path = "sessions.html")]
pub(crate) struct SessionsPage {
    pub(crate) layout: Layout,
    pub(crate) sessions: Vec<SessionRow>,
    /// Where the API ends one of them.
    pub(crate) end_path: String,
}

/// `GET /console/sessions`: the viewer's live sessions (console and API alike).
pub(crate) async fn sessions(
    State(app): State<AppState>,
    viewer: Viewer,
) -> Result<Response, PageError> {
    let sessions = app.sessions.list(&viewer.user).await.for_viewer(&viewer)?;
    Ok(render(&SessionsPage {
        layout: Layout::new(&viewer, "/console/sessions", "Your sessions"),
        sessions: sessions
            .into_iter()
            .map(|session| SessionRow::new(session, &viewer))
            .collect(),
        end_path: "/auth/sessions".into(),
    }))
}

/// `/console/users/{id}`.
#[derive(Template)]
#[template(path = "user.html")]
pub(crate) struct UserPage {
    pub(crate) layout: Layout,
    pub(crate) user: UserRow,
    pub(crate) sessions: Vec<SessionRow>,
    /// Where the API ends one of them.
    pub(crate) end_path: String,
}

/// `GET /console/users/{id}` (admins): a user of the tenant and their live sessions, each of
/// which the admin may end.
pub(crate) async fn user(
    State(app): State<AppState>,
    AdminViewer(viewer): AdminViewer,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let Ok(id) = id.parse::<UserId>() else {
        return Ok(not_found(Some(&viewer)));
    };
    let user = app
        .accounts
        .user(&viewer.user.tenant_id, &id)
        .await
        .for_viewer(&viewer)?;
    let sessions = app
        .sessions
        .list_of(&viewer.user, &id)
        .await
        .for_viewer(&viewer)?;
    Ok(render(&UserPage {
        layout: Layout::new(&viewer, "/console/users", format!("User {}", user.username)),
        end_path: format!("/users/{}/sessions", user.id),
        user: UserRow::new(user, &viewer),
        sessions: sessions
            .into_iter()
            .map(|session| SessionRow::new(session, &viewer))
            .collect(),
    }))
}
