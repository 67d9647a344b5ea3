//! A bounded map whose entries expire (request ids, scheduled-record ids, revocations).
//!
//! Inserting into a full map first evicts expired entries (soonest first); if every entry is
//! still live the insert is refused with [`StoreFull`] rather than forgetting anything — a
//! forgotten request id or revocation would re-open a replay. Memory per entry is the key, the
//! value and an expiry (plus one heap slot); nothing else is kept.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::Hash;

use thiserror::Error;

/// The store holds `capacity` unexpired entries.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error(
    "{name} store is full ({capacity} unexpired entries); refusing new work rather than forgetting"
)]
pub struct StoreFull {
    pub name: &'static str,
    pub capacity: usize,
}

/// Largest capacity reserved up front.
pub const PRESIZE_LIMIT: usize = 4_000_000;

#[derive(Debug)]
struct Entry<V> {
    value: V,
    expires_at: u64,
}

/// A map with per-entry expiry (unix seconds) and a hard capacity.
#[derive(Debug)]
pub struct TtlMap<K, V> {
    name: &'static str,
    capacity: usize,
    /// The capacity configured; `capacity` exceeds it only while a handover's import needs more.
    configured: usize,
    entries: HashMap<K, Entry<V>>,
    expiry: BinaryHeap<Reverse<(u64, K)>>,
}

impl<K: Hash + Eq + Ord + Copy, V> TtlMap<K, V> {
    /// A map for at most `capacity` live entries. Storage for up to [`PRESIZE_LIMIT`] entries is
    /// reserved up front, so the table never rehashes (a rehash briefly holds the old and the new
    /// table: a memory spike exactly when the store is busiest). Untouched pages of the
    /// reservation are not committed by the OS, so an idle store costs little.
    pub fn new(name: &'static str, capacity: usize) -> Self {
        let reserve = capacity.min(PRESIZE_LIMIT);
        Self {
            name,
            capacity,
            configured: capacity,
            entries: HashMap::with_capacity(reserve),
            expiry: BinaryHeap::with_capacity(reserve),
        }
    }

    /// `key`'s value and expiry (live or not).
    pub fn entry_of(&self, key: &K) -> Option<(V, u64)>
    where
        V: Copy,
    {
        self.entries.get(key).map(|e| (e.value, e.expires_at))
    }

    /// The live value for `key` at `now`.
    pub fn get(&self, key: &K, now: u64) -> Option<&V> {
        self.entries.get(key).filter(|e| e.expires_at > now).map(|e| &e.value)
    }

    /// The live value for `key` at `now`, to change in place (its expiry stays).
    pub fn get_mut(&mut self, key: &K, now: u64) -> Option<&mut V> {
        self.entries.get_mut(key).filter(|e| e.expires_at > now).map(|e| &mut e.value)
    }

    /// Removes every entry for which `remove` says so; returns how many. Their heap slots stay
    /// until they expire (an expiry finding no matching entry drops nothing).
    pub fn remove_where(&mut self, mut remove: impl FnMut(&K, &V) -> bool) -> usize {
        let before = self.entries.len();
        self.entries.retain(|k, e| !remove(k, &e.value));
        before - self.entries.len()
    }

    /// Makes room for one new key (evicting expired entries) or reports that none can be made.
    pub fn ensure_room(&mut self, now: u64) -> Result<(), StoreFull> {
        if self.entries.len() >= self.capacity {
            self.evict_expired(now);
        }
        if self.entries.len() >= self.capacity {
            return Err(StoreFull { name: self.name, capacity: self.capacity });
        }
        Ok(())
    }

    /// Inserts or replaces `key` until `expires_at`. Replacing with the same expiry adds no
    /// heap slot (repeated writes of one key cannot grow the store).
    pub fn insert(&mut self, key: K, value: V, expires_at: u64, now: u64) -> Result<(), StoreFull> {
        match self.entries.get_mut(&key) {
            Some(e) if e.expires_at == expires_at => {
                e.value = value;
                return Ok(());
            }
            Some(_) => {}
            None => self.ensure_room(now)?,
        }
        self.entries.insert(key, Entry { value, expires_at });
        self.expiry.push(Reverse((expires_at, key)));
        self.compact_if_sparse();
        Ok(())
    }

    /// Removes `key`. Its heap slot stays until it expires or the heap is compacted.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let removed = self.entries.remove(key).map(|e| e.value);
        self.compact_if_sparse();
        removed
    }

    /// Rebuilds the expiry heap from the live entries when stale slots (of removed or
    /// re-inserted keys) outnumber them: the heap stays within a small multiple of the store,
    /// whatever the pattern of removals. Amortized O(1) per operation.
    fn compact_if_sparse(&mut self) {
        if self.expiry.len() > 2 * self.entries.len().max(1024) {
            self.expiry = self.entries.iter().map(|(k, e)| Reverse((e.expires_at, *k))).collect();
        }
    }

    /// Inserts `key` until `expires_at`, making room if needed by evicting expired entries and
    /// then the live entries closest to expiry. For stores whose entries only ration attempts
    /// (refused envelopes), where refusing all work when full would hand anyone who can fill
    /// the store a denial of service; never for stores whose entries prevent a replay.
    pub fn insert_evicting(&mut self, key: K, value: V, expires_at: u64, now: u64) {
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            self.evict_expired(now);
            while self.entries.len() >= self.capacity.max(1) {
                let Some(Reverse((soonest, victim))) = self.expiry.pop() else { break };
                if self.entries.get(&victim).is_some_and(|e| e.expires_at == soonest) {
                    self.entries.remove(&victim);
                }
            }
        }
        self.entries.insert(key, Entry { value, expires_at });
        self.expiry.push(Reverse((expires_at, key)));
        self.compact_if_sparse();
    }

    /// Drops every entry that expired at or before `now`. Returns how many were dropped.
    pub fn evict_expired(&mut self, now: u64) -> usize {
        let mut dropped = 0;
        while let Some(Reverse((expires_at, key))) = self.expiry.peek().copied() {
            if expires_at > now {
                break;
            }
            self.expiry.pop();
            // The key may have been re-inserted with a later expiry; only drop the matching one.
            if self.entries.get(&key).is_some_and(|e| e.expires_at == expires_at) {
                self.entries.remove(&key);
                dropped += 1;
            }
        }
        // Room made for an import lasts only while the imported entries do.
        if self.entries.len() <= self.configured {
            self.capacity = self.configured;
        }
        dropped
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// When `key`'s entry expires (live or not).
    pub fn expiry_of(&self, key: &K) -> Option<u64> {
        self.entries.get(key).map(|e| e.expires_at)
    }

    /// Every live entry at `now` with its expiry (for a handover).
    pub fn live(&self, now: u64) -> impl Iterator<Item = (&K, &V, u64)> + '_ {
        self.entries
            .iter()
            .filter(move |(_, e)| e.expires_at > now)
            .map(|(k, e)| (k, &e.value, e.expires_at))
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Raises the capacity, if needed, so `additional` new keys fit: a handover imports a
    /// predecessor's entries whatever this enclave's configured size (they are bounded by the
    /// predecessor's), since refusing them after the predecessor stopped would strand both.
    /// The capacity returns to the configured one as soon as expiries bring the entries back
    /// under it.
    pub fn make_room_for(&mut self, additional: usize) {
        self.capacity = self.capacity.max(self.entries.len().saturating_add(additional));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removals_and_rewrites_never_grow_the_expiry_heap_past_a_multiple_of_the_store() {
        let mut m: TtlMap<u32, ()> = TtlMap::new("test", 16);
        for k in 0..100_000u32 {
            m.insert(k, (), 1_000 + u64::from(k), 0).unwrap();
            m.remove(&k);
            m.insert(7, (), 2_000 + u64::from(k), 0).unwrap();
        }
        assert_eq!(m.len(), 1);
        assert!(m.expiry.len() <= 2 * 1024 + 1, "{} heap slots", m.expiry.len());
        assert_eq!(m.evict_expired(u64::MAX), 1);
    }

    #[test]
    fn room_made_for_an_import_lasts_only_while_the_imported_entries_do() {
        let mut m = TtlMap::new("request id", 1);
        m.make_room_for(3);
        for k in 0..3u8 {
            m.insert(k, (), 10 + u64::from(k), 0).unwrap();
        }
        assert_eq!((m.len(), m.capacity()), (3, 3));
        assert!(m.insert(9, (), 50, 0).is_err(), "full of live entries: refused");
        m.evict_expired(11);
        assert_eq!((m.len(), m.capacity()), (1, 1), "back to the configured size");
        assert!(m.insert(9, (), 50, 11).is_err());
    }

    #[test]
    fn evicting_inserts_never_fail_and_drop_the_entry_closest_to_expiry() {
        let mut m = TtlMap::new("refused envelope", 2);
        m.insert_evicting(1u8, (), 100, 0);
        m.insert_evicting(2u8, (), 50, 0);
        m.insert_evicting(3u8, (), 200, 0);
        assert_eq!(m.len(), 2);
        assert!(m.get(&2, 0).is_none(), "the entry expiring soonest gave way");
        assert!(m.get(&1, 0).is_some() && m.get(&3, 0).is_some());
        // Re-inserting a present key needs no room.
        m.insert_evicting(3u8, (), 300, 0);
        assert_eq!(m.len(), 2);
        assert!(m.get(&1, 0).is_some());
    }

    #[test]
    fn full_store_evicts_expired_first_then_refuses() {
        let mut m: TtlMap<u32, ()> = TtlMap::new("test", 3);
        m.insert(1, (), 10, 0).unwrap();
        m.insert(2, (), 20, 0).unwrap();
        m.insert(3, (), 30, 0).unwrap();
        assert_eq!(m.insert(4, (), 40, 5), Err(StoreFull { name: "test", capacity: 3 }));
        // At t=10 entry 1 has expired and makes room.
        m.insert(4, (), 40, 10).unwrap();
        assert!(m.get(&1, 10).is_none());
        assert!(m.get(&2, 10).is_some());
        assert_eq!(m.len(), 3);
        assert!(m.insert(5, (), 50, 19).is_err());
    }

    #[test]
    fn expired_entries_are_invisible_and_reinsertion_keeps_the_new_expiry() {
        let mut m: TtlMap<u32, &str> = TtlMap::new("test", 10);
        m.insert(1, "a", 10, 0).unwrap();
        assert_eq!(m.get(&1, 9), Some(&"a"));
        assert_eq!(m.get(&1, 10), None);
        m.insert(1, "b", 100, 10).unwrap();
        assert_eq!(m.evict_expired(50), 0, "stale heap entry must not evict the new value");
        assert_eq!(m.get(&1, 50), Some(&"b"));
        assert_eq!(m.evict_expired(100), 1);
        assert!(m.is_empty());
    }
}
