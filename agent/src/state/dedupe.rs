//! The same call seen by eBPF and in the access log counts once.
//!
//! A call from one source is paired with an unpaired call from the other
//! source with the same pid whose end lies within [`TOLERANCE`].
use std::{
    collections::VecDeque,
    time::{Duration, SystemTime},
};

use crate::events::{CallSource, GrpcStatus};

/// How far apart the two sightings of one call may be.
pub const TOLERANCE: Duration = Duration::from_secs(2);
/// Recent calls remembered per client for pairing.
const KEEP: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seen {
    pub source: CallSource,
    pub at: SystemTime,
    pub status: Option<GrpcStatus>,
    pub paired: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Recent(VecDeque<Seen>);

impl Recent {
    /// Records a call; returns the earlier sighting of the same call by the
    /// other source, if there is one (then this call is a duplicate).
    pub fn pair(&mut self, source: CallSource, at: SystemTime, status: Option<GrpcStatus>) -> Option<Seen> {
        let near = |t: SystemTime| {
            let d = if t > at { t.duration_since(at) } else { at.duration_since(t) };
            d.unwrap_or_default() <= TOLERANCE
        };
        let found = self
            .0
            .iter_mut()
            .filter(|s| !s.paired && s.source != source && near(s.at))
            .min_by_key(|s| if s.at > at { s.at.duration_since(at) } else { at.duration_since(s.at) }.unwrap_or_default());
        if let Some(s) = found {
            s.paired = true;
            return Some(*s);
        }
        self.0.push_back(Seen { source, at, status, paired: false });
        if self.0.len() > KEEP {
            self.0.pop_front();
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(1_780_000_000_000 + ms)
    }

    #[test]
    fn pairs_across_sources_within_tolerance_once() {
        let mut r = Recent::default();
        assert!(r.pair(CallSource::Ebpf, t(0), Some(GrpcStatus::OK)).is_none());
        // the same source never pairs with itself
        assert!(r.pair(CallSource::Ebpf, t(100), Some(GrpcStatus::OK)).is_none());
        let p = r.pair(CallSource::AccessLog, t(90), Some(GrpcStatus::OK)).unwrap();
        assert_eq!(p.at, t(100), "the nearest sighting is paired");
        let p = r.pair(CallSource::AccessLog, t(5), Some(GrpcStatus::OK)).unwrap();
        assert_eq!(p.at, t(0));
        // both eBPF sightings are taken now
        assert!(r.pair(CallSource::AccessLog, t(50), Some(GrpcStatus::OK)).is_none());
    }

    #[test]
    fn too_far_apart_is_two_calls() {
        let mut r = Recent::default();
        r.pair(CallSource::Ebpf, t(0), None);
        assert!(r.pair(CallSource::AccessLog, t(2001), None).is_none());
        assert!(r.pair(CallSource::AccessLog, t(2000), None).is_some());
    }
}
