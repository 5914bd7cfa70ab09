//! The flow limiter: per key, when a claimed message may be delivered.
//!
//! [`Limiter`] is a seam with two implementations sharing one conformance suite
//! (`tests/e2e/flow_control.rs`):
//! - [`local::LocalLimiter`] for the embedded default: in memory, one node;
//! - [`redis::RedisLimiter`] for scale-out: one Lua script per batch, so every node shares
//!   each key's limits.
//!
//! Per key it keeps:
//! - a **rate** as GCRA with reserved slots (in µs): the key's theoretical arrival time
//!   (`tat`) advances by `period / rate` per delivery and may run `period` ahead of now (a
//!   quiet key lets `rate` messages go at once); a message asked for while it is further
//!   ahead reserves the slot it conforms at and waits until then, so each waiting message goes
//!   back to the schedule once, at its own slot, in the order it was asked for (due order);
//! - **parallelism**: the deliveries in flight (each until its lease ends, so a crashed
//!   node's slots come back), and the messages waiting for one, in due order; a finished
//!   delivery hands its slot to the first of them ([`Limiter::finish`] returns it for the
//!   dispatcher to put back in the schedule now);
//! - **FIFO** keys: a cap of 1 that no message passes while an earlier one (by due time, then
//!   id) waits, and whose slot a retrying message keeps ([`Limiter::hold`]) until it is
//!   delivered or dead;
//! - a **pause** (a receiver's `Retry-After`): until then every message of the key waits;
//! - which messages wait, and until when, for the counts of [`Limiter::waiting`].

pub mod local;
pub mod redis;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::domain::flow::{self, FlowLimit};
use crate::domain::ids::{MessageId, TenantId};
use crate::store::{FlowRoute, Store, StoreError};

/// How long after its expected wake-up a waiting message still counts as waiting (one that was
/// cancelled meanwhile is then forgotten).
pub const WAITING_GRACE_MS: u64 = 60_000;

/// Why the limiter could not answer.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// Redis failed or is unreachable.
    #[error("the flow limiter (Redis) is unavailable: {0}")]
    Unavailable(String),
}

/// One tenant's key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    /// The tenant.
    pub tenant: TenantId,
    /// The key.
    pub key: String,
}

/// A claimed message to admit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    /// Its key.
    pub key: FlowKey,
    /// The message.
    pub id: MessageId,
    /// Its place among the key's waiting messages: its due time (ties by id).
    pub order: u64,
    /// The key's rate, if it has one.
    pub rate: Option<Spacing>,
    /// Deliveries in flight at once, if the key has a cap.
    pub parallelism: Option<u32>,
    /// One at a time, in `order` (then id): a cap of 1 that no message may pass while an
    /// earlier one waits.
    pub fifo: bool,
}

impl Ask {
    /// The cap on deliveries in flight, if any.
    pub fn cap(&self) -> Option<u32> {
        if self.fifo { Some(1) } else { self.parallelism }
    }
}

/// A rate as the limiter applies it (GCRA): one delivery every `interval_us`, running ahead
/// by at most `tolerance_us` (so a quiet key lets a burst of the rate's count go at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spacing {
    /// µs between deliveries.
    pub interval_us: u64,
    /// How far ahead deliveries may run, µs.
    pub tolerance_us: u64,
}

/// The limiter's answer for one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Deliver it now (a parallelism slot is taken until [`Limiter::finish`]).
    Go,
    /// Put it back in the schedule at this time, Unix ms.
    Wait(u64),
}

/// The per-key limiter.
#[async_trait::async_trait]
pub trait Limiter: Send + Sync + 'static {
    /// Answers for each ask, in order (asks of one key are answered in the order given).
    /// `lease_ms`: how long a delivery may hold a parallelism slot before it is taken back.
    async fn admit(
        &self,
        now_ms: u64,
        lease_ms: u64,
        asks: &[Ask],
    ) -> Result<Vec<Verdict>, FlowError>;

    /// Frees the parallelism slots of finished deliveries (`(key, id, fifo)`); returns, for
    /// each slot freed, the first message waiting for one of its key, to be put in the
    /// schedule now. On a FIFO key that message stays first among the waiters until it is
    /// admitted, so no later one passes it (one that never comes back, cancelled say, is
    /// dropped [`WAITING_GRACE_MS`] after it was expected).
    async fn finish(
        &self,
        done: &[(FlowKey, MessageId, bool)],
    ) -> Result<Vec<MessageId>, FlowError>;

    /// Keeps `id`'s slot of `key` until `until_ms` (a FIFO key's message that is retrying
    /// holds the key until it is delivered or dead), instead of [`finish`](Self::finish).
    async fn hold(&self, key: &FlowKey, id: &MessageId, until_ms: u64) -> Result<(), FlowError>;

    /// Holds every message of `key` from `now_ms` until `until_ms` (a later pause wins).
    async fn pause(&self, key: &FlowKey, now_ms: u64, until_ms: u64) -> Result<(), FlowError>;

    /// The keys with the most waiting messages (at most `top`, most first), and the number
    /// of waiting messages in all.
    async fn waiting(
        &self,
        now_ms: u64,
        top: usize,
    ) -> Result<(Vec<(FlowKey, u64)>, u64), FlowError>;
}

/// The tenants' limits as this node last read them, and how long that stays fresh.
const LIMITS_FRESH: Duration = Duration::from_secs(1);

/// A tenant's limits and when this node read them.
type Cached = (Instant, Arc<Vec<FlowLimit>>);

/// Flow control as the dispatcher uses it: the claimed messages' keys (from the database),
/// their tenants' limits (read at most once a second per tenant and node; a change on this
/// node applies at once), and the limiter.
pub struct FlowControl {
    store: Arc<dyn Store>,
    limiter: Arc<dyn Limiter>,
    limits: Mutex<HashMap<TenantId, Cached>>,
}

impl std::fmt::Debug for FlowControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowControl").finish_non_exhaustive()
    }
}

/// What the limiter said of a claim's ids.
#[derive(Debug, Default)]
pub struct Admitted {
    /// To deliver now, in claim order.
    pub go: Vec<MessageId>,
    /// The key of each message going now and what it holds.
    pub tickets: HashMap<MessageId, Ticket>,
    /// To put back in the schedule at their time.
    pub waiting: Vec<(MessageId, u64)>,
}

/// What a message admitted by the limiter holds of its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    /// Its key.
    pub key: FlowKey,
    /// A parallelism slot, to free with [`Limiter::finish`] (or keep with [`Limiter::hold`]).
    pub slot: bool,
    /// Its key is FIFO: a retry keeps the slot.
    pub fifo: bool,
}

/// Why flow control could not decide.
#[derive(Debug, thiserror::Error)]
pub enum FlowControlError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The limiter failed.
    #[error(transparent)]
    Limiter(#[from] FlowError),
}

impl FlowControl {
    /// Flow control over `store`'s limits and this limiter.
    pub fn new(store: Arc<dyn Store>, limiter: Arc<dyn Limiter>) -> Self {
        Self {
            store,
            limiter,
            limits: Mutex::default(),
        }
    }

    /// The limiter.
    pub fn limiter(&self) -> &Arc<dyn Limiter> {
        &self.limiter
    }

    /// Forgets this node's copy of `tenant`'s limits (they just changed).
    pub fn forget(&self, tenant: &TenantId) {
        self.limits.lock().expect("flow limits lock").remove(tenant);
    }

    async fn limits_of(&self, tenant: &TenantId) -> Result<Arc<Vec<FlowLimit>>, StoreError> {
        if let Some((read, limits)) = self.limits.lock().expect("flow limits lock").get(tenant)
            && read.elapsed() < LIMITS_FRESH
        {
            return Ok(limits.clone());
        }
        let limits = Arc::new(self.store.flow_limits(tenant).await?);
        self.limits
            .lock()
            .expect("flow limits lock")
            .insert(tenant.clone(), (Instant::now(), limits.clone()));
        Ok(limits)
    }

    /// Asks the limiter about claimed `ids` (in claim order).
    pub async fn admit(
        &self,
        ids: &[MessageId],
        now_ms: u64,
        lease_ms: u64,
    ) -> Result<Admitted, FlowControlError> {
        let routes: HashMap<MessageId, FlowRoute> = self
            .store
            .flow_routes(ids)
            .await?
            .into_iter()
            .map(|route| (route.id.clone(), route))
            .collect();
        let mut asks = Vec::with_capacity(routes.len());
        for id in ids {
            let Some(route) = routes.get(id) else {
                continue;
            };
            let limits = self.limits_of(&route.tenant_id).await?;
            let limit = flow::applying(&limits, &route.key).map(|limit| limit.limits);
            asks.push(Ask {
                key: FlowKey {
                    tenant: route.tenant_id.clone(),
                    key: route.key.clone(),
                },
                id: id.clone(),
                order: route.due_ms,
                rate: limit.and_then(|limit| limit.rate).map(|rate| Spacing {
                    interval_us: rate.interval_us(),
                    tolerance_us: rate.tolerance_us(),
                }),
                parallelism: limit.and_then(|limit| limit.parallelism),
                fifo: limit.is_some_and(|limit| limit.fifo),
            });
        }
        let verdicts = self.limiter.admit(now_ms, lease_ms, &asks).await?;
        let mut admitted = Admitted::default();
        let mut verdict_of: HashMap<&MessageId, (Verdict, &Ask)> = asks
            .iter()
            .zip(verdicts)
            .map(|(ask, verdict)| (&ask.id, (verdict, ask)))
            .collect();
        for id in ids {
            match verdict_of.remove(id) {
                // Unknown to the database: the claim drops it.
                None => admitted.go.push(id.clone()),
                Some((Verdict::Go, ask)) => {
                    admitted.go.push(id.clone());
                    admitted.tickets.insert(
                        id.clone(),
                        Ticket {
                            key: ask.key.clone(),
                            slot: ask.cap().is_some(),
                            fifo: ask.fifo,
                        },
                    );
                }
                Some((Verdict::Wait(until), _)) => admitted.waiting.push((id.clone(), until)),
            }
        }
        Ok(admitted)
    }
}
