//! A fake compute-node: one long-lived channel to token-agent, GetToken at
//! start and at each `refresh_at`, one JSON line per call on stdout.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use tokenwatch_tests::sim::client::{run_compute_node, NodeArgs};
use tokenwatch_tests::sim::parse_duration;

#[derive(Parser)]
#[command(about = "Fake compute-node (token-agent client)")]
struct Args {
    #[arg(long, default_value = "/var/run/yc/token-agent/socket")]
    socket: PathBuf,
    #[arg(long, default_value = "compute-node")]
    tag: String,
    /// refresh_at = issued_at + fraction × (expires_at − issued_at)
    #[arg(long, default_value_t = 0.1)]
    fraction: f64,
    /// First retry delay after a failure (doubles per failure).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    retry: Duration,
    /// Longest retry delay.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    retry_max: Duration,
    /// Per-call deadline.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
    /// Exit after this many calls.
    #[arg(long)]
    count: Option<u64>,
    /// Exit when stdin reaches EOF.
    #[arg(long)]
    exit_on_stdin_eof: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    if a.exit_on_stdin_eof {
        std::thread::spawn(|| {
            let _ = std::io::copy(
                &mut std::io::stdin().lock().take(u64::MAX),
                &mut std::io::sink(),
            );
            std::process::exit(0);
        });
    }
    run_compute_node(NodeArgs {
        socket: a.socket,
        tag: a.tag,
        fraction: a.fraction,
        retry: a.retry,
        retry_max: a.retry_max,
        timeout: a.timeout,
        count: a.count,
    })
    .await
}
