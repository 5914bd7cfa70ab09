//! The message use cases, over the store, the schedule and the tenant's policies (all in
//! [`Messages`]):
//! - `submit`: validate → plan → store (the commit point) → index;
//! - `manage`: cancel, reschedule, deliver now, mark read, and who may see a message;
//! - `dead_letters`: list, replay (one or paced in bulk), delete;
//! - `endpoint`: the recipient's webhook endpoint and its signing secrets;
//! - `fan_out`: one submission to a group, one message per member, and its summary;
//! - `callbacks`: the sender's status callback endpoint and its signing secrets;
//! - `view`: messages as the API shows them.

pub mod callbacks;
pub mod dead_letters;
pub mod endpoint;
pub mod fan_out;
pub mod manage;
pub mod submit;
pub mod view;

use std::sync::Arc;

use crate::clock::Clock;
use crate::domain::message::Status;
use crate::policies::{Policies, Rejection};
use crate::schedule::Schedule;
use crate::store::{Store, StoreError};

/// What the message use cases work with. Cheap to clone.
#[derive(Clone)]
pub struct Messages {
    /// The database.
    pub store: Arc<dyn Store>,
    /// The schedule index.
    pub schedule: Arc<dyn Schedule>,
    /// The tenants' validators and delay policies.
    pub policies: Policies,
    /// The clock.
    pub clock: Clock,
    /// Commits accepted messages in groups, and indexes them.
    pub submitter: submit::Submitter,
    /// Whether webhook endpoints may name loopback and private-network addresses.
    pub allow_private_networks: bool,
}

impl Messages {
    /// The message use cases over these parts; starts the submit committers.
    pub fn new(
        store: Arc<dyn Store>,
        schedule: Arc<dyn Schedule>,
        policies: Policies,
        clock: Clock,
        allow_private_networks: bool,
    ) -> Self {
        let submitter = submit::Submitter::start(store.clone(), schedule.clone());
        Self {
            store,
            schedule,
            policies,
            clock,
            submitter,
            allow_private_networks,
        }
    }
}

/// Why a message operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such message visible to the caller.
    #[error("there is no such message in your tenant")]
    NotFound,
    /// No such group, or fan-out visible to the caller (`group`, `fan-out`).
    #[error("there is no such {0} in your tenant")]
    Missing(&'static str),
    /// Only an admin of the tenant may do this.
    #[error("only an admin of your tenant may do this")]
    AdminRequired,
    /// The caller sees the message but may not do this to it.
    #[error("{0}")]
    Forbidden(&'static str),
    /// A field of the request is unusable.
    #[error("{field}: {reason}")]
    Invalid {
        /// A JSON pointer to the field.
        field: std::borrow::Cow<'static, str>,
        /// What is wrong.
        reason: String,
    },
    /// A policy plugin refused the message.
    #[error("{}", .0.reason)]
    Rejected(Rejection),
    /// The message is past the point where this is possible.
    #[error("the message is {0}; it can no longer be changed this way")]
    NotPending(Status),
    /// The same `Idempotency-Key` came with a different body.
    #[error("this Idempotency-Key was used with a different request body in the last 24 hours")]
    IdempotencyMismatch,
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}
