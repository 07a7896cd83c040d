//! The input limits of the public API (`docs/API.md`, "Input limits").
//!
//! Lengths count Unicode scalar values after trimming white space, so that
//! a client in any language counts the same way the server does.

use std::fmt;

/// Most characters in a channel or display name.
pub const NAME_MAX: usize = 64;
/// Most characters in a channel description.
pub const DESCRIPTION_MAX: usize = 1024;
/// Most characters in a status text, a channel password or a token label.
pub const SHORT_TEXT_MAX: usize = 128;

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

/// A channel or display name: 1 to 64 characters, no control characters.
/// Returns it trimmed, as it is stored.
pub fn name(field: &'static str, text: &str) -> Result<String, LimitError> {
    let trimmed = text.trim();
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
            problem: format!("has {len} characters; at most {NAME_MAX} are allowed"),
        });
    }
    // Control characters would let one name look like another (or break a
    // client's layout); no real name needs them.
    if trimmed.chars().any(char::is_control) {
        return Err(LimitError {
            field,
            problem: "must not contain control characters".into(),
        });
    }
    Ok(trimmed.to_owned())
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
    }

    #[test]
    fn text_limits_count_after_trimming() {
        assert!(text("status_text", &format!("  {}  ", "x".repeat(128)), 128).is_ok());
        assert!(text("status_text", &"x".repeat(129), 128).is_err());
        assert_eq!(text("status_text", "", 128).unwrap(), "");
    }
}
