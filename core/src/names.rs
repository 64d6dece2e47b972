//! User and room names: what is allowed, and when two names are the same.

use alloc::string::String;
use alloc::vec::Vec;
use thiserror::Error;
use unicode_script::{Script, UnicodeScript};
use unicode_security::mixed_script::AugmentedScriptSet;
use unicode_security::skeleton;

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
    /// Letters of scripts that UTS #39's Highly Restrictive level does not
    /// allow together (see [`check_name_scripts`]); the scripts, in order.
    #[error(
        "name mixes letters of {0}: use one script (Latin may go with Han, Japanese kana or Hangul)"
    )]
    MixedScripts(String),
}

/// Checks a user or room name: [`check_name_characters`], then
/// [`check_name_scripts`].
pub fn check_name(name: &str) -> Result<(), NameError> {
    check_name_characters(name)?;
    check_name_scripts(name)
}

/// Checks what a name is made of: 1 to 32 printable characters, spaces only
/// inside, no control or format characters (bidi overrides, zero-width
/// characters) that could hide or disguise what others see.
pub fn check_name_characters(name: &str) -> Result<(), NameError> {
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

/// Checks that a name's letters are of one script, as UTS #39's *Highly
/// Restrictive* level has it (section 5.2): the characters' augmented
/// script sets (Script_Extensions, with Han standing for Japanese, Korean
/// and Han with Bopomofo too) have a script in common, or the characters
/// that are not Latin have Japanese (Han, Hiragana, Katakana), Korean (Han,
/// Hangul) or Han with Bopomofo in common. Characters of no particular
/// script (digits, punctuation, symbols, emoji, combining marks) go with
/// any script. So `Zoë`, `李雷`, `山田 Taro`, `Мария` and `b0b_42` pass;
/// `bօb` (Latin with an Armenian օ) and `Аlice` (a Cyrillic А) do not.
///
/// ```
/// use ferry_core::names::{check_name_scripts, NameError};
///
/// assert_eq!(check_name_scripts("Zoë 山田たろう"), Ok(()));
/// assert!(matches!(check_name_scripts("b\u{585}b"), Err(NameError::MixedScripts(_))));
/// ```
pub fn check_name_scripts(name: &str) -> Result<(), NameError> {
    let mut all = AugmentedScriptSet::default();
    let mut beside_latin = AugmentedScriptSet::default();
    for c in name.chars() {
        let set = AugmentedScriptSet::for_char(c);
        all.intersect_with(set);
        if !set.base.contains_script(Script::Latin) {
            beside_latin.intersect_with(set);
        }
    }
    if !all.is_empty() || beside_latin.jpan || beside_latin.kore || beside_latin.hanb {
        return Ok(());
    }
    let mut scripts: Vec<&str> = Vec::new();
    for c in name.chars() {
        let script = c.script();
        if !matches!(script, Script::Common | Script::Inherited | Script::Unknown)
            && !scripts.contains(&script.full_name())
        {
            scripts.push(script.full_name());
        }
    }
    Err(NameError::MixedScripts(scripts.join(", ")))
}

/// The key under which a name is unique in a room: names with equal keys
/// look alike, or differ only by case, and cannot be in one room at once.
/// The one definition of "the same name"; rooms are matched by it too.
///
/// `key(name) = tailor(skeleton(lowercase(skeleton(name))))`, where
/// `skeleton` is UTS #39's confusable skeleton (section 4: NFD, each
/// character replaced by its prototype from `confusables.txt`, NFD again;
/// the data of Unicode 18.0.0, from the `unicode-security` crate),
/// `lowercase` is Unicode's full default lowercase mapping, and `tailor`
/// replaces `i` by `l`, and U+13C1 CHEROKEE LETTER NE and its small form
/// U+AB91 by `n`.
///
/// Why in this order: the first skeleton takes every look-alike UTS #39
/// knows to its prototype, capitals included (Greek `Υ` is `Y`, Cherokee
/// `Ꭺ` is `A`), so any two names UTS #39 calls confusable get one key;
/// lowercasing then ignores case, and the second skeleton folds what
/// lowercasing produced (`M` → `m` → `rn`). `tailor` closes two gaps:
/// UTS #39 takes `I` to `l` while case makes `I` an `i`, so `i` and `l`
/// must share a key for `ADMIN`, `admin` and `ADMlN` to collide; and
/// `confusables.txt` has no entry for the Cherokee `Ꮑ`, which the
/// adversarial review used as the `n` of `ᎪᎠᎷᎥᏁ` ("ADMIN"). No NFKC step:
/// the skeleton already maps the compatibility forms that look alike
/// (fullwidth, mathematical letters, ligatures), and NFKC first would undo
/// some of its mappings (U+03F2 `ϲ`, confusable with `c`, is `ς` in NFKC).
///
/// ```
/// use ferry_core::names::name_key;
///
/// for look_alike in ["Bob", "BOB", "𝖻𝗈𝖻", "bᴏb", "b\u{585}b", "b0b", "ｂｏｂ"] {
///     assert_eq!(name_key(look_alike), name_key("bob"), "{look_alike}");
/// }
/// assert_eq!(name_key("ᎪᎠᎷᎥᏁ"), name_key("admin"));
/// assert_ne!(name_key("alice"), name_key("alicia"));
/// ```
pub fn name_key(name: &str) -> String {
    let first: String = skeleton(name).collect();
    skeleton(&first.to_lowercase()).map(tailor).collect()
}

/// ferry's additions to the UTS #39 data; see [`name_key`].
fn tailor(c: char) -> char {
    match c {
        'i' => 'l',
        '\u{13C1}' | '\u{AB91}' => 'n',
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
        // Every ASCII letter and digit, and every Latin-1 and Latin
        // Extended-A letter, shares its key with its other case; but for
        // those whose cases UTS #39 sees as unlike each other: `ß` (`SS`),
        // `ð` (`Ð`, a barred D) and `ſ` (long s, like an `f`; `S`).
        for c in ('\u{20}'..='\u{7E}').chain('\u{C0}'..='\u{17F}') {
            if matches!(c, 'ß' | 'Ð' | 'ð' | 'ſ') || !c.is_alphanumeric() {
                continue;
            }
            let (lower, upper) = (c.to_lowercase().to_string(), c.to_uppercase().to_string());
            assert_eq!(name_key(&lower), name_key(&upper), "{c:?}");
        }
    }

    /// The look-alikes the adversarial review got admitted next to `bob`,
    /// `alice` and `admin`, and the ones the hand-made table caught before.
    #[test]
    fn look_alikes_share_a_key() {
        let same = [
            ("bob", "b\u{585}b"),      // Armenian small oh
            ("bob", "𝖻𝗈𝖻"),            // mathematical sans-serif
            ("bob", "b\u{1D0F}b"),     // small capital O
            ("alice", "a\u{217C}ice"), // small roman numeral fifty
            ("admin", "admi\u{578}"),  // Armenian small vo
            ("admin", "ᎪᎠᎷᎥᏁ"),        // Cherokee
            ("ADMIN", "ᎪᎠᎷᎥᏁ"),        // Cherokee
            ("ADMIN", "ADMlN"),        // small L for capital I
            ("alice", "аlice"),        // Cyrillic а
            ("alice", "ALICE"),        // case
            ("ALICE", "АLІСЕ"),        // Cyrillic А, І, С, Е
            ("bob", "bοb"),            // Greek ο
            ("bob", "b0b"),            // digit zero
            ("bob", "ＢＯＢ"),         // fullwidth
            ("Bob", "BOB"),            // case
            ("paypal", "paypa1"),      // digit one
            ("paypal", "PAYPAI"),      // capital I
            ("paypal", "ΡΑΥΡΑL"),      // Greek capitals
            ("Ian", "lan"),            // capital I, small L
            ("modern", "modem"),       // rn, m
            ("POPE", "ΡΟΡΕ"),          // Greek capitals
            ("TAXI", "ΤΑΧΙ"),          // Greek capitals
            ("sjx", "ѕјх"),            // Cyrillic ѕ, ј, х
            ("pcoy", "рсоу"),          // Cyrillic р, с, о, у
        ];
        for (a, b) in same {
            assert_eq!(name_key(a), name_key(b), "{a:?} vs {b:?}");
        }
        let different = [
            ("alice", "alicia"),
            ("bob", "rob"),
            ("émile", "emile"),
            ("李雷", "李电"),
            ("ab", "a b"),
            ("bob", "bob2"),
        ];
        for (a, b) in different {
            assert_ne!(name_key(a), name_key(b), "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn scripts_are_not_mixed() {
        for name in [
            "alice",
            "Zoë",
            "李雷",
            "山田 Taro",
            "やまだ太郎",
            "김민준 Kim",
            "Мария",
            "Ελένη",
            "b0b_42",
            "🦀 crab",
            "𝖻𝗈𝖻",
            "ᎪᎠᎷᎥᏁ",
            "José 李",
        ] {
            assert_eq!(check_name(name), Ok(()), "{name}");
        }
        for (name, scripts) in [
            ("b\u{585}b", "Latin, Armenian"),
            ("admi\u{578}", "Latin, Armenian"),
            ("\u{410}lice", "Cyrillic, Latin"),
            ("alpha α", "Latin, Greek"),
            ("Ꭺlice", "Cherokee, Latin"),
            ("Мария Ελένη", "Cyrillic, Greek"),
            ("김 やまだ", "Hangul, Hiragana"),
        ] {
            assert_eq!(
                check_name(name),
                Err(NameError::MixedScripts(scripts.to_string())),
                "{name}"
            );
        }
    }

    /// The confusable data is part of the protocol (PROTOCOL.md §6.2 names
    /// its version): a new version must be a deliberate change.
    #[test]
    fn the_confusable_data_is_the_documented_version() {
        assert_eq!(unicode_security::UNICODE_VERSION, (18, 0, 0));
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
