//! The embedded default: one SQLite file in WAL mode, created on first start.
//!
//! SQLite allows one writer at a time. Many pooled connections competing for the write lock
//! spend their time in SQLite's busy handler, which sleeps in growing steps (a submit's p99 was
//! 222 ms, its max 1.9 s, at 1,200 submits/s). So writes go through a pool of exactly one
//! connection, where they queue in order and never contend, while reads use the others
//! concurrently (WAL lets readers run beside the writer).

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

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

type Db = sqlx::Sqlite;

/// The schema, embedded.
pub(super) static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

/// How long a connection waits for another's write to finish before giving up. Writes are
/// short; this only matters under heavy concurrent writing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Reads.
    pool: sqlx::Pool<Db>,
    /// Writes: one connection.
    writer: sqlx::Pool<Db>,
    keyring: Arc<Keyring>,
    /// Where committed feed events go.
    feed: super::FeedNotifier,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` and migrates it.
    pub async fn connect(
        path: &Path,
        max_connections: u32,
        keyring: Arc<Keyring>,
    ) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|error| {
                StoreError::Config(format!("cannot create {}: {error}", parent.display()))
            })?;
        }
        let options = connect_options(path)?.create_if_missing(true);
        let open = |connections: u32| {
            SqlitePoolOptions::new()
                .max_connections(connections)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options.clone())
        };
        let unavailable = |error: sqlx::Error| {
            StoreError::Unavailable(format!("cannot open {}: {error}", path.display()))
        };
        let writer = open(1).await.map_err(unavailable)?;
        MIGRATIONS.run(&writer).await?;
        let pool = open(max_connections.max(1)).await.map_err(unavailable)?;
        Ok(Self {
            pool,
            writer,
            keyring,
            feed: super::FeedNotifier::default(),
        })
    }
}

/// How every connection to the file is opened (WAL, foreign keys, busy timeout); the file is
/// not created unless the caller adds `create_if_missing` (a backup must not create one).
pub(super) fn connect_options(path: &Path) -> Result<SqliteConnectOptions, StoreError> {
    Ok(SqliteConnectOptions::from_str("sqlite://")
        .map_err(|error| StoreError::Config(error.to_string()))?
        .filename(path)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT))
}

sql::impl_store!(SqliteStore, "sqlite");
