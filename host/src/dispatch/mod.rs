//! The dispatcher: claims due messages from the schedule, delivers each through its channel,
//! and commits the outcome.
//!
//! One delivery, as explicit states:
//!
//! ```text
//! claimed (schedule lease + token)
//!   └─► delivering   (database: conditional update from scheduled/retrying when due, or an
//!         │           expired lease; an id not due yet goes back to the index at its time)
//!         └─► attempted (channel plugin)
//!               ├─► delivered
//!               ├─► retrying at T   (delay policy: retry)
//!               └─► dead            (delay policy gave up, or a permanent failure)
//! ```
//!
//! The commit is the database update conditional on the claim's lease token: a node that was
//! paused past its lease finds its token replaced and its commit refused, so no message is ever
//! marked delivered twice. Delivery itself is at least once: a node that dies after the
//! channel delivered and before the commit leaves the message to be delivered again when its
//! lease expires; receivers de-duplicate on the message id.
//!
//! [`Dispatcher::dispatch_once`] does one claim-and-deliver round and is what tests drive;
//! [`Dispatcher::run`] is the loop the server runs, waking exactly when the next message is
//! due. Outcomes are committed in groups ([`commit`]), and an attempt's whole history (its
//! claim, the channel's attempt, the delay policy's decision, the outcome) is one row.
//!
//! Traces (debug level, so the batches cost nothing more at `info`): a claim is a `dms.claim`
//! span with one line per message claimed (`message_id`, `tenant_id`, `attempt`); each
//! delivery is a `dms.delivery` span (`message_id`, `tenant_id`, `attempt`) around the
//! channel's `dms.channel` span, the delay policy's `dms.retry` span when the attempt failed,
//! and the `dms.commit` span of its outcome (`status`).

mod commit;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tracing::Instrument as _;

use crate::clock::Clock;
use crate::domain::callback;
use crate::domain::feed;
use crate::domain::ids::{MessageId, TenantId, UserId};
use crate::domain::message::{Channel, Event, Message, Status};
use crate::flow::{FlowControl, FlowControlError, FlowKey, Ticket};
use crate::metrics::{Attempt, Metrics};
use crate::policies::{Attempted, Delivered, Policies, Retry};
use crate::sandbox;
use crate::schedule::{self, Release, Schedule, ScheduleError};
use crate::store::group_commit::Committer;
use crate::store::{Outcome, Store, StoreError, Webhook};

/// The longest a saturated dispatcher waits to gather free slots into one claim.
const GATHER: Duration = Duration::from_millis(2);

/// Why a dispatch round failed (the round is retried; no message is lost).
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The schedule index failed.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    /// Rebuilding the index failed.
    #[error(transparent)]
    Rebuild(#[from] schedule::RebuildError),
    /// Flow control failed.
    #[error(transparent)]
    Flow(#[from] FlowControlError),
}

/// What a round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    /// Ids claimed from the schedule.
    pub claimed: usize,
    /// Messages delivered.
    pub delivered: usize,
    /// Messages scheduled for a retry.
    pub retried: usize,
    /// Messages dead-lettered.
    pub dead: usize,
    /// Claimed ids that were no longer deliverable (cancelled, already done).
    pub skipped: usize,
    /// Outcomes refused because a newer claim took the message over.
    pub stale: usize,
    /// Claimed ids put back to wait for their flow key (counted in `claimed` too).
    pub waiting: usize,
}

impl Report {
    fn add(&mut self, other: Report) {
        self.claimed += other.claimed;
        self.delivered += other.delivered;
        self.retried += other.retried;
        self.dead += other.dead;
        self.skipped += other.skipped;
        self.stale += other.stale;
        self.waiting += other.waiting;
    }
}

/// Settings of the dispatcher.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Deliveries in flight at once on this node.
    pub concurrency: usize,
    /// How long a claim holds a message before another node may take it over. Longer than
    /// the channel deadline, so a live node never loses a lease mid-delivery.
    pub lease: Duration,
    /// The longest the loop sleeps without looking at the schedule: a safety net for wake-ups
    /// missed across nodes (Redis), not the way messages are found.
    pub max_idle: Duration,
}

/// The dispatcher of one node.
pub struct Dispatcher {
    store: Arc<dyn Store>,
    schedule: Arc<dyn Schedule>,
    flow: Arc<FlowControl>,
    policies: Policies,
    clock: Clock,
    metrics: Arc<Metrics>,
    settings: Settings,
    permits: Arc<Semaphore>,
    committer: Committer<commit::Deliveries>,
}

/// A message claimed for one attempt.
struct Claim {
    message: Message,
    /// Its status before the claim (`delivering` when a previous lease had expired).
    previous: Status,
    /// When it was claimed: the attempt's start.
    at_ms: u64,
    /// The recipient's webhook, looked up with the whole claim (webhook channel only).
    webhook: Option<Webhook>,
    /// Its flow key and what it holds of it.
    flow: Option<Ticket>,
}

/// What one claim took: the messages to deliver under its token, and how many ids went back
/// to the index (no longer deliverable, not due yet, or waiting for their flow key).
struct Claimed {
    token: String,
    claims: Vec<Claim>,
    skipped: usize,
    waiting: usize,
}

impl Claimed {
    fn none(token: String) -> Self {
        Self {
            token,
            claims: Vec::new(),
            skipped: 0,
            waiting: 0,
        }
    }
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

enum Done {
    Delivered,
    Retried,
    Dead,
    Stale,
}

impl Dispatcher {
    /// A dispatcher over these parts. Starts its committer task on the current runtime.
    pub fn new(
        store: Arc<dyn Store>,
        schedule: Arc<dyn Schedule>,
        flow: Arc<FlowControl>,
        policies: Policies,
        clock: Clock,
        metrics: Arc<Metrics>,
        settings: Settings,
    ) -> Self {
        let deliveries = commit::Deliveries {
            store: store.clone(),
            schedule: schedule.clone(),
        };
        Self {
            permits: Arc::new(Semaphore::new(settings.concurrency.max(1))),
            committer: Committer::start(deliveries, store.writers(), commit::MAX_BATCH),
            store,
            schedule,
            flow,
            policies,
            clock,
            metrics,
            settings,
        }
    }

    fn lease_ms(&self) -> u64 {
        u64::try_from(self.settings.lease.as_millis()).unwrap_or(u64::MAX)
    }

    /// Claims up to `max` due messages and marks them `delivering`. Claimed ids that are not
    /// due yet go back to the index at their time; those no longer deliverable leave it. When
    /// the claim reports that the index lost entries, rebuilds it first (which leaves this
    /// claim's leases alone) and claims again for what the rebuild restored.
    async fn claim(&self, max: usize) -> Result<Claimed, DispatchError> {
        let token = ulid::Ulid::from(uuid::Uuid::now_v7().as_u128()).to_string();
        let span = tracing::debug_span!("dms.claim", %token);
        self.claim_with(max, token).instrument(span).await
    }

    /// [`Self::claim`] under the claim's `token`.
    async fn claim_with(&self, max: usize, token: String) -> Result<Claimed, DispatchError> {
        let now = self.clock.now_ms();
        let mut claim = self
            .schedule
            .claim(now, max, self.lease_ms(), &token)
            .await?;
        if !claim.intact {
            self.rebuild().await?;
            let room = max.saturating_sub(claim.ids.len());
            if room > 0 {
                let more = self
                    .schedule
                    .claim(now, room, self.lease_ms(), &token)
                    .await?;
                claim.ids.extend(more.ids);
            }
        }
        if claim.ids.is_empty() {
            return Ok(Claimed::none(token));
        }
        // Flow control: a message over its key's limit goes back to the index, at the time
        // its key frees for it, untouched in the database (not an attempt).
        let mut admitted = self.flow.admit(&claim.ids, now, self.lease_ms()).await?;
        if !admitted.waiting.is_empty() {
            let waiting: Vec<Release> = admitted
                .waiting
                .iter()
                .map(|(id, until)| Release {
                    id: id.clone(),
                    token: token.clone(),
                    due_ms: Some(*until),
                })
                .collect();
            self.schedule.release_many(&waiting).await?;
        }
        let waiting = admitted.waiting.len();
        let ids = admitted.go;
        if ids.is_empty() {
            return Ok(Claimed {
                waiting,
                ..Claimed::none(token)
            });
        }
        let claimed = self
            .store
            .begin_deliveries(&ids, &token, now, now + self.lease_ms())
            .await?;
        // Slots taken for ids the database did not hand over are free again at once.
        let taken: std::collections::HashSet<&MessageId> = claimed
            .messages
            .iter()
            .map(|(message, _)| &message.id)
            .collect();
        let unused: Vec<(FlowKey, MessageId, bool)> = ids
            .iter()
            .filter(|id| !taken.contains(id))
            .filter_map(|id| match admitted.tickets.remove(id) {
                Some(Ticket {
                    key,
                    slot: true,
                    fifo,
                }) => Some((key, id.clone(), fifo)),
                _ => None,
            })
            .collect();
        self.finish_flow(&unused).await;
        // Back to the index: at its real time what was not due yet; out of it what is done.
        let releases: Vec<Release> = claimed
            .not_due
            .iter()
            .map(|(id, due)| (id, Some(*due)))
            .chain(claimed.skipped.iter().map(|id| (id, None)))
            .map(|(id, due_ms)| Release {
                id: id.clone(),
                token: token.clone(),
                due_ms,
            })
            .collect();
        self.schedule.release_many(&releases).await?;
        let wanted: Vec<_> = claimed
            .messages
            .iter()
            .filter(|(message, _)| {
                message.channel == Channel::Webhook && !callback::is_callback(message)
            })
            .map(|(message, _)| (message.tenant_id.clone(), message.recipient_id.clone()))
            .collect();
        let webhooks = self.store.webhooks(&wanted, now).await?;
        let callbacks = self.callback_endpoints(&claimed.messages, now).await?;
        let claims = claimed
            .messages
            .into_iter()
            .map(|(message, previous)| {
                tracing::debug!(
                    message = "Message claimed.",
                    message_id = %message.id,
                    tenant_id = %message.tenant_id,
                    attempt = message.attempts,
                    %previous,
                );
                Claim {
                    flow: admitted.tickets.remove(&message.id),
                    webhook: match message.channel {
                        _ if callback::is_callback(&message) => callbacks
                            .get(&(message.tenant_id.clone(), message.recipient_id.clone()))
                            .cloned(),
                        Channel::Webhook => webhooks.get(&message.recipient_id).cloned(),
                        Channel::Inbox => None,
                    },
                    message,
                    previous,
                    at_ms: now,
                }
            })
            .collect();
        Ok(Claimed {
            token,
            claims,
            skipped: releases.len(),
            waiting,
        })
    }

    /// The callback endpoints of the owners of the status callbacks among `messages`, as the
    /// webhook each is delivered to (signed with the callback's own secrets). One lookup per
    /// owner; an owner who removed their endpoint has none.
    async fn callback_endpoints(
        &self,
        messages: &[(Message, Status)],
        now: u64,
    ) -> Result<HashMap<(TenantId, UserId), Webhook>, DispatchError> {
        let mut found = HashMap::new();
        for (message, _) in messages {
            let owner = (message.tenant_id.clone(), message.recipient_id.clone());
            if !callback::is_callback(message) || found.contains_key(&owner) {
                continue;
            }
            if let Some(endpoint) = self.store.callback(&owner.0, &owner.1, now).await? {
                found.insert(
                    owner,
                    Webhook {
                        url: endpoint.url,
                        secrets: endpoint.secrets,
                        created_at_ms: endpoint.created_at_ms,
                        disabled: None,
                    },
                );
            }
        }
        Ok(found)
    }

    /// One round: claims what is due (up to the free delivery slots), delivers it, and waits
    /// for every delivery of the round to be committed.
    pub async fn dispatch_once(&self) -> Result<Report, DispatchError> {
        let free = self.permits.available_permits();
        let Claimed {
            token,
            claims: messages,
            skipped,
            waiting,
        } = self.claim(free).await?;
        let mut report = Report {
            claimed: messages.len() + skipped + waiting,
            skipped,
            waiting,
            ..Report::default()
        };
        let deliveries = messages
            .into_iter()
            .map(|claim| self.deliver(claim, &token));
        for done in futures_util::future::join_all(deliveries).await {
            match done? {
                Done::Delivered => report.delivered += 1,
                Done::Retried => report.retried += 1,
                Done::Dead => report.dead += 1,
                Done::Stale => report.stale += 1,
            }
        }
        Ok(report)
    }

    /// Rounds until nothing is due now.
    pub async fn dispatch_until_idle(&self) -> Result<Report, DispatchError> {
        let mut total = Report::default();
        loop {
            let round = self.dispatch_once().await?;
            total.add(round);
            if round.claimed == 0 {
                return Ok(total);
            }
        }
    }

    /// Puts every pending message of the database that the schedule lacks into it (leases and
    /// due times it holds stay as they are).
    pub async fn rebuild(&self) -> Result<u64, DispatchError> {
        let count = schedule::rebuild(self.store.as_ref(), self.schedule.as_ref()).await?;
        tracing::info!(
            message = "Schedule index rebuilt from the database.",
            entries = count
        );
        Ok(count)
    }

    /// Frees finished deliveries' parallelism slots and puts the first message waiting for
    /// each back in the index now. A failure only delays those messages: their slot comes
    /// back when its lease ends, and they wake at the time they were put back for.
    async fn finish_flow(&self, done: &[(FlowKey, MessageId, bool)]) {
        if done.is_empty() {
            return;
        }
        let woken = match self.flow.limiter().finish(done).await {
            Ok(woken) => woken,
            Err(error) => {
                tracing::warn!(message = "Could not free flow-control slots; they come back when their leases end.", %error);
                return;
            }
        };
        if woken.is_empty() {
            return;
        }
        let now = self.clock.now_ms();
        let entries: Vec<(MessageId, u64)> = woken.into_iter().map(|id| (id, now)).collect();
        if let Err(error) = self.schedule.add_many(&entries).await {
            tracing::warn!(message = "Could not wake messages waiting for a flow-control slot; they wake at their fallback time.", %error);
        }
    }

    /// Delivers one claimed message and commits the outcome.
    async fn deliver(&self, claim: Claim, token: &str) -> Result<Done, DispatchError> {
        let late_ms = claim.at_ms.saturating_sub(claim.message.deliver_at_ms);
        let span = tracing::debug_span!(
            "dms.delivery",
            message_id = %claim.message.id,
            tenant_id = %claim.message.tenant_id,
            attempt = claim.message.attempts,
        );
        let tenant = claim.message.tenant_id.clone();
        let done = self.attempt(claim, token).instrument(span).await?;
        self.metrics.attempt(
            &tenant,
            match done {
                Done::Delivered => Attempt::Delivered,
                Done::Retried => Attempt::Retried,
                Done::Dead => Attempt::Dead,
                Done::Stale => Attempt::Stale,
            },
            late_ms,
            self.clock.now_ms(),
        );
        Ok(done)
    }

    /// One attempt: the channel, then the delay policy if it failed, then the commit.
    async fn attempt(&self, claim: Claim, token: &str) -> Result<Done, DispatchError> {
        let Claim {
            message,
            previous,
            at_ms: claimed_at,
            webhook,
            flow,
        } = claim;
        let mut events = vec![Event::transition(
            claimed_at,
            Some(previous),
            Status::Delivering,
            if previous == Status::Delivering {
                "claimed again: the previous lease expired"
            } else {
                "claimed"
            },
        )];
        // One snapshot of the tenant's hooks decides the whole attempt.
        let hooks = self.policies.hooks(&message.tenant_id).await?;
        let Delivered {
            attempted,
            events: delivered,
            endpoint_gone: gone,
            mut published,
        } = match address(&message, webhook) {
            Ok(address) => self.policies.deliver(&hooks, &message, &address).await,
            Err(reason) => Delivered {
                attempted: Attempted::Permanent(reason.clone()),
                events: vec![Event::host_decision(
                    self.clock.now_ms(),
                    Some(message.attempts),
                    reason,
                )],
                endpoint_gone: false,
                published: Vec::new(),
            },
        };
        events.extend(delivered);
        let (status, retry_at, error) = match attempted {
            Attempted::Delivered => (Status::Delivered, None, None),
            Attempted::Permanent(reason) => (Status::Dead, None, Some(reason)),
            Attempted::Failed {
                reason,
                retry_after_ms,
            } => {
                if let (Some(after), Some(ticket)) = (retry_after_ms, &flow) {
                    events.push(self.pause(&ticket.key, after, message.attempts).await);
                }
                let (decision, decided) = self
                    .policies
                    .retry(&hooks, &message, message.attempts, &reason, retry_after_ms)
                    .await;
                events.extend(decided);
                match decision {
                    Retry::At(at) => (Status::Retrying, Some(at), Some(reason)),
                    Retry::GiveUp(why) => (Status::Dead, None, Some(why)),
                }
            }
        };
        // The reason quotes the receiver or the plugin: stored in `last_error` and sent in the
        // sender's feed, so made storable and safe to show (events clean their own).
        let error = error.map(crate::text::cleaned);
        let now = self.clock.now_ms();
        let result = match (&status, &error) {
            (Status::Delivered, _) => "delivered".to_owned(),
            (_, Some(error)) => error.clone(),
            _ => status.to_string(),
        };
        events.push(Event::transition(
            now,
            Some(Status::Delivering),
            status,
            result,
        ));
        // What the channel published about this message with its content is stored as a
        // reference to the message, not a second sealed copy.
        for event in &mut published {
            if feed::embeds(&event.body, &message) {
                event.refers_to = Some(message.id.clone());
            }
        }
        published.extend(feed::for_sender(&message, status, error.as_deref(), now));
        let notice = callback::notice(&message, status, error.as_deref(), retry_at, now);
        let outcome = Outcome {
            id: message.id.clone(),
            tenant_id: message.tenant_id.clone(),
            token: token.to_owned(),
            status,
            deliver_at_ms: retry_at,
            error,
            events,
            feed: published,
            at_ms: now,
            callback: notice,
        };
        let span = tracing::debug_span!("dms.commit", %status);
        let commit = self.committer.commit(outcome).instrument(span.clone());
        let committed = match commit.await {
            // Committing the same outcome again would fail the same way, and leaving it to the
            // lease would deliver the message again and again without ever counting the
            // attempt. The decision stands; only what the database cannot hold is dropped.
            Err(StoreError::Refused(why)) => {
                tracing::warn!(
                    message = "The database refused a delivery outcome; recording the decision without its details.",
                    message_id = %message.id,
                    tenant_id = %message.tenant_id,
                    %why,
                );
                let fallback = unstorable(
                    &message,
                    token,
                    (previous, claimed_at),
                    status,
                    retry_at,
                    &why,
                    now,
                );
                self.committer
                    .commit(fallback)
                    .instrument(span.clone())
                    .await?
            }
            other => other?,
        };
        span.in_scope(|| tracing::debug!(message = "Outcome committed.", committed));
        match (flow, retry_at) {
            // A FIFO key's message that will retry keeps the key until it is done.
            (Some(ticket), Some(at)) if ticket.fifo => {
                let until = at.saturating_add(self.lease_ms());
                if let Err(error) = self
                    .flow
                    .limiter()
                    .hold(&ticket.key, &message.id, until)
                    .await
                {
                    tracing::warn!(message = "Could not keep a FIFO key for its retrying message; the key frees when the lease ends.", %error);
                }
            }
            (
                Some(Ticket {
                    key,
                    slot: true,
                    fifo,
                }),
                _,
            ) => self.finish_flow(&[(key, message.id.clone(), fifo)]).await,
            _ => {}
        }
        if !committed {
            tracing::warn!(
                message = "Delivery outcome refused: a newer claim holds the message (its lease had expired).",
                message_id = %message.id,
                tenant_id = %message.tenant_id,
            );
            return Ok(Done::Stale);
        }
        // A callback endpoint that answered 410 only ends that callback (it is dead).
        if gone && !callback::is_callback(&message) {
            self.store
                .disable_webhook(
                    &message.tenant_id,
                    &message.recipient_id,
                    "the endpoint answered 410 Gone",
                    now,
                )
                .await?;
            tracing::info!(
                message = "Webhook disabled: the endpoint answered 410 Gone.",
                user_id = %message.recipient_id,
                tenant_id = %message.tenant_id,
            );
        }
        Ok(match status {
            Status::Delivered => Done::Delivered,
            Status::Retrying => Done::Retried,
            _ => Done::Dead,
        })
    }

    /// Pauses `key` for `after_ms` (its receiver's `Retry-After`): every message of the key
    /// waits until then. Returns the history entry that says so.
    async fn pause(&self, key: &FlowKey, after_ms: u64, attempt: u32) -> Event {
        let now = self.clock.now_ms();
        let until = now.saturating_add(after_ms);
        let note = match self.flow.limiter().pause(key, now, until).await {
            Ok(()) => format!(
                "flow key {:?} paused until {}: the receiver asked to wait (Retry-After); its other messages wait too",
                key.key,
                crate::clock::rfc3339(until)
            ),
            Err(error) => format!(
                "flow key {:?} could not be paused ({error}); only this message waits",
                key.key
            ),
        };
        Event::host_decision(now, Some(attempt), note)
    }

    /// The loop the server runs until `shutdown` resolves: claims as slots free up, and
    /// otherwise sleeps until the next due time or an addition.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let outcome = tokio::select! {
                () = &mut shutdown => break,
                outcome = self.clone().round() => outcome,
            };
            if let Err(error) = outcome {
                tracing::warn!(message = "Dispatch round failed; retrying shortly.", %error);
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
        // Let deliveries in flight commit before returning.
        let _ = self
            .permits
            .acquire_many(self.settings.concurrency.max(1) as u32)
            .await;
    }

    /// Claims and spawns deliveries, or waits until something may be due.
    async fn round(self: Arc<Self>) -> Result<(), DispatchError> {
        // Wait for a free slot first; under load, gather a batch of them (for at most
        // GATHER), since every claim costs a round trip and a commit however few it takes.
        let mut permits = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("never closed");
        let batch = (self.settings.concurrency / 16).max(1);
        let gather_until = tokio::time::Instant::now() + GATHER;
        while permits.num_permits() + self.permits.available_permits() < batch {
            match tokio::time::timeout_at(gather_until, self.permits.clone().acquire_owned()).await
            {
                Ok(more) => permits.merge(more.expect("never closed")),
                Err(_) => break,
            }
        }
        let available = u32::try_from(self.permits.available_permits()).unwrap_or(u32::MAX);
        if let Ok(more) = self.permits.clone().try_acquire_many_owned(available) {
            permits.merge(more);
        }
        let Claimed {
            token,
            claims: messages,
            ..
        } = self.claim(permits.num_permits()).await?;
        if messages.is_empty() {
            drop(permits);
            let now = self.clock.now_ms();
            let wait = match self.schedule.next_due().await? {
                Some(due) if due <= now => return Ok(()),
                Some(due) => Duration::from_millis(due - now).min(self.settings.max_idle),
                None => self.settings.max_idle,
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.schedule.changed() => {}
            }
            return Ok(());
        }
        for claim in messages {
            // One permit per claimed message (never more messages than permits); the
            // unused rest go back when `permits` drops.
            let Some(permit) = permits.split(1) else {
                break;
            };
            let (dispatcher, token) = (self.clone(), token.clone());
            tokio::spawn(async move {
                let id = claim.message.id.clone();
                if let Err(error) = dispatcher.deliver(claim, &token).await {
                    tracing::warn!(
                        message = "Delivery could not be committed; the lease will expire and the message be delivered again.",
                        message_id = %id,
                        %error,
                    );
                }
                drop(permit);
            });
        }
        Ok(())
    }
}

/// Where the message goes, or why it cannot go anywhere: the recipient, and for webhooks
/// their endpoint (looked up with the claim).
fn address(message: &Message, webhook: Option<Webhook>) -> Result<sandbox::Address, String> {
    if callback::is_callback(message) && webhook.is_none() {
        return Err(
            "the sender removed their callback endpoint (DELETE /users/me/callbacks)".to_owned(),
        );
    }
    let mut address = sandbox::Address {
        recipient_id: message.recipient_id.to_string(),
        url: None,
        signing_secrets: Vec::new(),
    };
    if let Some(webhook) = webhook {
        if let Some(reason) = webhook.disabled {
            return Err(format!(
                "the recipient's webhook is disabled ({reason}); they can set it again with PUT /users/me/webhook"
            ));
        }
        address.url = Some(webhook.url);
        address.signing_secrets = webhook.secrets;
    }
    Ok(address)
}

/// The outcome to commit when the database refused `status`'s outcome of this attempt: the
/// same decision (delivered, retrying at the same time, dead), with the host's note in place of
/// the refused details (the receiver's or plugin's text, the channel's live events).
fn unstorable(
    message: &Message,
    token: &str,
    (previous, claimed_at): (Status, u64),
    status: Status,
    retry_at: Option<u64>,
    why: &str,
    now: u64,
) -> Outcome {
    let note = format!(
        "the outcome of attempt {} could not be stored ({why}); it is recorded without its details",
        message.attempts
    );
    let error = (status != Status::Delivered).then(|| note.clone());
    let result = error.clone().unwrap_or_else(|| "delivered".to_owned());
    Outcome {
        id: message.id.clone(),
        tenant_id: message.tenant_id.clone(),
        token: token.to_owned(),
        status,
        deliver_at_ms: retry_at,
        events: vec![
            Event::transition(claimed_at, Some(previous), Status::Delivering, "claimed"),
            Event::host_decision(now, Some(message.attempts), note),
            Event::transition(now, Some(Status::Delivering), status, result),
        ],
        feed: feed::for_sender(message, status, error.as_deref(), now)
            .into_iter()
            .collect(),
        callback: callback::notice(message, status, error.as_deref(), retry_at, now),
        error,
        at_ms: now,
    }
}
