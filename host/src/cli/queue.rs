//! `dms queue status`: the queue per tenant, read from the database (the source of truth) —
//! counts per status, what is due in the next minute and hour, what is overdue and since when,
//! leases held, dead letters — and, with Redis, the size of the schedule index.

use std::path::Path;
use std::process::ExitCode;

use crate::clock::Clock;
use crate::config::Config;
use crate::domain::message::Status;
use crate::flow::Limiter;
use crate::flow::redis::RedisLimiter;
use crate::redis_link::RedisLink;
use crate::schedule::Schedule;
use crate::schedule::redis::RedisSchedule;
use crate::state::open_store;
use crate::use_cases::operations::{self, Queue, QueueReport};

#[derive(Debug, clap::Subcommand)]
pub(super) enum QueueCommand {
    /// Counts per status and tenant, due soon, overdue, leases, dead letters.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub(super) async fn run(config: Option<&Path>, command: QueueCommand) -> anyhow::Result<ExitCode> {
    let QueueCommand::Status { json } = command;
    let config = Config::load(config)?;
    let store = open_store(&config).await?;
    let (index, flow) = match config.redis_url.expose() {
        Some(url) => {
            let link = RedisLink::new(url, &config.redis_prefix)?;
            (
                Some(RedisSchedule::new(link.clone())),
                Some(RedisLimiter::new(link)),
            )
        }
        None => (None, None),
    };
    let Queue {
        report,
        index_error,
    } = operations::queue(
        store.as_ref(),
        index.as_ref().map(|index| index as &dyn Schedule),
        flow.as_ref().map(|flow| flow as &dyn Limiter),
        Clock::System.now_ms(),
    )
    .await?;
    if let Some(error) = index_error {
        eprintln!("warning: {error}");
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(report: &QueueReport) {
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
    if let Some(flow) = &report.flow_waiting {
        println!("waiting for their flow key (Redis): {}", flow.total);
        for key in &flow.keys {
            println!("  {} {:?}: {}", key.tenant, key.key, key.waiting);
        }
    }
}
