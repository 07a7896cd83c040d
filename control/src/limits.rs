//! The input limits of the public API (`docs/API.md`, "Input limits").
//!
//! Lengths count Unicode scalar values after trimming white space, so that
//! a client in any language counts the same way the server does.
//!
//! Error messages quote a client's value through [`Echo`], which repeats at
//! most [`ECHO_MAX`] of its characters: a request may be as large as
//! `server.max_message_bytes`, and an error must not send it back (in the
//! status message, its details, and every log line that prints it).

use std::fmt;

use unicode_normalization::UnicodeNormalization;

/// Most characters in a channel or display name.
pub const NAME_MAX: usize = 64;
/// Most characters in a channel description.
pub const DESCRIPTION_MAX: usize = 1024;
/// Most characters in a status text, a channel password or a token label.
pub const SHORT_TEXT_MAX: usize = 128;

/// Most characters of a client's value that an error message repeats.
pub const ECHO_MAX: usize = 64;

/// A client's value as an error message quotes it: in full (quoted and
/// escaped, as `{:?}` would) when it has at most [`ECHO_MAX`] characters;
/// else its first [`ECHO_MAX`], an ellipsis and its full length.
#[derive(Debug, Clone, Copy)]
pub struct Echo<'a>(pub &'a str);

impl fmt::Display for Echo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(ECHO_MAX) {
            None => write!(f, "{:?}", self.0),
            Some((cut, _)) => {
                let len = self.0.chars().count();
                write!(f, "{:?}… ({len} characters)", &self.0[..cut])
            }
        }
    }
}

/// A field that broke a limit; its Display is the message a client sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitError {
    pub field: &'static str,
    pub problem: String,
}

impl fmt::Display for LimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.field, self.problem)
    }
}

impl std::error::Error for LimitError {}

fn length(text: &str) -> usize {
    text.trim().chars().count()
}

/// A channel or display name as it is stored: trimmed, 1 to 64
/// characters (as sent, and as stored), none of them one that
/// [`forbidden_in_name`] refuses, and with compatibility characters
/// normalised (NFKC).
///
/// NFKC makes compatibility forms (fullwidth letters, ligatures, the
/// ideographic space) the characters they stand for, so that a name that
/// looks like another is stored, shown and compared as that other name. A
/// name whose only difference from its NFKC form is canonical (accents
/// composed or not) is kept as sent: canonically equivalent texts are the
/// same text to Unicode and render alike, and comparisons use
/// [`name_key`] anyway.
pub fn name(field: &'static str, text: &str) -> Result<String, LimitError> {
    let nfkc: String = text.nfkc().collect();
    let stored = if text.nfd().eq(nfkc.nfd()) {
        text
    } else {
        nfkc.as_str()
    };
    // White space at the ends (tabs and newlines included) is trimmed, as
    // before; what is left is checked. Before the emptiness check: a name
    // of invisible characters only is refused for what it contains, which
    // says more than "empty".
    let trimmed = stored.trim();
    if let Some(c) = trimmed.chars().find(|&c| forbidden_in_name(c)) {
        return Err(LimitError {
            field,
            problem: format!(
                "must not contain control, invisible or text-direction characters \
                 (it contains U+{:04X})",
                u32::from(c)
            ),
        });
    }
    // Counted as sent, as a client counts (see the module header) ...
    checked_name(field, text.trim(), "")?;
    // ... and as stored: NFKC may expand a character into several.
    checked_name(field, trimmed, " once normalised (NFKC)")
}

/// A name kept by an earlier version, under the rules it was accepted
/// with (trimmed, 1 to 64 characters, no control characters), unchanged:
/// the channel tree on disk must keep loading after an upgrade, and an
/// admin can rename what the stricter rules of [`name`] would refuse.
pub fn stored_name(field: &'static str, text: &str) -> Result<String, LimitError> {
    let trimmed = text.trim();
    if trimmed.chars().any(char::is_control) {
        return Err(LimitError {
            field,
            problem: "must not contain control characters".into(),
        });
    }
    checked_name(field, trimmed, "")
}

/// `trimmed` if it has 1 to [`NAME_MAX`] characters; `how` says how they
/// were counted, in the message.
fn checked_name(field: &'static str, trimmed: &str, how: &str) -> Result<String, LimitError> {
    let len = trimmed.chars().count();
    if len == 0 {
        return Err(LimitError {
            field,
            problem: "must not be empty".into(),
        });
    }
    if len > NAME_MAX {
        return Err(LimitError {
            field,
            problem: format!("has {len} characters{how}; at most {NAME_MAX} are allowed"),
        });
    }
    Ok(trimmed.to_owned())
}

/// What two names are compared by: NFKC, lower case, NFKC again (lower
/// casing can undo normalisation). "Lobby", "LOBBY" and a fullwidth
/// "Ｌｏｂｂｙ" have one key.
pub fn name_key(name: &str) -> String {
    let folded = name.nfkc().collect::<String>().to_lowercase();
    folded.nfkc().collect()
}

/// Characters no name may contain: they let one name pass for another or
/// for nothing, or turn the text shown around the name.
///
/// - control characters (C0, DEL, C1);
/// - bidirectional embeddings and overrides (U+202A–U+202E) and isolates
///   (U+2066–U+2069), and the invisible direction marks (U+200E, U+200F,
///   U+061C);
/// - zero-width characters: U+200B–U+200D, the word joiner U+2060 and the
///   zero-width no-break space (byte order mark) U+FEFF.
pub fn forbidden_in_name(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{061C}'
                | '\u{200B}'..='\u{200D}'
                | '\u{2060}'
                | '\u{FEFF}'
        )
}

/// Free text of at most `max` characters (counted trimmed), returned trimmed.
pub fn text(field: &'static str, text: &str, max: usize) -> Result<String, LimitError> {
    check_length(field, text, max)?;
    Ok(text.trim().to_owned())
}

/// Checks the length only; for secrets, whose exact bytes must be kept.
pub fn check_length(field: &'static str, text: &str, max: usize) -> Result<(), LimitError> {
    let len = length(text);
    if len > max {
        return Err(LimitError {
            field,
            problem: format!("has {len} characters; at most {max} are allowed"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_counted_in_scalar_values() {
        assert_eq!(name("name", "  Raid Night ").unwrap(), "Raid Night");
        // 64 multi-byte characters are fine; 65 are not.
        assert!(name("name", &"é".repeat(64)).is_ok());
        let err = name("name", &"é".repeat(65)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "name has 65 characters; at most 64 are allowed"
        );
    }

    #[test]
    fn empty_and_blank_names_are_refused() {
        assert_eq!(name("name", "").unwrap_err().problem, "must not be empty");
        assert_eq!(
            name("name", " \t ").unwrap_err().problem,
            "must not be empty"
        );
    }

    #[test]
    fn control_characters_are_refused_in_names() {
        assert!(name("name", "a\u{0007}b").is_err());
        assert!(stored_name("name", "a\u{0007}b").is_err());
    }

    #[test]
    fn invisible_and_direction_characters_are_refused_in_names() {
        for bad in [
            "a\u{200B}b",
            "a\u{200C}b",
            "a\u{200D}b",
            "a\u{2060}b",
            "\u{FEFF}ab",
            "\u{202A}ab",
            "\u{202E}ab",
            "\u{2066}ab",
            "\u{2069}ab",
            "a\u{200F}b",
            "\u{200B}\u{200B}",
            "a\u{0085}b",
        ] {
            let err = name("display_name", bad).unwrap_err();
            assert_eq!(err.field, "display_name");
            assert!(err.problem.contains("U+"), "{bad:?}: {err}");
        }
        // What an earlier version stored keeps loading.
        assert_eq!(stored_name("name", "a\u{200B}b").unwrap(), "a\u{200B}b");
    }

    #[test]
    fn names_are_normalised_to_nfkc_before_they_are_counted() {
        assert_eq!(name("name", "Ｌｏｂｂｙ").unwrap(), "Lobby");
        assert_eq!(name("name", "\u{3000}ﬁle\u{3000}").unwrap(), "file");
        // Canonical differences are kept as sent, and counted as sent.
        let decomposed = "e\u{301}".repeat(32);
        assert_eq!(name("name", &decomposed).unwrap(), decomposed);
        assert!(name("name", &"e\u{301}".repeat(33)).is_err());
        assert_eq!(name_key(&decomposed), name_key(&"é".repeat(32)));
        // A character NFKC expands may not take a name past the limit.
        let expanded = name("name", &"\u{FDFA}".repeat(4)).unwrap_err();
        assert!(expanded.problem.contains("once normalised"), "{expanded}");
        assert_eq!(
            name("name", "\u{3000}\u{3000}").unwrap_err().problem,
            "must not be empty"
        );
        assert_eq!(name_key("Ｌｏｂｂｙ"), name_key("LOBBY"));
        assert_ne!(name_key("Lobby"), name_key("Lobby 2"));
    }

    #[test]
    fn echoes_are_capped_and_name_the_full_length() {
        assert_eq!(Echo("abc").to_string(), "\"abc\"");
        assert_eq!(Echo(&"x".repeat(ECHO_MAX)).to_string().len(), ECHO_MAX + 2);
        let long = "é".repeat(100_000);
        let echoed = Echo(&long).to_string();
        assert!(echoed.starts_with(&format!("\"{}\"…", "é".repeat(ECHO_MAX))));
        assert!(echoed.ends_with("(100000 characters)"), "{echoed}");
    }

    #[test]
    fn text_limits_count_after_trimming() {
        assert!(text("status_text", &format!("  {}  ", "x".repeat(128)), 128).is_ok());
        assert!(text("status_text", &"x".repeat(129), 128).is_err());
        assert_eq!(text("status_text", "", 128).unwrap(), "");
    }
}
