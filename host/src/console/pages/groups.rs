//! Groups of the tenant (`/console/groups`) and a group's members (`/console/groups/{id}`).
//! Every user sees them (anyone may send to a group); admins also get the forms that change
//! them, which call the API (`/groups`).

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;

use crate::console::page::{ForViewer, Layout, PageError, PageQuery, Paging, render, when};
use crate::console::session::Viewer;
use crate::domain::ids::GroupId;
use crate::state::AppState;
use crate::store::Page;

/// Rows shown on one page.
const PER_PAGE: u32 = 50;

/// Users offered as suggestions in the add-member form.
const SUGGESTED: u32 = 200;

/// A group as a row.
pub(crate) struct GroupRow {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) members: u64,
    pub(crate) created: String,
}

/// `/console/groups`.
#[derive(Template)]
#[template(path = "groups.html")]
pub(crate) struct GroupsPage {
    pub(crate) layout: Layout,
    pub(crate) admin: bool,
    pub(crate) groups: Vec<GroupRow>,
    pub(crate) total: u64,
    pub(crate) previous: Option<u64>,
    pub(crate) next: Option<u64>,
}

/// `GET /console/groups`: the tenant's groups, oldest first, fifty at a time.
pub(crate) async fn list(
    State(app): State<AppState>,
    viewer: Viewer,
    PageQuery(paging): PageQuery<Paging>,
) -> Result<Response, PageError> {
    let page = paging.page(PER_PAGE);
    let (groups, total) = app
        .groups
        .list(&viewer.user.tenant_id, page)
        .await
        .for_viewer(&viewer)?;
    let shown = groups.len() as u64;
    Ok(render(&GroupsPage {
        layout: Layout::new(&viewer, "/console/groups", "Groups"),
        admin: viewer.is_admin(),
        groups: groups
            .into_iter()
            .map(|group| GroupRow {
                id: group.id.to_string(),
                name: group.name,
                members: group.members,
                created: when(group.created_at_ms),
            })
            .collect(),
        total,
        previous: paging.previous(PER_PAGE),
        next: paging.next(shown, Some(total), PER_PAGE),
    }))
}

/// A member as a row.
pub(crate) struct MemberRow {
    pub(crate) id: String,
    pub(crate) username: String,
    pub(crate) display_name: String,
}

/// `/console/groups/{id}`.
#[derive(Template)]
#[template(path = "group.html")]
pub(crate) struct GroupPage {
    pub(crate) layout: Layout,
    pub(crate) admin: bool,
    pub(crate) id: String,
    pub(crate) created: String,
    pub(crate) members: Vec<MemberRow>,
    pub(crate) total: u64,
    pub(crate) previous: Option<u64>,
    pub(crate) next: Option<u64>,
    /// The tenant's first users (id, username), for the add-member form.
    pub(crate) suggestions: Vec<(String, String)>,
}

/// `GET /console/groups/{id}`: a group and its members, fifty at a time; a group of another
/// tenant (or none) is the 404 page.
pub(crate) async fn group(
    State(app): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    PageQuery(paging): PageQuery<Paging>,
) -> Result<Response, PageError> {
    let Ok(id) = id.parse::<GroupId>() else {
        return Ok(crate::console::page::not_found(Some(&viewer)));
    };
    let tenant = &viewer.user.tenant_id;
    let group = app.groups.get(tenant, &id).await.for_viewer(&viewer)?;
    let page = paging.page(PER_PAGE);
    let (members, total) = app
        .groups
        .members(tenant, &id, page)
        .await
        .for_viewer(&viewer)?;
    let suggestions = if viewer.is_admin() {
        let (users, _) = app
            .accounts
            .users(
                tenant,
                Page {
                    limit: SUGGESTED,
                    offset: 0,
                },
            )
            .await
            .for_viewer(&viewer)?;
        users
            .into_iter()
            .map(|user| (user.id.to_string(), user.username))
            .collect()
    } else {
        Vec::new()
    };
    let shown = members.len() as u64;
    Ok(render(&GroupPage {
        layout: Layout::new(&viewer, "/console/groups", format!("Group {}", group.name)),
        admin: viewer.is_admin(),
        id: group.id.to_string(),
        created: when(group.created_at_ms),
        members: members
            .into_iter()
            .map(|user| MemberRow {
                id: user.id.to_string(),
                username: user.username,
                display_name: user.display_name.unwrap_or_default(),
            })
            .collect(),
        total,
        previous: paging.previous(PER_PAGE),
        next: paging.next(shown, Some(total), PER_PAGE),
        suggestions,
    }))
}
