//! `/users`: the tenant's users. Admins create, list and delete them; everyone sees
//! themselves and the users of their own tenant. Another tenant's user is a 404, like one that
//! does not exist.

use crate::realtime::Revoke;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, Code};
use super::extract::{ApiJson, ApiQuery, Caller};
use super::openapi::{PROBLEM, Problem};
use crate::app::AppState;
use crate::auth::password;
use crate::clock::rfc3339;
use crate::domain::ids::{TenantId, UserId};
use crate::domain::user::{Role, User};
use crate::store::{NewUser, Page, StoreError};

/// The longest display name, in characters.
const MAX_DISPLAY_NAME: usize = 200;

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
    caller: Caller,
    ApiJson(body): ApiJson<CreateUser>,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    crate::domain::user::check_username(&body.username)
        .map_err(|reason| ApiError::field("/username", reason))?;
    password::check_new(&body.password).map_err(|reason| ApiError::field("/password", reason))?;
    if let Some(name) = &body.display_name {
        if name.chars().count() > MAX_DISPLAY_NAME {
            return Err(ApiError::field(
                "/display_name",
                format!("the display name must have at most {MAX_DISPLAY_NAME} characters"),
            ));
        }
        // Anything else is kept verbatim, but PostgreSQL text cannot hold a NUL.
        if name.contains('\0') {
            return Err(ApiError::field(
                "/display_name",
                "the display name may not contain NUL characters",
            ));
        }
    }
    let hash = state
        .passwords
        .hash(&body.password)
        .await
        .map_err(ApiError::internal)?;
    let user = state
        .store
        .create_user(
            caller.tenant(),
            NewUser {
                username: body.username,
                display_name: body.display_name,
                role: body.role,
                password_hash: hash,
            },
            state.clock.now_ms(),
        )
        .await
        .map_err(|error| match error {
            StoreError::Conflict(detail) => ApiError::new(Code::Conflict, detail),
            other => other.into(),
        })?;
    let location = format!("/users/{}", user.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(UserBody::from(user)),
    )
        .into_response())
}

/// `limit` and `offset` of a listing.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct PageQuery {
    /// Page size, 1 to 100 (default 20).
    #[serde(default)]
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// Items to skip (default 0).
    #[serde(default)]
    #[param(maximum = 9_223_372_036_854_775_807_u64)]
    offset: Option<u64>,
}

/// The default page size.
pub(super) const DEFAULT_LIMIT: u32 = 20;
/// The largest page size.
pub(super) const MAX_LIMIT: u32 = 100;
/// The largest offset: the `int64` the document gives `offset`, and what SQL's `OFFSET` takes.
/// (utoipa writes a `u64` as `int64`; the `maximum` of each `offset` parameter says it too.)
pub(super) const MAX_OFFSET: u64 = i64::MAX.unsigned_abs();

/// A listing's `offset` (default 0), refused above [`MAX_OFFSET`] as `limit` is out of range.
pub(super) fn offset(offset: Option<u64>) -> Result<u64, ApiError> {
    match offset.unwrap_or(0) {
        offset if offset <= MAX_OFFSET => Ok(offset),
        _ => Err(ApiError::query(
            "offset",
            format!("offset must be between 0 and {MAX_OFFSET}"),
        )),
    }
}

impl PageQuery {
    pub(super) fn page(&self) -> Result<Page, ApiError> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::query(
                "limit",
                format!("limit must be between 1 and {MAX_LIMIT}"),
            ));
        }
        Ok(Page {
            limit,
            offset: offset(self.offset)?,
        })
    }
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
    params(PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The tenant's users, oldest first.", body = UserPage),
        (status = 403, description = "`admin_required`: only an admin of the tenant may do this.", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<UserPage>, ApiError> {
    caller.require_admin()?;
    let page = query.page()?;
    let (users, total) = state.store.list_users(caller.tenant(), page).await?;
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

/// Parses a user id from a path; a malformed one cannot exist, so it is a 404.
fn user_id(id: &str) -> Result<UserId, ApiError> {
    id.parse().map_err(|_| ApiError::not_found("user"))
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
    Path(id): Path<String>,
) -> Result<Json<UserBody>, ApiError> {
    let id = user_id(&id)?;
    let user = state
        .store
        .user(caller.tenant(), &id)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
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
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin()?;
    let id = user_id(&id)?;
    if id == caller.user.id {
        return Err(ApiError::new(
            Code::Conflict,
            "you cannot delete yourself; ask another admin",
        ));
    }
    if state
        .store
        .delete_user(caller.tenant(), &id, state.clock.now_ms())
        .await?
    {
        state.hub.revoke(
            caller.tenant(),
            &id,
            Revoke::User { except: None },
            "the user was deleted",
        );
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("user"))
    }
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
    password::check_new(&body.new_password)
        .map_err(|reason| ApiError::field("/new_password", reason))?;
    let stored = state.store.credentials(&caller.user.username).await?;
    let hash = stored.as_ref().map(|(_, hash)| hash.as_str());
    if !state.passwords.verify(&body.current_password, hash).await {
        return Err(ApiError::new(
            Code::WrongPassword,
            "the current password does not match",
        ));
    }
    let new_hash = state
        .passwords
        .hash(&body.new_password)
        .await
        .map_err(ApiError::internal)?;
    let updated = state
        .store
        .set_password(
            caller.tenant(),
            &caller.user.id,
            &new_hash,
            Some(&caller.session),
            state.clock.now_ms(),
        )
        .await?;
    if updated {
        state.hub.revoke(
            caller.tenant(),
            &caller.user.id,
            Revoke::User {
                except: Some(caller.session.clone()),
            },
            "the password changed; log in again",
        );
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            Code::SessionEnded,
            "your user no longer exists",
        ))
    }
}
