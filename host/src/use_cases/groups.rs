//! Groups of a tenant's users: what `POST /messages {group_id}` fans out to.
//!
//! Who may do what: every user of the tenant may list and read its groups and their members
//! (and send to them); only the tenant's admins create, delete and change them (the API's
//! `Admin` extractor refuses anyone else before these run). A group's members are live users
//! of its tenant, at most `max_members` of them (`DMS_GROUP_MAX_MEMBERS`); a deleted user
//! leaves every group. Another tenant's group or user is not found, like an unknown one.

use std::borrow::Cow;
use std::sync::Arc;

use crate::clock::Clock;
use crate::domain::group::Group;
use crate::domain::ids::{GroupId, TenantId, UserId};
use crate::domain::user::User;
use crate::store::{MembersAdded, Page, Store, StoreError};

/// The longest group name, as a display name.
pub const MAX_GROUP_NAME: usize = super::accounts::MAX_DISPLAY_NAME;

/// Why a group operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such group or user in the tenant (`group`, `user`, `group member`).
    #[error("there is no such {0} in your tenant")]
    NotFound(&'static str),
    /// A field of the request is unusable.
    #[error("{field}: {reason}")]
    Invalid {
        /// A JSON pointer to the field (or the path parameter's name).
        field: Cow<'static, str>,
        /// What is wrong.
        reason: String,
    },
    /// The group would have more members than allowed; nothing was added.
    #[error("{field}: the group would have {members} members; a group has at most {limit}")]
    TooManyMembers {
        /// The field that asked for them.
        field: Cow<'static, str>,
        /// Members it would have.
        members: u64,
        /// The most it may have.
        limit: u64,
    },
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The group use cases. Cheap to clone.
#[derive(Clone)]
pub struct Groups {
    store: Arc<dyn Store>,
    clock: Clock,
    max_members: u64,
}

impl Groups {
    /// The group use cases over `store`; a group has at most `max_members` members.
    pub fn new(store: Arc<dyn Store>, clock: Clock, max_members: u64) -> Self {
        Self {
            store,
            clock,
            max_members,
        }
    }

    /// The most members a group may have.
    pub fn max_members(&self) -> u64 {
        self.max_members
    }

    /// Creates an empty group named `name`: a display name's rules (at most
    /// [`MAX_GROUP_NAME`] characters, no NUL), and not blank; names need not be unique.
    pub async fn create(&self, tenant: &TenantId, name: String) -> Result<Group, Error> {
        check_name(&name)?;
        let group = Group {
            id: GroupId::new(),
            tenant_id: tenant.clone(),
            name,
            created_at_ms: self.clock.now_ms(),
            members: 0,
        };
        self.store.create_group(&group).await?;
        Ok(group)
    }

    /// A page of the tenant's groups, oldest first, and how many there are.
    pub async fn list(&self, tenant: &TenantId, page: Page) -> Result<(Vec<Group>, u64), Error> {
        Ok(self.store.groups(tenant, page).await?)
    }

    /// One of the tenant's groups.
    pub async fn get(&self, tenant: &TenantId, id: &GroupId) -> Result<Group, Error> {
        self.store
            .group(tenant, id)
            .await?
            .ok_or(Error::NotFound("group"))
    }

    /// Deletes a group (the messages sent to it stay, with their fan-out).
    pub async fn delete(&self, tenant: &TenantId, id: &GroupId) -> Result<(), Error> {
        if self.store.delete_group(tenant, id).await? {
            Ok(())
        } else {
            Err(Error::NotFound("group"))
        }
    }

    /// Adds one user (idempotent): the group as it is now.
    pub async fn add_member(
        &self,
        tenant: &TenantId,
        group: &GroupId,
        user: &UserId,
    ) -> Result<Group, Error> {
        // The group first: an unknown group is the 404, whoever the user.
        self.get(tenant, group).await?;
        if self.store.user(tenant, user).await?.is_none() {
            return Err(Error::NotFound("user"));
        }
        self.add(tenant, group, std::slice::from_ref(user), "user_id")
            .await
    }

    /// Adds users, all or none: each must be a live user of the tenant (else a 422 naming
    /// `/user_ids/N`); those who are members already stay as they are.
    pub async fn add_members(
        &self,
        tenant: &TenantId,
        group: &GroupId,
        user_ids: &[String],
    ) -> Result<Group, Error> {
        self.get(tenant, group).await?;
        if user_ids.is_empty() {
            return Err(Error::Invalid {
                field: "/user_ids".into(),
                reason: "give at least one user id".into(),
            });
        }
        if user_ids.len() as u64 > self.max_members {
            return Err(Error::TooManyMembers {
                field: "/user_ids".into(),
                members: user_ids.len() as u64,
                limit: self.max_members,
            });
        }
        let mut users = Vec::with_capacity(user_ids.len());
        for (index, id) in user_ids.iter().enumerate() {
            let user: UserId = id.parse().map_err(|_| no_such_user(index))?;
            users.push(user);
        }
        let live = self.store.live_users(tenant, &users).await?;
        if let Some(index) = users.iter().position(|user| !live.contains(user)) {
            return Err(no_such_user(index));
        }
        self.add(tenant, group, &users, "/user_ids").await
    }

    async fn add(
        &self,
        tenant: &TenantId,
        group: &GroupId,
        users: &[UserId],
        field: &'static str,
    ) -> Result<Group, Error> {
        match self
            .store
            .add_members(tenant, group, users, self.max_members, self.clock.now_ms())
            .await?
        {
            MembersAdded::Added { .. } => self.get(tenant, group).await,
            MembersAdded::NoGroup => Err(Error::NotFound("group")),
            MembersAdded::OverLimit { members, limit } => Err(Error::TooManyMembers {
                field: field.into(),
                members,
                limit,
            }),
        }
    }

    /// Removes a member; a user who is not one is not found.
    pub async fn remove_member(
        &self,
        tenant: &TenantId,
        group: &GroupId,
        user: &UserId,
    ) -> Result<(), Error> {
        match self.store.remove_member(tenant, group, user).await? {
            None => Err(Error::NotFound("group")),
            Some(false) => Err(Error::NotFound("group member")),
            Some(true) => Ok(()),
        }
    }

    /// A page of a group's members, by id, and how many it has.
    pub async fn members(
        &self,
        tenant: &TenantId,
        group: &GroupId,
        page: Page,
    ) -> Result<(Vec<User>, u64), Error> {
        self.store
            .members(tenant, group, page)
            .await?
            .ok_or(Error::NotFound("group"))
    }
}

fn no_such_user(index: usize) -> Error {
    Error::Invalid {
        field: format!("/user_ids/{index}").into(),
        reason: "there is no such user in your tenant".into(),
    }
}

fn check_name(name: &str) -> Result<(), Error> {
    let invalid = |reason: String| Error::Invalid {
        field: "/name".into(),
        reason,
    };
    if name.trim().is_empty() {
        return Err(invalid("a group name may not be blank".into()));
    }
    if name.chars().count() > MAX_GROUP_NAME {
        return Err(invalid(format!(
            "a group name must have at most {MAX_GROUP_NAME} characters"
        )));
    }
    // PostgreSQL text cannot hold a NUL.
    if name.contains('\0') {
        return Err(invalid(
            "a group name may not contain NUL characters".into(),
        ));
    }
    Ok(())
}
