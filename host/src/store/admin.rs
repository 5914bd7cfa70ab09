//! Operator actions on the database that work below the [`Store`](super::Store) trait:
//! `dms db check` (connect without migrating, and report what is there) and `dms db reset`
//! (drop everything DMS created, then migrate an empty schema).
//!
//! Both open one connection of their own: a check must not change the database it looks at
//! (no migrations, no file created), and a reset must not keep a pool alive on tables it drops.

use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};

use super::{Location, StoreError};

/// How long a check waits for the database to accept a connection. A database next to the
/// server that takes longer is, for an operator, down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What `dms db check` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbReport {
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    /// The server's version string.
    pub version: String,
    /// Round trip of a trivial query.
    pub latency: Duration,
    /// Migrations applied to this database.
    pub applied_migrations: usize,
    /// Migrations this build of DMS has.
    pub known_migrations: usize,
}

fn unavailable(what: &str) -> impl Fn(sqlx::Error) -> StoreError + '_ {
    move |error| StoreError::Unavailable(format!("cannot connect to {what}: {error}"))
}

/// How many migrations sqlx recorded as applied on `$connection` (0 on a database DMS never
/// migrated). A macro, as the two backends' connection types share no simple trait bound.
macro_rules! applied_migrations {
    ($connection:expr) => {
        match sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
            .fetch_one($connection)
            .await
        {
            Ok(count) => usize::try_from(count).unwrap_or(0),
            // No migrations table yet: nothing applied.
            Err(sqlx::Error::Database(error)) if error.message().contains("_sqlx_migrations") => 0,
            Err(error) => return Err(error.into()),
        }
    };
}

/// Connects to the database at `location`, and reports its version, the round-trip time and
/// how many migrations it has. Changes nothing: a SQLite file that does not exist is an error,
/// not a new file.
pub async fn check(location: Location<'_>) -> Result<DbReport, StoreError> {
    match location {
        Location::Sqlite(path) => {
            if !path.is_file() {
                return Err(StoreError::Unavailable(format!(
                    "there is no database at {} (dms serve or dms migrate creates it)",
                    path.display()
                )));
            }
            let what = path.display().to_string();
            let mut connection = tokio::time::timeout(
                CONNECT_TIMEOUT,
                sqlite_options(path)?.read_only(true).connect(),
            )
            .await
            .map_err(|_| StoreError::Unavailable(format!("{what} did not open in time")))?
            .map_err(unavailable(&what))?;
            let started = Instant::now();
            sqlx::query("SELECT 1").execute(&mut connection).await?;
            let latency = started.elapsed();
            let version: String = sqlx::query_scalar("SELECT sqlite_version()")
                .fetch_one(&mut connection)
                .await?;
            let applied = applied_migrations!(&mut connection);
            Ok(DbReport {
                backend: "sqlite",
                version: format!("SQLite {version}"),
                latency,
                applied_migrations: applied,
                known_migrations: super::sqlite::MIGRATIONS.iter().count(),
            })
        }
        Location::Postgres(url) => {
            let options = postgres_options(url)?;
            let mut connection = tokio::time::timeout(CONNECT_TIMEOUT, options.connect())
                .await
                .map_err(|_| {
                    StoreError::Unavailable(format!(
                        "PostgreSQL did not accept a connection within {} s",
                        CONNECT_TIMEOUT.as_secs()
                    ))
                })?
                .map_err(unavailable("PostgreSQL"))?;
            let started = Instant::now();
            sqlx::query("SELECT 1").execute(&mut connection).await?;
            let latency = started.elapsed();
            let version: String = sqlx::query_scalar("SELECT version()")
                .fetch_one(&mut connection)
                .await?;
            let applied = applied_migrations!(&mut connection);
            Ok(DbReport {
                backend: "postgres",
                version,
                latency,
                applied_migrations: applied,
                known_migrations: super::postgres::MIGRATIONS.iter().count(),
            })
        }
    }
}

/// Drops every table in the database at `location` (DMS's and sqlx's migration records), so
/// the next open migrates an empty schema. The caller confirms first: this deletes every
/// tenant, user, message and plugin.
pub async fn reset(location: Location<'_>) -> Result<usize, StoreError> {
    match location {
        Location::Sqlite(path) => {
            if !path.is_file() {
                return Ok(0);
            }
            let mut connection = sqlite_options(path)?
                .foreign_keys(false)
                .connect()
                .await
                .map_err(unavailable(&path.display().to_string()))?;
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
            )
            .fetch_all(&mut connection)
            .await?;
            let mut tx = connection.begin().await?;
            for table in &tables {
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP TABLE IF EXISTS \"{}\"",
                    table.replace('"', "\"\"")
                )))
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(tables.len())
        }
        Location::Postgres(url) => {
            let mut connection = postgres_options(url)?
                .connect()
                .await
                .map_err(unavailable("PostgreSQL"))?;
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema()",
            )
            .fetch_all(&mut connection)
            .await?;
            let mut tx = connection.begin().await?;
            for table in &tables {
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP TABLE IF EXISTS \"{}\" CASCADE",
                    table.replace('"', "\"\"")
                )))
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(tables.len())
        }
    }
}

fn sqlite_options(path: &Path) -> Result<SqliteConnectOptions, StoreError> {
    Ok(SqliteConnectOptions::from_str("sqlite://")
        .map_err(|error| StoreError::Config(error.to_string()))?
        .filename(path)
        .busy_timeout(CONNECT_TIMEOUT))
}

fn postgres_options(url: &str) -> Result<PgConnectOptions, StoreError> {
    PgConnectOptions::from_str(url)
        .map_err(|error| StoreError::Config(format!("invalid DATABASE_URL: {error}")))
}
