//! What can go wrong loading or calling a plugin, as typed errors with messages a plugin
//! author can act on.

use std::time::Duration;

use super::World;

/// Why a component was refused at load (upload, `dms plugin check`, start-up).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// `builtin:NAME` names no built-in plugin.
    #[error(
        "there is no built-in plugin {0:?}; the built-ins are content-guard, standard-delay, inbox and webhook"
    )]
    UnknownBuiltin(String),
    /// Zero bytes.
    #[error("the file is empty")]
    Empty,
    /// Over the size limit.
    #[error("the component is {size} bytes; the limit is {limit} bytes")]
    TooLarge {
        /// The size received.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Not WebAssembly at all.
    #[error("not a WebAssembly binary: it does not start with the `\\0asm` magic bytes")]
    NotWasm,
    /// A core module rather than a component.
    #[error(
        "this is a core WebAssembly module, not a component; build for the wasm32-wasip2 target \
         (cargo build --target wasm32-wasip2) or wrap it with `wasm-tools component new`"
    )]
    CoreModule,
    /// WebAssembly that does not validate or compile.
    #[error("not a valid WebAssembly component: {0}")]
    Invalid(String),
    /// Exports none of the DMS worlds.
    #[error(
        "the component exports {exports}, which matches no DMS world: a validator exports \
         `validate`, a delay-policy exports `plan` and `retry`, a channel exports `deliver` \
         (see wit/dms-plugin.wit)"
    )]
    UnknownWorld {
        /// The component's exports, comma-separated, or "nothing".
        exports: String,
    },
    /// Exports the functions of more than one world.
    #[error(
        "the component exports the functions of several worlds ({0}); a plugin implements exactly one"
    )]
    AmbiguousWorld(String),
    /// Imports something the host does not grant plugins of this world.
    #[error("the component imports `{import}`, which the host does not grant to {world} plugins")]
    ForbiddenImport {
        /// The import's name.
        import: String,
        /// The world detected.
        world: World,
    },
    /// Exports the right names with the wrong types, or imports a version the host lacks.
    #[error("the component does not match the {world} world of dms:plugin@0.1.0: {detail}")]
    Incompatible {
        /// The world detected.
        world: World,
        /// wasmtime's explanation.
        detail: String,
    },
}

/// Why a plugin call produced no usable answer. The caller applies the hook's fail-safe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The plugin is of another world than the call.
    #[error("the plugin is a {actual} plugin, not a {expected}")]
    WrongWorld {
        /// The world the call needs.
        expected: World,
        /// The plugin's world.
        actual: World,
    },
    /// The guest trapped (panic, unreachable, out-of-bounds access, ...).
    #[error("the plugin trapped: {trap}{}", stderr_suffix(.stderr))]
    Trap {
        /// wasmtime's description of the trap.
        trap: String,
        /// The end of what the guest wrote to stderr (a panic message, a traceback).
        stderr: String,
    },
    /// The guest ran past its deadline (including time blocked in host calls).
    #[error("the plugin did not answer within its {} ms deadline", .deadline.as_millis())]
    Timeout {
        /// The deadline.
        deadline: Duration,
    },
    /// The guest tried to grow its memory past the cap.
    #[error("the plugin exceeded its memory limit of {limit} bytes")]
    MemoryLimit {
        /// The cap.
        limit: usize,
    },
    /// The guest returned a string or list over the output cap.
    #[error("the plugin returned {what} of {size} bytes; the limit is {limit} bytes")]
    OutputTooLarge {
        /// Which part of the answer.
        what: &'static str,
        /// Its size.
        size: usize,
        /// The cap.
        limit: usize,
    },
    /// The guest returned a value the host cannot accept.
    #[error("the plugin returned an invalid {what}: {reason}")]
    InvalidOutput {
        /// Which part of the answer.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Instantiation failed for a reason other than the guest's own code.
    #[error("the plugin could not be instantiated: {0}")]
    Instantiate(String),
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!(" (guest stderr: {stderr})")
    }
}

/// A call failure's kind, for counters and metrics labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureKind {
    /// See [`CallError::WrongWorld`].
    WrongWorld,
    /// See [`CallError::Trap`].
    Trap,
    /// See [`CallError::Timeout`].
    Timeout,
    /// See [`CallError::MemoryLimit`].
    MemoryLimit,
    /// See [`CallError::OutputTooLarge`].
    OutputTooLarge,
    /// See [`CallError::InvalidOutput`].
    InvalidOutput,
    /// See [`CallError::Instantiate`].
    Instantiate,
}

impl FailureKind {
    /// Every kind, in a stable order.
    pub const ALL: [FailureKind; 7] = [
        Self::WrongWorld,
        Self::Trap,
        Self::Timeout,
        Self::MemoryLimit,
        Self::OutputTooLarge,
        Self::InvalidOutput,
        Self::Instantiate,
    ];

    /// The snake_case label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WrongWorld => "wrong_world",
            Self::Trap => "trap",
            Self::Timeout => "timeout",
            Self::MemoryLimit => "memory_limit",
            Self::OutputTooLarge => "output_too_large",
            Self::InvalidOutput => "invalid_output",
            Self::Instantiate => "instantiate",
        }
    }
}

impl CallError {
    /// This error's kind.
    pub fn kind(&self) -> FailureKind {
        match self {
            Self::WrongWorld { .. } => FailureKind::WrongWorld,
            Self::Trap { .. } => FailureKind::Trap,
            Self::Timeout { .. } => FailureKind::Timeout,
            Self::MemoryLimit { .. } => FailureKind::MemoryLimit,
            Self::OutputTooLarge { .. } => FailureKind::OutputTooLarge,
            Self::InvalidOutput { .. } => FailureKind::InvalidOutput,
            Self::Instantiate(_) => FailureKind::Instantiate,
        }
    }
}
