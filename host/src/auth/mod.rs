//! Authentication: passwords, access tokens, refresh tokens and rate limits.
//!
//! - [`password`]: argon2id hashing on the blocking pool, with equal cost for unknown users;
//! - [`jwt`]: HS256 access tokens (and nothing but HS256);
//! - [`refresh`]: opaque refresh tokens, stored only as hashes;
//! - [`rate_limit`]: GCRA limits, in process or in Redis.

pub mod jwt;
pub mod password;
pub mod rate_limit;
pub mod refresh;
