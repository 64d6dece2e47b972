//! The server side of a TLS connection with a hub behind it; the harness
//! lives with the workspace's tests, whose `corpus.rs` replays this corpus
//! on stable.
#![no_main]

#[path = "../../tests/tls_server_harness/mod.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::tls_server(data));
