//! A fake token-agent: GetToken over a Unix socket with switchable faults.
//! Control on stdin: `mode ok|unavailable|down|refused|slow`; stdout says
//! `ready socket=<path>` once, then `mode=<m>` (or `error=<why>`) per line.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use tokenwatch_tests::sim::agent::TokenPolicy;
use tokenwatch_tests::sim::server::{run, ServerArgs};
use tokenwatch_tests::sim::{parse_duration, Mode};

#[derive(Parser)]
#[command(about = "Fake token-agent (gRPC GetToken on a Unix socket)")]
struct Args {
    #[arg(long, default_value = "/var/run/yc/token-agent/socket")]
    socket: PathBuf,
    /// TSKV access log (appended).
    #[arg(long)]
    access_log: PathBuf,
    /// Application log (appended).
    #[arg(long)]
    app_log: PathBuf,
    /// Token lifetime: `expires_at = now + lifetime`.
    #[arg(long, default_value = "10h", value_parser = parse_duration)]
    lifetime: Duration,
    /// ok | unavailable | down | refused | slow
    #[arg(long, default_value = "ok")]
    mode: Mode,
    /// Response delay in mode `slow`.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    slow_delay: Duration,
    /// Return the same token for this long after issuing it (0: new per call).
    #[arg(long, default_value = "0", value_parser = parse_duration)]
    reuse_for: Duration,
    /// Exit when stdin reaches EOF.
    #[arg(long)]
    exit_on_stdin_eof: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    run(ServerArgs {
        socket: a.socket,
        access_log: a.access_log,
        app_log: a.app_log,
        policy: TokenPolicy {
            lifetime: a.lifetime,
            slow_delay: a.slow_delay,
            reuse_for: a.reuse_for,
        },
        mode: a.mode,
        exit_on_stdin_eof: a.exit_on_stdin_eof,
    })
    .await
}
