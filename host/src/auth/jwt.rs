//! Access tokens: HS256 JWTs, 15 minutes by default.
//!
//! Only HS256 is accepted: a token whose header names any other algorithm (`none` included)
//! is refused before its signature is looked at. Every claim is required. Expiry is checked
//! against the server's [`Clock`] (so tests can move time) with a small leeway for clock skew
//! between nodes. A valid signature is not enough: the API also checks that the token's
//! session (`sid`) is still live, so logout and user deletion take effect at once.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::domain::ids::{SessionId, TenantId, UserId};
use crate::domain::user::{Role, User};

/// Seconds of clock skew tolerated between the node that issued a token and the one checking.
pub const LEEWAY_SECONDS: u64 = 30;

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// The user.
    pub sub: UserId,
    /// The user's tenant.
    pub tid: TenantId,
    /// The session the token belongs to.
    pub sid: SessionId,
    /// The user's role when the token was issued.
    pub role: Role,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// Expires at, Unix seconds.
    pub exp: u64,
    /// A unique id for this token.
    pub jti: String,
}

/// Why a token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Well-formed and signed, but past its expiry.
    #[error("the access token has expired; refresh it with POST /auth/refresh")]
    Expired,
    /// Anything else: bad signature, wrong algorithm, issuer or audience, missing claims.
    #[error("the access token is invalid: {0}")]
    Invalid(String),
}

/// Issues and verifies access tokens.
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
    ttl_seconds: u64,
    clock: Clock,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("ttl_seconds", &self.ttl_seconds)
            .finish_non_exhaustive()
    }
}

impl Tokens {
    /// Tokens signed with `secret`.
    pub fn new(
        secret: &[u8],
        issuer: &str,
        audience: &str,
        ttl_seconds: u64,
        clock: Clock,
    ) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["iss", "aud", "sub", "iat", "exp", "jti"]);
        // Expiry is checked below, against our clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            ttl_seconds,
            clock,
        }
    }

    /// How long a new token lives, in seconds.
    pub fn ttl_seconds(&self) -> u64 {
        self.ttl_seconds
    }

    /// A signed token for `user` in `session`.
    pub fn issue(&self, user: &User, session: &SessionId) -> String {
        let now = self.clock.now_ms() / 1000;
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: user.id.clone(),
            tid: user.tenant_id.clone(),
            sid: session.clone(),
            role: user.role,
            iat: now,
            exp: now + self.ttl_seconds,
            jti: ulid::Ulid::from(uuid::Uuid::now_v7().as_u128()).to_string(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing with a byte secret cannot fail")
    }

    /// The claims of a valid, unexpired token.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|error| TokenError::Invalid(error.to_string()))?;
        let claims = data.claims;
        let now = self.clock.now_ms() / 1000;
        if claims.exp + LEEWAY_SECONDS <= now {
            return Err(TokenError::Expired);
        }
        if claims.iat > now + LEEWAY_SECONDS {
            return Err(TokenError::Invalid("it was issued in the future".into()));
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn user() -> User {
        User {
            id: UserId::new(),
            tenant_id: TenantId::new(),
            username: "alice".into(),
            display_name: None,
            role: Role::Member,
            created_at_ms: 0,
        }
    }

    fn tokens(clock: &Clock) -> Tokens {
        Tokens::new(&[7; 32], "dms", "dms-api", 900, clock.clone())
    }

    #[test]
    fn a_token_verifies_until_it_expires() {
        let clock = Clock::manual(1_700_000_000_000);
        let tokens = tokens(&clock);
        let user = user();
        let token = tokens.issue(&user, &SessionId::new());
        let claims = tokens.verify(&token).unwrap();
        assert_eq!(claims.sub, user.id);
        assert_eq!(claims.exp - claims.iat, 900);
        clock.advance((900 + LEEWAY_SECONDS) * 1000);
        assert_eq!(tokens.verify(&token), Err(TokenError::Expired));
    }

    #[test]
    fn other_secrets_issuers_audiences_and_algorithms_are_refused() {
        let clock = Clock::manual(1_700_000_000_000);
        let token = tokens(&clock).issue(&user(), &SessionId::new());
        let other_secret = Tokens::new(&[8; 32], "dms", "dms-api", 900, clock.clone());
        let other_audience = Tokens::new(&[7; 32], "dms", "other", 900, clock.clone());
        let other_issuer = Tokens::new(&[7; 32], "evil", "dms-api", 900, clock.clone());
        for verifier in [&other_secret, &other_audience, &other_issuer] {
            assert!(matches!(
                verifier.verify(&token),
                Err(TokenError::Invalid(_))
            ));
        }

        // The same claims with `alg: none` and no signature.
        let payload = token.split('.').nth(1).unwrap();
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(r#"{"alg":"none","typ":"JWT"}"#);
        let unsigned = format!("{header}.{payload}.");
        assert!(matches!(
            tokens(&clock).verify(&unsigned),
            Err(TokenError::Invalid(_))
        ));
    }
}
