//! A tenant's policies as its admins manage them: plugins (upload, list, enable, delete), the
//! hooks they are bound to, and dry runs of current or proposed hooks.
//!
//! The checks of each operation (quotas, worlds, binding bounds, one upload at a time per
//! tenant) are the engine's ([`crate::policies`]); this is the one place that puts a request
//! together from them, so the API, the CLI and the console answer alike.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::messages::{self, Messages, submit::Submission};
use crate::domain::ids::{MessageId, PluginId, TenantId};
use crate::domain::message::Message;
use crate::domain::plugin::{Hook, HookBinding, PluginRecord};
use crate::domain::user::User;
use crate::policies::{
    BindingRequest, Counters, DryRun, Hooks, ManageError, Policies, Simulation, Upload, UploadTurn,
};
use crate::store::Store;

/// Why a dry run was refused.
#[derive(Debug, thiserror::Error)]
pub enum DryRunError {
    /// A proposed binding is unusable.
    #[error(transparent)]
    Binding(#[from] ManageError),
    /// The sample message is unusable, or the stored one is not found.
    #[error(transparent)]
    Message(#[from] messages::Error),
}

/// A plugin with what the API shows beside it.
#[derive(Debug, Clone)]
pub struct PluginDetails {
    /// The plugin as stored.
    pub record: PluginRecord,
    /// The hooks it is bound to, sorted.
    pub bound_to: Vec<String>,
    /// Its counters on this node.
    pub stats: Counters,
}

/// The message a dry run decides on.
#[derive(Debug, Clone)]
pub enum Sample {
    /// A message as `POST /messages` takes it; nothing is stored.
    New(Submission),
    /// A message of the tenant, as stored.
    Stored(MessageId),
}

/// What a dry run decided, and on what.
#[derive(Debug, Clone)]
pub struct DryRunOutcome {
    /// The message decided on (a sample's id is made up).
    pub message_id: MessageId,
    /// The hooks that decided.
    pub hooks: Arc<Hooks>,
    /// Every decision.
    pub run: DryRun,
}

/// The tenant policy use cases. Cheap to clone.
#[derive(Clone)]
pub struct TenantPolicies {
    policies: Policies,
    store: Arc<dyn Store>,
    messages: Messages,
}

impl TenantPolicies {
    /// The use cases over the engine `policies`, the `store`, and (for dry runs of sample
    /// messages) the message use cases.
    pub fn new(policies: Policies, store: Arc<dyn Store>, messages: Messages) -> Self {
        Self {
            policies,
            store,
            messages,
        }
    }

    /// The largest component an upload may carry, in bytes.
    pub fn max_upload_bytes(&self) -> usize {
        self.policies.sandbox().max_component_bytes()
    }

    fn details(&self, record: PluginRecord, bindings: &[HookBinding]) -> PluginDetails {
        let bound_to: BTreeSet<String> = bindings
            .iter()
            .filter(|binding| binding.plugin_id == record.id)
            .map(|binding| binding.hook.to_string())
            .collect();
        let stats = self.policies.counters(&record.tenant_id, &record.id);
        PluginDetails {
            record,
            bound_to: bound_to.into_iter().collect(),
            stats,
        }
    }

    /// The tenant's plugins, oldest first.
    pub async fn plugins(&self, tenant: &TenantId) -> Result<Vec<PluginDetails>, ManageError> {
        let plugins = self.store.plugins(tenant).await?;
        let bindings = self.store.hook_bindings(tenant).await?;
        Ok(plugins
            .into_iter()
            .map(|plugin| self.details(plugin, &bindings))
            .collect())
    }

    /// One of the tenant's plugins.
    pub async fn plugin(
        &self,
        tenant: &TenantId,
        id: &PluginId,
    ) -> Result<PluginDetails, ManageError> {
        let plugin = self
            .store
            .plugin(tenant, id)
            .await?
            .ok_or(ManageError::NotFound)?;
        let bindings = self.store.hook_bindings(tenant).await?;
        Ok(self.details(plugin, &bindings))
    }

    /// Waits for `tenant`'s turn to upload (one at a time per tenant); take it before reading
    /// the upload's body, so a burst of uploads holds one body in memory.
    pub async fn upload_turn(&self, tenant: &TenantId) -> UploadTurn {
        self.policies.upload_turn(tenant).await
    }

    /// Checks, compiles and stores a component in the turn's tenant; `false` when the tenant
    /// had these bytes already (the plugin stored then is returned).
    pub async fn upload(
        &self,
        turn: UploadTurn,
        upload: Upload,
    ) -> Result<(PluginDetails, bool), ManageError> {
        let (plugin, created) = self.policies.upload(&turn, upload).await?;
        drop(turn);
        let bindings = self.store.hook_bindings(&plugin.tenant_id).await?;
        Ok((self.details(plugin, &bindings), created))
    }

    /// Enables a disabled plugin: its bindings serve again from the next message.
    pub async fn enable(
        &self,
        tenant: &TenantId,
        id: &PluginId,
    ) -> Result<PluginDetails, ManageError> {
        let plugin = self.policies.enable_plugin(tenant, id).await?;
        let bindings = self.store.hook_bindings(tenant).await?;
        Ok(self.details(plugin, &bindings))
    }

    /// Deletes a plugin no hook uses.
    pub async fn delete(&self, tenant: &TenantId, id: &PluginId) -> Result<(), ManageError> {
        self.policies.delete_plugin(tenant, id).await
    }

    /// What serves each of the tenant's hooks now.
    pub async fn hooks(&self, tenant: &TenantId) -> Result<Arc<Hooks>, ManageError> {
        Ok(self.policies.hooks(tenant).await?)
    }

    /// Binds plugins to `hook` (none: back to the built-in default) and returns what serves
    /// each hook from the next message on.
    pub async fn bind(
        &self,
        tenant: &TenantId,
        hook: Hook,
        requests: &[BindingRequest],
    ) -> Result<Arc<Hooks>, ManageError> {
        self.policies.bind(tenant, hook, requests).await?;
        self.hooks(tenant).await
    }

    /// Runs the tenant's hooks (or, for the hooks in `proposals`, the proposed bindings) on
    /// `sample` as the server would, simulating failed attempts. Nothing is stored or sent.
    /// A sample's field errors are named within `/message`.
    pub async fn dry_run(
        &self,
        caller: &User,
        sample: Sample,
        proposals: &[(Hook, Vec<BindingRequest>)],
        simulation: &Simulation,
    ) -> Result<DryRunOutcome, DryRunError> {
        let message = self.sample(caller, sample).await?;
        let tenant = &caller.tenant_id;
        let hooks = if proposals.is_empty() {
            self.hooks(tenant).await?
        } else {
            Arc::new(self.policies.proposed(tenant, proposals).await?)
        };
        let run = self.policies.dry_run(&hooks, &message, simulation).await;
        Ok(DryRunOutcome {
            message_id: message.id,
            hooks,
            run,
        })
    }

    async fn sample(&self, caller: &User, sample: Sample) -> Result<Message, messages::Error> {
        match sample {
            Sample::New(submission) => {
                let now = self.messages.clock.now_ms();
                messages::submit::draft(&self.messages, caller, submission, now)
                    .await
                    .map_err(|error| match error {
                        messages::Error::Invalid { field, reason } => messages::Error::Invalid {
                            field: within_message(&field).into(),
                            reason,
                        },
                        other => other,
                    })
            }
            Sample::Stored(id) => self
                .store
                .message(&caller.tenant_id, &id)
                .await?
                .ok_or(messages::Error::NotFound),
        }
    }
}

/// A field of the sample message, named within the dry run's body (`/message/recipient_id`).
pub fn within_message(field: &str) -> String {
    let inner = if field == "/" { "" } else { field };
    format!("/message{inner}")
}
