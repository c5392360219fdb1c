//! gRPC length-prefixed messages (1-byte compressed flag, BE u32 length,
//! then the protobuf) on a response stream, scanned as DATA arrives.
//!
//! Only the first message matters (GetToken is unary). Nothing is buffered
//! but the 5-byte prefix: the body goes straight through
//! [`TimestampScanner`], which skips the token by length.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::protowire::{Timestamp, TimestampScanner};

/// What the first response message told us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// No complete message (yet).
    Pending,
    /// Compressed (flag 1): we do not decompress, `expires_at` is unknown.
    Compressed,
    /// Malformed message, invalid flag, or bytes lost mid-message.
    Undecodable,
    /// Well-formed, but the configured field was absent.
    NoExpiry,
    Expires(SystemTime),
}

#[derive(Debug)]
enum State {
    Prefix {
        buf: [u8; 5],
        have: usize,
    },
    Body {
        left: u32,
        scanner: Option<TimestampScanner>,
    },
    Broken,
}

#[derive(Debug)]
pub(crate) struct MessageScanner {
    field: u32,
    state: State,
    first: Outcome,
}

impl MessageScanner {
    pub(crate) fn new(expires_at_field: u32) -> Self {
        Self {
            field: expires_at_field,
            state: State::Prefix {
                buf: [0; 5],
                have: 0,
            },
            first: Outcome::Pending,
        }
    }

    pub(crate) fn outcome(&self) -> Outcome {
        self.first
    }

    /// Bytes of the response were lost: an unfinished first message is unknown.
    pub(crate) fn mark_lost(&mut self) {
        if self.first == Outcome::Pending {
            self.first = Outcome::Undecodable;
        }
        self.state = State::Broken;
    }

    pub(crate) fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match &mut self.state {
                State::Broken => return,
                State::Prefix { buf, have } => {
                    let n = (5 - *have).min(bytes.len());
                    buf[*have..*have + n].copy_from_slice(&bytes[..n]);
                    *have += n;
                    bytes = &bytes[n..];
                    if *have == 5 {
                        let (flag, len) =
                            (buf[0], u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]));
                        self.start_message(flag, len);
                    }
                }
                State::Body { left, scanner } => {
                    let n = bytes.len().min(*left as usize);
                    if let Some(s) = scanner {
                        s.feed(&bytes[..n]);
                    }
                    *left -= n as u32;
                    bytes = &bytes[n..];
                    if *left == 0 {
                        self.end_message();
                    }
                }
            }
        }
    }

    fn start_message(&mut self, flag: u8, len: u32) {
        let first = self.first == Outcome::Pending;
        let scanner = match flag {
            0 if first => Some(TimestampScanner::new(self.field)),
            0 => None,
            1 => {
                if first {
                    self.first = Outcome::Compressed;
                }
                None
            }
            _ => {
                if first {
                    self.first = Outcome::Undecodable;
                }
                self.state = State::Broken;
                return;
            }
        };
        self.state = State::Body { left: len, scanner };
        if len == 0 {
            self.end_message();
        }
    }

    fn end_message(&mut self) {
        let state = std::mem::replace(
            &mut self.state,
            State::Prefix {
                buf: [0; 5],
                have: 0,
            },
        );
        if let State::Body {
            scanner: Some(s), ..
        } = state
        {
            self.first = match s.finish() {
                Some(ts) => to_system_time(ts).map_or(Outcome::Undecodable, Outcome::Expires),
                None if s.failed() => Outcome::Undecodable,
                None => Outcome::NoExpiry,
            };
        }
    }
}

fn to_system_time(ts: Timestamp) -> Option<SystemTime> {
    let base = if ts.seconds >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(ts.seconds.unsigned_abs()))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(ts.seconds.unsigned_abs()))
    };
    base?.checked_add(Duration::from_nanos(u64::from(ts.nanos)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(flag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![flag];
        v.extend_from_slice(&(body.len() as u32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    // token "tok", expires_at { seconds: 5_000_000_000, nanos: 5 }
    const BODY: [u8; 15] = [
        0x0a, 0x03, b't', b'o', b'k', 0x12, 0x08, 0x08, 0x80, 0xe4, 0x97, 0xd0, 0x12, 0x10, 0x05,
    ];

    #[test]
    fn first_message_expiry_across_pieces() {
        let msg = framed(0, &BODY);
        for split in 0..msg.len() {
            let mut m = MessageScanner::new(2);
            m.feed(&msg[..split]);
            assert_eq!(m.outcome(), Outcome::Pending);
            m.feed(&msg[split..]);
            let want = UNIX_EPOCH + Duration::new(5_000_000_000, 5);
            assert_eq!(m.outcome(), Outcome::Expires(want));
        }
    }

    #[test]
    fn compressed_bad_flag_and_loss() {
        let mut m = MessageScanner::new(2);
        m.feed(&framed(1, b"zz"));
        assert_eq!(m.outcome(), Outcome::Compressed);
        let mut m = MessageScanner::new(2);
        m.feed(&framed(7, b"zz"));
        assert_eq!(m.outcome(), Outcome::Undecodable);
        let mut m = MessageScanner::new(2);
        m.feed(&framed(0, &BODY)[..6]);
        m.mark_lost();
        assert_eq!(m.outcome(), Outcome::Undecodable);
        let mut m = MessageScanner::new(2);
        m.feed(&framed(0, &[0x0a, 0x01, b'x']));
        assert_eq!(m.outcome(), Outcome::NoExpiry);
    }
}
