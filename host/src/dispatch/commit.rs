//! Group commit of delivery outcomes (see [`crate::store::group_commit`]): one transaction for
//! whatever outcomes have gathered, then one schedule call that ends their leases. Each group
//! is one debug line; each outcome's own line is in its delivery's `dms.commit` span.

use std::sync::Arc;

use crate::schedule::{Release, Schedule};
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
        let finished = self.store.finish_deliveries(outcomes).await?;
        let committed = finished.committed;
        tracing::debug!(
            message = "Delivery outcomes committed together.",
            outcomes = outcomes.len(),
            refused = committed.iter().filter(|done| !**done).count(),
        );
        let releases: Vec<Release> = outcomes
            .iter()
            .zip(&committed)
            .filter(|(_, done)| **done)
            .map(|(outcome, _)| Release {
                id: outcome.id.clone(),
                token: outcome.token.clone(),
                due_ms: outcome.deliver_at_ms,
            })
            .collect();
        if let Err(error) = self.schedule.release_many(&releases).await {
            // The database has the outcomes. Each id keeps its lease until it expires; the
            // claim then finds the outcome (done: it leaves the index; retrying and not due:
            // it goes back at its retry time).
            tracing::warn!(
                message = "Could not update the schedule index.",
                outcomes = releases.len(),
                %error,
            );
        }
        // The status callbacks stored with the outcomes, into the index (on failure the
        // reconciler, or the next start's rebuild, adds them: they are in the database).
        if !finished.callbacks.is_empty()
            && let Err(error) = self.schedule.add_many(&finished.callbacks).await
        {
            tracing::warn!(
                message = "Status callbacks stored but not yet indexed; the reconciler indexes them.",
                callbacks = finished.callbacks.len(),
                %error,
            );
        }
        Ok(committed)
    }
}
