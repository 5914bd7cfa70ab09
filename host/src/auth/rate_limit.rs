//! Rate limits with GCRA (the generic cell rate algorithm): a steady rate plus a burst, with
//! an exact "retry after" for the client.
//!
//! Without Redis the limits are kept in process (`governor`). With Redis they are kept there,
//! under `<prefix>:rl:<limit>:<sha256(key)>`, by one Lua script per check, so they hold across
//! every node; if Redis fails, the node falls back to its own limiter for that check and logs
//! it, rather than refusing everyone or letting everyone through.
//!
//! | limit | key | default |
//! |---|---|---|
//! | login per client address | IP | 30 per minute, burst 30 |
//! | login per username | username | 10 per minute, burst 10 |
//! | API per user | user id | 50 per second, burst 100 |

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use sha2::{Digest, Sha256};

use crate::redis_link::RedisLink;

/// Which limit to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Login attempts per client address.
    LoginPerIp,
    /// Login attempts per username.
    LoginPerUsername,
    /// Authenticated requests per user.
    ApiPerUser,
}

impl Limit {
    fn name(self) -> &'static str {
        match self {
            Self::LoginPerIp => "login-ip",
            Self::LoginPerUsername => "login-user",
            Self::ApiPerUser => "api",
        }
    }
}

/// A steady rate: one cell every `interval`, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Time between cells.
    pub interval: Duration,
    /// Cells available at once.
    pub burst: u32,
}

impl Rate {
    /// `count` per minute, all of them available at once.
    pub fn per_minute(count: u32) -> Self {
        Self {
            interval: Duration::from_secs(60) / count.max(1),
            burst: count.max(1),
        }
    }

    /// `count` per second, with `burst` available at once.
    pub fn per_second(count: u32, burst: u32) -> Self {
        Self {
            interval: Duration::from_secs(1) / count.max(1),
            burst: burst.max(1),
        }
    }

    fn quota(self) -> Quota {
        Quota::with_period(self.interval.max(Duration::from_nanos(1)))
            .expect("a non-zero period")
            .allow_burst(NonZeroU32::new(self.burst).expect("burst is at least 1"))
    }
}

/// GCRA in Redis. Returns 0 when the request conforms (and records it), otherwise the
/// milliseconds until it would. Uses Redis's clock so every node agrees on "now".
const GCRA: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local interval = tonumber(ARGV[1])
local tolerance = interval * (tonumber(ARGV[2]) - 1)
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allowed_at = tat - tolerance
if now < allowed_at then return allowed_at - now end
local next_tat = tat + interval
redis.call('SET', KEYS[1], next_tat, 'PX', next_tat - now + tolerance + 1)
return 0
";

/// The rate limits of one node.
pub struct RateLimits {
    rates: [(Limit, Rate); 3],
    local: [DefaultKeyedRateLimiter<String>; 3],
    redis: Option<RedisLink>,
    script: redis::Script,
    /// When the last "Redis failed" warning was logged (Unix seconds), to log once a minute.
    last_warning: AtomicU64,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("rates", &self.rates)
            .field("redis", &self.redis.is_some())
            .finish_non_exhaustive()
    }
}

impl RateLimits {
    /// Limits with these rates, in Redis when `redis` is given.
    pub fn new(
        login_per_ip: Rate,
        login_per_username: Rate,
        api: Rate,
        redis: Option<RedisLink>,
    ) -> Self {
        let rates = [
            (Limit::LoginPerIp, login_per_ip),
            (Limit::LoginPerUsername, login_per_username),
            (Limit::ApiPerUser, api),
        ];
        Self {
            local: rates.map(|(_, rate)| DefaultKeyedRateLimiter::keyed(rate.quota())),
            rates,
            redis,
            script: redis::Script::new(GCRA),
            last_warning: AtomicU64::new(0),
        }
    }

    fn index(limit: Limit) -> usize {
        match limit {
            Limit::LoginPerIp => 0,
            Limit::LoginPerUsername => 1,
            Limit::ApiPerUser => 2,
        }
    }

    /// Counts one request against `limit` for `key`; `Err(wait)` when it is over the limit.
    pub async fn check(&self, limit: Limit, key: &str) -> Result<(), Duration> {
        if let Some(redis) = &self.redis {
            match self.check_redis(redis, limit, key).await {
                Ok(0) => return Ok(()),
                Ok(wait_ms) => return Err(Duration::from_millis(wait_ms)),
                Err(error) => self.warn_redis_failed(&error),
            }
        }
        self.check_local(limit, key)
    }

    fn check_local(&self, limit: Limit, key: &str) -> Result<(), Duration> {
        let limiter = &self.local[Self::index(limit)];
        limiter
            .check_key(&key.to_owned())
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    async fn check_redis(
        &self,
        redis: &RedisLink,
        limit: Limit,
        key: &str,
    ) -> Result<u64, redis::RedisError> {
        let rate = self.rates[Self::index(limit)].1;
        let hashed = hex::encode(&Sha256::digest(key.as_bytes())[..16]);
        let key = redis.key(&["rl", limit.name(), &hashed]);
        let interval_ms = u64::try_from(rate.interval.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut connection = redis.connection();
        self.script
            .key(key)
            .arg(interval_ms)
            .arg(rate.burst)
            .invoke_async(&mut connection)
            .await
    }

    fn warn_redis_failed(&self, error: &redis::RedisError) {
        let now = crate::clock::Clock::System.now_ms() / 1000;
        let last = self.last_warning.load(Ordering::Relaxed);
        if now >= last + 60
            && self
                .last_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                message = "Redis is unavailable; rate limits fall back to this node's own.",
                %error,
            );
        }
    }

    /// Forgets in-process entries that are back to full capacity; call now and then so keys
    /// (addresses, usernames) do not accumulate.
    pub fn shrink(&self) {
        for limiter in &self.local {
            limiter.retain_recent();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_burst_passes_then_the_next_request_waits() {
        let limits = RateLimits::new(
            Rate::per_minute(3),
            Rate::per_minute(1),
            Rate::per_second(1, 1),
            None,
        );
        for _ in 0..3 {
            assert!(limits.check(Limit::LoginPerIp, "10.0.0.1").await.is_ok());
        }
        let wait = limits
            .check(Limit::LoginPerIp, "10.0.0.1")
            .await
            .unwrap_err();
        assert!(
            wait > Duration::from_secs(15) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        // Other keys and other limits are independent.
        assert!(limits.check(Limit::LoginPerIp, "10.0.0.2").await.is_ok());
        assert!(
            limits
                .check(Limit::LoginPerUsername, "10.0.0.1")
                .await
                .is_ok()
        );
    }
}
