//! Byte-decoded operation sequences mixing owned futures and permits (`Arc<Semaphore>`,
//! `acquire_many_owned`, `try_acquire_many_owned`, `OwnedPermit` split/merge/forget) and
//! `PollSemaphore` (including re-arming with a different amount) with the borrowed API,
//! checked against the same reference model. Stable twin: the `owned_bytes` proptest.
#![no_main]

#[path = "../../tests/common/ops/mod.rs"]
mod ops;

libfuzzer_sys::fuzz_target!(|data: &[u8]| ops::run_owned_bytes(data));
