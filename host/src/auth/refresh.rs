//! Refresh tokens: 256 random bits, shown to the client once and stored only as a SHA-256
//! hash (a fast hash is right here: the token has full entropy, unlike a password). Rotation
//! and reuse detection live in [`Store::rotate_refresh`](crate::store::Store::rotate_refresh).

use base64::Engine as _;
use sha2::{Digest, Sha256};

/// The prefix that makes refresh tokens recognisable (in logs, in secret scanners).
pub const PREFIX: &str = "rt_";

/// A new refresh token and its hash.
pub fn issue() -> (String, String) {
    let token = format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(crate::random::random_bytes::<32>())
    );
    let hash = hash(&token);
    (token, hash)
}

/// The stored form of a token.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_and_only_hashes_are_kept() {
        let (a, hash_a) = issue();
        let (b, _) = issue();
        assert_ne!(a, b);
        assert!(a.starts_with("rt_") && a.len() == 46);
        assert_eq!(hash(&a), hash_a);
        assert!(!hash_a.contains(&a[3..]));
    }
}
