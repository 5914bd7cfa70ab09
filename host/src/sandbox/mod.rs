//! Everything wasmtime: the sandbox in which every plugin call runs.
//!
//! Layout:
//! - `engine.rs`: the one `wasmtime::Engine` (async, epoch interruption, pooling allocator) and
//!   its epoch ticker;
//! - `cache.rs`: compiled components by SHA-256, in memory (a bounded LRU) and on disk, and
//!   the bound on compiles running at once;
//! - `world.rs`: which world a component implements, and whether its imports are granted;
//! - `plugin.rs`: a loaded plugin (`InstancePre` per component, counters);
//! - `call.rs`: one call — fresh `Store`, limits, deadline, error classification;
//! - `hooks.rs`: the typed calls `validate`, `plan`, `retry`, `deliver` and their output checks;
//! - `limits.rs`, `stats.rs`, `error.rs`, `bindings.rs`, `state.rs`: what they say;
//! - `imports/`: the host side of each import, one file per interface.
//!
//! A call never takes the server down: traps, timeouts, memory exhaustion and oversized or
//! malformed answers come back as a typed [`CallError`], and the caller applies the hook's
//! fail-safe (documented in `wit/dms-plugin.wit`).

mod bindings;
mod cache;
mod call;
mod engine;
mod error;
mod hooks;
pub mod imports;
mod limits;
mod plugin;
mod state;
mod stats;
mod world;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::Semaphore;
use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker};

pub use crate::domain::plugin::{Binding, LimitOverrides, World};
pub use bindings::channel_host::{HttpError, HttpRequest, HttpResponse};
pub use bindings::types::{
    Address, Attempt, DeliveryResult, Message, Rejection, RequestedTime, RetryDecision, RetryLater,
};
pub use cache::{CacheUsage, Digest, Origin};
pub use error::{CallError, FailureKind, LoadError};
pub use hooks::Delivery;
pub use imports::http::HttpClient;
pub use imports::presence::{Presence, Recorder};
pub use limits::Limits;
pub use plugin::Plugin;
pub use state::Published;
pub use stats::StatsSnapshot;

use crate::clock::Clock;
use state::HostState;

/// Operator settings for the sandbox.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// The maximum limits; bindings may only lower them.
    pub limits: Limits,
    /// Plugin instances alive at once, across all calls. Sizes the pooling allocator; further
    /// calls wait for a slot rather than fail. 1000 is wasmtime's pooling default.
    pub max_instances: u32,
    /// Largest component accepted, in bytes. 10 MiB admits Rust plugins (tens of KiB) with a
    /// wide margin; Python and JavaScript runtimes are 12–18 MiB and need it raised.
    pub max_component_bytes: usize,
    /// Where compiled components are cached between restarts; `None` keeps them in memory.
    pub cache_dir: Option<PathBuf>,
    /// Compiled code kept in memory for plugins no one is using now, in bytes (least recently
    /// used first out; a reload then comes from the disk cache).
    pub cache_memory_bytes: usize,
    /// Compiles that may run at once; further ones wait. Cranelift uses every core for one
    /// compile, so more than one mostly adds memory, not speed.
    pub compile_concurrency: usize,
    /// Let channels reach loopback and private addresses (tests, on-premise receivers).
    pub allow_private_networks: bool,
    /// The clock plugins see.
    pub clock: Clock,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            max_instances: 1000,
            max_component_bytes: 10 << 20,
            cache_dir: None,
            cache_memory_bytes: 256 << 20,
            compile_concurrency: 1,
            allow_private_networks: false,
            clock: Clock::System,
        }
    }
}

/// Why the sandbox could not start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// wasmtime refused the configuration (for example, not enough address space for the pool).
    #[error("could not create the WebAssembly engine: {0}")]
    Engine(String),
    /// The host's imports could not be linked.
    #[error("could not link the host imports: {0}")]
    Linker(String),
    /// The compiled-component cache directory could not be created.
    #[error("could not create the plugin cache directory {}: {source}", path.display())]
    CacheDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A built-in plugin failed to load (a build problem: they are compiled with the server).
    #[error("the built-in plugin {name} failed to load: {error}")]
    Builtin {
        /// The plugin.
        name: &'static str,
        /// Why.
        error: LoadError,
    },
}

/// The plugin sandbox. Cheap to clone; all clones share the engine, caches and counters.
#[derive(Clone)]
pub struct Sandbox(Arc<Inner>);

struct Inner {
    engine: Engine,
    linker: Linker<HostState>,
    cache: cache::ComponentCache,
    config: SandboxConfig,
    http: HttpClient,
    presence: Arc<dyn Presence>,
    /// One permit per pooled instance slot: calls wait here instead of failing when all slots
    /// are busy.
    slots: Semaphore,
    /// The plugins loaded on this node: those something holds (the built-in defaults, a
    /// tenant's resolved hooks, a call in flight). A plugin no one holds is gone from here, and
    /// from the metrics; its compiled code may still be in the cache.
    plugins: Mutex<HashMap<Digest, Weak<Plugin>>>,
    /// The built-ins' digests, whose compiled code is never discarded.
    builtins: Vec<Digest>,
    /// The built-ins loaded so far, held for the life of the sandbox: every tenant may use them
    /// at any time, and their counters then cover the whole run.
    pinned: Mutex<Vec<Arc<Plugin>>>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("config", &self.0.config)
            .finish_non_exhaustive()
    }
}

/// The names of the built-in plugins, in the order they are listed in `plugins/`.
pub fn builtin_names() -> impl Iterator<Item = &'static str> {
    plugin_artifacts::ALL.iter().map(|(name, _)| *name)
}

impl Sandbox {
    /// Starts the sandbox: the engine, the host's imports and the compile cache. Plugins,
    /// built-ins included, are compiled on first use; see [`Sandbox::preload_builtins`].
    pub fn new(config: SandboxConfig, presence: Arc<dyn Presence>) -> Result<Self, SetupError> {
        let engine = engine::build(config.max_instances, config.limits.memory_bytes)?;
        let mut linker = Linker::<HostState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|error| SetupError::Linker(format!("{error:#}")))?;
        bindings::channel::Channel::add_to_linker::<HostState, HasSelf<HostState>>(
            &mut linker,
            |state| state,
        )
        .map_err(|error| SetupError::Linker(format!("{error:#}")))?;
        let cache = cache::ComponentCache::new(
            engine.clone(),
            config.cache_dir.as_deref(),
            config.cache_memory_bytes,
            config.compile_concurrency,
        )?;
        Ok(Self(Arc::new(Inner {
            http: HttpClient::new(config.allow_private_networks),
            slots: Semaphore::new(config.max_instances as usize),
            engine,
            linker,
            cache,
            config,
            presence,
            plugins: Mutex::new(HashMap::new()),
            builtins: plugin_artifacts::ALL
                .iter()
                .map(|(_, bytes)| Digest::of(bytes))
                .collect(),
            pinned: Mutex::new(Vec::new()),
        })))
    }

    /// Loads every built-in plugin now, so a broken build fails at start-up rather than on
    /// the first message, and the first message does not wait for Cranelift.
    pub async fn preload_builtins(&self) -> Result<(), SetupError> {
        for name in builtin_names() {
            self.builtin(name)
                .await
                .map_err(|error| SetupError::Builtin { name, error })?;
        }
        Ok(())
    }

    /// Compiles (or fetches from the caches), checks and pre-instantiates a component.
    ///
    /// Loading the same bytes again returns the same plugin while it is loaded, that is while
    /// anyone holds it (built-ins: always).
    pub async fn load(&self, name: &str, bytes: &[u8]) -> Result<Arc<Plugin>, LoadError> {
        self.0.load(name, bytes).await
    }

    /// A built-in plugin by name (`content-guard`, `standard-delay`, `inbox`, `webhook`).
    pub async fn builtin(&self, name: &str) -> Result<Arc<Plugin>, LoadError> {
        let (name, bytes) = plugin_artifacts::ALL
            .iter()
            .find(|(builtin, _)| *builtin == name)
            .ok_or_else(|| LoadError::UnknownBuiltin(name.to_owned()))?;
        let plugin = self.load(name, bytes).await?;
        let mut pinned = self.0.pinned.lock().expect("pinned lock");
        if !pinned.iter().any(|held| Arc::ptr_eq(held, &plugin)) {
            pinned.push(plugin.clone());
        }
        Ok(plugin)
    }

    /// The plugin with this digest, if it is loaded.
    pub fn loaded(&self, digest: &Digest) -> Option<Arc<Plugin>> {
        self.0
            .plugins
            .lock()
            .expect("plugins lock")
            .get(digest)
            .and_then(Weak::upgrade)
    }

    /// The plugin with this digest, loaded from compiled code in memory or on disk, without
    /// its bytes; `None` when it would have to be compiled. `size` is its size in bytes.
    pub fn load_compiled(
        &self,
        name: &str,
        digest: Digest,
        size: usize,
    ) -> Option<Result<Arc<Plugin>, LoadError>> {
        if let Some(plugin) = self.loaded(&digest) {
            return Some(Ok(plugin));
        }
        let (component, origin) = self.0.cache.cached(digest)?;
        Some(self.0.register(name, digest, size, &component, origin))
    }

    /// The cheap checks [`Sandbox::load`] makes before compiling (size, magic bytes, component
    /// rather than core module), to refuse an upload before anything else is spent on it.
    pub fn check(&self, bytes: &[u8]) -> Result<(), LoadError> {
        check_bytes(bytes, self.0.config.max_component_bytes)
    }

    /// The largest component [`Sandbox::load`] accepts, in bytes.
    pub fn max_component_bytes(&self) -> usize {
        self.0.config.max_component_bytes
    }

    /// Drops a plugin from the in-memory caches (its disk cache entry stays). Calls in flight
    /// finish; the next load of the same bytes comes from disk or the compiler.
    pub fn unload(&self, digest: &Digest) {
        self.0.plugins.lock().expect("plugins lock").remove(digest);
        self.0.cache.forget(digest);
    }

    /// Forgets the compiled code of a component no one will load again (its last plugin was
    /// deleted), in memory and on disk. A built-in's is kept. Whoever still holds the plugin
    /// (a call in flight) keeps it until they let go.
    pub fn discard(&self, digest: &Digest) {
        if !self.0.builtins.contains(digest) {
            self.0.cache.discard(digest);
        }
    }

    /// Every plugin loaded now, built-ins included.
    pub fn plugins(&self) -> Vec<Arc<Plugin>> {
        let mut plugins: Vec<_> = {
            let mut registry = self.0.plugins.lock().expect("plugins lock");
            registry.retain(|_, plugin| plugin.strong_count() > 0);
            registry.values().filter_map(Weak::upgrade).collect()
        };
        plugins.sort_by(|a, b| a.name.cmp(&b.name).then(a.digest.cmp(&b.digest)));
        plugins
    }

    /// What the compiled-component cache holds in memory, and the compiles running now.
    pub fn cache_usage(&self) -> CacheUsage {
        self.0.cache.usage()
    }

    /// The operator's limits.
    pub fn limits(&self) -> Limits {
        self.0.config.limits
    }

    /// The clock plugins see.
    pub fn clock(&self) -> &Clock {
        &self.0.config.clock
    }
}

impl Inner {
    async fn load(&self, name: &str, bytes: &[u8]) -> Result<Arc<Plugin>, LoadError> {
        check_bytes(bytes, self.config.max_component_bytes)?;
        let digest = Digest::of(bytes);
        if let Some(plugin) = self
            .plugins
            .lock()
            .expect("plugins lock")
            .get(&digest)
            .and_then(Weak::upgrade)
        {
            return Ok(plugin);
        }
        let (component, origin) = self.cache.get(digest, bytes).await?;
        self.register(name, digest, bytes.len(), &component, origin)
    }

    /// Checks a compiled component's world and imports, pre-instantiates it and records it as
    /// loaded (or returns the plugin a concurrent load recorded first).
    fn register(
        &self,
        name: &str,
        digest: Digest,
        size: usize,
        component: &wasmtime::component::Component,
        origin: Origin,
    ) -> Result<Arc<Plugin>, LoadError> {
        let (world, imports) = world::detect(&self.engine, component)?;
        let pre = plugin::Pre::new(&self.linker, component, world)?;
        let plugin = Arc::new(Plugin {
            name: name.into(),
            digest,
            world,
            size,
            imports,
            origin,
            pre,
            stats: Default::default(),
        });
        let mut registry = self.plugins.lock().expect("plugins lock");
        if let Some(first) = registry.get(&digest).and_then(Weak::upgrade) {
            return Ok(first);
        }
        registry.retain(|_, plugin| plugin.strong_count() > 0);
        registry.insert(digest, Arc::downgrade(&plugin));
        drop(registry);
        tracing::debug!(
            message = "Plugin loaded.",
            plugin = name,
            digest = %digest.short(),
            %world,
            ?origin,
        );
        Ok(plugin)
    }
}

/// Cheap checks before any compiling: size, magic bytes, component versus core module.
fn check_bytes(bytes: &[u8], limit: usize) -> Result<(), LoadError> {
    const MAGIC: &[u8] = b"\0asm";
    const CORE_VERSION: [u8; 4] = [0x01, 0x00, 0x00, 0x00];
    if bytes.is_empty() {
        return Err(LoadError::Empty);
    }
    if bytes.len() > limit {
        return Err(LoadError::TooLarge {
            size: bytes.len(),
            limit,
        });
    }
    if !bytes.starts_with(MAGIC) {
        return Err(LoadError::NotWasm);
    }
    if bytes.get(4..8) == Some(&CORE_VERSION[..]) {
        return Err(LoadError::CoreModule);
    }
    Ok(())
}
