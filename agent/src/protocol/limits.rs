//! Every memory bound of the decoder in one place.
//!
//! Nothing a peer (or garbage) sends can make a [`super::Connection`] hold
//! more than [`MAX_CONNECTION_BUFFERED`] bytes of captured data, more than
//! [`MAX_OPEN_STREAMS`] calls, or HPACK tables above [`MAX_HPACK_TABLE`].

/// Default SETTINGS_MAX_FRAME_SIZE (RFC 9113 §6.5.2).
pub const DEFAULT_MAX_FRAME_SIZE: u32 = 16_384;
/// Largest frame length the 24-bit length field can declare.
pub const MAX_FRAME_SIZE_LIMIT: u32 = (1 << 24) - 1;
/// Largest frame a resynchronising reassembler accepts as a candidate.
pub const HUNT_MAX_FRAME_LEN: u32 = DEFAULT_MAX_FRAME_SIZE;
/// Bytes a hunting reassembler keeps: a full candidate frame plus the next
/// frame header, so each candidate can be checked against its successor.
pub const HUNT_WINDOW: usize = 9 + HUNT_MAX_FRAME_LEN as usize + 9 + 32;
/// Largest non-DATA frame payload kept; larger ones are skipped by length.
/// DATA payloads are never stored, only streamed.
pub const MAX_KEPT_PAYLOAD: usize = 64 * 1024;
/// Largest header block (HEADERS + CONTINUATION fragments) assembled.
pub const MAX_HEADER_BLOCK: usize = 64 * 1024;
/// Cap on the HPACK dynamic table size we honour (RFC 7541 size units).
pub const MAX_HPACK_TABLE: usize = 64 * 1024;
/// Open streams kept per connection; the oldest is dropped beyond this.
pub const MAX_OPEN_STREAMS: usize = 1024;
/// Longest `:path` kept as a method name.
pub const MAX_METHOD_LEN: usize = 512;
/// Upper bound of [`super::DecodeStats::buffered_bytes`]: per direction a
/// partial frame header, a kept payload or the hunt window, and a header block.
pub const MAX_CONNECTION_BUFFERED: usize =
    2 * (9 + max(MAX_KEPT_PAYLOAD, HUNT_WINDOW + 9) + MAX_HEADER_BLOCK);

const fn max(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
}
