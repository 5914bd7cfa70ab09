//! Serving: the API on a listener (over TLS when configured), the node's background work
//! (the dispatcher and the reconciler on worker nodes, retention, rate-limit upkeep, the
//! schedule runner on every node), and a
//! graceful shutdown: a shutdown signal stops the API first, then lets deliveries in flight
//! commit. The state it serves is built in [`crate::state`].

use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::connections::{self, Accept, PlainListener};
use crate::schedule::Reconciler;
use crate::state::AppState;
use crate::tls::TlsListener;
use crate::use_cases::operations::{self, Retention};

/// Serves `state` on `listener` (over TLS when configured) until `shutdown` resolves, then
/// lets requests in flight finish for up to `shutdown_grace_seconds`.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let limits = &state.connections;
    tracing::info!(
        message = "Connection limits.",
        max_connections = limits.max_total,
        max_connections_per_address = ?limits.max_per_address,
        open_file_limit = limits.open_file_limit,
    );
    let admission = state.admission.clone();
    match state.tls.clone() {
        Some(tls) => {
            let listener = TlsListener::new(listener, tls, admission);
            serve_on(state, listener, shutdown).await
        }
        None => {
            let listener = PlainListener::new(listener, admission, crate::api::shed(limits));
            serve_on(state, listener, shutdown).await
        }
    }
}

async fn serve_on(
    state: AppState,
    listener: impl Accept,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let grace = Duration::from_secs(state.config.shutdown_grace_seconds);
    let janitor = tokio::spawn({
        let state = state.clone();
        async move {
            let mut every_minute = tokio::time::interval(Duration::from_secs(60));
            loop {
                every_minute.tick().await;
                state.limits.shrink();
            }
        }
    });
    let pruner = tokio::spawn(retention(state.clone()));
    let sampler = tokio::spawn(sample_activity(state.clone()));
    // Every node creates schedules' occurrences (once each, whichever node comes first).
    let (stop_schedules, schedules_stopping) = tokio::sync::oneshot::channel::<()>();
    let schedules = tokio::spawn(state.schedules.clone().run(async move {
        let _ = schedules_stopping.await;
    }));
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let (stop_workers, workers_stopping) = tokio::sync::watch::channel(false);
    let workers = state.config.worker_enabled.then(|| {
        let stopping = workers_stopping.clone();
        let dispatcher = tokio::spawn(state.dispatcher.clone().run(async move {
            let mut stopping = stopping;
            let _ = stopping.wait_for(|stop| *stop).await;
        }));
        let reconciler = state
            .redis
            .is_some()
            .then(|| tokio::spawn(reconcile(state.clone())));
        (dispatcher, reconciler)
    });
    let server = connections::serve(
        listener,
        crate::api::router(state.clone(), crate::console::router(state.clone())),
        &state.connections,
        state.admission.clone(),
        {
            let hub = state.hub.clone();
            async move {
                shutdown.await;
                // Upgraded connections are not requests: close them (1001) so clients move on.
                hub.shut_down();
                let _ = stopping_tx.send(());
            }
        },
    );
    let deadline = async move {
        match stopping_rx.await {
            Ok(()) => tokio::time::sleep(grace).await,
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        () = server => {}
        () = deadline => {
            tracing::warn!(
                message = "Connections still open after the shutdown grace period; stopping anyway.",
                grace_seconds = grace.as_secs(),
            );
        }
    }
    janitor.abort();
    pruner.abort();
    sampler.abort();
    let _ = stop_schedules.send(());
    if tokio::time::timeout(grace, schedules).await.is_err() {
        tracing::warn!(message = "The schedule runner did not stop in time.");
    }
    if let Some((dispatcher, reconciler)) = workers {
        if let Some(reconciler) = reconciler {
            reconciler.abort();
        }
        let _ = stop_workers.send(true);
        if tokio::time::timeout(grace, dispatcher).await.is_err() {
            tracing::warn!(
                message = "Deliveries still in flight after the grace period; their leases will expire and another node will deliver them."
            );
        }
    }
}

/// Feeds the console's overview ([`crate::metrics::activity`]): every few seconds, the queue
/// from the kept status counts (a few rows), and with Redis, this node's heartbeat and the
/// number of nodes online.
async fn sample_activity(state: AppState) {
    use crate::metrics::activity::SAMPLE_EVERY;
    let node = hex::encode(crate::random::random_bytes::<8>());
    let mut every = tokio::time::interval(SAMPLE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let now = state.clock.now_ms();
        match state.store.status_counts().await {
            Ok(counts) => state.metrics.activity().sample(&counts, now),
            Err(error) => {
                tracing::warn!(message = "Overview: cannot read the message counts from the database.", %error);
            }
        }
        if let Some(redis) = &state.redis
            && let Err(error) = state.metrics.activity().heartbeat(redis, &node, now).await
        {
            tracing::warn!(message = "Overview: cannot tell Redis this node is online.", %error);
        }
    }
}

/// Keeps what the database holds within its retention ([`operations::prune`]), a pass every
/// quarter of the feed's retention (between a second and a minute).
async fn retention(state: AppState) {
    let retention = Retention {
        feed_ms: state.config.feed_retention_seconds.saturating_mul(1000),
        messages_ms: state
            .config
            .message_retention_days
            .saturating_mul(86_400_000),
    };
    let every = Duration::from_millis((retention.feed_ms / 4).clamp(1_000, 60_000));
    let mut ticks = tokio::time::interval(every);
    loop {
        ticks.tick().await;
        let pruned = operations::prune(state.store.as_ref(), retention, state.clock.now_ms()).await;
        if let Some(error) = pruned.feed {
            tracing::warn!(message = "Could not prune old feed events; retrying later.", %error);
        }
        if let Some(error) = pruned.messages {
            tracing::warn!(message = "Could not prune ended messages; retrying later.", %error);
        }
        if let Some(error) = pruned.idempotency_keys {
            tracing::warn!(message = "Could not prune expired idempotency keys; retrying later.", %error);
        }
        if let Some(error) = pruned.fan_outs {
            tracing::warn!(message = "Could not prune emptied fan-outs; retrying later.", %error);
        }
        if let Some(error) = pruned.schedules {
            tracing::warn!(message = "Could not prune finished schedules; retrying later.", %error);
        }
    }
}

/// Every `reconcile_seconds`, puts back what the index may have lost ([`Reconciler`]). Only
/// where the index can lose entries: Redis (the in-process index is written in the same
/// process as the commits, and rebuilt at every start).
async fn reconcile(state: AppState) {
    let mut reconciler = Reconciler::new(state.clock.now_ms());
    let mut every = tokio::time::interval(Duration::from_secs(state.config.reconcile_seconds));
    every.tick().await;
    loop {
        every.tick().await;
        let now = state.clock.now_ms();
        match reconciler
            .pass(state.store.as_ref(), state.schedule.as_ref(), now)
            .await
        {
            Ok(seen) => tracing::debug!(
                message = "Schedule index reconciled with the messages stored since the last pass.",
                messages = seen,
            ),
            Err(error) => {
                tracing::warn!(message = "Schedule reconciliation failed; retrying later.", %error)
            }
        }
    }
}
