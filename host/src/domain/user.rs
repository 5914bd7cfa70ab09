//! Tenants, users and sessions as the rest of the server sees them.

use serde::{Deserialize, Serialize};

use super::ids::{SessionId, TenantId, UserId};

/// A tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tenant {
    /// Its id.
    pub id: TenantId,
    /// Its unique name, such as `default`.
    pub name: String,
    /// When it was created, Unix ms.
    pub created_at_ms: u64,
}

/// What a user may do in their tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Manages the tenant's users (and, later, its plugins and hooks).
    Admin,
    /// Sends and receives messages.
    Member,
}

impl Role {
    /// The role's name, as stored and as written in tokens.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Member => "member",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "admin" => Ok(Self::Admin),
            "member" => Ok(Self::Member),
            other => Err(format!("unknown role {other:?}; expected admin or member")),
        }
    }
}

/// A user, without secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// Its id.
    pub id: UserId,
    /// Its tenant.
    pub tenant_id: TenantId,
    /// Its login name, unique on the server.
    pub username: String,
    /// A free-form name for people, stored and returned verbatim.
    pub display_name: Option<String>,
    /// Its role in the tenant.
    pub role: Role,
    /// When it was created, Unix ms.
    pub created_at_ms: u64,
}

/// A login session: one family of rotating refresh tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Session {
    /// Its id.
    pub id: SessionId,
    /// The user it belongs to.
    pub user_id: UserId,
    /// The user's tenant.
    pub tenant_id: TenantId,
    /// When it started, Unix ms.
    pub created_at_ms: u64,
    /// When a refresh token of it was last used, Unix ms.
    pub last_used_at_ms: u64,
    /// When it ends unless refreshed, Unix ms.
    pub expires_at_ms: u64,
    /// The client's user agent at login, if it sent one.
    pub user_agent: Option<String>,
    /// The client's address at login.
    pub ip: Option<String>,
}

/// The longest username, in characters.
pub const MAX_USERNAME: usize = 64;

/// Usernames: 1 to 64 characters that a person can read back and type, and that no other
/// username on the server looks like. Refused:
///
/// - whitespace, control, format and private-use characters and unassigned code points (the
///   zero-width space, the word joiner, bidi controls, the soft hyphen: they are invisible, so
///   `ad\u{200B}min` would show as `admin`);
/// - outside ASCII, anything but the letters, marks and digits UTS #39 recommends for
///   identifiers (after NFKC, so fullwidth `ａｄｍｉｎ` is fine: it is `admin`), which also
///   refuses default-ignorable characters such as variation selectors and Hangul fillers;
/// - mixed scripts that are known to be confusable: a name must be single-script or at most
///   "moderately restrictive" (UTS #39 §5.2), so Cyrillic `а` inside `аdmin` is refused, while
///   Latin beside Han, Japanese or Korean is fine.
///
/// ASCII punctuation (`.`, `-`, `_`, `@`, quotes) stays allowed: names are often addresses.
/// Whether a name is taken is for the store: it compares [`username_key`]s and
/// [`username_skeleton`]s.
pub fn check_username(username: &str) -> Result<(), String> {
    use unicode_normalization::UnicodeNormalization as _;
    use unicode_properties::{GeneralCategoryGroup, UnicodeGeneralCategory as _};
    use unicode_security::RestrictionLevelDetection as _;
    use unicode_security::{GeneralSecurityProfile as _, RestrictionLevel};

    let length = username.chars().count();
    if length == 0 || length > MAX_USERNAME {
        return Err(format!(
            "the username must have 1 to {MAX_USERNAME} characters"
        ));
    }
    if let Some(c) = username.chars().find(|c| {
        c.is_whitespace()
            || matches!(
                c.general_category_group(),
                GeneralCategoryGroup::Other | GeneralCategoryGroup::Separator
            )
    }) {
        return Err(format!(
            "the username may not contain spaces, or invisible or control characters such as U+{:04X}",
            u32::from(c)
        ));
    }
    // Each character as NFKC has it (fullwidth `ａ` is `a`), but named as it was given.
    if let Some(c) = username.chars().find(|c| {
        std::iter::once(*c)
            .nfkc()
            .any(|c| !c.is_ascii() && !c.identifier_allowed())
    }) {
        return Err(format!(
            "the username may not contain {c:?} (U+{:04X}): outside ASCII, only letters, marks and digits in common use are allowed",
            u32::from(c)
        ));
    }
    // ASCII punctuation is common to every script; the restriction level is about the rest.
    let letters: String = username.nfkc().filter(|c| c.identifier_allowed()).collect();
    if !letters
        .as_str()
        .check_restriction_level(RestrictionLevel::ModeratelyRestrictive)
    {
        return Err(
            "the username mixes scripts whose letters look alike (such as Latin and Cyrillic); write it in one script"
                .into(),
        );
    }
    Ok(())
}

/// The form in which usernames are compared: Unicode compatibility caseless matching
/// (NFD, case folding, NFKD, case folding again; Unicode §3.13, D146), composed (NFKC) to
/// store. `Admin`, `ADMIN`, fullwidth `ａｄｍｉｎ` and `admin` share one key, and so do the
/// NFC and NFD spellings of `José`. Login looks the name up by it; the database keeps it unique.
pub fn username_key(username: &str) -> String {
    use caseless::Caseless as _;
    use unicode_normalization::UnicodeNormalization as _;

    username
        .chars()
        .nfd()
        .default_case_fold()
        .nfkd()
        .default_case_fold()
        .nfkc()
        .collect()
}

/// The UTS #39 confusable skeleton of a username's key: two names with one skeleton look
/// alike (`асе` in Cyrillic and `ace` in Latin; `paypa1` and `paypal`), so the database keeps
/// it unique too, and the second such name is refused.
pub fn username_skeleton(username: &str) -> String {
    unicode_security::skeleton(&username_key(username)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equivalent_spellings_share_one_key() {
        for same in ["Admin", "ADMIN", "ａｄｍｉｎ", "ＡＤＭＩＮ", "admin"] {
            assert_eq!(username_key(same), "admin", "{same}");
        }
        assert_eq!(username_key("Jos\u{e9}"), username_key("Jose\u{301}"));
        assert_eq!(username_key("stra\u{df}e"), username_key("STRASSE"));
        assert_ne!(username_key("bob"), username_key("bobby"));
    }

    #[test]
    fn look_alikes_share_one_skeleton() {
        // Cyrillic а, с, е.
        assert_eq!(
            username_skeleton("\u{430}\u{441}\u{435}"),
            username_skeleton("ace")
        );
        assert_eq!(username_skeleton("\u{430}dmin"), username_skeleton("admin"));
        assert_eq!(username_skeleton("paypa1"), username_skeleton("paypal"));
        assert_ne!(username_skeleton("alice"), username_skeleton("bob"));
    }

    #[test]
    fn what_a_username_may_hold() {
        for fine in [
            "bob",
            "bob.smith@example.com",
            "o'brien",
            "ａｄｍｉｎ",
            "José",
            "Jose\u{301}",
            "Straße",
            "иван",
            "Ελένη",
            "田中tanaka",
            "محمد",
        ] {
            assert_eq!(check_username(fine), Ok(()), "{fine}");
        }
        for (refused, why) in [
            ("", "1 to 64"),
            ("a b", "spaces"),
            ("ad\u{200B}min", "U+200B"),
            ("ad\u{2060}min", "U+2060"),
            ("ad\u{200D}min", "U+200D"),
            ("admin\u{202E}", "U+202E"),
            ("ad\u{AD}min", "U+00AD"),
            ("a\u{0}b", "U+0000"),
            ("a\u{E000}", "U+E000"),
            ("a\u{FE0F}", "U+FE0F"),
            ("\u{3164}admin", "U+3164"),
            ("admin\u{1F600}", "U+1F600"),
            ("\u{430}dmin", "mixes scripts"),
            ("\u{3b1}lpha", "mixes scripts"),
        ] {
            let error = check_username(refused).unwrap_err();
            assert!(error.contains(why), "{refused:?}: {error}");
        }
        assert!(check_username(&"a".repeat(MAX_USERNAME)).is_ok());
        assert!(check_username(&"a".repeat(MAX_USERNAME + 1)).is_err());
    }
}
