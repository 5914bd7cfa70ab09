//! Host-side bindings generated from `wit/dms-plugin.wit`, one module per world.
//!
//! The shared interfaces (`types`, `host`, `channel-host`) are generated once, in `channel`
//! (the world that imports all of them); the other worlds reuse them through `with`, so a
//! `Message` is one Rust type whichever hook it is passed to. Imports and exports are async:
//! a guest blocked in a host call can then be cancelled by dropping its future.

pub(crate) mod channel {
    wasmtime::component::bindgen!({
        world: "channel",
        path: "../wit",
        imports: { default: async },
        exports: { default: async },
        additional_derives: [PartialEq, Eq],
    });
}

pub(crate) mod validator {
    wasmtime::component::bindgen!({
        world: "validator",
        path: "../wit",
        imports: { default: async },
        exports: { default: async },
        with: {
            "dms:plugin/types": crate::sandbox::bindings::channel::dms::plugin::types,
            "dms:plugin/host": crate::sandbox::bindings::channel::dms::plugin::host,
        },
    });
}

pub(crate) mod delay_policy {
    wasmtime::component::bindgen!({
        world: "delay-policy",
        path: "../wit",
        imports: { default: async },
        exports: { default: async },
        with: {
            "dms:plugin/types": crate::sandbox::bindings::channel::dms::plugin::types,
            "dms:plugin/host": crate::sandbox::bindings::channel::dms::plugin::host,
        },
    });
}

pub(crate) use channel::dms::plugin::channel_host;
pub(crate) use channel::dms::plugin::host;
pub(crate) use channel::dms::plugin::types;
