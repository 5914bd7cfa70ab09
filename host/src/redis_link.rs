//! The Redis connection shared by everything that uses Redis (rate limits now; the schedule
//! index and cross-node events later), and the key prefix that keeps deployments and tests
//! apart.
//!
//! The connection is lazy and reconnects by itself: the server starts even when Redis is down,
//! and every caller decides what a failed command means for it (rate limits fall back to the
//! node's own limiter; `/health/redis` answers 503).

use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// How long to wait for Redis to accept a connection. Redis runs next to the server; a slow
/// connect means it is down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one command may take before it counts as failed.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// A handle to Redis. Cheap to clone.
#[derive(Clone)]
pub struct RedisLink {
    client: redis::Client,
    manager: ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for RedisLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLink")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisLink {
    /// A link to `url` whose keys all start with `prefix:`. Does not connect yet.
    pub fn new(url: &str, prefix: &str) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        Ok(Self {
            client,
            manager,
            prefix: prefix.to_owned(),
        })
    }

    /// A connection (a cheap clone of the shared multiplexed one).
    pub fn connection(&self) -> ConnectionManager {
        self.manager.clone()
    }

    /// The client, for connections of their own (pub/sub).
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The full key for `parts`: `prefix:part:part…`.
    pub fn key(&self, parts: &[&str]) -> String {
        let mut key = self.prefix.clone();
        for part in parts {
            key.push(':');
            key.push_str(part);
        }
        key
    }

    /// Round-trip time of a `PING`.
    pub async fn ping(&self) -> Result<Duration, redis::RedisError> {
        let started = Instant::now();
        let mut connection = self.connection();
        let _: String = redis::cmd("PING").query_async(&mut connection).await?;
        Ok(started.elapsed())
    }
}
