//! `SortedMap`: an ordered map kept as one sorted `Vec` of exactly its entries.
//!
//! Why not `BTreeMap`: a B-tree leaf always has room for 11 entries, so a conversation's
//! maps of one or three entries (a participant's communications, its attributes, a
//! conversation's participants) each cost a whole leaf — most of a live conversation's
//! memory. The maps Convoy keeps per conversation are small and mostly read; a sorted
//! vector with binary search is as fast at these sizes and holds only what it holds.
//! Iteration is in key order, like `BTreeMap`, so everything derived from a state
//! (transitions, views, writes) stays deterministic.
//!
//! The entries are a boxed slice, not a `Vec`: a conversation holds about fifteen of these
//! maps, mostly empty or of one entry, and a capacity field they never use would cost 8
//! bytes each.

use std::borrow::Borrow;
use std::fmt;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SortedMap<K, V> {
    entries: Box<[(K, V)]>,
}

impl<K, V> Default for SortedMap<K, V> {
    fn default() -> Self {
        SortedMap {
            entries: Box::default(),
        }
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for SortedMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|(k, v)| (k, v)))
            .finish()
    }
}

impl<K: Ord, V> SortedMap<K, V> {
    pub fn new() -> Self {
        SortedMap::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn position<Q>(&self, key: &Q) -> Result<usize, usize>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.entries
            .binary_search_by(|(probe, _)| probe.borrow().cmp(key))
    }

    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.position(key).ok().map(|at| &self.entries[at].1)
    }

    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        match self.position(key) {
            Ok(at) => Some(&mut self.entries[at].1),
            Err(_) => None,
        }
    }

    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.position(key).is_ok()
    }

    /// Inserts, returning the value `key` had.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.position(&key) {
            Ok(at) => Some(std::mem::replace(&mut self.entries[at].1, value)),
            Err(at) => {
                self.insert_at(at, key, value);
                None
            }
        }
    }

    /// Grows by exactly one: these maps stay small and long-lived, and spare capacity
    /// would be kept for the conversation's whole life.
    fn insert_at(&mut self, at: usize, key: K, value: V) {
        let mut entries = std::mem::take(&mut self.entries).into_vec();
        entries.reserve_exact(1);
        entries.insert(at, (key, value));
        self.entries = entries.into_boxed_slice();
    }

    /// Edits the entries as a vector, then holds exactly what is left.
    fn edit<R>(&mut self, change: impl FnOnce(&mut Vec<(K, V)>) -> R) -> R {
        let mut entries = std::mem::take(&mut self.entries).into_vec();
        let result = change(&mut entries);
        self.entries = entries.into_boxed_slice();
        result
    }

    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        match self.position(key) {
            Ok(at) => Some(self.edit(|entries| entries.remove(at).1)),
            Err(_) => None,
        }
    }

    /// The value of `key`, inserted from `make` first if absent.
    pub fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        let at = match self.position(&key) {
            Ok(at) => at,
            Err(at) => {
                self.insert_at(at, key, make());
                at
            }
        };
        &mut self.entries[at].1
    }

    /// The value of `key`, inserted first if absent; the owned key is made (cloned) only
    /// then, so a lookup of an existing key allocates nothing.
    pub fn get_or_insert_cloned<Q>(&mut self, key: &Q, make: impl FnOnce() -> V) -> &mut V
    where
        K: Borrow<Q>,
        Q: Ord + ToOwned<Owned = K> + ?Sized,
    {
        let at = match self.position(key) {
            Ok(at) => at,
            Err(at) => {
                self.insert_at(at, key.to_owned(), make());
                at
            }
        };
        &mut self.entries[at].1
    }

    /// `BTreeMap`-style entry for `key` (inserting only through the returned handle).
    pub fn entry(&mut self, key: K) -> Entry<'_, K, V> {
        Entry { map: self, key }
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        self.edit(|entries| entries.retain_mut(|(k, v)| keep(k, v)));
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&K, &V)> + ExactSizeIterator {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    pub fn iter_mut(&mut self) -> impl DoubleEndedIterator<Item = (&K, &mut V)> {
        self.entries.iter_mut().map(|(k, v)| (&*k, v))
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &K> + ExactSizeIterator {
        self.entries.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> + ExactSizeIterator {
        self.entries.iter().map(|(_, v)| v)
    }

    pub fn values_mut(&mut self) -> impl DoubleEndedIterator<Item = &mut V> {
        self.entries.iter_mut().map(|(_, v)| v)
    }
}

/// A key of a [`SortedMap`] about to be read or inserted.
pub struct Entry<'a, K, V> {
    map: &'a mut SortedMap<K, V>,
    key: K,
}

impl<'a, K: Ord, V> Entry<'a, K, V> {
    pub fn or_insert_with(self, make: impl FnOnce() -> V) -> &'a mut V {
        self.map.get_or_insert_with(self.key, make)
    }

    pub fn or_insert(self, value: V) -> &'a mut V {
        self.map.get_or_insert_with(self.key, || value)
    }

    pub fn or_default(self) -> &'a mut V
    where
        V: Default,
    {
        self.map.get_or_insert_with(self.key, V::default)
    }
}

impl<K: Ord, V> Extend<(K, V)> for SortedMap<K, V> {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, items: I) {
        for (key, value) in items {
            self.insert(key, value);
        }
    }
}

impl<K: Ord, V> FromIterator<(K, V)> for SortedMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(items: I) -> Self {
        let mut map = SortedMap::new();
        map.extend(items);
        map
    }
}

impl<K, V, Q> std::ops::Index<&Q> for SortedMap<K, V>
where
    K: Ord + Borrow<Q>,
    Q: Ord + ?Sized,
{
    type Output = V;

    /// Panics when `key` is absent, like `BTreeMap`'s index; for tests and known keys.
    #[allow(clippy::expect_used)]
    fn index(&self, key: &Q) -> &V {
        self.get(key).expect("no entry for the key in SortedMap")
    }
}

impl<'a, K, V> IntoIterator for &'a SortedMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = std::iter::Map<std::slice::Iter<'a, (K, V)>, fn(&'a (K, V)) -> (&'a K, &'a V)>;

    fn into_iter(self) -> Self::IntoIter {
        fn split<K, V>(entry: &(K, V)) -> (&K, &V) {
            (&entry.0, &entry.1)
        }
        self.entries.iter().map(split)
    }
}

impl<K: Serialize, V: Serialize> Serialize for SortedMap<K, V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.entries.len()))?;
        for (key, value) in self.entries.iter() {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any sequence of inserts, overwrites and removals leaves the same entries, in the
        /// same order, as a `BTreeMap` would.
        #[test]
        fn behaves_like_a_btreemap(ops in proptest::collection::vec((0u8..3, 0u8..20, 0u16..u16::MAX / 2), 0..200)) {
            let mut sorted = SortedMap::new();
            let mut reference = BTreeMap::new();
            for (op, key, value) in ops {
                match op {
                    0 => prop_assert_eq!(sorted.insert(key, value), reference.insert(key, value)),
                    1 => prop_assert_eq!(sorted.remove(&key), reference.remove(&key)),
                    _ => {
                        *sorted.get_or_insert_with(key, || 0) += 1;
                        *reference.entry(key).or_insert(0) += 1;
                    }
                }
                prop_assert_eq!(sorted.len(), reference.len());
            }
            let entries: Vec<_> = sorted.iter().map(|(k, v)| (*k, *v)).collect();
            let expected: Vec<_> = reference.into_iter().collect();
            prop_assert_eq!(entries, expected);
        }
    }

    #[test]
    fn holds_exactly_its_entries() {
        let mut map = SortedMap::new();
        for key in 0..5 {
            map.insert(key, key);
        }
        assert_eq!(map.entries.len(), 5);
        map.remove(&2);
        assert_eq!(map.entries.len(), 4);
        // A pointer and a length: no capacity to keep.
        assert_eq!(std::mem::size_of::<SortedMap<u8, u8>>(), 16);
    }

    #[test]
    fn borrowed_lookups_and_serialisation_as_a_map() {
        let map: SortedMap<String, u8> = [("b".to_owned(), 2), ("a".to_owned(), 1)]
            .into_iter()
            .collect();
        assert_eq!(map.get("a"), Some(&1));
        assert_eq!(map["b"], 2);
        assert_eq!(serde_json::to_string(&map).unwrap(), r#"{"a":1,"b":2}"#);
    }
}
