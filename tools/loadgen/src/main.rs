//! `loadgen`: drives a running DMS server and prints one JSON line of results per run
//! (docs/BENCHMARKS.md has the commands and the figures).
//!
//! Scenarios:
//! - `login`, `me`: logins and authenticated reads per second;
//! - `submit`: `POST /messages` throughput and latency (messages due in an hour);
//! - `batch`: `POST /messages/batch` throughput, batches of `--size` due in an hour (`batch.rs`);
//! - `lateness`: messages produced at `--rate`/s with delays of 5–10 s, like the BullMQ
//!   baseline, or with `--preload` loaded first with the batch API and due at `--rate`/s from
//!   the end of the lead; lateness = attempt time − due time, from the database's history, for
//!   all messages and for those due while production ran ("steady") or after it ("tail").
//!   With `--background-rate` (and `--preload`), a second producer submits single
//!   `POST /messages` at that rate while the preloaded ones come due (due an hour later, to a
//!   recipient of its own) and its throughput and errors are reported too;
//! - `idle`: single messages, each due while nothing else happens;
//! - `burst`: `--count` messages (batch API) due at the same instant; the drain rate;
//! - `memory`: Redis bytes per pending message (`used_memory` before and after);
//! - `fill`: `--count` messages (batch API) due at once, waited for until all are delivered:
//!   a database that holds that many delivered messages (`capacity.rs`);
//! - `pending`: `--count` messages (batch API) due in 30 days: Redis bytes (or server RSS) per
//!   pending message, idle lateness beside them, and with `--redis-loss` the time to rebuild
//!   the index after its keys are deleted (`capacity.rs`);
//! - `ws-idle`, `ws-lateness`: WebSocket connections and pushed deliveries (`realtime.rs`);
//! - `bind-plugins`, `first-submit`: tenant plugins uploaded and bound, and the first submit
//!   that uses them (`plugins.rs`).
//!
//! Lateness and delivered counts come from the server's database (`--database-url`), read by
//! tenant and recipient (what its indexes serve); waiting polls the tenant's kept counts
//! (`message_counts`), one small query every 250 ms, and checks the recipient's exact count
//! once at the end. Runs that last longer than the server's access-token lifetime (15 min by
//! default, `DMS_ACCESS_TOKEN_TTL_SECONDS`) fail with 401s: the bench scripts raise it.

mod batch;
mod capacity;
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
    /// POST /messages/batch of --size messages (due in an hour), -c batches in flight.
    Batch(batch::Batch),
    /// Messages due at --rate (produced at that rate, or preloaded); lateness from the database.
    Lateness(Delivery),
    /// Single messages due while the server is idle.
    Idle(Delivery),
    /// --count messages due at the same instant.
    Burst(Delivery),
    /// Redis bytes per pending message.
    Memory(Delivery),
    /// --count messages due at once, waited for until all are delivered (fills the database).
    Fill(Delivery),
    /// --count messages due --due-in ahead: Redis bytes per pending message, idle lateness,
    /// and (--redis-loss) the index rebuild after its keys are deleted.
    Pending(capacity::Pending),
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
    /// Concurrent connections (requests in flight; batches in flight when loading with
    /// `POST /messages/batch`).
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
    /// The server's Redis (memory, pending).
    #[arg(long)]
    redis_url: Option<String>,
    /// Lateness: submit every message first with the batch API (-c batches in flight), with
    /// due times at a steady --rate starting this long after the start (for a due rate above
    /// the submit rate). Without it, production runs at --rate with 5–10 s delays, one
    /// `POST /messages` each. Burst: the due instant is this long after the start (default
    /// 120 s).
    #[arg(long, value_parser = humantime::parse_duration)]
    preload: Option<Duration>,
    /// Messages per `POST /messages/batch` when loading (lateness --preload, burst, memory,
    /// fill, pending).
    #[arg(long, default_value_t = 1000)]
    batch_size: usize,
    /// Lateness with --preload: while the preloaded messages come due, submit single
    /// `POST /messages` at this rate (due an hour later, to another recipient).
    #[arg(long)]
    background_rate: Option<u64>,
    /// Requests in flight of the background producer are at most 4 × this.
    #[arg(long, default_value_t = 64)]
    background_connections: usize,
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

/// A logged-in user: its access token, and the tenant its messages are stored under.
struct Session {
    token: String,
    tenant_id: String,
}

async fn session(client: &reqwest::Client, common: &Common) -> anyhow::Result<Session> {
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
    Ok(Session {
        token: body["token"]
            .as_str()
            .context("no token in the login answer")?
            .to_owned(),
        tenant_id: body["user"]["tenant_id"]
            .as_str()
            .context("no user.tenant_id in the login answer")?
            .to_owned(),
    })
}

async fn login(client: &reqwest::Client, common: &Common) -> anyhow::Result<String> {
    Ok(session(client, common).await?.token)
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

/// What [`produce_with`] did.
#[derive(Debug, Default)]
struct Submitted {
    /// Requests answered with success, and how long each took.
    ok: u64,
    latencies_ms: Vec<f64>,
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
    let outcomes: Vec<(u64, f64, Option<String>)> =
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
                    let clock = Instant::now();
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
                    (sent, clock.elapsed().as_secs_f64() * 1000.0, error)
                }
            })
            .buffer_unordered(common.connections.max(1) * 4)
            .collect()
            .await;
    let mut submitted = Submitted {
        first_sent_ms: outcomes.iter().map(|(sent, ..)| *sent).min().unwrap_or(0),
        last_sent_ms: outcomes.iter().map(|(sent, ..)| *sent).max().unwrap_or(0),
        ..Submitted::default()
    };
    for (_, latency_ms, error) in outcomes {
        match error {
            Some(error) => {
                submitted.errors += 1;
                submitted.first_error.get_or_insert(error);
            }
            None => {
                submitted.ok += 1;
                submitted.latencies_ms.push(latency_ms);
            }
        }
    }
    submitted
}

/// The server's database, for counting deliveries and reading their history. Every query of
/// messages names the tenant and the recipient: the index `(tenant_id, recipient_id, id)`
/// serves exactly that, so a database holding millions of other messages costs nothing here.
enum Database {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

/// Runs `$query` (a sqlx query builder, without its executor) on whichever pool `$db` holds.
macro_rules! on_pool {
    ($db:expr, $query:expr, $fetch:ident) => {
        match $db {
            Database::Sqlite(pool) => $query.$fetch(pool).await?,
            Database::Postgres(pool) => $query.$fetch(pool).await?,
        }
    };
}

impl Database {
    async fn open(url: &str) -> anyhow::Result<Self> {
        Ok(if url.starts_with("postgres") {
            Self::Postgres(sqlx::PgPool::connect(url).await?)
        } else {
            Self::Sqlite(sqlx::SqlitePool::connect(url).await?)
        })
    }

    /// The tenant's messages whose delivery ended (delivered, read or dead), from the counts
    /// the server keeps as statuses change: a read of a few rows, however many messages
    /// there are. Only differences of it mean anything to a run.
    async fn done(&self, tenant: &str) -> anyhow::Result<i64> {
        const SQL: &str = "SELECT CAST(COALESCE(SUM(count), 0) AS BIGINT) FROM message_counts \
            WHERE tenant_id = $1 AND status IN ('delivered', 'read', 'dead')";
        Ok(on_pool!(
            self,
            sqlx::query_scalar::<_, i64>(SQL).bind(tenant),
            fetch_one
        ))
    }

    /// The recipient's delivered messages, exactly.
    async fn delivered(&self, tenant: &str, recipient: &str) -> anyhow::Result<i64> {
        const SQL: &str = "SELECT COUNT(*) FROM messages m \
            JOIN message_states s ON s.message_id = m.id \
            WHERE m.tenant_id = $1 AND m.recipient_id = $2 AND s.status = 'delivered'";
        Ok(on_pool!(
            self,
            sqlx::query_scalar::<_, i64>(SQL)
                .bind(tenant)
                .bind(recipient),
            fetch_one
        ))
    }

    /// `(due ms, attempt ms)` of every first attempt of the recipient's messages: the due
    /// time is the state row's (a first attempt that succeeded leaves it as planned).
    async fn attempts(&self, tenant: &str, recipient: &str) -> anyhow::Result<Vec<(i64, i64)>> {
        const SQL: &str = "SELECT s.deliver_at_ms, e.at_ms FROM message_events e \
            JOIN messages m ON m.id = e.message_id \
            JOIN message_states s ON s.message_id = m.id \
            WHERE m.tenant_id = $1 AND m.recipient_id = $2 \
            AND e.kind = 'attempt' AND e.attempt = 1";
        Ok(on_pool!(
            self,
            sqlx::query_as::<_, (i64, i64)>(SQL)
                .bind(tenant)
                .bind(recipient),
            fetch_all
        ))
    }

    /// The database's size on disk (PostgreSQL: the whole database; SQLite: the main file,
    /// without its WAL).
    async fn size_bytes(&self) -> anyhow::Result<i64> {
        Ok(match self {
            Self::Sqlite(pool) => {
                sqlx::query_scalar::<_, i64>(
                    "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
                )
                .fetch_one(pool)
                .await?
            }
            Self::Postgres(pool) => {
                sqlx::query_scalar::<_, i64>("SELECT pg_database_size(current_database())")
                    .fetch_one(pool)
                    .await?
            }
        })
    }

    /// Waits until `count` of the recipient's messages are delivered, the tenant's
    /// [`done`](Self::done) having been `since` before they were submitted: polls the kept
    /// counts every 250 ms (printing progress every 10 s), then checks the recipient's exact
    /// count (every 500 ms until it is there, should other messages of the tenant have ended
    /// meanwhile).
    async fn wait_delivered(
        &self,
        tenant: &str,
        recipient: &str,
        since: i64,
        count: i64,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut reported = Instant::now();
        loop {
            let done = self.done(tenant).await? - since;
            if done >= count {
                break;
            }
            if started.elapsed() > timeout {
                bail!("only {done} of {count} delivered after {timeout:?} (the tenant's counts)");
            }
            if reported.elapsed() >= Duration::from_secs(10) {
                reported = Instant::now();
                eprintln!(
                    "loadgen: {done} of {count} delivered after {:.0} s",
                    started.elapsed().as_secs_f64()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        loop {
            let delivered = self.delivered(tenant, recipient).await?;
            if delivered >= count {
                return Ok(());
            }
            if started.elapsed() > timeout {
                bail!("only {delivered} of {count} delivered after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// How long a run waits for its deliveries: 300 s, and more for large counts.
fn wait_for(count: u64) -> Duration {
    Duration::from_secs(300 + count / 1000)
}

/// A message of the load tool: 64 bytes of content to `recipient`, due at `due_ms`.
fn message(recipient: &str, due_ms: u64) -> Value {
    json!({ "recipient_id": recipient, "content": "x".repeat(64), "deliver_at": rfc3339(due_ms) })
}

async fn lateness(delivery: &Delivery) -> anyhow::Result<Value> {
    let common = &delivery.common;
    if delivery.background_rate.is_some() && delivery.preload.is_none() {
        bail!(
            "--background-rate needs --preload: the background submits run while the preloaded messages come due"
        );
    }
    let client = client(common.connections.max(delivery.background_connections))?;
    let session = session(&client, common).await?;
    let token = session.token.as_str();
    let recipient = recipient(&client, common, token).await?;
    let db = Database::open(&delivery.database_url).await?;
    let since = db.done(&session.tenant_id).await?;
    let start = now_ms() + 1_000;
    let count = delivery.count.max(1);
    let interval_us = 1_000_000 / delivery.rate.max(1);
    let mut background = None;
    let (accepted, submit_errors, first_submit_error, produced_until, preload) =
        match delivery.preload {
            // Everything loaded now with the batch API; due times steady at --rate from
            // start + preload.
            Some(lead) => {
                let first_due = start + lead.as_millis() as u64;
                let last_due = first_due + (count - 1) * interval_us / 1000;
                let background_recipient = match delivery.background_rate {
                    Some(_) => Some(self::recipient(&client, common, token).await?),
                    None => None,
                };
                let loaded = batch::submit_batches(
                    &client,
                    common,
                    token,
                    count,
                    delivery.batch_size,
                    common.connections,
                    {
                        let recipient = recipient.clone();
                        move |n| message(&recipient, first_due + n * interval_us / 1000)
                    },
                )
                .await;
                if now_ms() >= first_due {
                    bail!(
                        "loading took {:.1} s, longer than --preload; raise it or lower --count",
                        loaded.seconds
                    );
                }
                if let (Some(rate), Some(background_recipient)) =
                    (delivery.background_rate, background_recipient)
                {
                    // Single submits at `rate` from the first due time to the last, each due an
                    // hour later: they share the server with the deliveries, not the measured set.
                    let planned = ((last_due - first_due) * rate.max(1) / 1000).max(1);
                    let send_at: Vec<u64> = (0..planned)
                        .map(|n| first_due + n * 1000 / rate.max(1))
                        .collect();
                    let (client, token) = (client.clone(), token.to_owned());
                    let common = Common {
                        connections: delivery.background_connections,
                        ..common.clone()
                    };
                    background = Some((
                        rate,
                        planned,
                        send_at.last().copied().unwrap_or(first_due),
                        tokio::spawn(async move {
                            produce_with(&client, &common, &token, send_at, move |_| {
                                json!({
                                    "recipient_id": background_recipient,
                                    "content": "x".repeat(64),
                                    "delay_seconds": 3600,
                                })
                            })
                            .await
                        }),
                    ));
                }
                let summary = loaded.summary(delivery.batch_size, common.connections);
                (
                    loaded.accepted,
                    loaded.rejected,
                    loaded.first_error,
                    last_due,
                    Some(summary),
                )
            }
            None => {
                let mut seed = 0x9E37_79B9_7F4A_7C15u64;
                let plan: Vec<(u64, u64)> = (0..count)
                    .map(|n| {
                        let send_at = start + n * interval_us / 1000;
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        (send_at, send_at + 5_000 + seed % 5_001)
                    })
                    .collect();
                // "Steady": due while more messages kept coming.
                let produced_until = plan.last().map_or(start, |(send_at, _)| *send_at);
                let (send_at, due): (Vec<u64>, Vec<u64>) = plan.into_iter().unzip();
                let submitted = produce_with(&client, common, token, send_at, {
                    let recipient = recipient.clone();
                    move |n| message(&recipient, due[n])
                })
                .await;
                (
                    submitted.ok,
                    submitted.errors,
                    submitted.first_error,
                    produced_until,
                    None,
                )
            }
        };
    let produce_ms = now_ms() - (start - 1_000);
    db.wait_delivered(
        &session.tenant_id,
        &recipient,
        since,
        accepted as i64,
        wait_for(count),
    )
    .await?;
    let background = match background {
        Some((rate, planned, last_planned_ms, task)) => {
            let submitted = task.await?;
            let seconds = (submitted.last_sent_ms - submitted.first_sent_ms) as f64 / 1000.0;
            Some(json!({
                "rate": rate,
                "planned": planned,
                "submitted": submitted.ok,
                "errors": submitted.errors,
                "first_error": submitted.first_error,
                "seconds": seconds,
                "per_second": (submitted.ok as f64 / seconds.max(0.001)).round(),
                "last_sent_behind_ms": submitted.last_sent_ms.saturating_sub(last_planned_ms),
                "latency_ms": stats(submitted.latencies_ms),
            }))
        }
        None => None,
    };
    let rows = db.attempts(&session.tenant_id, &recipient).await?;
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
        "messages": count,
        "accepted": accepted,
        "submit_errors": submit_errors,
        "first_submit_error": first_submit_error,
        "preload": delivery.preload.map(|lead| lead.as_secs()),
        "preload_load": preload,
        "produce_seconds": produce_ms as f64 / 1000.0,
        "delivered_per_second": (rows.len() as f64 / ((last_at - first_due).max(1) as f64 / 1000.0)).round(),
        "lateness_ms_all": late(&|_| true),
        "lateness_ms_steady": late(&|due| (due as u64) <= produced_until),
        "lateness_ms_tail": late(&|due| (due as u64) > produced_until),
        "background": background,
    }))
}

/// Lateness of `count` single messages to a recipient of their own, each submitted alone
/// (about 1 s ahead of its due time) and waited for before the next: `(messages, stats)`.
async fn idle_lateness(
    client: &reqwest::Client,
    common: &Common,
    session: &Session,
    db: &Database,
    count: u64,
) -> anyhow::Result<(usize, Value)> {
    let recipient = recipient(client, common, &session.token).await?;
    let since = db.done(&session.tenant_id).await?;
    let single = Common {
        connections: 1,
        ..common.clone()
    };
    for n in 0..count {
        let due = now_ms() + 1_000 + (n % 7) * 37;
        let submitted = produce_with(client, &single, &session.token, vec![now_ms()], {
            let recipient = recipient.clone();
            move |_| message(&recipient, due)
        })
        .await;
        if let Some(error) = submitted.first_error {
            bail!("submitting an idle message failed: {error}");
        }
        db.wait_delivered(
            &session.tenant_id,
            &recipient,
            since,
            (n + 1) as i64,
            Duration::from_secs(30),
        )
        .await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let rows = db.attempts(&session.tenant_id, &recipient).await?;
    Ok((
        rows.len(),
        stats(rows.iter().map(|(due, at)| (at - due) as f64).collect()),
    ))
}

async fn idle(delivery: &Delivery) -> anyhow::Result<Value> {
    let common = &delivery.common;
    let client = client(1)?;
    let session = session(&client, common).await?;
    let db = Database::open(&delivery.database_url).await?;
    let (messages, lateness) =
        idle_lateness(&client, common, &session, &db, delivery.count).await?;
    Ok(json!({
        "label": common.label,
        "scenario": "idle",
        "messages": messages,
        "lateness_ms": lateness,
    }))
}

async fn burst(delivery: &Delivery) -> anyhow::Result<Value> {
    let common = &delivery.common;
    let client = client(common.connections)?;
    let session = session(&client, common).await?;
    let recipient = recipient(&client, common, &session.token).await?;
    let db = Database::open(&delivery.database_url).await?;
    let since = db.done(&session.tenant_id).await?;
    // All due at one instant, far enough ahead for every submission to land first.
    let lead = delivery.preload.unwrap_or(Duration::from_secs(120));
    let due = now_ms() + lead.as_millis() as u64;
    let loaded = batch::submit_batches(
        &client,
        common,
        &session.token,
        delivery.count,
        delivery.batch_size,
        common.connections,
        {
            let recipient = recipient.clone();
            move |_| message(&recipient, due)
        },
    )
    .await;
    if now_ms() >= due {
        bail!(
            "loading took {:.1} s, longer than the lead time (--preload); raise it or lower --count",
            loaded.seconds
        );
    }
    db.wait_delivered(
        &session.tenant_id,
        &recipient,
        since,
        loaded.accepted as i64,
        wait_for(delivery.count) + lead,
    )
    .await?;
    let rows = db.attempts(&session.tenant_id, &recipient).await?;
    let last = rows.iter().map(|(_, at)| *at).max().unwrap_or(0);
    let first = rows.iter().map(|(_, at)| *at).min().unwrap_or(0);
    let drain_seconds = (last - due as i64).max(1) as f64 / 1000.0;
    Ok(json!({
        "label": common.label,
        "scenario": "burst",
        "messages": rows.len(),
        "load": loaded.summary(delivery.batch_size, common.connections),
        "submit_seconds": (loaded.seconds * 10.0).round() / 10.0,
        "submit_per_second": (loaded.accepted as f64 / loaded.seconds.max(0.001)).round(),
        "drain_per_second": (rows.len() as f64 / drain_seconds).round(),
        "drain_seconds": drain_seconds,
        "first_after_due_ms": first - due as i64,
        "lateness_ms": stats(rows.iter().map(|(due, at)| (at - due) as f64).collect()),
    }))
}

/// Redis's `used_memory`: the whole instance (every database and every client's keys).
async fn used_memory(connection: &mut redis::aio::MultiplexedConnection) -> anyhow::Result<i64> {
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
}

async fn memory(delivery: &Delivery) -> anyhow::Result<Value> {
    let common = &delivery.common;
    let redis_url = delivery
        .redis_url
        .as_deref()
        .context("--redis-url is required")?;
    let redis = redis::Client::open(redis_url)?;
    let mut connection = redis.get_multiplexed_async_connection().await?;
    let client = client(common.connections)?;
    let token = login(&client, common).await?;
    let recipient = recipient(&client, common, &token).await?;
    let before = used_memory(&mut connection).await?;
    let due = now_ms() + 3_600_000;
    let loaded = batch::submit_batches(
        &client,
        common,
        &token,
        delivery.count,
        delivery.batch_size,
        common.connections,
        move |n| message(&recipient, due + n),
    )
    .await;
    let after = used_memory(&mut connection).await?;
    let pending = loaded.accepted.max(1);
    Ok(json!({
        "label": common.label,
        "scenario": "memory",
        "pending": loaded.accepted,
        "load": loaded.summary(delivery.batch_size, common.connections),
        "used_memory_delta": after - before,
        "bytes_per_pending_message": ((after - before) as f64 / pending as f64).round(),
    }))
}

/// `value` with its `scenario` named.
fn named(scenario: &str, mut value: Value) -> Value {
    if let Some(object) = value.as_object_mut() {
        object.insert("scenario".into(), scenario.into());
    }
    value
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    realtime::raise_open_files();
    let result = match cli.scenario {
        Scenario::Login(common) => {
            let url = format!("{}/auth/login", common.url);
            let body = json!({ "username": common.username, "password": common.password });
            named(
                "login",
                drive(&common, client(common.connections)?, move |client, _| {
                    client.post(&url).json(&body)
                })
                .await?,
            )
        }
        Scenario::Me(common) => {
            let client = client(common.connections)?;
            let token = login(&client, &common).await?;
            let url = format!("{}/users/me", common.url);
            named(
                "me",
                drive(&common, client, move |client, _| {
                    client.get(&url).bearer_auth(&token)
                })
                .await?,
            )
        }
        Scenario::Submit(common) => {
            let client = client(common.connections)?;
            let token = login(&client, &common).await?;
            let recipient = recipient(&client, &common, &token).await?;
            let url = format!("{}/messages", common.url);
            named(
                "submit",
                drive(&common, client, move |client, n| {
                    client.post(&url).bearer_auth(&token).json(&json!({
                        "recipient_id": recipient,
                        "content": format!("submit benchmark message {n}"),
                        "delay_seconds": 3600,
                    }))
                })
                .await?,
            )
        }
        Scenario::Batch(args) => batch::batch(&args).await?,
        Scenario::Lateness(delivery) => lateness(&delivery).await?,
        Scenario::Idle(delivery) => idle(&delivery).await?,
        Scenario::Burst(delivery) => burst(&delivery).await?,
        Scenario::Memory(delivery) => memory(&delivery).await?,
        Scenario::Fill(delivery) => capacity::fill(&delivery).await?,
        Scenario::Pending(args) => capacity::pending(&args).await?,
        Scenario::WsIdle(args) => realtime::ws_idle(&args).await?,
        Scenario::WsLateness(args) => realtime::ws_lateness(&args).await?,
        Scenario::BindPlugins(common) => plugins::bind(&common).await?,
        Scenario::UnbindPlugins(common) => plugins::unbind(&common).await?,
        Scenario::FirstSubmit(common) => plugins::first_submit(&common).await?,
    };
    println!("{result}");
    Ok(())
}
