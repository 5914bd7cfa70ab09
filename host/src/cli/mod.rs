//! The `dms` command line: one module per command group. Like `main.rs`, this is a binary
//! edge, so it reports errors with `anyhow`.

mod admin;
mod backup;
mod db;
mod healthcheck;
mod logging;
mod plugin;
mod queue;
mod redis;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The exit code of an operator command that cannot run as asked (a setting missing, a
/// destructive command not confirmed, a file that is not a backup). The others: 0 done or
/// passed; 1 a service (database, Redis, disk) is unreachable or failed, the reason on stderr.
const USAGE: u8 = 2;

/// DMS: a delayed messaging server whose policies are sandboxed WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "dms", version, about, long_about = None)]
struct Cli {
    /// A TOML configuration file (see config.default.toml for every setting); also
    /// `DMS_CONFIG`.
    #[arg(long, global = true, value_name = "FILE")]
    config_file: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (with no configuration: SQLite under ./dms-data on 127.0.0.1:3000).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Check or reset the database.
    #[command(subcommand)]
    Db(db::DbCommand),
    /// Check Redis.
    #[command(subcommand)]
    Redis(redis::RedisCommand),
    /// Show the queue.
    #[command(subcommand)]
    Queue(queue::QueueCommand),
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(admin::TenantCommand),
    /// Manage users.
    #[command(subcommand)]
    User(admin::UserCommand),
    /// Exit 0 when a DMS health endpoint answers 2xx (for container health checks).
    Healthcheck(healthcheck::Args),
    /// Write, check and try out policy plugins.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Write a consistent backup of the database to FILE while the server runs.
    Backup(backup::BackupArgs),
    /// Restore a backup into an empty database, then rebuild the schedule index.
    Restore(backup::RestoreArgs),
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: could not start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let config = cli.config_file.as_deref();
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve => serve::serve(config).await,
            Command::Migrate => admin::migrate(config).await,
            Command::Db(command) => db::run(config, command).await,
            Command::Redis(command) => redis::run(config, command).await,
            Command::Queue(command) => queue::run(config, command).await,
            Command::Tenant(command) => admin::tenant(config, command).await,
            Command::User(command) => admin::user(config, command).await,
            Command::Healthcheck(args) => healthcheck::run(&args).await,
            Command::Plugin(command) => plugin::run(command).await,
            Command::Backup(args) => backup::backup(config, args).await,
            Command::Restore(args) => backup::restore(config, args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
