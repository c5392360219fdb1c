//! Parse errors. Messages are line-independent: they never quote the line,
//! which may hold a token — only positions, lengths and categories.
use thiserror::Error;

/// Why a line did not yield a record. `column` is a 1-based byte offset.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    #[error("empty line")]
    Empty,
    #[error("line too long ({len} bytes, limit {limit})")]
    TooLong { len: usize, limit: usize },
    #[error("no key=value pairs")]
    NoPairs,
    #[error("unterminated quote at column {column}")]
    UnterminatedQuote { column: usize },
    #[error("unexpected quote at column {column}")]
    UnexpectedQuote { column: usize },
    #[error("invalid JSON ({kind}) at column {column}")]
    Json { kind: &'static str, column: usize },
    #[error("JSON line is not an object")]
    JsonNotObject,
    #[error("not json, tskv or logfmt")]
    UnknownFormat,
    #[error("no time, method or status field")]
    NoRecognizedFields,
    /// A record the agent does not count as a call (see [`super::record::call`]).
    #[error("no gRPC status: not a call (the agent skips it)")]
    NotACall,
    #[error("delimited format needs a non-empty delimiter")]
    EmptyDelimiter,
    #[error("delimited format needs columns")]
    NoColumns,
    /// A configured column name (from the config, never from a line).
    #[error("unknown delimited column {name:?} (use a field name, an alias or \"-\")")]
    UnknownColumn { name: String },
}

/// The error type the nom parsers use internally: where (the unparsed rest)
/// and what. Mapped to [`ParseError`] with a column by [`Located::into_error`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Located<'a> {
    pub rest: &'a str,
    pub kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Kind {
    UnterminatedQuote,
    UnexpectedQuote,
    Syntax,
}

impl<'a> Located<'a> {
    pub fn new(rest: &'a str, kind: Kind) -> Self {
        Self { rest, kind }
    }

    /// The public error, `column` counted in `line` (of which `rest` is a suffix).
    pub fn into_error(self, line: &str) -> ParseError {
        let column = line.len().saturating_sub(self.rest.len()) + 1;
        match self.kind {
            Kind::UnterminatedQuote => ParseError::UnterminatedQuote { column },
            Kind::UnexpectedQuote => ParseError::UnexpectedQuote { column },
            Kind::Syntax => ParseError::NoPairs,
        }
    }
}

impl<'a> nom::error::ParseError<&'a str> for Located<'a> {
    fn from_error_kind(rest: &'a str, _: nom::error::ErrorKind) -> Self {
        Self::new(rest, Kind::Syntax)
    }
    fn append(_: &'a str, _: nom::error::ErrorKind, other: Self) -> Self {
        other
    }
}

pub(crate) type PResult<'a, O> = nom::IResult<&'a str, O, Located<'a>>;

/// Unwraps a nom result into the public error, counted against `line`.
pub(crate) fn finish<'a, O>(line: &str, r: PResult<'a, O>) -> Result<(&'a str, O), ParseError> {
    match r {
        Ok(v) => Ok(v),
        Err(nom::Err::Error(e) | nom::Err::Failure(e)) => Err(e.into_error(line)),
        // Complete parsers never ask for more input.
        Err(nom::Err::Incomplete(_)) => Err(ParseError::NoPairs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_line_independent() {
        let e = Located::new("\"secret", Kind::UnterminatedQuote).into_error("a=\"secret");
        assert_eq!(e, ParseError::UnterminatedQuote { column: 3 });
        assert_eq!(e.to_string(), "unterminated quote at column 3");
        assert_eq!(
            ParseError::TooLong { len: 70000, limit: 65536 }.to_string(),
            "line too long (70000 bytes, limit 65536)"
        );
    }
}
