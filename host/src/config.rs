//! Configuration: layered, documented, validated, and redacted.
//!
//! Layers, later winning: the embedded `config.default.toml` (every key, commented: it is also
//! the source of the README's configuration table, which a test keeps in step) → an optional
//! TOML file (`--config-file FILE` or `DMS_CONFIG`) → environment variables (`PORT`, `HOST`,
//! `DATA_DIR`, `DATABASE_URL`, `REDIS_URL`, `JWT_SECRET`, then `DMS_<KEY>`). Then
//! [`Config::validate`] refuses values that cannot work, with a message naming the setting.
//!
//! Secrets (`jwt_secret`, `admin_password`, and the URLs, which may carry passwords) are
//! [`Secret`]s: their `Debug` prints `[redacted]`, so logging a config leaks nothing.

use std::fmt;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// The defaults, embedded: every key with its comment.
pub const DEFAULTS: &str = include_str!("config.default.toml");

/// Settings also read from the environment without the `DMS_` prefix.
const UNPREFIXED: &[&str] = &[
    "port",
    "host",
    "data_dir",
    "database_url",
    "redis_url",
    "jwt_secret",
];

/// `DMS_` variables that are not settings: the configuration file's path, and the log format
/// (read before any configuration is loaded, by the logger).
const NOT_SETTINGS: &[&str] = &["CONFIG", "LOG_FORMAT"];

/// The shortest accepted `jwt_secret`, in bytes: HS256 keys shorter than the hash are weak.
pub const MIN_JWT_SECRET_BYTES: usize = 32;

/// A string that never appears in `Debug` output.
#[derive(Deserialize, Default)]
#[serde(transparent)]
pub struct Secret(#[serde(deserialize_with = "deserialize_secret")] Option<SecretString>);

fn deserialize_secret<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<SecretString>, D::Error> {
    let text = String::deserialize(deserializer)?;
    Ok((!text.is_empty()).then(|| SecretString::from(text)))
}

impl Secret {
    /// A secret holding `value` (empty means unset).
    pub fn new(value: impl Into<String>) -> Self {
        let value = value.into();
        Self((!value.is_empty()).then(|| SecretString::from(value)))
    }

    /// The value, if set.
    pub fn expose(&self) -> Option<&str> {
        self.0.as_ref().map(ExposeSecret::expose_secret)
    }
}

impl Clone for Secret {
    fn clone(&self) -> Self {
        Self(self.expose().map(SecretString::from))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(_) => f.write_str("[redacted]"),
            None => f.write_str("[unset]"),
        }
    }
}

/// Every setting of the server. Field docs are in `config.default.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs, reason = "documented, once, in config.default.toml")]
pub struct Config {
    pub host: String,
    pub port: u16,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub data_dir: PathBuf,
    pub database_url: Secret,
    pub db_max_connections: u32,
    pub redis_url: Secret,
    pub redis_prefix: String,
    pub jwt_secret: Secret,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub access_token_ttl_seconds: u64,
    pub session_ttl_days: u64,
    pub admin_password: Secret,
    pub max_body_bytes: usize,
    pub max_batch_body_bytes: usize,
    pub http_body_timeout_seconds: u64,
    pub http_header_timeout_seconds: u64,
    pub http_idle_timeout_seconds: u64,
    pub max_connections: u32,
    pub max_connections_per_address: u32,
    pub shutdown_grace_seconds: u64,
    pub rate_limit_login_per_ip: u32,
    pub rate_limit_login_per_username: u32,
    pub rate_limit_login_per_username_global: u32,
    pub rate_limit_api_per_second: u32,
    pub rate_limit_api_burst: u32,
    pub client_ip_header: String,
    pub plugin_cache_dir: PathBuf,
    pub encryption_keys: Secret,
    pub worker_enabled: bool,
    pub dispatch_concurrency: u32,
    pub lease_seconds: u64,
    pub reconcile_seconds: u64,
    pub plugin_memory_mb: u32,
    pub plugin_decision_deadline_ms: u64,
    pub plugin_channel_deadline_ms: u64,
    pub plugin_max_instances: u32,
    pub plugin_max_upload_mb: u32,
    pub plugin_max_per_tenant: u32,
    pub plugin_max_tenant_mb: u32,
    pub plugin_compile_concurrency: u32,
    pub plugin_cache_memory_mb: u32,
    pub plugin_failure_limit: u32,
    pub allow_private_networks: bool,
    pub replay_per_second: u32,
    pub group_max_members: u32,
    pub allowed_origins: String,
    pub feed_retention_seconds: u64,
    pub message_retention_days: u64,
    pub ws_heartbeat_ms: u64,
    pub ws_outbound_queue: u32,
    pub ws_frames_per_second: u32,
    pub ws_max_per_user: u32,
    pub ws_max_per_tenant: u32,
    pub ws_max_unauthenticated_per_address: u32,
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file could not be read or a value has the wrong type.
    #[error("{0}")]
    Load(String),
    /// A value is out of range or inconsistent with another.
    #[error("invalid setting {setting}: {reason}")]
    Invalid {
        /// The setting, as its environment variable.
        setting: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl Config {
    /// The defaults alone.
    pub fn defaults() -> Self {
        Figment::from(Toml::string(DEFAULTS))
            .extract()
            .expect("the embedded defaults are valid")
    }

    /// Loads the layers described in the module docs, and validates the result.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULTS));
        let file = file
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("DMS_CONFIG").map(PathBuf::from));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::Load(format!(
                    "the configuration file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        let known = keys();
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if let Some(key) = name.strip_prefix("DMS_")
                && !NOT_SETTINGS.contains(&key)
                && !known.contains(&key.to_ascii_lowercase())
            {
                tracing::warn!(
                    message = "Ignoring an environment variable that is not a setting.",
                    variable = %name,
                );
            }
        }
        figment = figment.merge(Env::raw().only(UNPREFIXED)).merge(
            Env::prefixed("DMS_").filter(move |key| known.iter().any(|k| key == k.as_str())),
        );
        let config: Self = figment
            .extract()
            .map_err(|error| ConfigError::Load(error.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Refuses settings that cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |setting, reason: String| Err(ConfigError::Invalid { setting, reason });
        if let Some(secret) = self.jwt_secret.expose()
            && secret.len() < MIN_JWT_SECRET_BYTES
        {
            return invalid(
                "JWT_SECRET",
                format!(
                    "it is {} bytes; use at least {MIN_JWT_SECRET_BYTES} (for example: openssl rand -base64 48)",
                    secret.len()
                ),
            );
        }
        if let Some(url) = self.database_url.expose()
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return invalid(
                "DATABASE_URL",
                "it must be a postgres:// URL; leave it empty for the embedded SQLite database"
                    .into(),
            );
        }
        if self.database_url.expose().is_some() && self.jwt_secret.expose().is_none() {
            return invalid(
                "JWT_SECRET",
                "it is required with DATABASE_URL, because every node must sign and verify with the same secret".into(),
            );
        }
        if self.database_url.expose().is_some() && self.encryption_keys.expose().is_none() {
            return invalid(
                "DMS_ENCRYPTION_KEYS",
                "it is required with DATABASE_URL, because every node must open the content the others sealed".into(),
            );
        }
        if let Some(keys) = self.encryption_keys.expose()
            && let Err(error) = crate::store::crypto::Keyring::parse(keys)
        {
            return invalid("DMS_ENCRYPTION_KEYS", error.to_string());
        }
        if self.lease_seconds.saturating_mul(1000) <= self.plugin_channel_deadline_ms {
            return invalid(
                "DMS_LEASE_SECONDS",
                format!(
                    "it must be longer than the channel deadline ({} ms), or a slow delivery could be taken over midway",
                    self.plugin_channel_deadline_ms
                ),
            );
        }
        if !(1..=4096).contains(&self.plugin_memory_mb) {
            return invalid(
                "DMS_PLUGIN_MEMORY_MB",
                "it must be between 1 and 4096".into(),
            );
        }
        if !(1..=1024).contains(&self.plugin_max_upload_mb) {
            return invalid(
                "DMS_PLUGIN_MAX_UPLOAD_MB",
                "it must be between 1 and 1024".into(),
            );
        }
        if self.plugin_max_tenant_mb < self.plugin_max_upload_mb {
            return invalid(
                "DMS_PLUGIN_MAX_TENANT_MB",
                format!(
                    "it must be at least DMS_PLUGIN_MAX_UPLOAD_MB ({}), or the largest upload allowed could never be stored",
                    self.plugin_max_upload_mb
                ),
            );
        }
        if !(1..=64).contains(&self.plugin_compile_concurrency) {
            return invalid(
                "DMS_PLUGIN_COMPILE_CONCURRENCY",
                "it must be between 1 and 64".into(),
            );
        }
        if let Some(url) = self.redis_url.expose()
            && !(url.starts_with("redis://") || url.starts_with("rediss://"))
        {
            return invalid("REDIS_URL", "it must be a redis:// or rediss:// URL".into());
        }
        for (setting, value) in [
            (
                "DMS_ACCESS_TOKEN_TTL_SECONDS",
                self.access_token_ttl_seconds,
            ),
            ("DMS_SESSION_TTL_DAYS", self.session_ttl_days),
            ("DMS_FEED_RETENTION_SECONDS", self.feed_retention_seconds),
            ("DMS_WS_HEARTBEAT_MS", self.ws_heartbeat_ms),
            (
                "DMS_PLUGIN_FAILURE_LIMIT",
                u64::from(self.plugin_failure_limit),
            ),
            (
                "DMS_PLUGIN_MAX_PER_TENANT",
                u64::from(self.plugin_max_per_tenant),
            ),
            ("DMS_GROUP_MAX_MEMBERS", u64::from(self.group_max_members)),
            ("DMS_WS_OUTBOUND_QUEUE", u64::from(self.ws_outbound_queue)),
            (
                "DMS_WS_FRAMES_PER_SECOND",
                u64::from(self.ws_frames_per_second),
            ),
            ("DMS_DB_MAX_CONNECTIONS", u64::from(self.db_max_connections)),
            (
                "DMS_HTTP_BODY_TIMEOUT_SECONDS",
                self.http_body_timeout_seconds,
            ),
            (
                "DMS_HTTP_HEADER_TIMEOUT_SECONDS",
                self.http_header_timeout_seconds,
            ),
            (
                "DMS_HTTP_IDLE_TIMEOUT_SECONDS",
                self.http_idle_timeout_seconds,
            ),
            ("DMS_WS_MAX_PER_USER", u64::from(self.ws_max_per_user)),
            ("DMS_WS_MAX_PER_TENANT", u64::from(self.ws_max_per_tenant)),
            (
                "DMS_WS_MAX_UNAUTHENTICATED_PER_ADDRESS",
                u64::from(self.ws_max_unauthenticated_per_address),
            ),
            (
                "DMS_RATE_LIMIT_LOGIN_PER_IP",
                u64::from(self.rate_limit_login_per_ip),
            ),
            (
                "DMS_RATE_LIMIT_LOGIN_PER_USERNAME",
                u64::from(self.rate_limit_login_per_username),
            ),
            (
                "DMS_RATE_LIMIT_LOGIN_PER_USERNAME_GLOBAL",
                u64::from(self.rate_limit_login_per_username_global),
            ),
            (
                "DMS_RATE_LIMIT_API_PER_SECOND",
                u64::from(self.rate_limit_api_per_second),
            ),
            (
                "DMS_RATE_LIMIT_API_BURST",
                u64::from(self.rate_limit_api_burst),
            ),
        ] {
            if value == 0 {
                return invalid(setting, "it must be at least 1".into());
            }
        }
        if self.tls_cert.as_os_str().is_empty() != self.tls_key.as_os_str().is_empty() {
            return invalid(
                if self.tls_cert.as_os_str().is_empty() {
                    "DMS_TLS_CERT"
                } else {
                    "DMS_TLS_KEY"
                },
                "set both DMS_TLS_CERT and DMS_TLS_KEY (PEM files) for TLS, or neither for plain HTTP"
                    .into(),
            );
        }
        if self.max_body_bytes < 1024 {
            return invalid("DMS_MAX_BODY_BYTES", "it must be at least 1024".into());
        }
        if self.max_batch_body_bytes < self.max_body_bytes {
            return invalid(
                "DMS_MAX_BATCH_BODY_BYTES",
                format!(
                    "it must be at least DMS_MAX_BODY_BYTES ({}): a batch may always carry one message",
                    self.max_body_bytes
                ),
            );
        }
        // A feed event about a delivered message refers to the message for its content, so
        // messages must outlive the feed events that refer to them.
        if self.message_retention_days.saturating_mul(86_400) < self.feed_retention_seconds {
            return invalid(
                "DMS_MESSAGE_RETENTION_DAYS",
                format!(
                    "it must keep messages at least as long as DMS_FEED_RETENTION_SECONDS keeps feed events ({} s): feed events read the content of the messages they are about",
                    self.feed_retention_seconds
                ),
            );
        }
        Ok(())
    }

    /// The certificate chain and key files, when TLS is on.
    pub fn tls(&self) -> Option<(&Path, &Path)> {
        (!self.tls_cert.as_os_str().is_empty())
            .then_some((self.tls_cert.as_path(), self.tls_key.as_path()))
    }

    /// The origins allowed to open real-time connections (`*` allows any).
    pub fn allowed_origins(&self) -> Vec<String> {
        self.allowed_origins
            .split(',')
            .map(|origin| origin.trim().trim_end_matches('/').to_ascii_lowercase())
            .filter(|origin| !origin.is_empty())
            .collect()
    }

    /// The SQLite file of the embedded default.
    pub fn sqlite_path(&self) -> PathBuf {
        self.data_dir.join("dms.sqlite3")
    }

    /// The sandbox's operator limits.
    pub fn plugin_limits(&self) -> crate::sandbox::Limits {
        crate::sandbox::Limits {
            memory_bytes: (self.plugin_memory_mb as usize) << 20,
            decision_deadline: std::time::Duration::from_millis(self.plugin_decision_deadline_ms),
            channel_deadline: std::time::Duration::from_millis(self.plugin_channel_deadline_ms),
            ..crate::sandbox::Limits::default()
        }
    }

    /// The most one tenant may store.
    pub fn plugin_quota(&self) -> crate::domain::plugin::PluginQuota {
        crate::domain::plugin::PluginQuota {
            plugins: u64::from(self.plugin_max_per_tenant),
            bytes: u64::from(self.plugin_max_tenant_mb) << 20,
        }
    }

    /// Where compiled plugins are cached.
    pub fn plugin_cache_dir(&self) -> PathBuf {
        if self.plugin_cache_dir.as_os_str().is_empty() {
            self.data_dir.join("plugin-cache")
        } else {
            self.plugin_cache_dir.clone()
        }
    }
}

/// Every setting's key, in the order of `config.default.toml`.
pub fn keys() -> Vec<String> {
    DEFAULTS
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once('=').map(|(key, _)| key.trim().to_owned()))
        .filter(|key| !key.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_validate() {
        Config::defaults().validate().unwrap();
        assert_eq!(keys().len(), 57);
    }

    #[test]
    fn secrets_are_redacted() {
        let config = Config {
            jwt_secret: Secret::new("x".repeat(40)),
            database_url: Secret::new("postgres://user:hunter2@db/dms"),
            ..Config::defaults()
        };
        let printed = format!("{config:?}");
        assert!(!printed.contains("hunter2"));
        assert!(!printed.contains("xxxx"));
        assert!(printed.contains("[redacted]"));
    }

    #[test]
    fn short_jwt_secrets_and_shared_databases_without_one_are_refused() {
        let short = Config {
            jwt_secret: Secret::new("too short"),
            ..Config::defaults()
        };
        assert_eq!(
            short.validate().unwrap_err().to_string(),
            "invalid setting JWT_SECRET: it is 9 bytes; use at least 32 (for example: openssl rand -base64 48)"
        );
        let shared = Config {
            database_url: Secret::new("postgres://localhost/dms"),
            encryption_keys: Secret::new(crate::store::crypto::Keyring::generate_entry("k1")),
            ..Config::defaults()
        };
        assert!(
            shared
                .validate()
                .unwrap_err()
                .to_string()
                .contains("required with DATABASE_URL")
        );
    }
}
