//! token-agent's access-log and application-log formats. Pure: no I/O
//! (except [`run_parse`], on the reader and writers it is given), no panics.
//!
//! Each format parser feeds raw key/value pairs (borrowed from the line
//! unless unescaping changed them) to a [`Sink`]; [`record::Normalizer`]
//! turns pairs into a [`Record`]. [`LineParser`] ties both to the configured
//! [`LogFormat`].
use std::borrow::Cow;

use crate::config::LogFormat;

pub mod applog;
pub mod auto;
pub mod delimited;
mod error;
pub mod json;
pub mod logfmt;
pub mod record;
mod run;
pub mod time;
pub mod tskv;

pub use applog::{app_log_error, AppLogLine};
pub use auto::{detect, Detected};
pub use delimited::Delimited;
pub use error::ParseError;
pub use record::{call, method_matches, normalize, Field, Normalizer, Record};
pub use run::{read_line_bounded, run_parse, ReadLine};

/// Lines longer than this (bytes, without the newline) are rejected by
/// [`LineParser`]; the agent's tailer and `tokenwatch parse` cut them to it.
pub const MAX_LINE: usize = 64 * 1024;

/// The first `needle` in `hay`, for the short spans within one line.
///
/// memchr's SSE2 searcher called directly: `memchr::memchr` goes through a
/// function pointer to its AVX2 routine, whose setup costs more than it
/// saves on fields of a few dozen bytes.
#[inline]
pub(crate) fn find_byte(needle: u8, hay: &[u8]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if let Some(one) = memchr::arch::x86_64::sse2::memchr::One::new(needle) {
        return one.find(hay);
    }
    memchr::arch::all::memchr::One::new(needle).find(hay)
}

/// Raw pairs of one line, in line order.
pub type Pairs<'a> = Vec<(Cow<'a, str>, Cow<'a, str>)>;

/// Receives raw `(key, value)` pairs; any `FnMut(Cow<str>, Cow<str>)` is one.
pub trait Sink<'a>: FnMut(Cow<'a, str>, Cow<'a, str>) {}
impl<'a, F: FnMut(Cow<'a, str>, Cow<'a, str>)> Sink<'a> for F {}

/// Runs a sink-style parser and keeps the pairs it emits, in order.
pub(crate) fn collect<'a>(
    run: impl FnOnce(&mut dyn FnMut(Cow<'a, str>, Cow<'a, str>)) -> Result<(), ParseError>,
) -> Result<Pairs<'a>, ParseError> {
    let mut out = Vec::new();
    run(&mut |k, v| out.push((k, v)))?;
    Ok(out)
}

/// Helpers shared by the parsers' unit tests.
#[cfg(test)]
pub(crate) mod testkit {
    /// Pairs as owned strings, for comparisons.
    pub fn owned(pairs: Result<super::Pairs<'_>, super::ParseError>) -> Vec<(String, String)> {
        pairs.unwrap().into_iter().map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
    }

    pub fn p(k: &str, v: &str) -> (String, String) {
        (k.into(), v.into())
    }
}

#[derive(Debug, Clone)]
enum Kind {
    Auto,
    Tskv,
    Json,
    Logfmt,
    Delimited(Box<Delimited>),
}

/// Parses lines in the configured format.
#[derive(Debug, Clone)]
pub struct LineParser {
    kind: Kind,
}

impl LineParser {
    /// `delimiter` and `columns` are used (and checked) for
    /// [`LogFormat::Delimited`] only.
    pub fn new(format: LogFormat, delimiter: &str, columns: &[String]) -> Result<Self, ParseError> {
        let kind = match format {
            LogFormat::Auto => Kind::Auto,
            LogFormat::Tskv => Kind::Tskv,
            LogFormat::Json => Kind::Json,
            LogFormat::Logfmt => Kind::Logfmt,
            LogFormat::Delimited => Kind::Delimited(Box::new(Delimited::new(delimiter, columns)?)),
        };
        Ok(Self { kind })
    }

    /// Feeds the raw pairs of `line` (without its newline) to `sink`.
    pub fn parse_with<'a>(&'a self, line: &'a str, sink: &mut impl Sink<'a>) -> Result<(), ParseError> {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.len() > MAX_LINE {
            return Err(ParseError::TooLong { len: line.len(), limit: MAX_LINE });
        }
        if line.trim().is_empty() {
            return Err(ParseError::Empty);
        }
        match &self.kind {
            Kind::Tskv => tskv::parse(line, sink),
            Kind::Json => json::parse(line, sink),
            Kind::Logfmt => logfmt::parse(line, sink),
            Kind::Delimited(d) => d.parse(line, sink),
            Kind::Auto => match detect(line) {
                Some(Detected::Json) => json::parse(line, sink),
                Some(Detected::Tskv) => tskv::parse(line, sink),
                Some(Detected::Logfmt) => logfmt::parse(line, sink),
                None => Err(ParseError::UnknownFormat),
            },
        }
    }

    /// The raw pairs of `line`, in order.
    pub fn pairs<'a>(&'a self, line: &'a str) -> Result<Pairs<'a>, ParseError> {
        let mut out = Vec::new();
        self.parse_with(line, &mut |k, v| out.push((k, v)))?;
        Ok(out)
    }

    /// `line` parsed and normalized.
    pub fn parse(&self, line: &str) -> Result<Record, ParseError> {
        let mut n = Normalizer::new();
        self.parse_with(line, &mut |k, v| n.push(&k, v))?;
        n.finish()
    }

    /// `line` as a call the agent uses ([`call`]), else why not.
    pub fn parse_call(&self, line: &str) -> Result<Record, ParseError> {
        self.parse(line).and_then(call)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::GrpcStatus;

    fn parser(f: LogFormat) -> LineParser {
        LineParser::new(f, "|", &["time".into(), "status".into()]).unwrap()
    }

    #[test]
    fn every_format_to_the_same_record() {
        let want = parser(LogFormat::Tskv).parse("tskv\ttime=2026-11-25T14:00:00Z\tstatus=UNAVAILABLE").unwrap();
        assert_eq!(want.status, Some(GrpcStatus::UNAVAILABLE));
        for (f, line) in [
            (LogFormat::Json, r#"{"time":"2026-11-25T14:00:00Z","status":"UNAVAILABLE"}"#),
            (LogFormat::Logfmt, "time=2026-11-25T14:00:00Z status=UNAVAILABLE"),
            (LogFormat::Delimited, "2026-11-25T14:00:00Z|UNAVAILABLE"),
            (LogFormat::Auto, "tskv\ttime=2026-11-25T14:00:00Z\tstatus=14"),
            (LogFormat::Auto, r#"{"time":1795615200,"status":14}"#),
            (LogFormat::Auto, "time=1795615200000 status=Unavailable\r"),
        ] {
            assert_eq!(parser(f).parse(line).as_ref(), Ok(&want), "{f:?} {line}");
        }
    }

    #[test]
    fn line_level_errors() {
        let p = parser(LogFormat::Auto);
        assert_eq!(p.parse(""), Err(ParseError::Empty));
        assert_eq!(p.parse("  \r"), Err(ParseError::Empty));
        assert_eq!(p.parse("just some text"), Err(ParseError::UnknownFormat));
        assert_eq!(p.parse("pid=1"), Err(ParseError::NoRecognizedFields));
        let long = format!("status=OK msg={}", "x".repeat(MAX_LINE));
        assert!(matches!(p.parse(&long), Err(ParseError::TooLong { .. })));
        assert_eq!(LineParser::new(LogFormat::Delimited, "", &[]).unwrap_err(), ParseError::EmptyDelimiter);
        assert!(LineParser::new(LogFormat::Json, "", &[]).is_ok());
    }

    #[test]
    fn binary_garbage_is_an_error_not_a_panic() {
        let garbage =
            String::from_utf8_lossy(&[0xff, 0, 1, 2, b'=', b'\t', b'\\', 0xc3, b'"', b'{', 0x80]).into_owned();
        for f in [LogFormat::Auto, LogFormat::Tskv, LogFormat::Json, LogFormat::Logfmt, LogFormat::Delimited] {
            assert!(parser(f).parse(&garbage).is_err(), "{f:?}");
        }
    }
}
