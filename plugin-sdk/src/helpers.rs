//! The imports every plugin has: logging, the host clock and the binding's configuration.
//!
//! In WebAssembly these call the host. Natively they use the thread's
//! [`FakeHost`](crate::testing::FakeHost), so plugin logic can be unit-tested with `cargo test`.

/// The host's current time, as Unix time in milliseconds.
///
/// This is the only clock a plugin has; use it rather than `std::time::SystemTime` so that the
/// host (and tests) control time.
pub fn now_ms() -> u64 {
    #[cfg(target_arch = "wasm32")]
    {
        crate::validator::dms::plugin::host::now_ms()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::testing::with(|host| host.now_ms)
    }
}

/// Writing to the server log. Lines are tagged with the plugin, tenant and message id; the host
/// truncates long lines and caps the number of lines per call.
pub mod log {
    use crate::Level;

    /// Writes one line at `level`.
    pub fn write(level: Level, text: &str) {
        #[cfg(target_arch = "wasm32")]
        {
            crate::validator::dms::plugin::host::log(level, text);
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            crate::testing::with(|host| host.logs.push((level, text.to_owned())));
        }
    }

    /// Writes one line at `trace` level.
    pub fn trace(text: &str) {
        write(Level::Trace, text);
    }

    /// Writes one line at `debug` level.
    pub fn debug(text: &str) {
        write(Level::Debug, text);
    }

    /// Writes one line at `info` level.
    pub fn info(text: &str) {
        write(Level::Info, text);
    }

    /// Writes one line at `warn` level.
    pub fn warn(text: &str) {
        write(Level::Warn, text);
    }

    /// Writes one line at `error` level.
    pub fn error(text: &str) {
        write(Level::Error, text);
    }
}

/// The configuration of this plugin's binding, set by the tenant admin when binding the plugin
/// to a hook. Values are strings; these helpers parse them and say exactly what is wrong.
pub mod config {
    use std::fmt;
    use std::str::FromStr;

    /// A configuration value that could not be parsed.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct ConfigError {
        /// The configuration key.
        pub key: String,
        /// The value found.
        pub value: String,
        /// What a valid value looks like.
        pub expected: &'static str,
    }

    impl fmt::Display for ConfigError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(
                f,
                "config `{}` is {:?}; expected {}",
                self.key, self.value, self.expected
            )
        }
    }

    impl std::error::Error for ConfigError {}

    impl From<ConfigError> for crate::Rejection {
        fn from(error: ConfigError) -> Self {
            crate::Rejection::new("invalid_config", error.to_string())
        }
    }

    /// The raw value of `key`, or `None` when it is not set.
    pub fn get(key: &str) -> Option<String> {
        #[cfg(target_arch = "wasm32")]
        {
            crate::validator::dms::plugin::host::config(key)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            crate::testing::with(|host| host.config.get(key).cloned())
        }
    }

    /// The value of `key` parsed as `T`, or `default` when the key is not set.
    pub fn parse_or<T: FromStr>(
        key: &str,
        default: T,
        expected: &'static str,
    ) -> Result<T, ConfigError> {
        match get(key) {
            None => Ok(default),
            Some(value) => value.trim().parse().map_err(|_| ConfigError {
                key: key.to_owned(),
                value,
                expected,
            }),
        }
    }

    /// A duration in milliseconds, or `default_ms` when the key is not set.
    ///
    /// Accepts a plain number of seconds (`"30"`) or a number with units (`"250ms"`, `"30s"`,
    /// `"5m"`, `"1h 30m"`, `"365d"`).
    pub fn duration_ms(key: &str, default_ms: u64) -> Result<u64, ConfigError> {
        let Some(value) = get(key) else {
            return Ok(default_ms);
        };
        parse_duration_ms(&value).ok_or(ConfigError {
            key: key.to_owned(),
            value,
            expected: "a duration such as 30, 250ms, 30s, 5m, 1h or 365d",
        })
    }

    /// Parses a duration as [`duration_ms`] does.
    pub fn parse_duration_ms(value: &str) -> Option<u64> {
        let value = value.trim();
        if let Ok(seconds) = value.parse::<u64>() {
            return seconds.checked_mul(1000);
        }
        let duration = humantime::parse_duration(value).ok()?;
        u64::try_from(duration.as_millis()).ok()
    }

    /// A comma-separated list, trimmed, without empty items. An unset key is an empty list.
    pub fn list(key: &str) -> Vec<String> {
        get(key)
            .map(|value| {
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A boolean (`true`/`false`, `yes`/`no`, `1`/`0`), or `default` when the key is not set.
    pub fn flag(key: &str, default: bool) -> Result<bool, ConfigError> {
        let Some(value) = get(key) else {
            return Ok(default);
        };
        match value.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" | "on" => Ok(true),
            "false" | "no" | "0" | "off" => Ok(false),
            _ => Err(ConfigError {
                key: key.to_owned(),
                value,
                expected: "true or false",
            }),
        }
    }
}
