//! What tenant admins do with their plugins: upload, delete, enable, bind to hooks, and
//! propose bindings for a dry run. Every check happens before anything is written, and each
//! refusal says what to change.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, Weak};

use super::Policies;
use super::tenant::{self, Hooks};
use crate::domain::ids::{PluginId, TenantId};
use crate::domain::plugin::{Hook, HookBinding, PluginRecord, PluginUsage, QuotaExceeded};
use crate::sandbox::{Binding, Digest, LimitOverrides, LoadError};
use crate::store::{NewPlugin, PluginDeletion, PluginInsert, StoreError};

/// Validators a tenant may chain.
pub const MAX_VALIDATORS: usize = 8;
/// Configuration entries per binding.
const MAX_CONFIG_ENTRIES: usize = 64;
/// The longest configuration key.
const MAX_CONFIG_KEY: usize = 128;
/// The longest configuration value.
const MAX_CONFIG_VALUE: usize = 4096;
/// Allow-list entries per channel binding.
const MAX_ALLOWED_HOSTS: usize = 64;
/// The longest plugin name or version.
const MAX_LABEL: usize = 64;

/// Why a plugin operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    /// The component was refused at upload.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The tenant has no such plugin.
    #[error("there is no such plugin in your tenant")]
    NotFound,
    /// A field of the request is wrong.
    #[error("{field}: {reason}")]
    Invalid {
        /// A JSON pointer or parameter name.
        field: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// The tenant's plugins fill its quota.
    #[error("{0}")]
    Quota(QuotaExceeded),
    /// The plugin is bound to hooks, so it cannot be deleted.
    #[error("the plugin is bound to {}; bind other plugins there (or DELETE the hook) first", .0.join(", "))]
    Bound(Vec<String>),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Whose turn it is to upload, per tenant on this node: one upload at a time each.
///
/// A tenant's uploads wait here before their bodies are read, so a burst of them holds one
/// body in memory, not hundreds, and takes at most one place in the node's compile queue:
/// another tenant's upload waits for at most one compile of each tenant ahead of it.
#[derive(Debug, Default)]
pub(super) struct UploadTurns(Mutex<HashMap<TenantId, Weak<tokio::sync::Mutex<()>>>>);

/// A tenant's turn to upload, until dropped.
#[derive(Debug)]
pub struct UploadTurn {
    tenant: TenantId,
    _turn: tokio::sync::OwnedMutexGuard<()>,
}

impl UploadTurns {
    async fn take(&self, tenant: &TenantId) -> UploadTurn {
        let gate = {
            let mut gates = self.0.lock().expect("upload turns lock");
            gates.retain(|_, gate| gate.strong_count() > 0);
            match gates.get(tenant).and_then(Weak::upgrade) {
                Some(gate) => gate,
                None => {
                    let gate = Arc::new(tokio::sync::Mutex::new(()));
                    gates.insert(tenant.clone(), Arc::downgrade(&gate));
                    gate
                }
            }
        };
        UploadTurn {
            tenant: tenant.clone(),
            _turn: gate.lock_owned().await,
        }
    }
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ManageError {
    ManageError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// A component to upload.
#[derive(Debug, Clone)]
pub struct Upload {
    /// Its name (default: its world and the start of its digest).
    pub name: Option<String>,
    /// Its version.
    pub version: Option<String>,
    /// The component.
    pub bytes: Vec<u8>,
}

/// One plugin to bind, as the admin asked.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BindingRequest {
    /// The plugin (`plg_…`).
    #[schema(value_type = PluginId)]
    pub plugin_id: String,
    /// Values the plugin reads with `config(key)`.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// For channels: hosts `http-send` may reach.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Limits lower than the operator's.
    #[serde(default)]
    pub limits: LimitOverrides,
}

impl Policies {
    /// Waits for `tenant`'s turn to upload (one at a time per tenant); take it before reading
    /// the upload's body.
    pub async fn upload_turn(&self, tenant: &TenantId) -> UploadTurn {
        self.uploads.take(tenant).await
    }

    /// Checks, compiles and stores a component within the tenant's quota; uploading bytes the
    /// tenant has already returns the plugin stored then (`false`). Cheap checks and the quota
    /// come before the compiler, so a refusal costs no compile.
    pub async fn upload(
        &self,
        turn: &UploadTurn,
        upload: Upload,
    ) -> Result<(PluginRecord, bool), ManageError> {
        let tenant = &turn.tenant;
        for (field, value) in [("name", &upload.name), ("version", &upload.version)] {
            if let Some(value) = value {
                check_label(field, value)?;
            }
        }
        self.sandbox.check(&upload.bytes)?;
        let digest = Digest::of(&upload.bytes).to_string();
        let stored = self.store.plugins(tenant).await?;
        if let Some(existing) = stored.iter().find(|plugin| plugin.digest == digest) {
            return Ok((existing.clone(), false));
        }
        let size = u64::try_from(upload.bytes.len()).unwrap_or(u64::MAX);
        let usage = PluginUsage {
            plugins: u64::try_from(stored.len()).unwrap_or(u64::MAX),
            bytes: stored.iter().map(|plugin| plugin.size).sum(),
        };
        self.quota.admit(usage, size).map_err(ManageError::Quota)?;
        let plugin = self
            .sandbox
            .load(upload.name.as_deref().unwrap_or("upload"), &upload.bytes)
            .await?;
        let name = upload
            .name
            .unwrap_or_else(|| format!("{}-{}", plugin.world(), &digest[..12]));
        let inserted = self
            .store
            .insert_plugin(
                NewPlugin {
                    id: PluginId::new(),
                    tenant_id: tenant.clone(),
                    name,
                    version: upload.version,
                    world: plugin.world(),
                    digest,
                    component: upload.bytes,
                    created_at_ms: self.clock.now_ms(),
                },
                self.quota,
            )
            .await?;
        match inserted {
            PluginInsert::Inserted(record) => Ok((record, true)),
            PluginInsert::Existing(record) => Ok((record, false)),
            // Another upload of the tenant, on another node, filled the quota meanwhile.
            PluginInsert::OverQuota(exceeded) => Err(ManageError::Quota(exceeded)),
        }
    }

    /// Deletes a plugin no hook uses, with its counters on this node, and its compiled code
    /// when no other plugin (of any tenant) has the same bytes. Other nodes drop their
    /// counters of it when they hear of the change.
    pub async fn delete_plugin(&self, tenant: &TenantId, id: &PluginId) -> Result<(), ManageError> {
        match self.store.delete_plugin(tenant, id).await? {
            PluginDeletion::Deleted { digest, shared } => {
                self.health.forget(tenant, id);
                if !shared && let Ok(digest) = digest.parse() {
                    self.sandbox.discard(&digest);
                }
                self.changed(tenant);
                Ok(())
            }
            PluginDeletion::NotFound => Err(ManageError::NotFound),
            PluginDeletion::Bound(hooks) => Err(ManageError::Bound(hooks)),
        }
    }

    /// Enables a disabled plugin: its bindings serve again from the next message.
    pub async fn enable_plugin(
        &self,
        tenant: &TenantId,
        id: &PluginId,
    ) -> Result<PluginRecord, ManageError> {
        if self.store.plugin(tenant, id).await?.is_none() {
            return Err(ManageError::NotFound);
        }
        self.store.set_plugin_disabled(tenant, id, None).await?;
        self.enabled(tenant, id);
        self.store
            .plugin(tenant, id)
            .await?
            .ok_or(ManageError::NotFound)
    }

    /// Checks bindings for `hook` and saves them (none: back to the built-in default). The
    /// change applies to the next message on every node.
    pub async fn bind(
        &self,
        tenant: &TenantId,
        hook: Hook,
        requests: &[BindingRequest],
    ) -> Result<(), ManageError> {
        let checked = self.check(tenant, hook, requests, "").await?;
        self.store
            .set_hook(tenant, hook, &checked, self.clock.now_ms())
            .await?;
        self.changed(tenant);
        Ok(())
    }

    /// The tenant's hooks with some replaced by proposed bindings (checked as [`Self::bind`]
    /// checks them), for a dry run. Nothing is saved.
    pub async fn proposed(
        &self,
        tenant: &TenantId,
        proposals: &[(Hook, Vec<BindingRequest>)],
    ) -> Result<Hooks, ManageError> {
        let mut bindings: Vec<HookBinding> = self
            .store
            .hook_bindings(tenant)
            .await?
            .into_iter()
            .filter(|binding| !proposals.iter().any(|(hook, _)| *hook == binding.hook))
            .collect();
        for (hook, requests) in proposals {
            let field = format!("/hooks/{hook}");
            for (position, (plugin_id, binding)) in self
                .check(tenant, *hook, requests, &field)
                .await?
                .into_iter()
                .enumerate()
            {
                bindings.push(HookBinding {
                    hook: *hook,
                    position: u32::try_from(position).unwrap_or(u32::MAX),
                    plugin_id,
                    binding,
                });
            }
        }
        bindings.sort_by_key(|binding| (binding.hook.as_str(), binding.position));
        Ok(tenant::resolve_bindings(
            self.store.as_ref(),
            &self.sandbox,
            &self.defaults,
            &self.health,
            tenant,
            bindings,
        )
        .await?)
    }

    /// Checks each request: the plugin is the tenant's, enabled and of the hook's world; its
    /// configuration, allow-list and limits are within bounds.
    async fn check(
        &self,
        tenant: &TenantId,
        hook: Hook,
        requests: &[BindingRequest],
        field: &str,
    ) -> Result<Vec<(PluginId, Binding)>, ManageError> {
        let at = |position: usize, rest: &str| {
            if hook.is_chain() {
                format!("{field}/plugins/{position}{rest}")
            } else {
                format!("{field}{rest}")
            }
        };
        if hook.is_chain() && requests.len() > MAX_VALIDATORS {
            return Err(invalid(
                format!("{field}/plugins"),
                format!(
                    "{} validators; a tenant may chain at most {MAX_VALIDATORS}",
                    requests.len()
                ),
            ));
        }
        let operator = self.sandbox.limits();
        let mut checked = Vec::with_capacity(requests.len());
        for (position, request) in requests.iter().enumerate() {
            let id: PluginId = request.plugin_id.parse().map_err(|_| {
                invalid(
                    at(position, "/plugin_id"),
                    format!("{:?} is not a plugin id (plg_…)", request.plugin_id),
                )
            })?;
            let Some(record) = self.store.plugin(tenant, &id).await? else {
                return Err(invalid(
                    at(position, "/plugin_id"),
                    format!("there is no plugin {id} in your tenant; upload it with POST /plugins"),
                ));
            };
            if record.world != hook.world() {
                return Err(invalid(
                    at(position, "/plugin_id"),
                    format!(
                        "{id} ({}) is a {} plugin; the {hook} hook takes {} plugins",
                        record.name,
                        record.world,
                        hook.world()
                    ),
                ));
            }
            if let Some(disabled) = &record.disabled {
                return Err(invalid(
                    at(position, "/plugin_id"),
                    format!(
                        "{id} ({}) is disabled ({}); enable it first with POST /plugins/{id}/enable",
                        record.name, disabled.reason
                    ),
                ));
            }
            check_config(&request.config, &at(position, "/config"))?;
            if !request.allowed_hosts.is_empty() && !matches!(hook, Hook::Channel(_)) {
                return Err(invalid(
                    at(position, "/allowed_hosts"),
                    "only channel plugins make HTTP requests; leave allowed_hosts out",
                ));
            }
            check_hosts(&request.allowed_hosts, &at(position, "/allowed_hosts"))?;
            let limits = &request.limits;
            let maximums = [
                (
                    "memory_bytes",
                    limits.memory_bytes.map(|bytes| bytes as u64),
                    operator.memory_bytes as u64,
                ),
                (
                    "decision_deadline_ms",
                    limits.decision_deadline_ms,
                    operator.decision_deadline.as_millis() as u64,
                ),
                (
                    "channel_deadline_ms",
                    limits.channel_deadline_ms,
                    operator.channel_deadline.as_millis() as u64,
                ),
            ];
            for (name, asked, maximum) in maximums {
                match asked {
                    Some(0) => {
                        return Err(invalid(
                            at(position, &format!("/limits/{name}")),
                            "a limit must be above 0",
                        ));
                    }
                    Some(asked) if asked > maximum => {
                        return Err(invalid(
                            at(position, &format!("/limits/{name}")),
                            format!(
                                "{asked} is above the operator's maximum of {maximum}; bindings may only lower limits"
                            ),
                        ));
                    }
                    _ => {}
                }
            }
            checked.push((
                id,
                Binding {
                    config: request.config.clone(),
                    allowed_hosts: request.allowed_hosts.clone(),
                    limits: request.limits,
                },
            ));
        }
        Ok(checked)
    }
}

fn check_label(field: &str, value: &str) -> Result<(), ManageError> {
    let valid = !value.is_empty()
        && value.len() <= MAX_LABEL
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'+'));
    if valid {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!(
                "{field} must be 1 to {MAX_LABEL} characters of A-Z, a-z, 0-9, '-', '_', '.' and '+'"
            ),
        ))
    }
}

fn check_config(config: &BTreeMap<String, String>, field: &str) -> Result<(), ManageError> {
    if config.len() > MAX_CONFIG_ENTRIES {
        return Err(invalid(
            field,
            format!("{} entries; at most {MAX_CONFIG_ENTRIES}", config.len()),
        ));
    }
    for (key, value) in config {
        if key.is_empty() || key.len() > MAX_CONFIG_KEY {
            return Err(invalid(
                field,
                format!("key {key:?} must be 1 to {MAX_CONFIG_KEY} bytes"),
            ));
        }
        if value.len() > MAX_CONFIG_VALUE {
            return Err(invalid(
                format!("{field}/{key}"),
                format!(
                    "the value is {} bytes; at most {MAX_CONFIG_VALUE}",
                    value.len()
                ),
            ));
        }
    }
    Ok(())
}

fn check_hosts(hosts: &[String], field: &str) -> Result<(), ManageError> {
    if hosts.len() > MAX_ALLOWED_HOSTS {
        return Err(invalid(
            field,
            format!("{} hosts; at most {MAX_ALLOWED_HOSTS}", hosts.len()),
        ));
    }
    for (index, host) in hosts.iter().enumerate() {
        let name = host.strip_prefix("*.").unwrap_or(host);
        let valid = host == "*"
            || (!name.is_empty()
                && name.len() <= 253
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                && !name.starts_with('.')
                && !name.ends_with('.'));
        if !valid {
            return Err(invalid(
                format!("{field}/{index}"),
                format!("{host:?} is not a host name, `*.` and a host name, or `*`"),
            ));
        }
    }
    Ok(())
}
