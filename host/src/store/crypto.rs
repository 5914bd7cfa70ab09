//! Encryption at rest: message content and webhook signing secrets are sealed with
//! AES-256-GCM before they reach the database, so a raw dump shows no plaintext.
//!
//! - A fresh random 96-bit nonce per sealed value. (With random nonces a key should seal fewer
//!   than 2³² values; rotate long before that.)
//! - The tenant id, the record id and the key id are bound as associated data: a ciphertext
//!   moved to another row, tenant or key fails to open with a clear error instead of
//!   decrypting to garbage.
//! - Keys form a ring: the first key seals new values, every key opens the values it sealed,
//!   so rotating means putting a new key first and keeping the old ones until nothing uses
//!   them.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;

/// Bytes in a key.
pub const KEY_BYTES: usize = 32;
/// Bytes in a nonce.
pub const NONCE_BYTES: usize = 12;

/// A sealed value as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// Which key sealed it.
    pub key_id: String,
    /// The nonce.
    pub nonce: Vec<u8>,
    /// Ciphertext and tag.
    pub ciphertext: Vec<u8>,
}

/// Why a value could not be opened, or a key ring not built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The key that sealed the value is not in the ring.
    #[error("the value was sealed with key {0:?}, which is not in DMS_ENCRYPTION_KEYS")]
    UnknownKey(String),
    /// Authentication failed: the ciphertext was altered or belongs to another record.
    #[error(
        "the sealed value does not belong to this record or was altered (authentication failed)"
    )]
    Mismatch,
    /// The key ring setting is malformed.
    #[error("DMS_ENCRYPTION_KEYS: {0}")]
    BadKeys(String),
}

/// The encryption keys.
pub struct Keyring {
    /// `(id, cipher)`, the sealing key first.
    keys: Vec<(String, Aes256Gcm)>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("Keyring").field("key_ids", &ids).finish()
    }
}

impl Keyring {
    /// Parses `id:base64key[,id:base64key…]`; the first key seals new values.
    pub fn parse(text: &str) -> Result<Self, CryptoError> {
        let mut keys = Vec::new();
        for entry in text
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
        {
            let (id, encoded) = entry.split_once(':').ok_or_else(|| {
                CryptoError::BadKeys(format!(
                    "{entry:?} is not ID:BASE64KEY (generate a key with: openssl rand -base64 32)"
                ))
            })?;
            let valid_id = !id.is_empty()
                && id.len() <= 32
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid_id {
                return Err(CryptoError::BadKeys(format!(
                    "key id {id:?} must be 1 to 32 letters, digits, - or _"
                )));
            }
            let key = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|_| CryptoError::BadKeys(format!("key {id:?} is not base64")))?;
            if key.len() != KEY_BYTES {
                return Err(CryptoError::BadKeys(format!(
                    "key {id:?} is {} bytes; AES-256 needs {KEY_BYTES}",
                    key.len()
                )));
            }
            if keys.iter().any(|(existing, _)| existing == id) {
                return Err(CryptoError::BadKeys(format!("key id {id:?} appears twice")));
            }
            let cipher = Aes256Gcm::new_from_slice(&key).expect("a 32-byte key");
            keys.push((id.to_owned(), cipher));
        }
        if keys.is_empty() {
            return Err(CryptoError::BadKeys("no key given".into()));
        }
        Ok(Self { keys })
    }

    /// A new random key, formatted for [`Keyring::parse`] with `id`.
    pub fn generate_entry(id: &str) -> String {
        let key = crate::random::random_bytes::<KEY_BYTES>();
        format!(
            "{id}:{}",
            base64::engine::general_purpose::STANDARD.encode(key)
        )
    }

    fn aad(tenant: &str, record: &str, key_id: &str) -> Vec<u8> {
        format!("dms:v1:{tenant}:{record}:{key_id}").into_bytes()
    }

    /// Seals `plaintext` for `record` of `tenant` with the sealing key.
    pub fn seal(&self, tenant: &str, record: &str, plaintext: &[u8]) -> Sealed {
        let (key_id, cipher) = &self.keys[0];
        let nonce = crate::random::random_bytes::<NONCE_BYTES>();
        let aad = Self::aad(tenant, record, key_id);
        let ciphertext = cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .expect("AES-GCM encryption of a bounded value cannot fail");
        Sealed {
            key_id: key_id.clone(),
            nonce: nonce.to_vec(),
            ciphertext,
        }
    }

    /// Opens a value sealed for `record` of `tenant`.
    pub fn open(
        &self,
        tenant: &str,
        record: &str,
        sealed: &Sealed,
    ) -> Result<Vec<u8>, CryptoError> {
        let (_, cipher) = self
            .keys
            .iter()
            .find(|(id, _)| *id == sealed.key_id)
            .ok_or_else(|| CryptoError::UnknownKey(sealed.key_id.clone()))?;
        let nonce: [u8; NONCE_BYTES] = sealed
            .nonce
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::Mismatch)?;
        let aad = Self::aad(tenant, record, &sealed.key_id);
        cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(entries: &[&str]) -> Keyring {
        Keyring::parse(&entries.join(",")).unwrap()
    }

    #[test]
    fn sealed_values_open_only_for_their_record() {
        let keys = ring(&[&Keyring::generate_entry("k1")]);
        let sealed = keys.seal("ten_a", "msg_1", b"secret text");
        assert!(!sealed.ciphertext.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            keys.open("ten_a", "msg_1", &sealed).unwrap(),
            b"secret text"
        );
        assert_eq!(
            keys.open("ten_a", "msg_2", &sealed),
            Err(CryptoError::Mismatch)
        );
        assert_eq!(
            keys.open("ten_b", "msg_1", &sealed),
            Err(CryptoError::Mismatch)
        );
        let mut tampered = sealed.clone();
        tampered.ciphertext[0] ^= 1;
        assert_eq!(
            keys.open("ten_a", "msg_1", &tampered),
            Err(CryptoError::Mismatch)
        );
        let again = keys.seal("ten_a", "msg_1", b"secret text");
        assert_ne!(again.nonce, sealed.nonce, "a fresh nonce every time");
    }

    #[test]
    fn a_rotated_ring_seals_with_the_new_key_and_opens_old_values() {
        let old = Keyring::generate_entry("k1");
        let before = ring(&[&old]);
        let sealed_before = before.seal("ten_a", "msg_1", b"old");
        let after = ring(&[&Keyring::generate_entry("k2"), &old]);
        assert_eq!(
            after.open("ten_a", "msg_1", &sealed_before).unwrap(),
            b"old"
        );
        assert_eq!(after.seal("ten_a", "msg_2", b"new").key_id, "k2");
        let without_old = ring(&[&Keyring::generate_entry("k2")]);
        assert_eq!(
            without_old.open("ten_a", "msg_1", &sealed_before),
            Err(CryptoError::UnknownKey("k1".into()))
        );
    }

    #[test]
    fn malformed_rings_are_refused_with_the_reason() {
        for (text, reason) in [
            ("", "no key given"),
            ("nokey", "is not ID:BASE64KEY"),
            ("k1:!!!", "is not base64"),
            ("k1:c2hvcnQ=", "AES-256 needs 32"),
            ("bad id:c2hvcnQ=", "must be 1 to 32 letters"),
        ] {
            let error = Keyring::parse(text).unwrap_err().to_string();
            assert!(error.contains(reason), "{text}: {error}");
        }
    }
}
