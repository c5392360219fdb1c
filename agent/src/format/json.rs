//! JSON lines: one object per line. Top-level string, number and bool values
//! become pairs (numbers in their JSON spelling, without trailing fraction
//! zeros); `null`, arrays and nested objects are skipped. Keys and values
//! borrow the line unless escaped.
use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::{find_byte, ParseError, Sink};

/// Feeds each top-level key/value pair of a JSON object line to `sink`.
pub fn parse<'a>(line: &'a str, sink: &mut impl Sink<'a>) -> Result<(), ParseError> {
    let mut de = serde_json::Deserializer::from_str(line);
    let mut not_object = false;
    let r = de.deserialize_any(ObjectVisitor { sink, not_object: &mut not_object }).and_then(|()| de.end());
    match r {
        Ok(()) => Ok(()),
        Err(_) if not_object => Err(ParseError::JsonNotObject),
        // serde_json's message may quote the input: keep only category and column.
        Err(e) => Err(ParseError::Json { kind: category(&e), column: e.column() }),
    }
}

/// The pairs of a JSON line, in order.
pub fn pairs(line: &str) -> Result<super::Pairs<'_>, ParseError> {
    super::collect(|mut sink| parse(line, &mut sink))
}

fn category(e: &serde_json::Error) -> &'static str {
    use serde_json::error::Category;
    match e.classify() {
        Category::Io => "io",
        Category::Syntax => "syntax",
        Category::Data => "data",
        Category::Eof => "unexpected end",
    }
}

struct ObjectVisitor<'s, S> {
    sink: &'s mut S,
    not_object: &'s mut bool,
}

impl<'de, S: Sink<'de>> Visitor<'de> for ObjectVisitor<'_, S> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(Key)? {
            // The value's text as serde_json validated it: no number is
            // converted to binary and back.
            let raw: &'de RawValue = map.next_value()?;
            if let Some(value) = scalar(raw.get()).map_err(de::Error::custom)? {
                (self.sink)(key, value);
            }
        }
        Ok(())
    }

    // Anything but an object: record it; the error message itself is discarded.
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.not_any()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.not_any()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.not_any()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.not_any()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.not_any()
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.not_any()
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        self.not_any()
    }
}

impl<S> ObjectVisitor<'_, S> {
    fn not_any<E: de::Error>(self) -> Result<(), E> {
        *self.not_object = true;
        Err(E::custom("not an object"))
    }
}

/// A key: borrowed from the line unless it had escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON string")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}

/// A valid JSON value's text as pair text; `None` for null, arrays and objects.
fn scalar(raw: &str) -> Result<Option<Cow<'_, str>>, serde_json::Error> {
    Ok(match raw.as_bytes().first() {
        Some(b'"') => {
            let body = &raw[1..raw.len() - 1];
            match find_byte(b'\\', body.as_bytes()) {
                None => Some(Cow::Borrowed(body)),
                Some(_) => Some(Cow::Owned(serde_json::from_str::<String>(raw)?)),
            }
        }
        Some(b't' | b'f') => Some(Cow::Borrowed(raw)),
        Some(b'-' | b'0'..=b'9') => Some(number(raw)),
        _ => None,
    })
}

/// A JSON number as text: `12`, `-3`, `12.5` as written, less trailing
/// fraction zeros (`12.0` is `12`, so it still reads as an integer);
/// exponent forms through `f64` (`1e3` is `1000`).
fn number(raw: &str) -> Cow<'_, str> {
    if raw.bytes().any(|b| b == b'e' || b == b'E') {
        // Valid JSON, so it parses; `Display` for f64 is the shortest
        // round-trip form, never exponent notation.
        return Cow::Owned(raw.parse::<f64>().map_or_else(|_| raw.to_owned(), |v| v.to_string()));
    }
    match raw.find('.') {
        Some(dot) => {
            let t = raw.trim_end_matches('0');
            Cow::Borrowed(if t.len() == dot + 1 { &raw[..dot] } else { t })
        }
        None => Cow::Borrowed(raw),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::format::testkit::{owned, p};

    fn kv(line: &str) -> Vec<(String, String)> {
        owned(pairs(line))
    }

    #[test]
    fn scalars_become_text() {
        assert_eq!(
            kv(
                r#"{"ts":1732543200.5,"pid":12,"neg":-3,"ok":true,"msg":"a\"b\u00e9","n":null,"arr":[1,{"x":2}],"obj":{"y":"z"}}"#
            ),
            [p("ts", "1732543200.5"), p("pid", "12"), p("neg", "-3"), p("ok", "true"), p("msg", "a\"bé")]
        );
        assert_eq!(
            kv(r#"{"a":12.0,"b":-0.50,"c":1e3,"d":2.5E-1,"e":0,"f":10,"g":100.000100,"h":false}"#),
            [p("a", "12"), p("b", "-0.5"), p("c", "1000"), p("d", "0.25"), p("e", "0"), p("f", "10"), p("g", "100.0001"), p("h", "false")]
        );
        assert_eq!(kv(" { } "), Vec::<(String, String)>::new());
    }

    #[test]
    fn borrowed_when_unescaped() {
        let ps = pairs(r#"{"method":"/a.B/C"}"#).unwrap();
        assert!(matches!(ps[0].0, Cow::Borrowed(_)) && matches!(ps[0].1, Cow::Borrowed(_)));
    }

    #[test]
    fn errors_never_quote_the_line() {
        assert_eq!(pairs("[1,2]"), Err(ParseError::JsonNotObject));
        assert_eq!(pairs(r#""t1.secret""#), Err(ParseError::JsonNotObject));
        let e = pairs(r#"{"token":"t1.secret"#).unwrap_err();
        assert!(matches!(e, ParseError::Json { kind: "unexpected end", .. }), "{e:?}");
        let e = pairs(r#"{"a":1} t1.secret"#).unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
        assert!(matches!(pairs(""), Err(ParseError::Json { .. })));
        let deep = "[".repeat(10_000);
        assert!(pairs(&format!("{{\"a\":{deep}")).is_err());
    }
}
