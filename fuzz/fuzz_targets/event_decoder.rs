#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chronicle::fuzzing::event_decoder(data));
