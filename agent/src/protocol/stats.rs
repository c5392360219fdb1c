//! Decoder self-metrics of one connection.

/// Counters (monotonic) and gauges (current sizes) of a [`super::Connection`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecodeStats {
    /// Captured bytes fed, both directions.
    pub bytes: u64,
    /// Chunks flagged "bytes lost before this chunk".
    pub gaps: u64,
    pub frames: u64,
    pub frames_unknown_type: u64,
    /// Non-DATA frames above the keep cap, skipped by length.
    pub frames_oversized: u64,
    /// Times frame alignment was lost (gap, garbage, wrong preface).
    pub desyncs: u64,
    /// Times a frame boundary was found again.
    pub resyncs: u64,
    /// Bytes dropped while hunting for a frame boundary.
    pub bytes_skipped: u64,
    pub header_blocks: u64,
    /// Header blocks not decoded (oversized, interrupted, HPACK error).
    pub header_blocks_lost: u64,
    /// HPACK references into entries inserted before attach / lost in a gap.
    pub hpack_unknown_refs: u64,
    /// HPACK references beyond what the table could hold.
    pub hpack_invalid_refs: u64,
    pub hpack_errors: u64,
    /// Times a decoder's table content was declared unknown.
    pub hpack_lost_sync: u64,
    pub calls_completed: u64,
    pub calls_reset: u64,
    pub calls_method_unknown: u64,
    pub calls_status_inferred: u64,
    /// Open streams dropped because the per-connection cap was reached.
    pub streams_evicted: u64,
    /// Response frames for streams whose request we never saw.
    pub orphan_frames: u64,
    pub messages_compressed: u64,
    pub messages_undecodable: u64,
    /// Gauge: calls in progress.
    pub open_streams: usize,
    /// Gauge: captured bytes held (partial frames, hunt windows, header blocks).
    pub buffered_bytes: usize,
    /// Sum of each buffer's high-water mark: an upper bound of the peak.
    pub peak_buffered_bytes: usize,
    /// Gauge: both HPACK tables' sizes (RFC 7541 units).
    pub hpack_table_bytes: usize,
    /// Gauge: most dynamic-table entries whose content we cannot know.
    pub hpack_unknown_entries_bound: usize,
}
