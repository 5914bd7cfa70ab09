//! The hub of one node: who is connected here, and pushing events to them. It also carries
//! the one cluster notice that is not an event: a tenant's hook bindings changed.
//!
//! It caps live connections per user and per tenant, and connections that have not
//! authenticated yet per client address. The caps are per node: they protect the node's
//! descriptors and memory, which is what they are for, and need no cross-node state.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::mpsc;

use super::bridge::Bridge;
use crate::domain::feed::FeedEvent;
use crate::domain::ids::{SessionId, TenantId, UserId};
use crate::redis_link::RedisLink;
use crate::sandbox::Presence;

type UserKey = (TenantId, UserId);

/// Which connections lose their session (logout, revocation, password change, user deleted).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Revoke {
    /// The connections of one session.
    Session(SessionId),
    /// Every connection of the user, except those of one session (the one that changed the
    /// password keeps going).
    User {
        /// The session that stays.
        except: Option<SessionId>,
    },
}

impl Revoke {
    fn applies_to(&self, session: &SessionId) -> bool {
        match self {
            Self::Session(revoked) => revoked == session,
            Self::User { except } => except.as_ref() != Some(session),
        }
    }
}

/// The hub's caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Live connections per user.
    pub per_user: usize,
    /// Live connections per tenant.
    pub per_tenant: usize,
    /// Connections not authenticated yet, per client address.
    pub unauthenticated_per_address: usize,
}

/// Why a connection may not join.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Full {
    /// The user has `per_user` live connections on this node.
    #[error(
        "the user already has {0} live connections on this node, the most allowed (DMS_WS_MAX_PER_USER); close one first"
    )]
    User(usize),
    /// The tenant has `per_tenant` live connections on this node.
    #[error(
        "the tenant already has {0} live connections on this node, the most allowed (DMS_WS_MAX_PER_TENANT)"
    )]
    Tenant(usize),
}

/// Live connections, counted from [`Hub::subscribe`] until their [`Subscription`] drops (the
/// hub may let a connection go earlier, on overflow or revocation, but its socket is open
/// until then).
#[derive(Default)]
struct Live {
    users: HashMap<UserKey, usize>,
    tenants: HashMap<TenantId, usize>,
}

/// Decrements the count under `key`, forgetting it at zero.
fn release<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, usize>, key: &K) {
    if let Some(count) = counts.get_mut(key) {
        *count -= 1;
        if *count == 0 {
            counts.remove(key);
        }
    }
}

/// What a connection waits for.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// A committed event of the user's feed.
    Event(Arc<FeedEvent>),
    /// Events may have been missed (Redis was away): read the feed after the last cursor sent.
    CatchUp,
    /// The connection must close.
    Closed(Closed),
}

/// Why the hub let a connection go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closed {
    /// Its session ended; the reason says how.
    Revoked(String),
    /// It did not read its events fast enough and its queue filled up.
    Overflowed,
    /// The server is shutting down.
    ShuttingDown,
}

enum Signal {
    Event(Arc<FeedEvent>),
    CatchUp,
}

/// What the hub and a connection share.
struct Shared {
    session: Mutex<SessionId>,
    overflowed: AtomicBool,
    revoked: Mutex<Option<String>>,
}

struct Entry {
    id: u64,
    sender: mpsc::Sender<Signal>,
    shared: Arc<Shared>,
}

/// This node's live connections.
pub struct Hub {
    queue: usize,
    caps: Caps,
    live: Mutex<Live>,
    unauthenticated: Mutex<HashMap<String, usize>>,
    shutting_down: AtomicBool,
    next_id: AtomicU64,
    users: Mutex<HashMap<UserKey, Vec<Entry>>>,
    bridge: OnceLock<Bridge>,
    hooks_listener: OnceLock<HooksListener>,
}

/// Called when a tenant's hook bindings changed on another node (`None`: any tenant's may
/// have, while Redis was away).
pub type HooksListener = Arc<dyn Fn(Option<&TenantId>) + Send + Sync>;

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("queue", &self.queue)
            .field("redis", &self.bridge.get().is_some())
            .finish_non_exhaustive()
    }
}

/// A live connection's place in the hub; the user is online while one exists. Dropping it
/// leaves the hub.
pub struct Subscription {
    signals: mpsc::Receiver<Signal>,
    shared: Arc<Shared>,
    id: u64,
    key: UserKey,
    hub: Arc<Hub>,
}

impl Subscription {
    /// The next thing the connection must act on.
    pub async fn next(&mut self) -> Next {
        let signal = self.signals.recv().await;
        if let Some(reason) = self.shared.revoked.lock().expect("hub lock").clone() {
            return Next::Closed(Closed::Revoked(reason));
        }
        match signal {
            Some(Signal::Event(event)) => Next::Event(event),
            Some(Signal::CatchUp) => Next::CatchUp,
            None if self.shared.overflowed.load(Ordering::Relaxed) => {
                Next::Closed(Closed::Overflowed)
            }
            // The hub drops a sender only after flagging why: overflow, revocation, shutdown.
            None => Next::Closed(Closed::ShuttingDown),
        }
    }

    /// The session now authenticating the connection (after an in-band token refresh).
    pub fn set_session(&self, session: SessionId) {
        *self.shared.session.lock().expect("hub lock") = session;
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        {
            let mut live = self.hub.live.lock().expect("hub lock");
            release(&mut live.users, &self.key);
            release(&mut live.tenants, &self.key.0);
        }
        let mut users = self.hub.users.lock().expect("hub lock");
        if let Some(entries) = users.get_mut(&self.key) {
            entries.retain(|entry| entry.id != self.id);
            if entries.is_empty() {
                users.remove(&self.key);
                if let Some(bridge) = self.hub.bridge.get() {
                    bridge.presence(&self.key, false);
                }
            }
        }
    }
}

/// A connection that has not authenticated yet, counted against its client address until it
/// does ([`release`](Self::release)) or is dropped.
#[derive(Debug)]
pub struct Unauthenticated {
    hub: Arc<Hub>,
    address: String,
    released: AtomicBool,
}

impl Unauthenticated {
    /// The connection authenticated (or ended): its address may open another.
    pub fn release(&self) {
        if !self.released.swap(true, Ordering::AcqRel) {
            let mut counts = self.hub.unauthenticated.lock().expect("hub lock");
            release(&mut counts, &self.address);
        }
    }
}

impl Drop for Unauthenticated {
    fn drop(&mut self) {
        self.release();
    }
}

impl Hub {
    /// A hub whose connections queue at most `queue` events each, under `caps`. With `redis`,
    /// events, revocations and presence are shared with the other nodes.
    pub fn new(queue: usize, caps: Caps, redis: Option<RedisLink>) -> Arc<Self> {
        let hub = Arc::new(Self {
            queue: queue.max(1),
            caps,
            live: Mutex::new(Live::default()),
            unauthenticated: Mutex::new(HashMap::new()),
            shutting_down: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            users: Mutex::new(HashMap::new()),
            bridge: OnceLock::new(),
            hooks_listener: OnceLock::new(),
        });
        // Started once the hub exists: its tasks hold a weak reference they must be able to
        // upgrade from their first poll.
        if let Some(link) = redis {
            let _ = hub.bridge.set(Bridge::start(link, Arc::downgrade(&hub)));
        }
        hub
    }

    /// A place for a connection from `address` that has yet to authenticate, unless the
    /// address holds `unauthenticated_per_address` of them already.
    pub fn admit_unauthenticated(self: &Arc<Self>, address: &str) -> Option<Unauthenticated> {
        let mut counts = self.unauthenticated.lock().expect("hub lock");
        let count = counts.entry(address.to_owned()).or_default();
        if *count >= self.caps.unauthenticated_per_address {
            return None;
        }
        *count += 1;
        Some(Unauthenticated {
            hub: self.clone(),
            address: address.to_owned(),
            released: AtomicBool::new(false),
        })
    }

    /// Joins `user` of `tenant`, authenticated by `session`, unless the user or the tenant
    /// has as many live connections on this node as the caps allow. The connection that
    /// would be one too many is refused, not an older one closed: it is the one that can be
    /// told why.
    pub fn subscribe(
        self: &Arc<Self>,
        tenant: &TenantId,
        user: &UserId,
        session: SessionId,
    ) -> Result<Subscription, Full> {
        let key = (tenant.clone(), user.clone());
        {
            let mut live = self.live.lock().expect("hub lock");
            let of_user = live.users.get(&key).copied().unwrap_or(0);
            let of_tenant = live.tenants.get(tenant).copied().unwrap_or(0);
            if of_user >= self.caps.per_user {
                return Err(Full::User(self.caps.per_user));
            }
            if of_tenant >= self.caps.per_tenant {
                return Err(Full::Tenant(self.caps.per_tenant));
            }
            *live.users.entry(key.clone()).or_default() += 1;
            *live.tenants.entry(tenant.clone()).or_default() += 1;
        }
        let (sender, signals) = mpsc::channel(self.queue);
        let shared = Arc::new(Shared {
            session: Mutex::new(session),
            overflowed: AtomicBool::new(false),
            revoked: Mutex::new(None),
        });
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut users = self.users.lock().expect("hub lock");
            let entries = users.entry(key.clone()).or_default();
            if entries.is_empty()
                && let Some(bridge) = self.bridge.get()
            {
                bridge.presence(&key, true);
            }
            entries.push(Entry {
                id,
                sender,
                shared: shared.clone(),
            });
        }
        Ok(Subscription {
            signals,
            shared,
            id,
            key,
            hub: self.clone(),
        })
    }

    /// Pushes committed feed events to their users' connections on every node.
    pub fn publish(&self, events: Vec<FeedEvent>) {
        let events: Vec<Arc<FeedEvent>> = events.into_iter().map(Arc::new).collect();
        self.push_local(&events);
        if let Some(bridge) = self.bridge.get() {
            bridge.events(&events);
        }
    }

    /// Sets who hears of other nodes' hook changes (once; later calls are ignored).
    pub fn on_hooks_changed(&self, listener: HooksListener) {
        let _ = self.hooks_listener.set(listener);
    }

    /// Tells the other nodes that `tenant`'s hook bindings changed.
    pub fn hooks_changed(&self, tenant: &TenantId) {
        if let Some(bridge) = self.bridge.get() {
            bridge.hooks(tenant);
        }
    }

    /// Another node changed hook bindings (`None`: maybe, while this node was not listening).
    pub(super) fn hooks_changed_elsewhere(&self, tenant: Option<&TenantId>) {
        if let Some(listener) = self.hooks_listener.get() {
            listener(tenant);
        }
    }

    /// Ends the connections `revoke` names, on every node, with `reason`.
    pub fn revoke(&self, tenant: &TenantId, user: &UserId, revoke: Revoke, reason: &str) {
        self.revoke_local(tenant, user, &revoke, reason);
        if let Some(bridge) = self.bridge.get() {
            bridge.revoke(tenant, user, &revoke, reason);
        }
    }

    /// Closes every connection of this node (the server is shutting down; clients reconnect
    /// to another node with their cursors).
    pub fn shut_down(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
        let mut users = self.users.lock().expect("hub lock");
        for (key, _) in users.drain() {
            if let Some(bridge) = self.bridge.get() {
                bridge.presence(&key, false);
            }
        }
    }

    /// Live connections on this node.
    pub fn connections(&self) -> usize {
        self.users
            .lock()
            .expect("hub lock")
            .values()
            .map(Vec::len)
            .sum()
    }

    /// The users with a connection on this node.
    pub(super) fn local_users(&self) -> Vec<UserKey> {
        self.users
            .lock()
            .expect("hub lock")
            .keys()
            .cloned()
            .collect()
    }

    pub(super) fn is_local(&self, tenant: &TenantId, user: &UserId) -> bool {
        self.users
            .lock()
            .expect("hub lock")
            .contains_key(&(tenant.clone(), user.clone()))
    }

    /// Pushes events to this node's connections. A connection whose queue is full is cut off
    /// (it resumes from its cursor when it reconnects).
    pub(super) fn push_local(&self, events: &[Arc<FeedEvent>]) {
        let mut users = self.users.lock().expect("hub lock");
        for event in events {
            let key = (event.tenant_id.clone(), event.user_id.clone());
            let Some(entries) = users.get_mut(&key) else {
                continue;
            };
            entries.retain(
                |entry| match entry.sender.try_send(Signal::Event(event.clone())) {
                    Ok(()) => true,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        entry.shared.overflowed.store(true, Ordering::Relaxed);
                        false
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => false,
                },
            );
            if entries.is_empty() {
                users.remove(&key);
                if let Some(bridge) = self.bridge.get() {
                    bridge.presence(&key, false);
                }
            }
        }
    }

    /// Tells every connection of this node to read what it may have missed.
    pub(super) fn catch_up_all(&self) {
        let users = self.users.lock().expect("hub lock");
        for entry in users.values().flatten() {
            if let Err(mpsc::error::TrySendError::Full(_)) = entry.sender.try_send(Signal::CatchUp)
            {
                // A full queue means the connection is behind anyway: it will be cut off by
                // the next event, or reads the feed after this one.
                continue;
            }
        }
    }

    pub(super) fn revoke_local(
        &self,
        tenant: &TenantId,
        user: &UserId,
        revoke: &Revoke,
        reason: &str,
    ) {
        let key = (tenant.clone(), user.clone());
        let mut users = self.users.lock().expect("hub lock");
        let Some(entries) = users.get_mut(&key) else {
            return;
        };
        entries.retain(|entry| {
            let session = entry.shared.session.lock().expect("hub lock").clone();
            if revoke.applies_to(&session) {
                *entry.shared.revoked.lock().expect("hub lock") = Some(reason.to_owned());
                // Dropping the sender wakes the connection.
                false
            } else {
                true
            }
        });
        if entries.is_empty() {
            users.remove(&key);
            if let Some(bridge) = self.bridge.get() {
                bridge.presence(&key, false);
            }
        }
    }
}

#[async_trait::async_trait]
impl Presence for Hub {
    async fn is_online(&self, tenant_id: &str, user_id: &str) -> bool {
        let (Ok(tenant), Ok(user)) = (tenant_id.parse::<TenantId>(), user_id.parse::<UserId>())
        else {
            return false;
        };
        if self.is_local(&tenant, &user) {
            return true;
        }
        match self.bridge.get() {
            Some(bridge) => bridge.is_online(&tenant, &user).await,
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CAPS: Caps = Caps {
        per_user: 16,
        per_tenant: 100,
        unauthenticated_per_address: 4,
    };

    fn event(tenant: &TenantId, user: &UserId, cursor: u64) -> FeedEvent {
        FeedEvent {
            tenant_id: tenant.clone(),
            user_id: user.clone(),
            cursor,
            at_ms: 0,
            body: json!({ "type": "status" }),
        }
    }

    #[tokio::test]
    async fn every_connection_of_the_user_gets_the_event_and_makes_them_online() {
        let hub = Hub::new(8, CAPS, None);
        let (tenant, user, other) = (TenantId::new(), UserId::new(), UserId::new());
        assert!(!hub.is_online(tenant.as_str(), user.as_str()).await);
        let mut first = hub.subscribe(&tenant, &user, SessionId::new()).unwrap();
        let mut second = hub.subscribe(&tenant, &user, SessionId::new()).unwrap();
        assert!(hub.is_online(tenant.as_str(), user.as_str()).await);
        hub.publish(vec![event(&tenant, &other, 1), event(&tenant, &user, 1)]);
        for subscription in [&mut first, &mut second] {
            match subscription.next().await {
                Next::Event(event) => assert_eq!((&event.user_id, event.cursor), (&user, 1)),
                other => panic!("{other:?}"),
            }
        }
        drop(first);
        assert!(hub.is_online(tenant.as_str(), user.as_str()).await);
        drop(second);
        assert!(!hub.is_online(tenant.as_str(), user.as_str()).await);
        assert_eq!(hub.connections(), 0);
    }

    #[tokio::test]
    async fn a_full_queue_cuts_the_connection_off_after_what_it_holds() {
        let hub = Hub::new(2, CAPS, None);
        let (tenant, user) = (TenantId::new(), UserId::new());
        let mut slow = hub.subscribe(&tenant, &user, SessionId::new()).unwrap();
        hub.publish(
            (1..=3)
                .map(|cursor| event(&tenant, &user, cursor))
                .collect(),
        );
        assert!(matches!(slow.next().await, Next::Event(_)));
        assert!(matches!(slow.next().await, Next::Event(_)));
        assert_eq!(slow.next().await, Next::Closed(Closed::Overflowed));
    }

    #[tokio::test]
    async fn revoking_a_session_closes_only_its_connections() {
        let hub = Hub::new(8, CAPS, None);
        let (tenant, user) = (TenantId::new(), UserId::new());
        let (kept, ended) = (SessionId::new(), SessionId::new());
        let mut stays = hub.subscribe(&tenant, &user, kept.clone()).unwrap();
        let mut goes = hub.subscribe(&tenant, &user, ended.clone()).unwrap();
        hub.revoke(&tenant, &user, Revoke::Session(ended), "logged out");
        match goes.next().await {
            Next::Closed(Closed::Revoked(reason)) => assert_eq!(reason, "logged out"),
            other => panic!("{other:?}"),
        }
        hub.publish(vec![event(&tenant, &user, 1)]);
        assert!(matches!(stays.next().await, Next::Event(_)));
        hub.revoke(
            &tenant,
            &user,
            Revoke::User { except: None },
            "user deleted",
        );
        assert!(matches!(
            stays.next().await,
            Next::Closed(Closed::Revoked(_))
        ));
    }

    #[tokio::test]
    async fn shutting_down_closes_everyone() {
        let hub = Hub::new(8, CAPS, None);
        let (tenant, user) = (TenantId::new(), UserId::new());
        let mut connection = hub.subscribe(&tenant, &user, SessionId::new()).unwrap();
        hub.shut_down();
        assert_eq!(connection.next().await, Next::Closed(Closed::ShuttingDown));
        assert!(!hub.is_online(tenant.as_str(), user.as_str()).await);
    }

    #[test]
    fn connections_are_capped_per_user_and_tenant_until_they_drop() {
        let hub = Hub::new(
            8,
            Caps {
                per_user: 2,
                per_tenant: 3,
                unauthenticated_per_address: 4,
            },
            None,
        );
        let (tenant, bob, eve) = (TenantId::new(), UserId::new(), UserId::new());
        let first = hub.subscribe(&tenant, &bob, SessionId::new()).unwrap();
        let _second = hub.subscribe(&tenant, &bob, SessionId::new()).unwrap();
        assert_eq!(
            hub.subscribe(&tenant, &bob, SessionId::new()).err(),
            Some(Full::User(2))
        );
        let _third = hub.subscribe(&tenant, &eve, SessionId::new()).unwrap();
        assert_eq!(
            hub.subscribe(&tenant, &eve, SessionId::new()).err(),
            Some(Full::Tenant(3))
        );
        // Another tenant is not affected.
        let _elsewhere = hub
            .subscribe(&TenantId::new(), &UserId::new(), SessionId::new())
            .unwrap();
        // Revoked, the connection still counts until its subscription drops.
        hub.revoke(&tenant, &bob, Revoke::User { except: None }, "gone");
        assert!(hub.subscribe(&tenant, &eve, SessionId::new()).is_err());
        drop(first);
        let _again = hub.subscribe(&tenant, &eve, SessionId::new()).unwrap();
    }

    #[test]
    fn unauthenticated_connections_are_capped_per_address_until_released() {
        let hub = Hub::new(8, CAPS, None);
        let held: Vec<_> = (0..4)
            .map(|_| hub.admit_unauthenticated("192.0.2.1").unwrap())
            .collect();
        assert!(hub.admit_unauthenticated("192.0.2.1").is_none());
        let other = hub.admit_unauthenticated("192.0.2.2").unwrap();
        held[0].release();
        held[0].release();
        let _next = hub.admit_unauthenticated("192.0.2.1").unwrap();
        assert!(hub.admit_unauthenticated("192.0.2.1").is_none());
        drop(held);
        drop(other);
        assert!(
            hub.unauthenticated
                .lock()
                .unwrap()
                .get("192.0.2.2")
                .is_none()
        );
        assert_eq!(hub.unauthenticated.lock().unwrap()["192.0.2.1"], 1);
    }
}
