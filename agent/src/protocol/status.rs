//! gRPC status: reading `grpc-status`, and what to conclude when the wire
//! does not say it plainly (PROTOCOL-HTTP2.md mappings for RST_STREAM and
//! HTTP status; DESIGN.md's inference rules for undecodable trailers).

use super::grpc::{code, HeaderBlock};

/// What a header block says about `grpc-status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StatusField {
    Value(u32),
    /// Fully decoded block without `grpc-status`.
    Absent,
    /// Unknown HPACK references, a lost block, or a non-numeric value.
    Undecodable,
}

/// How the response ended, for [`resolve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ending {
    /// The END_STREAM HEADERS was the only response HEADERS.
    pub trailers_only: bool,
    pub data_seen: bool,
    /// Response bytes were lost while the call was open.
    pub tainted: bool,
    pub http_status: Option<u16>,
}

pub(crate) fn read_status(block: &HeaderBlock) -> StatusField {
    match block.find(b"grpc-status") {
        Some(v) => parse_decimal(v).map_or(StatusField::Undecodable, StatusField::Value),
        None if block.is_fully_known() => StatusField::Absent,
        None => StatusField::Undecodable,
    }
}

pub(crate) fn read_http_status(block: &HeaderBlock) -> Option<u16> {
    block
        .find(b":status")
        .and_then(parse_decimal)
        .and_then(|s| u16::try_from(s).ok())
}

fn parse_decimal(v: &[u8]) -> Option<u32> {
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// `(status, inferred)`; see [`super::DecodedCall`] for the meaning.
pub(crate) fn resolve(field: StatusField, e: Ending) -> (Option<u32>, bool) {
    let http_error = e.http_status.filter(|&s| s != 200).map(from_http);
    match field {
        StatusField::Value(c) => (Some(c), false),
        StatusField::Absent => (Some(http_error.unwrap_or(code::UNKNOWN)), true),
        StatusField::Undecodable if e.tainted => (None, false),
        StatusField::Undecodable if e.trailers_only => (http_error, true),
        StatusField::Undecodable if e.data_seen => (Some(code::OK), true),
        StatusField::Undecodable => (None, true),
    }
}

/// RST_STREAM error code → the status a gRPC client reports.
pub(crate) fn from_rst(error_code: u32) -> u32 {
    match error_code {
        0x7 => code::UNAVAILABLE,        // REFUSED_STREAM
        0x8 => code::CANCELLED,          // CANCEL
        0xb => code::RESOURCE_EXHAUSTED, // ENHANCE_YOUR_CALM
        0xc => code::PERMISSION_DENIED,  // INADEQUATE_SECURITY
        _ => code::INTERNAL,
    }
}

/// HTTP status of a response without `grpc-status` → client-reported status.
pub(crate) fn from_http(status: u16) -> u32 {
    match status {
        400 => code::INTERNAL,
        401 => code::UNAUTHENTICATED,
        403 => code::PERMISSION_DENIED,
        404 => code::UNIMPLEMENTED,
        429 | 502 | 503 | 504 => code::UNAVAILABLE,
        _ => code::UNKNOWN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use StatusField::*;

    const fn ending(
        trailers_only: bool,
        data_seen: bool,
        tainted: bool,
        http: Option<u16>,
    ) -> Ending {
        Ending {
            trailers_only,
            data_seen,
            tainted,
            http_status: http,
        }
    }

    #[test]
    fn resolution_table() {
        let ok = Some(200);
        let table = [
            (Value(14), ending(true, false, false, ok), (Some(14), false)),
            (Value(0), ending(false, true, true, ok), (Some(0), false)),
            (Undecodable, ending(false, true, false, ok), (Some(0), true)),
            (Undecodable, ending(true, false, false, ok), (None, true)),
            (Undecodable, ending(true, false, false, None), (None, true)),
            (
                Undecodable,
                ending(true, false, false, Some(503)),
                (Some(14), true),
            ),
            (Undecodable, ending(false, false, false, ok), (None, true)),
            (Undecodable, ending(false, true, true, ok), (None, false)),
            (
                Absent,
                ending(true, false, false, Some(404)),
                (Some(12), true),
            ),
            (Absent, ending(false, true, false, ok), (Some(2), true)),
        ];
        for (field, e, want) in table {
            assert_eq!(resolve(field, e), want, "{field:?} {e:?}");
        }
    }

    #[test]
    fn rst_mapping() {
        assert_eq!(from_rst(0x8), code::CANCELLED);
        assert_eq!(from_rst(0x7), code::UNAVAILABLE);
        assert_eq!(from_rst(0x0), code::INTERNAL);
    }
}
