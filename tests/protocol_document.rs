//! The crates that ship the protocol document carry `docs/PROTOCOL.md` itself.
//!
//! `core/PROTOCOL.md` (rendered as ferry-core's `protocol` documentation
//! module, and read by its vector tests) and `adapters/noise/PROTOCOL.md`
//! (read by ferry-noise's vector test) are links to `docs/PROTOCOL.md`, which
//! `cargo package` follows, so that the published crates hold the document.
//! Should a link ever be replaced by a copy (a checkout without symlinks, an
//! editor that writes through a new file), this test catches the copy going
//! stale.

use std::fs;
use std::path::Path;

/// The copies of the document inside packages, relative to the workspace.
const SHIPPED: [&str; 2] = ["core/PROTOCOL.md", "adapters/noise/PROTOCOL.md"];

#[test]
fn every_shipped_protocol_document_is_docs_protocol_md() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let original = fs::read_to_string(root.join("docs/PROTOCOL.md")).expect("docs/PROTOCOL.md");
    assert!(
        original.starts_with("# ferry wire protocol"),
        "docs/PROTOCOL.md does not start with its title"
    );
    for shipped in SHIPPED {
        let text = fs::read_to_string(root.join(shipped))
            .unwrap_or_else(|e| panic!("reading {shipped}: {e}"));
        assert!(
            text == original,
            "{shipped} differs from docs/PROTOCOL.md: make it a link again \
             (ln -sf with a relative path to docs/PROTOCOL.md)"
        );
    }
}
