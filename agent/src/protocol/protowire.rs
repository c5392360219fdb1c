//! Minimal streaming protobuf wire reader: finds one `google.protobuf.Timestamp`
//! field in a message whose bytes arrive in pieces.
//!
//! Why hand-written rather than prost: prost decodes a whole message from one
//! contiguous buffer into owned values. It would copy field 1 of
//! `GetTokenResponse` (the IAM token) into a `String`, and it would need the
//! message reassembled across DATA frames first. We need the opposite: walk
//! the wire format as bytes arrive, skip field 1 by its length without ever
//! copying it, and read one nested varint pair (seconds = 1, nanos = 2).
//! That is a small state machine with O(1) memory, no buffering at all.

/// A decoded `google.protobuf.Timestamp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timestamp {
    pub seconds: i64,
    pub nanos: u32,
}

/// Timestamp's valid range: 0001-01-01T00:00:00Z ..= 9999-12-31T23:59:59Z.
const MIN_SECONDS: i64 = -62_135_596_800;
const MAX_SECONDS: i64 = 253_402_300_799;

#[derive(Debug, Clone, Copy, Default)]
struct Varint {
    value: u64,
    shift: u32,
}

impl Varint {
    /// `Ok(Some(v))` when complete, `Ok(None)` when more bytes follow.
    fn push(&mut self, b: u8) -> Result<Option<u64>, ()> {
        let bits = u64::from(b & 0x7f);
        if self.shift >= 64 || (self.shift == 63 && bits > 1) {
            return Err(());
        }
        self.value |= bits << self.shift;
        if b & 0x80 != 0 {
            self.shift += 7;
            return Ok(None);
        }
        let v = self.value;
        *self = Self::default();
        Ok(Some(v))
    }

    fn is_empty(&self) -> bool {
        self.shift == 0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Tag,
    VarintValue {
        field: u64,
    },
    LenPrefix {
        field: u64,
    },
    /// Bytes to skip unread: fixed-width values and length-delimited fields
    /// other than the target (the token among them).
    Skip(u64),
}

/// Scans one message (the caller feeds exactly the message's bytes, then
/// calls [`TimestampScanner::finish`]).
#[derive(Debug)]
pub(crate) struct TimestampScanner {
    target: u64,
    step: Step,
    varint: Varint,
    /// Bytes left of the target submessage while inside it.
    nested_left: Option<u64>,
    seen: bool,
    seconds: u64,
    nanos: u64,
    failed: bool,
}

impl TimestampScanner {
    pub(crate) fn new(target_field: u32) -> Self {
        Self {
            target: u64::from(target_field),
            step: Step::Tag,
            varint: Varint::default(),
            nested_left: None,
            seen: false,
            seconds: 0,
            nanos: 0,
            failed: false,
        }
    }

    pub(crate) fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && !self.failed {
            let was_nested = self.nested_left;
            let avail = was_nested.map_or(bytes.len(), |n| bytes.len().min(n as usize));
            let used = self.step_unit(&bytes[..avail]);
            bytes = &bytes[used..];
            if let Some(left) = was_nested {
                let left = left - used as u64;
                self.nested_left = Some(left);
                if left == 0 {
                    // The submessage must end on a field boundary.
                    if self.step == Step::Tag && self.varint.is_empty() {
                        self.nested_left = None;
                    } else {
                        self.failed = true;
                    }
                }
            }
        }
    }

    /// Consumes one unit (a skip, or one varint) or as much of it as given.
    fn step_unit(&mut self, bytes: &[u8]) -> usize {
        if let Step::Skip(n) = self.step {
            let k = n.min(bytes.len() as u64);
            self.step = if k == n { Step::Tag } else { Step::Skip(n - k) };
            return k as usize;
        }
        for (i, &b) in bytes.iter().enumerate() {
            match self.varint.push(b) {
                Ok(None) => {}
                Ok(Some(v)) => {
                    self.on_varint(v);
                    return i + 1;
                }
                Err(()) => {
                    self.failed = true;
                    return i + 1;
                }
            }
        }
        bytes.len()
    }

    fn on_varint(&mut self, v: u64) {
        let nested = self.nested_left.is_some();
        self.step = match self.step {
            Step::Tag => {
                let (field, wire) = (v >> 3, v & 7);
                let wire_ok = match (nested, field) {
                    (false, f) if f == self.target => wire == 2,
                    (true, 1 | 2) => wire == 0,
                    _ => true,
                };
                if field == 0 || !wire_ok {
                    self.failed = true;
                    return;
                }
                match wire {
                    0 => Step::VarintValue { field },
                    1 => Step::Skip(8),
                    2 => Step::LenPrefix { field },
                    5 => Step::Skip(4),
                    _ => {
                        // Groups (3, 4) are deprecated and never used here.
                        self.failed = true;
                        return;
                    }
                }
            }
            Step::VarintValue { field } => {
                match (nested, field) {
                    (true, 1) => self.seconds = v,
                    (true, 2) => self.nanos = v,
                    _ => {}
                }
                Step::Tag
            }
            Step::LenPrefix { field } if !nested && field == self.target => {
                // Repeated occurrences merge, as protobuf specifies.
                self.seen = true;
                if v > 0 {
                    self.nested_left = Some(v);
                }
                Step::Tag
            }
            // Any other length-delimited field (field 1: the token) is
            // skipped by length, never read.
            Step::LenPrefix { .. } => Step::Skip(v),
            Step::Skip(_) => Step::Tag,
        };
    }

    /// The timestamp, if the message was well-formed and had the field.
    pub(crate) fn finish(&self) -> Option<Timestamp> {
        let clean = !self.failed
            && self.nested_left.is_none()
            && self.step == Step::Tag
            && self.varint.is_empty();
        if !clean || !self.seen {
            return None;
        }
        let seconds = self.seconds as i64;
        let nanos = self.nanos as i64;
        let valid =
            (MIN_SECONDS..=MAX_SECONDS).contains(&seconds) && (0..1_000_000_000).contains(&nanos);
        valid.then_some(Timestamp {
            seconds,
            nanos: nanos as u32,
        })
    }

    pub(crate) fn failed(&self) -> bool {
        self.failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push(v as u8 | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn response(token: &[u8], ts: &[u8]) -> Vec<u8> {
        let mut m = vec![0x0a];
        varint(&mut m, token.len() as u64);
        m.extend_from_slice(token);
        m.push(0x12);
        varint(&mut m, ts.len() as u64);
        m.extend_from_slice(ts);
        m
    }

    fn timestamp(seconds: u64, nanos: u64) -> Vec<u8> {
        let mut t = vec![0x08];
        varint(&mut t, seconds);
        t.push(0x10);
        varint(&mut t, nanos);
        t
    }

    #[test]
    fn reads_timestamp_in_every_split() {
        let msg = response(&[b'x'; 300], &timestamp(1_700_000_000, 123_456_789));
        for split in 0..=msg.len() {
            let mut s = TimestampScanner::new(2);
            s.feed(&msg[..split]);
            s.feed(&msg[split..]);
            assert_eq!(
                s.finish(),
                Some(Timestamp {
                    seconds: 1_700_000_000,
                    nanos: 123_456_789
                }),
                "split {split}"
            );
        }
    }

    #[test]
    fn unknown_fields_and_empty_timestamp() {
        // Unknown fixed64, fixed32 and varint fields around an empty Timestamp.
        let mut msg = vec![
            0x19, 1, 2, 3, 4, 5, 6, 7, 8, 0x25, 1, 2, 3, 4, 0x18, 0x96, 0x01,
        ];
        msg.extend([0x12, 0x00]);
        let mut s = TimestampScanner::new(2);
        s.feed(&msg);
        assert_eq!(
            s.finish(),
            Some(Timestamp {
                seconds: 0,
                nanos: 0
            })
        );
    }

    #[test]
    fn malformed_or_absent_gives_none() {
        let absent = response(b"tok", &[]);
        let mut s = TimestampScanner::new(3);
        s.feed(&absent);
        assert_eq!(s.finish(), None);
        // Submessage length runs past its content.
        let mut s = TimestampScanner::new(2);
        s.feed(&[0x12, 0x05, 0x08, 0x01]);
        assert_eq!(s.finish(), None);
        // A varint inside the submessage crossing its end.
        let mut s = TimestampScanner::new(2);
        s.feed(&[0x12, 0x02, 0x08, 0x81, 0x01]);
        assert!(s.failed());
        // nanos out of range.
        let mut s = TimestampScanner::new(2);
        s.feed(&response(b"", &timestamp(1, 1_000_000_000)));
        assert_eq!(s.finish(), None);
        // Wrong wire type for the target.
        let mut s = TimestampScanner::new(2);
        s.feed(&[0x10, 0x01]);
        assert!(s.failed());
    }
}
