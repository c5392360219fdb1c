//! Per-line format detection for `log_format = "auto"`: `{` → json;
//! `tskv<TAB>` or a TAB-separated `k=v` first field → tskv; a space-separated
//! `k=v` token → logfmt; anything else is not a structured line.
use memchr::memchr;

/// The format [`detect`] chose for one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    Json,
    Tskv,
    Logfmt,
}

/// A `key=` token: a non-empty key without spaces or quotes, then `=`.
fn is_pair(field: &str) -> bool {
    field.split_once('=').is_some_and(|(k, _)| !k.is_empty() && !k.contains([' ', '"']))
}

/// Which parser a line needs; `None` when it looks like none of them.
pub fn detect(line: &str) -> Option<Detected> {
    let t = line.trim_start_matches([' ', '\r', '\n']);
    if t.starts_with('{') {
        return Some(Detected::Json);
    }
    if t.starts_with("tskv\t") || t == "tskv" {
        return Some(Detected::Tskv);
    }
    if memchr(b'\t', t.as_bytes()).is_some() && t.split('\t').find(|f| !f.is_empty()).is_some_and(is_pair) {
        return Some(Detected::Tskv);
    }
    let b = t.as_bytes();
    let mut from = 0;
    while let Some(eq) = memchr(b'=', &b[from..]).map(|i| i + from) {
        let start = b[..eq].iter().rposition(|c| matches!(c, b' ' | b'\t')).map_or(0, |i| i + 1);
        let key = &t[start..eq];
        if !key.is_empty() && !key.contains(['"', '=']) {
            return Some(Detected::Logfmt);
        }
        from = eq + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_per_line() {
        assert_eq!(detect(r#"{"a":1}"#), Some(Detected::Json));
        assert_eq!(detect(r#"  {"a":1}"#), Some(Detected::Json));
        assert_eq!(detect("tskv\ta=1"), Some(Detected::Tskv));
        assert_eq!(detect("tskv"), Some(Detected::Tskv));
        assert_eq!(detect("a=1\tb=2"), Some(Detected::Tskv));
        assert_eq!(detect("\ta=1 x"), Some(Detected::Tskv));
        assert_eq!(detect("a=1 b=\"x y\""), Some(Detected::Logfmt));
        assert_eq!(detect("2026-11-25 ERROR x=1"), Some(Detected::Logfmt));
        assert_eq!(detect("hello\tworld a=1"), Some(Detected::Logfmt));
        for none in
            ["", "hello world", "=== header ===", "a \"b=c\"", "2026-11-25T14:00:00Z\tERROR\tboom", "\u{0}\u{fffd}"]
        {
            assert_eq!(detect(none), None, "{none:?}");
        }
    }
}
