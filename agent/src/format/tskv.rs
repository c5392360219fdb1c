//! Yandex TSKV: `tskv<TAB>k=v<TAB>k=v`. Pairs split on unescaped TAB, key and
//! value on the first unescaped `=`; `\t \n \r \0 \\ \=` unescape, an unknown
//! `\c` is `c`; a bare `tskv` field is ignored, any other bare field is a key
//! with an empty value.
use std::borrow::Cow;

use memchr::memchr3_iter;

use super::{ParseError, Sink};

/// A slice of the line and whether it holds a backslash escape.
#[derive(Clone, Copy)]
struct Raw<'a> {
    text: &'a str,
    escaped: bool,
}

#[inline]
fn unescape(raw: Raw<'_>) -> Cow<'_, str> {
    if raw.escaped {
        Cow::Owned(unescape_slow(raw.text))
    } else {
        Cow::Borrowed(raw.text)
    }
}

fn unescape_slow(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('0') => out.push('\0'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// One field's bounds while scanning.
#[derive(Default)]
struct FieldScan {
    start: usize,
    /// The first unescaped `=`.
    eq: Option<usize>,
    key_escaped: bool,
    value_escaped: bool,
}

/// Feeds each key/value pair of a TSKV line to `sink`.
///
/// One SIMD pass over the line for TAB, `\` and `=` (a hand-written scanner,
/// not nom combinators: this is the hot path, and per-field parser calls cost
/// several times more).
pub fn parse<'a>(line: &'a str, sink: &mut impl Sink<'a>) -> Result<(), ParseError> {
    let b = line.as_bytes();
    let mut pairs = 0usize;
    let mut f = FieldScan::default();
    // Hits below this index are the char after a `\`: escaped. Skipping one
    // byte is enough: TAB, `\` and `=` never occur inside a multi-byte char.
    let mut escaped_until = 0;
    for at in memchr3_iter(b'\t', b'\\', b'=', b).chain(std::iter::once(b.len())) {
        if at < escaped_until && at < b.len() {
            continue;
        }
        match b.get(at) {
            Some(b'\\') => {
                if f.eq.is_none() {
                    f.key_escaped = true;
                } else {
                    f.value_escaped = true;
                }
                escaped_until = at + 2;
            }
            Some(b'=') => {
                f.eq.get_or_insert(at);
            }
            // TAB or end of line: the field is complete.
            _ => {
                let (key, value) = match f.eq {
                    Some(eq) => (&line[f.start..eq], Some(&line[eq + 1..at])),
                    None => (&line[f.start..at], None),
                };
                // A bare `tskv` marker and empty fields (`\t\t`) carry nothing.
                let skip = value.is_none() && !f.key_escaped && (key == "tskv" || key.is_empty());
                if !skip {
                    let k = unescape(Raw { text: key, escaped: f.key_escaped });
                    let v = value.map_or(Cow::Borrowed(""), |v| unescape(Raw { text: v, escaped: f.value_escaped }));
                    sink(k, v);
                    pairs += 1;
                }
                f = FieldScan { start: at + 1, ..FieldScan::default() };
            }
        }
    }
    if pairs == 0 {
        return Err(ParseError::NoPairs);
    }
    Ok(())
}

/// The pairs of a TSKV line, in order.
pub fn pairs(line: &str) -> Result<super::Pairs<'_>, ParseError> {
    super::collect(|mut sink| parse(line, &mut sink))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::format::testkit::{owned, p};

    fn kv(line: &str) -> Vec<(String, String)> {
        owned(pairs(line))
    }

    #[test]
    fn plain_line() {
        assert_eq!(kv("tskv\tpid=12\tstatus=OK"), [p("pid", "12"), p("status", "OK")]);
        assert_eq!(kv("pid=12"), [p("pid", "12")]);
    }

    #[test]
    fn value_splits_on_first_unescaped_eq() {
        assert_eq!(kv("tskv\ta=b=c"), [p("a", "b=c")]);
        assert_eq!(kv("tskv\ta\\=b=c"), [p("a=b", "c")]);
        assert_eq!(kv("tok=abc==\tx=1"), [p("tok", "abc=="), p("x", "1")]);
    }

    #[test]
    fn escapes() {
        assert_eq!(kv(r"tskv	m=a\tb\nc\rd\0e\\f\=g\qh"), [p("m", "a\tb\nc\rd\0e\\f=gqh")]);
        // An escaped TAB does not split; a trailing lone backslash stays.
        assert_eq!(kv("a=x\\\ty\tb=z\\"), [p("a", "x\ty"), p("b", "z\\")]);
        assert_eq!(kv("a=\\é\\"), [p("a", "é\\")]);
    }

    #[test]
    fn borrowed_when_unescaped() {
        let ps = pairs("tskv\tk=v").unwrap();
        assert!(matches!(ps[0].0, Cow::Borrowed(_)) && matches!(ps[0].1, Cow::Borrowed(_)));
    }

    #[test]
    fn bare_and_empty_fields() {
        assert_eq!(kv("tskv\t\tflag\tk="), [p("flag", ""), p("k", "")]);
        assert_eq!(kv("tskv\ttskv=1"), [p("tskv", "1")]);
        assert_eq!(pairs("tskv"), Err(ParseError::NoPairs));
        assert_eq!(pairs(""), Err(ParseError::NoPairs));
        assert_eq!(pairs("\t\t"), Err(ParseError::NoPairs));
    }

    #[test]
    fn garbage_does_not_panic() {
        for s in ["\\", "\\\t", "=\\", "\u{0}\u{1}=\u{fffd}\\\u{fffd}", "é\\é=é\\"] {
            let _ = pairs(s);
        }
    }
}
