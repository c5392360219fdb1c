//! GetToken over a Unix socket, and the fake compute-node refresh loop.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Result;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tonic::transport::{Channel, Endpoint};
use tower::service_fn;

use super::{code_name, fmt_time};
use crate::proto::token_agent_client::TokenAgentClient;
use crate::proto::GetTokenRequest;

/// A lazy channel to the Unix socket: it connects on first use and
/// reconnects after the connection is lost (e.g. token-agent down → up).
pub fn connect(socket: &Path, timeout: Duration) -> Result<Channel> {
    let socket = socket.to_path_buf();
    let channel = Endpoint::try_from("http://[::]:50051")?
        .connect_timeout(Duration::from_secs(5))
        .timeout(timeout)
        .connect_with_connector_lazy(service_fn(move |_: tonic::transport::Uri| {
            let socket = socket.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(socket).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }));
    Ok(channel)
}

/// A token as the client received it. Never log `token`.
#[derive(Clone)]
pub struct IssuedToken {
    pub token: String,
    pub expires_at: SystemTime,
    /// When the response arrived: the client's `issued_at`.
    pub received_at: SystemTime,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("token", &"<redacted>")
            .field("expires_at", &fmt_time(self.expires_at))
            .field("received_at", &fmt_time(self.received_at))
            .finish()
    }
}

/// One GetToken call on `channel`.
pub async fn get_token(channel: &Channel, tag: &str) -> Result<IssuedToken, tonic::Status> {
    let mut client = TokenAgentClient::new(channel.clone());
    let resp = client
        .get_token(GetTokenRequest { tag: tag.into() })
        .await?
        .into_inner();
    let received_at = SystemTime::now();
    let expires_at = resp
        .expires_at
        .and_then(|t| SystemTime::try_from(t).ok())
        .ok_or_else(|| tonic::Status::internal("response without a valid expires_at"))?;
    Ok(IssuedToken {
        token: resp.iam_token,
        expires_at,
        received_at,
    })
}

/// One line of `sim-compute-node` output: one GetToken call.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CallRecord {
    /// When the call finished (for OK: the client's `issued_at`).
    pub time: String,
    /// gRPC status name: `OK`, `UNAVAILABLE`, ...
    pub status: String,
    pub expires_at: Option<String>,
    pub refresh_at: Option<String>,
    pub pid: u32,
    /// The failure with its causes (e.g. `... No such file or directory`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl CallRecord {
    pub fn is_ok(&self) -> bool {
        self.status == "OK"
    }
}

/// Settings of the fake compute-node.
#[derive(Clone, Debug)]
pub struct NodeArgs {
    pub socket: PathBuf,
    pub tag: String,
    pub fraction: f64,
    pub retry: Duration,
    pub retry_max: Duration,
    pub timeout: Duration,
    /// Stop after this many calls.
    pub count: Option<u64>,
}

fn describe(status: &tonic::Status) -> String {
    let mut msg = status.message().to_string();
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        let text = e.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = e.source();
    }
    msg
}

fn backoff(args: &NodeArgs, failures: u32) -> Duration {
    args.retry
        .saturating_mul(1 << failures.min(16))
        .min(args.retry_max)
}

/// Calls GetToken now, then at each `refresh_at`; retries failures with
/// exponential backoff. Prints one JSON [`CallRecord`] per call.
pub async fn run_compute_node(args: NodeArgs) -> Result<()> {
    let channel = connect(&args.socket, args.timeout)?;
    let pid = std::process::id();
    let mut failures = 0u32;
    let mut calls = 0u64;
    loop {
        let result = get_token(&channel, &args.tag).await;
        let now = SystemTime::now();
        let (record, wait) = match result {
            Ok(t) => {
                failures = 0;
                let life = t
                    .expires_at
                    .duration_since(t.received_at)
                    .unwrap_or_default();
                let refresh_at = t.received_at + life.mul_f64(args.fraction);
                let record = CallRecord {
                    time: fmt_time(t.received_at),
                    status: "OK".into(),
                    expires_at: Some(fmt_time(t.expires_at)),
                    refresh_at: Some(fmt_time(refresh_at)),
                    pid,
                    error: None,
                };
                (record, refresh_at.duration_since(now).unwrap_or_default())
            }
            Err(s) => {
                let wait = backoff(&args, failures);
                failures += 1;
                let record = CallRecord {
                    time: fmt_time(now),
                    status: code_name(s.code()).into(),
                    expires_at: None,
                    refresh_at: None,
                    pid,
                    error: Some(describe(&s)),
                };
                (record, wait)
            }
        };
        println!("{}", serde_json::to_string(&record)?);
        calls += 1;
        if args.count.is_some_and(|n| calls >= n) {
            return Ok(());
        }
        tokio::time::sleep(wait.max(Duration::from_millis(50))).await;
    }
}
