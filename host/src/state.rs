//! The server's shared state ([`AppState`]) and how it is built.
//!
//! Start-up, in order: validate the configuration, open the database (SQLite under `data_dir`
//! or PostgreSQL) with the content encryption keys and apply migrations, link Redis if
//! configured, load or create the JWT secret, start the plugin sandbox with the built-in
//! policies, rebuild the schedule index from the database, and on an empty database create the
//! tenant `default` with its `admin` user.
//!
//! Nothing here knows about HTTP: the API (and the CLI's `serve`) take an [`AppState`], and
//! the use cases take only their part of it.

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::auth::jwt::Tokens;
use crate::auth::password::{HashError, Passwords};
use crate::auth::rate_limit::{RateLimits, Rates};
use crate::clock::Clock;
use crate::config::{Config, ConfigError};
use crate::connections::{self, Admission};
use crate::dispatch::{self, Dispatcher};
use crate::flow::{FlowControl, Limiter, local::LocalLimiter, redis::RedisLimiter};
use crate::metrics::Metrics;
use crate::policies::Policies;
use crate::random::random_bytes;
use crate::realtime::Hub;
use crate::redis_link::RedisLink;
use crate::sandbox::{LoadError, Sandbox, SandboxConfig, SetupError};
use crate::schedule::{Schedule, local::LocalSchedule, redis::RedisSchedule};
use crate::store::crypto::{CryptoError, Keyring};
use crate::store::{self, Location, Store, StoreError};
use crate::tls::TlsError;
use crate::use_cases::accounts::{Accounts, Sessions};
use crate::use_cases::flow::FlowLimits;
use crate::use_cases::groups::Groups;
use crate::use_cases::messages::Messages;
use crate::use_cases::policies::TenantPolicies;
use crate::use_cases::schedules::Schedules;

/// What every request handler can reach.
pub struct Shared {
    /// The configuration.
    pub config: Config,
    /// The database.
    pub store: Arc<dyn Store>,
    /// Rate limits.
    pub limits: Arc<RateLimits>,
    /// Tenants, users and passwords.
    pub accounts: Accounts,
    /// Logins, refreshes, sessions, and the user behind a token.
    pub sessions: Sessions,
    /// Redis, when configured.
    pub redis: Option<RedisLink>,
    /// The clock.
    pub clock: Clock,
    /// When the server started.
    pub started: Instant,
    /// The tenants' policy plugins, in the sandbox.
    pub policies: Policies,
    /// The policies the hub's hook-change listener reaches (weakly): kept as long as the state.
    _listened_policies: Arc<Policies>,
    /// The schedule index.
    pub schedule: Arc<dyn Schedule>,
    /// Flow control per key: the tenants' limits and the limiter.
    pub flow: Arc<FlowControl>,
    /// Flow-control limits as tenant admins set them.
    pub flow_limits: FlowLimits,
    /// The dispatcher (running only on worker nodes; tests drive it by hand).
    pub dispatcher: Arc<Dispatcher>,
    /// The message use cases.
    pub messages: Messages,
    /// The tenant's groups.
    pub groups: Groups,
    /// Recurring schedules and their runner.
    pub schedules: Schedules,
    /// The tenants' plugins, hooks and dry runs.
    pub tenant_policies: TenantPolicies,
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
    /// Hashing a password failed.
    #[error(transparent)]
    Hash(#[from] HashError),
    /// The first tenant and admin could not be created.
    #[error("could not create the first admin (DMS_ADMIN_PASSWORD): {0}")]
    FirstRun(#[from] crate::use_cases::accounts::Error),
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
        let tokens = Arc::new(Tokens::new(
            &secret,
            &config.jwt_issuer,
            &config.jwt_audience,
            config.access_token_ttl_seconds,
            clock.clone(),
        ));
        let parallelism = std::thread::available_parallelism().map_or(2, |n| n.get());
        let passwords = Arc::new(Passwords::new(parallelism).await?);
        let limits = Arc::new(RateLimits::new(Rates::from_config(&config), redis.clone()));
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
        // The hub tells the policies of hook changes made on other nodes. The policies hold
        // the hub (their sandbox answers presence from it), so the hub holds them weakly: a
        // strong reference would make a cycle that keeps a dropped state, its engine and its
        // pools alive.
        let listened = Arc::new(policies.clone());
        hub.on_hooks_changed({
            let policies = Arc::downgrade(&listened);
            Arc::new(move |tenant| {
                if let Some(policies) = policies.upgrade() {
                    policies.forget(tenant);
                }
            })
        });
        let schedule: Arc<dyn Schedule> = match &redis {
            Some(link) => Arc::new(RedisSchedule::new(link.clone())),
            None => Arc::new(LocalSchedule::new()),
        };
        let limiter: Arc<dyn Limiter> = match &redis {
            Some(link) => Arc::new(RedisLimiter::new(link.clone())),
            None => Arc::new(LocalLimiter::new()),
        };
        let flow = Arc::new(FlowControl::new(store.clone(), limiter));
        let dispatcher = Arc::new(Dispatcher::new(
            store.clone(),
            schedule.clone(),
            flow.clone(),
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
        let messages = Messages::new(
            store.clone(),
            schedule.clone(),
            policies.clone(),
            clock.clone(),
            config.allow_private_networks,
        );
        let groups = Groups::new(
            store.clone(),
            clock.clone(),
            u64::from(config.group_max_members),
        );
        let tenant_policies =
            TenantPolicies::new(policies.clone(), store.clone(), messages.clone());
        let schedules = Schedules::new(store.clone(), messages.clone(), clock.clone());
        if let Err(error) = dispatcher.rebuild().await {
            // Redis may be down at start; the dispatcher rebuilds when it is back.
            tracing::warn!(message = "Could not rebuild the schedule index at start.", %error);
        }
        let accounts = Accounts::new(
            store.clone(),
            passwords.clone(),
            clock.clone(),
            Some(hub.clone()),
        );
        let sessions = Sessions::new(
            store.clone(),
            passwords,
            tokens,
            limits.clone(),
            hub.clone(),
            clock.clone(),
            config.session_ttl_days,
        );
        let flow_limits = FlowLimits::new(store.clone(), flow.clone(), clock.clone());
        let first_run = first_run(&accounts, &config).await?;
        let state = Self(Arc::new(Shared {
            config,
            store,
            limits,
            accounts,
            sessions,
            redis,
            clock,
            started: Instant::now(),
            policies,
            _listened_policies: listened,
            schedule,
            flow_limits,
            flow,
            dispatcher,
            messages,
            groups,
            schedules,
            tenant_policies,
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

/// Creates the first tenant and admin on an empty database ([`Accounts::first_run`]), and
/// writes a generated password where the operator can read it.
async fn first_run(accounts: &Accounts, config: &Config) -> Result<Option<FirstRun>, StartError> {
    let Some(admin) = accounts.first_run(config.admin_password.expose()).await? else {
        return Ok(None);
    };
    let Some(password) = admin.generated_password else {
        return Ok(Some(FirstRun {
            password: None,
            password_file: None,
        }));
    };
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
