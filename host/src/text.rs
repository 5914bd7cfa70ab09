//! Text that comes from outside the server (a receiver's response, a plugin's reason or log
//! line, a guest's stderr) made safe to store, show and log.
//!
//! Such text ends up in a message's history, its `last_error`, a plugin's disabled reason and
//! the server log. Two kinds of character do harm there:
//! - control characters (Unicode `Cc`: NUL, the C0 and C1 ranges, DEL): PostgreSQL `text`
//!   cannot hold a NUL at all, so one NUL in a receiver's answer made a delivery's outcome
//!   impossible to commit; a newline forges a log line in the text log format; an escape
//!   sequence rewrites an operator's terminal;
//! - bidirectional controls (U+202A–U+202E, U+2066–U+2069, U+200E, U+200F, U+061C): they make
//!   text render in another order than it is stored.
//!
//! [`clean`] writes each of them as a visible escape (`\0`, `\n`, `\u{1b}`), so nothing is
//! lost for whoever debugs the receiver, and leaves every other character as it is.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` must not appear verbatim in stored or logged text.
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

/// `text` with every control and bidirectional-control character written as an escape;
/// borrowed when there is none.
pub fn clean(text: &str) -> Cow<'_, str> {
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut cleaned = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\0' => cleaned.push_str("\\0"),
            '\n' => cleaned.push_str("\\n"),
            '\r' => cleaned.push_str("\\r"),
            '\t' => cleaned.push_str("\\t"),
            c if unsafe_char(c) => {
                let _ = write!(cleaned, "\\u{{{:x}}}", u32::from(c));
            }
            c => cleaned.push(c),
        }
    }
    Cow::Owned(cleaned)
}

/// [`clean`], owned.
pub fn cleaned(text: impl Into<String>) -> String {
    let text = text.into();
    match clean(&text) {
        Cow::Borrowed(_) => text,
        Cow::Owned(cleaned) => cleaned,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_text_is_borrowed_unchanged() {
        for text in ["HTTP 500: bad gateway", "Grüße, 你好 🙂", "", "a\\0b"] {
            assert!(
                matches!(clean(text), Cow::Borrowed(t) if t == text),
                "{text:?}"
            );
        }
    }

    #[test]
    fn control_and_bidi_characters_become_visible_escapes() {
        assert_eq!(clean("bad\0gateway"), "bad\\0gateway");
        assert_eq!(clean("line\nforged: INFO"), "line\\nforged: INFO");
        assert_eq!(clean("\r\t"), "\\r\\t");
        assert_eq!(clean("\u{1b}[31mred"), "\\u{1b}[31mred");
        assert_eq!(clean("\u{7f}\u{85}\u{9f}"), "\\u{7f}\\u{85}\\u{9f}");
        assert_eq!(clean("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(clean("\u{2066}x\u{2069}"), "\\u{2066}x\\u{2069}");
        assert_eq!(cleaned("a\0"), "a\\0");
        assert!(!cleaned("\0\u{1}\u{1f}").chars().any(unsafe_char));
    }
}
