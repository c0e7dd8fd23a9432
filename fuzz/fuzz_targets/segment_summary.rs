#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| weir::fuzzing::segment_summary(data));
