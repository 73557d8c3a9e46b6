//! Series ids found in the order they arrive: a map from id to a value that costs one
//! memory step per lookup while the ids come in the order they first came.
//!
//! Entries sit in the order their ids were pushed, and a lookup tries the entry after
//! the one found last before it probes the index: a target's samples come in the
//! same order on every scrape, so they are found one after another in memory. With a
//! probe of a 100k-entry map per sample (a cache miss each), the lookup of the routes
//! was the largest item of the workers' CPU on the compare bench's interval rules (6%
//! of the process; perf record). Used for the routes of each series
//! ([`crate::render::route`]) and the series-id and label-set dictionaries of the
//! exchange ([`crate::sample::SentIds`], [`crate::render::dictionary`]).

use hashbrown::HashTable;

/// Values by series id, in the order the ids were pushed (see the module doc).
pub struct ArrivalIndex<V> {
    /// Per id, in the order they came: the id and its value.
    entries: Vec<(u64, V)>,
    /// Positions in `entries`, by id.
    index: HashTable<u32>,
    /// Where the next lookup looks first.
    next: usize,
}

impl<V> Default for ArrivalIndex<V> {
    fn default() -> Self {
        ArrivalIndex {
            entries: Vec::new(),
            index: HashTable::new(),
            next: 0,
        }
    }
}

impl<V> ArrivalIndex<V> {
    /// The number of ids.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds no id.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets every id.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.index.clear();
        self.next = 0;
    }

    /// The position of `id` (its entry's, in the order the ids came), if held.
    pub fn find(&mut self, id: u64) -> Option<usize> {
        let at = match self.entries.get(self.next) {
            Some(&(guess, _)) if guess == id => self.next,
            _ => {
                let entries = &self.entries;
                *self.index.find(id, |&at| entries[at as usize].0 == id)? as usize
            }
        };
        self.next = at + 1;
        Some(at)
    }

    /// Adds `id` (not held) with `value`; its position.
    pub fn push(&mut self, id: u64, value: V) -> usize {
        let at = self.entries.len();
        self.entries.push((id, value));
        let entries = &self.entries;
        self.index
            .insert_unique(id, at as u32, |&at| entries[at as usize].0);
        self.next = at + 1;
        at
    }

    /// The value at position `at`.
    pub fn value(&self, at: usize) -> &V {
        &self.entries[at].1
    }

    /// The value at position `at`, to change.
    pub fn value_mut(&mut self, at: usize) -> &mut V {
        &mut self.entries[at].1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_found_in_and_out_of_their_order() {
        let mut ids = ArrivalIndex::default();
        for id in [7u64, 3, 9] {
            assert_eq!(ids.find(id), None);
            ids.push(id, id * 10);
        }
        // In order, then out of it, then in order again from where it was found.
        for (id, at) in [(7, 0), (3, 1), (9, 2), (3, 1), (9, 2), (7, 0), (3, 1)] {
            assert_eq!(ids.find(id), Some(at), "{id}");
            assert_eq!(*ids.value(at), id * 10);
        }
        *ids.value_mut(1) = 1;
        assert_eq!(*ids.value(1), 1);
        assert_eq!(ids.find(4), None);
        assert_eq!(ids.len(), 3);
        ids.clear();
        assert!(ids.is_empty() && ids.find(7).is_none());
    }
}
