//! Fan-out: one submission to a group (`POST /messages {group_id, …}`) creates one ordinary
//! message per member (its own id, status and history; the tenant's validators and delay
//! policy decide each as for any message), all committed in one transaction with the fan-out's
//! record, or none; then indexed like any submit. `GET /fan-outs/{id}` summarises where its
//! messages are.
//!
//! [`submit_to_group`] takes only the sender and the submission, and a recurring schedule's
//! occurrence sent to a group fans out the same way ([`submit_group_occurrence`]).

use serde::Serialize;
use tracing::Instrument as _;

use super::submit::{Key, Submission, Submitted, commit, decide, parse_for, record};
use super::{Error, Messages};

use crate::clock::rfc3339;
use crate::domain::group::{FanOut, FanOutSummary};
use crate::domain::ids::{FanOutId, GroupId, MessageId};
use crate::domain::message::Status;
use crate::domain::user::{Role, User};
use crate::store::{Accepted, NewMessage, OccurrenceClaim, Stored};

/// The answer to a submission to a group: the fan-out and how many messages it created.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FanOutAccepted {
    /// The fan-out: each of its messages names it (`fan_out_id`); `GET /fan-outs/{id}`
    /// summarises them.
    pub fan_out_id: FanOutId,
    /// The group, whose members each got one message.
    pub group_id: GroupId,
    /// How many messages were created: the group's members at the submit.
    pub count: u64,
    /// Always `scheduled`: every message was accepted.
    pub status: Status,
    /// When it was accepted.
    #[schema(format = DateTime)]
    pub created_at: String,
}

/// Where a fan-out's messages are: `GET /fan-outs/{id}`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FanOutView {
    /// The fan-out.
    pub id: FanOutId,
    /// The group it was sent to (it may have been deleted or changed since).
    pub group_id: GroupId,
    /// Who sent it.
    pub sender_id: crate::domain::ids::UserId,
    /// How many messages it created.
    pub total: u64,
    /// How many of them are in each status now (statuses with none left out). Messages
    /// deleted by retention are counted in `pruned` instead.
    pub statuses: std::collections::BTreeMap<String, u64>,
    /// Messages deleted by retention since (ended ones only).
    pub pruned: u64,
    /// When it was accepted.
    #[schema(format = DateTime)]
    pub created_at: String,
}

impl From<FanOutSummary> for FanOutView {
    fn from(summary: FanOutSummary) -> Self {
        let present: u64 = summary.statuses.iter().map(|(_, count)| count).sum();
        Self {
            id: summary.fan_out.id,
            group_id: summary.fan_out.group_id,
            sender_id: summary.fan_out.sender_id,
            total: summary.fan_out.count,
            statuses: summary
                .statuses
                .into_iter()
                .map(|(status, count)| (status.as_str().to_owned(), count))
                .collect(),
            pruned: summary.fan_out.count.saturating_sub(present),
            created_at: rfc3339(summary.fan_out.created_at_ms),
        }
    }
}

/// Sends `submission` (whose `group_id` is set, and `recipient_id` not) from `sender` to each
/// member of the group: one message per member, decided one by one as any message is, and
/// committed together with the fan-out's record; any member's message refused (by a
/// validator or the delay policy) refuses the whole fan-out, and nothing is stored. An empty
/// group is refused. `now` is the submit's time.
pub async fn submit_to_group(
    ctx: &Messages,
    sender: &User,
    submission: Submission,
    key: Option<Key>,
    now: u64,
) -> Result<Submitted, Error> {
    let started = std::time::Instant::now();
    let (fan_out, messages, span) =
        decide_members(ctx, sender, submission, now, "accepted").await?;
    let decided = started.elapsed();
    let body = serde_json::to_string(&FanOutAccepted {
        fan_out_id: fan_out.id.clone(),
        group_id: fan_out.group_id.clone(),
        count: fan_out.count,
        status: Status::Scheduled,
        created_at: rfc3339(now),
    })
    .expect("an answer is JSON");
    let accepted = Accepted {
        messages,
        idempotency: key.as_ref().map(|key| record(sender, key, &body, now)),
        fan_out: Some(fan_out),
        occurrence: None,
    };
    let submitted = commit(ctx, sender, key.as_ref(), accepted, body, now)
        .instrument(span.clone())
        .await?;
    span.in_scope(|| {
        tracing::debug!(
            message = "Fan-out accepted.",
            decide_ms = decided.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
        );
    });
    Ok(submitted)
}

/// One occurrence of a recurring schedule sent to a group: the fan-out of
/// [`submit_to_group`], stored only if the schedule still waits for that occurrence
/// (`claim`); `None` when another node created it first. `note` is each message's acceptance
/// entry (it names the schedule and the occurrence).
pub async fn submit_group_occurrence(
    ctx: &Messages,
    sender: &User,
    submission: Submission,
    claim: OccurrenceClaim,
    note: &str,
) -> Result<Option<FanOutId>, Error> {
    let now = ctx.clock.now_ms();
    let (fan_out, messages, span) = decide_members(ctx, sender, submission, now, note).await?;
    let id = fan_out.id.clone();
    let accepted = Accepted {
        messages,
        idempotency: None,
        fan_out: Some(fan_out),
        occurrence: Some(claim),
    };
    match ctx.submitter.commit(accepted).instrument(span).await? {
        Stored::Committed => Ok(Some(id)),
        Stored::OccurrenceTaken | Stored::KeyTaken => Ok(None),
    }
}

/// The group's members' messages, each decided by the tenant's plugins (`note` is their
/// acceptance entry), and the fan-out's record; not stored yet.
async fn decide_members(
    ctx: &Messages,
    sender: &User,
    mut submission: Submission,
    now: u64,
    note: &str,
) -> Result<(FanOut, Vec<NewMessage>, tracing::Span), Error> {
    let group: GroupId = submission
        .group_id
        .take()
        .unwrap_or_default()
        .parse()
        .map_err(|_| Error::Missing("group"))?;
    let members = ctx
        .store
        .member_ids(&sender.tenant_id, &group)
        .await?
        .ok_or(Error::Missing("group"))?;
    let Some(first) = members.first() else {
        return Err(Error::Invalid {
            field: "/group_id".into(),
            reason: "the group has no members; add some with PUT /groups/{id}/members/{user_id}"
                .into(),
        });
    };
    let fan_out_id = FanOutId::new();
    // Every field is checked once (each member's message differs only in id and recipient).
    let mut template = parse_for(sender, first.clone(), submission, now)?;
    template.fan_out_id = Some(fan_out_id.clone());
    let span = tracing::debug_span!(
        "dms.fan_out",
        fan_out_id = %fan_out_id,
        group_id = %group,
        tenant_id = %sender.tenant_id,
        members = members.len(),
    );
    // One snapshot of the tenant's hooks decides every member's message. The plugin calls
    // are most of a large fan-out's time: they run on every core, a slice of the members
    // each, and the messages keep the members' order.
    let hooks = ctx.policies.hooks(&sender.tenant_id).await?;
    let workers = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(members.len());
    let mut slices = Vec::with_capacity(workers);
    for slice in members.chunks(members.len().div_ceil(workers)) {
        let (ctx, hooks, template, slice, note) = (
            ctx.clone(),
            hooks.clone(),
            template.clone(),
            slice.to_vec(),
            note.to_owned(),
        );
        slices.push(tokio::spawn(
            async move {
                let mut decided = Vec::with_capacity(slice.len());
                for member in slice {
                    let mut message = template.clone();
                    message.id = MessageId::new();
                    message.recipient_id = member;
                    decided.push(decide(&ctx, &hooks, message, &note).await?.1);
                }
                Ok::<_, Error>(decided)
            }
            .instrument(span.clone()),
        ));
    }
    let mut messages = Vec::with_capacity(members.len());
    for slice in slices {
        match slice.await {
            Ok(decided) => messages.extend(decided?),
            Err(failed) => std::panic::resume_unwind(failed.into_panic()),
        }
    }
    let fan_out = FanOut {
        id: fan_out_id,
        tenant_id: sender.tenant_id.clone(),
        sender_id: sender.id.clone(),
        group_id: group,
        count: messages.len() as u64,
        created_at_ms: now,
    };
    Ok((fan_out, messages, span))
}

/// A fan-out's summary, for its sender and the tenant's admins (anyone else: not found).
pub async fn summary(ctx: &Messages, caller: &User, id: &FanOutId) -> Result<FanOutView, Error> {
    let summary = ctx
        .store
        .fan_out(&caller.tenant_id, id)
        .await?
        .filter(|summary| caller.role == Role::Admin || summary.fan_out.sender_id == caller.id)
        .ok_or(Error::Missing("fan-out"))?;
    Ok(summary.into())
}
