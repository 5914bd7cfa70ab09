//! The real-time scenarios, over `GET /ws`:
//! - `ws-idle`: `--connections` authenticated WebSockets spread over `--users` users; connect
//!   rate, and the server's RSS per open connection;
//! - `ws-lateness`: one WebSocket per user while messages come due at `--rate`/s to random
//!   users (submitted at that rate, or with `--preload` loaded first with the batch API);
//!   lateness = receipt − due time, push latency = receipt − the event's `at_ms` (when the
//!   server made the delivery).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::{Common, batch, client, login, now_ms, produce_with, rfc3339, stats};

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The password of the users a run creates.
const USER_PASSWORD: &str = "bench-user-password";

#[derive(Debug, Args, Clone)]
pub(crate) struct WsIdle {
    /// `-c`/`--connections` is the number of WebSockets to open.
    #[command(flatten)]
    common: Common,
    /// Users the connections are spread over (created for the run).
    #[arg(long, default_value_t = 100)]
    users: usize,
    /// Handshakes in flight.
    #[arg(long, default_value_t = 100)]
    in_flight: usize,
    /// The server's process id, to read its RSS from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// How long to keep the connections open after measuring.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    hold: Duration,
}

#[derive(Debug, Args, Clone)]
pub(crate) struct WsLateness {
    /// `-c`/`--connections` is the number of concurrent submitters (4 requests each in flight).
    #[command(flatten)]
    common: Common,
    /// Messages coming due per second.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Messages in all.
    #[arg(long, default_value_t = 20_000)]
    count: u64,
    /// Users (one WebSocket each), created for the run; each message goes to a random one.
    #[arg(long, default_value_t = 200)]
    users: usize,
    /// Each message is due this long after it is submitted.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    lead: Duration,
    /// Submit every message first with the batch API (-c batches in flight), with due times
    /// at a steady --rate starting this long after the start (for a due rate above the submit
    /// rate). Without it, submission runs at --rate, one `POST /messages` each, and each
    /// message is due --lead later.
    #[arg(long, value_parser = humantime::parse_duration)]
    preload: Option<Duration>,
    /// Messages per `POST /messages/batch` with --preload.
    #[arg(long, default_value_t = 1000)]
    batch_size: usize,
    /// How long to wait for missing messages after the last due time.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    wait: Duration,
    /// The server's process id, to read its CPU time from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
}

/// A user created for the run, logged in.
struct User {
    id: String,
    token: String,
}

/// Raises the soft limit on open files to the hard limit: one socket per connection.
pub(crate) fn raise_open_files() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
        && let Err(error) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
    {
        eprintln!("cannot raise the open-file limit from {soft} to {hard}: {error}");
    }
}

/// Creates `count` users (as the admin) and logs each in.
async fn users(
    http: &reqwest::Client,
    common: &Common,
    admin: &str,
    count: usize,
) -> anyhow::Result<Vec<User>> {
    let run = now_ms();
    let created: Vec<anyhow::Result<User>> = futures_util::stream::iter(0..count)
        .map(|n| async move {
            let username = format!("ws-{run}-{n}");
            let response = http
                .post(format!("{}/users", common.url))
                .bearer_auth(admin)
                .json(&json!({ "username": username, "password": USER_PASSWORD }))
                .send()
                .await?;
            if !response.status().is_success() {
                bail!(
                    "creating user {username} failed: {} {}",
                    response.status(),
                    response.text().await?
                );
            }
            let body: Value = response.json().await?;
            let id = body["id"].as_str().context("no id")?.to_owned();
            let as_user = Common {
                username,
                password: USER_PASSWORD.to_owned(),
                ..common.clone()
            };
            let token = login(http, &as_user).await?;
            Ok(User { id, token })
        })
        .buffered(8)
        .collect()
        .await;
    created.into_iter().collect()
}

fn ws_url(common: &Common) -> String {
    let base = common.url.trim_end_matches('/');
    match base.strip_prefix("http") {
        Some(rest) => format!("ws{rest}/ws"),
        None => format!("{base}/ws"),
    }
}

/// Opens an authenticated WebSocket and waits for its `ready` frame.
async fn connect(url: &str, token: &str) -> anyhow::Result<Socket> {
    let mut request = url.into_client_request()?;
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    // Small buffers: the client holds thousands of these (the default read buffer is 128 KiB).
    let config = WebSocketConfig::default()
        .read_buffer_size(4 << 10)
        .write_buffer_size(0);
    let (mut socket, _) =
        tokio_tungstenite::connect_async_with_config(request, Some(config), true).await?;
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), socket.next())
            .await
            .context("no ready frame within 30 s")?;
        match frame {
            Some(Ok(Message::Text(text))) => {
                let frame: Value = serde_json::from_str(text.as_str())?;
                if frame["type"] == "ready" {
                    return Ok(socket);
                }
                bail!("the first frame was not ready: {frame}");
            }
            Some(Ok(Message::Close(close))) => bail!("closed before ready: {close:?}"),
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(error.into()),
            None => bail!("the connection ended before ready"),
        }
    }
}

/// Resident memory of a process, in bytes.
pub(crate) fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .context("no VmRSS")?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kib * 1024)
}

/// CPU time (user + system) a process has used, in seconds (`self` for this one).
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command (in parentheses, which may hold spaces).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on Linux.
    Some(ticks as f64 / 100.0)
}

fn round(value: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (value * scale).round() / scale
}

/// How a connection ended before it was told to close.
fn record_end(first: &std::sync::Mutex<Option<String>>, end: String) {
    if let Ok(mut first) = first.lock() {
        first.get_or_insert(end);
    }
}

pub(crate) async fn ws_idle(args: &WsIdle) -> anyhow::Result<Value> {
    let common = &args.common;
    let http = client(16)?;
    let admin = login(&http, common).await?;
    let users = Arc::new(users(&http, common, &admin, args.users.max(1)).await?);
    let url = ws_url(common);
    let settle = Duration::from_secs(2);

    tokio::time::sleep(settle).await;
    let rss_before = args.server_pid.map(rss_bytes).transpose()?;
    let cpu_before = args
        .server_pid
        .and_then(|pid| cpu_seconds(&pid.to_string()));

    let handshakes = Arc::new(Semaphore::new(args.in_flight.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Result<f64, String>>();
    let dropped = Arc::new(AtomicU64::new(0));
    let first_drop = Arc::new(std::sync::Mutex::new(None::<String>));
    let started = Instant::now();
    let tasks: Vec<_> = (0..common.connections)
        .map(|n| {
            let (users, url, handshakes, done_tx) = (
                users.clone(),
                url.clone(),
                handshakes.clone(),
                done_tx.clone(),
            );
            let (mut stop_rx, dropped, first_drop) =
                (stop_rx.clone(), dropped.clone(), first_drop.clone());
            tokio::spawn(async move {
                let permit = handshakes.acquire_owned().await;
                let begun = Instant::now();
                let connected = connect(&url, &users[n % users.len()].token).await;
                drop(permit);
                let mut socket = match connected {
                    Ok(socket) => {
                        let _ = done_tx.send(Ok(begun.elapsed().as_secs_f64() * 1000.0));
                        socket
                    }
                    Err(error) => {
                        let _ = done_tx.send(Err(format!("{error:#}")));
                        return;
                    }
                };
                drop(done_tx);
                loop {
                    tokio::select! {
                        _ = stop_rx.changed() => {
                            let _ = socket.close(None).await;
                            // Read until the server's close, so both ends finish cleanly.
                            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                                while let Some(Ok(_)) = socket.next().await {}
                            })
                            .await;
                            return;
                        }
                        frame = socket.next() => match frame {
                            Some(Ok(Message::Close(close))) => {
                                dropped.fetch_add(1, Ordering::Relaxed);
                                record_end(&first_drop, format!("closed by the server: {close:?}"));
                                return;
                            }
                            Some(Ok(_)) => {}
                            Some(Err(error)) => {
                                dropped.fetch_add(1, Ordering::Relaxed);
                                record_end(&first_drop, error.to_string());
                                return;
                            }
                            None => {
                                dropped.fetch_add(1, Ordering::Relaxed);
                                record_end(&first_drop, "the connection ended".into());
                                return;
                            }
                        }
                    }
                }
            })
        })
        .collect();
    drop(done_tx);
    let mut connect_ms = Vec::with_capacity(common.connections);
    let mut failed = 0u64;
    let mut first_error = None;
    while let Some(outcome) = done_rx.recv().await {
        match outcome {
            Ok(ms) => connect_ms.push(ms),
            Err(error) => {
                failed += 1;
                first_error.get_or_insert(error);
            }
        }
    }
    let connect_seconds = started.elapsed().as_secs_f64();
    let cpu_after = args
        .server_pid
        .and_then(|pid| cpu_seconds(&pid.to_string()));
    let connected = connect_ms.len();

    tokio::time::sleep(settle).await;
    let rss_after = args.server_pid.map(rss_bytes).transpose()?;
    tokio::time::sleep(args.hold).await;
    let dropped_while_open = dropped.load(Ordering::Relaxed);
    let _ = stop_tx.send(true);
    let closing = Instant::now();
    for task in tasks {
        task.await?;
    }
    let close_seconds = closing.elapsed().as_secs_f64();

    let mb = |bytes: Option<u64>| bytes.map(|bytes| round(bytes as f64 / 1e6, 1));
    let per_connection_kb = match (rss_before, rss_after) {
        (Some(before), Some(after)) if connected > 0 => Some(round(
            (after as f64 - before as f64) / connected as f64 / 1000.0,
            2,
        )),
        _ => None,
    };
    Ok(json!({
        "label": common.label,
        "scenario": "ws-idle",
        "connections": common.connections,
        "users": users.len(),
        "in_flight": args.in_flight,
        "connected": connected,
        "failed": failed,
        "first_error": first_error,
        "connect_seconds": round(connect_seconds, 2),
        "connects_per_second": (connected as f64 / connect_seconds).round(),
        "connect_ms": stats(connect_ms),
        "server_cpu_seconds_connecting": cpu_before.zip(cpu_after).map(|(before, after)| round(after - before, 2)),
        "server_rss_before_mb": mb(rss_before),
        "server_rss_after_mb": mb(rss_after),
        "server_rss_per_connection_kb": per_connection_kb,
        "dropped_while_open": dropped_while_open,
        "first_drop": first_drop.lock().ok().and_then(|first| first.clone()),
        "close_seconds": round(close_seconds, 2),
    }))
}

/// How the messages of a run were submitted.
struct Submitted {
    /// Messages not accepted.
    errors: u64,
    first_error: Option<String>,
    per_second: f64,
}

/// A `message` event as one socket received it.
struct Received {
    id: String,
    /// Receipt (Unix ms, sub-ms precision).
    at: f64,
    due_ms: Option<u64>,
    /// When the server made the delivery (Unix ms).
    delivered_ms: Option<u64>,
}

fn now_ms_f64() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// A well-mixed 64-bit hash of `n` (splitmix64), for picking recipients.
fn mix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Reads one user's socket until told to stop, passing on every `message` event.
async fn receive(
    mut socket: Socket,
    events: mpsc::UnboundedSender<Received>,
    mut stop: watch::Receiver<bool>,
    ended: Arc<std::sync::Mutex<Option<String>>>,
    closed: Arc<AtomicU64>,
) {
    loop {
        let frame = tokio::select! {
            _ = stop.changed() => {
                let _ = socket.close(None).await;
                return;
            }
            frame = socket.next() => frame,
        };
        let at = now_ms_f64();
        let end = match frame {
            Some(Ok(Message::Text(text))) => {
                let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) else {
                    continue;
                };
                if frame["type"] == "message" {
                    let message = &frame["message"];
                    let _ = events.send(Received {
                        id: message["id"].as_str().unwrap_or_default().to_owned(),
                        at,
                        due_ms: message["metadata"]["due_ms"]
                            .as_str()
                            .and_then(|due| due.parse().ok()),
                        delivered_ms: frame["at_ms"].as_u64(),
                    });
                }
                continue;
            }
            Some(Ok(Message::Close(close))) => format!("closed by the server: {close:?}"),
            Some(Ok(_)) => continue,
            Some(Err(error)) => error.to_string(),
            None => "the connection ended".to_owned(),
        };
        closed.fetch_add(1, Ordering::Relaxed);
        record_end(&ended, end);
        return;
    }
}

pub(crate) async fn ws_lateness(args: &WsLateness) -> anyhow::Result<Value> {
    let common = &args.common;
    let http = client(common.connections)?;
    let admin = login(&http, common).await?;
    let users = users(&http, common, &admin, args.users.max(1)).await?;
    let url = ws_url(common);

    // One socket per user, 100 handshakes at a time.
    let sockets: Vec<anyhow::Result<Socket>> = futures_util::stream::iter(&users)
        .map(|user| connect(&url, &user.token))
        .buffered(100)
        .collect()
        .await;
    let (events_tx, mut events_rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = watch::channel(false);
    let ended = Arc::new(std::sync::Mutex::new(None::<String>));
    let closed = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for socket in sockets {
        readers.push(tokio::spawn(receive(
            socket?,
            events_tx.clone(),
            stop_rx.clone(),
            ended.clone(),
            closed.clone(),
        )));
    }
    drop(events_tx);

    // Collects events until told to stop.
    let unique = Arc::new(AtomicU64::new(0));
    let (collect_stop_tx, mut collect_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let collector = {
        let unique = unique.clone();
        tokio::spawn(async move {
            let mut seen = HashSet::new();
            let mut rows = Vec::new();
            let mut duplicates = 0u64;
            let mut take = |event: Received| {
                if seen.insert(event.id.clone()) {
                    unique.fetch_add(1, Ordering::Relaxed);
                    rows.push(event);
                } else {
                    duplicates += 1;
                }
            };
            loop {
                tokio::select! {
                    _ = &mut collect_stop_rx => break,
                    event = events_rx.recv() => match event {
                        Some(event) => take(event),
                        None => break,
                    },
                }
            }
            while let Ok(event) = events_rx.try_recv() {
                take(event);
            }
            (rows, duplicates)
        })
    };

    let recipients: Arc<Vec<String>> = Arc::new(users.iter().map(|user| user.id.clone()).collect());
    let start = now_ms() + 1_000;
    let interval_us = 1_000_000 / args.rate.max(1);
    let lead_ms = args.lead.as_millis() as u64;
    // Paced: sent at --rate, each due --lead after it is actually sent. Preloaded: all sent
    // at once, due as planned.
    let first_due = args
        .preload
        .map(|preload| start + preload.as_millis() as u64);
    let content = "x".repeat(64);
    let item = move |n: u64, due: u64| {
        json!({
            "recipient_id": recipients[(mix(n) % recipients.len() as u64) as usize],
            "content": content,
            "deliver_at": rfc3339(due),
            "metadata": { "due_ms": due.to_string() },
        })
    };
    let sample = || {
        (
            Instant::now(),
            args.server_pid
                .and_then(|pid| cpu_seconds(&pid.to_string())),
            cpu_seconds("self"),
        )
    };
    // CPU is measured while messages are sent or come due.
    let mut window = sample();
    let (submitted, last_due) = match first_due {
        Some(first_due) => {
            let loaded = batch::submit_batches(
                &http,
                common,
                &admin,
                args.count,
                args.batch_size,
                common.connections,
                move |n| item(n, first_due + n * interval_us / 1000),
            )
            .await;
            let now = now_ms();
            if now >= first_due {
                eprintln!(
                    "warning: loading took longer than --preload; messages came due while loading"
                );
            } else {
                tokio::time::sleep(Duration::from_millis(first_due - now)).await;
                window = sample();
            }
            let submitted = Submitted {
                errors: loaded.rejected,
                first_error: loaded.first_error,
                per_second: loaded.accepted as f64 / loaded.seconds.max(0.001),
            };
            (
                submitted,
                first_due + args.count.saturating_sub(1) * interval_us / 1000,
            )
        }
        None => {
            let send_at: Vec<u64> = (0..args.count)
                .map(|n| start + n * interval_us / 1000)
                .collect();
            let produced = produce_with(&http, common, &admin, send_at, move |n| {
                item(n as u64, now_ms() + lead_ms)
            })
            .await;
            let seconds = (produced.last_sent_ms - produced.first_sent_ms) as f64 / 1000.0;
            let submitted = Submitted {
                errors: produced.errors,
                first_error: produced.first_error,
                per_second: produced.ok as f64 / seconds.max(0.001),
            };
            (submitted, produced.last_sent_ms + lead_ms)
        }
    };
    let accepted = args.count - submitted.errors;
    let deadline = last_due + args.wait.as_millis() as u64;
    while unique.load(Ordering::Relaxed) < accepted && now_ms() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (window_start, server_cpu_before, own_cpu_before) = window;
    let (window_end, server_cpu_after, own_cpu_after) = sample();
    let measured_seconds = (window_end - window_start).as_secs_f64();
    let _ = collect_stop_tx.send(());
    let (rows, duplicates) = collector.await?;
    let _ = stop_tx.send(true);
    for reader in readers {
        let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
    }

    let lateness: Vec<f64> = rows
        .iter()
        .filter_map(|row| row.due_ms.map(|due| row.at - due as f64))
        .collect();
    let push: Vec<f64> = rows
        .iter()
        .filter_map(|row| row.delivered_ms.map(|at| row.at - at as f64))
        .collect();
    let dispatch: Vec<f64> = rows
        .iter()
        .filter_map(|row| Some(row.delivered_ms? as f64 - row.due_ms? as f64))
        .collect();
    let cpu_percent = |before: Option<f64>, after: Option<f64>| {
        before
            .zip(after)
            .map(|(before, after)| round((after - before) / measured_seconds * 100.0, 1))
    };
    Ok(json!({
        "label": common.label,
        "scenario": "ws-lateness",
        "rate": args.rate,
        "messages": args.count,
        "users": users.len(),
        "preload": args.preload.map(|preload| preload.as_secs()),
        "lead_ms": args.preload.is_none().then_some(lead_ms),
        "submit_errors": submitted.errors,
        "first_submit_error": submitted.first_error,
        "submitted_per_second": submitted.per_second.round(),
        "batch_size": args.preload.is_some().then_some(args.batch_size),
        "received": rows.len(),
        "missing": accepted.saturating_sub(rows.len() as u64),
        "duplicates": duplicates,
        "sockets_closed_early": closed.load(Ordering::Relaxed),
        "first_close": ended.lock().ok().and_then(|first| first.clone()),
        "lateness_ms": stats(lateness),
        "push_latency_ms": stats(push),
        "dispatch_ms": stats(dispatch),
        "server_cpu_percent": cpu_percent(server_cpu_before, server_cpu_after),
        "loadgen_cpu_percent": cpu_percent(own_cpu_before, own_cpu_after),
        "measured_seconds": round(measured_seconds, 1),
    }))
}
