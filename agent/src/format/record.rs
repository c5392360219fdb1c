//! The normalized access-log record and the key aliases that fill it
//! (INTERFACE.md, "Access-log fields"). Keys match case-insensitively; per
//! field the first key whose value is valid wins; other keys are dropped.
use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use super::time::{parse_duration, parse_time};
use super::ParseError;
use crate::events::GrpcStatus;
use crate::redact::redact;

/// One access-log line, normalized. Strings are trimmed and redacted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    pub time: Option<SystemTime>,
    /// As logged: full `/pkg.Service/Method` or short `GetToken` (see [`method_matches`]).
    pub method: Option<String>,
    pub status: Option<GrpcStatus>,
    pub duration: Option<Duration>,
    pub pid: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub request_id: Option<String>,
    /// Redacted.
    pub error: Option<String>,
    pub expires_at: Option<SystemTime>,
    pub level: Option<String>,
}

impl Record {
    /// Whether the logged method is the configured full method (see [`method_matches`]).
    pub fn method_is(&self, configured: &str) -> bool {
        self.method.as_deref().is_some_and(|m| method_matches(configured, m))
    }
}

/// Whether a logged method (`/pkg.Service/Method`, `pkg.Service/Method`,
/// `Service/Method` or `Method`) names the configured full method.
pub fn method_matches(configured: &str, logged: &str) -> bool {
    let full = configured.trim().trim_start_matches('/');
    let logged = logged.trim().trim_start_matches('/');
    if logged.is_empty() {
        return false;
    }
    full == logged
        || full
            .strip_suffix(logged)
            .is_some_and(|head| head.ends_with('/') || (head.ends_with('.') && logged.contains('/')))
}

/// A normalized field; [`Field::from_key`] knows the aliases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Field {
    Time,
    Method,
    Status,
    Duration,
    DurationMs,
    Pid,
    Uid,
    Gid,
    RequestId,
    Error,
    ExpiresAt,
    Level,
}

impl Field {
    /// The field a key (any case) fills, if any.
    pub fn from_key(key: &str) -> Option<Field> {
        // By length first: most keys are rejected or matched in a compare or two.
        let candidates = BY_LEN.get(key.len())?;
        let k = fold(key.as_bytes());
        candidates.iter().find(|(name, _)| *name == k).map(|&(_, f)| f)
    }
}

/// Names by length, each packed by [`pack`].
const BY_LEN: [&[(u128, Field)]; 13] = {
    use Field::*;
    [
        &[],
        &[],
        &[(pack("ts"), Time)],
        &[(pack("pid"), Pid), (pack("uid"), Uid), (pack("gid"), Gid), (pack("err"), Error), (pack("msg"), Error), (pack("lvl"), Level)],
        &[(pack("time"), Time), (pack("path"), Method), (pack("code"), Status)],
        &[(pack("error"), Error), (pack("level"), Level)],
        &[(pack("method"), Method), (pack("status"), Status), (pack("req_id"), RequestId)],
        &[(pack("elapsed"), Duration), (pack("latency"), Duration), (pack("message"), Error)],
        &[(pack("datetime"), Time), (pack("duration"), Duration), (pack("severity"), Level)],
        &[(pack("timestamp"), Time), (pack("grpc_code"), Status)],
        &[(pack("@timestamp"), Time), (pack("rpc_method"), Method), (pack("request_id"), RequestId), (pack("expires_at"), ExpiresAt)],
        &[(pack("grpc_method"), Method), (pack("grpc_status"), Status), (pack("duration_ms"), DurationMs)],
        &[(pack("request_time"), Duration), (pack("x_request_id"), RequestId)],
    ]
};

/// A lower-case name of at most 16 bytes as one zero-padded integer.
const fn pack(name: &str) -> u128 {
    let b = name.as_bytes();
    let mut buf = [0u8; 16];
    let mut i = 0;
    while i < b.len() {
        buf[i] = b[i];
        i += 1;
    }
    u128::from_le_bytes(buf)
}

/// `key` (at most 16 bytes) packed as [`pack`] does, ASCII lower-cased.
///
/// By hand, because this runs for every key of every line: comparing
/// variable-length `str`s is a `memcmp` call each, and copying the key into
/// a buffer to load it whole stalls on store forwarding. Two overlapping
/// loads per word instead, then an ASCII case fold on both words at once.
#[inline]
fn fold(key: &[u8]) -> u128 {
    let n = key.len();
    debug_assert!(n <= 16);
    let word = |at: usize| u64::from_le_bytes(key[at..at + 8].try_into().expect("8 bytes"));
    let half = |at: usize| u32::from_le_bytes(key[at..at + 4].try_into().expect("4 bytes")) as u64;
    // Each load puts byte j at bit 8·(j − start); shifts move it to 8·j (the
    // overlap holds the same bytes, so OR is exact).
    let (lo, hi) = match n {
        9..=16 => (word(0), word(n - 8) >> (8 * (16 - n))),
        8 => (word(0), 0),
        4..=7 => (half(0) | half(n - 4) << (8 * (n - 4)), 0),
        1..=3 => (key[0] as u64 | (key[n / 2] as u64) << (8 * (n / 2)) | (key[n - 1] as u64) << (8 * (n - 1)), 0),
        _ => (0, 0),
    };
    (lower(hi) as u128) << 64 | lower(lo) as u128
}

/// ASCII `A`–`Z` to lower case in all eight bytes; other bytes unchanged.
#[inline]
fn lower(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let low7 = w & (0x7f * ONES);
    // Bit 7 of each byte: ≥ 'A', > 'Z', and the byte is ASCII.
    let ge_a = low7 + (0x80 - b'A' as u64) * ONES;
    let gt_z = low7 + (0x7f - b'Z' as u64) * ONES;
    let upper = ge_a & !gt_z & !w & (0x80 * ONES);
    w | upper >> 2
}

fn status(v: &str) -> Option<GrpcStatus> {
    GrpcStatus::parse(v)
}

/// Builds a [`Record`] from pairs fed in line order.
#[derive(Debug, Default)]
pub struct Normalizer {
    record: Record,
}

impl Normalizer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Offers one pair; ignored when the key is unknown, its field is already
    /// set, or the value is empty, `-` (the usual "none"), or invalid for the field.
    #[inline]
    pub fn push(&mut self, key: &str, value: Cow<'_, str>) {
        let Some(field) = Field::from_key(key) else { return };
        let r = &mut self.record;
        let v = trim(&value);
        if v.is_empty() || v == "-" {
            return;
        }
        match field {
            Field::Time if r.time.is_none() => r.time = parse_time(v),
            Field::ExpiresAt if r.expires_at.is_none() => r.expires_at = parse_time(v),
            Field::Status if r.status.is_none() => r.status = status(v),
            Field::Duration if r.duration.is_none() => r.duration = parse_duration(v, Duration::from_secs(1)),
            Field::DurationMs if r.duration.is_none() => r.duration = parse_duration(v, Duration::from_millis(1)),
            Field::Pid if r.pid.is_none() => r.pid = v.parse().ok(),
            Field::Uid if r.uid.is_none() => r.uid = v.parse().ok(),
            Field::Gid if r.gid.is_none() => r.gid = v.parse().ok(),
            Field::Method if r.method.is_none() => r.method = Some(text(&value)),
            Field::RequestId if r.request_id.is_none() => r.request_id = Some(text(&value)),
            Field::Error if r.error.is_none() => r.error = Some(text(&value)),
            Field::Level if r.level.is_none() => r.level = Some(text(&value)),
            _ => {}
        }
    }

    /// The record, or [`ParseError::NoRecognizedFields`] when it has none of
    /// time, method and status.
    pub fn finish(self) -> Result<Record, ParseError> {
        let r = self.record;
        if r.time.is_none() && r.method.is_none() && r.status.is_none() {
            return Err(ParseError::NoRecognizedFields);
        }
        Ok(r)
    }
}

/// The one rule of what the agent uses as a call, shared by the agent's
/// access-log source and `tokenwatch parse` (so an offline check predicts
/// the agent): a record needs a gRPC status. Without one it cannot tell a
/// success from a failure: counted as a call of unknown status it would be
/// an error (`UNDECODED`) and, paired with the same call seen by eBPF,
/// override the status decoded there — a `time=… status=200` line (HTTP's
/// status, see [`GrpcStatus::parse`]) would WARN on every call.
pub fn call(r: Record) -> Result<Record, ParseError> {
    if r.status.is_none() {
        return Err(ParseError::NotACall);
    }
    Ok(r)
}

/// Trimmed and redacted: every exported string, not only `error`, since a
/// token can land in any field.
fn text(value: &str) -> String {
    redact(trim(value)).into_owned()
}

/// `str::trim`, with a fast path for the usual value that starts and ends
/// with a visible ASCII char.
#[inline]
pub(crate) fn trim(s: &str) -> &str {
    match (s.as_bytes().first(), s.as_bytes().last()) {
        (Some(a), Some(z)) if a.is_ascii_graphic() && z.is_ascii_graphic() => s,
        _ => s.trim(),
    }
}

/// Normalizes raw pairs (from any of the format parsers).
pub fn normalize<'a, K: AsRef<str>>(pairs: impl IntoIterator<Item = (K, Cow<'a, str>)>) -> Result<Record, ParseError> {
    let mut n = Normalizer::new();
    for (k, v) in pairs {
        n.push(k.as_ref(), v);
    }
    n.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn rec(pairs: &[(&str, &str)]) -> Result<Record, ParseError> {
        normalize(pairs.iter().map(|(k, v)| (*k, Cow::Borrowed(*v))))
    }

    const T: u64 = 1_795_615_200; // 2026-11-25T14:00:00Z

    #[test]
    fn every_time_alias() {
        for k in ["time", "timestamp", "ts", "@timestamp", "datetime", "TIME", "Ts", "@Timestamp"] {
            let r = rec(&[(k, "2026-11-25T14:00:00Z")]).unwrap();
            assert_eq!(r.time, Some(UNIX_EPOCH + Duration::from_secs(T)), "{k}");
        }
    }

    #[test]
    fn every_method_and_status_alias() {
        for k in ["method", "grpc_method", "rpc_method", "path", "Grpc_Method"] {
            assert_eq!(rec(&[(k, "GetToken")]).unwrap().method.as_deref(), Some("GetToken"), "{k}");
        }
        for k in ["status", "code", "grpc_code", "grpc_status", "GRPC_CODE"] {
            for v in ["UNAVAILABLE", "Unavailable", "14"] {
                assert_eq!(rec(&[(k, v)]).unwrap().status, Some(GrpcStatus::UNAVAILABLE), "{k}={v}");
            }
        }
    }

    #[test]
    fn every_duration_alias_and_form() {
        for k in ["duration", "elapsed", "latency", "request_time", "Latency"] {
            let r = rec(&[("status", "OK"), (k, "0.012")]).unwrap();
            assert_eq!(r.duration, Some(Duration::from_millis(12)), "{k}");
            let r = rec(&[("status", "OK"), (k, "12ms")]).unwrap();
            assert_eq!(r.duration, Some(Duration::from_millis(12)), "{k}");
        }
        let d = |v| rec(&[("status", "OK"), ("duration_ms", v)]).unwrap().duration;
        assert_eq!(d("12"), Some(Duration::from_millis(12)));
        assert_eq!(d("1.5"), Some(Duration::from_micros(1500)));
        assert_eq!(d("2s"), Some(Duration::from_secs(2)));
    }

    #[test]
    fn ids_errors_expiry_level() {
        let r = rec(&[
            ("status", "0"),
            ("pid", "12"),
            ("UID", "0"),
            ("gid", "4294967295"),
            ("x_request_id", "r-1"),
            ("msg", " boom "),
            ("expires_at", "1795651200"),
            ("severity", "ERROR"),
        ])
        .unwrap();
        assert_eq!((r.pid, r.uid, r.gid), (Some(12), Some(0), Some(u32::MAX)));
        assert_eq!(r.request_id.as_deref(), Some("r-1"));
        assert_eq!(r.error.as_deref(), Some("boom"));
        assert_eq!(r.expires_at, Some(UNIX_EPOCH + Duration::from_secs(1_795_651_200)));
        assert_eq!(r.level.as_deref(), Some("ERROR"));
        for k in ["request_id", "req_id"] {
            assert_eq!(rec(&[("status", "0"), (k, "x")]).unwrap().request_id.as_deref(), Some("x"));
        }
        for k in ["error", "err", "message", "msg"] {
            assert_eq!(rec(&[("status", "0"), (k, "x")]).unwrap().error.as_deref(), Some("x"));
        }
        for k in ["level", "severity", "lvl"] {
            assert_eq!(rec(&[("status", "0"), (k, "warn")]).unwrap().level.as_deref(), Some("warn"));
        }
    }

    #[test]
    fn first_valid_match_wins() {
        let r = rec(&[
            ("ts", "garbage"),
            ("time", "1795615200"),
            ("timestamp", "0"),
            ("code", "nope"),
            ("status", "OK"),
            ("pid", "-1"),
            ("pid", "7"),
            ("pid", "8"),
        ])
        .unwrap();
        assert_eq!(r.time, Some(UNIX_EPOCH + Duration::from_secs(T)));
        assert_eq!(r.status, Some(GrpcStatus::OK));
        assert_eq!(r.pid, Some(7));
        let r = rec(&[("msg", "first"), ("error", "second"), ("method", ""), ("rpc_method", "-"), ("path", "/a.B/C")])
            .unwrap();
        assert_eq!(r.error.as_deref(), Some("first"));
        assert_eq!(r.method.as_deref(), Some("/a.B/C"));
    }

    #[test]
    fn an_http_status_is_not_a_grpc_status() {
        // `status=200` is HTTP's: not CODE_200 (an error); the next alias fills the field
        let r = rec(&[("status", "200"), ("grpc_code", "14")]).unwrap();
        assert_eq!(r.status, Some(GrpcStatus::UNAVAILABLE));
        let r = rec(&[("time", "1795615200"), ("status", "200")]).unwrap();
        assert_eq!(r.status, None);
    }

    #[test]
    fn unparsed_without_time_method_status() {
        assert_eq!(rec(&[("pid", "1"), ("msg", "x"), ("token", "t1.x")]), Err(ParseError::NoRecognizedFields));
        assert_eq!(rec(&[]), Err(ParseError::NoRecognizedFields));
        assert_eq!(rec(&[("time", "not a time")]), Err(ParseError::NoRecognizedFields));
    }

    #[test]
    fn a_call_needs_a_grpc_status() {
        for pairs in [[("method", "GetToken"), ("pid", "7")], [("time", "1795615200"), ("status", "200")]] {
            assert_eq!(call(rec(&pairs).unwrap()), Err(ParseError::NotACall), "{pairs:?}");
        }
        assert!(ParseError::NotACall.to_string().contains("no gRPC status"));
        for pairs in [[("time", "1795615200"), ("status", "14")], [("status", "OK"), ("pid", "7")]] {
            let r = rec(&pairs).unwrap();
            assert_eq!(call(r.clone()), Ok(r), "{pairs:?}");
        }
    }

    #[test]
    fn unknown_keys() {
        for k in [
            "a_very_long_key_name_indeed",
            "",
            "ÄÖÜ",
            "tim",
            "time\0",
            "times",
            "`timestamp",
            "request-id",
            "grpc_status_x",
        ] {
            assert_eq!(Field::from_key(k), None, "{k:?}");
        }
    }

    #[test]
    fn key_lookup_folds_case_like_the_naive_compare() {
        let naive = |k: &str| {
            BY_LEN.iter().flat_map(|c| c.iter()).find(|(name, _)| {
                let name = name.to_le_bytes();
                let len = name.iter().position(|&b| b == 0).unwrap_or(16);
                name[..len].eq_ignore_ascii_case(k.as_bytes()) && len == k.len()
            })
        };
        let mut keys = vec![];
        for c in BY_LEN.iter().flat_map(|c| c.iter()) {
            let bytes = c.0.to_le_bytes();
            let name = std::str::from_utf8(&bytes).unwrap().trim_end_matches('\0').to_string();
            keys.push(name.to_uppercase());
            keys.push(name.clone() + "x");
            keys.push(name[1..].to_string());
            keys.push(name.replace('_', "\u{7f}"));
            keys.push(name.chars().map(|c| if c == 'e' { '\u{c5}' } else { c }).collect());
            keys.push(name.replace('a', "@").replace('t', "["));
            keys.push(name);
        }
        keys.extend(["", "A", "[", "@", "`", "\u{80}", "{", "ÉÉ", "a_key_of_16_byte", "a_key_of_17_bytes"].map(String::from));
        for k in &keys {
            assert_eq!(Field::from_key(k), naive(k).map(|(_, f)| *f), "{k:?}");
        }
    }

    #[test]
    fn method_matching() {
        let full = "/yandex.cloud.priv.iam.v1.TokenAgent/GetToken";
        for m in [full, "yandex.cloud.priv.iam.v1.TokenAgent/GetToken", "TokenAgent/GetToken", "GetToken", " GetToken "]
        {
            assert!(method_matches(full, m), "{m}");
        }
        for m in ["", "/", "Token", "etToken", "/other.Svc/GetToken", "v1.TokenAgent", "agent/GetToken", "GetTokens"] {
            assert!(!method_matches(full, m), "{m}");
        }
        let r = Record { method: Some("GetToken".into()), ..Default::default() };
        assert!(r.method_is(full));
    }
}
