//! `dms backup FILE` and `dms restore FILE`: the command-line edge of
//! [`dms::store::backup`](crate::store::backup), which does the work. This file resolves the
//! configuration (database, keys, Redis), draws the progress bar on stderr, prints the summary
//! on stdout (after a restore of an older backup, also the migrations it applied to the
//! restored rows), and after a restore rebuilds the schedule index where one lives outside the
//! process (Redis). Exit codes as the other operator commands: 1 when the database, the disk or
//! Redis failed, 2 when what was asked cannot be done (a damaged file, a target with data,
//! the wrong keys).

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::config::Config;
use crate::redis_link::RedisLink;
use crate::schedule::{self, redis::RedisSchedule};
use crate::state::{configured_keyring, open_store_with};
use crate::store::Location;
use crate::store::backup::{self, Progress, Summary};

use super::USAGE;

#[derive(Debug, clap::Args)]
pub(super) struct BackupArgs {
    /// Where to write the backup (gzipped JSON lines; written to FILE.partial first, then
    /// renamed, so FILE is only ever complete).
    file: PathBuf,
}

#[derive(Debug, clap::Args)]
pub(super) struct RestoreArgs {
    /// A file written by `dms backup` of this dms or an older one (whose rows are then
    /// migrated). The target database (DMS_DATABASE_URL, or SQLite under DMS_DATA_DIR) must be
    /// empty; there is no flag to restore over data.
    file: PathBuf,
}

pub(super) async fn backup(config: Option<&Path>, args: BackupArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(config)?;
    let sqlite = config.sqlite_path();
    let bar = Bar::new();
    let summary = match backup::backup(location(&config, &sqlite), &args.file, bar).await {
        Ok(summary) => summary,
        Err(error) if error.is_refusal() => {
            eprintln!("error: cannot back up to {}: {error}", args.file.display());
            return Ok(ExitCode::from(USAGE));
        }
        Err(error) => {
            return Err(anyhow::Error::new(error)
                .context(format!("backup to {} failed", args.file.display())));
        }
    };
    println!(
        "Backed up {} to {}: {} ({} rows, {} bytes) in {:.1} s.",
        summary.backend,
        args.file.display(),
        per_table(&summary),
        summary.rows(),
        summary.bytes,
        summary.elapsed.as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn restore(config: Option<&Path>, args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(config)?;
    let Some(keyring) = configured_keyring(&config)? else {
        eprintln!(
            "error: no encryption keys: set DMS_ENCRYPTION_KEYS, or put the encryption-keys file of the server that made the backup in {}",
            config.data_dir.display()
        );
        return Ok(ExitCode::from(USAGE));
    };
    let keyring = Arc::new(keyring);
    let sqlite = config.sqlite_path();
    let bar = Bar::new();
    let restored =
        backup::restore(&args.file, location(&config, &sqlite), keyring.clone(), bar).await;
    let summary = match restored {
        Ok(summary) => summary,
        Err(error) if error.is_refusal() => {
            eprintln!(
                "error: restore of {} refused; no row was written: {error}",
                args.file.display()
            );
            return Ok(ExitCode::from(USAGE));
        }
        Err(error) => {
            return Err(anyhow::Error::new(error).context(format!(
                "restore of {} failed; no row was written",
                args.file.display()
            )));
        }
    };
    println!(
        "Restored {} (from {}) into {}: {} ({} rows) in {:.1} s.",
        args.file.display(),
        summary.source_backend,
        summary.backend,
        per_table(&summary),
        summary.rows(),
        summary.elapsed.as_secs_f64()
    );
    if !summary.migrated.is_empty() {
        println!(
            "The backup was made at older migrations (the last {}); applied to its rows in the same transaction: {}.",
            summary.migrations.last().copied().unwrap_or_default(),
            summary
                .migrated
                .iter()
                .map(|(version, description)| format!("{version} {description}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    match config.redis_url.expose() {
        Some(url) => {
            // The data is committed; a failure here only leaves the index to the servers,
            // which rebuild it when they find it incomplete.
            let link = RedisLink::new(url, &config.redis_prefix).context("invalid REDIS_URL")?;
            let store = open_store_with(&config, keyring).await?;
            let indexed = schedule::rebuild(store.as_ref(), &RedisSchedule::new(link))
                .await
                .context(
                    "the data is restored, but the schedule index in Redis could not be rebuilt (dms serve rebuilds it when it finds it incomplete)",
                )?;
            println!(
                "Schedule index rebuilt in Redis (prefix {}): {indexed} pending messages.",
                config.redis_prefix
            );
        }
        None => println!(
            "Schedule index: kept in process; dms serve rebuilds it from the database at start ({} pending messages).",
            summary.pending.unwrap_or_default()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

fn location<'a>(config: &'a Config, sqlite: &'a Path) -> Location<'a> {
    match config.database_url.expose() {
        Some(url) => Location::Postgres(url),
        None => Location::Sqlite(sqlite),
    }
}

fn per_table(summary: &Summary) -> String {
    summary
        .tables
        .iter()
        .map(|(table, rows)| format!("{table} {rows}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The progress bar: on stderr, hidden when stderr is not a terminal (logs, pipes, cron).
struct Bar {
    bar: ProgressBar,
    terminal: bool,
}

impl Bar {
    fn new() -> Arc<Self> {
        // Hidden until the first phase knows its length, so no empty bar flashes first.
        let bar = ProgressBar::hidden();
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>7} [{bar:30}] {human_pos}/{human_len} rows, {elapsed} elapsed, eta {eta}  {wide_msg}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        Arc::new(Self {
            bar,
            terminal: std::io::stderr().is_terminal(),
        })
    }
}

impl Progress for Bar {
    fn begin(&self, phase: &'static str, total: u64) {
        self.bar.reset();
        self.bar.set_length(total);
        self.bar.set_prefix(phase);
        if self.terminal {
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
        }
    }

    fn advance(&self, table: &str, rows: u64) {
        self.bar.set_message(table.to_owned());
        self.bar.inc(rows);
    }

    fn end(&self) {
        self.bar.finish_and_clear();
    }
}
