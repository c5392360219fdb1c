//! The simulator: a fake token-agent (`sim-token-agent`) and a fake
//! compute-node client (`sim-compute-node`), plus handles to drive them.
//!
//! Processes are driven with plain threads and `std::process`, so the
//! handles work from sync code (xtask) and from tests alike.

pub mod agent;
pub mod client;
pub mod logfile;
pub mod process;
pub mod server;
pub mod token;
pub mod tskv;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};

pub use client::{connect, get_token, CallRecord, IssuedToken};
pub use process::{SimComputeNode, SimComputeNodeOpts, SimTokenAgent, SimTokenAgentOpts};

/// How the fake token-agent behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Serve tokens.
    Ok,
    /// Serve, but answer every call with `UNAVAILABLE` (IAM failing).
    Unavailable,
    /// Not running: no listener and no socket file (clients get ENOENT).
    Down,
    /// Not running, stale socket file left behind (clients get ECONNREFUSED).
    Refused,
    /// Serve tokens after a delay (`--slow-delay`).
    Slow,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Ok => "ok",
            Mode::Unavailable => "unavailable",
            Mode::Down => "down",
            Mode::Refused => "refused",
            Mode::Slow => "slow",
        }
    }

    /// Whether a listener accepts connections in this mode.
    pub fn listening(self) -> bool {
        !matches!(self, Mode::Down | Mode::Refused)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "ok" => Mode::Ok,
            "unavailable" => Mode::Unavailable,
            "down" => Mode::Down,
            "refused" => Mode::Refused,
            "slow" => Mode::Slow,
            _ => bail!("unknown mode {s:?} (ok|unavailable|down|refused|slow)"),
        })
    }
}

/// `2026-11-25T14:00:00.123Z`: RFC 3339, UTC, milliseconds.
pub fn fmt_time(t: SystemTime) -> String {
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from(t)
        .format(&fmt)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".into())
}

/// Parses a time written by [`fmt_time`] (or any RFC 3339 time).
pub fn parse_time(s: &str) -> Result<SystemTime> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .with_context(|| format!("bad RFC 3339 time {s:?}"))?;
    Ok(t.into())
}

/// `100s`, `1m 30s`, `250ms`, or a bare number of seconds (`1.5`).
pub fn parse_duration(s: &str) -> Result<Duration> {
    if let Ok(secs) = s.trim().parse::<f64>() {
        return Duration::try_from_secs_f64(secs).with_context(|| format!("bad duration {s:?}"));
    }
    humantime::parse_duration(s).with_context(|| format!("bad duration {s:?}"))
}

/// The canonical gRPC status name (`OK`, `UNAVAILABLE`, ...).
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Path of a binary built in the same target dir as the running executable:
/// `target/<profile>/NAME`, found from `target/<profile>/NAME` (a binary,
/// e.g. xtask) or `target/<profile>/deps/test-HASH` (a test).
/// `TOKENWATCH_SIM_DIR`, when set, names the directory instead.
pub fn bin_path(name: &str) -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("TOKENWATCH_SIM_DIR") {
        let path = PathBuf::from(dir).join(name);
        if path.is_file() {
            return Ok(path);
        }
        bail!(
            "binary {name} not found at {} (TOKENWATCH_SIM_DIR)",
            path.display()
        );
    }
    let exe = std::env::current_exe().context("current_exe")?;
    let mut tried = Vec::new();
    let mut dir = exe.parent();
    for _ in 0..2 {
        let Some(d) = dir else { break };
        let candidate = d.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
        tried.push(candidate);
        dir = d.parent();
    }
    bail!(
        "binary {name} not found (tried {tried:?}); build it with `cargo build -p tokenwatch-tests`"
    )
}
