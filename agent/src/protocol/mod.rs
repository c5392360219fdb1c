//! Passive decoding of one captured HTTP/2 connection carrying gRPC.
//!
//! Captured byte chunks of one connection (per direction, each with a
//! timestamp and a "bytes were lost before this chunk" flag) go into
//! [`Connection::feed`]; completed gRPC calls come out as [`DecodedCall`]s.
//! No I/O, no clock: time is whatever the caller passes in.
//!
//! Layers, bottom up:
//! - [`http2`]: frame parsers (nom) and a per-direction [`http2::Reassembler`]
//!   that buffers partial frames, streams DATA without storing it, and
//!   resynchronises after a gap or when attached mid-stream.
//! - [`hpack`]: RFC 7541 decoder with *late-join* semantics: dynamic-table
//!   entries inserted before we attached resolve to [`hpack::HeaderField::Unknown`],
//!   never to a guess.
//! - [`grpc`]: call assembly per stream, status resolution, and the
//!   `expires_at` extraction from the response message (the token itself,
//!   field 1, is skipped by length and never copied).
mod connection;
pub mod grpc;
pub mod hpack;
pub mod http2;
pub mod limits;
mod message;
mod protowire;
mod routing;
mod scratch;
mod stats;
mod status;

#[cfg(test)]
mod connection_tests;
#[cfg(test)]
mod testutil;

pub use connection::{Connection, ConnectionConfig};
pub use grpc::DecodedCall;
pub use stats::DecodeStats;

/// Which way the captured bytes flowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client → token-agent: the request side.
    ClientToServer,
    /// token-agent → client: the response side.
    ServerToClient,
}

impl Direction {
    /// The other direction.
    pub fn opposite(self) -> Self {
        match self {
            Self::ClientToServer => Self::ServerToClient,
            Self::ServerToClient => Self::ClientToServer,
        }
    }
}
