//! `/groups`: the tenant's groups of users, which `POST /messages {group_id}` fans out to.
//! Every user of the tenant may read them; only admins change them. `GET /fan-outs/{id}`
//! summarises one submission to a group.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::{Admin, ApiJson, Caller, Id, NoFilter, PageParams, Paged};
use super::openapi::{PROBLEM, Problem};
use super::users::UserBody;
use crate::clock::rfc3339;
use crate::domain::group::Group;
use crate::domain::ids::{FanOutId, GroupId, UserId};
use crate::state::AppState;
use crate::use_cases::messages::fan_out::{self, FanOutView};

/// A group as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Group)]
pub(super) struct GroupBody {
    id: GroupId,
    name: String,
    /// How many members it has.
    members: u64,
    #[schema(format = DateTime)]
    created_at: String,
}

impl From<Group> for GroupBody {
    fn from(group: Group) -> Self {
        Self {
            id: group.id,
            name: group.name,
            members: group.members,
            created_at: rfc3339(group.created_at_ms),
        }
    }
}

/// A new group.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateGroup {
    /// At most 200 characters, not blank, no NUL; need not be unique.
    #[schema(example = "on-call", min_length = 1, max_length = 200)]
    name: String,
}

/// Users to add to a group.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct AddMembers {
    /// Users of the caller's tenant (at least one, at most `DMS_GROUP_MAX_MEMBERS`); all are
    /// added or none.
    #[schema(value_type = Vec<UserId>, min_items = 1)]
    user_ids: Vec<String>,
}

/// A page of groups.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct GroupPage {
    items: Vec<GroupBody>,
    total: u64,
    limit: u32,
    offset: u64,
}

/// A page of a group's members.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct MemberPage {
    items: Vec<UserBody>,
    total: u64,
    limit: u32,
    offset: u64,
}

/// `POST /groups` (admin).
#[utoipa::path(
    post,
    path = "/groups",
    tag = "groups",
    summary = "Create a group (admin)",
    request_body = CreateGroup,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created, without members; `location` names it.", body = GroupBody,
            headers(("location" = String, description = "`/groups/{id}`"))),
        (status = 403, description = "`admin_required`: only an admin of the tenant may change groups.", body = Problem, content_type = PROBLEM),
        (status = 422, description = "`invalid_field`: `/name` is blank, too long or holds a NUL.", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn create(
    State(state): State<AppState>,
    admin: Admin,
    ApiJson(body): ApiJson<CreateGroup>,
) -> Result<Response, ApiError> {
    let group = state.groups.create(admin.tenant(), body.name).await?;
    let location = format!("/groups/{}", group.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(GroupBody::from(group)),
    )
        .into_response())
}

/// `GET /groups`.
#[utoipa::path(
    get,
    path = "/groups",
    tag = "groups",
    summary = "List the tenant's groups",
    description = "Every user of the tenant may list its groups (and send to them).",
    params(PageParams),
    security(("bearer" = [])),
    responses((status = 200, description = "The tenant's groups, oldest first.", body = GroupPage)),
)]
pub(super) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Paged { page, .. }: Paged<NoFilter>,
) -> Result<Json<GroupPage>, ApiError> {
    let (groups, total) = state.groups.list(caller.tenant(), page).await?;
    Ok(Json(GroupPage {
        items: groups.into_iter().map(Into::into).collect(),
        total,
        limit: page.limit,
        offset: page.offset,
    }))
}

/// `GET /groups/{id}`.
#[utoipa::path(
    get,
    path = "/groups/{id}",
    tag = "groups",
    summary = "A group",
    params(("id" = GroupId, Path, description = "A group of the caller's tenant.")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The group.", body = GroupBody),
        (status = 404, description = "`not_found`: no such group in your tenant.", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id<GroupId>,
) -> Result<Json<GroupBody>, ApiError> {
    Ok(Json(state.groups.get(caller.tenant(), &id).await?.into()))
}

/// `DELETE /groups/{id}` (admin).
#[utoipa::path(
    delete,
    path = "/groups/{id}",
    tag = "groups",
    summary = "Delete a group (admin)",
    description = "Deletes the group and its memberships; messages already sent to it stay, and so does their fan-out.",
    params(("id" = GroupId, Path, description = "A group of the caller's tenant.")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted."),
        (status = 403, description = "`admin_required`: only an admin of the tenant may change groups.", body = Problem, content_type = PROBLEM),
        (status = 404, description = "`not_found`: no such group in your tenant.", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn delete(
    State(state): State<AppState>,
    admin: Admin,
    Id(id): Id<GroupId>,
) -> Result<StatusCode, ApiError> {
    state.groups.delete(admin.tenant(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A member path as given (`/groups/{id}/members/{user_id}`).
type MemberPath = Result<Path<(String, String)>, PathRejection>;

/// The group and user of a member path: malformed ids are the same 404 as unknown ones.
fn member_path(path: MemberPath) -> Result<(GroupId, UserId), ApiError> {
    let Path((group, user)) = path.map_err(|_| ApiError::not_found("group"))?;
    let group = group.parse().map_err(|_| ApiError::not_found("group"))?;
    let user = user.parse().map_err(|_| ApiError::not_found("user"))?;
    Ok((group, user))
}

/// `PUT /groups/{id}/members/{user_id}` (admin).
#[utoipa::path(
    put,
    path = "/groups/{id}/members/{user_id}",
    tag = "groups",
    summary = "Add a member (admin)",
    description = "Idempotent: a member already stays as it is.",
    params(
        ("id" = GroupId, Path, description = "A group of the caller's tenant."),
        ("user_id" = UserId, Path, description = "A user of the caller's tenant."),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The group, with its member count.", body = GroupBody),
        (status = 403, description = "`admin_required`: only an admin of the tenant may change groups.", body = Problem, content_type = PROBLEM),
        (status = 404, description = "`not_found`: no such group, or user, in your tenant.", body = Problem, content_type = PROBLEM),
        (status = 422, description = "`invalid_field` (`field`: `user_id`): the group has `DMS_GROUP_MAX_MEMBERS` members already (`limit`).", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn add_member(
    State(state): State<AppState>,
    admin: Admin,
    path: MemberPath,
) -> Result<Json<GroupBody>, ApiError> {
    let (group, user) = member_path(path)?;
    let group = state
        .groups
        .add_member(admin.tenant(), &group, &user)
        .await?;
    Ok(Json(group.into()))
}

/// `DELETE /groups/{id}/members/{user_id}` (admin).
#[utoipa::path(
    delete,
    path = "/groups/{id}/members/{user_id}",
    tag = "groups",
    summary = "Remove a member (admin)",
    params(
        ("id" = GroupId, Path, description = "A group of the caller's tenant."),
        ("user_id" = UserId, Path, description = "A member of the group."),
    ),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Removed."),
        (status = 403, description = "`admin_required`: only an admin of the tenant may change groups.", body = Problem, content_type = PROBLEM),
        (status = 404, description = "`not_found`: no such group in your tenant, or the user is not a member of it.", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn remove_member(
    State(state): State<AppState>,
    admin: Admin,
    path: MemberPath,
) -> Result<StatusCode, ApiError> {
    let (group, user) = member_path(path)?;
    state
        .groups
        .remove_member(admin.tenant(), &group, &user)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /groups/{id}/members` (admin): bulk add, all or nothing.
#[utoipa::path(
    post,
    path = "/groups/{id}/members",
    tag = "groups",
    summary = "Add members (admin)",
    description = "All or nothing: every id must be a user of the caller's tenant, and the group must stay within `DMS_GROUP_MAX_MEMBERS`; else nothing is added. Members already in the group stay as they are.",
    request_body = AddMembers,
    params(("id" = GroupId, Path, description = "A group of the caller's tenant.")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The group, with its member count.", body = GroupBody),
        (status = 403, description = "`admin_required`: only an admin of the tenant may change groups.", body = Problem, content_type = PROBLEM),
        (status = 404, description = "`not_found`: no such group in your tenant.", body = Problem, content_type = PROBLEM),
        (status = 422, description = "`invalid_field`: `/user_ids/N` is not a user of your tenant, `/user_ids` is empty, or the group would have more than `DMS_GROUP_MAX_MEMBERS` members (`field` `/user_ids`, `limit`).", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn add_members(
    State(state): State<AppState>,
    admin: Admin,
    Id(id): Id<GroupId>,
    ApiJson(body): ApiJson<AddMembers>,
) -> Result<Json<GroupBody>, ApiError> {
    let group = state
        .groups
        .add_members(admin.tenant(), &id, &body.user_ids)
        .await?;
    Ok(Json(group.into()))
}

/// `GET /groups/{id}/members`.
#[utoipa::path(
    get,
    path = "/groups/{id}/members",
    tag = "groups",
    summary = "A group's members",
    params(("id" = GroupId, Path, description = "A group of the caller's tenant."), PageParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The group's members, by id.", body = MemberPage),
        (status = 404, description = "`not_found`: no such group in your tenant.", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn members(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id<GroupId>,
    Paged { page, .. }: Paged<NoFilter>,
) -> Result<Json<MemberPage>, ApiError> {
    let (users, total) = state.groups.members(caller.tenant(), &id, page).await?;
    Ok(Json(MemberPage {
        items: users.into_iter().map(Into::into).collect(),
        total,
        limit: page.limit,
        offset: page.offset,
    }))
}

/// `GET /fan-outs/{id}`: where the messages of one submission to a group are.
#[utoipa::path(
    get,
    path = "/fan-outs/{id}",
    tag = "messages",
    summary = "A fan-out's summary",
    description = "How many of the fan-out's messages are in each status. For its sender and the tenant's admins; anyone else gets 404.",
    params(("id" = FanOutId, Path, description = "The `fan_out_id` of a submission to a group.")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The summary.", body = FanOutView),
        (status = 404, description = "`not_found`: no such fan-out of yours in your tenant.", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn fan_out(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id<FanOutId>,
) -> Result<Json<FanOutView>, ApiError> {
    Ok(Json(
        fan_out::summary(&state.messages, &caller.user, &id).await?,
    ))
}
