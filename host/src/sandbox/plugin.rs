//! A loaded plugin: compiled, its world detected, pre-instantiated against the host's linker,
//! with its own counters. Calls instantiate it fresh from `pre` every time.

use std::sync::Arc;

use wasmtime::Store;
use wasmtime::component::{InstancePre, Linker};

use super::bindings::{channel, delay_policy, validator};
use super::cache::{Digest, Origin};
use super::state::HostState;
use super::stats::{PluginStats, StatsSnapshot};
use super::{LoadError, World};

/// A plugin ready to be called.
pub struct Plugin {
    pub(crate) name: Arc<str>,
    pub(crate) digest: Digest,
    pub(crate) world: World,
    pub(crate) size: usize,
    pub(crate) imports: Vec<String>,
    pub(crate) origin: Origin,
    pub(crate) pre: Pre,
    pub(crate) stats: PluginStats,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("digest", &self.digest)
            .field("world", &self.world)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// The name it was loaded under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The SHA-256 of its bytes.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// The world it implements.
    pub fn world(&self) -> World {
        self.world
    }

    /// Its size in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The interfaces it imports.
    pub fn imports(&self) -> &[String] {
        &self.imports
    }

    /// Where the compiled code came from when it was loaded.
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// Its call counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }
}

/// The pre-instantiated component, typed by world.
pub(crate) enum Pre {
    Validator(validator::ValidatorPre<HostState>),
    DelayPolicy(delay_policy::DelayPolicyPre<HostState>),
    Channel(channel::ChannelPre<HostState>),
}

impl Pre {
    /// Type-checks `pre` against `world`'s exports.
    pub(crate) fn new(
        linker: &Linker<HostState>,
        component: &wasmtime::component::Component,
        world: World,
    ) -> Result<Self, LoadError> {
        let incompatible = |error: wasmtime::Error| LoadError::Incompatible {
            world,
            detail: format!("{error:#}"),
        };
        let pre: InstancePre<HostState> =
            linker.instantiate_pre(component).map_err(incompatible)?;
        Ok(match world {
            World::Validator => {
                Self::Validator(validator::ValidatorPre::new(pre).map_err(incompatible)?)
            }
            World::DelayPolicy => {
                Self::DelayPolicy(delay_policy::DelayPolicyPre::new(pre).map_err(incompatible)?)
            }
            World::Channel => Self::Channel(channel::ChannelPre::new(pre).map_err(incompatible)?),
        })
    }
}

/// The one operation every typed pre shares: a fresh instance in a fresh store.
pub(crate) trait Instantiate {
    type Instance: Send + Sync;

    fn instantiate(
        &self,
        store: &mut Store<HostState>,
    ) -> impl Future<Output = wasmtime::Result<Self::Instance>> + Send;
}

macro_rules! instantiate {
    ($pre:ty => $instance:ty) => {
        impl Instantiate for $pre {
            type Instance = $instance;

            async fn instantiate(
                &self,
                store: &mut Store<HostState>,
            ) -> wasmtime::Result<$instance> {
                self.instantiate_async(store).await
            }
        }
    };
}

instantiate!(validator::ValidatorPre<HostState> => validator::Validator);
instantiate!(delay_policy::DelayPolicyPre<HostState> => delay_policy::DelayPolicy);
instantiate!(channel::ChannelPre<HostState> => channel::Channel);
