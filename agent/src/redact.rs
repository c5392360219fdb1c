//! Token redaction for every string that leaves the agent (log fields, error
//! messages). Pattern-based, so it is a second line of defence: the wire
//! decoder must drop the token (response field 1) by structure.
use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;

/// What a token is replaced with.
pub const REDACTED: &str = "<redacted>";

/// IAM tokens (`t1.<payload>.<86-char signature>`), and — since the prefix
/// may change — any `<letter><digit>.<8+ chars>.<40+ chars>` base64url shape.
/// `=` padding may be escaped as `\=` (a TSKV line quoted verbatim) or
/// percent-encoded as `%3D` (a token in a logged URL's query).
static TOKEN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"t1\.[A-Za-z0-9_-]+(?:\\?=|%3[dD])*\.[A-Za-z0-9_-]{86}(?:\\?=|%3[dD])*",
        r"|[A-Za-z][0-9]\.[A-Za-z0-9_-]{8,}(?:\\?=|%3[dD])*\.[A-Za-z0-9_-]{40,}(?:\\?=|%3[dD])*",
    ))
    .expect("token pattern is valid")
});

/// The shortest string either pattern matches (`a1.` + 8 + `.` + 40).
const MIN_TOKEN_LEN: usize = 52;

/// `s` with every token-looking substring replaced by `<redacted>`;
/// borrowed (no allocation) when there is none.
pub fn redact(s: &str) -> Cow<'_, str> {
    if s.len() < MIN_TOKEN_LEN {
        return Cow::Borrowed(s);
    }
    TOKEN.replace_all(s, REDACTED)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real-looking IAM token: `t1.` + long base64url payload + `.` + 86-char signature.
    fn token() -> String {
        let payload = "9euelZqKj5KLi8-Yx5WWj8qNyJSOyO3rnpWakZ6YlJyTx5OVnsmQlJrNlZLt8_dGAFsL-e8hfCkc_d3z9_d3z9_d3z9_d3z9_d3z9_d3z9_d3z9_d3z9_d3z9_d3z9";
        let sig = "S0yW2lQeDoYkjDJXK7bhP_Fk6QyzvCJvoBGs3LpiGugtSNSu3ueMx9-JbnKgNchbxY0lz5sGi5C2rQ1Pf7dcCg";
        assert_eq!(sig.len(), 86);
        format!("t1.{payload}.{sig}")
    }

    #[test]
    fn redacts_iam_tokens_anywhere() {
        let t = token();
        for s in [
            t.clone(),
            format!("Bearer {t}"),
            format!("iam_token={t}\tx=1"),
            format!("{{\"token\":\"{t}\"}}"),
            format!("rpc error: token {t}, retry"),
            format!("{t}{t}"),
        ] {
            let r = redact(&s);
            assert!(!r.contains(&t[..60]) && !r.contains(&t[t.len() - 40..]), "{r}");
            assert!(r.contains(REDACTED), "{r}");
        }
        assert_eq!(redact(&format!("a {t} b")), "a <redacted> b");
    }

    #[test]
    fn redacts_padded_and_other_prefixes() {
        let sig86 = "A".repeat(86);
        assert_eq!(redact(&format!("x t1.abc==.{sig86}== y")), "x <redacted> y");
        assert_eq!(redact(&format!("tskv\tk=t1.abc\\=\\=.{sig86}\\=\tz=1")), "tskv\tk=<redacted>\tz=1");
        let future = format!("t2.{}.{}", "Zm9vYmFyYmF6cXV4", "b".repeat(43));
        assert_eq!(redact(&format!("k={future}")), "k=<redacted>");
        let other = format!("v9.{}=.{}", "x".repeat(120), "-_".repeat(30));
        assert_eq!(redact(&other), REDACTED);
        // in a logged URL: padding percent-encoded
        let url = format!("GET /v1/x?iam_token=t1.abc%3D%3D.{sig86}%3d&y=1 failed");
        assert_eq!(redact(&url), "GET /v1/x?iam_token=<redacted>&y=1 failed");
        assert_eq!(redact(&format!("T7.{}.{}", "Q".repeat(12), "r".repeat(40))), REDACTED);
    }

    #[test]
    fn leaves_ordinary_text_alone() {
        for s in [
            "",
            "GetToken",
            "/yandex.cloud.priv.iam.v1.TokenAgent/GetToken",
            "rpc error: code = Unavailable desc = connection refused to 10.0.0.1:443",
            "v1.2.3 released; see https://example.com/a1.b2.c3",
            "t1.short.sig",
            "request 3fa85f64-5717-4562-b3fc-2c963f66afa6 failed after 1.5s",
        ] {
            assert!(matches!(redact(s), Cow::Borrowed(b) if b == s), "{s}");
        }
    }
}
