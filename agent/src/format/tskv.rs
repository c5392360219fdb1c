//! Yandex TSKV: `tskv<TAB>k=v<TAB>k=v`. Pairs split on unescaped TAB, key and
//! value on the first unescaped `=`; `\t \n \r \0 \\ \=` unescape, an unknown
//! `\c` is `c`; a bare `tskv` field is ignored, any other bare field is a key
//! with an empty value.
use std::borrow::Cow;


use super::{find_byte, ParseError, Sink};

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

/// Feeds each key/value pair of a TSKV line to `sink`.
///
/// A hand-written scanner, not nom combinators: this is the hot path. One
/// [`find_byte`] per field finds the next TAB (SIMD over long values); the
/// short key is scanned byte by byte for its `=`; a value is searched for
/// `\` only when it is handed over.
pub fn parse<'a>(line: &'a str, sink: &mut impl Sink<'a>) -> Result<(), ParseError> {
    let b = line.as_bytes();
    let mut pairs = 0usize;
    let (mut start, mut from) = (0, 0);
    loop {
        let end = find_byte(b'\t', &b[from..]).map_or(b.len(), |i| from + i);
        if end < b.len() && escaped(&b[start..end]) {
            from = end + 1;
            continue;
        }
        // TAB is ASCII: both cuts are char boundaries.
        if field(&line[start..end], sink) {
            pairs += 1;
        }
        if end == b.len() {
            break;
        }
        (start, from) = (end + 1, end + 1);
    }
    if pairs == 0 {
        return Err(ParseError::NoPairs);
    }
    Ok(())
}

/// Whether the byte after `before` is escaped: `before` ends in an odd run
/// of backslashes (an even run is escaped backslashes).
#[inline]
fn escaped(before: &[u8]) -> bool {
    before.iter().rev().take_while(|&&c| c == b'\\').count() % 2 == 1
}

/// Splits one field on its first unescaped `=` and feeds it to `sink`;
/// false for the fields that carry nothing (empty, a bare `tskv`).
#[inline]
fn field<'a>(text: &'a str, sink: &mut impl Sink<'a>) -> bool {
    let b = text.as_bytes();
    let (mut i, mut key_escaped) = (0, false);
    let eq = loop {
        match b.get(i) {
            None => break None,
            Some(b'=') => break Some(i),
            // Skipping one byte is enough: `=` and `\` never occur inside a
            // multi-byte char.
            Some(b'\\') => {
                key_escaped = true;
                i += 2;
            }
            Some(_) => i += 1,
        }
    };
    let key = Raw { text: &text[..eq.unwrap_or(b.len())], escaped: key_escaped };
    let value = match eq {
        Some(eq) => {
            let v = &text[eq + 1..];
            unescape(Raw { text: v, escaped: find_byte(b'\\', v.as_bytes()).is_some() })
        }
        None if !key_escaped && (key.text == "tskv" || key.text.is_empty()) => return false,
        None => Cow::Borrowed(""),
    };
    sink(unescape(key), value);
    true
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
