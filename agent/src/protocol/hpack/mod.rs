//! HPACK (RFC 7541) decoding with late-join semantics.
//!
//! A decoder attached to a connection that was already running cannot know
//! the dynamic-table entries inserted before it attached. It models them as
//! an *unknown tail*: entries inserted after attach are known and occupy the
//! lowest dynamic indices (newest first), so a reference below their count
//! resolves exactly; a reference beyond them resolves to
//! [`HeaderField::Unknown`] — fail closed, never guessed. The tail is gone
//! (the table becomes fully known) once a size update or known inserts leave
//! no room for even one older entry (32 octets). A decoder that saw the
//! connection from its preface knows everything from the start.
mod decoder;
mod field;
pub mod huffman;
mod huffman_table;
mod literal;
mod static_table;
mod table;

#[cfg(test)]
mod late_join_tests;
#[cfg(test)]
mod rfc7541_tests;

pub use decoder::{Decoder, HpackStats};
pub use field::HeaderField;
pub use static_table::STATIC_TABLE;
pub use table::{DynamicTable, Lookup, DEFAULT_TABLE_SIZE, ENTRY_OVERHEAD};

/// Why a header block could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HpackError {
    #[error("header block truncated")]
    Truncated,
    #[error("integer does not fit in 32 bits")]
    IntegerOverflow,
    #[error("invalid Huffman code")]
    InvalidHuffman,
    #[error("index 0 referenced")]
    ZeroIndex,
}
