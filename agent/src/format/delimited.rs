//! Delimited columns: the line is split on a configured delimiter string and
//! fields are named by the configured columns (`-` skips one). Fields are
//! trimmed; extra fields are ignored, missing ones are absent. A whitespace
//! delimiter (`" "`) treats a run of delimiters as one. No quoting.
use std::borrow::Cow;

use memchr::memmem::Finder;

use super::record::{trim, Field};
use super::{ParseError, Sink};

/// A validated delimited layout.
#[derive(Debug, Clone)]
pub struct Delimited {
    finder: Finder<'static>,
    delimiter_len: usize,
    collapse: bool,
    /// `None` for a `-` column.
    columns: Vec<Option<String>>,
}

impl Delimited {
    /// `columns` are field names or their aliases (see [`Field::from_key`]) or `-`.
    pub fn new(delimiter: &str, columns: &[String]) -> Result<Self, ParseError> {
        if delimiter.is_empty() {
            return Err(ParseError::EmptyDelimiter);
        }
        if columns.is_empty() {
            return Err(ParseError::NoColumns);
        }
        let columns = columns
            .iter()
            .map(|c| match c.trim() {
                "-" => Ok(None),
                name if Field::from_key(name).is_some() => Ok(Some(name.to_owned())),
                _ => Err(ParseError::UnknownColumn { name: c.clone() }),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            finder: Finder::new(delimiter.as_bytes()).into_owned(),
            delimiter_len: delimiter.len(),
            collapse: delimiter.trim().is_empty(),
            columns,
        })
    }

    /// Feeds each named column of `line` to `sink`.
    pub fn parse<'a>(&'a self, line: &'a str, sink: &mut impl Sink<'a>) -> Result<(), ParseError> {
        if line.trim().is_empty() {
            return Err(ParseError::NoPairs);
        }
        let mut columns = self.columns.iter();
        let mut rest = line;
        loop {
            let (field, next) = match self.finder.find(rest.as_bytes()) {
                // The delimiter is a whole string, so both cuts are char boundaries.
                Some(at) => (&rest[..at], Some(&rest[at + self.delimiter_len..])),
                None => (rest, None),
            };
            if !(self.collapse && field.is_empty()) {
                match columns.next() {
                    Some(Some(name)) => sink(Cow::Borrowed(name.as_str()), Cow::Borrowed(trim(field))),
                    Some(None) => {}
                    None => break,
                }
            }
            match next {
                Some(n) => rest = n,
                None => break,
            }
        }
        Ok(())
    }

    /// The named columns of `line`, in order.
    pub fn pairs<'a>(&'a self, line: &'a str) -> Result<super::Pairs<'a>, ParseError> {
        super::collect(|mut sink| self.parse(line, &mut sink))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(c: &[&str]) -> Vec<String> {
        c.iter().map(|s| s.to_string()).collect()
    }

    use crate::format::testkit::{owned, p};

    fn kv(d: &Delimited, line: &str) -> Vec<(String, String)> {
        owned(d.pairs(line))
    }

    #[test]
    fn columns_skip_and_trim() {
        let d = Delimited::new("|", &cols(&["time", "-", "pid", "status"])).unwrap();
        assert_eq!(
            kv(&d, "2026-11-25T14:00:00Z | x | 12 | OK | extra"),
            [p("time", "2026-11-25T14:00:00Z"), p("pid", "12"), p("status", "OK")]
        );
        assert_eq!(kv(&d, "t||"), [p("time", "t"), p("pid", "")]);
        assert_eq!(d.pairs(""), Err(ParseError::NoPairs));
    }

    #[test]
    fn multi_char_and_whitespace_delimiters() {
        let d = Delimited::new(" :: ", &cols(&["pid", "uid"])).unwrap();
        assert_eq!(kv(&d, "1 :: 2"), [p("pid", "1"), p("uid", "2")]);
        let d = Delimited::new(" ", &cols(&["pid", "uid", "gid"])).unwrap();
        assert_eq!(kv(&d, "  1   2 3"), [p("pid", "1"), p("uid", "2"), p("gid", "3")]);
        let d = Delimited::new("é", &cols(&["pid", "uid"])).unwrap();
        assert_eq!(kv(&d, "1é2"), [p("pid", "1"), p("uid", "2")]);
    }

    #[test]
    fn bad_layouts() {
        assert_eq!(Delimited::new("", &cols(&["pid"])).unwrap_err(), ParseError::EmptyDelimiter);
        assert_eq!(Delimited::new("|", &[]).unwrap_err(), ParseError::NoColumns);
        assert_eq!(
            Delimited::new("|", &cols(&["pid", "tokn"])).unwrap_err(),
            ParseError::UnknownColumn { name: "tokn".into() }
        );
        assert!(Delimited::new("|", &cols(&["TS", "grpc_code", "duration_ms", "-"])).is_ok());
    }
}
