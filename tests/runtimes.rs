//! The runtime matrix: every scenario of the conformance kit
//! (`ferry-conformance`) where the pair matters, with every runtime's
//! server against every runtime's clients, one test per scenario running
//! its pairs one after another. (Each adapter runs the whole kit on itself
//! in its own `tests/conformance.rs`.)
//!
//! A new runtime joins with one line in the list below.
//!
//! Payloads: the matrix's upload is 12 MiB, not the kit's 64 MiB. Both are
//! far more than the socket buffers and flow-control windows, so both keep
//! sender and receiver under back-pressure; 64 MiB on each of the 16 pairs
//! would add minutes for no other path. Each adapter's kit
//! still moves the 64 MiB through its own server and client.

ferry_conformance::matrix_tests![
    ferry_conformance::adapter!(ferry_mio),
    ferry_conformance::adapter!(ferry_smol),
    ferry_conformance::adapter!(ferry_std),
    ferry_conformance::adapter!(ferry_tokio),
];
