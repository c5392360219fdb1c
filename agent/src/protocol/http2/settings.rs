//! SETTINGS (RFC 9113 §6.5).

use nom::combinator::all_consuming;
use nom::multi::many0;
use nom::number::complete::{be_u16, be_u32};
use nom::Parser;

use super::{flags, FrameHeader, FrameType, InvalidFrame};

/// Setting identifiers (RFC 9113 §6.5.2).
pub mod setting {
    pub const HEADER_TABLE_SIZE: u16 = 0x1;
    pub const ENABLE_PUSH: u16 = 0x2;
    pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
    pub const MAX_FRAME_SIZE: u16 = 0x5;
    pub const MAX_HEADER_LIST_SIZE: u16 = 0x6;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    pub id: u16,
    pub value: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsFrame {
    pub ack: bool,
    /// In wire order; unknown identifiers are kept (and ignored by users).
    pub params: Vec<Setting>,
}

impl SettingsFrame {
    /// The last value sent for `id` (later values override earlier ones).
    pub fn get(&self, id: u16) -> Option<u32> {
        self.params
            .iter()
            .rev()
            .find(|s| s.id == id)
            .map(|s| s.value)
    }

    /// SETTINGS_HEADER_TABLE_SIZE: bounds the *sender's* HPACK decoder, i.e.
    /// the table the peer's encoder may use towards the sender.
    pub fn header_table_size(&self) -> Option<u32> {
        self.get(setting::HEADER_TABLE_SIZE)
    }

    /// SETTINGS_MAX_FRAME_SIZE: largest frame the sender accepts.
    pub fn max_frame_size(&self) -> Option<u32> {
        self.get(setting::MAX_FRAME_SIZE)
    }
}

pub(super) fn parse(h: &FrameHeader, payload: &[u8]) -> Result<SettingsFrame, InvalidFrame> {
    let bad = InvalidFrame::Length {
        ty: FrameType::Settings,
        len: h.length,
    };
    let ack = h.has(flags::ACK);
    if !payload.len().is_multiple_of(6) || (ack && !payload.is_empty()) {
        return Err(bad);
    }
    let entry = (be_u16, be_u32).map(|(id, value)| Setting { id, value });
    let parsed: nom::IResult<&[u8], Vec<Setting>> = all_consuming(many0(entry)).parse(payload);
    let (_, params) = parsed.map_err(|_| bad)?;
    Ok(SettingsFrame { ack, params })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_params_and_last_value_wins() {
        let h = FrameHeader {
            length: 18,
            ty: FrameType::Settings,
            flags: 0,
            stream_id: 0,
            reserved: false,
        };
        let payload = [0, 1, 0, 0, 1, 0, 0, 5, 0, 0, 0x40, 0, 0, 1, 0, 0, 0, 0];
        let s = parse(&h, &payload).expect("settings");
        assert_eq!(s.params.len(), 3);
        assert_eq!(s.header_table_size(), Some(0));
        assert_eq!(s.max_frame_size(), Some(16_384));
        assert!(parse(&h, &payload[..7]).is_err());
    }
}
