//! User and room names: what is allowed, and when two names are the same.

use thiserror::Error;

/// Longest user or room name, in characters (Unicode scalar values).
pub const MAX_NAME_CHARS: usize = 32;

/// The room a client joins when it names none.
pub const DEFAULT_ROOM: &str = "lobby";

/// Why a user or room name was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    #[error("name is empty")]
    Empty,
    /// More than [`MAX_NAME_CHARS`] characters.
    #[error("name has {0} characters, at most {MAX_NAME_CHARS} are allowed")]
    TooLong(usize),
    /// A control, format or invisible character, or whitespace other than a space.
    #[error("name contains the character {0:?}, which is not allowed")]
    ForbiddenChar(char),
    /// Starts or ends with a space.
    #[error("name starts or ends with a space")]
    OuterSpace,
}

/// Checks a user or room name: 1 to 32 printable characters, spaces only
/// inside, no control or format characters (bidi overrides, zero-width
/// characters) that could hide or disguise what others see.
pub fn check_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    let chars = name.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(NameError::TooLong(chars));
    }
    if let Some(c) = name.chars().find(|&c| !is_printable(c)) {
        return Err(NameError::ForbiddenChar(c));
    }
    if name.starts_with(' ') || name.ends_with(' ') {
        return Err(NameError::OuterSpace);
    }
    Ok(())
}

/// The key under which a name is unique: names that differ only by case
/// collide.
pub fn name_key(name: &str) -> String {
    name.to_lowercase()
}

fn is_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    // Unicode format (Cf) and other invisible characters that reorder or hide
    // text: a name must look like what it is.
    !matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{FFF0}'..='\u{FFFB}' | '\u{E0000}'..='\u{E0FFF}'
        | '\u{0600}'..='\u{0605}' | '\u{06DD}' | '\u{070F}' | '\u{110BD}'
        | '\u{1D173}'..='\u{1D17A}'
    ) && !matches!(c, '\u{E000}'..='\u{F8FF}' | '\u{F0000}'..='\u{10FFFF}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for name in ["alice", "Bob Smith", "李雷", "émile", "x", "a-b_c.d", "🦀"] {
            assert_eq!(check_name(name), Ok(()), "{name}");
        }
        assert_eq!(check_name(&"a".repeat(32)), Ok(()));
    }

    #[test]
    fn refuses_hostile_names() {
        assert_eq!(check_name(""), Err(NameError::Empty));
        assert_eq!(check_name(&"a".repeat(33)), Err(NameError::TooLong(33)));
        assert_eq!(check_name(" alice"), Err(NameError::OuterSpace));
        assert_eq!(check_name("alice "), Err(NameError::OuterSpace));
        for (name, bad) in [
            ("a\nb", '\n'),
            ("a\tb", '\t'),
            ("\u{1b}[31mred", '\u{1b}'),
            ("ad\u{202E}nim", '\u{202E}'),
            ("al\u{200B}ice", '\u{200B}'),
            ("a\u{0}", '\u{0}'),
            ("a\u{a0}b", '\u{a0}'),
            ("a\u{85}b", '\u{85}'),
        ] {
            assert_eq!(
                check_name(name),
                Err(NameError::ForbiddenChar(bad)),
                "{name:?}"
            );
        }
    }

    #[test]
    fn keys_ignore_case() {
        assert_eq!(name_key("Alice"), name_key("aLICE"));
        assert_ne!(name_key("alice"), name_key("alice2"));
    }
}
