//! `dms redis check`: connect to the configured Redis, and report its version, the round-trip
//! time and the size of the schedule index. Exit codes as [`USAGE`](super::USAGE) says.

use std::path::Path;
use std::process::ExitCode;

use crate::config::Config;
use crate::redis_link::RedisLink;
use crate::schedule::Schedule;
use crate::schedule::redis::RedisSchedule;

#[derive(Debug, clap::Subcommand)]
pub(super) enum RedisCommand {
    /// Connect, and report the version, the round-trip time and the schedule index's size.
    Check,
}

pub(super) async fn run(config: Option<&Path>, command: RedisCommand) -> anyhow::Result<ExitCode> {
    let RedisCommand::Check = command;
    let config = Config::load(config)?;
    let Some(url) = config.redis_url.expose() else {
        eprintln!(
            "redis: not configured: REDIS_URL is empty, so this deployment keeps its schedule \
             and rate limits in process and needs no Redis"
        );
        return Ok(ExitCode::from(super::USAGE));
    };
    let link = match RedisLink::new(url, &config.redis_prefix) {
        Ok(link) => link,
        Err(error) => {
            eprintln!("redis: invalid REDIS_URL: {error}");
            return Ok(ExitCode::from(super::USAGE));
        }
    };
    let latency = match link.ping().await {
        Ok(latency) => latency,
        Err(error) => {
            eprintln!("redis: unavailable: {error}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let mut connection = link.connection();
    let info: String = match redis::cmd("INFO")
        .arg("server")
        .query_async(&mut connection)
        .await
    {
        Ok(info) => info,
        Err(error) => {
            eprintln!("redis: INFO failed: {error}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let version = info
        .lines()
        .find_map(|line| line.strip_prefix("redis_version:"))
        .unwrap_or("unknown")
        .trim()
        .to_owned();
    let schedule = RedisSchedule::new(link);
    let entries = match schedule.count().await {
        Ok(entries) => entries,
        Err(error) => {
            eprintln!("redis: cannot read the schedule index: {error}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let intact = schedule.intact().await.unwrap_or(false);
    println!("redis: ok");
    println!("  version: {version}");
    println!("  latency: {:.2} ms", latency.as_secs_f64() * 1000.0);
    println!(
        "  schedule index (prefix {:?}): {entries} messages{}",
        config.redis_prefix,
        if intact {
            ""
        } else {
            " (not marked complete: the next dispatch rebuilds it from the database)"
        }
    );
    Ok(ExitCode::SUCCESS)
}
