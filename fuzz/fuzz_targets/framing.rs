#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rgrpc_core::fuzzing::framing(data));
