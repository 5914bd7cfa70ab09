//! Passwords: argon2id with m = 19 MiB, t = 2, p = 1 (OWASP's first recommended setting).
//!
//! Hashing takes tens of milliseconds of CPU and 19 MiB of memory by design, so it runs on
//! tokio's blocking pool, never on the async workers, and at most [`Passwords::new`]'s
//! `concurrency` at a time: a burst of logins queues instead of exhausting memory.
//!
//! A login for an unknown username is verified against a dummy hash, so it costs the same as a
//! wrong password and its timing does not reveal which usernames exist.

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

/// The shortest password accepted.
pub const MIN_LENGTH: usize = 8;
/// The longest password accepted, in characters (as JSON Schema's `maxLength` counts them, so
/// the API document states the rule exactly); argon2 would happily hash megabytes.
pub const MAX_LENGTH: usize = 1024;

/// Why a password hash could not be made.
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

/// Hashes and verifies passwords.
#[derive(Debug)]
pub struct Passwords {
    permits: Semaphore,
    dummy: String,
}

fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn hash_blocking(password: &str) -> Result<String, HashError> {
    argon2()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|error| HashError(error.to_string()))
}

fn verify_blocking(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            argon2()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

impl Passwords {
    /// A hasher running at most `concurrency` hashes at once.
    pub async fn new(concurrency: usize) -> Result<Self, HashError> {
        let random = hex_string(&crate::random::random_bytes::<16>());
        let dummy = tokio::task::spawn_blocking(move || hash_blocking(&random))
            .await
            .map_err(|error| HashError(error.to_string()))??;
        Ok(Self {
            permits: Semaphore::new(concurrency.max(1)),
            dummy,
        })
    }

    /// The PHC string of `password`.
    pub async fn hash(&self, password: &str) -> Result<String, HashError> {
        let _permit = self.permits.acquire().await.expect("never closed");
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || hash_blocking(&password))
            .await
            .map_err(|error| HashError(error.to_string()))?
    }

    /// Whether `password` matches `hash`; with no hash (unknown user), checks against a dummy
    /// hash and returns false, at the same cost.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> bool {
        let _permit = self.permits.acquire().await.expect("never closed");
        let (password, known, hash) = (
            password.to_owned(),
            hash.is_some(),
            hash.unwrap_or(&self.dummy).to_owned(),
        );
        let matches = tokio::task::spawn_blocking(move || verify_blocking(&password, &hash))
            .await
            .unwrap_or(false);
        known && matches
    }
}

/// Checks a new password's length; the error says what to do.
pub fn check_new(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_LENGTH {
        return Err(format!(
            "the password must have at least {MIN_LENGTH} characters"
        ));
    }
    if password.chars().count() > MAX_LENGTH {
        return Err(format!(
            "the password must have at most {MAX_LENGTH} characters"
        ));
    }
    Ok(())
}

/// Lowercase hex.
pub(crate) fn hex_string(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_unknown_users_never_match() {
        let passwords = Passwords::new(2).await.unwrap();
        let hash = passwords.hash("correct horse").await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(passwords.verify("correct horse", Some(&hash)).await);
        assert!(!passwords.verify("wrong horse", Some(&hash)).await);
        assert!(!passwords.verify("correct horse", None).await);
        assert!(!passwords.verify("x", Some("not a hash")).await);
    }

    #[test]
    fn new_passwords_have_bounds() {
        assert!(check_new("short").is_err());
        assert!(check_new("long enough").is_ok());
        assert!(check_new(&"x".repeat(MAX_LENGTH + 1)).is_err());
        assert!(check_new(&"é".repeat(MAX_LENGTH)).is_ok());
    }
}
