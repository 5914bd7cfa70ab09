//! `dms plugin new <world> <name>`: writes a plugin crate that builds with
//! `cargo build --release --target wasm32-wasip2` and passes its own `cargo test`.
//!
//! The crate depends on the SDK by path: by default the `plugin-sdk/` of the DMS checkout this
//! binary was built from, or `--sdk PATH`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;

use crate::sandbox::World;

#[derive(Debug, Args)]
pub(crate) struct NewArgs {
    /// The hook the plugin serves: validator, delay-policy or channel.
    world: World,
    /// The crate name (lowercase letters, digits and dashes), also its directory.
    name: String,
    /// Where to create the crate (default: ./NAME).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The plugin SDK's directory (default: the plugin-sdk of the checkout dms was built from).
    #[arg(long)]
    sdk: Option<PathBuf>,
}

pub(crate) fn new(args: &NewArgs) -> anyhow::Result<ExitCode> {
    let valid_name = !args.name.is_empty()
        && args.name.starts_with(|c: char| c.is_ascii_lowercase())
        && args
            .name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid_name {
        bail!(
            "{:?} is not a crate name: use lowercase letters, digits and dashes, starting with a letter",
            args.name
        );
    }
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.exists() {
        bail!(
            "{} already exists; choose another name or --dir",
            dir.display()
        );
    }
    let sdk = match &args.sdk {
        Some(sdk) => sdk.clone(),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin-sdk"),
    };
    let sdk = sdk.canonicalize().with_context(|| {
        format!(
            "cannot find the plugin SDK at {}; pass --sdk PATH to the plugin-sdk directory of a DMS checkout",
            sdk.display()
        )
    })?;
    if !sdk.join("Cargo.toml").exists() {
        bail!("{} is not the plugin SDK (no Cargo.toml)", sdk.display());
    }

    std::fs::create_dir_all(dir.join("src"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let manifest = MANIFEST
        .replace("{name}", &args.name)
        .replace("{sdk}", &sdk.display().to_string().replace('\\', "/"));
    let source = match args.world {
        World::Validator => VALIDATOR,
        World::DelayPolicy => DELAY_POLICY,
        World::Channel => CHANNEL,
    }
    .replace("{name}", &args.name);
    std::fs::write(dir.join("Cargo.toml"), manifest)?;
    std::fs::write(dir.join("src/lib.rs"), source)?;
    std::fs::write(dir.join(".gitignore"), "/target\n")?;

    let wasm = args.name.replace('-', "_");
    println!(
        "Created the {} plugin {} in {}.",
        args.world,
        args.name,
        dir.display()
    );
    println!();
    println!("  cd {}", dir.display());
    println!("  cargo test                                         # the decision, natively");
    println!("  cargo build --release --target wasm32-wasip2       # the component");
    println!("  dms plugin check target/wasm32-wasip2/release/{wasm}.wasm");
    println!(
        "  dms plugin run target/wasm32-wasip2/release/{wasm}.wasm --message '{{\"content\":\"hi\"}}'"
    );
    Ok(ExitCode::SUCCESS)
}

const MANIFEST: &str = r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"

[lib]
# cdylib: the component; rlib: so `cargo test` can test the logic natively.
crate-type = ["cdylib", "rlib"]

[dependencies]
dms-plugin-sdk = { path = "{sdk}" }

# Small, fast components.
[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
strip = true
panic = "abort"

# A crate of its own, even when created inside another workspace.
[workspace]
"#;

const VALIDATOR: &str = r#"//! {name}: a DMS validator. Rejects messages with more words than the binding's
//! `max_words` (default 100).

use dms_plugin_sdk::{Message, Rejection, config, validator::Guest};

/// The decision, as a plain function: easy to test natively.
pub fn check(text: &str, max_words: usize) -> Result<(), Rejection> {
    let words = text.split_whitespace().count();
    if words > max_words {
        return Err(Rejection::new(
            "too_many_words",
            format!("the message has {words} words; the limit (max_words) is {max_words}"),
        ));
    }
    Ok(())
}

/// The validator this component exports.
pub struct Plugin;

impl Guest for Plugin {
    fn validate(message: Message) -> Result<(), Rejection> {
        let max_words = config::parse_or("max_words", 100, "a whole number")?;
        check(message.text().unwrap_or_default(), max_words)
    }
}

dms_plugin_sdk::export_validator!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;
    use dms_plugin_sdk::testing::FakeHost;

    #[test]
    fn accepts_short_messages() {
        assert!(check("hello there", 2).is_ok());
    }

    #[test]
    fn rejects_long_messages_naming_the_limit() {
        let rejection = check("one two three", 2).unwrap_err();
        assert_eq!(rejection.code, "too_many_words");
        assert!(rejection.reason.contains("limit (max_words) is 2"));
    }

    #[test]
    fn reads_the_limit_from_the_binding() {
        FakeHost::new().config("max_words", "ten").install();
        let message = Message {
            id: "msg_1".into(),
            tenant_id: "ten_1".into(),
            sender_id: "usr_1".into(),
            recipient_id: "usr_2".into(),
            content: b"hi".to_vec(),
            content_type: "text/plain".into(),
            metadata: Vec::new(),
            requested: dms_plugin_sdk::RequestedTime::Unspecified,
            created_at_ms: 0,
        };
        assert_eq!(Plugin::validate(message).unwrap_err().code, "invalid_config");
    }
}
"#;

const DELAY_POLICY: &str = r#"//! {name}: a DMS delay policy. Delivers on the next whole minute after the requested time
//! and retries every `retry_every` (default 30s) up to `max_attempts` (default 5).

use dms_plugin_sdk::{
    Attempt, Message, Rejection, RequestedTime, RetryDecision, config, delay_policy::Guest, now_ms,
};

const MINUTE_MS: u64 = 60_000;

/// The first delivery: the requested time (or now), rounded up to a whole minute.
pub fn plan(now: u64, created_at: u64, requested: &RequestedTime) -> u64 {
    let wanted = match requested {
        RequestedTime::Unspecified => now,
        RequestedTime::DelayMs(delay) => created_at + delay,
        RequestedTime::DeliverAtMs(at) => *at,
    }
    .max(now);
    wanted.div_ceil(MINUTE_MS) * MINUTE_MS
}

/// After a failed attempt: a fixed wait, at least the channel's hint, until the attempts run out.
pub fn retry(now: u64, attempt: &Attempt, every_ms: u64, max_attempts: u32) -> RetryDecision {
    if attempt.number >= max_attempts {
        return RetryDecision::GiveUp(format!("gave up after {} attempts", attempt.number));
    }
    RetryDecision::RetryAtMs(now + every_ms.max(attempt.retry_after_ms.unwrap_or(0)))
}

/// The delay policy this component exports.
pub struct Plugin;

impl Guest for Plugin {
    fn plan(message: Message) -> Result<u64, Rejection> {
        Ok(plan(now_ms(), message.created_at_ms, &message.requested))
    }

    fn retry(_message: Message, attempt: Attempt) -> RetryDecision {
        let every = config::duration_ms("retry_every", 30_000);
        let max_attempts = config::parse_or("max_attempts", 5, "a whole number");
        match (every, max_attempts) {
            (Ok(every), Ok(max_attempts)) => retry(now_ms(), &attempt, every, max_attempts),
            (Err(error), _) | (_, Err(error)) => RetryDecision::GiveUp(error.to_string()),
        }
    }
}

dms_plugin_sdk::export_delay_policy!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_up_to_the_next_minute() {
        assert_eq!(plan(61_000, 61_000, &RequestedTime::Unspecified), 120_000);
        assert_eq!(plan(0, 0, &RequestedTime::DelayMs(120_000)), 120_000);
    }

    #[test]
    fn retries_then_gives_up() {
        let attempt = |number| Attempt { number, last_error: None, retry_after_ms: Some(90_000) };
        assert_eq!(retry(0, &attempt(1), 30_000, 3), RetryDecision::RetryAtMs(90_000));
        assert!(matches!(retry(0, &attempt(3), 30_000, 3), RetryDecision::GiveUp(_)));
    }
}
"#;

const CHANNEL: &str = r##"//! {name}: a DMS channel that delivers now if the recipient is online, and otherwise at the
//! next `offline_at` (UTC, default `09:00`): it pushes the message to the recipient's live
//! connections, or asks the host to retry when that time comes.

use dms_plugin_sdk::{
    Address, DeliveryResult, Message, RetryLater, channel::Guest, config, now_ms, realtime,
};

const DAY_MS: u64 = 86_400_000;

/// Parses `HH:MM` into milliseconds after midnight.
pub fn time_of_day(text: &str) -> Result<u64, String> {
    let invalid = || format!("offline_at: {text:?} is not a time like 09:00");
    let (hours, minutes) = text.split_once(':').ok_or_else(invalid)?;
    let (hours, minutes): (u64, u64) = (
        hours.parse().map_err(|_| invalid())?,
        minutes.parse().map_err(|_| invalid())?,
    );
    if hours > 23 || minutes > 59 {
        return Err(invalid());
    }
    Ok(hours * 3_600_000 + minutes * 60_000)
}

/// The first moment after `now_ms` whose UTC time of day is `at_ms_of_day`.
pub fn next_at(now_ms: u64, at_ms_of_day: u64) -> u64 {
    let midnight = now_ms - now_ms % DAY_MS;
    let today = midnight + at_ms_of_day;
    if today > now_ms { today } else { today + DAY_MS }
}

/// The decision, as a plain function of presence, the publish result and the clock.
pub fn outcome(
    online: bool,
    published: Result<(), String>,
    now_ms: u64,
    at_ms_of_day: u64,
) -> DeliveryResult {
    if !online {
        return DeliveryResult::Retry(RetryLater {
            reason: "the recipient is offline; trying again at the next offline_at".into(),
            after_ms: Some(next_at(now_ms, at_ms_of_day) - now_ms),
        });
    }
    match published {
        Ok(()) => DeliveryResult::Delivered,
        Err(error) => DeliveryResult::Retry(RetryLater { reason: error, after_ms: None }),
    }
}

/// The channel this component exports.
pub struct Plugin;

impl Guest for Plugin {
    fn deliver(message: Message, address: Address) -> DeliveryResult {
        let offline_at = config::get("offline_at").unwrap_or_else(|| "09:00".into());
        let at_ms_of_day = match time_of_day(&offline_at) {
            Ok(ms) => ms,
            Err(error) => return DeliveryResult::Failed(error),
        };
        let online = realtime::is_online(&address.recipient_id);
        let published = if online {
            // Message ids are letters, digits and `_`, safe to put in JSON as they are. To send
            // the content too, add serde_json and build the event with `json!`.
            let event = format!(r#"{{"type":"message","message":{{"id":"{}"}}}}"#, message.id);
            realtime::publish(&address.recipient_id, &event)
        } else {
            Ok(())
        };
        outcome(online, published, now_ms(), at_ms_of_day)
    }
}

dms_plugin_sdk::export_channel!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;

    const NINE: u64 = 9 * 3_600_000;

    #[test]
    fn delivers_to_online_recipients() {
        assert_eq!(outcome(true, Ok(()), 0, NINE), DeliveryResult::Delivered);
    }

    #[test]
    fn waits_for_the_next_nine_o_clock_while_offline() {
        let eight = 8 * 3_600_000;
        assert!(matches!(
            outcome(false, Ok(()), eight, NINE),
            DeliveryResult::Retry(RetryLater { after_ms: Some(3_600_000), .. })
        ));
        let ten = 10 * 3_600_000;
        assert_eq!(next_at(ten, NINE), DAY_MS + NINE);
    }

    #[test]
    fn reads_times_of_day() {
        assert_eq!(time_of_day("09:00"), Ok(NINE));
        assert!(time_of_day("9 am").is_err());
        assert!(time_of_day("24:00").is_err());
    }
}
"##;
