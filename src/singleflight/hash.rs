//! The cache's key hasher: a per-cache randomly seeded folded-multiply hash
//! (the construction of `foldhash`/`ahash`'s fallback), used both to pick a
//! shard and inside each shard's `HashMap`.
//!
//! The same construction, seeded from a user-chosen `u64`, draws the TTL
//! jitter (`Policy::ttl_jitter`), so a fixed seed gives reproducible expiry.
//!
//! SipHash-1-3 (std's default) cost about 140 instructions per `u64` key,
//! more than everything else on a cache hit together. This hash costs a few
//! instructions per 8 bytes. Its seeds come from [`RandomState`], different for
//! every cache, so an attacker who cannot observe the seeds cannot precompute
//! colliding keys; like `foldhash` it offers "minimal" HashDoS resistance, not
//! SipHash's keyed-PRF guarantee.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// Seeds for one cache. Cheap to copy; every hasher starts from them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KeyState {
    seed: u64,
    mul: u64,
}

impl KeyState {
    pub(crate) fn new() -> Self {
        let rs = RandomState::new();
        KeyState {
            seed: rs.hash_one(0x243F_6A88_85A3_08D3_u64),
            // Odd, so the multiplier never collapses the accumulator.
            mul: rs.hash_one(0x1319_8A2E_0370_7344_u64) | 1,
        }
    }

    /// Deterministic seeds derived from `seed` (for reproducible jitter).
    pub(crate) fn with_seed(seed: u64) -> Self {
        let mix = |x: u64| fold_mul(x ^ 0x243F_6A88_85A3_08D3, 0x1319_8A2E_0370_7345);
        KeyState {
            seed: mix(seed),
            mul: mix(seed.rotate_left(32) ^ ARBITRARY) | 1,
        }
    }
}

impl BuildHasher for KeyState {
    type Hasher = KeyHasher;
    #[inline]
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher {
            acc: self.seed,
            mul: self.mul,
        }
    }
}

/// Full 64×64→128 multiply, folded back to 64 bits.
#[inline(always)]
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

const ARBITRARY: u64 = 0xA409_3822_299F_31D0;

pub(crate) struct KeyHasher {
    acc: u64,
    mul: u64,
}

impl Hasher for KeyHasher {
    #[inline]
    fn finish(&self) -> u64 {
        fold_mul(self.acc, self.mul ^ ARBITRARY)
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            // The length goes into the top byte so "a" and "a\0" differ.
            self.write_u64(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 59));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }
    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.write_u64(u64::from(i));
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.acc = fold_mul(self.acc ^ i, self.mul);
    }
    #[inline]
    fn write_u128(&mut self, i: u128) {
        self.write_u64(i as u64);
        self.write_u64((i >> 64) as u64);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinguishes_and_spreads() {
        let s = KeyState::new();
        assert_ne!(s.hash_one("a"), s.hash_one("a\0"));
        assert_ne!(s.hash_one(1u64), s.hash_one(2u64));
        assert_eq!(s.hash_one("key"), s.hash_one("key"));
        // Consecutive integers land in every one of 16 shards (bits 40..44).
        let mut seen = [false; 16];
        for k in 0..256u64 {
            seen[((s.hash_one(k) >> 40) & 15) as usize] = true;
        }
        assert!(seen.iter().all(|b| *b));
    }
}
