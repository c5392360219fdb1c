//! The dynamic table (RFC 7541 §2.3.2, §4) with an unknown tail.

use std::collections::VecDeque;

use crate::protocol::limits::MAX_HPACK_TABLE;

/// Initial SETTINGS_HEADER_TABLE_SIZE.
pub const DEFAULT_TABLE_SIZE: usize = 4096;
/// Per-entry overhead counted in the table size (RFC 7541 §4.1).
pub const ENTRY_OVERHEAD: usize = 32;

struct Entry {
    /// `None` when inserted with a name reference we could not resolve.
    name: Option<Box<[u8]>>,
    value: Box<[u8]>,
}

impl Entry {
    /// The size of an unknown-name entry is a lower bound.
    fn size(&self) -> usize {
        ENTRY_OVERHEAD + self.name.as_ref().map_or(0, |n| n.len()) + self.value.len()
    }
}

/// What a dynamic index resolves to. `Debug` shows an entry's name and its
/// value's length only (a value may be an `authorization` header).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// An entry inserted while we were watching (name `None` if its name
    /// was itself an unknown reference).
    Entry {
        name: Option<&'a [u8]>,
        value: &'a [u8],
    },
    /// Beyond the known entries, in the unknown tail.
    Unknown,
    /// Beyond every entry the table can hold: the peer (or our model) is wrong.
    Invalid,
}

impl std::fmt::Debug for Lookup<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lookup::Entry { name, value } => f
                .debug_struct("Entry")
                .field("name", &name.map(String::from_utf8_lossy))
                .field("value_len", &value.len())
                .finish(),
            Lookup::Unknown => f.write_str("Unknown"),
            Lookup::Invalid => f.write_str("Invalid"),
        }
    }
}

/// Newest entry first. Known entries are exactly the inserts seen since the
/// decoder attached (or last lost sync); `unknown_tail` says whether older
/// entries of unknown content may still sit behind them.
pub struct DynamicTable {
    entries: VecDeque<Entry>,
    size: usize,
    max_size: usize,
    settings_max: usize,
    /// `max_size` is an assumption (late join: the encoder's size updates
    /// before attach were not seen); it then follows `settings_max`.
    max_assumed: bool,
    unknown_tail: bool,
}

impl DynamicTable {
    /// A table seen from the start of the connection.
    pub fn new(max_size: usize) -> Self {
        let max_size = max_size.min(MAX_HPACK_TABLE);
        Self {
            entries: VecDeque::new(),
            size: 0,
            max_size,
            settings_max: max_size,
            max_assumed: false,
            unknown_tail: false,
        }
    }

    /// A table joined late: its current content is unknown, its maximum
    /// size assumed to be the protocol limit.
    pub fn new_late(settings_max: usize) -> Self {
        let mut t = Self::new(settings_max);
        t.lose_sync();
        t
    }

    /// Inserts may have been missed: every known entry's index is now
    /// uncertain, so all content becomes unknown.
    pub fn lose_sync(&mut self) {
        self.entries.clear();
        self.size = 0;
        self.max_size = self.settings_max;
        self.max_assumed = true;
        self.unknown_tail = true;
    }

    /// Resolves dynamic position `d` (HPACK index minus 62).
    pub fn get(&self, d: usize) -> Lookup<'_> {
        match self.entries.get(d) {
            Some(e) => Lookup::Entry {
                name: e.name.as_deref(),
                value: &e.value,
            },
            None if self.unknown_tail => Lookup::Unknown,
            None => Lookup::Invalid,
        }
    }

    /// After an [`Lookup::Invalid`] reference: our size model was wrong
    /// (e.g. a larger table was negotiated before we attached). Treat what
    /// lies beyond the known entries as unknown again.
    pub fn reopen_tail(&mut self) {
        self.unknown_tail = true;
        self.max_assumed = true;
    }

    pub fn insert(&mut self, name: Option<Box<[u8]>>, value: Box<[u8]>) {
        let entry = Entry { name, value };
        let size = entry.size();
        if size > self.max_size {
            // RFC 7541 §4.4: an entry larger than the table empties it.
            self.entries.clear();
            self.size = 0;
            self.unknown_tail = false;
            return;
        }
        self.evict_to(self.max_size - size);
        self.size += size;
        self.entries.push_front(entry);
        self.settle_tail();
    }

    /// A dynamic table size update from the encoder.
    pub fn set_max_size(&mut self, max_size: usize) {
        self.max_size = max_size.min(MAX_HPACK_TABLE);
        self.max_assumed = false;
        self.evict_to(self.max_size);
        self.settle_tail();
    }

    /// SETTINGS_HEADER_TABLE_SIZE advertised by this decoder's side.
    pub fn set_settings_max(&mut self, settings_max: usize) {
        self.settings_max = settings_max.min(MAX_HPACK_TABLE);
        if self.max_assumed || self.max_size > self.settings_max {
            self.max_size = self.settings_max;
            self.evict_to(self.max_size);
            self.settle_tail();
        }
    }

    /// Evicts oldest-first. Unknown entries are older than every known
    /// one, so evicting a known entry means the unknown tail is gone too.
    fn evict_to(&mut self, limit: usize) {
        while self.size > limit {
            match self.entries.pop_back() {
                Some(e) => {
                    self.size -= e.size();
                    self.unknown_tail = false;
                }
                None => break,
            }
        }
    }

    /// An older (unknown) entry needs at least 32 octets next to the known
    /// ones; without that room the unknown tail has been evicted.
    fn settle_tail(&mut self) {
        if self.size + ENTRY_OVERHEAD > self.max_size {
            self.unknown_tail = false;
        }
    }

    /// Table size in RFC 7541 units (known entries only).
    pub fn size(&self) -> usize {
        self.size
    }

    pub fn max_size(&self) -> usize {
        self.max_size
    }

    /// Known entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn is_fully_known(&self) -> bool {
        !self.unknown_tail
    }

    /// Most entries of unknown content that may still be in the table.
    pub fn unknown_entries_bound(&self) -> usize {
        if self.unknown_tail {
            self.max_size.saturating_sub(self.size) / ENTRY_OVERHEAD
        } else {
            0
        }
    }

    /// Known entries, newest first, as (name, value); for tests and tools.
    pub fn iter(&self) -> impl Iterator<Item = (Option<&[u8]>, &[u8])> {
        self.entries.iter().map(|e| (e.name.as_deref(), &*e.value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Box<[u8]> {
        s.as_bytes().into()
    }

    #[test]
    fn debug_shows_names_and_value_lengths_only() {
        let mut t = DynamicTable::new(4096);
        t.insert(Some(b("authorization")), b("Bearer t1.SECRET"));
        let debug = format!("{:?}", t.get(0));
        assert_eq!(debug, r#"Entry { name: Some("authorization"), value_len: 16 }"#);
    }

    #[test]
    fn eviction_keeps_newest_and_size_accounting() {
        let mut t = DynamicTable::new(100);
        t.insert(Some(b("aaaa")), b("1111")); // 40
        t.insert(Some(b("bbbb")), b("2222")); // 80
        t.insert(Some(b("cccc")), b("3333")); // evicts aaaa
        assert_eq!(t.size(), 80);
        assert_eq!(
            t.get(0),
            Lookup::Entry {
                name: Some(b"cccc"),
                value: b"3333"
            }
        );
        assert_eq!(
            t.get(1),
            Lookup::Entry {
                name: Some(b"bbbb"),
                value: b"2222"
            }
        );
        assert_eq!(t.get(2), Lookup::Invalid);
        t.set_max_size(0);
        assert!(t.is_empty());
    }

    #[test]
    fn late_table_tail_is_unknown_until_pushed_out() {
        let mut t = DynamicTable::new_late(128);
        assert_eq!(t.get(0), Lookup::Unknown);
        assert_eq!(t.unknown_entries_bound(), 4);
        t.insert(Some(b("x")), b("y")); // 34: room for older entries remains
        assert_eq!(t.get(1), Lookup::Unknown);
        t.insert(Some(b("k")), b(&"v".repeat(40))); // 34 + 73 = 107 > 128 - 32
        assert!(t.is_fully_known());
        assert_eq!(t.get(2), Lookup::Invalid);
    }

    #[test]
    fn size_update_to_zero_makes_late_table_known() {
        let mut t = DynamicTable::new_late(4096);
        t.set_max_size(0);
        assert!(t.is_fully_known());
        t.set_max_size(4096);
        t.insert(Some(b("a")), b("b"));
        assert_eq!(t.get(1), Lookup::Invalid);
    }

    #[test]
    fn oversized_entry_empties_the_table() {
        let mut t = DynamicTable::new(64);
        t.insert(Some(b("a")), b("b"));
        t.insert(Some(b("a")), b(&"v".repeat(64)));
        assert!(t.is_empty() && t.is_fully_known());
    }
}
