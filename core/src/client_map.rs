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
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};

/// A map keyed by client id, hashed cheaply (see the [module](self) docs).
pub type ClientMap<V> = HashMap<ClientId, V, BuildHasherDefault<ClientIdHasher>>;

/// A set of client ids, hashed cheaply (see the [module](self) docs).
pub type ClientSet = HashSet<ClientId, BuildHasherDefault<ClientIdHasher>>;

/// Entries a map keeps room for however empty it gets.
const MIN_ROOM: usize = 64;

/// Gives most of `map`'s table back once it holds under a quarter of what
/// it has room for: call it after removing an entry. A map keeps its
/// table at the size of its busiest moment, and a crowd that connected
/// once (a room of 4,000 joining and leaving) otherwise held 7.4 MB of the
/// hub's client table and 6.4 MB of the smol server's own maps for good.
/// After a shrink to twice the entries left, the next needs half of those
/// gone, so the rehashes cost each removal O(1) on average; and a map just
/// shrunk has room to grow by as much again before it rehashes to grow.
///
/// ```
/// use ferry_core::{shrink_if_sparse, ClientMap};
/// let mut map: ClientMap<u32> = ClientMap::default();
/// for n in 0..4096 {
///     map.insert(ferry_core::ClientId(n), 0);
/// }
/// for n in 0..4000 {
///     map.remove(&ferry_core::ClientId(n));
///     shrink_if_sparse(&mut map);
/// }
/// assert!(map.capacity() < 1024);
/// ```
pub fn shrink_if_sparse<K: Eq + Hash, V, S: BuildHasher>(map: &mut HashMap<K, V, S>) {
    let room = map.capacity();
    if room > MIN_ROOM && map.len() < room / 4 {
        map.shrink_to((map.len() * 2).max(MIN_ROOM));
    }
}

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
    fn a_sparse_map_shrinks_once_per_halving_and_never_below_its_minimum() {
        let mut map: ClientMap<[u8; 64]> = ClientMap::default();
        for n in 0..8192 {
            map.insert(ClientId(n), [0; 64]);
        }
        let full = map.capacity();
        let mut shrinks = 0;
        for n in 0..8192 {
            let before = map.capacity();
            map.remove(&ClientId(n));
            shrink_if_sparse(&mut map);
            let after = map.capacity();
            if after < before {
                shrinks += 1;
                assert!(after >= 2 * map.len(), "room for twice what is left");
            }
            assert!(map.len() >= map.capacity() / 4 || map.capacity() <= 2 * MIN_ROOM);
        }
        assert!(map.capacity() <= 2 * MIN_ROOM, "{} left", map.capacity());
        assert!(full >= 8192);
        // One shrink per halving or so, not one per removal.
        assert!((2..=12).contains(&shrinks), "{shrinks} shrinks");
    }

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
