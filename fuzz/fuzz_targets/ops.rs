//! Byte-decoded operation sequences over a borrowed `Semaphore`, checked against the
//! sequential reference model after every step (see `tests/common/ops/`). Its stable twins
//! are the `ops_bytes` proptest and the corpus replay in `tests/model_ops.rs`.
#![no_main]

#[path = "../../tests/common/ops/mod.rs"]
mod ops;

libfuzzer_sys::fuzz_target!(|data: &[u8]| ops::run_bytes(data));
