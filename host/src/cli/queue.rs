//! `dms queue status`: the queue per tenant, read from the database (the source of truth) —
//! counts per status, what is due in the next minute and hour, what is overdue and since when,
//! leases held, dead letters — and, with Redis, the size of the schedule index.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use serde::Serialize;

use crate::app::open_store;
use crate::clock::{Clock, rfc3339};
use crate::config::Config;
use crate::domain::message::Status;
use crate::redis_link::RedisLink;
use crate::schedule::Schedule;
use crate::schedule::redis::RedisSchedule;
use crate::store::QueueCount;

#[derive(Debug, clap::Subcommand)]
pub(super) enum QueueCommand {
    /// Counts per status and tenant, due soon, overdue, leases, dead letters.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// One tenant's line (or the total's).
#[derive(Debug, Default, Serialize)]
struct Summary {
    tenant: String,
    /// Messages per status (every status, zeros included).
    statuses: BTreeMap<&'static str, u64>,
    due_next_minute: u64,
    due_next_hour: u64,
    overdue: u64,
    oldest_overdue: Option<String>,
    oldest_overdue_ms: Option<u64>,
    leases_held: u64,
    dead_letters: u64,
}

impl Summary {
    fn new(tenant: String) -> Self {
        Self {
            tenant,
            statuses: Status::ALL
                .iter()
                .map(|status| (status.as_str(), 0))
                .collect(),
            ..Self::default()
        }
    }

    fn add(&mut self, row: &QueueCount) {
        *self.statuses.entry(row.status.as_str()).or_default() += row.count;
        self.due_next_minute += row.due_next_minute;
        self.due_next_hour += row.due_next_hour;
        self.overdue += row.overdue;
        self.leases_held += row.leases_held;
        if row.status == Status::Dead {
            self.dead_letters += row.count;
        }
        if let Some(oldest) = row.oldest_overdue_ms
            && self.oldest_overdue_ms.is_none_or(|seen| oldest < seen)
        {
            self.oldest_overdue_ms = Some(oldest);
            self.oldest_overdue = Some(rfc3339(oldest));
        }
    }
}

#[derive(Debug, Serialize)]
struct Report {
    at: String,
    backend: &'static str,
    tenants: Vec<Summary>,
    total: Summary,
    /// Ids in the Redis schedule index (due or leased); absent without Redis.
    schedule_index: Option<u64>,
}

pub(super) async fn run(config: Option<&Path>, command: QueueCommand) -> anyhow::Result<ExitCode> {
    let QueueCommand::Status { json } = command;
    let config = Config::load(config)?;
    let store = open_store(&config).await?;
    let now = Clock::System.now_ms();
    let rows = store.queue_counts(now).await?;
    let mut tenants: BTreeMap<String, Summary> = store
        .list_tenants()
        .await?
        .into_iter()
        .map(|tenant| (tenant.name.clone(), Summary::new(tenant.name)))
        .collect();
    let mut total = Summary::new("(all)".to_owned());
    for row in &rows {
        tenants
            .entry(row.tenant.clone())
            .or_insert_with(|| Summary::new(row.tenant.clone()))
            .add(row);
        total.add(row);
    }
    let schedule_index = match config.redis_url.expose() {
        Some(url) => {
            let link = RedisLink::new(url, &config.redis_prefix)?;
            match RedisSchedule::new(link).count().await {
                Ok(count) => Some(count),
                Err(error) => {
                    eprintln!("warning: {error}");
                    None
                }
            }
        }
        None => None,
    };
    let report = Report {
        at: rfc3339(now),
        backend: store.backend(),
        tenants: tenants.into_values().collect(),
        total,
        schedule_index,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(report: &Report) {
    println!("Queue at {} ({}):", report.at, report.backend);
    let statuses: Vec<&str> = Status::ALL.iter().map(|status| status.as_str()).collect();
    let mut header = vec!["tenant"];
    header.extend(&statuses);
    header.extend(["due<1m", "due<1h", "overdue", "leases", "oldest overdue"]);
    let mut lines = vec![
        header
            .iter()
            .map(|text| (*text).to_owned())
            .collect::<Vec<_>>(),
    ];
    for summary in report.tenants.iter().chain([&report.total]) {
        let mut line = vec![summary.tenant.clone()];
        line.extend(
            statuses
                .iter()
                .map(|status| summary.statuses[status].to_string()),
        );
        line.extend([
            summary.due_next_minute.to_string(),
            summary.due_next_hour.to_string(),
            summary.overdue.to_string(),
            summary.leases_held.to_string(),
            summary
                .oldest_overdue
                .clone()
                .unwrap_or_else(|| "-".to_owned()),
        ]);
        lines.push(line);
    }
    let widths: Vec<usize> = (0..lines[0].len())
        .map(|column| {
            lines
                .iter()
                .map(|line| line[column].len())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for line in &lines {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        println!("{}", cells.join("  ").trim_end());
    }
    println!("dead letters: {}", report.total.dead_letters);
    if let Some(entries) = report.schedule_index {
        println!("schedule index (Redis): {entries} messages due or leased");
    }
}
