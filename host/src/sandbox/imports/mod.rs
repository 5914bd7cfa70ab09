//! The host side of every import a plugin may have, one file per interface:
//! - [`wasi`]: a locked-down WASI (no files, environment, network; clocks from the host clock;
//!   stdout/stderr captured, capped, and written to the log);
//! - [`host`]: `dms:plugin/host` — log, now-ms, config;
//! - [`channel`]: `dms:plugin/channel-host` — publish, http-send, is-online;
//! - [`http`]: the HTTP client behind `http-send` (allow-list, address rules, timeouts, caps);
//! - [`presence`]: the seam to the real-time hub behind `is-online`.

pub(crate) mod channel;
pub(crate) mod host;
pub mod http;
pub mod presence;
pub(crate) mod wasi;
