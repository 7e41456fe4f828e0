#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chronicle::fuzzing::open_directory(data));
