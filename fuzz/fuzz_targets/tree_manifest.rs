#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ferry_core::fuzzing::tree_manifest(data));
