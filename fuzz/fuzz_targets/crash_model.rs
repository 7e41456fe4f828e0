#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chronicle::fuzzing::crash_model(data));
