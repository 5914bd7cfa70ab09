//! `dms:plugin/host`: logging, the clock and the binding's configuration. Granted to every
//! plugin; none of these can fail or block.

use crate::sandbox::bindings::host::{Host, Level};
use crate::sandbox::state::HostState;

/// Longest log line kept, in bytes; longer lines are cut at a character boundary.
const MAX_LINE: usize = 4 << 10;
/// Log lines kept per call; later lines are counted and dropped. A plugin looping over `log`
/// (tests/guests/host-call-loop) cannot flood the server log.
pub(crate) const MAX_LINES: u32 = 64;

impl Host for HostState {
    async fn log(&mut self, level: Level, text: String) {
        if self.log_lines >= MAX_LINES {
            self.log_dropped += 1;
            return;
        }
        self.log_lines += 1;
        // A newline or an escape sequence in a tenant's text must not forge or garble lines
        // of the server log.
        let text = crate::text::clean(truncate(&text, MAX_LINE));
        let call = &self.call;
        macro_rules! emit {
            ($level:expr) => {
                tracing::event!(
                    target: "dms::plugin",
                    $level,
                    plugin = %call.plugin,
                    digest = %call.digest,
                    tenant_id = %call.tenant_id,
                    message_id = %call.message_id,
                    "{text}"
                )
            };
        }
        match level {
            Level::Trace => emit!(tracing::Level::TRACE),
            Level::Debug => emit!(tracing::Level::DEBUG),
            Level::Info => emit!(tracing::Level::INFO),
            Level::Warn => emit!(tracing::Level::WARN),
            Level::Error => emit!(tracing::Level::ERROR),
        }
    }

    async fn now_ms(&mut self) -> u64 {
        self.clock.now_ms()
    }

    async fn config(&mut self, key: String) -> Option<String> {
        self.binding.config.get(&key).cloned()
    }
}

impl crate::sandbox::bindings::types::Host for HostState {}

/// `text` cut to at most `max` bytes, at a character boundary.
pub(crate) fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
