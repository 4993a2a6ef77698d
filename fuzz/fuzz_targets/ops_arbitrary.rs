//! The same operation language through `arbitrary` (`Op` derives `Arbitrary` under
//! `cfg(fuzzing)`): structure-aware inputs, every variant equally likely. Its stable twin is
//! the `op_sequences` proptest in `tests/model_ops.rs`.
#![no_main]

#[path = "../../tests/common/ops/mod.rs"]
mod ops;

libfuzzer_sys::fuzz_target!(|input: (ops::Config, Vec<ops::Op>)| {
    let (cfg, ops) = input;
    ops::run(cfg, &ops);
});
