//! Flow-control limits per key pattern, set by a tenant's admins (`/flow-control`). The
//! dispatcher enforces them (`crate::flow`); here they are checked, stored and read.

use std::sync::Arc;

use crate::clock::Clock;
use crate::domain::flow::{self, FlowLimit, Limits, Refused};
use crate::domain::ids::TenantId;
use crate::flow::FlowControl;
use crate::store::{Page, Store, StoreError};

/// Why a flow-control request was refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The tenant has no limits for this pattern.
    #[error("there is no such flow-control key in your tenant")]
    NotFound,
    /// A field of the request is unusable.
    #[error("{field}: {reason}")]
    Invalid {
        /// A JSON pointer to the field (`/key` for the path's pattern).
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<Refused> for Error {
    fn from(refused: Refused) -> Self {
        Self::Invalid {
            field: refused.field,
            reason: refused.reason,
        }
    }
}

/// The limits as asked for in a request: each optional, checked by [`FlowLimits::put`].
#[derive(Debug, Clone, Default)]
pub struct Asked {
    /// Deliveries per period.
    pub rate: Option<u64>,
    /// The period, in seconds (default 1).
    pub period: Option<u64>,
    /// Deliveries in flight at once.
    pub parallelism: Option<u64>,
    /// `fifo` or `any`.
    pub ordering: Option<String>,
}

/// The flow-control use cases. Cheap to clone.
#[derive(Clone)]
pub struct FlowLimits {
    store: Arc<dyn Store>,
    flow: Arc<FlowControl>,
    clock: Clock,
}

impl FlowLimits {
    /// The use cases over these parts.
    pub fn new(store: Arc<dyn Store>, flow: Arc<FlowControl>, clock: Clock) -> Self {
        Self { store, flow, clock }
    }

    /// Sets a pattern's limits (created or replaced): the limits as stored, and whether new.
    pub async fn put(
        &self,
        tenant: &TenantId,
        pattern: &str,
        asked: Asked,
    ) -> Result<(FlowLimit, bool), Error> {
        flow::check_pattern(pattern, "/key")?;
        let limits: Limits = flow::limits(
            asked.rate,
            asked.period,
            asked.parallelism,
            asked.ordering.as_deref(),
        )?;
        // Whether it is new only decides 201 or 200; a concurrent PUT may blur that, never the
        // limits.
        let existed = self
            .store
            .flow_limits(tenant)
            .await?
            .iter()
            .any(|limit| limit.pattern == pattern);
        let stored = self
            .store
            .put_flow_limit(tenant, pattern, limits, self.clock.now_ms())
            .await?;
        self.flow.forget(tenant);
        Ok((stored, !existed))
    }

    /// One pattern's limits.
    pub async fn get(&self, tenant: &TenantId, pattern: &str) -> Result<FlowLimit, Error> {
        // A pattern that could never be set is unknown (and never reaches the database).
        flow::check_pattern(pattern, "/key").map_err(|_| Error::NotFound)?;
        self.store
            .flow_limits(tenant)
            .await?
            .into_iter()
            .find(|limit| limit.pattern == pattern)
            .ok_or(Error::NotFound)
    }

    /// A page of the tenant's patterns, in pattern order.
    pub async fn list(&self, tenant: &TenantId, page: Page) -> Result<Vec<FlowLimit>, Error> {
        let limits = self.store.flow_limits(tenant).await?;
        let offset = usize::try_from(page.offset).unwrap_or(usize::MAX);
        Ok(limits
            .into_iter()
            .skip(offset)
            .take(page.limit as usize)
            .collect())
    }

    /// Removes a pattern's limits.
    pub async fn delete(&self, tenant: &TenantId, pattern: &str) -> Result<(), Error> {
        flow::check_pattern(pattern, "/key").map_err(|_| Error::NotFound)?;
        if !self.store.delete_flow_limit(tenant, pattern).await? {
            return Err(Error::NotFound);
        }
        self.flow.forget(tenant);
        Ok(())
    }
}
