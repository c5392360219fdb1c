//! TSKV (`tskv<TAB>k=v<TAB>...`): escaping for the writer, parsing for tests.

/// Escapes a key or value: `\t \n \r \0 \\ \=`.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            '\\' => out.push_str("\\\\"),
            '=' => out.push_str("\\="),
            c => out.push(c),
        }
    }
    out
}

/// A TSKV line from key/value pairs, in order.
pub fn format_line(pairs: &[(&str, &str)]) -> String {
    let mut line = String::from("tskv");
    for (k, v) in pairs {
        line.push('\t');
        line.push_str(&escape(k));
        line.push('=');
        line.push_str(&escape(v));
    }
    line
}

/// Parses one TSKV line into pairs, in order. `None` unless the line starts
/// with a bare `tskv` field and every other field has an unescaped `=`.
pub fn parse_line(line: &str) -> Option<Vec<(String, String)>> {
    let mut fields = split_unescaped(line, '\t').into_iter();
    if fields.next()? != "tskv" {
        return None;
    }
    fields
        .map(|f| {
            let (k, v) = split_first_unescaped(&f, '=')?;
            Some((unescape(k), unescape(v)))
        })
        .collect()
}

fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.last_mut().unwrap().push(c);
            if let Some(n) = chars.next() {
                out.last_mut().unwrap().push(n);
            }
        } else if c == sep {
            out.push(String::new());
        } else {
            out.last_mut().unwrap().push(c);
        }
    }
    out
}

fn split_first_unescaped(s: &str, sep: char) -> Option<(&str, &str)> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            c if c == sep => return Some((&s[..i], &s[i + c.len_utf8()..])),
            _ => {}
        }
    }
    None
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let line = format_line(&[("a", "x=y\tz\\"), ("b", "")]);
        assert_eq!(line, "tskv\ta=x\\=y\\tz\\\\\tb=");
        let parsed = parse_line(&line).unwrap();
        assert_eq!(parsed[0], ("a".into(), "x=y\tz\\".into()));
        assert_eq!(parsed[1], ("b".into(), "".into()));
        assert!(parse_line("a=b").is_none());
        assert!(parse_line("tskv\tnoequals").is_none());
    }
}
