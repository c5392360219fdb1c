//! Header block decoding (RFC 7541 §6).

use std::fmt;

use super::literal::{decode_int, decode_string};
use super::table::{DynamicTable, Lookup, DEFAULT_TABLE_SIZE};
use super::{HeaderField, HpackError, STATIC_TABLE};

/// Counters of one decoder.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HpackStats {
    pub blocks: u64,
    pub fields: u64,
    /// References into the unknown tail (pre-attach or post-gap entries).
    pub unknown_refs: u64,
    /// References beyond anything the table could hold.
    pub invalid_refs: u64,
    /// Blocks that failed to decode.
    pub errors: u64,
    /// Times the table content was declared unknown (late start, gap, error).
    pub lost_sync: u64,
    pub size_updates: u64,
}

pub struct Decoder {
    table: DynamicTable,
    stats: HpackStats,
}

/// A resolved name: `None` when it is unknown.
type Name = Option<Vec<u8>>;

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// A decoder that sees the connection from its start.
    pub fn new() -> Self {
        Self::with_max_size(DEFAULT_TABLE_SIZE)
    }

    /// Fresh decoder whose peer advertised SETTINGS_HEADER_TABLE_SIZE = `max`.
    pub fn with_max_size(max: usize) -> Self {
        Self {
            table: DynamicTable::new(max),
            stats: HpackStats::default(),
        }
    }

    /// A decoder attached to a running connection.
    pub fn new_late() -> Self {
        let mut d = Self::new();
        d.lose_sync();
        d
    }

    pub fn table(&self) -> &DynamicTable {
        &self.table
    }

    pub fn stats(&self) -> HpackStats {
        self.stats
    }

    /// Header blocks may have been missed (gap, oversized or undecodable
    /// block): what the table holds is unknown from now on.
    pub fn lose_sync(&mut self) {
        self.stats.lost_sync += 1;
        self.table.lose_sync();
    }

    /// SETTINGS_HEADER_TABLE_SIZE sent by the side that owns this decoder.
    pub fn set_settings_max(&mut self, max: u32) {
        self.table.set_settings_max(max as usize);
    }

    /// Decodes one complete header block. On error the table state is
    /// unknown afterwards (the rest of the block may have inserted entries).
    pub fn decode(&mut self, block: &[u8]) -> Result<Vec<HeaderField>, HpackError> {
        self.stats.blocks += 1;
        let mut out = Vec::new();
        match self.decode_into(block, &mut out) {
            Ok(()) => {
                self.stats.fields += out.len() as u64;
                Ok(out)
            }
            Err(e) => {
                self.stats.errors += 1;
                self.lose_sync();
                Err(e)
            }
        }
    }

    fn decode_into(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<HeaderField>,
    ) -> Result<(), HpackError> {
        while let Some(&first) = input.first() {
            input = if first & 0x80 != 0 {
                // §6.1 indexed field.
                let (index, rest) = decode_int(input, 7)?;
                out.push(self.field_at(index)?);
                rest
            } else if first & 0x40 != 0 {
                // §6.2.1 literal with incremental indexing.
                self.literal(input, 6, true, out)?
            } else if first & 0x20 != 0 {
                // §6.3 dynamic table size update.
                let (size, rest) = decode_int(input, 5)?;
                self.stats.size_updates += 1;
                self.table.set_max_size(size as usize);
                rest
            } else {
                // §6.2.2 without indexing (0000), §6.2.3 never indexed (0001).
                self.literal(input, 4, false, out)?
            };
        }
        Ok(())
    }

    fn literal<'a>(
        &mut self,
        input: &'a [u8],
        prefix: u8,
        index: bool,
        out: &mut Vec<HeaderField>,
    ) -> Result<&'a [u8], HpackError> {
        let (name_index, rest) = decode_int(input, prefix)?;
        let (name, rest) = if name_index == 0 {
            let (n, rest) = decode_string(rest)?;
            (Some(n), rest)
        } else {
            (self.name_at(name_index)?, rest)
        };
        let (value, rest) = decode_string(rest)?;
        if index {
            let boxed = name.as_deref().map(Box::<[u8]>::from);
            self.table.insert(boxed, value.as_slice().into());
        }
        out.push(match name {
            Some(name) => HeaderField::Known { name, value },
            None => HeaderField::Unknown { index: name_index },
        });
        Ok(rest)
    }

    fn field_at(&mut self, index: u32) -> Result<HeaderField, HpackError> {
        if let Some((n, v)) = static_entry(index)? {
            return Ok(HeaderField::new(n, v));
        }
        Ok(match self.dynamic(index) {
            Some((Some(name), value)) => HeaderField::Known { name, value },
            _ => HeaderField::Unknown { index },
        })
    }

    fn name_at(&mut self, index: u32) -> Result<Name, HpackError> {
        if let Some((n, _)) = static_entry(index)? {
            return Ok(Some(n.as_bytes().to_vec()));
        }
        Ok(self.dynamic(index).and_then(|(name, _)| name))
    }

    /// Resolves a dynamic index, counting what cannot be resolved.
    fn dynamic(&mut self, index: u32) -> Option<(Name, Vec<u8>)> {
        let d = (index as usize).saturating_sub(STATIC_TABLE.len() + 1);
        match self.table.get(d) {
            Lookup::Entry { name, value } => Some((name.map(<[u8]>::to_vec), value.to_vec())),
            Lookup::Unknown => {
                self.stats.unknown_refs += 1;
                None
            }
            Lookup::Invalid => {
                self.stats.invalid_refs += 1;
                self.table.reopen_tail();
                None
            }
        }
    }
}

/// `Ok(None)` for a dynamic index; index 0 is a decoding error.
fn static_entry(index: u32) -> Result<Option<(&'static str, &'static str)>, HpackError> {
    match index {
        0 => Err(HpackError::ZeroIndex),
        i => Ok(STATIC_TABLE.get(i as usize - 1).copied()),
    }
}

impl fmt::Debug for Decoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoder")
            .field("known_entries", &self.table.len())
            .field("table_size", &self.table.size())
            .field("fully_known", &self.table.is_fully_known())
            .field("stats", &self.stats)
            .finish()
    }
}
