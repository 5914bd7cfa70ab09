//! Between nodes, through Redis: feed events, revocations and hook changes over one pub/sub
//! channel, and
//! presence in one sorted set per user (`presence:<tenant>:<user>`, members are node ids
//! scored by when their claim expires).
//!
//! Nothing here blocks a caller: publishing and presence updates go through queues to tasks
//! that talk to Redis. When Redis is away, other nodes miss events for a while, and nothing is
//! lost: when a node's subscription comes back, every connection there reads its feed from its
//! last cursor; and a node that failed to publish tells all nodes to do the same as soon as it
//! can publish again. Presence then answers for this node only.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::hub::{Hub, Revoke};
use crate::domain::feed::FeedEvent;
use crate::domain::ids::{TenantId, UserId};
use crate::redis_link::RedisLink;

/// How long a node's presence claim lasts without renewal (a crashed node's users go
/// offline after this).
const PRESENCE_TTL: Duration = Duration::from_secs(30);
/// How often a node renews its claims.
const PRESENCE_RENEW: Duration = Duration::from_secs(10);
/// Messages waiting for the publisher; beyond this, events for other nodes are dropped (their
/// connections read them from the feed with the next event).
const OUTBOX: usize = 10_000;

#[derive(Debug, Serialize, Deserialize)]
struct WireEvent {
    tenant_id: TenantId,
    user_id: UserId,
    cursor: u64,
    at_ms: u64,
    body: serde_json::Value,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Payload {
    Events(Vec<WireEvent>),
    Revoke {
        tenant_id: TenantId,
        user_id: UserId,
        revoke: Revoke,
        reason: String,
    },
    /// A node could not publish some events: every connection re-reads its feed (and every
    /// node drops its resolved hooks: a change may have been lost too).
    CatchUp,
    /// A tenant's hook bindings changed.
    Hooks {
        tenant_id: TenantId,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct Wire {
    node: String,
    payload: Payload,
}

/// The Redis side of a hub.
pub(super) struct Bridge {
    link: RedisLink,
    outbox: mpsc::Sender<Payload>,
    presence: mpsc::UnboundedSender<((TenantId, UserId), bool)>,
}

impl Bridge {
    /// Starts the publisher, the subscriber and the presence task.
    pub(super) fn start(link: RedisLink, hub: Weak<Hub>) -> Self {
        let node = uuid::Uuid::now_v7().to_string();
        let channel = link.key(&["realtime"]);
        let (outbox, outgoing) = mpsc::channel(OUTBOX);
        let (presence, changes) = mpsc::unbounded_channel();
        tokio::spawn(publish(
            link.clone(),
            channel.clone(),
            node.clone(),
            outgoing,
        ));
        tokio::spawn(subscribe(link.clone(), channel, node.clone(), hub.clone()));
        tokio::spawn(track_presence(link.clone(), node, hub, changes));
        Self {
            link,
            outbox,
            presence,
        }
    }

    pub(super) fn events(&self, events: &[Arc<FeedEvent>]) {
        let wire = events
            .iter()
            .map(|event| WireEvent {
                tenant_id: event.tenant_id.clone(),
                user_id: event.user_id.clone(),
                cursor: event.cursor,
                at_ms: event.at_ms,
                body: event.body.clone(),
            })
            .collect();
        if self.outbox.try_send(Payload::Events(wire)).is_err() {
            tracing::warn!(
                message =
                    "Real-time outbox full: other nodes get these events from the feed later."
            );
        }
    }

    pub(super) fn revoke(&self, tenant: &TenantId, user: &UserId, revoke: &Revoke, reason: &str) {
        let payload = Payload::Revoke {
            tenant_id: tenant.clone(),
            user_id: user.clone(),
            revoke: revoke.clone(),
            reason: reason.to_owned(),
        };
        if self.outbox.try_send(payload).is_err() {
            tracing::warn!(
                message = "Real-time outbox full: a revocation reaches other nodes when the token expires."
            );
        }
    }

    pub(super) fn hooks(&self, tenant: &TenantId) {
        let payload = Payload::Hooks {
            tenant_id: tenant.clone(),
        };
        if self.outbox.try_send(payload).is_err() {
            tracing::warn!(
                message = "Real-time outbox full: other nodes see a hook change after their next resubscribe."
            );
        }
    }

    pub(super) fn presence(&self, key: &(TenantId, UserId), online: bool) {
        let _ = self.presence.send((key.clone(), online));
    }

    pub(super) async fn is_online(&self, tenant: &TenantId, user: &UserId) -> bool {
        let key = presence_key(&self.link, tenant, user);
        let mut connection = self.link.connection();
        let live: Result<Vec<String>, _> = connection
            .zrangebyscore_limit(&key, now_ms(), "+inf", 0, 1)
            .await;
        live.is_ok_and(|nodes| !nodes.is_empty())
    }
}

fn presence_key(link: &RedisLink, tenant: &TenantId, user: &UserId) -> String {
    link.key(&["presence", tenant.as_str(), user.as_str()])
}

fn now_ms() -> u64 {
    crate::clock::Clock::System.now_ms()
}

/// Publishes the outbox. After a failure it owes the other nodes a catch-up, which it sends
/// first thing once Redis answers again (retrying every second while idle).
async fn publish(
    link: RedisLink,
    channel: String,
    node: String,
    mut outgoing: mpsc::Receiver<Payload>,
) {
    let send = |payload: Payload| {
        let (link, channel) = (link.clone(), channel.clone());
        let text = serde_json::to_string(&Wire {
            node: node.clone(),
            payload,
        })
        .expect("wire messages serialize");
        async move {
            let mut connection = link.connection();
            connection.publish::<_, _, u64>(&channel, text).await
        }
    };
    let mut owed = false;
    loop {
        let next = if owed {
            match tokio::time::timeout(Duration::from_secs(1), outgoing.recv()).await {
                Ok(None) => return,
                Ok(Some(payload)) => Some(payload),
                Err(_) => None,
            }
        } else {
            match outgoing.recv().await {
                Some(payload) => Some(payload),
                None => return,
            }
        };
        if owed && send(Payload::CatchUp).await.is_ok() {
            owed = false;
        }
        if let Some(payload) = next
            && let Err(error) = send(payload).await
        {
            owed = true;
            tracing::warn!(message = "Could not publish a real-time event to other nodes; they catch up from the feed once Redis answers.", %error);
        }
    }
}

/// Receives other nodes' messages; resubscribes after Redis restarts, and then has every
/// local connection catch up from the feed.
async fn subscribe(link: RedisLink, channel: String, node: String, hub: Weak<Hub>) {
    loop {
        match link.client().get_async_pubsub().await {
            Ok(mut pubsub) => {
                if pubsub.subscribe(&channel).await.is_ok() {
                    let Some(live) = hub.upgrade() else { return };
                    live.catch_up_all();
                    live.hooks_changed_elsewhere(None);
                    drop(live);
                    let mut messages = pubsub.on_message();
                    while let Some(message) = messages.next().await {
                        let Some(hub) = hub.upgrade() else { return };
                        let Ok(text) = message.get_payload::<String>() else {
                            continue;
                        };
                        match serde_json::from_str::<Wire>(&text) {
                            Ok(wire) if wire.node == node => {}
                            Ok(Wire {
                                payload: Payload::Events(events),
                                ..
                            }) => {
                                let events: Vec<Arc<FeedEvent>> = events
                                    .into_iter()
                                    .map(|event| {
                                        Arc::new(FeedEvent {
                                            tenant_id: event.tenant_id,
                                            user_id: event.user_id,
                                            cursor: event.cursor,
                                            at_ms: event.at_ms,
                                            body: event.body,
                                        })
                                    })
                                    .collect();
                                hub.push_local(&events);
                            }
                            Ok(Wire {
                                payload:
                                    Payload::Revoke {
                                        tenant_id,
                                        user_id,
                                        revoke,
                                        reason,
                                    },
                                ..
                            }) => hub.revoke_local(&tenant_id, &user_id, &revoke, &reason),
                            Ok(Wire {
                                payload: Payload::CatchUp,
                                ..
                            }) => {
                                hub.catch_up_all();
                                hub.hooks_changed_elsewhere(None);
                            }
                            Ok(Wire {
                                payload: Payload::Hooks { tenant_id },
                                ..
                            }) => hub.hooks_changed_elsewhere(Some(&tenant_id)),
                            Err(error) => {
                                tracing::warn!(message = "Ignoring a malformed real-time message from Redis.", %error)
                            }
                        }
                    }
                }
            }
            Err(error) => {
                tracing::debug!(message = "Real-time subscriber cannot reach Redis.", %error)
            }
        }
        if hub.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Applies presence changes in order, and renews this node's claims.
async fn track_presence(
    link: RedisLink,
    node: String,
    hub: Weak<Hub>,
    mut changes: mpsc::UnboundedReceiver<((TenantId, UserId), bool)>,
) {
    let mut renew = tokio::time::interval(PRESENCE_RENEW);
    let ttl_ms = PRESENCE_TTL.as_millis() as u64;
    loop {
        let mut pipe = redis::pipe();
        tokio::select! {
            change = changes.recv() => {
                let Some(((tenant, user), online)) = change else { return };
                let key = presence_key(&link, &tenant, &user);
                if online {
                    pipe.zadd(&key, &node, now_ms() + ttl_ms).ignore()
                        .pexpire(&key, ttl_ms as i64).ignore();
                } else {
                    pipe.zrem(&key, &node).ignore();
                }
            }
            _ = renew.tick() => {
                let Some(hub) = hub.upgrade() else { return };
                let until = now_ms() + ttl_ms;
                for (tenant, user) in hub.local_users() {
                    let key = presence_key(&link, &tenant, &user);
                    pipe.zadd(&key, &node, until).ignore()
                        .zrembyscore(&key, 0, now_ms()).ignore()
                        .pexpire(&key, ttl_ms as i64).ignore();
                }
            }
        }
        if pipe.is_empty() {
            continue;
        }
        let mut connection = link.connection();
        let done: Result<(), _> = pipe.query_async(&mut connection).await;
        if let Err(error) = done {
            tracing::debug!(message = "Could not update presence in Redis.", %error);
        }
    }
}
