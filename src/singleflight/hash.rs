//! The cache's key hasher: a per-cache randomly seeded folded-multiply hash
//! (the construction of `foldhash`/`ahash`'s fallback), used both to pick a
//! shard and inside each shard's `HashMap`.
//!
//! The same construction, seeded from a user-chosen `u64`, draws the TTL
//! jitter (`Policy::ttl_jitter`), so a fixed seed gives reproducible expiry.
//!
//! The key is hashed once per operation: [`HashedKey`] stores it with its
//! hash, the shard maps rehash nothing ([`PassThrough`]), and a lookup goes
//! through a borrowed `dyn` view ([`KeyView`]) so that no key is cloned.
//!
//! SipHash-1-3 (std's default) cost about 140 instructions per `u64` key,
//! more than everything else on a cache hit together. This hash costs a few
//! instructions per 8 bytes. Its seeds come from [`RandomState`], different for
//! every cache, so an attacker who cannot observe the seeds cannot precompute
//! colliding keys; like `foldhash` it offers "minimal" HashDoS resistance, not
//! SipHash's keyed-PRF guarantee.

use std::borrow::Borrow;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash, Hasher};

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

/// A key as stored in a shard map: the key and its [`KeyState`] hash,
/// computed once by the caller (the shard is chosen from the same hash).
///
/// std's `HashMap` has no stable way to look up by a precomputed hash, so
/// the map hashes this type with [`PassThrough`], which just returns the
/// stored hash, and lookups borrow it as a `dyn KeyView` (see there).
#[derive(Clone)]
pub(crate) struct HashedKey<K> {
    hash: u64,
    key: K,
}

impl<K> HashedKey<K> {
    /// `hash` must be `key`'s [`Lookup::hash`] in the same cache.
    pub(crate) fn new(hash: u64, key: K) -> Self {
        HashedKey { hash, key }
    }
}

/// A key to look up, with its hash: what [`Lookup::view`] lends the map.
#[derive(Clone, Copy)]
pub(crate) struct Lookup<'a, K> {
    pub(crate) hash: u64,
    pub(crate) key: &'a K,
}

impl<'a, K> Lookup<'a, K> {
    #[inline]
    pub(crate) fn new(state: &KeyState, key: &'a K) -> Self
    where
        K: Hash,
    {
        Lookup {
            hash: state.hash_one(key),
            key,
        }
    }

    /// The form `HashMap::get` accepts for a `HashedKey<K>` map. Both sides
    /// are concrete types, so after inlining the `dyn` calls are direct.
    #[inline]
    pub(crate) fn view(&self) -> &(dyn KeyView<K> + 'a) {
        self
    }
}

/// What a stored [`HashedKey`] and a [`Lookup`] have in common. `HashMap`
/// looks a key up by any `Q` the stored key `Borrow`s; `HashedKey<K>` cannot
/// borrow as a `Lookup` (which holds a reference), but it can borrow as this
/// trait object, which both implement.
pub(crate) trait KeyView<K> {
    fn hash(&self) -> u64;
    fn key(&self) -> &K;
}

impl<K> KeyView<K> for HashedKey<K> {
    #[inline]
    fn hash(&self) -> u64 {
        self.hash
    }
    #[inline]
    fn key(&self) -> &K {
        &self.key
    }
}

impl<K> KeyView<K> for Lookup<'_, K> {
    #[inline]
    fn hash(&self) -> u64 {
        self.hash
    }
    #[inline]
    fn key(&self) -> &K {
        self.key
    }
}

impl<'a, K: 'a> Borrow<dyn KeyView<K> + 'a> for HashedKey<K> {
    #[inline]
    fn borrow(&self) -> &(dyn KeyView<K> + 'a) {
        self
    }
}

// `Borrow` requires the borrowed form to hash and compare like the owner:
// both hash as their stored hash and compare by key.
impl<K> Hash for dyn KeyView<K> + '_ {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(KeyView::hash(self));
    }
}

impl<K: PartialEq> PartialEq for dyn KeyView<K> + '_ {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl<K: Eq> Eq for dyn KeyView<K> + '_ {}

impl<K> Hash for HashedKey<K> {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl<K: PartialEq> PartialEq for HashedKey<K> {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl<K: Eq> Eq for HashedKey<K> {}

/// The shard maps' `BuildHasher`: keys arrive hashed ([`HashedKey`]).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PassThrough;

impl BuildHasher for PassThrough {
    type Hasher = PassThroughHasher;
    #[inline]
    fn build_hasher(&self) -> PassThroughHasher {
        PassThroughHasher(0)
    }
}

/// Returns the one `u64` written to it. Only [`HashedKey`] and `KeyView`
/// are hashed with it, and they write exactly their stored hash.
#[derive(Default)]
pub(crate) struct PassThroughHasher(u64);

impl Hasher for PassThroughHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Not reached (see the type's doc); stays a valid hasher anyway.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.0 = i;
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

    #[test]
    fn hashed_keys_are_found_by_lookup() {
        use std::collections::HashMap;
        use std::format;
        use std::string::{String, ToString};
        let s = KeyState::new();
        let mut m: HashMap<HashedKey<String>, u32, PassThrough> = HashMap::with_hasher(PassThrough);
        for i in 0..100u32 {
            let k = format!("k{i}");
            let at = Lookup::new(&s, &k);
            m.insert(HashedKey::new(at.hash, k.clone()), i);
        }
        for i in 0..100u32 {
            let k = format!("k{i}");
            assert_eq!(m.get(Lookup::new(&s, &k).view()), Some(&i));
        }
        let absent = "absent".to_string();
        assert_eq!(m.get(Lookup::new(&s, &absent).view()), None);
        // Same hash, different key: compared by key.
        let k = "k1".to_string();
        let fake = Lookup {
            hash: Lookup::new(&s, &k).hash,
            key: &absent,
        };
        assert_eq!(m.get(fake.view()), None);
    }
}
