//! Maps and sets keyed by [`ClientId`], hashed with one multiplication.
//!
//! The hub looks clients up several times for every message it relays to
//! every member of a room; with std's SipHash those lookups were a sixth of
//! a busy server's CPU. SipHash defends a map against keys chosen by an
//! attacker. Client ids are not: the hub hands them out in sequence and no
//! peer ever names one, so a multiplicative (Fibonacci) hash is safe here
//! and spreads sequential ids over both the low bits (the bucket) and the
//! high bits (hashbrown's tag byte).

use crate::hub::ClientId;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// A map keyed by client id, hashed cheaply (see the [module](self) docs).
pub type ClientMap<V> = HashMap<ClientId, V, BuildHasherDefault<ClientIdHasher>>;

/// A set of client ids, hashed cheaply (see the [module](self) docs).
pub type ClientSet = HashSet<ClientId, BuildHasherDefault<ClientIdHasher>>;

/// The hasher of [`ClientMap`] and [`ClientSet`]: not for keys a peer can
/// choose.
#[derive(Debug, Default, Clone, Copy)]
pub struct ClientIdHasher(u64);

/// 2^64 divided by the golden ratio, odd: multiplying by it is a bijection
/// that moves every bit of the input into the high bits of the output.
const FIBONACCI: u64 = 0x9E37_79B9_7F4A_7C15;

impl Hasher for ClientIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(FIBONACCI);
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only reached if `ClientId`'s `Hash` ever stops being one u64.
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn sequential_ids_spread_over_buckets_and_tags() {
        let build = BuildHasherDefault::<ClientIdHasher>::default();
        let hashes: Vec<u64> = (0..1024).map(|n| build.hash_one(ClientId(n))).collect();
        let buckets: HashSet<u64> = hashes.iter().map(|h| h & 1023).collect();
        let tags: HashSet<u64> = hashes.iter().map(|h| h >> 57).collect();
        assert_eq!(buckets.len(), 1024, "a bijection on the low 10 bits");
        assert_eq!(tags.len(), 128, "every 7-bit tag used");
    }

    #[test]
    fn works_as_a_map() {
        let mut map = ClientMap::default();
        for n in 0..10_000 {
            map.insert(ClientId(n), n * 2);
        }
        assert!((0..10_000).all(|n| map[&ClientId(n)] == n * 2));
        assert_eq!(map.get(&ClientId(10_000)), None);
    }
}
