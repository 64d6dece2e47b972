//! Whether a file name offered by a peer is safe to create in an inbox.
//!
//! A file name comes from an untrusted peer and ends up as a path on the
//! receiver's disk and as text on its terminal. Past transfer tools have been
//! made to write `~/.ssh/authorized_keys` through `../` (croc,
//! GHSA-364c-vvqx-446c) and to hide what they wrote behind ANSI escapes. So
//! [`check_file_name`] accepts only a single, plain path component that is
//! the same file on Linux, macOS and Windows, and refuses everything else
//! with an error that names the reason and quotes the offending part
//! escaped, so the message itself is safe to print.
//!
//! Refused: empty names and names over [`MAX_FILE_NAME_BYTES`]; `.`, `..` and
//! names of only dots and spaces; path separators of any platform (`/`, `\`)
//! and `:` (drive letters, NTFS streams); control characters (including NUL,
//! newlines, ESC and the C1 range) and invisible characters that reorder or
//! hide text (bidi controls, zero-width characters); the characters Windows
//! reserves (`< > " | ? *`); a leading space and a trailing dot or space
//! (which Windows strips, so two names would be one file); and Windows device
//! names (`CON`, `PRN`, `AUX`, `NUL`, `COM0`–`COM9`, `LPT0`–`LPT9`,
//! `CONIN$`, `CONOUT$`) in any case and with any extension.

use alloc::string::{String, ToString};
use core::fmt;
use thiserror::Error;

/// Longest file name accepted, in bytes of UTF-8 (the limit of common file
/// systems for one component).
pub const MAX_FILE_NAME_BYTES: usize = 255;

/// Why a file name was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FileNameError {
    /// The name is empty.
    #[error("file name is empty")]
    Empty,
    /// The name is over [`MAX_FILE_NAME_BYTES`] bytes.
    #[error("file name is {0} bytes long; at most {MAX_FILE_NAME_BYTES} are allowed")]
    TooLong(usize),
    /// `.`, `..`, or only dots and spaces: not a file of its own.
    #[error("file name {0} names a directory, not a file")]
    DotsOnly(Escaped),
    /// A `/` or `\`: the name would reach into another directory.
    #[error("file name {name} contains the path separator {separator:?}")]
    PathSeparator {
        /// The name, escaped.
        name: Escaped,
        /// The separator found.
        separator: char,
    },
    /// A `:`: a drive letter or an NTFS alternate data stream on Windows.
    #[error("file name {0} contains ':', a drive or stream separator on Windows")]
    Colon(Escaped),
    /// A control character (NUL, newline, ESC, DEL, C1, ...).
    #[error("file name {name} contains the control character {found}")]
    ControlChar {
        /// The name, escaped.
        name: Escaped,
        /// The character, escaped.
        found: Escaped,
    },
    /// An invisible character that hides or reorders text.
    #[error("file name {name} contains the invisible character {found}")]
    InvisibleChar {
        /// The name, escaped.
        name: Escaped,
        /// The character, escaped.
        found: Escaped,
    },
    /// A character Windows does not allow in names.
    #[error("file name {name} contains {found:?}, which Windows does not allow")]
    ReservedChar {
        /// The name, escaped.
        name: Escaped,
        /// The character.
        found: char,
    },
    /// Starts with a space, or ends with a dot or a space.
    #[error("file name {0} starts with a space or ends with a dot or space")]
    BadEnds(Escaped),
    /// A Windows device name such as `CON` or `aux.txt`.
    #[error("file name {0} is a Windows device name")]
    DeviceName(Escaped),
}

/// Text from a peer, shown with every control or invisible character escaped
/// (`"a\u{1b}[31m"`), so that printing it cannot drive a terminal.
#[derive(Clone, PartialEq, Eq)]
pub struct Escaped(String);

impl Escaped {
    /// `text` to be shown escaped (and cut after 80 characters).
    pub fn new(text: &str) -> Self {
        // Long names are cut in the message, not in the check.
        const SHOWN: usize = 80;
        let mut shown: String = text.chars().take(SHOWN).collect();
        if shown.len() < text.len() {
            shown.push('…');
        }
        Escaped(shown)
    }
}

impl fmt::Display for Escaped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for c in self.0.chars() {
            if c == '…' {
                f.write_str("…")?;
            } else if c.is_control() || is_invisible(c) || c == '"' || c == '\\' {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        f.write_str("\"")
    }
}

impl fmt::Debug for Escaped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Returns `name` unchanged if it is safe to create as a file inside a
/// receiving folder on any common platform, or says why not.
///
/// ```
/// use ferry_core::filename::{check_file_name, FileNameError};
///
/// assert_eq!(check_file_name("报告 2024.pdf"), Ok("报告 2024.pdf"));
/// assert!(matches!(check_file_name("../.ssh/authorized_keys"),
///     Err(FileNameError::PathSeparator { .. })));
/// assert!(matches!(check_file_name("aux.txt"), Err(FileNameError::DeviceName(_))));
/// ```
pub fn check_file_name(name: &str) -> Result<&str, FileNameError> {
    if name.is_empty() {
        return Err(FileNameError::Empty);
    }
    if name.len() > MAX_FILE_NAME_BYTES {
        return Err(FileNameError::TooLong(name.len()));
    }
    let escaped = || Escaped::new(name);
    for c in name.chars() {
        match c {
            '/' | '\\' => {
                return Err(FileNameError::PathSeparator {
                    name: escaped(),
                    separator: c,
                })
            }
            ':' => return Err(FileNameError::Colon(escaped())),
            c if c.is_control() => {
                return Err(FileNameError::ControlChar {
                    name: escaped(),
                    found: Escaped(c.to_string()),
                })
            }
            c if is_invisible(c) => {
                return Err(FileNameError::InvisibleChar {
                    name: escaped(),
                    found: Escaped(c.to_string()),
                })
            }
            '<' | '>' | '"' | '|' | '?' | '*' => {
                return Err(FileNameError::ReservedChar {
                    name: escaped(),
                    found: c,
                })
            }
            _ => {}
        }
    }
    if name.chars().all(|c| c == '.' || c == ' ') {
        return Err(FileNameError::DotsOnly(escaped()));
    }
    if name.starts_with(' ') || name.ends_with(['.', ' ']) {
        return Err(FileNameError::BadEnds(escaped()));
    }
    if is_device_name(name) {
        return Err(FileNameError::DeviceName(escaped()));
    }
    Ok(name)
}

/// Whether [`check_file_name`] accepts `name`.
pub fn is_safe_file_name(name: &str) -> bool {
    check_file_name(name).is_ok()
}

/// Characters that are invisible or reorder the text around them: a name
/// with them can display as a different name.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{FFF0}'..='\u{FFFB}' | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// Windows opens a device, not a file, for these names — whatever the case,
/// whatever follows the first dot, and with spaces before it ignored.
fn is_device_name(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or(name).trim_end_matches(' ');
    let upper = stem.to_uppercase();
    match upper.as_str() {
        "CON" | "PRN" | "AUX" | "NUL" | "CONIN$" | "CONOUT$" => true,
        _ => {
            let Some(rest) = upper.strip_prefix("COM").or(upper.strip_prefix("LPT")) else {
                return false;
            };
            let mut digits = rest.chars();
            matches!(
                (digits.next(), digits.next()),
                (Some('0'..='9' | '¹' | '²' | '³'), None)
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_ordinary_names() {
        for name in [
            "report.pdf",
            "报告.pdf",
            "café.txt",
            "🦀 crab.png",
            "a",
            ".bashrc",
            "archive.tar.gz",
            "-rf",
            "~tilde",
            "console.txt",
            "auxiliary",
            "COM10",
            "LPT",
            "com.txt",
            "name with spaces.md",
            "x.y.z",
            "1",
            "..hidden",
        ] {
            assert_eq!(check_file_name(name), Ok(name), "{name:?}");
        }
        let longest = "a".repeat(MAX_FILE_NAME_BYTES);
        assert!(is_safe_file_name(&longest));
    }

    #[test]
    fn refuses_hostile_names() {
        use FileNameError as E;
        let long = "a".repeat(300);
        type Expect = fn(&FileNameError) -> bool;
        let cases: Vec<(&str, Expect)> = vec![
            ("", |e| matches!(e, E::Empty)),
            (&long, |e| matches!(e, E::TooLong(300))),
            (".", |e| matches!(e, E::DotsOnly(_))),
            ("..", |e| matches!(e, E::DotsOnly(_))),
            ("...", |e| matches!(e, E::DotsOnly(_))),
            (" ", |e| matches!(e, E::DotsOnly(_))),
            (". .", |e| matches!(e, E::DotsOnly(_))),
            ("../x", |e| {
                matches!(e, E::PathSeparator { separator: '/', .. })
            }),
            ("/etc/x", |e| {
                matches!(e, E::PathSeparator { separator: '/', .. })
            }),
            ("a/b", |e| matches!(e, E::PathSeparator { .. })),
            ("..\\x", |e| {
                matches!(
                    e,
                    E::PathSeparator {
                        separator: '\\',
                        ..
                    }
                )
            }),
            ("C:\\x", |e| {
                matches!(e, E::PathSeparator { .. } | E::Colon(_))
            }),
            ("C:x", |e| matches!(e, E::Colon(_))),
            ("file.txt:stream", |e| matches!(e, E::Colon(_))),
            ("x\0y", |e| matches!(e, E::ControlChar { .. })),
            ("a\nb", |e| matches!(e, E::ControlChar { .. })),
            ("a\rb", |e| matches!(e, E::ControlChar { .. })),
            ("tab\there", |e| matches!(e, E::ControlChar { .. })),
            ("\u{1b}[31mred", |e| matches!(e, E::ControlChar { .. })),
            ("del\u{7f}", |e| matches!(e, E::ControlChar { .. })),
            ("c1\u{9b}31m", |e| matches!(e, E::ControlChar { .. })),
            ("\u{202E}fdp.exe", |e| matches!(e, E::InvisibleChar { .. })),
            ("zero\u{200B}width", |e| {
                matches!(e, E::InvisibleChar { .. })
            }),
            ("bom\u{FEFF}", |e| matches!(e, E::InvisibleChar { .. })),
            ("soft\u{AD}hyphen", |e| matches!(e, E::InvisibleChar { .. })),
            ("isolate\u{2066}", |e| matches!(e, E::InvisibleChar { .. })),
            ("a<b", |e| matches!(e, E::ReservedChar { found: '<', .. })),
            ("a>b", |e| matches!(e, E::ReservedChar { .. })),
            ("a\"b", |e| matches!(e, E::ReservedChar { .. })),
            ("a|b", |e| matches!(e, E::ReservedChar { .. })),
            ("a?b", |e| matches!(e, E::ReservedChar { .. })),
            ("a*b", |e| matches!(e, E::ReservedChar { .. })),
            ("a.", |e| matches!(e, E::BadEnds(_))),
            ("a ", |e| matches!(e, E::BadEnds(_))),
            (" a", |e| matches!(e, E::BadEnds(_))),
            ("CON", |e| matches!(e, E::DeviceName(_))),
            ("Con", |e| matches!(e, E::DeviceName(_))),
            ("aux.txt", |e| matches!(e, E::DeviceName(_))),
            ("Nul.tar.gz", |e| matches!(e, E::DeviceName(_))),
            ("prn.", |e| matches!(e, E::BadEnds(_) | E::DeviceName(_))),
            ("com1", |e| matches!(e, E::DeviceName(_))),
            ("COM0", |e| matches!(e, E::DeviceName(_))),
            ("LPT9.log", |e| matches!(e, E::DeviceName(_))),
            ("COM1 .txt", |e| matches!(e, E::DeviceName(_))),
            ("com¹", |e| matches!(e, E::DeviceName(_))),
            ("CONIN$", |e| matches!(e, E::DeviceName(_))),
            ("conout$.x", |e| matches!(e, E::DeviceName(_))),
        ];
        assert!(cases.len() >= 40);
        for (name, expected) in cases {
            let err = check_file_name(name).expect_err(name);
            assert!(expected(&err), "{name:?} gave {err:?}");
        }
    }

    #[test]
    fn messages_never_carry_raw_control_characters() {
        for name in ["\u{1b}[2J\u{1b}[Hgotcha", "a\u{202E}b", "x\ny", "\u{9b}1m"] {
            let message = check_file_name(name).unwrap_err().to_string();
            assert!(
                !message.chars().any(|c| c.is_control() || is_invisible(c)),
                "{message:?}"
            );
        }
        let message = check_file_name(&"é".repeat(200)).unwrap_err().to_string();
        assert!(message.len() < 100, "{message}");
    }

    proptest! {
        #[test]
        fn accepted_names_are_single_plain_components(name in any::<String>()) {
            if let Ok(ok) = check_file_name(&name) {
                prop_assert_eq!(ok, name.as_str());
                prop_assert!(!name.contains(['/', '\\', ':']));
                prop_assert!(!name.chars().any(|c| c.is_control() || is_invisible(c)));
                prop_assert!(name != "." && name != "..");
                prop_assert!(!name.is_empty() && name.len() <= MAX_FILE_NAME_BYTES);
                prop_assert!(!name.ends_with(['.', ' ']));
            }
        }

        #[test]
        fn separators_are_always_refused(
            before in any::<String>(),
            sep in prop::sample::select(vec!['/', '\\']),
            after in any::<String>(),
        ) {
            let name = format!("{before}{sep}{after}");
            prop_assert!(check_file_name(&name).is_err());
        }

        #[test]
        fn messages_are_printable(name in any::<String>()) {
            if let Err(e) = check_file_name(&name) {
                let message = e.to_string();
                prop_assert!(!message.chars().any(|c| c.is_control() || is_invisible(c)));
            }
        }
    }
}
