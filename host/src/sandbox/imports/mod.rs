//! The host side of every import a plugin may have, one file per interface:
//! - [`wasi`]: a locked-down WASI (no files, environment, network; clocks from the host clock;
//!   stdout/stderr captured, capped, and written to the log);
//! - [`host`]: `dms:plugin/host` — log, now-ms, config;
//! - [`channel`]: `dms:plugin/channel-host` — publish, http-send, is-online;
//! - [`http`]: the HTTP client behind `http-send` (allow-list, address rules, timeouts, caps);
//! - [`realtime`]: the seam to the real-time hub behind `publish` and `is-online`.

pub(crate) mod channel;
pub(crate) mod host;
pub mod http;
pub mod realtime;
pub(crate) mod wasi;
