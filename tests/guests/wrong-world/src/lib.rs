//! A well-formed component of a world DMS does not know: the host must refuse it by name.

// The export glue expands here, not inside an SDK crate, so it needs `unsafe`.
#![allow(unsafe_code, reason = "wit-bindgen export glue")]

#[allow(missing_docs, reason = "generated bindings")]
mod bindings {
    wit_bindgen::generate!({
        inline: "
            package test:other;
            world greeter {
                export greet: func(name: string) -> string;
            }
        ",
    });
}

/// The component's implementation.
pub struct Greeter;

impl bindings::Guest for Greeter {
    fn greet(name: String) -> String {
        format!("hello, {name}")
    }
}

#[cfg(target_arch = "wasm32")]
bindings::export!(Greeter with_types_in bindings);
