//! Generated token-agent protocol (`yandex.cloud.priv.iam.v1`).

#![allow(clippy::all, missing_docs)]

// `priv` is a Rust keyword, so prost names the file with `r#priv`.
include!(concat!(env!("OUT_DIR"), "/yandex.cloud.r#priv.iam.v1.rs"));

/// The gRPC method path of GetToken.
pub const GET_TOKEN_METHOD: &str = "/yandex.cloud.priv.iam.v1.TokenAgent/GetToken";
