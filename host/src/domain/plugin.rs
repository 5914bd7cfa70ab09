//! Tenants' own plugins and the hooks they are bound to, as stored.
//!
//! A tenant has four hooks: the `validators` chain, the `delay-policy`, and one per channel
//! (`channels/inbox`, `channels/webhook`). A hook with no binding uses the built-in default.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use super::ids::{PluginId, TenantId};
use super::message::Channel;

/// A plugin a tenant uploaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginRecord {
    /// Its id.
    pub id: PluginId,
    /// Its tenant.
    pub tenant_id: TenantId,
    /// The name the admin gave it.
    pub name: String,
    /// The version the admin gave it.
    pub version: Option<String>,
    /// The world it implements, detected at upload.
    pub world: World,
    /// SHA-256 of the component, hex.
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was uploaded.
    pub created_at_ms: u64,
    /// Why and when it was disabled, if it is.
    pub disabled: Option<Disabled>,
}

/// A plugin disabled for its tenant: its hooks use the built-in default until it is enabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disabled {
    /// When.
    pub at_ms: u64,
    /// Why.
    pub reason: String,
}

/// A hook of a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hook {
    /// The validators, run in order before a message is stored.
    Validators,
    /// The delay policy: first delivery time and retries.
    DelayPolicy,
    /// The plugin that delivers through a channel.
    Channel(Channel),
}

impl Hook {
    /// Every hook.
    pub const ALL: [Hook; 4] = [
        Self::Validators,
        Self::DelayPolicy,
        Self::Channel(Channel::Inbox),
        Self::Channel(Channel::Webhook),
    ];

    /// Its name, as stored and in the API path under `/hooks/`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Validators => "validators",
            Self::DelayPolicy => "delay-policy",
            Self::Channel(Channel::Inbox) => "channels/inbox",
            Self::Channel(Channel::Webhook) => "channels/webhook",
        }
    }

    /// The world a plugin bound here must implement.
    pub fn world(self) -> World {
        match self {
            Self::Validators => World::Validator,
            Self::DelayPolicy => World::DelayPolicy,
            Self::Channel(_) => World::Channel,
        }
    }

    /// Whether it takes an ordered chain of plugins rather than one.
    pub fn is_chain(self) -> bool {
        self == Self::Validators
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Hook {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|hook| hook.as_str() == value)
            .ok_or_else(|| {
                format!(
                    "there is no hook {value:?}; the hooks are validators, delay-policy, \
                     channels/inbox and channels/webhook"
                )
            })
    }
}

impl TryFrom<String> for Hook {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        value.parse()
    }
}

/// One plugin bound to a hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookBinding {
    /// The hook.
    pub hook: Hook,
    /// Its place in the chain (0 for single-plugin hooks).
    pub position: u32,
    /// The plugin.
    pub plugin_id: PluginId,
    /// Its configuration, grants and lowered limits.
    pub binding: Binding,
}

/// The most one tenant may store: plugins, and bytes of components all together. Bounds what
/// a tenant's uploads cost the database and, once bound, each node's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginQuota {
    /// Plugins.
    pub plugins: u64,
    /// Bytes of components.
    pub bytes: u64,
}

/// What a tenant stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PluginUsage {
    /// Plugins.
    pub plugins: u64,
    /// Bytes of components.
    pub bytes: u64,
}

/// Which quota one more component would exceed, and by how much.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuotaExceeded {
    /// The tenant stores `limit` plugins already.
    Plugins {
        /// The most it may store.
        limit: u64,
    },
    /// The component's `size` does not fit beside the `used` bytes its plugins take.
    Bytes {
        /// The most its plugins may take together, in bytes.
        limit: u64,
        /// What they take now.
        used: u64,
        /// The component's size.
        size: u64,
    },
}

impl PluginQuota {
    /// Whether one more component of `size` bytes fits beside `usage`.
    pub fn admit(&self, usage: PluginUsage, size: u64) -> Result<(), QuotaExceeded> {
        if usage.plugins >= self.plugins {
            return Err(QuotaExceeded::Plugins {
                limit: self.plugins,
            });
        }
        if usage.bytes.saturating_add(size) > self.bytes {
            return Err(QuotaExceeded::Bytes {
                limit: self.bytes,
                used: usage.bytes,
                size,
            });
        }
        Ok(())
    }
}

impl fmt::Display for QuotaExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Plugins { limit } => write!(
                f,
                "your tenant stores {limit} plugins, the most the operator allows; delete one it no longer uses (DELETE /plugins/{{id}}) and upload again"
            ),
            Self::Bytes { limit, used, size } => write!(
                f,
                "the component ({size} bytes) does not fit: your tenant's plugins take {used} of the {limit} bytes the operator allows; delete plugins it no longer uses (DELETE /plugins/{{id}}) and upload again"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_round_trip_their_names() {
        for hook in Hook::ALL {
            assert_eq!(hook.as_str().parse::<Hook>(), Ok(hook));
        }
        assert!("channels/sms".parse::<Hook>().is_err());
    }

    #[test]
    fn the_quota_admits_up_to_its_limits_and_no_further() {
        let quota = PluginQuota {
            plugins: 2,
            bytes: 100,
        };
        let usage = |plugins, bytes| PluginUsage { plugins, bytes };
        assert_eq!(quota.admit(usage(0, 0), 100), Ok(()));
        assert_eq!(quota.admit(usage(1, 60), 40), Ok(()));
        assert_eq!(
            quota.admit(usage(1, 60), 41),
            Err(QuotaExceeded::Bytes {
                limit: 100,
                used: 60,
                size: 41
            })
        );
        assert_eq!(
            quota.admit(usage(2, 0), 1),
            Err(QuotaExceeded::Plugins { limit: 2 })
        );
        assert!(quota.admit(usage(0, u64::MAX), u64::MAX).is_err());
    }
}

/// The kind of hook a plugin serves, one per WIT world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum World {
    /// `world validator`: accepts or rejects a message.
    Validator,
    /// `world delay-policy`: plans the first delivery and retries.
    DelayPolicy,
    /// `world channel`: delivers a message.
    Channel,
}

impl World {
    /// Every world.
    pub const ALL: [World; 3] = [Self::Validator, Self::DelayPolicy, Self::Channel];

    /// The world's name in the WIT file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Validator => "validator",
            Self::DelayPolicy => "delay-policy",
            Self::Channel => "channel",
        }
    }
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for World {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        World::ALL
            .into_iter()
            .find(|world| world.as_str() == value)
            .ok_or_else(|| {
                format!("unknown world {value:?}; expected validator, delay-policy or channel")
            })
    }
}

/// How a plugin is bound to a hook: its configuration, its grants and lowered limits.
///
/// Deny by default: no configuration, no hosts to reach, the operator's limits.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Binding {
    /// Values the plugin reads with `config(key)`.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Hosts a channel may reach through `http-send` (`example.com`, `*.example.com`, `*`).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Limits lower than the operator's.
    #[serde(default)]
    pub limits: LimitOverrides,
}

/// Lower limits a binding may ask for. Missing values keep the operator's.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    /// Memory cap in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<usize>,
    /// Validator and delay-policy deadline in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_deadline_ms: Option<u64>,
    /// Channel deadline in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_deadline_ms: Option<u64>,
}
