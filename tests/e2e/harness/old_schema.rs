//! A database at the schema before the narrow message rows (the migrations up to
//! [`PREVIOUS_SCHEMA`]), made from a current one by rewriting its rows as that schema held
//! them: what a server of the previous release leaves behind.

use dms::domain::feed::FeedEvent;
use dms::domain::ids::MessageId;
use dms::domain::message::Event;

use super::{Backend, ENCRYPTION_KEYS, Login, TestStorage};

/// The last migration before the message core was reshaped.
pub(crate) const PREVIOUS_SCHEMA: i64 = 20261213000000;

/// Raw access to a test database, to put it back to the previous schema.
pub(crate) struct OldDatabase {
    storage: TestStorage,
}

impl OldDatabase {
    pub(crate) async fn open(storage: &TestStorage) -> Self {
        Self {
            storage: storage.clone(),
        }
    }

    /// Runs `sql` (several statements) on the database.
    pub(crate) async fn run(&self, sql: &str) {
        self.storage.execute(sql).await;
    }

    /// Rewrites the current schema's message rows into the previous schema's, and forgets
    /// the migration that made the current one; each message's history becomes what the
    /// previous schema wrote at a submit (a plugin's decision, the transition to
    /// `scheduled`), and at a delivery for the delivered ones.
    pub(crate) async fn downgrade(&self) {
        self.downgrade_schema().await;
        // The history as the previous schema wrote it: one entry per row.
        self.run(
            "INSERT INTO message_events (message_id, at_ms, kind, from_status, to_status, \
             attempt, result, duration_ms, plugin_name, plugin_digest) \
             SELECT m.id, m.created_at_ms, 'decision', NULL, NULL, NULL, 'accepted', 0, \
             'content-guard', 'digest' FROM messages m; \
             INSERT INTO message_events (message_id, at_ms, kind, from_status, to_status, \
             attempt, result) SELECT m.id, m.created_at_ms, 'transition', NULL, 'scheduled', \
             NULL, 'accepted' FROM messages m; \
             INSERT INTO message_events (message_id, at_ms, kind, from_status, to_status, \
             attempt, result) SELECT m.id, m.delivered_at_ms, 'transition', 'delivering', \
             'delivered', NULL, 'delivered' FROM messages m WHERE m.status = 'delivered';",
        )
        .await;
    }

    /// [`downgrade`](Self::downgrade) with no history at all: the caller writes it, with
    /// [`insert_history`](Self::insert_history).
    pub(crate) async fn downgrade_schema(&self) {
        let (integer, bytes) = match self.storage.backend {
            Backend::Sqlite => ("INTEGER", "BLOB"),
            Backend::Postgres => ("BIGINT", "BYTEA"),
        };
        let sqlite = self.storage.backend == Backend::Sqlite;
        let mut sql = String::new();
        if sqlite {
            sql.push_str("PRAGMA foreign_keys = OFF;");
        }
        sql.push_str(&format!(
            "CREATE TABLE old_messages (
                id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL REFERENCES tenants (id),
                sender_id TEXT NOT NULL REFERENCES users (id),
                recipient_id TEXT NOT NULL REFERENCES users (id),
                channel TEXT NOT NULL CHECK (channel IN ('inbox', 'webhook')),
                content_type TEXT NOT NULL, metadata TEXT NOT NULL, key_id TEXT NOT NULL,
                nonce {bytes} NOT NULL, content {bytes} NOT NULL,
                requested_kind TEXT NOT NULL CHECK (requested_kind IN ('none', 'delay', 'at')),
                requested_ms {integer}, status TEXT NOT NULL, previous_status TEXT,
                deliver_at_ms {integer} NOT NULL, attempts {integer} NOT NULL DEFAULT 0,
                last_error TEXT, lease_token TEXT, lease_until_ms {integer},
                created_at_ms {integer} NOT NULL, updated_at_ms {integer} NOT NULL,
                delivered_at_ms {integer}, read_at_ms {integer});
             INSERT INTO old_messages SELECT m.id, m.tenant_id, m.sender_id, m.recipient_id,
                m.channel, m.content_type, m.metadata, m.key_id, m.nonce, m.content,
                m.requested_kind, m.requested_ms, s.status, NULL, s.deliver_at_ms, s.attempts,
                s.last_error, s.lease_token, s.lease_until_ms, m.created_at_ms, s.updated_at_ms,
                s.delivered_at_ms, s.read_at_ms
                FROM messages m JOIN message_states s ON s.message_id = m.id;
             DROP TABLE message_events;
             DROP TABLE message_states;
             DROP TABLE message_counts;
             DROP TABLE messages;
             ALTER TABLE old_messages RENAME TO messages;
             CREATE INDEX messages_sent ON messages (tenant_id, sender_id, id);
             CREATE INDEX messages_received ON messages (tenant_id, recipient_id, id);
             CREATE INDEX messages_by_status ON messages (tenant_id, status, id);
             CREATE INDEX messages_pending ON messages (id)
                WHERE status IN ('scheduled', 'retrying', 'delivering');
             CREATE TABLE message_events (
                id {serial},
                message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
                at_ms {integer} NOT NULL, kind TEXT NOT NULL, from_status TEXT,
                to_status TEXT, attempt {integer}, result TEXT NOT NULL,
                duration_ms {integer}, plugin_name TEXT, plugin_digest TEXT);
             CREATE INDEX message_events_message ON message_events (message_id, id);
             DROP INDEX idempotency_keys_age;
             DROP TABLE flow_limits;
             ALTER TABLE feed_events DROP COLUMN message_id;
             DROP TABLE group_members;
             DROP TABLE groups;
             DROP TABLE fan_outs;
             DROP TABLE callbacks;
             DROP TABLE schedule_runs;
             DROP TABLE schedules;
             DELETE FROM _sqlx_migrations WHERE version > {PREVIOUS_SCHEMA};",
            serial = if sqlite {
                "INTEGER PRIMARY KEY AUTOINCREMENT"
            } else {
                "BIGSERIAL PRIMARY KEY"
            },
        ));
        if sqlite {
            sql.push_str("PRAGMA foreign_keys = ON;");
        }
        self.run(&sql).await;
    }

    /// Writes `events` as message `id`'s history the way the previous schema did: one row
    /// per entry, in order.
    pub(crate) async fn insert_history(&self, id: &str, events: &[Event]) {
        let text = |value: Option<&str>| {
            value.map_or_else(
                || "NULL".to_owned(),
                |text| format!("'{}'", text.replace('\'', "''")),
            )
        };
        let number =
            |value: Option<u64>| value.map_or_else(|| "NULL".to_owned(), |n| n.to_string());
        let mut sql = String::new();
        for event in events {
            sql.push_str(&format!(
                "INSERT INTO message_events (message_id, at_ms, kind, from_status, to_status, \
                 attempt, result, duration_ms, plugin_name, plugin_digest) VALUES \
                 ('{id}', {at}, '{kind}', {from}, {to}, {attempt}, {result}, {duration}, \
                 {plugin_name}, {plugin_digest});",
                at = event.at_ms,
                kind = event.kind.as_str(),
                from = text(event.from.map(|status| status.as_str())),
                to = text(event.to.map(|status| status.as_str())),
                attempt = number(event.attempt.map(u64::from)),
                result = text(Some(&event.result)),
                duration = number(event.duration_ms),
                plugin_name = text(event.plugin.as_ref().map(|plugin| plugin.name.as_str())),
                plugin_digest = text(event.plugin.as_ref().map(|plugin| plugin.digest.as_str())),
            ));
        }
        self.run(&sql).await;
    }

    /// Seals each of `events` (read from the feed, content put back) whole into its row, as
    /// the previous schema stored every feed event: the body carries the message's content.
    pub(crate) async fn reseal_feed(&self, events: &[FeedEvent]) {
        let keyring = dms::store::crypto::Keyring::parse(ENCRYPTION_KEYS).unwrap();
        let mut sql = String::new();
        for event in events {
            let body = serde_json::to_vec(&event.body).unwrap();
            let record = format!("feed:{}:{}", event.user_id, event.cursor);
            let sealed = keyring.seal(event.tenant_id.as_str(), &record, &body);
            sql.push_str(&format!(
                "UPDATE feed_events SET key_id = '{key_id}', nonce = {nonce}, body = {body} \
                 WHERE tenant_id = '{tenant}' AND user_id = '{user}' AND cursor_no = {cursor};",
                key_id = sealed.key_id,
                nonce = self.bytes(&sealed.nonce),
                body = self.bytes(&sealed.ciphertext),
                tenant = event.tenant_id,
                user = event.user_id,
                cursor = event.cursor,
            ));
        }
        self.run(&sql).await;
    }

    /// A message waiting to be delivered now, as the previous schema stored it: its content
    /// sealed with the test servers' keys. Its id.
    pub(crate) async fn insert_waiting(&self, admin: &Login, bob: &Login) -> String {
        let id = MessageId::new();
        let keyring = dms::store::crypto::Keyring::parse(ENCRYPTION_KEYS).unwrap();
        let sealed = keyring.seal(admin.tenant_id(), id.as_str(), b"from the old schema");
        let now = dms::clock::Clock::System.now_ms();
        self.run(&format!(
            "INSERT INTO messages (id, tenant_id, sender_id, recipient_id, channel, \
             content_type, metadata, key_id, nonce, content, requested_kind, requested_ms, \
             status, deliver_at_ms, attempts, created_at_ms, updated_at_ms) VALUES \
             ('{id}', '{tenant}', '{sender}', '{recipient}', 'inbox', 'text/plain', '{{}}', \
             '{key_id}', {nonce}, {content}, 'none', NULL, 'scheduled', {now}, 0, {now}, {now}); \
             INSERT INTO message_events (message_id, at_ms, kind, to_status, result) \
             VALUES ('{id}', {now}, 'transition', 'scheduled', 'accepted');",
            tenant = admin.tenant_id(),
            sender = admin.user_id(),
            recipient = bob.user_id(),
            key_id = sealed.key_id,
            nonce = self.bytes(&sealed.nonce),
            content = self.bytes(&sealed.ciphertext),
        ))
        .await;
        id.to_string()
    }

    /// A byte string literal of the backend.
    fn bytes(&self, bytes: &[u8]) -> String {
        match self.storage.backend {
            Backend::Sqlite => format!("X'{}'", hex::encode(bytes)),
            Backend::Postgres => format!("'\\x{}'::bytea", hex::encode(bytes)),
        }
    }
}
