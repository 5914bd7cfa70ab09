//! Logs: `tracing` to stderr, filtered by `RUST_LOG` (default `warn,dms=info,tower_http=info`),
//! as text or, with `DMS_LOG_FORMAT=json`, as one JSON object per line (with the innermost span
//! as `span`, and every enclosing span, outermost first, as `spans`: the request's
//! `request_id`, a message's `message_id` and `tenant_id`, a plugin's name and digest).
//! `DEBUG=dms:*`, the switch of the system DMS replaces (the `debug` npm package's namespaces),
//! turns DMS's debug logs on as well, and with them the spans that follow one message from its
//! submit to its delivery (see docs/OPERATIONS.md).

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

/// The filter when `RUST_LOG` is unset.
const DEFAULT_FILTER: &str = "warn,dms=info,tower_http=info";

/// The log format `DMS_LOG_FORMAT` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Text,
    Json,
}

/// `DEBUG`'s namespaces as filter directives: `dms:*` and `*` → `dms=debug`,
/// `dms:dispatch` or `dms:dispatch:*` → `dms::dispatch=debug`. Other programs' namespaces and
/// exclusions (`-dms:x`) are ignored.
fn debug_directives(debug: &str) -> Vec<String> {
    debug
        .split([',', ' '])
        .filter_map(|namespace| {
            let namespace = namespace.trim();
            if namespace == "*" {
                return Some("dms=debug".to_owned());
            }
            let rest = namespace.strip_prefix("dms")?;
            let rest = rest
                .strip_suffix(":*")
                .or(rest.strip_suffix('*'))
                .unwrap_or(rest);
            if rest.is_empty() {
                return Some("dms=debug".to_owned());
            }
            let module = rest.strip_prefix(':')?;
            let module = module.replace(':', "::");
            let valid = module.split("::").all(|part| {
                !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            });
            valid.then(|| format!("dms::{module}=debug"))
        })
        .collect()
}

/// Installs the subscriber. A `RUST_LOG` that does not parse is reported and the default used.
pub(super) fn init() {
    let mut problems = Vec::new();
    let mut filter = match std::env::var("RUST_LOG") {
        Ok(text) if !text.trim().is_empty() => EnvFilter::try_new(&text).unwrap_or_else(|error| {
            problems.push(format!(
                "RUST_LOG={text:?} is not a valid filter ({error}); using {DEFAULT_FILTER:?}"
            ));
            EnvFilter::new(DEFAULT_FILTER)
        }),
        _ => EnvFilter::new(DEFAULT_FILTER),
    };
    if let Ok(debug) = std::env::var("DEBUG") {
        for directive in debug_directives(&debug) {
            if let Ok(directive) = directive.parse() {
                filter = filter.add_directive(directive);
            }
        }
    }
    let format = match std::env::var("DMS_LOG_FORMAT").as_deref() {
        Ok("json") => Format::Json,
        Ok("" | "text") | Err(_) => Format::Text,
        Ok(other) => {
            problems.push(format!(
                "DMS_LOG_FORMAT={other:?} is not text or json; using text"
            ));
            Format::Text
        }
    };
    // Colours only for a person at a terminal, never in files or log collectors.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        Format::Text => builder.init(),
        Format::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
    for problem in problems {
        tracing::warn!(message = "Log settings ignored.", problem);
    }
}

#[cfg(test)]
mod tests {
    use super::debug_directives;

    #[test]
    fn debug_namespaces_become_directives() {
        assert_eq!(debug_directives("dms:*"), ["dms=debug"]);
        assert_eq!(debug_directives("*"), ["dms=debug"]);
        assert_eq!(debug_directives("dms"), ["dms=debug"]);
        assert_eq!(
            debug_directives("express:*,dms:dispatch dms:api:*"),
            ["dms::dispatch=debug", "dms::api=debug"]
        );
        assert!(debug_directives("-dms:x,other,dmsx:y,dms:a=b").is_empty());
    }
}
