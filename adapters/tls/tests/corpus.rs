//! The `tls_server` fuzz corpus as a regression suite on stable Rust:
//! every file under `fuzz/corpus/tls_server/` goes through the harness the
//! fuzz target runs.

mod tls_server_harness;

use std::fs;
use std::path::Path;

#[test]
fn the_tls_server_corpus_passes_its_harness() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/tls_server");
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read corpus {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert!(
        files.len() > 100,
        "corpus {} has {} files",
        dir.display(),
        files.len()
    );
    for file in &files {
        tls_server_harness::tls_server(&fs::read(file).unwrap());
    }
}
