//! Write DMS policy plugins in Rust.
//!
//! A DMS plugin is a WebAssembly component that implements one world of the contract in
//! `wit/dms-plugin.wit`: a **validator** accepts or rejects a message, a **delay policy**
//! decides when it is delivered and when a failed delivery is retried, a **channel** delivers
//! it. This crate hides the `wit-bindgen` glue: implement the world's `Guest` trait and call
//! the world's export macro.
//!
//! ```ignore
//! use dms_plugin_sdk::{validator::Guest, Message, Rejection};
//!
//! struct NoShouting;
//!
//! impl Guest for NoShouting {
//!     fn validate(message: Message) -> Result<(), Rejection> {
//!         let text = String::from_utf8_lossy(&message.content);
//!         if text.chars().any(char::is_lowercase) || text.is_empty() {
//!             Ok(())
//!         } else {
//!             Err(Rejection::new("shouting", "please do not write in capitals only"))
//!         }
//!     }
//! }
//!
//! dms_plugin_sdk::export_validator!(NoShouting);
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2`; the `.wasm` file in
//! `target/wasm32-wasip2/release/` is the component to upload.
//!
//! # Testing natively
//!
//! Keep the decision in plain functions and test them with `cargo test` on your machine. The
//! host imports ([`log`], [`now_ms`], [`config`], [`http`], [`realtime`]) work natively too:
//! outside WebAssembly they talk to a fake host that a test sets up with
//! [`testing::FakeHost`].
//!
//! # The message payload
//!
//! [`payload::MessagePayload`] is the one shape of a message that DMS hands out: the HTTP API
//! shows it, the `inbox` channel publishes it, the `webhook` channel POSTs it. Send it from a
//! channel of your own too.
//!
//! # Features
//!
//! - `guest` (default): the bindings, the host imports and the export macros, for plugins.
//! - `schema`: `utoipa::ToSchema` on the [`payload`] types (the host's OpenAPI document).
//!
//! Without `guest` the crate is only [`payload`], which needs nothing but serde: that is how the
//! host depends on it.

#![deny(missing_docs)]

// The generated export macros name this crate by its path, which inside the crate itself only
// resolves through this alias.
#[cfg(feature = "guest")]
extern crate self as dms_plugin_sdk;

pub mod payload;

#[cfg(feature = "guest")]
pub use wit_bindgen;

#[cfg(feature = "guest")]
/// Bindings of the `validator` world: implement [`validator::Guest`] and call
/// [`export_validator!`].
#[allow(
    missing_docs,
    reason = "generated from the WIT, whose documentation it carries"
)]
pub mod validator {
    wit_bindgen::generate!({
        world: "validator",
        path: "../wit",
        additional_derives: [PartialEq],
        pub_export_macro: true,
        export_macro_name: "__export_validator",
        default_bindings_module: "::dms_plugin_sdk::validator",
        runtime_path: "::dms_plugin_sdk::wit_bindgen::rt",
    });
}

#[cfg(feature = "guest")]
/// Bindings of the `delay-policy` world: implement [`delay_policy::Guest`] and call
/// [`export_delay_policy!`].
#[allow(
    missing_docs,
    reason = "generated from the WIT, whose documentation it carries"
)]
pub mod delay_policy {
    wit_bindgen::generate!({
        world: "delay-policy",
        path: "../wit",
        with: {
            "dms:plugin/types@0.1.0": crate::validator::dms::plugin::types,
            "dms:plugin/host@0.1.0": crate::validator::dms::plugin::host,
        },
        pub_export_macro: true,
        export_macro_name: "__export_delay_policy",
        default_bindings_module: "::dms_plugin_sdk::delay_policy",
        runtime_path: "::dms_plugin_sdk::wit_bindgen::rt",
    });
}

#[cfg(feature = "guest")]
/// Bindings of the `channel` world: implement [`channel::Guest`] and call
/// [`export_channel!`].
#[allow(
    missing_docs,
    reason = "generated from the WIT, whose documentation it carries"
)]
pub mod channel {
    wit_bindgen::generate!({
        world: "channel",
        path: "../wit",
        additional_derives: [PartialEq],
        with: {
            "dms:plugin/types@0.1.0": crate::validator::dms::plugin::types,
            "dms:plugin/host@0.1.0": crate::validator::dms::plugin::host,
        },
        pub_export_macro: true,
        export_macro_name: "__export_channel",
        default_bindings_module: "::dms_plugin_sdk::channel",
        runtime_path: "::dms_plugin_sdk::wit_bindgen::rt",
    });
}

#[cfg(feature = "guest")]
pub use validator::dms::plugin::host::Level;
#[cfg(feature = "guest")]
pub use validator::dms::plugin::types::{
    Address, Attempt, DeliveryResult, Message, Rejection, RequestedTime, RetryDecision, RetryLater,
};

#[cfg(feature = "guest")]
mod helpers;
#[cfg(feature = "guest")]
pub use helpers::{config, log, now_ms};

#[cfg(feature = "guest")]
pub mod http;
#[cfg(feature = "guest")]
pub mod realtime;

#[cfg(all(feature = "guest", not(target_arch = "wasm32")))]
pub mod testing;

#[cfg(feature = "guest")]
/// Exports a type that implements [`validator::Guest`] as this component's validator.
///
/// Outside WebAssembly the macro expands to nothing, so the crate still builds and tests
/// natively.
#[macro_export]
macro_rules! export_validator {
    ($plugin:ident) => {
        #[cfg(target_arch = "wasm32")]
        $crate::validator::__export_validator!($plugin);
    };
}

#[cfg(feature = "guest")]
/// Exports a type that implements [`delay_policy::Guest`] as this component's delay policy.
///
/// Outside WebAssembly the macro expands to nothing, so the crate still builds and tests
/// natively.
#[macro_export]
macro_rules! export_delay_policy {
    ($plugin:ident) => {
        #[cfg(target_arch = "wasm32")]
        $crate::delay_policy::__export_delay_policy!($plugin);
    };
}

#[cfg(feature = "guest")]
/// Exports a type that implements [`channel::Guest`] as this component's channel.
///
/// Outside WebAssembly the macro expands to nothing, so the crate still builds and tests
/// natively.
#[macro_export]
macro_rules! export_channel {
    ($plugin:ident) => {
        #[cfg(target_arch = "wasm32")]
        $crate::channel::__export_channel!($plugin);
    };
}

#[cfg(feature = "guest")]
impl Rejection {
    /// A rejection with a stable `code` (snake_case) and a `reason` a person can act on.
    pub fn new(code: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            reason: reason.into(),
        }
    }
}

#[cfg(feature = "guest")]
impl Message {
    /// The content as text, when it is valid UTF-8.
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.content).ok()
    }

    /// The value of a metadata key, if the sender set it.
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}
