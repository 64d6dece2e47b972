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

/// The key under which a name is unique in a room: its [`skeleton`]. Names
/// that differ only by case, or that only look different, collide.
pub fn name_key(name: &str) -> String {
    skeleton(name)
}

/// What a name looks like, reduced so that two names a person could mistake
/// for each other get the same skeleton.
///
/// In the spirit of Unicode's confusable skeletons (UTS #39), cut down to
/// the look-alikes that matter for short names shown in a chat room, with
/// no tables to load: fullwidth forms become ASCII (`ａ` → `a`); Cyrillic
/// and Greek letters that look Latin become those letters (`а` → `a`,
/// `Ρ` → `P`, `ѕ` → `s`); `I`, `1`, `|` and their look-alikes become `l`,
/// `0` becomes `o`; then the whole name is lowercased (full Unicode
/// lowercase), `i` joins `l` (case is ignored, and `I` looks like `l`) and
/// `rn` becomes `m`. So `bob`, `BOB`, `bоb` (Cyrillic о),
/// `b0b` and `ｂｏｂ` share one skeleton, and so do `Ian` and `lan`.
///
/// Invisible characters need no folding here: [`check_name`] refuses them
/// outright.
///
/// ```
/// use ferry_core::names::skeleton;
///
/// assert_eq!(skeleton("Аlice"), skeleton("alice")); // Cyrillic А
/// assert_eq!(skeleton("paypa1"), skeleton("PayPal"));
/// assert_ne!(skeleton("alice"), skeleton("alicia"));
/// ```
pub fn skeleton(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        let c = fold_confusable(fold_fullwidth(c));
        let c = match c {
            'I' | '1' | '|' | 'ǀ' | 'ℓ' => 'l',
            '0' | 'º' | '°' => 'o',
            c => c,
        };
        out.extend(c.to_lowercase());
    }
    // Letters whose lowercase form is a look-alike of its own; and as case
    // is ignored, `I` is `i` as well as `l`: the three are one letter.
    let out: String = out
        .chars()
        .map(|c| match fold_confusable(c) {
            'i' => 'l',
            c => c,
        })
        .collect();
    out.replace("rn", "m")
}

/// Fullwidth ASCII (U+FF01..=U+FF5E) and the ideographic space become ASCII.
fn fold_fullwidth(c: char) -> char {
    match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFF01 + 0x21).unwrap_or(c),
        '\u{3000}' => ' ',
        c => c,
    }
}

/// Letters of other scripts that look like a Latin letter become it.
fn fold_confusable(c: char) -> char {
    match c {
        // Cyrillic capitals.
        'А' => 'A',
        'В' => 'B',
        'Е' | 'Ё' => 'E',
        'К' => 'K',
        'М' => 'M',
        'Н' => 'H',
        'О' => 'O',
        'Р' => 'P',
        'С' => 'C',
        'Т' => 'T',
        'Х' => 'X',
        'У' | 'Ү' => 'Y',
        'Ѕ' => 'S',
        'І' | 'Ӏ' => 'I',
        'Ј' => 'J',
        'Ԁ' => 'D',
        'Ԛ' => 'Q',
        'Ԝ' => 'W',
        // Cyrillic small letters.
        'а' => 'a',
        'е' => 'e',
        'о' => 'o',
        'р' => 'p',
        'с' => 'c',
        'х' => 'x',
        'у' => 'y',
        'і' => 'i',
        'ѕ' => 's',
        'ј' => 'j',
        'ԁ' => 'd',
        'ԛ' => 'q',
        'ԝ' => 'w',
        'һ' => 'h',
        'ӏ' => 'l',
        'ѵ' => 'v',
        'ɡ' => 'g',
        // Greek capitals.
        'Α' => 'A',
        'Β' => 'B',
        'Ε' => 'E',
        'Ζ' => 'Z',
        'Η' => 'H',
        'Ι' => 'I',
        'Κ' => 'K',
        'Μ' => 'M',
        'Ν' => 'N',
        'Ο' => 'O',
        'Ρ' => 'P',
        'Τ' => 'T',
        'Χ' => 'X',
        'Υ' => 'Y',
        'Ϲ' => 'C',
        // Greek small letters.
        'ο' => 'o',
        'ν' => 'v',
        'ρ' => 'p',
        'α' => 'a',
        'κ' => 'k',
        'χ' => 'x',
        'ϲ' => 'c',
        'ϳ' => 'j',
        'υ' => 'u',
        'ι' => 'i',
        // Latin look-alikes.
        'ı' => 'i',
        'ɑ' => 'a',
        c => c,
    }
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
        | '\u{FFA0}' | '\u{FFF0}'..='\u{FFFB}' | '\u{E0000}'..='\u{E0FFF}' | '\u{2800}'
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

    #[test]
    fn look_alikes_share_a_skeleton() {
        let same = [
            ("alice", "аlice"),    // Cyrillic а
            ("alice", "ALICE"),    // case
            ("ALICE", "АLІСЕ"),    // Cyrillic А, І, С, Е
            ("bob", "bοb"),        // Greek ο
            ("bob", "b0b"),        // digit zero
            ("bob", "ＢＯＢ"),     // fullwidth
            ("paypal", "paypa1"),  // digit one
            ("paypal", "PAYPAI"),  // capital I
            ("Ian", "lan"),        // capital I, small L
            ("modern", "modem"),   // rn, m
            ("POPE", "ΡΟΡΕ"),      // Greek capitals
            ("TAXI", "ΤΑΧΙ"),      // Greek capitals
            ("HYMN", "ΗΥΜΝ"),      // Greek capitals
            ("ZEBRA", "ΖΕΒRΑ"),    // Greek capitals
            ("KIM", "ΚΙΜ"),        // Greek capitals
            ("sjx", "ѕјх"),        // Cyrillic ѕ, ј, х
            ("pcoy", "рсоу"),      // Cyrillic р, с, о, у
            ("ie", "іе"),          // Cyrillic і, е
            ("x y", "x\u{3000}y"), // ideographic space
        ];
        for (a, b) in same {
            assert_eq!(skeleton(a), skeleton(b), "{a:?} vs {b:?}");
        }
        let different = [
            ("alice", "alicia"),
            ("bob", "rob"),
            ("émile", "emile"),
            ("李雷", "李电"),
            ("ab", "a b"),
        ];
        for (a, b) in different {
            assert_ne!(skeleton(a), skeleton(b), "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn invisible_and_zero_width_characters_are_refused() {
        for c in [
            '\u{200B}',
            '\u{200C}',
            '\u{200D}',
            '\u{2060}',
            '\u{FEFF}',
            '\u{00AD}',
            '\u{180E}',
            '\u{034F}',
            '\u{2062}',
            '\u{3164}',
            '\u{FFA0}',
            '\u{115F}',
            '\u{2800}',
            '\u{E0041}',
        ] {
            let name = format!("al{c}ice");
            assert_eq!(
                check_name(&name),
                Err(NameError::ForbiddenChar(c)),
                "U+{:04X}",
                c as u32
            );
        }
    }
}
