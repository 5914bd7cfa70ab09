//! `loadgen`: drives a running DMS server and prints one JSON line of results per run
//! (docs/BENCHMARKS.md has the commands and the figures).
//!
//! Scenarios:
//! - `login`, `me`: logins and authenticated reads per second;
//! - `submit`: `POST /messages` throughput and latency (messages due in an hour);
//! - `lateness`: messages produced at `--rate`/s with delays of 5–10 s, like the BullMQ
//!   baseline; lateness = attempt time − due time, from the database's history, for all
//!   messages and for those due while production ran ("steady") or after it ("tail");
//! - `idle`: single messages, each due while nothing else happens;
//! - `burst`: `--count` messages due at the same instant; the drain rate;
//! - `memory`: Redis bytes per pending message (`used_memory` before and after);
//! - `ws-idle`, `ws-lateness`: WebSocket connections and pushed deliveries (`realtime.rs`);
//! - `bind-plugins`, `first-submit`: tenant plugins uploaded and bound, and the first submit
//!   that uses them (`plugins.rs`).

mod plugins;
mod realtime;

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};

#[derive(Debug, Parser)]
#[command(about = "Load generator for DMS")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// POST /auth/login, as fast as the server answers.
    Login(Common),
    /// GET /users/me with one user's token on every connection.
    Me(Common),
    /// POST /messages (due in an hour) as fast as the server answers.
    Submit(Common),
    /// Steady production at --rate with 5–10 s delays; lateness from the database.
    Lateness(Delivery),
    /// Single messages due while the server is idle.
    Idle(Delivery),
    /// --count messages due at the same instant.
    Burst(Delivery),
    /// Redis bytes per pending message.
    Memory(Delivery),
    /// Open --connections WebSockets over --users users: connect rate, server RSS per connection.
    WsIdle(realtime::WsIdle),
    /// Messages due at --rate to random users, one WebSocket each: lateness and push latency.
    WsLateness(realtime::WsLateness),
    /// Upload three tenant plugins and bind them: upload (compile) and first-submit times.
    BindPlugins(Common),
    /// Return the hooks bind-plugins bound to the built-ins.
    UnbindPlugins(Common),
    /// The time of the first two submits (after a restart: hooks resolved from the database).
    FirstSubmit(Common),
}

#[derive(Debug, Args, Clone)]
struct Common {
    /// The server.
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    url: String,
    #[arg(long, default_value = "admin")]
    username: String,
    #[arg(long)]
    password: String,
    /// Concurrent connections.
    #[arg(short = 'c', long, default_value_t = 64)]
    connections: usize,
    /// How long to run.
    #[arg(short = 'd', long, default_value = "20s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// A label for the output line (for example the backend).
    #[arg(long, default_value = "")]
    label: String,
}

#[derive(Debug, Args, Clone)]
struct Delivery {
    #[command(flatten)]
    common: Common,
    /// The server's database (`sqlite://…/dms.sqlite3` or `postgres://…`), read for lateness.
    #[arg(long)]
    database_url: String,
    /// Messages per second produced (lateness).
    #[arg(long, default_value_t = 5000)]
    rate: u64,
    /// Messages in all.
    #[arg(long, default_value_t = 50_000)]
    count: u64,
    /// The server's Redis (memory).
    #[arg(long)]
    redis_url: Option<String>,
    /// Lateness: submit every message first, as fast as the server takes them, with due times
    /// at a steady --rate starting this long after the start (for a due rate above the
    /// submit rate). Without it, production runs at --rate with 5–10 s delays.
    #[arg(long, value_parser = humantime::parse_duration)]
    preload: Option<Duration>,
}

/// Latencies of one run, and errors.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    (sorted[index] * 100.0).round() / 100.0
}

fn stats(mut values: Vec<f64>) -> Value {
    values.sort_by(f64::total_cmp);
    json!({
        "n": values.len(),
        "p50": percentile(&values, 0.50),
        "p90": percentile(&values, 0.90),
        "p99": percentile(&values, 0.99),
        "max": percentile(&values, 1.0),
    })
}

async fn drive(
    common: &Common,
    client: reqwest::Client,
    request: impl Fn(&reqwest::Client, u64) -> reqwest::RequestBuilder + Clone + Send + 'static,
) -> anyhow::Result<Value> {
    let deadline = Instant::now() + common.duration;
    let started = Instant::now();
    let workers: Vec<_> = (0..common.connections as u64)
        .map(|worker| {
            let (client, request) = (client.clone(), request.clone());
            tokio::spawn(async move {
                let mut tally = Tally::default();
                let mut n = 0u64;
                while Instant::now() < deadline {
                    n += 1;
                    let sent = Instant::now();
                    let outcome = request(&client, worker * 1_000_000_000 + n).send().await;
                    let elapsed = sent.elapsed().as_micros() as u64;
                    match outcome {
                        Ok(response) if response.status().is_success() => {
                            let _ = response.bytes().await;
                            tally.latencies_us.push(elapsed);
                        }
                        Ok(response) => {
                            tally.errors += 1;
                            let status = response.status();
                            let body = response.text().await.unwrap_or_default();
                            tally.first_error.get_or_insert(format!("{status}: {body}"));
                        }
                        Err(error) => {
                            tally.errors += 1;
                            tally.first_error.get_or_insert(error.to_string());
                        }
                    }
                }
                tally
            })
        })
        .collect();
    let mut all = Tally::default();
    for worker in workers {
        let tally = worker.await?;
        all.latencies_us.extend(tally.latencies_us);
        all.errors += tally.errors;
        if all.first_error.is_none() {
            all.first_error = tally.first_error;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let count = all.latencies_us.len();
    let latencies: Vec<f64> = all
        .latencies_us
        .iter()
        .map(|us| *us as f64 / 1000.0)
        .collect();
    Ok(json!({
        "label": common.label,
        "connections": common.connections,
        "seconds": (seconds * 10.0).round() / 10.0,
        "requests": count,
        "per_second": (count as f64 / seconds).round(),
        "latency_ms": stats(latencies),
        "errors": all.errors,
        "first_error": all.first_error,
    }))
}

fn client(connections: usize) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(connections)
        .timeout(Duration::from_secs(60))
        .build()?)
}

async fn login(client: &reqwest::Client, common: &Common) -> anyhow::Result<String> {
    let response = client
        .post(format!("{}/auth/login", common.url))
        .json(&json!({ "username": common.username, "password": common.password }))
        .send()
        .await
        .context("cannot reach the server")?;
    if !response.status().is_success() {
        bail!(
            "login failed: {} {}",
            response.status(),
            response.text().await?
        );
    }
    let body: Value = response.json().await?;
    Ok(body["token"]
        .as_str()
        .context("no token in the login answer")?
        .to_owned())
}

/// A fresh recipient for this run, so its messages are this run's alone.
async fn recipient(
    client: &reqwest::Client,
    common: &Common,
    token: &str,
) -> anyhow::Result<String> {
    let name = format!("bench-{}", now_ms());
    let response = client
        .post(format!("{}/users", common.url))
        .bearer_auth(token)
        .json(&json!({ "username": name, "password": "bench-recipient-password" }))
        .send()
        .await?;
    if !response.status().is_success() {
        bail!(
            "creating the recipient failed: {} {}",
            response.status(),
            response.text().await?
        );
    }
    let body: Value = response.json().await?;
    Ok(body["id"].as_str().context("no id")?.to_owned())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// Submits messages due at the given times, `connections` at a time, each as soon as its
/// `send_at` comes (so production is steady at the intended rate).
async fn produce(
    client: &reqwest::Client,
    common: &Common,
    token: &str,
    recipient: &str,
    plan: Vec<(u64, u64)>,
) -> anyhow::Result<u64> {
    let (send_at, due): (Vec<u64>, Vec<u64>) = plan.into_iter().unzip();
    let recipient = recipient.to_owned();
    let submitted = produce_with(client, common, token, send_at, move |n| {
        json!({ "recipient_id": recipient, "content": "x".repeat(64), "deliver_at": rfc3339(due[n]) })
    })
    .await;
    Ok(submitted.errors)
}

/// What [`produce_with`] did.
#[derive(Debug, Default)]
struct Submitted {
    errors: u64,
    first_error: Option<String>,
    /// When the first and the last request went out (Unix ms).
    first_sent_ms: u64,
    last_sent_ms: u64,
}

/// Submits one message per entry of `send_at`, `connections` at a time, each as soon as its
/// send time (Unix ms) comes; `body(n)` makes the body of message `n` at that moment.
async fn produce_with(
    client: &reqwest::Client,
    common: &Common,
    token: &str,
    send_at: Vec<u64>,
    body: impl Fn(usize) -> Value + Send + Sync + 'static,
) -> Submitted {
    use futures_util::StreamExt as _;
    let body = std::sync::Arc::new(body);
    let url = format!("{}/messages", common.url);
    let outcomes: Vec<(u64, Option<String>)> =
        futures_util::stream::iter(send_at.into_iter().enumerate())
            .map(|(n, send_at)| {
                let (client, url, token, body) =
                    (client.clone(), url.clone(), token.to_owned(), body.clone());
                async move {
                    let wait = send_at.saturating_sub(now_ms());
                    if wait > 0 {
                        tokio::time::sleep(Duration::from_millis(wait)).await;
                    }
                    let sent = now_ms();
                    let error = match client
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&body(n))
                        .send()
                        .await
                    {
                        Ok(response) if response.status().is_success() => None,
                        Ok(response) => Some(format!(
                            "{}: {}",
                            response.status(),
                            response.text().await.unwrap_or_default()
                        )),
                        Err(error) => Some(error.to_string()),
                    };
                    (sent, error)
                }
            })
            .buffer_unordered(common.connections.max(1) * 4)
            .collect()
            .await;
    let mut submitted = Submitted {
        first_sent_ms: outcomes.iter().map(|(sent, _)| *sent).min().unwrap_or(0),
        last_sent_ms: outcomes.iter().map(|(sent, _)| *sent).max().unwrap_or(0),
        ..Submitted::default()
    };
    for (_, error) in outcomes {
        if let Some(error) = error {
            submitted.errors += 1;
            submitted.first_error.get_or_insert(error);
        }
    }
    submitted
}

/// The server's database, for counting deliveries and reading their history.
enum Database {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Database {
    async fn open(url: &str) -> anyhow::Result<Self> {
        Ok(if url.starts_with("postgres") {
            Self::Postgres(sqlx::PgPool::connect(url).await?)
        } else {
            Self::Sqlite(sqlx::SqlitePool::connect(url).await?)
        })
    }

    async fn delivered(&self, recipient: &str) -> anyhow::Result<i64> {
        const SQL: &str =
            "SELECT COUNT(*) FROM messages WHERE recipient_id = $1 AND status = 'delivered'";
        Ok(match self {
            Self::Sqlite(pool) => {
                sqlx::query_scalar(SQL)
                    .bind(recipient)
                    .fetch_one(pool)
                    .await?
            }
            Self::Postgres(pool) => {
                sqlx::query_scalar(SQL)
                    .bind(recipient)
                    .fetch_one(pool)
                    .await?
            }
        })
    }

    /// `(due ms, attempt ms)` of every first attempt.
    async fn attempts(&self, recipient: &str) -> anyhow::Result<Vec<(i64, i64)>> {
        const SQL: &str = "SELECT m.deliver_at_ms, e.at_ms FROM message_events e \
            JOIN messages m ON m.id = e.message_id \
            WHERE m.recipient_id = $1 AND e.kind = 'attempt' AND e.attempt = 1";
        Ok(match self {
            Self::Sqlite(pool) => sqlx::query_as(SQL).bind(recipient).fetch_all(pool).await?,
            Self::Postgres(pool) => sqlx::query_as(SQL).bind(recipient).fetch_all(pool).await?,
        })
    }

    async fn wait_delivered(
        &self,
        recipient: &str,
        count: i64,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            let delivered = self.delivered(recipient).await?;
            if delivered >= count {
                return Ok(());
            }
            if started.elapsed() > timeout {
                bail!("only {delivered} of {count} delivered after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

async fn lateness(delivery: &Delivery) -> anyhow::Result<Value> {
    let common = &delivery.common;
    let client = client(common.connections)?;
    let token = login(&client, common).await?;
    let recipient = recipient(&client, common, &token).await?;
    let db = Database::open(&delivery.database_url).await?;
    let start = now_ms() + 1_000;
    let interval_us = 1_000_000 / delivery.rate.max(1);
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let plan: Vec<(u64, u64)> = match delivery.preload {
        // Everything submitted now; due times steady at --rate from start + preload.
        Some(lead) => {
            let first_due = start + lead.as_millis() as u64;
            (0..delivery.count)
                .map(|n| (0, first_due + n * interval_us / 1000))
                .collect()
        }
        None => (0..delivery.count)
            .map(|n| {
                let send_at = start + n * interval_us / 1000;
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (send_at, send_at + 5_000 + seed % 5_001)
            })
            .collect(),
    };
    let first_due = plan.iter().map(|(_, due)| *due).min().unwrap_or(start);
    // "Steady": due while more messages kept coming due (production, or the preloaded series).
    let produced_until = match delivery.preload {
        Some(_) => plan.last().map_or(start, |(_, due)| *due),
        None => plan.last().map_or(start, |(send_at, _)| *send_at),
    };
    let errors = produce(&client, common, &token, &recipient, plan).await?;
    let produce_ms = now_ms() - (start - 1_000);
    if delivery.preload.is_some() && now_ms() >= first_due {
        bail!("submitting took longer than --preload; raise it or lower --count");
    }
    db.wait_delivered(
        &recipient,
        (delivery.count - errors) as i64,
        Duration::from_secs(300),
    )
    .await?;
    let rows = db.attempts(&recipient).await?;
    let late = |filter: &dyn Fn(i64) -> bool| {
        stats(
            rows.iter()
                .filter(|(due, _)| filter(*due))
                .map(|(due, at)| (at - due) as f64)
                .collect(),
        )
    };
    let first_due = rows.iter().map(|(due, _)| *due).min().unwrap_or(0);
    let last_at = rows.iter().map(|(_, at)| *at).max().unwrap_or(0);
    Ok(json!({
        "label": common.label,
        "scenario": "lateness",
        "rate": delivery.rate,
        "messages": delivery.count,
        "submit_errors": errors,
        "preload": delivery.preload.map(|lead| lead.as_secs()),
        "produce_seconds": produce_ms as f64 / 1000.0,
        "delivered_per_second": (rows.len() as f64 / ((last_at - first_due).max(1) as f64 / 1000.0)).round(),
        "lateness_ms_all": late(&|_| true),
        "lateness_ms_steady": late(&|due| (due as u64) <= produced_until),
        "lateness_ms_tail": late(&|due| (due as u64) > produced_until),
    }))
}

async fn idle(delivery: &Delivery) -> anyhow::Result<Value> {
    let common = &delivery.common;
    let client = client(1)?;
    let token = login(&client, common).await?;
    let recipient = recipient(&client, common, &token).await?;
    let db = Database::open(&delivery.database_url).await?;
    for n in 0..delivery.count {
        let due = now_ms() + 1_000 + (n % 7) * 37;
        let plan = vec![(now_ms(), due)];
        produce(&client, common, &token, &recipient, plan).await?;
        db.wait_delivered(&recipient, (n + 1) as i64, Duration::from_secs(30))
            .await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let rows = db.attempts(&recipient).await?;
    Ok(json!({
        "label": common.label,
        "scenario": "idle",
        "messages": rows.len(),
        "lateness_ms": stats(rows.iter().map(|(due, at)| (at - due) as f64).collect()),
    }))
}

async fn burst(delivery: &Delivery) -> anyhow::Result<Value> {
    let common = &delivery.common;
    let client = client(common.connections)?;
    let token = login(&client, common).await?;
    let recipient = recipient(&client, common, &token).await?;
    let db = Database::open(&delivery.database_url).await?;
    // All due at one instant, far enough ahead for every submission to land first.
    let due = now_ms() + 120_000;
    let plan: Vec<(u64, u64)> = (0..delivery.count).map(|_| (0, due)).collect();
    let started = Instant::now();
    let errors = produce(&client, common, &token, &recipient, plan).await?;
    let submitted_in = started.elapsed().as_secs_f64();
    if now_ms() >= due {
        bail!("submitting took longer than the lead time; lower --count");
    }
    db.wait_delivered(
        &recipient,
        (delivery.count - errors) as i64,
        Duration::from_secs(400),
    )
    .await?;
    let rows = db.attempts(&recipient).await?;
    let last = rows.iter().map(|(_, at)| *at).max().unwrap_or(0);
    let first = rows.iter().map(|(_, at)| *at).min().unwrap_or(0);
    let drain_seconds = (last - due as i64).max(1) as f64 / 1000.0;
    Ok(json!({
        "label": common.label,
        "scenario": "burst",
        "messages": rows.len(),
        "submit_seconds": (submitted_in * 10.0).round() / 10.0,
        "submit_per_second": (delivery.count as f64 / submitted_in).round(),
        "drain_per_second": (rows.len() as f64 / drain_seconds).round(),
        "drain_seconds": drain_seconds,
        "first_after_due_ms": first - due as i64,
        "lateness_ms": stats(rows.iter().map(|(due, at)| (at - due) as f64).collect()),
    }))
}

async fn memory(delivery: &Delivery) -> anyhow::Result<Value> {
    let common = &delivery.common;
    let redis_url = delivery
        .redis_url
        .as_deref()
        .context("--redis-url is required")?;
    let redis = redis::Client::open(redis_url)?;
    let mut connection = redis.get_multiplexed_async_connection().await?;
    let used = async |connection: &mut redis::aio::MultiplexedConnection| -> anyhow::Result<i64> {
        let info: String = redis::cmd("INFO")
            .arg("memory")
            .query_async(connection)
            .await?;
        info.lines()
            .find_map(|line| line.strip_prefix("used_memory:"))
            .context("no used_memory")?
            .trim()
            .parse()
            .context("used_memory is not a number")
    };
    let client = client(common.connections)?;
    let token = login(&client, common).await?;
    let recipient = recipient(&client, common, &token).await?;
    let before = used(&mut connection).await?;
    let due = now_ms() + 3_600_000;
    let plan: Vec<(u64, u64)> = (0..delivery.count).map(|n| (0, due + n)).collect();
    let errors = produce(&client, common, &token, &recipient, plan).await?;
    let after = used(&mut connection).await?;
    let pending = delivery.count - errors;
    Ok(json!({
        "label": common.label,
        "scenario": "memory",
        "pending": pending,
        "used_memory_delta": after - before,
        "bytes_per_pending_message": ((after - before) as f64 / pending as f64).round(),
    }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    realtime::raise_open_files();
    let result = match cli.scenario {
        Scenario::Login(common) => {
            let url = format!("{}/auth/login", common.url);
            let body = json!({ "username": common.username, "password": common.password });
            drive(&common, client(common.connections)?, move |client, _| {
                client.post(&url).json(&body)
            })
            .await?
        }
        Scenario::Me(common) => {
            let client = client(common.connections)?;
            let token = login(&client, &common).await?;
            let url = format!("{}/users/me", common.url);
            drive(&common, client, move |client, _| {
                client.get(&url).bearer_auth(&token)
            })
            .await?
        }
        Scenario::Submit(common) => {
            let client = client(common.connections)?;
            let token = login(&client, &common).await?;
            let recipient = recipient(&client, &common, &token).await?;
            let url = format!("{}/messages", common.url);
            drive(&common, client, move |client, n| {
                client.post(&url).bearer_auth(&token).json(&json!({
                    "recipient_id": recipient,
                    "content": format!("submit benchmark message {n}"),
                    "delay_seconds": 3600,
                }))
            })
            .await?
        }
        Scenario::Lateness(delivery) => lateness(&delivery).await?,
        Scenario::Idle(delivery) => idle(&delivery).await?,
        Scenario::Burst(delivery) => burst(&delivery).await?,
        Scenario::Memory(delivery) => memory(&delivery).await?,
        Scenario::WsIdle(args) => realtime::ws_idle(&args).await?,
        Scenario::WsLateness(args) => realtime::ws_lateness(&args).await?,
        Scenario::BindPlugins(common) => plugins::bind(&common).await?,
        Scenario::UnbindPlugins(common) => plugins::unbind(&common).await?,
        Scenario::FirstSubmit(common) => plugins::first_submit(&common).await?,
    };
    println!("{result}");
    Ok(())
}
