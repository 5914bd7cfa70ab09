//! `dms serve`: start the server and run until SIGTERM or SIGINT.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::app;
use crate::clock::Clock;
use crate::config::Config;
use crate::state::AppState;

pub(super) async fn serve(config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let config = Config::load(config)?;
    tracing::debug!(message = "Configuration loaded.", config = ?config);
    let address = format!("{}:{}", config.host, config.port);
    let storage = match config.database_url.expose() {
        Some(_) => "PostgreSQL".to_owned(),
        None => format!("SQLite at {}", config.sqlite_path().display()),
    };
    let (state, first_run) = AppState::build(config, Clock::System).await?;
    let listener = TcpListener::bind(&address)
        .await
        .with_context(|| format!("cannot listen on {address}"))?;
    if let Some(first_run) = first_run {
        println!("First run: created the tenant \"default\" and its admin user \"admin\".");
        match (&first_run.password, &first_run.password_file) {
            (Some(password), Some(file)) => {
                println!("  admin password: {password}");
                println!(
                    "  (also in {}; change it with PUT /users/me/password)",
                    file.display()
                );
            }
            _ => println!("  admin password: the one in DMS_ADMIN_PASSWORD"),
        }
    }
    println!(
        "DMS listening on {}://{} (storage: {storage}, redis: {})",
        if state.tls.is_some() { "https" } else { "http" },
        listener.local_addr()?,
        if state.redis.is_some() { "on" } else { "off" },
    );
    app::serve(state, listener, shutdown_signal()).await;
    println!("DMS stopped.");
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!(message = "Shutting down: finishing requests in flight.");
}
