//! A tenant's hooks, resolved: the plugin and binding that serve each hook right now.
//!
//! Resolution reads the tenant's bindings and plugins from the database and loads each plugin
//! into the sandbox (from the compile cache, or compiling it). The result is an immutable
//! snapshot, cached per tenant: a message is decided by one snapshot from start to end, so a
//! binding that changes meanwhile never half-applies. A change drops the tenant's snapshot on
//! this node at once and on the other nodes through the real-time bridge; an epoch counter
//! keeps a resolution that raced with a change from caching what it read before the change.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::health::{Health, PluginHealth};
use crate::domain::ids::{PluginId, TenantId};
use crate::domain::message::{Channel, PluginRef};
use crate::domain::plugin::{Hook, HookBinding};
use crate::sandbox::{Binding, Plugin, Sandbox};
use crate::store::{Store, StoreError};

/// Where a bound plugin comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A built-in default.
    Builtin,
    /// A plugin the tenant uploaded.
    Tenant(PluginId),
}

/// A plugin bound to a hook.
#[derive(Debug, Clone)]
pub struct Bound {
    /// The plugin.
    pub plugin: Arc<Plugin>,
    /// Its name: the built-in's, or the one the tenant gave it.
    pub name: Arc<str>,
    /// Its configuration and grants.
    pub binding: Arc<Binding>,
    /// Built-in or uploaded.
    pub source: Source,
    /// For a tenant plugin: its call counters on this node.
    pub health: Option<Arc<PluginHealth>>,
    /// Why a built-in serves a hook the tenant bound to its own plugin (it is disabled, or
    /// failed to load); recorded in the history of every message it decides.
    pub standing_in: Option<Arc<str>>,
}

impl Bound {
    /// A built-in plugin under `binding`.
    pub(super) fn builtin(plugin: Arc<Plugin>, binding: Binding) -> Self {
        Self {
            name: plugin.name().into(),
            plugin,
            binding: Arc::new(binding),
            source: Source::Builtin,
            health: None,
            standing_in: None,
        }
    }

    /// How history entries name it.
    pub fn reference(&self) -> PluginRef {
        PluginRef {
            name: self.name.to_string(),
            digest: format!("sha256:{}", self.plugin.digest()),
        }
    }
}

/// The built-in bindings every tenant starts with.
#[derive(Debug)]
pub(super) struct Defaults {
    pub(super) validator: Bound,
    pub(super) delay: Bound,
    pub(super) inbox: Bound,
    pub(super) webhook: Bound,
}

impl Defaults {
    fn for_hook(&self, hook: Hook) -> &Bound {
        match hook {
            Hook::Validators => &self.validator,
            Hook::DelayPolicy => &self.delay,
            Hook::Channel(Channel::Inbox) => &self.inbox,
            Hook::Channel(Channel::Webhook) => &self.webhook,
        }
    }
}

/// What serves each hook of one tenant.
#[derive(Debug, Clone)]
pub struct Hooks {
    /// The validators, in order (may be empty: the tenant chose none).
    pub validators: Vec<Bound>,
    /// The delay policy.
    pub delay: Bound,
    /// The inbox channel.
    pub inbox: Bound,
    /// The webhook channel.
    pub webhook: Bound,
    /// What delivers status callbacks: always the built-in `webhook` channel, which posts a
    /// callback's body as it is (a tenant's webhook plugin does not see them).
    pub callback: Bound,
}

impl Hooks {
    pub(super) fn defaults(defaults: &Defaults) -> Self {
        Self {
            validators: vec![defaults.validator.clone()],
            delay: defaults.delay.clone(),
            inbox: defaults.inbox.clone(),
            webhook: defaults.webhook.clone(),
            callback: defaults.webhook.clone(),
        }
    }

    /// The plugin for `channel`.
    pub fn channel(&self, channel: Channel) -> &Bound {
        match channel {
            Channel::Inbox => &self.inbox,
            Channel::Webhook => &self.webhook,
        }
    }
}

/// Resolved hooks per tenant.
#[derive(Debug, Default)]
pub(super) struct Cache {
    tenants: std::sync::Mutex<HashMap<TenantId, Arc<Hooks>>>,
    /// Moves on every invalidation.
    epoch: AtomicU64,
}

impl Cache {
    pub(super) fn get(&self, tenant: &TenantId) -> Option<Arc<Hooks>> {
        self.tenants
            .lock()
            .expect("cache lock")
            .get(tenant)
            .cloned()
    }

    pub(super) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Caches `hooks` unless an invalidation happened since `epoch`.
    pub(super) fn put(&self, tenant: &TenantId, hooks: Arc<Hooks>, epoch: u64) {
        let mut tenants = self.tenants.lock().expect("cache lock");
        if self.epoch.load(Ordering::SeqCst) == epoch {
            tenants.insert(tenant.clone(), hooks);
        }
    }

    /// Drops one tenant's snapshot, or all of them.
    pub(super) fn forget(&self, tenant: Option<&TenantId>) {
        let mut tenants = self.tenants.lock().expect("cache lock");
        self.epoch.fetch_add(1, Ordering::SeqCst);
        match tenant {
            Some(tenant) => {
                tenants.remove(tenant);
            }
            None => tenants.clear(),
        }
    }
}

/// Reads and loads a tenant's hooks. A plugin that is disabled, or no longer loads, leaves
/// its place to the hook's built-in default, with a note saying why.
pub(super) async fn resolve(
    store: &dyn Store,
    sandbox: &Sandbox,
    defaults: &Defaults,
    health: &Health,
    tenant: &TenantId,
) -> Result<Hooks, StoreError> {
    let bindings = store.hook_bindings(tenant).await?;
    resolve_bindings(store, sandbox, defaults, health, tenant, bindings).await
}

/// Loads the plugins of `bindings` (by hook, then position) over the built-in defaults.
pub(super) async fn resolve_bindings(
    store: &dyn Store,
    sandbox: &Sandbox,
    defaults: &Defaults,
    health: &Health,
    tenant: &TenantId,
    bindings: Vec<HookBinding>,
) -> Result<Hooks, StoreError> {
    let mut hooks = Hooks::defaults(defaults);
    if bindings.is_empty() {
        return Ok(hooks);
    }
    let mut loaded: HashMap<PluginId, Loaded> = HashMap::new();
    let mut validators: Vec<Bound> = Vec::new();
    let mut chain_bound = false;
    for HookBinding {
        hook,
        plugin_id,
        binding,
        ..
    } in bindings
    {
        if !loaded.contains_key(&plugin_id) {
            let plugin = load(store, sandbox, tenant, &plugin_id).await?;
            loaded.insert(plugin_id.clone(), plugin);
        }
        let bound = match &loaded[&plugin_id] {
            Ok((plugin, name)) if plugin.world() == hook.world() => Bound {
                plugin: plugin.clone(),
                name: name.clone(),
                binding: Arc::new(binding),
                health: Some(health.of(tenant, &plugin_id)),
                source: Source::Tenant(plugin_id),
                standing_in: None,
            },
            Ok((plugin, _)) => {
                // Bindings are checked when saved; only a corrupted row gets here.
                stand_in(
                    defaults.for_hook(hook),
                    format!("{plugin_id} is a {} plugin", plugin.world()),
                )
            }
            Err(reason) => stand_in(defaults.for_hook(hook), reason.clone()),
        };
        match hook {
            Hook::Validators => {
                chain_bound = true;
                // Two disabled validators fall back to one built-in, not the same twice.
                let duplicate = bound.source == Source::Builtin
                    && validators
                        .iter()
                        .any(|other| other.source == Source::Builtin);
                if !duplicate {
                    validators.push(bound);
                }
            }
            Hook::DelayPolicy => hooks.delay = bound,
            Hook::Channel(Channel::Inbox) => hooks.inbox = bound,
            Hook::Channel(Channel::Webhook) => hooks.webhook = bound,
        }
    }
    if chain_bound {
        hooks.validators = validators;
    }
    Ok(hooks)
}

fn stand_in(default: &Bound, reason: String) -> Bound {
    Bound {
        standing_in: Some(reason.into()),
        ..default.clone()
    }
}

/// A tenant plugin and its name, or why it cannot serve.
type Loaded = Result<(Arc<Plugin>, Arc<str>), String>;

/// One of the tenant's plugins, loaded.
async fn load(
    store: &dyn Store,
    sandbox: &Sandbox,
    tenant: &TenantId,
    id: &PluginId,
) -> Result<Loaded, StoreError> {
    let Some(record) = store.plugin(tenant, id).await? else {
        return Ok(Err(format!("the plugin {id} no longer exists")));
    };
    let name: Arc<str> = record.name.as_str().into();
    if let Some(disabled) = &record.disabled {
        return Ok(Err(format!(
            "the plugin {} ({id}) is disabled: {}",
            record.name, disabled.reason
        )));
    }
    // Loaded already, or compiled code in the cache: no need to read the bytes.
    let compiled = record.digest.parse().ok().and_then(|digest| {
        sandbox.load_compiled(
            &record.name,
            digest,
            usize::try_from(record.size).unwrap_or(usize::MAX),
        )
    });
    let loaded = match compiled {
        Some(loaded) => loaded,
        None => {
            let Some(bytes) = store.plugin_component(tenant, id).await? else {
                return Ok(Err(format!("the plugin {id} no longer exists")));
            };
            sandbox.load(&record.name, &bytes).await
        }
    };
    Ok(match loaded {
        Ok(plugin) => Ok((plugin, name)),
        Err(error) => {
            tracing::error!(
                message = "A stored tenant plugin no longer loads; its hooks use the built-in default.",
                tenant_id = %tenant,
                plugin_id = %id,
                %error,
            );
            Err(format!(
                "the plugin {} ({id}) does not load: {error}",
                record.name
            ))
        }
    })
}
