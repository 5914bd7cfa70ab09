//! `dms db check` and `dms db reset`: the database as an operator sees it.
//!
//! Exit codes as [`USAGE`](super::USAGE) says.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use crate::config::Config;
use crate::schedule::redis::RedisSchedule;
use crate::store::{Location, StoreError, admin};

#[derive(Debug, clap::Subcommand)]
pub(super) enum DbCommand {
    /// Connect (without migrating or creating anything) and report the server version, the
    /// round-trip time and whether migrations are pending.
    Check,
    /// Delete every tenant, user, message and plugin, and leave an empty, migrated database.
    /// Stop every `dms serve` node first.
    Reset {
        /// Required: confirms that everything in the database may be deleted.
        #[arg(long = "yes-i-know")]
        yes_i_know: bool,
    },
}

pub(super) async fn run(config: Option<&Path>, command: DbCommand) -> anyhow::Result<ExitCode> {
    let config = Config::load(config)?;
    let sqlite = config.sqlite_path();
    let location = match config.database_url.expose() {
        Some(url) => Location::Postgres(url),
        None => Location::Sqlite(&sqlite),
    };
    match command {
        DbCommand::Check => match admin::check(location).await {
            Ok(report) => {
                println!("database: ok ({})", report.backend);
                println!("  version: {}", report.version);
                println!("  latency: {:.2} ms", report.latency.as_secs_f64() * 1000.0);
                let pending = report
                    .known_migrations
                    .saturating_sub(report.applied_migrations);
                println!(
                    "  schema: {} of {} migrations applied{}",
                    report.applied_migrations,
                    report.known_migrations,
                    if pending > 0 {
                        " (run `dms migrate`, or start `dms serve`, to apply the rest)"
                    } else {
                        ""
                    }
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(StoreError::Unavailable(reason)) => {
                eprintln!("database: unavailable: {reason}");
                Ok(ExitCode::FAILURE)
            }
            Err(error) => {
                eprintln!("database: unusable: {error}");
                Ok(ExitCode::FAILURE)
            }
        },
        DbCommand::Reset { yes_i_know } => {
            let what = match &location {
                Location::Sqlite(path) => format!("the SQLite database at {}", path.display()),
                Location::Postgres(_) => "the PostgreSQL database of DATABASE_URL".to_owned(),
            };
            if !yes_i_know {
                eprintln!(
                    "refusing to reset {what}: this deletes every tenant, user, message and plugin. \
                     Stop every dms serve node, then run `dms db reset --yes-i-know`."
                );
                return Ok(ExitCode::from(super::USAGE));
            }
            let dropped = admin::reset(location)
                .await
                .with_context(|| format!("cannot reset {what}"))?;
            // Migrate the empty schema, so the database is ready as `dms migrate` leaves it.
            let store = crate::state::open_store(&config).await?;
            if let Some(url) = config.redis_url.expose() {
                let link = crate::redis_link::RedisLink::new(url, &config.redis_prefix)
                    .context("invalid REDIS_URL")?;
                RedisSchedule::new(link.clone()).clear().await.context(
                    "the database is reset, but the schedule index in Redis could not be cleared",
                )?;
                crate::flow::redis::RedisLimiter::new(link)
                    .clear()
                    .await
                    .context("the database is reset, but the flow limiter's state in Redis could not be cleared")?;
            }
            println!(
                "Reset {what}: dropped {dropped} tables and migrated an empty schema ({}).",
                store.backend()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
