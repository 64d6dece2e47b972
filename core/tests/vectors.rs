//! Checks the test vectors in `docs/PROTOCOL.md` against the codec, so that
//! the document and the code cannot drift apart.
//!
//! * ```` ```vector ```` blocks: the hex decodes to exactly one frame that uses
//!   every byte, which the `frame:` line describes in the document's notation
//!   (see `notation`), and which re-encodes to the same bytes. The block
//!   whose `frame:` is `PREAMBLE` is the preamble.
//! * ```` ```bad-vector ```` blocks: decoding with the given `limit` fails with
//!   the named error, which maps to the named `code`.
//! * ```` ```name-vector ```` blocks: the names have the `key:` (or the
//!   `keys:`, in order), or are refused for the `invalid:` reason.
//! * ```` ```manifest-vector ```` blocks: the hex decodes to the manifest
//!   whose `root_mtime:` and `entries:` are listed, re-encodes to the same
//!   bytes and has the BLAKE3 `hash:`; or is `refused:` with that code.

mod notation;

use bytes::BytesMut;
use ferry_core::code::Code;
use ferry_core::error::{DecodeError, Error, LimitExceeded, Malformed};
use ferry_core::frame::{self, decode, Frame, PREAMBLE};
use ferry_core::names::{check_name, name_key, NameError};
use ferry_core::tree::{EntryKind, Manifest, TreeLimits};
use std::collections::{BTreeMap, BTreeSet};

/// The limit the positive vectors are decoded with: 1 MiB.
const LIMIT: u32 = 1 << 20;

/// Fewer positive frame vectors than this fails the test.
const MIN_VECTORS: usize = 37;

/// Fewer negative vectors than this fails the test.
const MIN_BAD_VECTORS: usize = 5;

fn protocol_doc() -> String {
    // A link to `docs/PROTOCOL.md`, which `cargo package` follows: the
    // packaged crate carries the document, and these tests run there too.
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/PROTOCOL.md");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// One fenced block: its info string, its first line number and its fields.
struct Block {
    kind: String,
    line: usize,
    fields: BTreeMap<String, String>,
}

impl Block {
    fn get(&self, key: &str) -> &str {
        self.fields.get(key).map(String::as_str).unwrap_or_else(|| {
            panic!(
                "PROTOCOL.md line {}: {} block has no `{key}:` line",
                self.line, self.kind
            )
        })
    }

    fn name(&self) -> String {
        format!("{} (PROTOCOL.md line {})", self.get("name"), self.line)
    }
}

/// Every ```` ```vector ````, ```` ```bad-vector ```` and
/// ```` ```name-vector ```` block of the document.
fn blocks(doc: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut current: Option<Block> = None;
    for (index, line) in doc.lines().enumerate() {
        let line_no = index + 1;
        let trimmed = line.trim();
        match current.as_mut() {
            None => {
                if let Some(kind @ ("vector" | "bad-vector" | "name-vector" | "manifest-vector")) =
                    trimmed.strip_prefix("```")
                {
                    current = Some(Block {
                        kind: kind.to_string(),
                        line: line_no,
                        fields: BTreeMap::new(),
                    });
                }
            }
            Some(block) => {
                if trimmed == "```" {
                    out.extend(current.take());
                } else if !trimmed.is_empty() {
                    let (key, value) = trimmed.split_once(':').unwrap_or_else(|| {
                        panic!("PROTOCOL.md line {line_no}: expected `key: value`, got {line:?}")
                    });
                    let previous = block
                        .fields
                        .insert(key.trim().to_string(), value.trim().to_string());
                    assert!(
                        previous.is_none(),
                        "PROTOCOL.md line {line_no}: `{key}:` given twice in one block"
                    );
                }
            }
        }
    }
    assert!(current.is_none(), "PROTOCOL.md: unterminated vector block");
    out
}

/// Parses space-separated pairs of hex digits.
fn parse_hex(hex: &str, what: &str) -> Vec<u8> {
    hex.split_whitespace()
        .map(|pair| {
            assert!(
                pair.len() == 2,
                "{what}: {pair:?} is not a pair of hex digits"
            );
            u8::from_str_radix(pair, 16)
                .unwrap_or_else(|_| panic!("{what}: {pair:?} is not a pair of hex digits"))
        })
        .collect()
}

fn to_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Parses a decimal or `0x`-prefixed hexadecimal `u32`.
fn parse_u32(text: &str, what: &str) -> u32 {
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.unwrap_or_else(|_| panic!("{what}: {text:?} is not a u32"))
}

/// The name a negative vector uses for a decode error.
fn variant(error: &DecodeError) -> &'static str {
    match error {
        DecodeError::Malformed(m) => match m {
            Malformed::BadPreamble { .. } => "BadPreamble",
            Malformed::UnknownFrameType(_) => "UnknownFrameType",
            Malformed::Truncated { .. } => "Truncated",
            Malformed::TrailingBytes { .. } => "TrailingBytes",
            Malformed::InvalidUtf8 { .. } => "InvalidUtf8",
            Malformed::InvalidValue { .. } => "InvalidValue",
            _ => "(another Malformed variant)",
        },
        DecodeError::LimitExceeded(LimitExceeded::FrameTooLarge { .. }) => "FrameTooLarge",
        _ => "(another DecodeError variant)",
    }
}

/// Checks one positive frame vector and returns the frame's type byte.
fn check_frame_vector(block: &Block) -> u8 {
    let name = block.name();
    let bytes = parse_hex(block.get("hex"), &name);
    let expected = block.get("frame");

    // Every proper prefix is incomplete: nothing is decoded or consumed.
    for len in 0..bytes.len() {
        let mut partial = BytesMut::from(&bytes[..len]);
        match decode(&mut partial, LIMIT) {
            Ok(None) => assert_eq!(partial.len(), len, "{name}: consumed a partial frame"),
            other => panic!("{name}: the first {len} bytes decoded to {other:?}"),
        }
    }

    let mut buf = BytesMut::from(&bytes[..]);
    let frame = match decode(&mut buf, LIMIT) {
        Ok(Some(frame)) => frame,
        other => panic!("{name}: expected a frame, got {other:?}"),
    };
    assert!(
        buf.is_empty(),
        "{name}: {} bytes left after the frame",
        buf.len()
    );
    assert_eq!(
        notation::frame(&frame),
        expected,
        "{name}: the `frame:` line does not match the decoded frame"
    );

    let mut encoded = BytesMut::new();
    frame
        .encode(&mut encoded)
        .expect("re-encoding a decoded frame");
    assert_eq!(
        to_hex(&encoded),
        to_hex(&bytes),
        "{name}: re-encoding gives different bytes"
    );
    assert_eq!(frame.frame_type(), bytes[0], "{name}: frame type");
    frame.frame_type()
}

fn check_bad_vector(block: &Block) {
    let name = block.name();
    let bytes = parse_hex(block.get("hex"), &name);
    let limit = parse_u32(block.get("limit"), &name);
    let expected_error = block.get("error");
    let mut buf = BytesMut::from(&bytes[..]);
    let error = match decode(&mut buf, limit) {
        Err(error) => error,
        Ok(result) => panic!("{name}: expected {expected_error}, decoded {result:?}"),
    };
    assert_eq!(
        variant(&error),
        expected_error,
        "{name}: wrong error: {error:?}"
    );
    if let DecodeError::LimitExceeded(LimitExceeded::FrameTooLarge {
        frame_type,
        declared,
        limit: reported,
    }) = &error
    {
        let header = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
        assert_eq!(
            (*frame_type, *declared, *reported),
            (bytes[0], header, limit),
            "{name}"
        );
    }
    let code = Error::from(error).code();
    assert_eq!(
        format!("{code:?}"),
        format!("Code::{}", block.get("code")),
        "{name}: wrong code"
    );
}

#[test]
fn protocol_document_vectors() {
    let doc = protocol_doc();
    let mut frame_vectors = 0;
    let mut bad_vectors = 0;
    let mut preamble_seen = false;
    let mut types = BTreeSet::new();

    for block in blocks(&doc) {
        match block.kind.as_str() {
            "vector" if block.get("frame") == "PREAMBLE" => {
                let name = block.name();
                assert_eq!(
                    parse_hex(block.get("hex"), &name),
                    PREAMBLE,
                    "{name}: preamble"
                );
                preamble_seen = true;
            }
            "vector" => {
                types.insert(check_frame_vector(&block));
                frame_vectors += 1;
            }
            "bad-vector" => {
                check_bad_vector(&block);
                bad_vectors += 1;
            }
            _ => {}
        }
    }

    assert!(
        frame_vectors >= MIN_VECTORS,
        "only {frame_vectors} frame vectors in PROTOCOL.md, expected at least {MIN_VECTORS}"
    );
    assert!(
        bad_vectors >= MIN_BAD_VECTORS,
        "only {bad_vectors} bad-vectors in PROTOCOL.md, expected at least {MIN_BAD_VECTORS}"
    );
    assert!(preamble_seen, "PROTOCOL.md has no PREAMBLE vector");

    // Every type version 1 defines has a vector, and so does an extension
    // it does not define.
    let missing: Vec<&str> = (0..=u8::MAX)
        .filter(|&t| frame::frame_type::is_known(t) && !types.contains(&t))
        .map(frame::type_name)
        .collect();
    assert!(missing.is_empty(), "no vector for {missing:?}");
    assert!(
        types
            .iter()
            .any(|&t| t >= frame::frame_type::FIRST_EXTENSION && !frame::frame_type::is_known(t)),
        "no vector for an unknown extension frame"
    );
}

/// `text` with its `\u{…}` escapes replaced by the characters.
fn unescape(text: &str, what: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("\\u{") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 3..];
        let end = after
            .find('}')
            .unwrap_or_else(|| panic!("{what}: unterminated escape"));
        let c = u32::from_str_radix(&after[..end], 16)
            .ok()
            .and_then(char::from_u32)
            .unwrap_or_else(|| panic!("{what}: bad escape {:?}", &after[..end]));
        out.push(c);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

fn list(block: &Block, key: &str) -> Vec<String> {
    let what = block.name();
    block
        .get(key)
        .split(" | ")
        .map(|item| unescape(item.trim(), &what))
        .collect()
}

#[test]
fn protocol_document_name_vectors() {
    let doc = protocol_doc();
    let mut vectors = 0;
    for block in blocks(&doc).iter().filter(|b| b.kind == "name-vector") {
        let what = block.name();
        let names = list(block, "names");
        let keys = if block.fields.contains_key("key") {
            vec![unescape(block.get("key"), &what); names.len()]
        } else if block.fields.contains_key("keys") {
            list(block, "keys")
        } else {
            Vec::new()
        };
        for (name, key) in names.iter().zip(&keys) {
            assert_eq!(&name_key(name), key, "{what}: key of {name:?}");
        }
        match block.fields.get("invalid").map(String::as_str) {
            None => {
                assert_eq!(keys.len(), names.len(), "{what}: a key for every name");
                for name in &names {
                    assert_eq!(check_name(name), Ok(()), "{what}: {name:?}");
                }
            }
            Some(reason) => {
                for name in &names {
                    let refused = check_name(name);
                    let matches = match reason {
                        "mixed scripts" => matches!(refused, Err(NameError::MixedScripts(_))),
                        "forbidden character" => {
                            matches!(refused, Err(NameError::ForbiddenChar(_)))
                        }
                        other => panic!("{what}: unknown reason {other:?}"),
                    };
                    assert!(matches, "{what}: {name:?} gave {refused:?}");
                }
            }
        }
        vectors += 1;
    }
    assert!(vectors >= 5, "only {vectors} name vectors in PROTOCOL.md");
}

#[test]
fn protocol_document_lists_every_code_and_frame_type() {
    let doc = protocol_doc();
    for code in Code::ALL {
        let name = code.name().expect("defined codes have names");
        let row = format!("| `{:#06x}` | `{name}`", code.0);
        assert!(doc.contains(&row), "PROTOCOL.md's code table lacks {row:?}");
    }
    for t in (0..=u8::MAX).filter(|&t| frame::frame_type::is_known(t)) {
        let row = format!("| {t:#04x} | `{}`", frame::type_name(t));
        assert!(
            doc.contains(&row),
            "PROTOCOL.md's frame summary lacks {row:?}"
        );
    }
}

#[test]
fn the_notation_writes_what_section_8_says() {
    // Strings are JSON string literals, non-ASCII as itself.
    assert_eq!(
        notation::string("a\"b\\c\n\r\t\u{1}\u{7f}é☕"),
        "\"a\\\"b\\\\c\\n\\r\\t\\u0001\\u007fé☕\""
    );
    assert_eq!(notation::code(Code::QUIT), "QUIT");
    assert_eq!(notation::code(Code(0xabcd)), "0xabcd");
    assert_eq!(notation::bytes(b""), "0x");
    assert_eq!(notation::bytes(&[0, 0xab]), "0x00ab");
    assert_eq!(notation::frame(&Frame::Bye), "BYE");
}

#[test]
fn protocol_document_manifest_vectors() {
    let doc = protocol_doc();
    let (mut accepted, mut refused) = (0, 0);
    for block in blocks(&doc).iter().filter(|b| b.kind == "manifest-vector") {
        let name = block.name();
        let bytes = parse_hex(block.get("hex"), &name);
        let decoded = Manifest::decode(&bytes, &TreeLimits::default());
        if let Some(code) = block.fields.get("refused") {
            let error = decoded.expect_err(&name);
            assert_eq!(
                format!("{:?}", error.code()),
                format!("Code::{code}"),
                "{name}: {error}"
            );
            refused += 1;
            continue;
        }
        let manifest = decoded.unwrap_or_else(|e| panic!("{name}: {e}"));
        let root = manifest.root_mtime();
        assert_eq!(
            format!("{}.{}", root.secs(), root.nanos()),
            block.get("root_mtime"),
            "{name}: root_mtime"
        );
        let entries: Vec<String> = manifest
            .entries()
            .iter()
            .map(|e| {
                let (kind, flags, size) = match e.kind {
                    EntryKind::File { size, executable } => (1, u8::from(executable), size),
                    _ => (0, 0, 0),
                };
                format!(
                    "({},{kind},{flags},{size},{},{})",
                    notation::string(e.path.as_str()),
                    e.mtime.secs(),
                    e.mtime.nanos()
                )
            })
            .collect();
        assert_eq!(
            format!("[{}]", entries.join(",")),
            block.get("entries"),
            "{name}: entries"
        );
        assert_eq!(
            to_hex(&manifest.encode()),
            to_hex(&bytes),
            "{name}: re-encoding"
        );
        assert_eq!(
            notation::bytes(blake3::hash(&bytes).as_bytes()),
            block.get("hash"),
            "{name}: hash"
        );
        accepted += 1;
    }
    assert!(accepted >= 1, "no manifest vector in PROTOCOL.md");
    assert!(
        refused >= 5,
        "only {refused} refused manifest vectors in PROTOCOL.md"
    );
}
