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
//! | login per username from one address | IP and username | 10 per minute, burst 10 |
//! | login per username, all addresses | username | 100 per minute, burst 100 |
//! | API per user | user id | 50 per second, burst 100 |
//!
//! Login is limited per (username, address) pair rather than per username, so that guessing a
//! user's password from one place never locks the user out elsewhere; the per-username
//! ceiling, ten times higher, bounds guessing spread over many addresses (docs/OPERATIONS.md,
//! "Login"). Usernames are keyed in their normal form (`domain::user::username_key`), so
//! spelling a name differently does not reset its limits.

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
    /// Login attempts per username from one client address (key: [`pair`]).
    LoginPerUsernameFromIp,
    /// Login attempts per username from all addresses together: the ceiling.
    LoginPerUsername,
    /// Authenticated requests per user.
    ApiPerUser,
}

impl Limit {
    const ALL: [Limit; 4] = [
        Self::LoginPerIp,
        Self::LoginPerUsernameFromIp,
        Self::LoginPerUsername,
        Self::ApiPerUser,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::LoginPerIp => "login-ip",
            Self::LoginPerUsernameFromIp => "login-user-ip",
            Self::LoginPerUsername => "login-user",
            Self::ApiPerUser => "api",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::LoginPerIp => 0,
            Self::LoginPerUsernameFromIp => 1,
            Self::LoginPerUsername => 2,
            Self::ApiPerUser => 3,
        }
    }
}

/// The key of [`Limit::LoginPerUsernameFromIp`]: an address and a username. The separator
/// cannot occur in an address (a peer address, or an HTTP header value), so no two pairs share
/// a key.
pub fn pair(ip: &str, username: &str) -> String {
    format!("{ip}\n{username}")
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

/// The rate of each limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rates {
    /// [`Limit::LoginPerIp`].
    pub login_per_ip: Rate,
    /// [`Limit::LoginPerUsernameFromIp`].
    pub login_per_username_from_ip: Rate,
    /// [`Limit::LoginPerUsername`].
    pub login_per_username: Rate,
    /// [`Limit::ApiPerUser`].
    pub api: Rate,
}

impl Rates {
    /// The rates the configuration sets.
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self {
            login_per_ip: Rate::per_minute(config.rate_limit_login_per_ip),
            login_per_username_from_ip: Rate::per_minute(config.rate_limit_login_per_username),
            // Never below the per-address rate, or one address could use up the ceiling and
            // lock the user out again (and a configuration that raised only the per-username
            // rate, from before the ceiling existed, keeps working).
            login_per_username: Rate::per_minute(
                config
                    .rate_limit_login_per_username_global
                    .max(config.rate_limit_login_per_username),
            ),
            api: Rate::per_second(
                config.rate_limit_api_per_second,
                config.rate_limit_api_burst,
            ),
        }
    }

    fn get(&self, limit: Limit) -> Rate {
        match limit {
            Limit::LoginPerIp => self.login_per_ip,
            Limit::LoginPerUsernameFromIp => self.login_per_username_from_ip,
            Limit::LoginPerUsername => self.login_per_username,
            Limit::ApiPerUser => self.api,
        }
    }
}

/// The rate limits of one node.
pub struct RateLimits {
    rates: Rates,
    /// One keyed limiter per [`Limit`], by [`Limit::index`]; keys are hashed as in Redis, so an
    /// entry has a fixed size whatever a client sends as a username.
    local: [DefaultKeyedRateLimiter<String>; 4],
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
    pub fn new(rates: Rates, redis: Option<RedisLink>) -> Self {
        Self {
            local: Limit::ALL.map(|limit| DefaultKeyedRateLimiter::keyed(rates.get(limit).quota())),
            rates,
            redis,
            script: redis::Script::new(GCRA),
            last_warning: AtomicU64::new(0),
        }
    }

    /// Counts one request against `limit` for `key`; `Err(wait)` when it is over the limit.
    pub async fn check(&self, limit: Limit, key: &str) -> Result<(), Duration> {
        let hashed = hex::encode(&Sha256::digest(key.as_bytes())[..16]);
        if let Some(redis) = &self.redis {
            match self.check_redis(redis, limit, &hashed).await {
                Ok(0) => return Ok(()),
                Ok(wait_ms) => return Err(Duration::from_millis(wait_ms)),
                Err(error) => self.warn_redis_failed(&error),
            }
        }
        self.check_local(limit, hashed)
    }

    fn check_local(&self, limit: Limit, hashed: String) -> Result<(), Duration> {
        let limiter = &self.local[limit.index()];
        limiter
            .check_key(&hashed)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    async fn check_redis(
        &self,
        redis: &RedisLink,
        limit: Limit,
        hashed: &str,
    ) -> Result<u64, redis::RedisError> {
        let rate = self.rates.get(limit);
        let key = redis.key(&["rl", limit.name(), hashed]);
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

    #[test]
    fn the_ceiling_is_never_below_the_per_address_rate() {
        let mut config = crate::config::Config::defaults();
        assert_eq!(
            Rates::from_config(&config).login_per_username,
            Rate::per_minute(100)
        );
        config.rate_limit_login_per_username = 1_000;
        assert_eq!(
            Rates::from_config(&config).login_per_username,
            Rate::per_minute(1_000)
        );
    }

    #[tokio::test]
    async fn pairs_of_address_and_username_are_limited_apart() {
        let limits = RateLimits::new(
            Rates {
                login_per_ip: Rate::per_minute(10),
                login_per_username_from_ip: Rate::per_minute(1),
                login_per_username: Rate::per_minute(10),
                api: Rate::per_second(1, 1),
            },
            None,
        );
        let limit = Limit::LoginPerUsernameFromIp;
        assert!(
            limits
                .check(limit, &pair("10.0.0.1", "admin"))
                .await
                .is_ok()
        );
        assert!(
            limits
                .check(limit, &pair("10.0.0.1", "admin"))
                .await
                .is_err()
        );
        assert!(
            limits
                .check(limit, &pair("10.0.0.2", "admin"))
                .await
                .is_ok()
        );
        assert!(limits.check(limit, &pair("10.0.0.1", "bob")).await.is_ok());
    }

    #[tokio::test]
    async fn a_burst_passes_then_the_next_request_waits() {
        let limits = RateLimits::new(
            Rates {
                login_per_ip: Rate::per_minute(3),
                login_per_username_from_ip: Rate::per_minute(1),
                login_per_username: Rate::per_minute(1),
                api: Rate::per_second(1, 1),
            },
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
