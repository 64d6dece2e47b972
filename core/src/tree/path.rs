//! [`TreePath`]: where an entry of a tree goes, relative to the tree's
//! top-level folder, checked one component at a time.

use super::error::{PathError, TreeLimitExceeded, UnsafePath};
use super::TreeLimits;
use crate::filename::{check_file_name, Escaped};
use alloc::string::String;
use core::fmt;
use unicode_normalization::UnicodeNormalization;

/// The longest path the wire can carry (a `str`), whatever the limits.
pub const MAX_TREE_PATH_BYTES: usize = u16::MAX as usize;

/// A relative path inside a tree, as it is sent: components joined by `/`.
///
/// Holds only paths that are safe to create below a folder on Linux, macOS
/// and Windows: not empty, no leading `/`, no empty, `.` or `..` component,
/// and every component accepted by
/// [`check_file_name`] (so no `\`, `:`, control or invisible character,
/// Windows device name, trailing dot or space). Its length and depth are
/// within the [`TreeLimits`] it was checked against (and never over
/// [`MAX_TREE_PATH_BYTES`]).
///
/// ```
/// use ferry_core::tree::{TreeLimits, TreePath};
///
/// let path = TreePath::new("photos/2024/café.jpg", &TreeLimits::default()).unwrap();
/// assert_eq!(path.depth(), 3);
/// assert_eq!(path.parent(), Some("photos/2024"));
/// assert_eq!(path.name(), "café.jpg");
/// assert!(TreePath::new("photos/../../etc", &TreeLimits::default()).is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TreePath(String);

impl TreePath {
    /// Checks `path` and keeps it, or says why not. Limits are checked
    /// first, from the length alone, so a huge path costs no more than its
    /// length to refuse.
    pub fn new(path: &str, limits: &TreeLimits) -> Result<TreePath, PathError> {
        let max = limits.max_path_bytes.min(MAX_TREE_PATH_BYTES);
        if path.len() > max {
            return Err(TreeLimitExceeded::PathTooLong {
                path: Escaped::new(path),
                len: path.len(),
                max,
            }
            .into());
        }
        if path.is_empty() {
            return Err(UnsafePath::Empty.into());
        }
        if path.starts_with('/') {
            return Err(UnsafePath::Absolute(Escaped::new(path)).into());
        }
        let mut depth = 0;
        for component in path.split('/') {
            depth += 1;
            match component {
                "" => return Err(UnsafePath::EmptyComponent(Escaped::new(path)).into()),
                "." | ".." => return Err(UnsafePath::DotComponent(Escaped::new(path)).into()),
                _ => {}
            }
            if depth > limits.max_depth {
                return Err(TreeLimitExceeded::TooDeep {
                    path: Escaped::new(path),
                    depth: path.split('/').count(),
                    max: limits.max_depth,
                }
                .into());
            }
            check_file_name(component).map_err(|error| UnsafePath::BadComponent {
                path: Escaped::new(path),
                error,
            })?;
        }
        Ok(TreePath(String::from(path)))
    }

    /// The path as sent: components joined by `/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The components, from the top.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// How many components it has (`a/b/c`: 3).
    pub fn depth(&self) -> usize {
        self.components().count()
    }

    /// The folder it is in, `None` for an entry of the top-level folder.
    pub fn parent(&self) -> Option<&str> {
        self.0.rsplit_once('/').map(|(parent, _)| parent)
    }

    /// Its last component: its name in its folder.
    pub fn name(&self) -> &str {
        self.0.rsplit_once('/').map_or(&self.0, |(_, name)| name)
    }
}

impl fmt::Debug for TreePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for TreePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Checked: no control or invisible character can be in it.
        f.write_str(&self.0)
    }
}

/// The key under which two names in one folder are the same entry to a
/// file system that ignores case (NTFS, APFS and HFS+ by default, FAT,
/// ext4 with `casefold`) or Unicode normalisation (APFS, HFS+): the name
/// lowercased (Unicode's full lowercase mapping, [`str::to_lowercase`], as
/// ferry's free-name search uses), then put in Normalisation Form C.
///
/// ```
/// use ferry_core::tree::clash_key;
///
/// assert_eq!(clash_key("Makefile"), clash_key("makefile"));
/// assert_eq!(clash_key("Caf\u{e9}"), clash_key("cafe\u{301}"));
/// assert_ne!(clash_key("a.txt"), clash_key("b.txt"));
/// ```
pub fn clash_key(name: &str) -> String {
    if name.is_ascii() {
        // ASCII lowercases to ASCII, and ASCII is its own NFC: the same
        // key, without the two passes a receiver would pay per entry.
        return name.to_ascii_lowercase();
    }
    name.to_lowercase().nfc().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filename::FileNameError;
    use alloc::format;
    use alloc::vec;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    fn check(path: &str) -> Result<TreePath, PathError> {
        TreePath::new(path, &TreeLimits::default())
    }

    #[test]
    fn accepts_plain_relative_paths() {
        for path in [
            "a",
            "a/b",
            "photos/2024/café.jpg",
            "报告/2024.pdf",
            ".git/config",
            "..hidden/x",
            "dir with spaces/file name.txt",
        ] {
            let checked = check(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
            assert_eq!(checked.as_str(), path);
        }
        let path = check("a/b/c.txt").unwrap();
        assert_eq!(path.components().collect::<Vec<_>>(), ["a", "b", "c.txt"]);
        assert_eq!(
            (path.depth(), path.parent(), path.name()),
            (3, Some("a/b"), "c.txt")
        );
        let top = check("top").unwrap();
        assert_eq!((top.depth(), top.parent(), top.name()), (1, None, "top"));
    }

    #[test]
    fn refuses_hostile_paths() {
        use PathError::{Limit, Unsafe};
        type Expect = fn(&PathError) -> bool;
        let long = "a/".repeat(600) + "a";
        let deep = "a/".repeat(40) + "a";
        let cases: Vec<(&str, Expect)> = vec![
            ("", |e| matches!(e, Unsafe(UnsafePath::Empty))),
            ("/etc/passwd", |e| {
                matches!(e, Unsafe(UnsafePath::Absolute(_)))
            }),
            ("/", |e| matches!(e, Unsafe(UnsafePath::Absolute(_)))),
            ("a//b", |e| {
                matches!(e, Unsafe(UnsafePath::EmptyComponent(_)))
            }),
            ("a/", |e| matches!(e, Unsafe(UnsafePath::EmptyComponent(_)))),
            ("..", |e| matches!(e, Unsafe(UnsafePath::DotComponent(_)))),
            ("../x", |e| matches!(e, Unsafe(UnsafePath::DotComponent(_)))),
            ("a/../../x", |e| {
                matches!(e, Unsafe(UnsafePath::DotComponent(_)))
            }),
            ("a/./b", |e| {
                matches!(e, Unsafe(UnsafePath::DotComponent(_)))
            }),
            ("a\\..\\b", |e| {
                matches!(
                    e,
                    Unsafe(UnsafePath::BadComponent {
                        error: FileNameError::PathSeparator {
                            separator: '\\',
                            ..
                        },
                        ..
                    })
                )
            }),
            ("C:/x", |e| {
                matches!(
                    e,
                    Unsafe(UnsafePath::BadComponent {
                        error: FileNameError::Colon(_),
                        ..
                    })
                )
            }),
            ("a/aux.txt", |e| {
                matches!(
                    e,
                    Unsafe(UnsafePath::BadComponent {
                        error: FileNameError::DeviceName(_),
                        ..
                    })
                )
            }),
            ("a/x\0y", |e| {
                matches!(
                    e,
                    Unsafe(UnsafePath::BadComponent {
                        error: FileNameError::ControlChar { .. },
                        ..
                    })
                )
            }),
            ("a/\u{202e}fdp.exe", |e| {
                matches!(
                    e,
                    Unsafe(UnsafePath::BadComponent {
                        error: FileNameError::InvisibleChar { .. },
                        ..
                    })
                )
            }),
            ("a /b", |e| {
                matches!(
                    e,
                    Unsafe(UnsafePath::BadComponent {
                        error: FileNameError::BadEnds(_),
                        ..
                    })
                )
            }),
            (&long, |e| {
                matches!(e, Limit(TreeLimitExceeded::PathTooLong { len: 1201, .. }))
            }),
            (&deep, |e| {
                matches!(
                    e,
                    Limit(TreeLimitExceeded::TooDeep {
                        depth: 41,
                        max: 32,
                        ..
                    })
                )
            }),
        ];
        for (path, expected) in cases {
            let err = check(path).expect_err(path);
            assert!(expected(&err), "{path:?} gave {err:?}");
            let message = format!("{err}");
            assert!(!message.chars().any(char::is_control), "{message:?}");
        }
    }

    #[test]
    fn limits_are_inclusive() {
        let limits = TreeLimits {
            max_depth: 3,
            max_path_bytes: 5,
            ..TreeLimits::default()
        };
        assert!(TreePath::new("a/b/c", &limits).is_ok());
        assert!(TreePath::new("a/b/cd", &limits).is_err());
        let limits = TreeLimits {
            max_depth: 2,
            ..limits
        };
        assert!(TreePath::new("a/b/c", &limits).is_err());
    }

    #[test]
    fn clash_keys_ignore_case_and_normalisation_only() {
        assert_eq!(clash_key("README.md"), clash_key("readme.MD"));
        assert_eq!(clash_key("\u{212b}ngström"), clash_key("ångström"));
        assert_eq!(clash_key("STRASSE"), clash_key("strasse"));
        assert_ne!(clash_key("a"), clash_key("b"));
        assert_ne!(clash_key("x1"), clash_key("x2"));
    }

    proptest! {
        #[test]
        fn accepted_paths_are_plain_components(path in "[a-zA-Z0-9./\\\\: _\u{e9}\u{202e}-]{0,40}") {
            if let Ok(checked) = check(&path) {
                prop_assert_eq!(checked.as_str(), path.as_str());
                prop_assert!(!path.starts_with('/'));
                for component in checked.components() {
                    prop_assert!(check_file_name(component).is_ok());
                    prop_assert!(component != "." && component != "..");
                }
                let rebuilt: Vec<&str> = checked.components().collect();
                prop_assert_eq!(rebuilt.join("/"), path);
            }
        }

        #[test]
        fn any_text_is_checked_without_panicking(path in any::<String>()) {
            if let Err(e) = check(&path) {
                let message = format!("{e}");
                prop_assert!(!message.chars().any(char::is_control));
            }
        }
    }
}
