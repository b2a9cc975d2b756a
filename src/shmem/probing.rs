//! Open addressing for the tables in shared memory keyed by [`KeyId`] (leases, touches): linear
//! probing from a key's home slot, and removal by backward shift, so no tombstones pile up and a
//! probe stops at the first free slot.

use pgrx::pg_sys::{self, Oid};
use std::hash::Hasher;

/// A key of a cache table, as the tables in shared memory know it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct KeyId {
    pub database: u32,
    pub table: u32,
    pub hash: [u64; 2],
}

impl KeyId {
    /// The id of `key` in `table` of the current database.
    pub fn of(table: Oid, key: &str) -> KeyId {
        // SipHash with fixed keys: every backend runs the same library, so the same key hashes
        // alike in all of them.
        let hash = |seed: u64| {
            let mut hasher = std::hash::DefaultHasher::new();
            hasher.write_u64(seed);
            hasher.write(key.as_bytes());
            hasher.finish()
        };
        KeyId {
            // SAFETY: reads a backend global set at connection.
            database: unsafe { pg_sys::MyDatabaseId }.to_u32(),
            table: table.to_u32(),
            hash: [hash(0x7067_5f63_6163_6865), hash(0x6c65_6173_6573_2121)],
        }
    }
}

/// A slot of a probed table: free, or holding a key.
pub trait Keyed: Copy {
    const FREE: Self;
    /// The key held; `None` for a free slot.
    fn key(&self) -> Option<&KeyId>;
}

/// `N` slots, `taken` of them holding keys. Callers keep `taken < N`, so a probe always ends.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Probed<S: Keyed, const N: usize> {
    pub slots: [S; N],
    pub taken: usize,
}

impl<S: Keyed, const N: usize> Probed<S, N> {
    pub const EMPTY: Self = Probed { slots: [S::FREE; N], taken: 0 };

    fn home(key: &KeyId) -> usize {
        (key.hash[0] % N as u64) as usize
    }

    /// The slot of `key`, or the free slot where it would go.
    pub fn find(&self, key: &KeyId) -> (usize, bool) {
        let mut index = Self::home(key);
        loop {
            match self.slots[index].key() {
                None => return (index, false),
                Some(held) if held == key => return (index, true),
                Some(_) => index = (index + 1) % N,
            }
        }
    }

    /// Puts `slot` at `index`, a free slot [`find`](Self::find) gave for its key.
    pub fn insert_at(&mut self, index: usize, slot: S) {
        debug_assert!(self.slots[index].key().is_none());
        self.slots[index] = slot;
        self.taken += 1;
    }

    /// Frees slot `index`, moving later slots of the same probe run back; returns what it held.
    pub fn remove_at(&mut self, mut index: usize) -> S {
        let removed = self.slots[index];
        self.taken -= 1;
        loop {
            self.slots[index] = S::FREE;
            let mut next = index;
            loop {
                next = (next + 1) % N;
                let Some(key) = self.slots[next].key() else {
                    return removed;
                };
                let home = Self::home(key);
                // The slot at `next` may move to `index` unless its home lies cyclically in
                // (index, next].
                let stays =
                    if index <= next { index < home && home <= next } else { index < home || home <= next };
                if !stays {
                    self.slots[index] = self.slots[next];
                    index = next;
                    break;
                }
            }
        }
    }

    /// Frees every slot `pick` picks, handing each to `removed`.
    pub fn remove_where(&mut self, pick: impl Fn(&S) -> bool, mut removed: impl FnMut(S)) {
        let mut index = 0;
        let mut visited = 0;
        // A removal may move a later slot into `index`: look at it again. Every slot is seen at
        // least once in at most N + removals steps.
        while visited < 2 * N && index < N {
            visited += 1;
            let slot = &self.slots[index];
            if slot.key().is_some() && pick(slot) {
                removed(self.remove_at(index));
            } else {
                index += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: usize = 64;

    #[derive(Clone, Copy)]
    struct Plain(Option<KeyId>);

    impl Keyed for Plain {
        const FREE: Self = Plain(None);
        fn key(&self) -> Option<&KeyId> {
            self.0.as_ref()
        }
    }

    fn key(home: usize, tag: u64) -> KeyId {
        KeyId { database: 1, table: 2, hash: [home as u64, tag] }
    }

    fn table_with(keys: &[KeyId]) -> Box<Probed<Plain, N>> {
        let mut table = Box::new(Probed::<Plain, N>::EMPTY);
        for key in keys {
            let (index, found) = table.find(key);
            assert!(!found);
            table.insert_at(index, Plain(Some(*key)));
        }
        table
    }

    #[test]
    fn removal_keeps_every_other_key_reachable() {
        // A run that wraps around the end of the table, with keys of several homes.
        let keys: Vec<KeyId> = (0..12).map(|i| key((N - 4 + i / 3) % N, i as u64)).collect();
        let mut table = table_with(&keys);
        for (removed, key) in keys.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
            let (index, found) = table.find(key);
            assert!(found, "key {removed} present before its removal");
            assert_eq!(table.remove_at(index).0, Some(*key));
        }
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(table.find(key).1, i % 2 == 1, "key {i}");
        }
        assert_eq!(table.taken, 6);
    }

    #[test]
    fn remove_where_drops_exactly_what_it_picks() {
        let keys: Vec<KeyId> = (0..40).map(|i| key((N - 10 + i / 4) % N, i as u64)).collect();
        let mut table = table_with(&keys);
        let mut removed = 0;
        table.remove_where(|slot| slot.0.is_some_and(|key| key.hash[1] % 3 == 0), |_| removed += 1);
        assert_eq!(removed, 14);
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(table.find(key).1, i % 3 != 0, "key {i}");
        }
        assert_eq!(table.taken, 26);
    }
}
