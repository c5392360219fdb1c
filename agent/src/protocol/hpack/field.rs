//! A decoded header field, or the admission that it cannot be known.

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub enum HeaderField {
    Known {
        name: Vec<u8>,
        value: Vec<u8>,
    },
    /// The field referenced a dynamic-table entry whose content we do not
    /// know (inserted before we attached, or lost in a gap). `index` is the
    /// HPACK index that was referenced (for the name or the whole field).
    Unknown {
        index: u32,
    },
}

impl HeaderField {
    pub fn new(name: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Self::Known {
            name: name.into(),
            value: value.into(),
        }
    }

    pub fn name(&self) -> Option<&[u8]> {
        match self {
            Self::Known { name, .. } => Some(name),
            Self::Unknown { .. } => None,
        }
    }

    pub fn value(&self) -> Option<&[u8]> {
        match self {
            Self::Known { value, .. } => Some(value),
            Self::Unknown { .. } => None,
        }
    }

    pub fn is_unknown(&self) -> bool {
        matches!(self, Self::Unknown { .. })
    }
}

/// Values are shown only for protocol headers; anything else (custom
/// metadata, `authorization`) may carry credentials and shows its length.
fn value_is_printable(name: &[u8]) -> bool {
    name.starts_with(b":")
        || name.starts_with(b"grpc-")
        || matches!(
            name,
            b"content-type" | b"te" | b"user-agent" | b"cache-control" | b"date" | b"location"
        )
}

impl fmt::Debug for HeaderField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Known { name, value } if value_is_printable(name) => {
                write!(f, "{}: {}", name.escape_ascii(), value.escape_ascii())
            }
            Self::Known { name, value } => {
                write!(f, "{}: <{} bytes>", name.escape_ascii(), value.len())
            }
            Self::Unknown { index } => write!(f, "<unknown index {index}>"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_values_of_non_protocol_headers() {
        assert_eq!(
            format!("{:?}", HeaderField::new(":path", "/a/B")),
            ":path: /a/B"
        );
        assert_eq!(
            format!("{:?}", HeaderField::new("authorization", "Bearer t1.x")),
            "authorization: <11 bytes>"
        );
        assert_eq!(
            format!("{:?}", HeaderField::Unknown { index: 70 }),
            "<unknown index 70>"
        );
    }
}
