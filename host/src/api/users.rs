//! `/users`: the tenant's users. Admins create, list and delete them; everyone sees
//! themselves and the users of their own tenant. Another tenant's user is a 404, like one that
//! does not exist.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::{Admin, ApiJson, Caller, Id, NoFilter, PageParams, Paged};
use super::openapi::{PROBLEM, Problem};
use crate::clock::rfc3339;
use crate::domain::ids::{TenantId, UserId};
use crate::domain::user::{Role, User};
use crate::state::AppState;
use crate::use_cases::accounts::NewAccount;

/// A user as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = User)]
pub(super) struct UserBody {
    id: UserId,
    tenant_id: TenantId,
    username: String,
    display_name: Option<String>,
    role: Role,
    #[schema(format = DateTime)]
    created_at: String,
}

impl From<User> for UserBody {
    fn from(user: User) -> Self {
        Self {
            id: user.id,
            tenant_id: user.tenant_id,
            username: user.username,
            display_name: user.display_name,
            role: user.role,
            created_at: rfc3339(user.created_at_ms),
        }
    }
}

/// A new user.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateUser {
    /// 1 to 64 characters, unique on the server in its normal form (NFKC, case-folded; and no
    /// look-alike of another); kept as given.
    #[schema(example = "bob")]
    username: String,
    /// 8 to 1024 characters.
    #[schema(min_length = 8, max_length = 1024)]
    password: String,
    /// At most 200 characters.
    #[serde(default)]
    display_name: Option<String>,
    /// `member` unless given.
    #[serde(default = "member")]
    role: Role,
}

fn member() -> Role {
    Role::Member
}

/// `POST /users` (admin): creates a user in the caller's tenant.
#[utoipa::path(
    post,
    path = "/users",
    tag = "users",
    summary = "Create a user (admin)",
    request_body = CreateUser,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created; `location` names it.", body = UserBody,
            headers(("location" = String, description = "`/users/{id}`"))),
        (status = 403, description = "`admin_required`: only an admin of the tenant may do this.", body = Problem, content_type = PROBLEM),
        (status = 409, description = "`conflict`: the username, or one that compares equal to it (case, width, composition) or looks like it (UTS #39 confusables), is in use on this server. Usernames are unique across all tenants, since login takes only a username; the answer is the same whichever tenant holds it, and never says which.", body = Problem, content_type = PROBLEM),
        (status = 422, description = "`invalid_field` (`field` names it): for `/username`, spaces, control or invisible characters (zero-width, bidi controls), characters outside ASCII other than the letters, marks and digits UTS #39 recommends, or scripts mixed in a confusable way (Cyrillic `а` in `аdmin`).", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn create(
    State(state): State<AppState>,
    admin: Admin,
    ApiJson(body): ApiJson<CreateUser>,
) -> Result<Response, ApiError> {
    let user = state
        .accounts
        .create_user(
            admin.tenant(),
            NewAccount {
                username: body.username,
                password: body.password,
                display_name: body.display_name,
                role: body.role,
            },
        )
        .await?;
    let location = format!("/users/{}", user.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(UserBody::from(user)),
    )
        .into_response())
}

/// A page of users.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct UserPage {
    items: Vec<UserBody>,
    total: u64,
    limit: u32,
    offset: u64,
}

/// `GET /users` (admin): the tenant's users, oldest first.
#[utoipa::path(
    get,
    path = "/users",
    tag = "users",
    summary = "List the tenant's users (admin)",
    params(PageParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The tenant's users, oldest first.", body = UserPage),
        (status = 403, description = "`admin_required`: only an admin of the tenant may do this.", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn list(
    State(state): State<AppState>,
    admin: Admin,
    Paged { page, .. }: Paged<NoFilter>,
) -> Result<Json<UserPage>, ApiError> {
    let (users, total) = state.accounts.users(admin.tenant(), page).await?;
    Ok(Json(UserPage {
        items: users.into_iter().map(UserBody::from).collect(),
        total,
        limit: page.limit,
        offset: page.offset,
    }))
}

/// `GET /users/me`.
#[utoipa::path(
    get,
    path = "/users/me",
    tag = "users",
    summary = "The caller",
    security(("bearer" = [])),
    responses((status = 200, description = "The caller's user.", body = UserBody)),
)]
pub(super) async fn me(caller: Caller) -> Json<UserBody> {
    Json(caller.user.into())
}

/// `GET /users/{id}`: a user of the caller's tenant.
#[utoipa::path(
    get,
    path = "/users/{id}",
    tag = "users",
    summary = "A user of the tenant",
    params(("id" = UserId, Path, description = "A user of the caller's tenant.")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The user.", body = UserBody),
        (status = 404, description = "`not_found`: no such user in your tenant.", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id<UserId>,
) -> Result<Json<UserBody>, ApiError> {
    let user = state.accounts.user(caller.tenant(), &id).await?;
    Ok(Json(user.into()))
}

/// `DELETE /users/{id}` (admin): deletes the user and ends their sessions.
#[utoipa::path(
    delete,
    path = "/users/{id}",
    tag = "users",
    summary = "Delete a user (admin)",
    description = "Deletes the user and ends their sessions. Admins cannot delete themselves.",
    params(("id" = UserId, Path, description = "A user of the caller's tenant.")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted."),
        (status = 403, description = "`admin_required`: only an admin of the tenant may do this.", body = Problem, content_type = PROBLEM),
        (status = 404, description = "`not_found`: no such user in your tenant.", body = Problem, content_type = PROBLEM),
        (status = 409, description = "`conflict`: you cannot delete yourself.", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn delete(
    State(state): State<AppState>,
    admin: Admin,
    Id(id): Id<UserId>,
) -> Result<StatusCode, ApiError> {
    state.accounts.delete_user(&admin.user, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The current password and the new one.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ChangePassword {
    current_password: String,
    /// 8 to 1024 characters.
    #[schema(min_length = 8, max_length = 1024)]
    new_password: String,
}

/// `PUT /users/me/password`: needs the current password; ends the caller's other sessions.
#[utoipa::path(
    put,
    path = "/users/me/password",
    tag = "users",
    summary = "Change the caller's password",
    description = "Needs the current password; ends the caller's other sessions.",
    request_body = ChangePassword,
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Changed."),
        (status = 403, description = "`wrong_password`: the current password does not match.", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn change_password(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<ChangePassword>,
) -> Result<StatusCode, ApiError> {
    state
        .accounts
        .change_password(
            &caller.user,
            &caller.session,
            &body.current_password,
            &body.new_password,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
