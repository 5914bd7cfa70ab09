//! Groups of a tenant's users, and fan-outs: one submission to a group, which creates one
//! ordinary message per member.

use super::ids::{FanOutId, GroupId, TenantId, UserId};
use super::message::Status;

/// A group of a tenant's users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Its id.
    pub id: GroupId,
    /// Its tenant: only its users may be members.
    pub tenant_id: TenantId,
    /// Its name (need not be unique).
    pub name: String,
    /// When it was created.
    pub created_at_ms: u64,
    /// How many members it has.
    pub members: u64,
}

/// A fan-out as stored: who sent what to which group, and how many messages it created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanOut {
    /// Its id (each of its messages names it).
    pub id: FanOutId,
    /// Its tenant.
    pub tenant_id: TenantId,
    /// Who sent it.
    pub sender_id: UserId,
    /// The group it went to (which may have been deleted since).
    pub group_id: GroupId,
    /// How many messages it created: the group's members then.
    pub count: u64,
    /// When it was accepted.
    pub created_at_ms: u64,
}

/// A fan-out and where its messages are now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanOutSummary {
    /// The fan-out.
    pub fan_out: FanOut,
    /// How many of its messages are in each status (statuses with none left out). Fewer than
    /// `count` in all once retention has deleted some.
    pub statuses: Vec<(Status, u64)>,
}
