//! Tenants, users and sessions as the rest of the server sees them.

use serde::{Deserialize, Serialize};

use super::ids::{SessionId, TenantId, UserId};

/// A tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tenant {
    /// Its id.
    pub id: TenantId,
    /// Its unique name, such as `default`.
    pub name: String,
    /// When it was created, Unix ms.
    pub created_at_ms: u64,
}

/// What a user may do in their tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Manages the tenant's users (and, later, its plugins and hooks).
    Admin,
    /// Sends and receives messages.
    Member,
}

impl Role {
    /// The role's name, as stored and as written in tokens.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Member => "member",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "admin" => Ok(Self::Admin),
            "member" => Ok(Self::Member),
            other => Err(format!("unknown role {other:?}; expected admin or member")),
        }
    }
}

/// A user, without secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// Its id.
    pub id: UserId,
    /// Its tenant.
    pub tenant_id: TenantId,
    /// Its login name, unique on the server.
    pub username: String,
    /// A free-form name for people, stored and returned verbatim.
    pub display_name: Option<String>,
    /// Its role in the tenant.
    pub role: Role,
    /// When it was created, Unix ms.
    pub created_at_ms: u64,
}

/// A login session: one family of rotating refresh tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Session {
    /// Its id.
    pub id: SessionId,
    /// The user it belongs to.
    pub user_id: UserId,
    /// The user's tenant.
    pub tenant_id: TenantId,
    /// When it started, Unix ms.
    pub created_at_ms: u64,
    /// When a refresh token of it was last used, Unix ms.
    pub last_used_at_ms: u64,
    /// When it ends unless refreshed, Unix ms.
    pub expires_at_ms: u64,
    /// The client's user agent at login, if it sent one.
    pub user_agent: Option<String>,
    /// The client's address at login.
    pub ip: Option<String>,
}

/// The longest username, in characters.
pub const MAX_USERNAME: usize = 64;

/// Usernames: 1 to 64 characters, no whitespace or control characters (they are typed at
/// login and appear in URLs and logs). Anything else, quotes included, is kept verbatim.
pub fn check_username(username: &str) -> Result<(), String> {
    let length = username.chars().count();
    if length == 0 || length > MAX_USERNAME {
        return Err(format!(
            "the username must have 1 to {MAX_USERNAME} characters"
        ));
    }
    if username
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err("the username may not contain spaces or control characters".into());
    }
    Ok(())
}
