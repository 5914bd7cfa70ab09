//! `POST /messages/batch`: the `batch` scenario (throughput of batches of `--size` messages,
//! due in an hour, `-c` batches in flight for `-d`), and [`submit_batches`], the preload that
//! `lateness --preload`, `burst`, `memory`, `fill`, `pending` and `ws-lateness --preload` use
//! so that loading is not what they measure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use futures_util::StreamExt as _;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Common, client, login, recipient, stats};

#[derive(Debug, Args, Clone)]
pub(crate) struct Batch {
    /// `-c`/`--connections` is the number of batches in flight; `-d` how long to run.
    #[command(flatten)]
    common: Common,
    /// Messages per batch (1 to 1,000).
    #[arg(long, default_value_t = 100)]
    size: usize,
}

/// The parts of a batch answer the load tool reads (the accepted messages are skipped).
#[derive(Deserialize)]
struct Answer {
    accepted: u64,
    rejected: u64,
    items: Vec<AnswerItem>,
}

#[derive(Deserialize)]
struct AnswerItem {
    #[serde(default)]
    problem: Option<Value>,
}

/// What one batch request came to.
struct Outcome {
    accepted: u64,
    rejected: u64,
    /// The whole request failed (transport error or a non-200 answer): none of it was taken.
    failed: bool,
    error: Option<String>,
    latency_ms: f64,
}

/// Sends one batch and reads its answer.
async fn send(client: &reqwest::Client, url: &str, token: &str, items: Vec<Value>) -> Outcome {
    let size = items.len() as u64;
    let sent = Instant::now();
    let response = client
        .post(url)
        .bearer_auth(token)
        .json(&json!({ "messages": items }))
        .send()
        .await;
    let failed = |error: String, sent: Instant| Outcome {
        accepted: 0,
        rejected: size,
        failed: true,
        error: Some(error),
        latency_ms: sent.elapsed().as_secs_f64() * 1000.0,
    };
    let response = match response {
        Ok(response) => response,
        Err(error) => return failed(error.to_string(), sent),
    };
    let status = response.status();
    let body = match response.bytes().await {
        Ok(body) => body,
        Err(error) => return failed(error.to_string(), sent),
    };
    let latency_ms = sent.elapsed().as_secs_f64() * 1000.0;
    if status != reqwest::StatusCode::OK {
        return Outcome {
            latency_ms,
            ..failed(
                format!("{status}: {}", String::from_utf8_lossy(&body)),
                sent,
            )
        };
    }
    match serde_json::from_slice::<Answer>(&body) {
        Ok(answer) => Outcome {
            accepted: answer.accepted,
            rejected: answer.rejected,
            failed: false,
            error: answer
                .items
                .into_iter()
                .find_map(|item| item.problem)
                .map(|problem| format!("item refused: {problem}")),
            latency_ms,
        },
        Err(error) => Outcome {
            latency_ms,
            ..failed(format!("unreadable batch answer: {error}"), sent)
        },
    }
}

/// What [`submit_batches`] did.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    /// Messages the server accepted.
    pub(crate) accepted: u64,
    /// Messages not accepted: refused items, and every item of a failed request.
    pub(crate) rejected: u64,
    /// Requests that failed whole.
    pub(crate) failed_requests: u64,
    pub(crate) first_error: Option<String>,
    pub(crate) requests: u64,
    /// From the first request out to the last answer.
    pub(crate) seconds: f64,
    pub(crate) latencies_ms: Vec<f64>,
}

impl Loaded {
    /// The JSON summary of the load, for a scenario's output line.
    pub(crate) fn summary(&self, batch_size: usize, in_flight: usize) -> Value {
        json!({
            "batch_size": batch_size,
            "batches_in_flight": in_flight,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "failed_requests": self.failed_requests,
            "first_error": self.first_error,
            "seconds": (self.seconds * 10.0).round() / 10.0,
            "messages_per_second": (self.accepted as f64 / self.seconds.max(0.001)).round(),
            "batch_latency_ms": stats(self.latencies_ms.clone()),
        })
    }
}

/// Submits `count` messages with `POST /messages/batch`, `batch_size` a request and
/// `in_flight` requests at a time; `item(n)` is message `n` (built as its batch goes out, so a
/// load of millions holds only the batches in flight). Prints its progress to stderr every
/// 10 s. A failed request is not retried: its messages count as rejected.
pub(crate) async fn submit_batches(
    client: &reqwest::Client,
    common: &Common,
    token: &str,
    count: u64,
    batch_size: usize,
    in_flight: usize,
    item: impl Fn(u64) -> Value + Send + Sync + 'static,
) -> Loaded {
    let batch_size = batch_size.clamp(1, 1000) as u64;
    let item = Arc::new(item);
    let url = format!("{}/messages/batch", common.url);
    let started = Instant::now();
    let mut loaded = Loaded::default();
    let mut last_report = Instant::now();
    let mut outcomes = futures_util::stream::iter((0..count).step_by(batch_size as usize))
        .map(|first| {
            let (client, url, token, item) =
                (client.clone(), url.clone(), token.to_owned(), item.clone());
            async move {
                let items = (first..(first + batch_size).min(count))
                    .map(|n| item(n))
                    .collect();
                send(&client, &url, &token, items).await
            }
        })
        .buffer_unordered(in_flight.max(1));
    while let Some(outcome) = outcomes.next().await {
        loaded.requests += 1;
        loaded.accepted += outcome.accepted;
        loaded.rejected += outcome.rejected;
        loaded.failed_requests += u64::from(outcome.failed);
        loaded.latencies_ms.push(outcome.latency_ms);
        if loaded.first_error.is_none() {
            loaded.first_error = outcome.error;
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            let seconds = started.elapsed().as_secs_f64();
            eprintln!(
                "loadgen: {} of {count} messages accepted in {seconds:.0} s ({:.0}/s), {} rejected",
                loaded.accepted,
                loaded.accepted as f64 / seconds,
                loaded.rejected,
            );
        }
    }
    loaded.seconds = started.elapsed().as_secs_f64();
    loaded
}

/// `batch`: batches of `--size` messages due in an hour, `-c` in flight, for `-d`.
pub(crate) async fn batch(args: &Batch) -> anyhow::Result<Value> {
    let common = &args.common;
    let size = args.size.clamp(1, 1000);
    let client = client(common.connections)?;
    let token = login(&client, common).await?;
    let recipient = recipient(&client, common, &token).await?;
    let url = format!("{}/messages/batch", common.url);
    let deadline = Instant::now() + common.duration;
    let started = Instant::now();
    let workers: Vec<_> = (0..common.connections.max(1))
        .map(|worker| {
            let (client, url, token, recipient) = (
                client.clone(),
                url.clone(),
                token.clone(),
                recipient.clone(),
            );
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let items = (0..size)
                        .map(|_| {
                            n += 1;
                            json!({
                                "recipient_id": recipient,
                                "content": format!("batch benchmark message {worker}-{n}"),
                                "delay_seconds": 3600,
                            })
                        })
                        .collect();
                    outcomes.push(send(&client, &url, &token, items).await);
                }
                outcomes
            })
        })
        .collect();
    let mut loaded = Loaded::default();
    for worker in workers {
        for outcome in worker.await? {
            loaded.requests += 1;
            loaded.accepted += outcome.accepted;
            loaded.rejected += outcome.rejected;
            loaded.failed_requests += u64::from(outcome.failed);
            if !outcome.failed {
                loaded.latencies_ms.push(outcome.latency_ms);
            }
            if loaded.first_error.is_none() {
                loaded.first_error = outcome.error;
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(json!({
        "label": common.label,
        "scenario": "batch",
        "size": size,
        "connections": common.connections,
        "seconds": (seconds * 10.0).round() / 10.0,
        "requests": loaded.requests,
        "batches_per_second": (loaded.requests as f64 / seconds * 10.0).round() / 10.0,
        "messages": loaded.accepted,
        "messages_per_second": (loaded.accepted as f64 / seconds).round(),
        "rejected": loaded.rejected,
        "failed_requests": loaded.failed_requests,
        "first_error": loaded.first_error,
        "latency_ms": stats(loaded.latencies_ms),
    }))
}
