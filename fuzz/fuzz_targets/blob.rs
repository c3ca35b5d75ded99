#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| calmline::fuzzing::blob(data));
