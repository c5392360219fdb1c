//! Random IAM-shaped tokens and request ids.

use rand::Rng;

const URL_SAFE: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn url_safe(rng: &mut impl Rng, n: usize) -> String {
    (0..n)
        .map(|_| URL_SAFE[rng.random_range(0..URL_SAFE.len())] as char)
        .collect()
}

/// A fresh token shaped like an IAM token:
/// `t1\.[A-Za-z0-9_-]+=*\.[A-Za-z0-9_-]{86}=*`.
pub fn new_token() -> String {
    let mut rng = rand::rng();
    let body_len = rng.random_range(120..200);
    let pad = "=".repeat(rng.random_range(0..3));
    format!(
        "t1.{}{pad}.{}",
        url_safe(&mut rng, body_len),
        url_safe(&mut rng, 86)
    )
}

/// A random UUID v4, as text.
pub fn request_id() -> String {
    let mut b: [u8; 16] = rand::rng().random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}
