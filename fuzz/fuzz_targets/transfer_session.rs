#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ferry_core::fuzzing::transfer_session(data, std::time::Instant::now()));
