//! Fuzz target: the properties of `ringway::fuzzing::json_peek` (see fuzz/README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringway::fuzzing::json_peek(data));
