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
//!
//! Two ways in: [`Schedule::add_many`] is authoritative (a submit or reschedule just decided
//! the time, so it moves the id and ends any lease), while [`Schedule::restore`] only fills in
//! what is missing (a rebuild from the database, which must not disturb a live lease).

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

/// What a claim took: the ids now leased under the claim's token, in claim order (expired
/// leases first, by expiry, then due ids by due time, then id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The claimed ids.
    pub ids: Vec<MessageId>,
    /// False when the index may have lost entries since it was last rebuilt (Redis flushed or
    /// replaced). Reported by the claim itself so the dispatcher needs no second round trip
    /// per round to notice; it rebuilds the index when this is false.
    pub intact: bool,
}

/// One lease to end (see [`Schedule::release_many`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// The leased id.
    pub id: MessageId,
    /// The token of the claim that leased it; a lease another claim took over is left alone.
    pub token: String,
    /// `Some(t)`: due again at `t` (a retry); `None`: done, out of the index.
    pub due_ms: Option<u64>,
}

/// The index's figures for `/metrics`, at one time `now`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexStats {
    /// Ids waiting in `due`.
    pub due: u64,
    /// Of those, how many are due at or before `now` (not claimed yet).
    pub overdue: u64,
    /// The earliest due time among the overdue ids.
    pub oldest_overdue_ms: Option<u64>,
    /// Ids under a lease.
    pub leased: u64,
    /// Of those, how many leases have expired at `now` (their holder died or stalled, and no
    /// claim has taken them over yet).
    pub leases_expired: u64,
}

/// The schedule index.
///
/// **Wake-ups.** Dispatchers sleep until [`next_due`](Schedule::next_due) (the earliest due
/// time or lease expiry). A call that puts ids in `due` ([`add_many`](Schedule::add_many),
/// [`restore`](Schedule::restore), [`release_many`](Schedule::release_many)) wakes them (every
/// node's [`changed`](Schedule::changed)) at most once, and only when the earliest due time it
/// wrote is earlier than the earliest due time or lease expiry the index held before the call,
/// or the index was empty: anything later, the sleeping dispatchers reach on their own, and a
/// wake-up per submit would cost every node a round trip for nothing.
#[async_trait::async_trait]
pub trait Schedule: Send + Sync + 'static {
    /// Adds `id`, or moves it, to be due at `due_ms` (one-entry [`add_many`](Self::add_many)).
    async fn add(&self, id: &MessageId, due_ms: u64) -> Result<(), ScheduleError> {
        self.add_many(std::slice::from_ref(&(id.clone(), due_ms)))
            .await
    }

    /// Puts each id in `due` at its time, whatever the index held for it: a due id moves, a
    /// leased one loses its lease (its holder's release then finds no lease and changes
    /// nothing). Authoritative, for what was just decided: submits, reschedules, deliver-now.
    /// Wakes dispatchers by the rule above.
    async fn add_many(&self, entries: &[(MessageId, u64)]) -> Result<(), ScheduleError>;

    /// Adds the ids that are neither due nor leased, each at its time, and returns how many it
    /// added; ids the index holds keep their time and their lease. For rebuilds from the
    /// database, which may race with live deliveries: moving a leased id would make its
    /// holder's release miss, and its retry time would be lost to the lease's expiry. Wakes
    /// dispatchers by the rule above.
    async fn restore(&self, entries: &[(MessageId, u64)]) -> Result<u64, ScheduleError>;

    /// Removes `id`, whether due or leased.
    async fn remove(&self, id: &MessageId) -> Result<(), ScheduleError>;

    /// Claims up to `max` ids whose lease expired at `now_ms` (first, by expiry) or that are
    /// due at `now_ms` (then, by due time and id), and leases them until `now_ms + lease_ms`
    /// under `token`.
    async fn claim(
        &self,
        now_ms: u64,
        max: usize,
        lease_ms: u64,
        token: &str,
    ) -> Result<Claim, ScheduleError>;

    /// Ends each lease whose token still holds it: the id is due again at `due_ms`, or leaves
    /// the index. A lease that another claim took over (or that [`add_many`](Self::add_many)
    /// or [`remove`](Self::remove) ended) is left alone. Many at once, so a dispatcher ends a
    /// batch's leases in one round trip; wakes dispatchers by the rule above.
    async fn release_many(&self, releases: &[Release]) -> Result<(), ScheduleError>;

    /// The earliest time something becomes claimable (a due time or a lease expiry).
    async fn next_due(&self) -> Result<Option<u64>, ScheduleError>;

    /// Resolves when, on any node, a call put an id in `due` earlier than anything the index
    /// held (see the wake-up rule above); the Redis schedule also after its subscription is
    /// (re)established, since additions may have been missed meanwhile.
    async fn changed(&self);

    /// How many ids are due or leased.
    async fn count(&self) -> Result<u64, ScheduleError>;

    /// Counts of due, overdue and leased ids at `now_ms`, cheap enough for every scrape (Redis:
    /// sorted-set counts in one round trip; in process: a walk of the overdue and expired
    /// entries only).
    async fn stats(&self, now_ms: u64) -> Result<IndexStats, ScheduleError>;

    /// False when the index may have lost entries since it was last rebuilt (Redis flushed or
    /// replaced). The dispatcher learns the same from [`Claim::intact`]; this is for the CLI.
    async fn intact(&self) -> Result<bool, ScheduleError>;

    /// Records that the index was just rebuilt.
    async fn mark_intact(&self) -> Result<(), ScheduleError>;

    /// Writes again what an [`add_many`](Self::add_many) on this node failed to write (Redis
    /// was unreachable); how many entries it wrote. The reconciler calls it on every pass. An
    /// index that cannot fail to write has nothing to retry.
    async fn retry_failed(&self) -> Result<u64, ScheduleError> {
        Ok(0)
    }
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

/// Messages read per page when restoring the index from the database.
const PAGE: u32 = 10_000;

/// Puts every pending or leased message of the database that the index lacks into it, in
/// pages ([`Schedule::restore`]), then marks the index intact. Safe to run at any time, next to
/// live deliveries: an id the index holds keeps its time and its lease (so a delivering node's
/// release still finds its lease and puts the retry where the delay policy decided), and the
/// database's conditional updates keep a message from being delivered twice even if the index
/// lists an id that is already done. Returns how many pending messages the database listed.
pub async fn rebuild(store: &dyn Store, schedule: &dyn Schedule) -> Result<u64, RebuildError> {
    let total = restore_after(store, schedule, None).await?;
    schedule.mark_intact().await?;
    Ok(total)
}

/// Restores the pending messages with ids after `after` (all of them with `None`), page by
/// page; how many the database listed.
async fn restore_after(
    store: &dyn Store,
    schedule: &dyn Schedule,
    mut after: Option<MessageId>,
) -> Result<u64, RebuildError> {
    let mut total = 0u64;
    loop {
        let page = store.pending(after.as_ref(), PAGE).await?;
        if page.is_empty() {
            break;
        }
        schedule.restore(&page).await?;
        total += page.len() as u64;
        after = page.last().map(|(id, _)| id.clone());
        if page.len() < PAGE as usize {
            break;
        }
    }
    Ok(total)
}

/// How far before its previous pass a reconciler pass looks again: a message id is made
/// before its commit (plugins see it first), so a message committed after a pass may carry an
/// id from before it. A submit takes far less than this from its id to its commit.
const RECONCILE_OVERLAP_MS: u64 = 60_000;

/// Puts back what the index may have lost while it stayed intact: messages committed while
/// Redis could not be written, or by a node that died between its commit and its index update.
/// Each pass reads only the messages stored since shortly before the previous pass (ids grow
/// with time, so that is a range of the state table's key), plus what this node failed to
/// write ([`Schedule::retry_failed`]); what it finds it [`restore`](Schedule::restore)s, so it
/// never disturbs a live lease. Its work grows with the messages submitted, not with the
/// messages held. A flushed or replaced index is not its business: claims report it, and the
/// dispatcher rebuilds the whole index.
#[derive(Debug)]
pub struct Reconciler {
    /// The first id the next pass reads.
    since: MessageId,
}

impl Reconciler {
    /// A reconciler whose first pass looks at what was stored since shortly before `now_ms`
    /// (the index was rebuilt at start).
    pub fn new(now_ms: u64) -> Self {
        Self {
            since: MessageId::first_at(now_ms.saturating_sub(RECONCILE_OVERLAP_MS)),
        }
    }

    /// One pass, at `now_ms`: how many pending messages it looked at. After a failed pass the
    /// next one starts where this one did.
    pub async fn pass(
        &mut self,
        store: &dyn Store,
        schedule: &dyn Schedule,
        now_ms: u64,
    ) -> Result<u64, RebuildError> {
        schedule.retry_failed().await?;
        let after = self.since.clone();
        let seen = restore_after(store, schedule, Some(after)).await?;
        self.since = MessageId::first_at(now_ms.saturating_sub(RECONCILE_OVERLAP_MS));
        Ok(seen)
    }
}
