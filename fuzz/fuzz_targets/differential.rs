//! Fuzz target: the properties of `ringway::fuzzing::differential` (see fuzz/README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringway::fuzzing::differential(data));
