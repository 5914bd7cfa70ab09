//! Typed, prefixed ids: `ten_…`, `usr_…`, `ses_…`, `msg_…`, `plg_…`, `grp_…`, `fan_…`,
//! `sch_…`. Each is a UUIDv7 (time-ordered, so new rows land at the end of indexes) written as
//! 26 Crockford base32 characters after its prefix.
//!
//! No raw string or UUID id crosses a module boundary: parsing checks the prefix, so a user id
//! can never be passed where a tenant id is expected, and a malformed id in a URL is a plain
//! "not found" rather than a database error. The same types appear in logs and API bodies.

use std::fmt;
use std::str::FromStr;

/// Why a string is not an id of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a valid {kind} id (expected {prefix}_ followed by 26 base32 characters)")]
pub struct InvalidId {
    kind: &'static str,
    prefix: &'static str,
    value: String,
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The id's prefix, without the underscore.
            pub const PREFIX: &'static str = $prefix;

            /// A new, unique id.
            pub fn new() -> Self {
                Self(format!("{}_{}", $prefix, ulid::Ulid::from(uuid::Uuid::now_v7().as_u128())))
            }

            /// The id as text, prefix included.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The id's 128 bits, without the prefix: the compact form kept in Redis.
            pub fn to_bytes(&self) -> [u8; 16] {
                ulid::Ulid::from_string(&self.0[$prefix.len() + 1..])
                    .expect("a parsed id is valid")
                    .0
                    .to_be_bytes()
            }

            /// The smallest id made at `at_ms` (Unix ms): ids begin with their creation time,
            /// so every id made then or later sorts at or after it, every earlier one before.
            pub fn first_at(at_ms: u64) -> Self {
                let mut bytes = [0u8; 16];
                bytes[..6].copy_from_slice(&at_ms.to_be_bytes()[2..]);
                Self::from_bytes(bytes)
            }

            /// The id whose 128 bits are `bytes`.
            pub fn from_bytes(bytes: [u8; 16]) -> Self {
                Self(format!("{}_{}", $prefix, ulid::Ulid(u128::from_be_bytes(bytes))))
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;

            fn from_str(value: &str) -> Result<Self, InvalidId> {
                let valid = value
                    .strip_prefix(concat!($prefix, "_"))
                    .is_some_and(|rest| rest.len() == 26 && ulid::Ulid::from_string(rest).is_ok());
                if valid {
                    Ok(Self(value.to_owned()))
                } else {
                    Err(InvalidId {
                        kind: $kind,
                        prefix: $prefix,
                        value: value.chars().take(64).collect(),
                    })
                }
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }

        /// In the OpenAPI document: a string with the prefix, a pattern and an example.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .description(Some(concat!(
                        "A ", $kind, " id: `", $prefix,
                        "_` and 26 Crockford base32 characters (a UUIDv7)."
                    )))
                    // The first character is at most 7: 26 base32 characters hold 130 bits.
                    .pattern(Some(concat!("^", $prefix, "_[0-7][0-9A-HJKMNP-TV-Z]{25}$")))
                    .examples([concat!($prefix, "_01JD8X3Z6Q9R2V4T7W5Y0B1C3E")])
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {
            fn name() -> std::borrow::Cow<'static, str> {
                std::borrow::Cow::Borrowed(stringify!($name))
            }
        }

        impl<DB: sqlx::Database> sqlx::Type<DB> for $name
        where
            String: sqlx::Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <String as sqlx::Type<DB>>::type_info()
            }

            fn compatible(ty: &DB::TypeInfo) -> bool {
                <String as sqlx::Type<DB>>::compatible(ty)
            }
        }

        impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for $name
        where
            String: sqlx::Encode<'q, DB>,
        {
            fn encode_by_ref(
                &self,
                buf: &mut <DB as sqlx::Database>::ArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <String as sqlx::Encode<'q, DB>>::encode_by_ref(&self.0, buf)
            }
        }

        impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for $name
        where
            String: sqlx::Decode<'r, DB>,
        {
            fn decode(value: <DB as sqlx::Database>::ValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
                let text = <String as sqlx::Decode<'r, DB>>::decode(value)?;
                Ok(text.parse()?)
            }
        }
    };
}

id_type!(
    /// A tenant: the isolation boundary. Every user, session and message belongs to one.
    TenantId, "ten", "tenant"
);
id_type!(
    /// A user of a tenant.
    UserId, "usr", "user"
);
id_type!(
    /// A login session: one refresh-token family.
    SessionId, "ses", "session"
);
id_type!(
    /// A message.
    MessageId, "msg", "message"
);
id_type!(
    /// A plugin a tenant uploaded.
    PluginId, "plg", "plugin"
);
id_type!(
    /// A group of a tenant's users, to send one message to each.
    GroupId, "grp", "group"
);
id_type!(
    /// One submission to a group: the messages it created share it.
    FanOutId, "fan", "fan-out"
);
id_type!(
    /// A recurring schedule.
    ScheduleId, "sch", "schedule"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_their_prefix_and_round_trip() {
        let id = UserId::new();
        assert!(id.as_str().starts_with("usr_"));
        assert_eq!(id.as_str().len(), 30);
        assert_eq!(id.as_str().parse::<UserId>(), Ok(id));
    }

    #[test]
    fn ids_have_a_compact_binary_form() {
        let id = MessageId::new();
        assert_eq!(MessageId::from_bytes(id.to_bytes()), id);
    }

    #[test]
    fn the_first_id_of_a_time_sorts_before_every_id_made_then_or_later() {
        let before = MessageId::new();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let first = MessageId::first_at(now);
        let after = MessageId::new();
        assert!(before < first, "{before} {first}");
        assert!(first <= after, "{first} {after}");
        assert!(MessageId::first_at(now + 60_000) > after);
    }

    #[test]
    fn new_ids_sort_by_creation_time() {
        let first = TenantId::new();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = TenantId::new();
        assert!(first < second);
    }

    #[test]
    fn the_documented_example_is_a_valid_id() {
        let schema = serde_json::to_value(<MessageId as utoipa::PartialSchema>::schema()).unwrap();
        let example = schema["examples"][0].as_str().unwrap();
        assert!(example.parse::<MessageId>().is_ok(), "{example}");
        assert_eq!(schema["pattern"], "^msg_[0-7][0-9A-HJKMNP-TV-Z]{25}$");
        // The pattern's bounds are the parser's: a new id matches it.
        let id = MessageId::new();
        assert!(id.as_str()[4..5] <= *"7", "{id}");
    }

    #[test]
    fn a_user_id_is_not_a_tenant_id() {
        let user = UserId::new();
        let error = user.as_str().parse::<TenantId>().unwrap_err();
        assert!(error.to_string().contains("not a valid tenant id"));
        assert!("usr_nope".parse::<UserId>().is_err());
        assert!("usr_".parse::<UserId>().is_err());
        assert!("'; DROP TABLE users;--".parse::<UserId>().is_err());
    }
}
