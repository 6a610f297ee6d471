//! The `rsa` fuzz target: its input format and properties are in fuzz/src/targets/rsa.rs
//! (shared with the replay test, fuzz/tests/replay.rs) and fuzz/README.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| api_auth_filter_fuzz::targets::rsa::run(data));
