//! Accounts: tenants, users, passwords ([`Accounts`]), and sessions: login, refresh, logout,
//! the caller's sessions, and the user behind an access token ([`Sessions`]).
//!
//! One set of rules whoever asks: the API's `POST /users` and the CLI's `dms user create` both
//! call [`Accounts::create_user`], the first start creates its admin through it too.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;

use crate::auth::jwt::{Claims, TokenError, Tokens};
use crate::auth::password::{self, HashError, Passwords};
use crate::auth::rate_limit::{self, Limit, RateLimits};
use crate::auth::refresh;
use crate::clock::Clock;
use crate::domain::ids::{SessionId, TenantId, UserId};
use crate::domain::user::{Role, Session, Tenant, User, check_username, username_key};
use crate::random::random_bytes;
use crate::realtime::{Hub, Revoke};
use crate::store::{NewSession, NewUser, Page, Rotation, Store, StoreError};

/// The longest display name, in characters.
pub const MAX_DISPLAY_NAME: usize = 200;
/// The longest tenant name, in characters.
pub const MAX_TENANT_NAME: usize = 64;
/// The longest `User-Agent` kept with a session, in characters.
const MAX_USER_AGENT: usize = 256;

/// Why an account operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A field of the request is unusable.
    #[error("{field}: {reason}")]
    Invalid {
        /// A JSON pointer to the field.
        field: Cow<'static, str>,
        /// What is wrong.
        reason: String,
    },
    /// No such thing (a user, a session) in the caller's tenant.
    #[error("there is no such {0} in your tenant")]
    NotFound(&'static str),
    /// The request conflicts with what exists (a username in use; deleting oneself).
    #[error("{0}")]
    Conflict(String),
    /// The current password given does not match.
    #[error("the current password does not match")]
    WrongPassword,
    /// A login with a wrong username or password.
    #[error("the username or the password is wrong")]
    InvalidCredentials,
    /// Too many attempts; retry after the wait.
    #[error("too many requests")]
    RateLimited(Duration),
    /// An access token that has expired.
    #[error("{0}")]
    TokenExpired(String),
    /// An access token that is not one of ours.
    #[error("{0}")]
    InvalidToken(String),
    /// The session (or its user) has ended.
    #[error("{0}")]
    SessionEnded(&'static str),
    /// A refresh token presented a second time: its session is revoked.
    #[error("this refresh token was already used, so its session has been revoked; log in again")]
    RefreshTokenReused,
    /// A refresh token that is unknown or whose session ended.
    #[error("the refresh token is unknown or its session has ended; log in again")]
    InvalidRefreshToken,
    /// Hashing a password failed.
    #[error(transparent)]
    Hash(#[from] HashError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(field: &'static str, reason: impl Into<String>) -> Error {
    Error::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// A user to create.
#[derive(Debug, Clone)]
pub struct NewAccount {
    /// The login name, unique on the server.
    pub username: String,
    /// The password, in clear (hashed here).
    pub password: String,
    /// A display name.
    pub display_name: Option<String>,
    /// Admin or member.
    pub role: Role,
}

/// Tenants, users and passwords. Cheap to clone.
#[derive(Clone)]
pub struct Accounts {
    store: Arc<dyn Store>,
    passwords: Arc<Passwords>,
    clock: Clock,
    /// This node's live connections, closed when their sessions end; `None` where there are
    /// none (the CLI).
    live: Option<Arc<Hub>>,
}

impl Accounts {
    /// The account use cases over `store`; `live` is the node's hub when it serves connections.
    pub fn new(
        store: Arc<dyn Store>,
        passwords: Arc<Passwords>,
        clock: Clock,
        live: Option<Arc<Hub>>,
    ) -> Self {
        Self {
            store,
            passwords,
            clock,
            live,
        }
    }

    fn revoke(&self, tenant: &TenantId, user: &UserId, which: Revoke, reason: &str) {
        if let Some(hub) = &self.live {
            hub.revoke(tenant, user, which, reason);
        }
    }

    /// Creates a tenant: its name has 1 to 64 characters, not all blank, and is unique.
    pub async fn create_tenant(&self, name: &str) -> Result<Tenant, Error> {
        check_tenant_name(name)?;
        match self.store.create_tenant(name, self.clock.now_ms()).await {
            Ok(tenant) => Ok(tenant),
            Err(StoreError::Conflict(detail)) => Err(Error::Conflict(detail)),
            Err(error) => Err(error.into()),
        }
    }

    /// Every tenant, oldest first.
    pub async fn tenants(&self) -> Result<Vec<Tenant>, Error> {
        Ok(self.store.list_tenants().await?)
    }

    /// The tenant named `name`.
    pub async fn tenant_named(&self, name: &str) -> Result<Option<Tenant>, Error> {
        Ok(self.store.tenant_by_name(name).await?)
    }

    /// Creates a user in `tenant`, after checking the username (see
    /// [`check_username`]), the password ([`password::check_new`]) and the display name (at
    /// most [`MAX_DISPLAY_NAME`] characters, no NUL). A username in use, or one that compares
    /// equal to or looks like one in use, is a [`Error::Conflict`].
    pub async fn create_user(&self, tenant: &TenantId, new: NewAccount) -> Result<User, Error> {
        check_username(&new.username).map_err(|reason| invalid("/username", reason))?;
        password::check_new(&new.password).map_err(|reason| invalid("/password", reason))?;
        if let Some(name) = &new.display_name {
            check_display_name(name)?;
        }
        let password_hash = self.passwords.hash(&new.password).await?;
        let created = self
            .store
            .create_user(
                tenant,
                NewUser {
                    username: new.username,
                    display_name: new.display_name,
                    role: new.role,
                    password_hash,
                },
                self.clock.now_ms(),
            )
            .await;
        match created {
            Ok(user) => Ok(user),
            Err(StoreError::Conflict(detail)) => Err(Error::Conflict(detail)),
            Err(error) => Err(error.into()),
        }
    }

    /// A page of `tenant`'s users, oldest first, and how many there are.
    pub async fn users(&self, tenant: &TenantId, page: Page) -> Result<(Vec<User>, u64), Error> {
        Ok(self.store.list_users(tenant, page).await?)
    }

    /// A user of `tenant`.
    pub async fn user(&self, tenant: &TenantId, id: &UserId) -> Result<User, Error> {
        self.store
            .user(tenant, id)
            .await?
            .ok_or(Error::NotFound("user"))
    }

    /// Deletes a user of `admin`'s tenant and ends their sessions; an admin cannot delete
    /// themselves.
    pub async fn delete_user(&self, admin: &User, id: &UserId) -> Result<(), Error> {
        if id == &admin.id {
            return Err(Error::Conflict(
                "you cannot delete yourself; ask another admin".into(),
            ));
        }
        let tenant = &admin.tenant_id;
        if !self
            .store
            .delete_user(tenant, id, self.clock.now_ms())
            .await?
        {
            return Err(Error::NotFound("user"));
        }
        self.revoke(
            tenant,
            id,
            Revoke::User { except: None },
            "the user was deleted",
        );
        Ok(())
    }

    /// Changes `user`'s password, given the current one; ends their sessions other than
    /// `keep`.
    pub async fn change_password(
        &self,
        user: &User,
        keep: &SessionId,
        current: &str,
        new: &str,
    ) -> Result<(), Error> {
        password::check_new(new).map_err(|reason| invalid("/new_password", reason))?;
        let stored = self.store.credentials(&user.username).await?;
        let hash = stored.as_ref().map(|(_, hash)| hash.as_str());
        if !self.passwords.verify(current, hash).await {
            return Err(Error::WrongPassword);
        }
        let new_hash = self.passwords.hash(new).await?;
        let updated = self
            .store
            .set_password(
                &user.tenant_id,
                &user.id,
                &new_hash,
                Some(keep),
                self.clock.now_ms(),
            )
            .await?;
        if !updated {
            return Err(Error::SessionEnded("your user no longer exists"));
        }
        self.revoke(
            &user.tenant_id,
            &user.id,
            Revoke::User {
                except: Some(keep.clone()),
            },
            "the password changed; log in again",
        );
        Ok(())
    }

    /// On an empty database, creates the tenant `default` and its `admin` user with
    /// `password`, or a generated one. Returns what it created; `None` when there was
    /// something already (or another node starting at the same moment won the race).
    pub async fn first_run(&self, password: Option<&str>) -> Result<Option<FirstAdmin>, Error> {
        if !self.store.list_tenants().await?.is_empty() {
            return Ok(None);
        }
        let tenant = match self.create_tenant("default").await {
            Ok(tenant) => tenant,
            Err(Error::Conflict(_)) => return Ok(None),
            Err(error) => return Err(error),
        };
        let generated = password.is_none();
        let password = match password {
            Some(password) => password.to_owned(),
            None => base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<15>()),
        };
        let admin = NewAccount {
            username: "admin".into(),
            password: password.clone(),
            display_name: Some("Administrator".into()),
            role: Role::Admin,
        };
        match self.create_user(&tenant.id, admin).await {
            Ok(_) => Ok(Some(FirstAdmin {
                generated_password: generated.then_some(password),
            })),
            Err(Error::Conflict(_)) => Ok(None),
            Err(error) => Err(error),
        }
    }
}

/// What the first start created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstAdmin {
    /// The admin's password, when it was generated (not configured).
    pub generated_password: Option<String>,
}

fn check_tenant_name(name: &str) -> Result<(), Error> {
    if name.trim().is_empty() {
        return Err(invalid("/name", "a tenant name may not be blank"));
    }
    check_text("/name", "a tenant name", name, MAX_TENANT_NAME)
}

fn check_display_name(name: &str) -> Result<(), Error> {
    check_text("/display_name", "the display name", name, MAX_DISPLAY_NAME)
}

/// Text kept as given: at most `max` characters, and no NUL (PostgreSQL text cannot hold one).
fn check_text(field: &'static str, what: &str, text: &str, max: usize) -> Result<(), Error> {
    if text.chars().count() > max {
        return Err(invalid(
            field,
            format!("{what} must have at most {max} characters"),
        ));
    }
    if text.contains('\0') {
        return Err(invalid(
            field,
            format!("{what} may not contain NUL characters"),
        ));
    }
    Ok(())
}

/// A session's tokens, as a login or a refresh answers them.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The access token.
    pub token: String,
    /// The refresh token (shown once; only its hash is stored).
    pub refresh_token: String,
    /// Seconds the access token lives.
    pub expires_in: u64,
    /// The user.
    pub user: User,
}

/// Logging in and out, refreshing, the caller's sessions, and the user behind a token.
/// Cheap to clone.
#[derive(Clone)]
pub struct Sessions {
    store: Arc<dyn Store>,
    passwords: Arc<Passwords>,
    tokens: Arc<Tokens>,
    limits: Arc<RateLimits>,
    hub: Arc<Hub>,
    clock: Clock,
    ttl_ms: u64,
}

impl Sessions {
    /// The session use cases; sessions live `ttl_days` from their last refresh.
    pub fn new(
        store: Arc<dyn Store>,
        passwords: Arc<Passwords>,
        tokens: Arc<Tokens>,
        limits: Arc<RateLimits>,
        hub: Arc<Hub>,
        clock: Clock,
        ttl_days: u64,
    ) -> Self {
        Self {
            store,
            passwords,
            tokens,
            limits,
            hub,
            clock,
            ttl_ms: ttl_days.saturating_mul(86_400_000),
        }
    }

    fn issue(&self, user: User, session: &SessionId, refresh_token: String) -> Issued {
        Issued {
            token: self.tokens.issue(&user, session),
            refresh_token,
            expires_in: self.tokens.ttl_seconds(),
            user,
        }
    }

    /// Logs in from `ip`: rate limited per address, per username from that address, and per
    /// username from everywhere, in that order, so an attempt refused by one limit is not
    /// counted by the next (an address over its own limits cannot use up the ceiling every
    /// address shares).
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        ip: &str,
        user_agent: Option<&str>,
    ) -> Result<Issued, Error> {
        let name = username_key(username);
        for (limit, key) in [
            (Limit::LoginPerIp, ip.to_owned()),
            (Limit::LoginPerUsernameFromIp, rate_limit::pair(ip, &name)),
            (Limit::LoginPerUsername, name),
        ] {
            self.limits
                .check(limit, &key)
                .await
                .map_err(Error::RateLimited)?;
        }
        // No username holds a NUL (`check_username` refuses control characters), and
        // PostgreSQL text cannot even be queried with one: such a login is simply wrong, on
        // both backends.
        let found = if username.contains('\0') {
            None
        } else {
            self.store.credentials(username).await?
        };
        let hash = found.as_ref().map(|(_, hash)| hash.as_str());
        let valid = self.passwords.verify(password, hash).await;
        let Some((user, _)) = found.filter(|_| valid) else {
            return Err(Error::InvalidCredentials);
        };
        let (refresh_token, refresh_hash) = refresh::issue();
        let now = self.clock.now_ms();
        let session = self
            .store
            .create_session(NewSession {
                tenant_id: user.tenant_id.clone(),
                user_id: user.id.clone(),
                refresh_hash,
                now_ms: now,
                expires_at_ms: now.saturating_add(self.ttl_ms),
                user_agent: user_agent.map(|agent| agent.chars().take(MAX_USER_AGENT).collect()),
                ip: Some(ip.to_owned()),
            })
            .await?;
        Ok(self.issue(user, &session.id, refresh_token))
    }

    /// Trades a refresh token for new tokens; a token presented twice revokes its session.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Issued, Error> {
        let (new_token, new_hash) = refresh::issue();
        let now = self.clock.now_ms();
        let rotation = self
            .store
            .rotate_refresh(
                &refresh::hash(refresh_token),
                &new_hash,
                now,
                now.saturating_add(self.ttl_ms),
            )
            .await?;
        match rotation {
            Rotation::Rotated { session, user } => Ok(self.issue(*user, &session.id, new_token)),
            Rotation::Reused { session_id, owner } => {
                tracing::warn!(
                    message = "A used refresh token was presented again; its session is revoked.",
                    session_id = %session_id,
                );
                if let Some((tenant, user)) = owner {
                    self.hub.revoke(
                        &tenant,
                        &user,
                        Revoke::Session(session_id),
                        "the session was revoked: its refresh token was used twice",
                    );
                }
                Err(Error::RefreshTokenReused)
            }
            Rotation::Invalid => Err(Error::InvalidRefreshToken),
        }
    }

    /// Logs `user` out of `session`: its tokens stop working and its live connections close.
    /// A session that already ended (a concurrent logout) is logged out all the same.
    pub async fn logout(&self, user: &User, session: &SessionId) -> Result<(), Error> {
        self.revoke(user, session, "logged out", "the session logged out")
            .await?;
        Ok(())
    }

    /// Ends one of `user`'s sessions (another's is not found) and closes its live connections.
    pub async fn end(&self, user: &User, id: &SessionId) -> Result<(), Error> {
        if self
            .revoke(
                user,
                id,
                "ended by its user",
                "the session was ended by its user",
            )
            .await?
        {
            Ok(())
        } else {
            Err(Error::NotFound("session"))
        }
    }

    /// Revokes `user`'s session `id` with `reason` (stored) and closes its live connections
    /// with `notice`; `false` when it was not a live session of theirs.
    async fn revoke(
        &self,
        user: &User,
        id: &SessionId,
        reason: &str,
        notice: &str,
    ) -> Result<bool, Error> {
        let revoked = self
            .store
            .revoke_session(&user.tenant_id, &user.id, id, reason, self.clock.now_ms())
            .await?;
        if revoked {
            self.hub.revoke(
                &user.tenant_id,
                &user.id,
                Revoke::Session(id.clone()),
                notice,
            );
        }
        Ok(revoked)
    }

    /// The live sessions of `user_id`, a user of `admin`'s tenant, newest first (the caller
    /// has checked that `admin` is an admin).
    pub async fn list_of(&self, admin: &User, user_id: &UserId) -> Result<Vec<Session>, Error> {
        let user = self.user_of_tenant(admin, user_id).await?;
        self.list(&user).await
    }

    /// Ends session `id` of `user_id`, a user of `admin`'s tenant (the caller has checked that
    /// `admin` is an admin): its tokens stop working and its live connections close.
    pub async fn end_of(
        &self,
        admin: &User,
        user_id: &UserId,
        id: &SessionId,
    ) -> Result<(), Error> {
        let user = self.user_of_tenant(admin, user_id).await?;
        if self
            .revoke(
                &user,
                id,
                "ended by an admin",
                "the session was ended by an admin of the tenant",
            )
            .await?
        {
            Ok(())
        } else {
            Err(Error::NotFound("session"))
        }
    }

    async fn user_of_tenant(&self, admin: &User, user_id: &UserId) -> Result<User, Error> {
        self.store
            .user(&admin.tenant_id, user_id)
            .await?
            .ok_or(Error::NotFound("user"))
    }

    /// `user`'s live sessions, newest first.
    pub async fn list(&self, user: &User) -> Result<Vec<Session>, Error> {
        Ok(self
            .store
            .list_sessions(&user.tenant_id, &user.id, self.clock.now_ms())
            .await?)
    }

    /// The user behind an access token whose session is still live, and the token's claims.
    pub async fn authenticate(&self, token: &str) -> Result<(User, Claims), Error> {
        let claims = self.tokens.verify(token).map_err(|error| match error {
            TokenError::Expired => Error::TokenExpired(error.to_string()),
            TokenError::Invalid(_) => Error::InvalidToken(error.to_string()),
        })?;
        let user = self
            .store
            .authenticate(&claims.tid, &claims.sub, &claims.sid, self.clock.now_ms())
            .await?
            .ok_or(Error::SessionEnded(
                "this session has ended (logged out, revoked, or its user deleted); log in again",
            ))?;
        Ok((user, claims))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_names_have_one_to_64_characters_not_all_blank() {
        assert!(check_tenant_name("acme").is_ok());
        assert!(check_tenant_name(&"é".repeat(64)).is_ok());
        for bad in ["", "   ", &"x".repeat(65), "a\0b"] {
            let Err(Error::Invalid { field, .. }) = check_tenant_name(bad) else {
                panic!("{bad:?} was accepted");
            };
            assert_eq!(field, "/name");
        }
    }

    #[test]
    fn display_names_have_at_most_200_characters_and_no_nul() {
        assert!(check_display_name(&"名".repeat(200)).is_ok());
        assert!(check_display_name(&"x".repeat(201)).is_err());
        assert!(check_display_name("a\0").is_err());
    }
}
