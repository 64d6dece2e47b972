//! The receiving side of the UDP chat's Noise layer, before and after a
//! handshake with an honest peer; the harness lives with the workspace's
//! tests, whose `corpus.rs` replays this corpus on stable.
#![no_main]

#[path = "../../tests/noise_harness/mod.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::noise_receive(data));
