#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chronicle::fuzzing::rollup_pages(data));
