//! The running server: its shared state, start-up, and serving with graceful shutdown.
//!
//! Start-up, in order: validate the configuration, open the database (SQLite under `data_dir`
//! or PostgreSQL) with the content encryption keys and apply migrations, link Redis if
//! configured, load or create the JWT secret, start the plugin sandbox with the built-in
//! policies, rebuild the schedule index from the database, and on an empty database create the
//! tenant `default` with its `admin` user.
//!
//! Serving runs the API and, on worker nodes, the dispatcher and the reconciler; a shutdown
//! signal stops the API first, then lets deliveries in flight commit.

use std::future::Future;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use tokio::net::TcpListener;

use crate::auth::password::{HashError, Passwords};
use crate::auth::rate_limit::{RateLimits, Rates};
use crate::auth::{jwt::Tokens, random_bytes};
use crate::clock::Clock;
use crate::config::{Config, ConfigError};
use crate::connections::{self, Accept, Admission, PlainListener, Shed};
use crate::dispatch::{self, Dispatcher};
use crate::domain::user::Role;
use crate::metrics::Metrics;
use crate::policies::Policies;
use crate::realtime::Hub;
use crate::redis_link::RedisLink;
use crate::sandbox::{LoadError, Sandbox, SandboxConfig, SetupError};
use crate::schedule::{Reconciler, Schedule, local::LocalSchedule, redis::RedisSchedule};
use crate::store::crypto::{CryptoError, Keyring};
use crate::store::{self, Location, NewUser, Store, StoreError};
use crate::tls::{TlsError, TlsListener};

/// What every request handler can reach.
pub struct Shared {
    /// The configuration.
    pub config: Config,
    /// The database.
    pub store: Arc<dyn Store>,
    /// Password hashing.
    pub passwords: Passwords,
    /// Access tokens.
    pub tokens: Tokens,
    /// Rate limits.
    pub limits: RateLimits,
    /// Redis, when configured.
    pub redis: Option<RedisLink>,
    /// The clock.
    pub clock: Clock,
    /// When the server started.
    pub started: Instant,
    /// The tenants' policy plugins, in the sandbox.
    pub policies: Policies,
    /// The schedule index.
    pub schedule: Arc<dyn Schedule>,
    /// The dispatcher (running only on worker nodes; tests drive it by hand).
    pub dispatcher: Arc<Dispatcher>,
    /// Commits accepted messages in groups, and indexes them.
    pub submitter: crate::messages::submit::Submitter,
    /// Live connections, events across nodes, and presence.
    pub hub: Arc<Hub>,
    /// The node's Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// TLS, when `DMS_TLS_CERT` and `DMS_TLS_KEY` are set.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The connection caps and timeouts, resolved against the open-file limit.
    pub connections: connections::Settings,
    /// The open connections, under those caps.
    pub admission: Arc<Admission>,
}

/// The server's state. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The database could not be opened or migrated.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The Redis URL is unusable.
    #[error("invalid REDIS_URL: {0}")]
    Redis(String),
    /// A file under the data directory could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Hashing the first admin's password failed.
    #[error(transparent)]
    Hash(#[from] HashError),
    /// The encryption keys are unusable.
    #[error(transparent)]
    Keys(#[from] CryptoError),
    /// The plugin sandbox could not start.
    #[error(transparent)]
    Sandbox(#[from] SetupError),
    /// A built-in plugin failed to load.
    #[error("a built-in plugin failed to load: {0}")]
    Plugins(#[from] LoadError),
    /// The TLS certificate or key is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// What the first start created, to tell the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstRun {
    /// The generated admin password (`None` when `DMS_ADMIN_PASSWORD` set it).
    pub password: Option<String>,
    /// Where the generated password was also written.
    pub password_file: Option<PathBuf>,
}

impl AppState {
    /// Starts everything the server needs; see the module docs.
    pub async fn build(
        config: Config,
        clock: Clock,
    ) -> Result<(Self, Option<FirstRun>), StartError> {
        config.validate()?;
        let connections = connections::Settings::resolve(&config)?;
        // Read the certificate first: a bad path should not wait for a database to say so.
        let tls = match config.tls() {
            Some((cert, key)) => Some(crate::tls::server_config(cert, key)?),
            None => None,
        };
        let keyring = Arc::new(keyring(&config)?);
        let store = open_store_with(&config, keyring).await?;
        let redis = match config.redis_url.expose() {
            Some(url) => Some(
                RedisLink::new(url, &config.redis_prefix)
                    .map_err(|error| StartError::Redis(error.to_string()))?,
            ),
            None => None,
        };
        let secret = match config.jwt_secret.expose() {
            Some(secret) => secret.as_bytes().to_vec(),
            None => generated_secret(&config.data_dir)?,
        };
        let tokens = Tokens::new(
            &secret,
            &config.jwt_issuer,
            &config.jwt_audience,
            config.access_token_ttl_seconds,
            clock.clone(),
        );
        let parallelism = std::thread::available_parallelism().map_or(2, |n| n.get());
        let passwords = Passwords::new(parallelism).await?;
        let limits = RateLimits::new(Rates::from_config(&config), redis.clone());
        let hub = Hub::new(
            config.ws_outbound_queue as usize,
            crate::realtime::Caps {
                per_user: config.ws_max_per_user as usize,
                per_tenant: config.ws_max_per_tenant as usize,
                unauthenticated_per_address: config.ws_max_unauthenticated_per_address as usize,
            },
            redis.clone(),
        );
        store.feed_notifier().listen({
            let hub = hub.clone();
            Arc::new(move |events| hub.publish(events))
        });
        let sandbox = Sandbox::new(
            SandboxConfig {
                limits: config.plugin_limits(),
                max_instances: config.plugin_max_instances,
                cache_dir: Some(config.plugin_cache_dir()),
                allow_private_networks: config.allow_private_networks,
                clock: clock.clone(),
                max_component_bytes: (config.plugin_max_upload_mb as usize) << 20,
                cache_memory_bytes: (config.plugin_cache_memory_mb as usize) << 20,
                compile_concurrency: config.plugin_compile_concurrency as usize,
            },
            hub.clone(),
        )?;
        let metrics = Arc::new(Metrics::new(sandbox.clone()));
        let policies = Policies::new(
            sandbox,
            store.clone(),
            hub.clone(),
            config.plugin_failure_limit,
            config.plugin_quota(),
        )
        .await?;
        hub.on_hooks_changed({
            let policies = policies.clone();
            Arc::new(move |tenant| policies.forget(tenant))
        });
        let schedule: Arc<dyn Schedule> = match &redis {
            Some(link) => Arc::new(RedisSchedule::new(link.clone())),
            None => Arc::new(LocalSchedule::new()),
        };
        let dispatcher = Arc::new(Dispatcher::new(
            store.clone(),
            schedule.clone(),
            policies.clone(),
            clock.clone(),
            metrics.clone(),
            dispatch::Settings {
                concurrency: config.dispatch_concurrency as usize,
                lease: Duration::from_secs(config.lease_seconds),
                // In process, every addition wakes the loop; across nodes a wake-up can be
                // missed while Redis reconnects, so look at least once a second.
                max_idle: if redis.is_some() {
                    Duration::from_secs(1)
                } else {
                    Duration::from_secs(60)
                },
            },
        ));
        let submitter = crate::messages::submit::Submitter::start(store.clone(), schedule.clone());
        if let Err(error) = dispatcher.rebuild().await {
            // Redis may be down at start; the dispatcher rebuilds when it is back.
            tracing::warn!(message = "Could not rebuild the schedule index at start.", %error);
        }
        let first_run = first_run(store.as_ref(), &passwords, &config, &clock).await?;
        let state = Self(Arc::new(Shared {
            config,
            store,
            passwords,
            tokens,
            limits,
            redis,
            clock,
            started: Instant::now(),
            policies,
            schedule,
            dispatcher,
            submitter,
            hub,
            metrics,
            tls,
            admission: Admission::new(&connections),
            connections,
        }));
        Ok((state, first_run))
    }
}

/// Opens the configured database and applies migrations.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, StartError> {
    let keyring = Arc::new(keyring(config)?);
    open_store_with(config, keyring).await
}

/// Opens the configured database with `keyring` and applies migrations.
pub async fn open_store_with(
    config: &Config,
    keyring: Arc<Keyring>,
) -> Result<Arc<dyn Store>, StartError> {
    let sqlite = config.sqlite_path();
    let location = match config.database_url.expose() {
        Some(url) => Location::Postgres(url),
        None => {
            create_private_dir(&config.data_dir)?;
            Location::Sqlite(&sqlite)
        }
    };
    Ok(store::connect(location, config.db_max_connections, keyring).await?)
}

/// The content encryption keys: configured, or (embedded default) generated once under
/// `data_dir/encryption-keys`.
fn keyring(config: &Config) -> Result<Keyring, StartError> {
    if let Some(keyring) = configured_keyring(config)? {
        return Ok(keyring);
    }
    create_private_dir(&config.data_dir)?;
    let entry = Keyring::generate_entry("local1");
    write_private(&config.data_dir.join("encryption-keys"), entry.as_bytes())?;
    Ok(Keyring::parse(&entry)?)
}

/// The content encryption keys that exist (`DMS_ENCRYPTION_KEYS`, or the embedded default's
/// `data_dir/encryption-keys`), generating none: a restore must open the values it was given
/// with the keys that sealed them, and a fresh key would only hide that they are missing.
pub fn configured_keyring(config: &Config) -> Result<Option<Keyring>, StartError> {
    if let Some(keys) = config.encryption_keys.expose() {
        return Ok(Some(Keyring::parse(keys)?));
    }
    let path = config.data_dir.join("encryption-keys");
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(Keyring::parse(text.trim())?)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StartError::File { path, source }),
    }
}

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
            let listener = PlainListener::new(listener, admission, Shed::new(limits));
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
        crate::api::router(state.clone()),
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

/// Messages deleted in one slice of retention's pruning: small enough that a slice never holds
/// the write lock for long.
const PRUNE_SLICE: u32 = 5_000;

/// Keeps what the database holds within its retention: feed events older than
/// `feed_retention_seconds`, messages that ended more than `message_retention_days` ago (with
/// their history, in slices), and idempotency keys past their 24 hours.
async fn retention(state: AppState) {
    let feed_ms = state.config.feed_retention_seconds.saturating_mul(1000);
    let messages_ms = state
        .config
        .message_retention_days
        .saturating_mul(86_400_000);
    let every = Duration::from_millis((feed_ms / 4).clamp(1_000, 60_000));
    let mut ticks = tokio::time::interval(every);
    loop {
        ticks.tick().await;
        let now = state.clock.now_ms();
        if let Err(error) = state.store.prune_feed(now.saturating_sub(feed_ms)).await {
            tracing::warn!(message = "Could not prune old feed events; retrying later.", %error);
        }
        loop {
            match state
                .store
                .prune_messages(now.saturating_sub(messages_ms), PRUNE_SLICE)
                .await
            {
                Ok(pruned) if pruned == u64::from(PRUNE_SLICE) => tokio::task::yield_now().await,
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!(message = "Could not prune ended messages; retrying later.", %error);
                    break;
                }
            }
        }
        let keys = now.saturating_sub(crate::store::IDEMPOTENCY_TTL_MS);
        if let Err(error) = state.store.prune_idempotency_keys(keys).await {
            tracing::warn!(message = "Could not prune expired idempotency keys; retrying later.", %error);
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

async fn first_run(
    store: &dyn Store,
    passwords: &Passwords,
    config: &Config,
    clock: &Clock,
) -> Result<Option<FirstRun>, StartError> {
    if !store.list_tenants().await?.is_empty() {
        return Ok(None);
    }
    let now = clock.now_ms();
    let tenant = match store.create_tenant("default", now).await {
        Ok(tenant) => tenant,
        // Another node starting at the same moment won the race.
        Err(StoreError::Conflict(_)) => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    let (password, generated) = match config.admin_password.expose() {
        Some(password) => (password.to_owned(), false),
        None => (
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<15>()),
            true,
        ),
    };
    let admin = NewUser {
        username: "admin".into(),
        display_name: Some("Administrator".into()),
        role: Role::Admin,
        password_hash: passwords.hash(&password).await?,
    };
    match store.create_user(&tenant.id, admin, now).await {
        Ok(_) => {}
        Err(StoreError::Conflict(_)) => return Ok(None),
        Err(error) => return Err(error.into()),
    }
    if !generated {
        return Ok(Some(FirstRun {
            password: None,
            password_file: None,
        }));
    }
    create_private_dir(&config.data_dir)?;
    let file = config.data_dir.join("initial-admin-password");
    write_private(&file, format!("{password}\n").as_bytes())?;
    Ok(Some(FirstRun {
        password: Some(password),
        password_file: Some(file),
    }))
}

/// The JWT secret of the embedded default: generated once, kept in `data_dir/jwt-secret`.
fn generated_secret(data_dir: &Path) -> Result<Vec<u8>, StartError> {
    let path = data_dir.join("jwt-secret");
    match std::fs::read_to_string(&path) {
        Ok(text) if text.trim().len() >= crate::config::MIN_JWT_SECRET_BYTES => {
            return Ok(text.trim().as_bytes().to_vec());
        }
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(StartError::File { path, source }),
    }
    create_private_dir(data_dir)?;
    let secret = base64::engine::general_purpose::STANDARD.encode(random_bytes::<48>());
    write_private(&path, secret.as_bytes())?;
    Ok(secret.into_bytes())
}

fn create_private_dir(dir: &Path) -> Result<(), StartError> {
    crate::private_files::create_dir(dir).map_err(|source| StartError::File {
        path: dir.to_path_buf(),
        source,
    })
}

/// Writes a file only its owner can read (mode 0600).
fn write_private(path: &Path, contents: &[u8]) -> Result<(), StartError> {
    use std::io::Write;
    crate::private_files::create_file(path)
        .and_then(|mut file| file.write_all(contents))
        .map_err(|source| StartError::File {
            path: path.to_path_buf(),
            source,
        })
}
