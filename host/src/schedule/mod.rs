//! The schedule index: which message is due when, and who holds a lease on which. It holds only
//! ids and times; the database is the source of truth, and the index can always be rebuilt
//! from it ([`rebuild`]).
//!
//! [`Schedule`] is a seam with two implementations:
//! - [`local::LocalSchedule`] for the embedded default: in memory, one node;
//! - [`redis::RedisSchedule`] for scale-out: sorted sets in Redis shared by every node, with an
//!   atomic Lua claim.
//!
//! A claim moves due ids into a lease that expires: when the node finishes, it releases the id
//! (done, or due again at a retry time); when it dies, the lease expires and any node claims
//! the id again. The lease token travels with the claim into the database, whose conditional
//! update refuses a stale node's commit.

pub mod local;
pub mod redis;

use crate::domain::ids::MessageId;
use crate::store::{Store, StoreError};

/// Why the index could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// Redis failed or is unreachable.
    #[error("the schedule index (Redis) is unavailable: {0}")]
    Unavailable(String),
}

/// The schedule index.
#[async_trait::async_trait]
pub trait Schedule: Send + Sync + 'static {
    /// Adds `id`, or moves it, to be due at `due_ms`.
    async fn add(&self, id: &MessageId, due_ms: u64) -> Result<(), ScheduleError>;

    /// Adds many ids at once (rebuilding).
    async fn add_many(&self, entries: &[(MessageId, u64)]) -> Result<(), ScheduleError>;

    /// Removes `id`, whether due or leased.
    async fn remove(&self, id: &MessageId) -> Result<(), ScheduleError>;

    /// Claims up to `max` ids that are due at `now_ms`, or whose lease expired, and leases them
    /// until `now_ms + lease_ms` under `token`.
    async fn claim(
        &self,
        now_ms: u64,
        max: usize,
        lease_ms: u64,
        token: &str,
    ) -> Result<Vec<MessageId>, ScheduleError>;

    /// Ends a lease held under `token`: the id is done (`None`) or due again at `Some(due)`.
    /// A lease that another claim took over is left alone.
    async fn release(
        &self,
        id: &MessageId,
        token: &str,
        due_ms: Option<u64>,
    ) -> Result<(), ScheduleError>;

    /// The earliest time something becomes claimable (a due time or a lease expiry).
    async fn next_due(&self) -> Result<Option<u64>, ScheduleError>;

    /// Resolves when an id was added that may be due before the last `next_due` answer.
    async fn changed(&self);

    /// How many ids are due or leased.
    async fn count(&self) -> Result<u64, ScheduleError>;

    /// False when the index may have lost entries since it was last rebuilt (Redis flushed or
    /// replaced): the dispatcher then rebuilds it before claiming.
    async fn intact(&self) -> Result<bool, ScheduleError>;

    /// Records that the index was just rebuilt.
    async fn mark_intact(&self) -> Result<(), ScheduleError>;
}

/// Why a rebuild failed.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    /// Reading the database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing the index failed.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
}

/// Puts every pending or leased message of the database into the index, in pages. Safe to run
/// at any time: adding an id that is there only moves it to the time the database says, and
/// the database's conditional updates keep a message from being delivered twice even if the
/// index briefly lists it twice. Returns how many ids were written.
pub async fn rebuild(store: &dyn Store, schedule: &dyn Schedule) -> Result<u64, RebuildError> {
    const PAGE: u32 = 1000;
    let mut after: Option<MessageId> = None;
    let mut total = 0u64;
    loop {
        let page = store.pending(after.as_ref(), PAGE).await?;
        if page.is_empty() {
            break;
        }
        schedule.add_many(&page).await?;
        total += page.len() as u64;
        after = page.last().map(|(id, _)| id.clone());
        if page.len() < PAGE as usize {
            break;
        }
    }
    schedule.mark_intact().await?;
    Ok(total)
}
