//! logfmt: `key=value key="quoted \"value\"" bare_key`, separated by spaces
//! (or TABs). Quoted values take JSON-style escapes (`\" \\ \n \t \r \b \f \/
//! \uXXXX`); an unknown `\c` is `c`. A bare key has an empty value.
use std::borrow::Cow;

use memchr::memchr2;
use nom::{character::complete::char, combinator::opt, sequence::preceded, Parser};

use super::error::{finish, Kind, Located, PResult};
use super::{find_byte, ParseError, Sink};

/// Byte classes: bit 0 = space, bit 1 = ends a key (space, `=`, `"`).
const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b' ' as usize] = 3;
    t[b'\t' as usize] = 3;
    t[b'\r' as usize] = 3;
    t[b'\n' as usize] = 3;
    t[b'=' as usize] = 2;
    t[b'"' as usize] = 2;
    t
};

/// The first byte of `i` in class `mask` (or, with `invert`, not in it).
/// A byte scan, not `take_till` (which decodes chars): the classes are
/// ASCII, so every cut is a char boundary.
#[inline]
fn scan(i: &str, mask: u8, invert: bool) -> usize {
    i.bytes().position(|c| (CLASS[c as usize] & mask != 0) != invert).unwrap_or(i.len())
}

fn key(i: &str) -> PResult<'_, &str> {
    let end = scan(i, 2, false);
    Ok((&i[end..], &i[..end]))
}

fn space(i: &str) -> PResult<'_, &str> {
    let end = scan(i, 1, true);
    Ok((&i[end..], &i[..end]))
}

/// `"…"` with escapes; the returned flag says whether it holds any.
fn quoted(i: &str) -> PResult<'_, (&str, bool)> {
    let (body, _) = char('"').parse(i)?;
    let b = body.as_bytes();
    let (mut pos, mut escaped) = (0, false);
    loop {
        match memchr2(b'"', b'\\', &b[pos.min(b.len())..]) {
            None => return Err(nom::Err::Failure(Located::new(i, Kind::UnterminatedQuote))),
            Some(off) if b[pos + off] == b'\\' => {
                escaped = true;
                pos += off + 2;
            }
            Some(off) => return Ok((&body[pos + off + 1..], (&body[..pos + off], escaped))),
        }
    }
}

/// Up to the first space, TAB, CR or LF. SIMD over the long values (times,
/// methods, ids) rather than [`scan`]'s byte loop.
fn unquoted(i: &str) -> PResult<'_, &str> {
    let b = i.as_bytes();
    let end = find_space(b).unwrap_or(b.len());
    // LF never occurs within a line the tailer splits, but `parse` takes any str.
    let end = find_byte(b'\n', &b[..end]).unwrap_or(end);
    Ok((&i[end..], &i[..end]))
}

#[inline]
fn find_space(b: &[u8]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if let Some(three) = memchr::arch::x86_64::sse2::memchr::Three::new(b' ', b'\t', b'\r') {
        return three.find(b);
    }
    memchr::memchr3(b' ', b'\t', b'\r', b)
}

fn value(i: &str) -> PResult<'_, Cow<'_, str>> {
    if i.starts_with('"') {
        let (rest, (body, escaped)) = quoted(i)?;
        let v = if escaped { Cow::Owned(unescape(body)) } else { Cow::Borrowed(body) };
        return Ok((rest, v));
    }
    let (rest, v) = unquoted(i)?;
    Ok((rest, Cow::Borrowed(v)))
}

/// A key and, unless bare, its value.
type RawPair<'a> = (&'a str, Option<Cow<'a, str>>);

/// One `key[=value]` after optional leading space; `None` at the end of line.
fn pair(i: &str) -> PResult<'_, Option<RawPair<'_>>> {
    let (i, _) = space(i)?;
    if i.is_empty() {
        return Ok((i, None));
    }
    if i.starts_with('"') {
        return Err(nom::Err::Failure(Located::new(i, Kind::UnexpectedQuote)));
    }
    let (i, k) = key(i)?;
    let (i, v) = opt(preceded(char('='), value)).parse(i)?;
    Ok((i, Some((k, v))))
}

pub(crate) fn unescape(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('u') => out.push(unicode_escape(&mut chars)),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// The char of `\uXXXX` (a surrogate pair `\uD83D\uDE00` included); U+FFFD when invalid.
fn unicode_escape(chars: &mut std::str::Chars<'_>) -> char {
    fn hex4(chars: &mut std::str::Chars<'_>) -> Option<u32> {
        let s = chars.as_str().get(..4)?;
        let n = u32::from_str_radix(s, 16).ok().filter(|_| s.bytes().all(|b| b.is_ascii_hexdigit()))?;
        chars.nth(3);
        Some(n)
    }
    let Some(hi) = hex4(chars) else { return '\u{fffd}' };
    if (0xD800..0xDC00).contains(&hi) && chars.as_str().starts_with("\\u") {
        let mut look = chars.clone();
        look.nth(1);
        if let Some(lo @ 0xDC00..=0xDFFF) = hex4(&mut look) {
            *chars = look;
            return char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)).unwrap_or('\u{fffd}');
        }
    }
    char::from_u32(hi).unwrap_or('\u{fffd}')
}

/// Feeds each key/value pair of a logfmt line to `sink`.
pub fn parse<'a>(line: &'a str, sink: &mut impl Sink<'a>) -> Result<(), ParseError> {
    let mut rest = line;
    let mut pairs = 0usize;
    while let (after, Some((k, v))) = finish(line, pair(rest))? {
        if after.len() == rest.len() {
            // Cannot happen (a key stops only at space, `=` or `"`, all
            // handled), but never loop without progress.
            break;
        }
        rest = after;
        sink(Cow::Borrowed(k), v.unwrap_or(Cow::Borrowed("")));
        pairs += 1;
    }
    if pairs == 0 {
        return Err(ParseError::NoPairs);
    }
    Ok(())
}

/// The pairs of a logfmt line, in order.
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
    fn pairs_quotes_and_bare_keys() {
        assert_eq!(
            kv(r#"time=2026-11-25T14:00:00Z msg="hello world" ok  pid=7"#),
            [p("time", "2026-11-25T14:00:00Z"), p("msg", "hello world"), p("ok", ""), p("pid", "7")]
        );
        assert_eq!(kv("\ta=1\t\tb=2 "), [p("a", "1"), p("b", "2")]);
        assert_eq!(kv("a= b=\"\""), [p("a", ""), p("b", "")]);
        assert_eq!(kv("tok=abc== x=a=b"), [p("tok", "abc=="), p("x", "a=b")]);
    }

    #[test]
    fn escapes_in_quotes() {
        assert_eq!(
            kv(r#"m="a \"q\" \\ \n\t\r \/ \x \u00e9 \ud83d\ude00 \uZZZZ""#),
            [p("m", "a \"q\" \\ \n\t\r / x é 😀 \u{fffd}ZZZZ")]
        );
        assert_eq!(kv(r#"m="é\"""#), [p("m", "é\"")]);
    }

    #[test]
    fn errors_name_columns_not_content() {
        assert_eq!(pairs(r#"a=1 msg="never closed"#), Err(ParseError::UnterminatedQuote { column: 9 }));
        assert_eq!(pairs(r#"a="\""#), Err(ParseError::UnterminatedQuote { column: 3 }));
        assert_eq!(pairs(r#"a=1 "k"=v"#), Err(ParseError::UnexpectedQuote { column: 5 }));
        assert_eq!(pairs(""), Err(ParseError::NoPairs));
        assert_eq!(pairs("   "), Err(ParseError::NoPairs));
    }

    #[test]
    fn odd_input_does_not_panic() {
        for s in ["=", "==", "=a", "a=\"\\", "\"", "a=\"\\u12", "\u{0}=\u{1}", "é=é\"", "a=\"x\"y"] {
            let _ = pairs(s);
        }
        assert_eq!(kv("=a"), [p("", "a")]);
    }
}
