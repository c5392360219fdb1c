//! Time and duration values as access logs write them. Hand-rolled (no
//! allocation, no panics); times are limited to years 0000–9999.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const NANOS: u64 = 1_000_000_000;
/// 9999-12-31T23:59:59Z + 1 s.
const MAX_SECS: i64 = 253_402_300_800;
/// 0000-01-01T00:00:00Z.
const MIN_SECS: i64 = -62_167_219_200;

/// RFC 3339 / ISO 8601 (`T` or space, fractional seconds with `.` or `,`,
/// `Z`/`±HH:MM`/`±HHMM`/`±HH`/`UTC`, no zone = UTC, date only = midnight),
/// or unix time: seconds (may be fractional), milliseconds for numbers
/// > 10^12, microseconds > 10^15, nanoseconds > 10^18.
pub fn parse_time(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let first = *s.as_bytes().first()?;
    if first.is_ascii_digit() && matches!(s.as_bytes().get(4), Some(b'-' | b'/')) {
        return parse_iso(s);
    }
    if first.is_ascii_digit() || first == b'.' {
        return parse_unix(s);
    }
    None
}

fn parse_unix(s: &str) -> Option<SystemTime> {
    let (secs, nanos) = match decimal(s) {
        // Scale by magnitude: seconds, else ms, µs, ns.
        Some((int, frac, 0)) => match int {
            i if i > 1_000_000_000_000_000_000 => (i / NANOS, i % NANOS),
            i if i > 1_000_000_000_000_000 => (i / 1_000_000, i % 1_000_000 * 1000 + frac / 1_000_000),
            i if i > 1_000_000_000_000 => (i / 1000, i % 1000 * 1_000_000 + frac / 1000),
            i => (i, frac),
        },
        _ => {
            // Exponent notation (`1.7e9`), rare: via f64.
            let f: f64 = s.parse().ok().filter(|f: &f64| f.is_finite() && *f >= 0.0)?;
            let f = if f > 1e18 {
                f / 1e9
            } else if f > 1e15 {
                f / 1e6
            } else if f > 1e12 {
                f / 1e3
            } else {
                f
            };
            (f.trunc() as u64, (f.fract() * 1e9) as u64)
        }
    };
    from_parts(i64::try_from(secs).ok()?, nanos)
}

/// `int.frac` → (int, frac in nanos, rest length); up to 9 fraction digits
/// count, more are ignored. `None` unless it starts with a digit or `.`, or
/// when the integer part overflows `u64`.
fn decimal(s: &str) -> Option<(u64, u64, usize)> {
    let b = s.as_bytes();
    let int_end = b.iter().position(|c| !c.is_ascii_digit()).unwrap_or(b.len());
    let int = b[..int_end].iter().try_fold(0u64, |acc, c| acc.checked_mul(10)?.checked_add(u64::from(c - b'0')))?;
    if b.get(int_end) != Some(&b'.') {
        return (int_end > 0).then_some((int, 0, b.len() - int_end));
    }
    match fraction(b, int_end + 1) {
        Some((frac, end)) => Some((int, frac, b.len() - end)),
        // `12.` is 12; a lone `.` is nothing.
        None if int_end > 0 => Some((int, 0, b.len() - int_end - 1)),
        None => None,
    }
}

/// Seconds and nanoseconds since the epoch (either side), within years 0000–9999.
fn from_parts(secs: i64, nanos: u64) -> Option<SystemTime> {
    if !(MIN_SECS..MAX_SECS).contains(&secs) || nanos >= NANOS {
        return None;
    }
    let t = if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(secs as u64))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))
    };
    t?.checked_add(Duration::from_nanos(nanos))
}

/// A fixed-width decimal number at `b[at..at+n]`.
fn num(b: &[u8], at: usize, n: usize) -> Option<i64> {
    let d = b.get(at..at + n)?;
    d.iter().try_fold(0i64, |acc, c| c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0')))
}

fn parse_iso(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    let sep = b[4];
    let (year, month, day) = (num(b, 0, 4)?, num(b, 5, 2)?, num(b, 8, 2)?);
    if b.get(7) != Some(&sep) || !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let (mut secs, mut nanos, mut i) = (0i64, 0u64, 10);
    if matches!(b.get(i), Some(b'T' | b't' | b' ')) && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
        let (h, m) = (num(b, i + 1, 2)?, num(b, i + 4, 2)?);
        if b.get(i + 3) != Some(&b':') || h > 23 || m > 59 {
            return None;
        }
        secs = h * 3600 + m * 60;
        i += 6;
        if b.get(i) == Some(&b':') {
            let sec = num(b, i + 1, 2).filter(|s| *s <= 60)?;
            secs += sec;
            i += 3;
            if matches!(b.get(i), Some(b'.' | b',')) {
                (nanos, i) = fraction(b, i + 1)?;
            }
        }
    } else if i != b.len() {
        return None;
    }
    let offset = zone(&s[i..])?;
    let days = days_from_civil(year, month, day);
    from_parts(days * 86_400 + secs - offset, nanos)
}

/// The digits from `at` as nanoseconds (at least one; beyond 9 ignored), and where they end.
fn fraction(b: &[u8], at: usize) -> Option<(u64, usize)> {
    let n = b[at.min(b.len())..].iter().take_while(|c| c.is_ascii_digit()).count();
    if n == 0 {
        return None;
    }
    let used = n.min(9);
    let frac = b[at..at + used].iter().fold(0u64, |acc, c| acc * 10 + u64::from(c - b'0'));
    Some((frac * 10u64.pow(9 - used as u32), at + n))
}

/// The zone suffix as seconds east of UTC; `None` when it is not a zone.
fn zone(z: &str) -> Option<i64> {
    let z = z.trim_start();
    let z = z.strip_suffix(" UTC").map(str::trim_end).unwrap_or(z);
    match z {
        "" | "Z" | "z" | "UTC" | "GMT" => return Some(0),
        _ => {}
    }
    let b = z.as_bytes();
    let sign = match b[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let h = num(b, 1, 2)?;
    let m = match b.len() {
        3 => 0,
        5 => num(b, 3, 2)?,
        6 if b[3] == b':' => num(b, 4, 2)?,
        _ => return None,
    };
    (h <= 23 && m <= 59).then_some(sign * (h * 3600 + m * 60))
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i128) -> (i128, i128, i128) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i128::from(m <= 2), m, d)
}

/// `2026-11-25T14:00:00.123Z`: RFC 3339, UTC, milliseconds (truncated).
pub fn format_rfc3339_millis(t: SystemTime) -> String {
    let nanos: i128 = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    };
    let millis = nanos.div_euclid(1_000_000);
    let (secs, ms) = (millis.div_euclid(1000), millis.rem_euclid(1000));
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z", sod / 3600, sod % 3600 / 60, sod % 60)
}

/// `12ms`, `1.5s`, `250us`/`µs`, `10ns`, `1m`, `2h`, Go's `1m30.5s`; a bare
/// number is in `bare_unit` (seconds, or milliseconds for `duration_ms`).
/// Up to 584 years (`u64` nanoseconds).
pub fn parse_duration(s: &str, bare_unit: Duration) -> Option<Duration> {
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    let mut segments = 0;
    while !rest.is_empty() {
        let (int, frac, left) = decimal(rest)?;
        let tail = rest[rest.len() - left..].trim_start();
        let unit_len = tail.find(|c: char| !c.is_alphabetic()).unwrap_or(tail.len());
        let (unit, after) = tail.split_at(unit_len);
        let unit_nanos: u64 = match unit {
            "" if segments == 0 && after.trim().is_empty() => u64::try_from(bare_unit.as_nanos()).ok()?,
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" | "sec" | "secs" => NANOS,
            "m" | "min" | "mins" => 60 * NANOS,
            "h" | "hr" | "hrs" => 3600 * NANOS,
            _ => return None,
        };
        // `frac` is in nanos of the unit: < 10^9, so neither product overflows.
        let part = if unit_nanos >= NANOS { frac * (unit_nanos / NANOS) } else { frac * unit_nanos / NANOS };
        total = total.checked_add(int.checked_mul(unit_nanos)?)?.checked_add(part)?;
        segments += 1;
        rest = after.trim_start();
    }
    Some(Duration::from_nanos(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, nanos: u32) -> Option<SystemTime> {
        Some(UNIX_EPOCH + Duration::new(secs, nanos))
    }

    const T: u64 = 1_795_615_200; // 2026-11-25T14:00:00Z

    #[test]
    fn iso_forms() {
        for s in [
            "2026-11-25T14:00:00Z",
            "2026-11-25t14:00:00z",
            "2026-11-25 14:00:00",
            "2026-11-25T14:00:00",
            "2026-11-25T17:00:00+03:00",
            "2026-11-25T17:00:00+0300",
            "2026-11-25T17:00:00+03",
            "2026-11-25T09:30:00-04:30",
            "2026-11-25 14:00:00 +0000 UTC",
            "2026-11-25T14:00:00 UTC",
            "2026/11/25 14:00:00",
            "2026-11-25T14:00Z",
            " 2026-11-25T14:00:00Z ",
        ] {
            assert_eq!(parse_time(s), at(T, 0), "{s}");
        }
        assert_eq!(parse_time("2026-11-25"), at(T - 14 * 3600, 0));
        assert_eq!(parse_time("2026-11-25T14:00:00.123Z"), at(T, 123_000_000));
        assert_eq!(parse_time("2026-11-25 14:00:00,5"), at(T, 500_000_000));
        assert_eq!(parse_time("2026-11-25T14:00:00.123456789123+00:00"), at(T, 123_456_789));
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), at(0, 0));
        assert_eq!(parse_time("2024-02-29T00:00:00Z"), at(1_709_164_800, 0));
        assert!(parse_time("1969-12-31T23:59:59Z").is_some());
    }

    #[test]
    fn unix_forms() {
        assert_eq!(parse_time("1795615200"), at(T, 0));
        assert_eq!(parse_time("1795615200.25"), at(T, 250_000_000));
        assert_eq!(parse_time("1795615200123"), at(T, 123_000_000));
        assert_eq!(parse_time("1795615200123456"), at(T, 123_456_000));
        assert_eq!(parse_time("1795615200123456789"), at(T, 123_456_789));
        assert_eq!(parse_time("1.7956152e9"), at(T, 0));
        assert_eq!(parse_time("0"), at(0, 0));
        // 10^12 itself is seconds (year 33658: out of range); above it, milliseconds.
        assert_eq!(parse_time("1000000000000"), None);
        assert_eq!(parse_time("1000000000001"), at(1_000_000_000, 1_000_000));
    }

    #[test]
    fn rejects() {
        for s in [
            "",
            "abc",
            "2026-13-01",
            "2026-02-30",
            "2023-02-29",
            "2026-11-25T24:00:00Z",
            "2026-11-25T14:60:00Z",
            "2026-11-25T14:00:00X",
            "2026-11-25T14:00:00+25:00",
            "2026-11-25-14:00",
            "-1",
            "1e400",
            "99999999999999999999999999999999",
            "12:00:00",
            "1.2.3",
            ".",
            "2026-11-25T14:00:00.",
            "2026-1-25",
            "2026/11-25",
        ] {
            assert_eq!(parse_time(s), None, "{s:?}");
        }
    }

    #[test]
    fn formats_millis_utc() {
        assert_eq!(format_rfc3339_millis(at(T, 123_999_999).unwrap()), "2026-11-25T14:00:00.123Z");
        assert_eq!(format_rfc3339_millis(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_rfc3339_millis(UNIX_EPOCH - Duration::from_millis(1)), "1969-12-31T23:59:59.999Z");
        assert_eq!(format_rfc3339_millis(parse_time("9999-12-31T23:59:59.999Z").unwrap()), "9999-12-31T23:59:59.999Z");
        assert_eq!(format_rfc3339_millis(parse_time("0000-01-01T00:00:00Z").unwrap()), "0000-01-01T00:00:00.000Z");
    }

    #[test]
    fn durations() {
        let s = Duration::from_secs(1);
        let ms = Duration::from_millis(1);
        assert_eq!(parse_duration("12ms", s), Some(Duration::from_millis(12)));
        assert_eq!(parse_duration("1.5s", s), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250us", s), Some(Duration::from_micros(250)));
        assert_eq!(parse_duration("250µs", s), Some(Duration::from_micros(250)));
        assert_eq!(parse_duration("250μs", s), Some(Duration::from_micros(250)));
        assert_eq!(parse_duration("10ns", s), Some(Duration::from_nanos(10)));
        assert_eq!(parse_duration("1m", s), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("2h", s), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1m30.5s", s), Some(Duration::from_millis(90_500)));
        assert_eq!(parse_duration("1h 2m", s), Some(Duration::from_secs(3720)));
        assert_eq!(parse_duration("12 ms", s), Some(Duration::from_millis(12)));
        assert_eq!(parse_duration("0.012", s), Some(Duration::from_millis(12)));
        assert_eq!(parse_duration("3", s), Some(Duration::from_secs(3)));
        assert_eq!(parse_duration(".5", s), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("12", ms), Some(Duration::from_millis(12)));
        assert_eq!(parse_duration("1.234", ms), Some(Duration::from_micros(1234)));
        assert_eq!(parse_duration("1.234ms", s), Some(Duration::from_micros(1234)));
        for bad in ["", "ms", "-1s", "1x", "1s2", "1 2", "1..2s", "nan", "99999999999999999999999999999h"] {
            assert_eq!(parse_duration(bad, s), None, "{bad:?}");
        }
    }
}
