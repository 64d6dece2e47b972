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
//! sender and receiver under back-pressure; 64 MiB on each of 9 (16 with
//! tokio) pairs would add minutes for no other path. Each adapter's kit
//! still moves the 64 MiB through its own server and client.

/// ferry-smol's clients fail these scenarios while its `spawn_client`
/// returns before the server's welcome (a refusal or no welcome is not yet
/// an error of the call); the kit fails them once they pass, so that the
/// list goes with the gap. Also in `adapters/smol/tests/conformance.rs`.
const SMOL_FAILING_AS_CLIENT: &[&str] = &[
    "a_taken_name_is_an_error_of_spawn_client",
    "a_client_turned_away_at_connect_still_hears_why",
    "with_tls_required_clear_text_clients_are_turned_away_with_a_reason",
    "a_server_that_never_welcomes_is_a_timeout_of_spawn_client",
];

ferry_conformance::matrix_tests![
    ferry_conformance::adapter!(ferry_mio),
    ferry_conformance::adapter!(ferry_smol).failing_as_client(SMOL_FAILING_AS_CLIENT),
    ferry_conformance::adapter!(ferry_std),
    ferry_conformance::adapter!(ferry_tokio),
];
