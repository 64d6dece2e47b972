//! The server side of a TLS connection with a hub behind it; the harness
//! lives with ferry-tls's tests, which replay this corpus on stable.
#![no_main]

#[path = "../../adapters/tls/tests/tls_server_harness/mod.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::tls_server(data));
