//! Tenants' own plugins and the hooks they are bound to, as stored.
//!
//! A tenant has four hooks: the `validators` chain, the `delay-policy`, and one per channel
//! (`channels/inbox`, `channels/webhook`). A hook with no binding uses the built-in default.

use std::fmt;
use std::str::FromStr;

use super::ids::{PluginId, TenantId};
use super::message::Channel;
use crate::sandbox::{Binding, World};

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
}
