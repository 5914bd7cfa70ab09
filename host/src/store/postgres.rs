//! Scale-out storage: PostgreSQL, shared by any number of `dms serve` nodes.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use std::sync::Arc;

use super::crypto::Keyring;
use super::sql::{self, CountRow, CredentialsRow, IdRow, SessionRow, TenantRow, UserRow};
use super::{
    Change, Idempotency, Mailbox, MessageQuery, NewMessage, NewSession, NewUser, Outcome, Page,
    Rotation, StoreError, Webhook,
};
use crate::domain::feed::NewFeedEvent;
use crate::domain::ids::{MessageId, SessionId, TenantId, UserId};
use crate::domain::message::{Event, Message, Status};
use crate::domain::user::{Session, Tenant, User};

type Db = sqlx::Postgres;

/// The schema, embedded.
pub(super) static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// The PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    /// Reads.
    pool: sqlx::Pool<Db>,
    /// Writes, on connections of their own: a burst of reads (one webhook lookup per
    /// delivery) queued on a shared pool would hold commits back past their leases.
    writer: sqlx::Pool<Db>,
    keyring: Arc<Keyring>,
    /// Where committed feed events go.
    feed: super::FeedNotifier,
}

impl PostgresStore {
    /// Connects to `url` and migrates the database. Concurrent starts of several nodes are
    /// safe: sqlx serializes migrations with an advisory lock.
    pub async fn connect(
        url: &str,
        max_connections: u32,
        keyring: Arc<Keyring>,
    ) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|error| StoreError::Config(format!("invalid DATABASE_URL: {error}")))?;
        // DB_MAX_CONNECTIONS in all: half for reads, half for writes (at least one each).
        let open = |size: u32| {
            PgPoolOptions::new()
                .max_connections(size.max(1))
                .acquire_timeout(Duration::from_secs(5))
                .connect_with(options.clone())
        };
        let unavailable =
            |error| StoreError::Unavailable(format!("cannot connect to PostgreSQL: {error}"));
        let pool = open(max_connections / 2).await.map_err(unavailable)?;
        let writer = open(max_connections - max_connections / 2)
            .await
            .map_err(unavailable)?;
        MIGRATIONS.run(&writer).await?;
        Ok(Self {
            pool,
            writer,
            keyring,
            feed: super::FeedNotifier::default(),
        })
    }
}

sql::impl_store!(PostgresStore, "postgres");
