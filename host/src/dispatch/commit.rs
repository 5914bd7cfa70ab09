//! Group commit of delivery outcomes (see [`crate::store::group_commit`]): one transaction for
//! whatever outcomes have gathered, then one schedule call that ends their leases.

use std::sync::Arc;

use crate::schedule::Schedule;
use crate::store::group_commit::Commit;
use crate::store::{Outcome, Store, StoreError};

/// Most outcomes in one transaction.
pub(super) const MAX_BATCH: usize = 256;

/// Commits outcomes, then releases their leases in the schedule index.
pub(super) struct Deliveries {
    pub(super) store: Arc<dyn Store>,
    pub(super) schedule: Arc<dyn Schedule>,
}

#[async_trait::async_trait]
impl Commit for Deliveries {
    type Request = Outcome;
    /// False: a newer claim took the message over and the outcome was refused.
    type Answer = bool;

    async fn commit(&self, outcomes: &[Outcome]) -> Result<Vec<bool>, StoreError> {
        let committed = self.store.finish_deliveries(outcomes).await?;
        for (outcome, _) in outcomes.iter().zip(&committed).filter(|(_, done)| **done) {
            if let Err(error) = self
                .schedule
                .release(&outcome.id, &outcome.token, outcome.deliver_at_ms)
                .await
            {
                // The database has the outcome; the lease expires and a claim puts it right.
                tracing::warn!(message = "Could not update the schedule index.", message_id = %outcome.id, %error);
            }
        }
        Ok(committed)
    }
}
