//! Backups and restores of the whole database, in one file that either backend reads: a
//! backup of SQLite restores into PostgreSQL and back (the way from the embedded default to
//! scale-out). `dms backup` and `dms restore` (`cli/backup.rs`) only parse arguments and draw
//! progress; everything else is here.
//!
//! # The file
//!
//! Gzip of JSON lines (read one with `zcat FILE | head -1`):
//!
//! 1. A header: `{"format":"dms-backup","format_version":1,"dms_version":…,"backend":"sqlite",
//!    "migrations":[20261125000000,…],"created_at_ms":…,"created_at":…,"tables":[{"name":
//!    "tenants","rows":2,"columns":[{"name":"id","type":"text"},…]},…]}`.
//! 2. For each table the database has at its migrations ([`TABLES`] says which migration
//!    creates each), in that (dependency) order: a line `{"table":"tenants"}`,
//!    then one JSON array per row with the values in the header's column order: `integer`
//!    columns as JSON numbers, `text` as strings, `bytes` as base64 strings, NULL as `null`.
//! 3. A trailer: `{"end":{"rows":N,"sha256":"…"}}`, the SHA-256 of every line before it, so a
//!    truncated or altered file is refused even where gzip's own CRC would not look.
//!
//! The migration versions stand in for the schema: which tables the file has, and their
//! columns, follow from them (both backends' migrations carry the same versions). A backup
//! never migrates the database it reads, so a database at older migrations (an operator backs
//! up before upgrading) is backed up as it is, with the tables it has then; a table that none
//! of its migrations creates is refused. Times stay Unix milliseconds, ids stay as they were.
//!
//! # Consistency
//!
//! A backup reads every table inside one read transaction on one connection: on PostgreSQL
//! `REPEATABLE READ, READ ONLY` (one snapshot for the whole run, writers never wait); on
//! SQLite a `BEGIN` whose first `SELECT` fixes the snapshot (WAL mode lets the server keep
//! writing meanwhile; its WAL file grows until the backup ends). Rows stream from the database
//! in bounded chunks to a writer thread that hashes, compresses and writes them to
//! `FILE.partial`, renamed to `FILE` only once complete and synced: a failed backup never
//! leaves a half file under the final name.
//!
//! # Sealed values
//!
//! Message content, schedules' message content, webhook secrets and feed events stay sealed: the file carries the
//! ciphertext, which opens only with the key ring of the server that sealed it (the tenant and
//! record ids are bound into each seal, and restores keep every id). Before touching the
//! target database, a restore reads the whole file once, checks it, and opens one sealed
//! value per table and key id with the configured keys; it refuses when any does not open.
//!
//! # Restore
//!
//! Only into an empty database (no row in any table), and only a backup whose migrations are
//! this binary's first ones, in order: the same as this binary's, or older. A backup from a
//! newer dms, or from another history, is refused before anything is written.
//!
//! The restore migrates the target only as far as the backup's last migration (committed at
//! once: the empty tables of the backup's schema, which the columns of the file must match),
//! then, in one transaction, inserts every row with batched inserts and applies the rest of
//! this binary's migrations one by one, which move the restored rows into this binary's
//! schema as they would move a live database's; then it commits. All or nothing: when an
//! insert or a later migration fails, the transaction rolls back, and the target is left
//! empty at the backup's migrations, where the same restore can run again. (A later migration
//! that must run outside a transaction is refused up front; none does yet.) A target that is
//! empty but already migrated past the backup is refused: the rows must go into the backup's
//! schema first.
//!
//! Messages keep their status, due time and lease, so one that was `delivering` is claimed
//! again when its lease passes (delivery is at least once). The schedule index is not in the
//! database; the caller rebuilds it from the restored, migrated rows (see `cli/backup.rs`),
//! and the pending count a restore reports is read from them too.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::TryStreamExt as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::migrate::Migration;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::sqlite::SqliteConnection;
use sqlx::{AssertSqlSafe, ConnectOptions as _, Connection as _, Row as _};
use tokio::sync::mpsc;

use super::crypto::{CryptoError, Keyring, Sealed};
use super::{Location, StoreError};
use crate::clock::{Clock, rfc3339};
use crate::domain::ids::UserId;

/// The `format` of a backup's header.
pub const FORMAT: &str = "dms-backup";
/// The layout version of the file; a restore reads only this one.
pub const FORMAT_VERSION: u32 = 1;

/// A table of the schema, and the migration that creates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Table {
    /// Its name.
    pub name: &'static str,
    /// The version of the migration that creates it: a database, or a backup, has the table
    /// exactly when it has that migration.
    pub since: i64,
}

const fn table(name: &'static str, since: i64) -> Table {
    Table { name, since }
}

/// Every table any migration creates, parents before children, so inserts in this order
/// satisfy every foreign key. A database, or a backup, has those whose migration it has: a
/// database at older migrations is backed up with the tables it has then. A backup refuses a
/// database with a table none of its migrations creates here (a migration that added one
/// without adding it here), rather than silently leave it out. (No migration drops a table
/// yet; the unit tests below fail when one does, as this list would then need to say when.)
pub const TABLES: &[Table] = &[
    table("tenants", 20261125000000),
    table("users", 20261125000000),
    table("sessions", 20261125000000),
    table("refresh_tokens", 20261125000000),
    table("messages", 20261125000001),
    table("message_states", 20261214000000),
    table("message_counts", 20261214000000),
    table("message_events", 20261125000001),
    table("idempotency_keys", 20261125000001),
    table("webhooks", 20261125000001),
    table("webhook_secrets", 20261125000001),
    table("feed_heads", 20261125000002),
    table("feed_events", 20261125000002),
    table("plugins", 20261125000003),
    table("hook_bindings", 20261125000003),
    table("groups", 20261215000000),
    table("group_members", 20261215000000),
    table("fan_outs", 20261215000000),
    table("schedules", 20261215000001),
    table("schedule_runs", 20261215000001),
    table("callbacks", 20261215000002),
    table("flow_limits", 20261215000003),
];

/// The tables of a database, or a backup, at `migrations`, in [`TABLES`] order.
fn tables_at(migrations: &[i64]) -> Vec<&'static str> {
    TABLES
        .iter()
        .filter(|table| migrations.contains(&table.since))
        .map(|table| table.name)
        .collect()
}

/// Values bound per insert statement at most: SQLite allows 32,766 and PostgreSQL 65,535;
/// well below both, a batch still carries hundreds of rows.
const BATCH_VALUES: usize = 8_000;
/// Bytes of values per insert statement at most, so a batch of plugin components (up to
/// `plugin_max_upload_mb` each) stays a bounded amount of memory.
const BATCH_BYTES: usize = 4 << 20;
/// The backup hands its lines to the writer thread in chunks of about this many bytes, at most
/// [`CHUNKS_IN_FLIGHT`] at once: memory stays bounded by a few chunks (or a few rows, when rows
/// are plugin components of megabytes), and the database read overlaps the compression.
const CHUNK_BYTES: usize = 64 << 10;
/// Chunks queued for the writer thread.
const CHUNKS_IN_FLIGHT: usize = 8;

/// Why a backup or a restore failed. Nothing was written to the target database in any case;
/// a failed backup leaves no file under the name asked for.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A backup was asked of a SQLite database that does not exist.
    #[error("there is no database at {0} (is DMS_DATA_DIR right?)")]
    NoDatabase(PathBuf),
    /// The database location is unusable.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The database failed. (Not a `#[source]`: the text already carries sqlx's, and error
    /// chains would print it twice.)
    #[error("database error: {0}")]
    Database(sqlx::Error),
    /// Migrating the target database failed.
    #[error("database migration failed: {0}")]
    Migrate(sqlx::migrate::MigrateError),
    /// A stored value does not have its column's type (SQLite stores what it is given).
    #[error("cannot read {table}.{column}: {reason}")]
    Decode {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// Why.
        reason: String,
    },
    /// The database has a table that none of its migrations creates (as [`TABLES`] says).
    #[error(
        "the database has a table this dms does not know how to back up: {0} (no migration the database has creates it; a table of a new migration must be added to store::backup::TABLES)"
    )]
    UnknownTable(String),
    /// A column has a type backups do not carry.
    #[error("column {table}.{column} has type {kind}, which backups do not carry")]
    UnknownType {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// Its declared type.
        kind: String,
    },
    /// The file is not a complete, unaltered DMS backup.
    #[error("{path} is not a usable DMS backup: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        reason: String,
    },
    /// The backup's migrations are not this binary's first ones: it comes from a newer dms, or
    /// from another history.
    #[error(
        "the backup was made at migrations {file:?} (dms {dms_version}), but this dms has migrations {binary:?}: restore with a dms whose migrations begin with the backup's (the version that made it, or a later one)"
    )]
    Migrations {
        /// The backup's migration versions.
        file: Vec<i64>,
        /// This binary's.
        binary: Vec<i64>,
        /// The version of dms that made the backup.
        dms_version: String,
    },
    /// The backup was made before a migration that cannot run inside the restore's
    /// transaction, so the restore cannot apply it to the restored rows.
    #[error(
        "the backup was made before migration {version} ({description}), which runs outside a transaction, so a restore cannot apply it to the restored rows: restore with dms {dms_version} (which made the backup), then start this dms on the database to migrate it"
    )]
    Unmigratable {
        /// The migration.
        version: i64,
        /// What it does.
        description: String,
        /// The version of dms that made the backup.
        dms_version: String,
    },
    /// The (empty) target database already has migrations the backup does not.
    #[error(
        "the target database is empty but already migrated past the backup (it has migrations {extra:?}; the backup's last is {last}): restore into a database that was never migrated, e.g. a new DMS_DATA_DIR or a new PostgreSQL database"
    )]
    TargetMigrated {
        /// The target's migrations the backup does not have.
        extra: Vec<i64>,
        /// The backup's last migration.
        last: i64,
    },
    /// A migration after the backup's failed on the restored rows; the restore rolled back.
    #[error(
        "migration {version} ({description}) failed on the restored rows: {error}; the restore rolled back, and the target database is empty, migrated only as far as the backup (its last migration, {last}): run the same restore again once the cause is fixed"
    )]
    LaterMigration {
        /// The migration.
        version: i64,
        /// What it does.
        description: String,
        /// The backup's last migration.
        last: i64,
        /// Why it failed. (Not a `#[source]`, as [`Self::Database`].)
        error: sqlx::migrate::MigrateError,
    },
    /// The target database has data.
    #[error(
        "the target database is not empty (table {table} has {rows} rows): restore only into an empty database, e.g. a new DMS_DATA_DIR or a new PostgreSQL database"
    )]
    NotEmpty {
        /// A table with rows.
        table: String,
        /// How many.
        rows: i64,
    },
    /// A table's columns differ between the file and the database.
    #[error("table {table} differs between the backup and the database: {reason}")]
    Schema {
        /// The table.
        table: String,
        /// How.
        reason: String,
    },
    /// The configured keys cannot open the backup's sealed values.
    #[error(
        "the configured encryption keys cannot open the backup's sealed {table} (key {key_id:?}): {source}; restore with the DMS_ENCRYPTION_KEYS (or the data_dir/encryption-keys file) of the server that made the backup"
    )]
    Keys {
        /// The table of the value.
        table: String,
        /// The key that sealed it.
        key_id: String,
        /// Why it did not open.
        source: CryptoError,
    },
    /// A worker thread of the backup or restore stopped unexpectedly.
    #[error("the {0} thread stopped unexpectedly")]
    Thread(&'static str),
}

impl BackupError {
    /// True when what was asked cannot be done (a damaged or foreign file, a target with data,
    /// keys that do not open the backup, no database to back up), as opposed to a failure of
    /// the database or the disk on the way.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Self::NoDatabase(_)
                | Self::Corrupt { .. }
                | Self::Migrations { .. }
                | Self::Unmigratable { .. }
                | Self::TargetMigrated { .. }
                | Self::NotEmpty { .. }
                | Self::Keys { .. }
        )
    }
}

impl From<sqlx::Error> for BackupError {
    fn from(error: sqlx::Error) -> Self {
        Self::Database(error)
    }
}

impl From<sqlx::migrate::MigrateError> for BackupError {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        Self::Migrate(error)
    }
}

/// A row's value that did not decode as its column's kind.
fn decode_error(table: &str, column: &str, error: sqlx::Error) -> BackupError {
    let reason = match &error {
        sqlx::Error::ColumnDecode { source, .. } => source.to_string(),
        other => other.to_string(),
    };
    BackupError::Decode {
        table: table.to_owned(),
        column: column.to_owned(),
        reason,
    }
}

/// Where a long run reports how far it is (the CLI draws a bar; tests pass [`Silent`]).
pub trait Progress: Send + Sync {
    /// A phase of `total` rows starts: `backup`, `verify` or `restore`.
    fn begin(&self, phase: &'static str, total: u64);
    /// `rows` more rows of `table` are done.
    fn advance(&self, table: &str, rows: u64);
    /// The phase ended.
    fn end(&self);
}

/// Reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Progress for Silent {
    fn begin(&self, _phase: &'static str, _total: u64) {}
    fn advance(&self, _table: &str, _rows: u64) {}
    fn end(&self) {}
}

/// What a backup or restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The backend read from (backup) or written to (restore).
    pub backend: &'static str,
    /// The backend the file came from.
    pub source_backend: String,
    /// The migrations of the database backed up, which the file records.
    pub migrations: Vec<i64>,
    /// Rows per table of the file, in [`TABLES`] order.
    pub tables: Vec<(String, u64)>,
    /// The migrations a restore applied after inserting the rows (version and description),
    /// when the backup was made at older migrations than this dms has; none for a backup.
    pub migrated: Vec<(i64, String)>,
    /// Bytes of the file.
    pub bytes: u64,
    /// After a restore, the messages the schedule index must hold (scheduled, retrying or
    /// delivering), counted in the restored and migrated database. `None` for a backup, which
    /// also reads databases at older migrations and does not interpret their rows.
    pub pending: Option<u64>,
    /// How long it took.
    pub elapsed: Duration,
}

impl Summary {
    /// Rows in all tables.
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|(_, rows)| rows).sum()
    }
}

/// How a column's values are carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A 64-bit signed integer.
    Integer,
    /// UTF-8 text.
    Text,
    /// Bytes (base64 in the file).
    Bytes,
}

/// A column of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    /// Its name.
    pub name: String,
    /// Its values' kind.
    #[serde(rename = "type")]
    pub kind: Kind,
}

/// A table in the header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableHeader {
    /// Its name.
    pub name: String,
    /// Its rows in the file.
    pub rows: u64,
    /// Its columns, in the order of each row's values.
    pub columns: Vec<Column>,
}

/// The first line of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`] when written.
    pub format_version: u32,
    /// The version of dms that wrote it.
    pub dms_version: String,
    /// The backend it was read from.
    pub backend: String,
    /// The migration versions applied to the database, ascending.
    pub migrations: Vec<i64>,
    /// When the snapshot was taken (Unix ms).
    pub created_at_ms: u64,
    /// The same, RFC 3339, for people.
    pub created_at: String,
    /// The tables the database has at those migrations, in [`TABLES`] order.
    pub tables: Vec<TableHeader>,
}

#[derive(Serialize, Deserialize)]
struct TableMarker {
    table: String,
}

#[derive(Serialize, Deserialize)]
struct Trailer {
    end: TrailerBody,
}

#[derive(Serialize, Deserialize)]
struct TrailerBody {
    rows: u64,
    sha256: String,
}

/// A value of a row.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Null,
    Integer(i64),
    Text(String),
    Bytes(Vec<u8>),
}

impl Value {
    /// Roughly how many bytes it holds, to size batches.
    fn size(&self) -> usize {
        match self {
            Self::Null | Self::Integer(_) => 8,
            Self::Text(text) => text.len(),
            Self::Bytes(bytes) => bytes.len(),
        }
    }

    fn parse(value: serde_json::Value, kind: Kind) -> Result<Self, String> {
        use serde_json::Value as Json;
        match (value, kind) {
            (Json::Null, _) => Ok(Self::Null),
            (Json::Number(number), Kind::Integer) => number
                .as_i64()
                .map(Self::Integer)
                .ok_or_else(|| format!("{number} is not a 64-bit integer")),
            (Json::String(text), Kind::Text) => Ok(Self::Text(text)),
            (Json::String(text), Kind::Bytes) => base64::engine::general_purpose::STANDARD
                .decode(text)
                .map(Self::Bytes)
                .map_err(|error| format!("bad base64: {error}")),
            (other, kind) => Err(format!("{other} is not a {kind:?} value")),
        }
    }
}

/// A connection of either backend: the code below runs the same statements on both, written
/// once and type-checked per backend by [`on_backend!`].
enum Conn {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

/// Runs `$body` with `$c` bound to the backend's connection and `Db` naming its sqlx database
/// type, as `sql.rs`'s `impl_store!` does for the store.
macro_rules! on_backend {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            Conn::Sqlite($c) => {
                #[allow(unused, reason = "not every body names the database type")]
                type Db = sqlx::Sqlite;
                $body
            }
            Conn::Postgres($c) => {
                #[allow(unused, reason = "not every body names the database type")]
                type Db = sqlx::Postgres;
                $body
            }
        }
    };
}

/// What differs between the backends' SQL.
struct Dialect {
    name: &'static str,
    /// Starts the backup's read snapshot.
    begin_snapshot: &'static str,
    /// Starts the restore's write transaction (SQLite: take the write lock at once).
    begin_write: &'static str,
    /// The schema's table names.
    tables: &'static str,
    /// A table's columns and declared types, in order; `$1` is the table.
    columns: &'static str,
    /// Run after a restore's inserts (sequences must continue after the restored ids).
    after_restore: Option<&'static str>,
    kind: fn(&str) -> Option<Kind>,
    migrator: &'static sqlx::migrate::Migrator,
}

const SQLITE: Dialect = Dialect {
    name: "sqlite",
    begin_snapshot: "BEGIN",
    begin_write: "BEGIN IMMEDIATE",
    tables: "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
    columns: "SELECT name, type FROM pragma_table_info($1) ORDER BY cid",
    // AUTOINCREMENT records the largest id inserted, explicit ones included.
    after_restore: None,
    kind: |declared| {
        let declared = declared.to_ascii_uppercase();
        if declared.contains("INT") {
            Some(Kind::Integer)
        } else if declared == "TEXT" {
            Some(Kind::Text)
        } else if declared == "BLOB" {
            Some(Kind::Bytes)
        } else {
            None
        }
    },
    migrator: &super::sqlite::MIGRATIONS,
};

const POSTGRES: Dialect = Dialect {
    name: "postgres",
    begin_snapshot: "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
    begin_write: "BEGIN",
    tables: "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY 1",
    columns: "SELECT column_name::text, data_type::text FROM information_schema.columns \
              WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
    after_restore: Some(
        "SELECT setval(pg_get_serial_sequence('message_events', 'id'), \
         COALESCE((SELECT MAX(id) FROM message_events), 0) + 1, false)",
    ),
    kind: |declared| match declared {
        "bigint" => Some(Kind::Integer),
        "text" => Some(Kind::Text),
        "bytea" => Some(Kind::Bytes),
        _ => None,
    },
    migrator: &super::postgres::MIGRATIONS,
};

fn dialect(location: &Location<'_>) -> &'static Dialect {
    match location {
        Location::Sqlite(_) => &SQLITE,
        Location::Postgres(_) => &POSTGRES,
    }
}

/// One connection of its own, outside any pool: the backup's snapshot and the restore's
/// transaction each live on exactly one connection. Statement logging is off: reading or
/// filling a whole table is meant to take long, and sqlx would warn of every one as slow.
async fn open(location: &Location<'_>, create: bool) -> Result<Conn, BackupError> {
    match location {
        Location::Sqlite(path) => {
            if !create && !path.is_file() {
                return Err(BackupError::NoDatabase(path.to_path_buf()));
            }
            if create
                && let Some(parent) = path.parent()
                && !parent.as_os_str().is_empty()
                && !parent.is_dir()
            {
                create_private_dir(parent)?;
            }
            let options = super::sqlite::connect_options(path)?
                .create_if_missing(create)
                .disable_statement_logging();
            Ok(Conn::Sqlite(
                SqliteConnection::connect_with(&options)
                    .await
                    .map_err(|error| {
                        StoreError::Unavailable(format!("cannot open {}: {error}", path.display()))
                    })?,
            ))
        }
        Location::Postgres(url) => {
            let options = PgConnectOptions::from_str(url)
                .map_err(|error| StoreError::Config(format!("invalid DATABASE_URL: {error}")))?
                .disable_statement_logging();
            Ok(Conn::Postgres(
                PgConnection::connect_with(&options)
                    .await
                    .map_err(|error| {
                        StoreError::Unavailable(format!("cannot connect to PostgreSQL: {error}"))
                    })?,
            ))
        }
    }
}

fn create_private_dir(dir: &Path) -> Result<(), BackupError> {
    crate::private_files::create_dir(dir).map_err(|source| BackupError::File {
        path: dir.to_path_buf(),
        source,
    })
}

/// `FILE.partial`, beside `FILE`.
fn partial_path(file: &Path) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    file.with_file_name(name)
}

fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// A table's columns, from the database's own catalogue.
macro_rules! columns_of {
    ($c:expr, $db:ty, $dialect:expr, $table:expr) => {{
        let table: &str = $table;
        let rows = sqlx::query::<$db>($dialect.columns)
            .bind(table)
            .fetch_all($c)
            .await?;
        let mut columns = Vec::new();
        for row in rows {
            let name: String = row.try_get(0)?;
            let declared: String = row.try_get(1)?;
            let kind = ($dialect.kind)(&declared).ok_or_else(|| BackupError::UnknownType {
                table: table.to_owned(),
                column: name.clone(),
                kind: declared.clone(),
            })?;
            columns.push(Column { name, kind });
        }
        Ok::<_, BackupError>(columns)
    }};
}

// ---------------------------------------------------------------------------------------------
// Backup

/// What the reading side hands the writer thread.
enum Out {
    /// Whole lines, each ending in a newline.
    Chunk(String),
    /// Everything was sent: write the trailer and finish the file.
    End { rows: u64 },
}

/// Writes a consistent snapshot of the database at `source` to `file` (see the module docs).
pub async fn backup(
    source: Location<'_>,
    file: &Path,
    progress: Arc<dyn Progress>,
) -> Result<Summary, BackupError> {
    let started = Instant::now();
    let dialect = dialect(&source);
    let partial = partial_path(file);
    let mut conn = open(&source, false).await?;
    let (lines, received) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let writer = tokio::task::spawn_blocking({
        let partial = partial.clone();
        move || write_file(&partial, received)
    });
    let dumped = dump(&mut conn, dialect, lines, progress.as_ref()).await;
    let written = writer
        .await
        .map_err(|_| BackupError::Thread("backup writer"));
    on_backend!(conn, c => {
        let _ = c.close().await;
    });
    progress.end();
    let outcome = match (dumped, written) {
        // The writer's failure (a full disk) is the cause of the reader's "writer gone".
        (_, Err(error) | Ok(Err(error))) => Err(error),
        (Err(error), _) => Err(error),
        (Ok(_), Ok(Ok(None))) => Err(BackupError::Thread("backup reader")),
        (Ok(tables), Ok(Ok(Some(bytes)))) => Ok((tables, bytes)),
    };
    let (tables, bytes) = match outcome {
        Ok(done) => done,
        Err(error) => {
            let _ = std::fs::remove_file(&partial);
            return Err(error);
        }
    };
    std::fs::rename(&partial, file).map_err(|source| BackupError::File {
        path: file.to_path_buf(),
        source,
    })?;
    // Make the rename itself durable (best effort: not every platform syncs directories).
    if let Some(parent) = file
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        && let Ok(directory) = File::open(parent)
    {
        let _ = directory.sync_all();
    }
    let (tables, migrations) = tables;
    Ok(Summary {
        backend: dialect.name,
        source_backend: dialect.name.to_owned(),
        migrations,
        tables,
        migrated: Vec::new(),
        bytes,
        pending: None,
        elapsed: started.elapsed(),
    })
}

/// Rows per table, and the database's migrations.
type Dumped = (Vec<(String, u64)>, Vec<i64>);

/// Gathers the backup's lines into chunks for the writer thread.
struct Chunks {
    sender: mpsc::Sender<Out>,
    buffer: String,
}

impl Chunks {
    async fn line(&mut self, line: &str) -> Result<(), BackupError> {
        self.buffer.push_str(line);
        self.buffer.push('\n');
        if self.buffer.len() >= CHUNK_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), BackupError> {
        if !self.buffer.is_empty() {
            let chunk = std::mem::replace(&mut self.buffer, String::with_capacity(CHUNK_BYTES));
            self.send(Out::Chunk(chunk)).await?;
        }
        Ok(())
    }

    /// The last lines, then the end: the writer adds the trailer and finishes the file.
    async fn end(mut self, rows: u64) -> Result<(), BackupError> {
        self.flush().await?;
        self.send(Out::End { rows }).await
    }

    async fn send(&self, out: Out) -> Result<(), BackupError> {
        // The writer only goes away on an error of its own, which is the one reported.
        self.sender
            .send(out)
            .await
            .map_err(|_| BackupError::Thread("backup writer"))
    }
}

/// Reads everything inside one snapshot and sends the file's lines to the writer.
async fn dump(
    conn: &mut Conn,
    dialect: &Dialect,
    lines: mpsc::Sender<Out>,
    progress: &dyn Progress,
) -> Result<Dumped, BackupError> {
    let mut out = Chunks {
        sender: lines,
        buffer: String::with_capacity(CHUNK_BYTES),
    };
    on_backend!(conn, c => {
        sqlx::raw_sql(dialect.begin_snapshot).execute(&mut *c).await?;
        // The first read fixes the snapshot (SQLite); everything after sees the same one.
        let applied = sqlx::query::<Db>("SELECT version, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut *c)
            .await?;
        let mut migrations = Vec::new();
        for row in applied {
            if row.try_get::<bool, _>(1)? {
                migrations.push(row.try_get::<i64, _>(0)?);
            }
        }
        let present: Vec<String> = sqlx::query_scalar::<Db, String>(dialect.tables)
            .fetch_all(&mut *c)
            .await?;
        // The tables the database's migrations create; any other is one this dms cannot read.
        let expected = tables_at(&migrations);
        if let Some(unknown) = present
            .iter()
            .find(|name| *name != "_sqlx_migrations" && !expected.contains(&name.as_str()))
        {
            return Err(BackupError::UnknownTable(unknown.clone()));
        }
        let mut tables = Vec::new();
        for table in expected {
            if !present.iter().any(|name| name == table) {
                return Err(BackupError::Schema {
                    table: table.to_owned(),
                    reason: "the database has no such table (is it migrated?)".into(),
                });
            }
            let columns = columns_of!(&mut *c, Db, dialect, table)?;
            let rows: i64 = sqlx::query_scalar::<Db, i64>(AssertSqlSafe(format!(
                "SELECT COUNT(*) FROM {}",
                quote(table)
            )))
            .fetch_one(&mut *c)
            .await?;
            tables.push(TableHeader {
                name: table.to_owned(),
                rows: u64::try_from(rows).unwrap_or(0),
                columns,
            });
        }
        let created_at_ms = Clock::System.now_ms();
        let header = Header {
            format: FORMAT.to_owned(),
            format_version: FORMAT_VERSION,
            dms_version: env!("CARGO_PKG_VERSION").to_owned(),
            backend: dialect.name.to_owned(),
            migrations: migrations.clone(),
            created_at_ms,
            created_at: rfc3339(created_at_ms),
            tables: tables.clone(),
        };
        out.line(&serde_json::to_string(&header).expect("a header serializes")).await?;
        let total: u64 = tables.iter().map(|table| table.rows).sum();
        progress.begin("backup", total);
        let mut written = 0u64;
        let mut counts = Vec::new();
        for table in &tables {
            out.line(
                &serde_json::to_string(&TableMarker { table: table.name.clone() })
                    .expect("a marker serializes"),
            )
            .await?;
            let names: Vec<String> = table.columns.iter().map(|column| quote(&column.name)).collect();
            let select = format!("SELECT {} FROM {}", names.join(", "), quote(&table.name));
            let mut rows = sqlx::query::<Db>(AssertSqlSafe(select)).fetch(&mut *c);
            let mut count = 0u64;
            let mut unreported = 0u64;
            while let Some(row) = rows.try_next().await? {
                let mut line = String::with_capacity(256);
                line.push('[');
                for (index, column) in table.columns.iter().enumerate() {
                    if index > 0 {
                        line.push(',');
                    }
                    let decode = |error| decode_error(&table.name, &column.name, error);
                    let value = match column.kind {
                        Kind::Integer => row
                            .try_get::<Option<i64>, _>(index)
                            .map_err(decode)?
                            .map(|value| value.to_string()),
                        Kind::Text => row
                            .try_get::<Option<String>, _>(index)
                            .map_err(decode)?
                            .map(|text| serde_json::to_string(&text).expect("text serializes")),
                        Kind::Bytes => row
                            .try_get::<Option<Vec<u8>>, _>(index)
                            .map_err(decode)?
                            .map(|bytes| {
                                format!(
                                    "\"{}\"",
                                    base64::engine::general_purpose::STANDARD.encode(bytes)
                                )
                            }),
                    };
                    line.push_str(value.as_deref().unwrap_or("null"));
                }
                line.push(']');
                out.line(&line).await?;
                count += 1;
                unreported += 1;
                if unreported == 1000 {
                    progress.advance(&table.name, unreported);
                    unreported = 0;
                }
            }
            drop(rows);
            progress.advance(&table.name, unreported);
            if count != table.rows {
                // Only a broken snapshot could change a count inside one transaction.
                return Err(BackupError::Schema {
                    table: table.name.clone(),
                    reason: format!("counted {} rows but read {count}", table.rows),
                });
            }
            written += count;
            counts.push((table.name.clone(), count));
        }
        sqlx::raw_sql("ROLLBACK").execute(&mut *c).await?;
        out.end(written).await?;
        Ok((counts, migrations))
    })
}

/// The writer thread: hashes, compresses and writes the lines to `path` (mode 0600: the file
/// holds password hashes and sealed content), then the trailer, then syncs. `None` when the
/// reader stopped before the end (its error is the one to report).
fn write_file(path: &Path, mut lines: mpsc::Receiver<Out>) -> Result<Option<u64>, BackupError> {
    let io = |source| BackupError::File {
        path: path.to_path_buf(),
        source,
    };
    let file = crate::private_files::create_file(path).map_err(io)?;
    let mut gzip = flate2::write::GzEncoder::new(
        BufWriter::with_capacity(1 << 16, file),
        flate2::Compression::default(),
    );
    let mut hasher = Sha256::new();
    loop {
        match lines.blocking_recv() {
            Some(Out::Chunk(chunk)) => {
                hasher.update(chunk.as_bytes());
                gzip.write_all(chunk.as_bytes()).map_err(io)?;
            }
            Some(Out::End { rows }) => {
                let trailer = Trailer {
                    end: TrailerBody {
                        rows,
                        sha256: hex::encode(hasher.finalize()),
                    },
                };
                let trailer = serde_json::to_string(&trailer).expect("a trailer serializes");
                gzip.write_all(trailer.as_bytes()).map_err(io)?;
                gzip.write_all(b"\n").map_err(io)?;
                let file = gzip
                    .finish()
                    .map_err(io)?
                    .into_inner()
                    .map_err(|error| io(error.into_error()))?;
                file.sync_all().map_err(io)?;
                return Ok(Some(file.metadata().map_err(io)?.len()));
            }
            None => return Ok(None),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reading a file

/// The file's lines, decompressed, counted and hashed.
struct Lines {
    path: PathBuf,
    input: Box<dyn BufRead + Send>,
    number: u64,
    hasher: Sha256,
    line: String,
}

impl Lines {
    fn open(path: &Path) -> Result<Self, BackupError> {
        let file = File::open(path).map_err(|source| BackupError::File {
            path: path.to_path_buf(),
            source,
        })?;
        let gzip = flate2::read::GzDecoder::new(BufReader::with_capacity(1 << 16, file));
        Ok(Self {
            path: path.to_path_buf(),
            input: Box::new(BufReader::with_capacity(1 << 16, gzip)),
            number: 0,
            hasher: Sha256::new(),
            line: String::new(),
        })
    }

    fn corrupt(&self, reason: impl std::fmt::Display) -> BackupError {
        BackupError::Corrupt {
            path: self.path.clone(),
            reason: format!("line {}: {reason}", self.number),
        }
    }

    /// The next line, without its newline; `hash` adds it to the running digest (every line
    /// but the trailer).
    fn next(&mut self, hash: bool) -> Result<Option<&str>, BackupError> {
        self.line.clear();
        self.number += 1;
        let read = self
            .input
            .read_line(&mut self.line)
            .map_err(|error| self.corrupt(error))?;
        if read == 0 {
            return Ok(None);
        }
        if !self.line.ends_with('\n') {
            return Err(self.corrupt("the file ends in the middle of a line (truncated)"));
        }
        if hash {
            self.hasher.update(self.line.as_bytes());
        }
        Ok(Some(self.line.trim_end_matches('\n')))
    }

    /// The next line, which must exist; `what` names it in the error.
    fn expect(&mut self, what: &str) -> Result<String, BackupError> {
        match self.next(true)? {
            Some(line) => Ok(line.to_owned()),
            None => Err(self.corrupt(format!("the file ends before {what} (truncated)"))),
        }
    }

    fn header(&mut self) -> Result<Header, BackupError> {
        let line = match self.next(true) {
            Ok(Some(line)) => line.to_owned(),
            Ok(None) => return Err(self.corrupt("the file is empty")),
            Err(error) => return Err(error),
        };
        let header: Header = serde_json::from_str(&line)
            .map_err(|error| self.corrupt(format!("not a DMS backup header: {error}")))?;
        if header.format != FORMAT {
            return Err(self.corrupt(format!("format {:?}, not {FORMAT:?}", header.format)));
        }
        if header.format_version != FORMAT_VERSION {
            return Err(self.corrupt(format!(
                "format version {} (dms {}); this dms reads version {FORMAT_VERSION}",
                header.format_version, header.dms_version
            )));
        }
        Ok(header)
    }

    fn table_marker(&mut self, table: &TableHeader) -> Result<(), BackupError> {
        let line = self.expect(&format!("table {}", table.name))?;
        match serde_json::from_str::<TableMarker>(&line) {
            Ok(marker) if marker.table == table.name => Ok(()),
            _ => Err(self.corrupt(format!("expected the start of table {}", table.name))),
        }
    }

    fn row(&mut self, table: &TableHeader) -> Result<Vec<Value>, BackupError> {
        let line = self.expect(&format!("the {} rows of table {}", table.rows, table.name))?;
        let values: Vec<serde_json::Value> = serde_json::from_str(&line)
            .map_err(|error| self.corrupt(format!("a row of {}: {error}", table.name)))?;
        if values.len() != table.columns.len() {
            return Err(self.corrupt(format!(
                "a row of {} has {} values for {} columns",
                table.name,
                values.len(),
                table.columns.len()
            )));
        }
        values
            .into_iter()
            .zip(&table.columns)
            .map(|(value, column)| {
                Value::parse(value, column.kind).map_err(|reason| {
                    self.corrupt(format!("{}.{}: {reason}", table.name, column.name))
                })
            })
            .collect()
    }

    /// The trailer, checked against the rows read and the digest of the lines; then the end of
    /// the file (where gzip checks its CRC).
    fn trailer(&mut self, rows: u64) -> Result<(), BackupError> {
        let digest = hex::encode(self.hasher.clone().finalize());
        let line = match self.next(false)? {
            Some(line) => line.to_owned(),
            None => return Err(self.corrupt("the file ends before its trailer (truncated)")),
        };
        let trailer: Trailer = serde_json::from_str(&line)
            .map_err(|_| self.corrupt("expected the trailer after the last table"))?;
        if trailer.end.rows != rows {
            return Err(self.corrupt(format!(
                "the trailer counts {} rows, the tables {rows}",
                trailer.end.rows
            )));
        }
        if trailer.end.sha256 != digest {
            return Err(
                self.corrupt("the SHA-256 of the contents does not match the trailer (altered)")
            );
        }
        if self.next(false)?.is_some() {
            return Err(self.corrupt("more data after the trailer"));
        }
        Ok(())
    }
}

/// Why a row failed the key check.
enum CheckError {
    /// The row lacks what a sealed value needs.
    Corrupt(String),
    /// The configured keys do not open it.
    Keys {
        table: String,
        key_id: String,
        source: CryptoError,
    },
}

/// Opens the first sealed value of each table and key id with the configured keys.
struct KeyCheck<'a> {
    keyring: &'a Keyring,
    checked: BTreeSet<(String, String)>,
    /// Webhook owners' tenants, for the secrets' associated data.
    webhook_tenants: HashMap<String, String>,
}

impl KeyCheck<'_> {
    fn row(&mut self, table: &TableHeader, row: &[Value]) -> Result<(), CheckError> {
        let get = |name: &str| -> Option<&Value> {
            table
                .columns
                .iter()
                .position(|column| column.name == name)
                .map(|index| &row[index])
        };
        let missing = |name: &str| CheckError::Corrupt(format!("{}.{name} is missing", table.name));
        let text = |name: &str| match get(name) {
            Some(Value::Text(text)) => Ok(text.clone()),
            _ => Err(missing(name)),
        };
        let bytes = |name: &str| match get(name) {
            Some(Value::Bytes(bytes)) => Ok(bytes.clone()),
            _ => Err(missing(name)),
        };
        let (tenant, record, value) = match table.name.as_str() {
            "webhooks" => {
                self.webhook_tenants
                    .insert(text("user_id")?, text("tenant_id")?);
                return Ok(());
            }
            "messages" | "schedules" => (text("tenant_id")?, text("id")?, "content"),
            "callbacks" => (
                text("tenant_id")?,
                format!("callback:{}", text("user_id")?),
                "secrets",
            ),
            "webhook_secrets" => {
                let user = text("user_id")?;
                let tenant = self.webhook_tenants.get(&user).cloned().ok_or_else(|| {
                    CheckError::Corrupt(format!("a webhook secret of {user}, who has no webhook"))
                })?;
                (tenant, text("id")?, "secret")
            }
            "feed_events" => {
                let user = UserId::from_str(&text("user_id")?)
                    .map_err(|error| CheckError::Corrupt(error.to_string()))?;
                let cursor = match get("cursor_no") {
                    Some(Value::Integer(cursor)) => u64::try_from(*cursor).unwrap_or(0),
                    _ => return Err(missing("cursor_no")),
                };
                (
                    text("tenant_id")?,
                    super::rows::feed_record(&user, cursor),
                    "body",
                )
            }
            _ => return Ok(()),
        };
        let key_id = text("key_id")?;
        if !self.checked.insert((table.name.clone(), key_id.clone())) {
            return Ok(());
        }
        let sealed = Sealed {
            key_id,
            nonce: bytes("nonce")?,
            ciphertext: bytes(value)?,
        };
        self.keyring
            .open(&tenant, &record, &sealed)
            .map(drop)
            .map_err(|source| CheckError::Keys {
                table: table.name.clone(),
                key_id: sealed.key_id,
                source,
            })
    }
}

/// Reads the whole file once: format, migrations, tables, counts, digest, and that the keys
/// open its sealed values. The header, and the migrations to apply after its rows.
fn verify(
    path: &Path,
    keyring: &Keyring,
    dialect: &'static Dialect,
    progress: &dyn Progress,
) -> Result<(Header, Vec<&'static Migration>), BackupError> {
    let mut lines = Lines::open(path)?;
    let header = lines.header()?;
    let later = later_migrations(dialect, &header)?;
    let names: Vec<&str> = header
        .tables
        .iter()
        .map(|table| table.name.as_str())
        .collect();
    let expected = tables_at(&header.migrations);
    if names != expected {
        return Err(lines.corrupt(format!(
            "tables {names:?}, but a database at its migrations has {expected:?}"
        )));
    }
    progress.begin("verify", header.tables.iter().map(|table| table.rows).sum());
    let mut keys = KeyCheck {
        keyring,
        checked: BTreeSet::new(),
        webhook_tenants: HashMap::new(),
    };
    let mut rows = 0u64;
    for table in &header.tables {
        lines.table_marker(table)?;
        for done in 0..table.rows {
            let row = lines.row(table)?;
            match keys.row(table, &row) {
                Ok(()) => {}
                Err(CheckError::Corrupt(reason)) => return Err(lines.corrupt(reason)),
                Err(CheckError::Keys {
                    table,
                    key_id,
                    source,
                }) => {
                    return Err(BackupError::Keys {
                        table,
                        key_id,
                        source,
                    });
                }
            }
            if (done + 1) % 1000 == 0 {
                progress.advance(&table.name, 1000);
            }
        }
        progress.advance(&table.name, table.rows % 1000);
        rows += table.rows;
    }
    lines.trailer(rows)?;
    progress.end();
    Ok((header, later))
}

/// The migrations a restore of a backup made at `header`'s migrations applies after its rows:
/// this binary's after the backup's last. Refused unless the backup's migrations are this
/// binary's first ones, in order (a backup of a newer dms, or of another history, is not), or
/// when one of the later migrations cannot run inside the restore's transaction.
fn later_migrations(
    dialect: &'static Dialect,
    header: &Header,
) -> Result<Vec<&'static Migration>, BackupError> {
    let binary: Vec<&'static Migration> = dialect
        .migrator
        .iter()
        .filter(|migration| !migration.migration_type.is_down_migration())
        .collect();
    let versions: Vec<i64> = binary.iter().map(|migration| migration.version).collect();
    if header.migrations.is_empty() || !versions.starts_with(&header.migrations) {
        return Err(BackupError::Migrations {
            file: header.migrations.clone(),
            binary: versions,
            dms_version: header.dms_version.clone(),
        });
    }
    let later = binary[header.migrations.len()..].to_vec();
    if let Some(migration) = later.iter().find(|migration| migration.no_tx) {
        return Err(BackupError::Unmigratable {
            version: migration.version,
            description: migration.description.to_string(),
            dms_version: header.dms_version.clone(),
        });
    }
    Ok(later)
}

// ---------------------------------------------------------------------------------------------
// Restore

/// Rows of one table to insert together.
struct Batch {
    table: usize,
    rows: Vec<Vec<Value>>,
}

/// Restores the backup in `file` into the empty database at `target` (see the module docs).
pub async fn restore(
    file: &Path,
    target: Location<'_>,
    keyring: Arc<Keyring>,
    progress: Arc<dyn Progress>,
) -> Result<Summary, BackupError> {
    let started = Instant::now();
    let dialect = dialect(&target);
    let (header, later) = tokio::task::spawn_blocking({
        let file = file.to_path_buf();
        let progress = progress.clone();
        move || verify(&file, &keyring, dialect, progress.as_ref())
    })
    .await
    .map_err(|_| BackupError::Thread("restore reader"))??;
    let mut conn = open(&target, true).await?;
    let result = fill(&mut conn, dialect, file, &header, &later, progress.as_ref()).await;
    on_backend!(conn, c => {
        let _ = c.close().await;
    });
    progress.end();
    let pending = result?;
    Ok(Summary {
        backend: dialect.name,
        source_backend: header.backend.clone(),
        migrations: header.migrations.clone(),
        tables: header
            .tables
            .iter()
            .map(|table| (table.name.clone(), table.rows))
            .collect(),
        migrated: later
            .iter()
            .map(|migration| (migration.version, migration.description.to_string()))
            .collect(),
        bytes: std::fs::metadata(file).map(|meta| meta.len()).unwrap_or(0),
        pending: Some(pending),
        elapsed: started.elapsed(),
    })
}

/// Checks the target is empty and not migrated past the backup, migrates it to the backup's
/// migrations, then in one transaction inserts every row and applies the `later` migrations
/// (which bring the rows to this binary's schema). The count of pending messages.
async fn fill(
    conn: &mut Conn,
    dialect: &Dialect,
    file: &Path,
    header: &Header,
    later: &[&'static Migration],
    progress: &dyn Progress,
) -> Result<u64, BackupError> {
    let last = *header
        .migrations
        .last()
        .expect("later_migrations refuses a backup without migrations");
    on_backend!(conn, c => {
        let present: Vec<String> = sqlx::query_scalar::<Db, String>(dialect.tables)
            .fetch_all(&mut *c)
            .await?;
        for table in TABLES {
            if present.iter().any(|name| name == table.name) {
                let rows: i64 = sqlx::query_scalar::<Db, i64>(AssertSqlSafe(format!(
                    "SELECT COUNT(*) FROM {}",
                    quote(table.name)
                )))
                .fetch_one(&mut *c)
                .await?;
                if rows > 0 {
                    return Err(BackupError::NotEmpty {
                        table: table.name.to_owned(),
                        rows,
                    });
                }
            }
        }
        if present.iter().any(|name| name == "_sqlx_migrations") {
            let applied: Vec<i64> = sqlx::query_scalar::<Db, i64>(
                "SELECT version FROM _sqlx_migrations ORDER BY version",
            )
            .fetch_all(&mut *c)
            .await?;
            let extra: Vec<i64> = applied
                .into_iter()
                .filter(|version| !header.migrations.contains(version))
                .collect();
            if !extra.is_empty() {
                return Err(BackupError::TargetMigrated { extra, last });
            }
        }
        // The schema the rows were read from (committed now: a failure below leaves the target
        // empty at these migrations, which the same restore takes again).
        dialect.migrator.run_to(last, &mut *c).await?;
        for table in &header.tables {
            let mut have = columns_of!(&mut *c, Db, dialect, &table.name)?;
            let mut want = table.columns.clone();
            have.sort_by(|a, b| a.name.cmp(&b.name));
            want.sort_by(|a, b| a.name.cmp(&b.name));
            if have != want {
                return Err(BackupError::Schema {
                    table: table.name.clone(),
                    reason: format!("the backup has columns {want:?}, the database {have:?}"),
                });
            }
        }

        let (batches, mut received) = mpsc::channel::<Batch>(2);
        let reader = tokio::task::spawn_blocking({
            let file = file.to_path_buf();
            let header = header.clone();
            move || read_batches(&file, &header, &batches)
        });
        progress.begin("restore", header.tables.iter().map(|table| table.rows).sum());
        // sqlx's own transaction, not a raw `BEGIN`: the migrations below then nest theirs
        // inside it as savepoints.
        let mut tx = c.begin_with(dialect.begin_write).await?;
        let inserted: Result<(), BackupError> = async {
            while let Some(batch) = received.recv().await {
                let table = &header.tables[batch.table];
                let count = batch.rows.len() as u64;
                let width = table.columns.len();
                let names: Vec<String> = table.columns.iter().map(|column| quote(&column.name)).collect();
                let mut sql = format!("INSERT INTO {} ({}) VALUES ", quote(&table.name), names.join(", "));
                for row in 0..batch.rows.len() {
                    if row > 0 {
                        sql.push_str(", ");
                    }
                    sql.push('(');
                    for column in 0..width {
                        if column > 0 {
                            sql.push_str(", ");
                        }
                        sql.push_str(&format!("${}", row * width + column + 1));
                    }
                    sql.push(')');
                }
                let mut query = sqlx::query::<Db>(AssertSqlSafe(sql));
                for row in batch.rows {
                    for (value, column) in row.into_iter().zip(&table.columns) {
                        query = match (value, column.kind) {
                            (Value::Null, Kind::Integer) => query.bind(None::<i64>),
                            (Value::Null, Kind::Text) => query.bind(None::<String>),
                            (Value::Null, Kind::Bytes) => query.bind(None::<Vec<u8>>),
                            (Value::Integer(value), _) => query.bind(value),
                            (Value::Text(value), _) => query.bind(value),
                            (Value::Bytes(value), _) => query.bind(value),
                        };
                    }
                }
                query.execute(&mut *tx).await?;
                progress.advance(&table.name, count);
            }
            // The reader's verdict: the file must have read to its checked end again.
            reader
                .await
                .map_err(|_| BackupError::Thread("restore reader"))??;
            if let Some(statement) = dialect.after_restore {
                sqlx::raw_sql(statement).execute(&mut *tx).await?;
            }
            // The migrations the backup predates, one at a time, on the rows just inserted and
            // in the same transaction: the restore commits at this binary's schema or not at all.
            for migration in later {
                dialect
                    .migrator
                    .run_to(migration.version, &mut *tx)
                    .await
                    .map_err(|error| BackupError::LaterMigration {
                        version: migration.version,
                        description: migration.description.to_string(),
                        last,
                        error,
                    })?;
            }
            Ok(())
        }
        .await;
        if let Err(error) = inserted {
            let _ = tx.rollback().await;
            return Err(error);
        }
        tx.commit().await?;
        let pending: i64 = sqlx::query_scalar::<Db, i64>(
            "SELECT COUNT(*) FROM message_states WHERE status IN ('scheduled', 'retrying', 'delivering')",
        )
        .fetch_one(&mut *c)
        .await?;
        Ok(u64::try_from(pending).unwrap_or(0))
    })
}

/// The restore's reader thread: the file again, in batches, checked to its trailer as
/// [`verify`] did (a file changed between the two reads fails here, and the transaction rolls
/// back).
fn read_batches(
    path: &Path,
    expected: &Header,
    batches: &mpsc::Sender<Batch>,
) -> Result<(), BackupError> {
    let mut lines = Lines::open(path)?;
    let header = lines.header()?;
    if header != *expected {
        return Err(lines.corrupt("the file changed while it was being restored"));
    }
    let mut rows = 0u64;
    for (index, table) in header.tables.iter().enumerate() {
        lines.table_marker(table)?;
        let per_batch = (BATCH_VALUES / table.columns.len().max(1)).max(1);
        let mut batch = Vec::new();
        let mut bytes = 0usize;
        for _ in 0..table.rows {
            let row = lines.row(table)?;
            bytes += row.iter().map(Value::size).sum::<usize>();
            batch.push(row);
            if batch.len() >= per_batch || bytes >= BATCH_BYTES {
                let full = Batch {
                    table: index,
                    rows: std::mem::take(&mut batch),
                };
                bytes = 0;
                if batches.blocking_send(full).is_err() {
                    // The inserting side failed; its error is the one reported.
                    return Ok(());
                }
            }
        }
        if !batch.is_empty()
            && batches
                .blocking_send(Batch {
                    table: index,
                    rows: batch,
                })
                .is_err()
        {
            return Ok(());
        }
        rows += table.rows;
    }
    lines.trailer(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_by_their_column_kind() {
        use serde_json::json;
        assert_eq!(Value::parse(json!(null), Kind::Bytes), Ok(Value::Null));
        assert_eq!(
            Value::parse(json!(-7), Kind::Integer),
            Ok(Value::Integer(-7))
        );
        assert_eq!(
            Value::parse(json!("AAE="), Kind::Bytes),
            Ok(Value::Bytes(vec![0, 1]))
        );
        assert_eq!(
            Value::parse(json!("AAE="), Kind::Text),
            Ok(Value::Text("AAE=".into()))
        );
        assert!(Value::parse(json!("x"), Kind::Integer).is_err());
        assert!(Value::parse(json!(1.5), Kind::Integer).is_err());
        assert!(Value::parse(json!("not base64!"), Kind::Bytes).is_err());
    }

    /// Every table a migration creates is in [`TABLES`] with that migration, on both backends,
    /// and no migration drops or renames one (TABLES would then need to say when).
    #[test]
    fn the_tables_follow_the_migrations() {
        let mut listed: Vec<(String, i64)> = TABLES
            .iter()
            .map(|table| (table.name.to_owned(), table.since))
            .collect();
        listed.sort();
        for migrator in [
            &super::super::sqlite::MIGRATIONS,
            &super::super::postgres::MIGRATIONS,
        ] {
            let mut created = Vec::new();
            for migration in migrator.iter() {
                for line in migration.sql.as_str().lines() {
                    let statement = line.trim().to_ascii_lowercase();
                    assert!(
                        !statement.starts_with("drop table") && !statement.contains("rename to"),
                        "migration {} drops or renames a table: {line}",
                        migration.version
                    );
                    if let Some(rest) = statement.strip_prefix("create table ") {
                        let name = rest.split([' ', '(']).next().unwrap_or_default();
                        created.push((name.to_owned(), migration.version));
                    }
                }
            }
            created.sort();
            assert_eq!(created, listed);
        }
    }

    /// A backup restores when its migrations are this binary's first ones; the rest are then
    /// applied to its rows.
    #[test]
    fn a_restore_applies_the_migrations_after_the_backups() {
        let binary: Vec<i64> = SQLITE.migrator.iter().map(|m| m.version).collect();
        let header = |migrations: &[i64]| Header {
            format: FORMAT.to_owned(),
            format_version: FORMAT_VERSION,
            dms_version: "0.0.0".to_owned(),
            backend: "sqlite".to_owned(),
            migrations: migrations.to_vec(),
            created_at_ms: 0,
            created_at: String::new(),
            tables: Vec::new(),
        };
        let later = |migrations: &[i64]| {
            later_migrations(&SQLITE, &header(migrations))
                .map(|later| later.iter().map(|m| m.version).collect::<Vec<_>>())
        };
        assert_eq!(later(&binary).unwrap(), Vec::<i64>::new());
        let older = &binary[..binary.len() - 1];
        assert_eq!(later(older).unwrap(), [*binary.last().unwrap()]);
        assert_eq!(later(&binary[..1]).unwrap(), binary[1..]);
        // Newer, with a gap, out of order, or none at all: refused.
        let mut newer = binary.clone();
        newer.push(20991231000000);
        let mut gap = binary.clone();
        gap.remove(1);
        let mut swapped = binary.clone();
        swapped.swap(0, 1);
        for refused in [newer, gap, swapped, Vec::new()] {
            assert!(
                matches!(later(&refused), Err(BackupError::Migrations { .. })),
                "{refused:?}"
            );
        }
    }

    #[test]
    fn the_partial_file_sits_beside_the_final_one() {
        assert_eq!(
            partial_path(Path::new("/backups/dms.jsonl.gz")),
            Path::new("/backups/dms.jsonl.gz.partial")
        );
    }
}
