//! The `tokenwatch` command line (INTERFACE.md).
use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

use crate::{client, config::Config};

#[derive(Parser, Debug)]
#[command(name = "tokenwatch", version, about = "Warns before a compute node loses its IAM token")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the agent (stops on SIGINT/SIGTERM).
    Run {
        /// Configuration file (default /etc/tokenwatch/config.toml, optional).
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// Ask a running agent; print `LEVEL: summary`; exit 0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN.
    Check {
        #[arg(long, default_value = client::DEFAULT_URL)]
        url: String,
        /// Print the whole status document instead of one line.
        #[arg(long)]
        json: bool,
    },
    /// A table of clients, refresh times, errors and sources; exit 3 if the agent is unreachable.
    Status {
        #[arg(long, default_value = client::DEFAULT_URL)]
        url: String,
    },
    /// The on-call runbook: token-agent's process, socket, logs, compute-node's journal, advice; exit 0 healthy, 1 problems.
    Diagnose {
        /// Configuration file (default /etc/tokenwatch/config.toml, optional).
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// How far back to read the logs and the journal.
        #[arg(long, default_value = crate::diagnose::DEFAULT_SINCE, value_parser = crate::diagnose::parse_since)]
        since: std::time::Duration,
    },
    /// Parse an access log offline: one normalized JSON object per line on stdout,
    /// bad lines (with numbers) on stderr; exit 0 all parsed, 1 some not.
    Parse {
        /// auto | tskv | json | logfmt | delimited (default: the config's log_format, else auto).
        #[arg(long)]
        format: Option<String>,
        /// Configuration file for `delimiter`/`columns` (delimited).
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// The log to read; `-` or nothing for stdin.
        file: Option<PathBuf>,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match cli.command {
        Command::Run { config } => run(config),
        Command::Check { url, json } => runtime(1).block_on(async {
            match client::fetch_status(&url).await {
                Ok(s) => {
                    let (code, line) = client::check_line(&s, std::time::SystemTime::now());
                    if json {
                        println!("{s}");
                    } else {
                        println!("{line}");
                    }
                    ExitCode::from(code)
                }
                Err(e) => {
                    println!("UNKNOWN: {e}");
                    ExitCode::from(3)
                }
            }
        }),
        Command::Parse { format, config, file } => parse(format, config, file),
        Command::Diagnose { config, since } => crate::diagnose::main(config.as_deref(), since),
        Command::Status { url } => runtime(1).block_on(async {
            match client::fetch_status(&url).await {
                Ok(s) => {
                    print!("{}", client::status_table(&s));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("tokenwatch: {e}");
                    ExitCode::from(3)
                }
            }
        }),
    }
}

fn parse(format: Option<String>, config: Option<PathBuf>, file: Option<PathBuf>) -> ExitCode {
    let fail = |msg: String| {
        eprintln!("tokenwatch: {msg}");
        ExitCode::from(2)
    };
    let cfg = match Config::load(config.as_deref()) {
        Ok(c) => c,
        Err(e) => return fail(e.to_string()),
    };
    let ta = cfg.token_agent;
    let format = match format.as_deref().map(|f| f.parse::<crate::config::LogFormat>()) {
        None => ta.log_format,
        Some(Ok(f)) => f,
        Some(Err(e)) => return fail(e),
    };
    let delimiter = ta.delimiter.as_deref().unwrap_or("|");
    let columns = ta.columns.unwrap_or_default();
    let (stdout, stderr) = (std::io::stdout().lock(), std::io::stderr().lock());
    let result = match file.as_deref().filter(|f| f.as_os_str() != "-") {
        None => crate::format::run_parse(format, delimiter, &columns, std::io::stdin().lock(), stdout, stderr),
        Some(path) => match std::fs::File::open(path) {
            Ok(f) => crate::format::run_parse(format, delimiter, &columns, std::io::BufReader::new(f), stdout, stderr),
            Err(e) => return fail(format!("cannot read {}: {e}", path.display())),
        },
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => fail(e.to_string()),
    }
}

fn run(config: Option<PathBuf>) -> ExitCode {
    let cfg = match Config::load(config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tokenwatch: {e}");
            return ExitCode::from(2);
        }
    };
    // Multi-thread: the OTLP exporters must never be shut down from a current-thread runtime.
    let rt = runtime(2);
    let result = rt.block_on(crate::agent::run(cfg));
    // A flush that timed out (a dead collector) or a tail poll may still be
    // running on the blocking pool: do not wait for them past the stop budget.
    rt.shutdown_timeout(std::time::Duration::from_millis(300));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("tokenwatch: {e}");
            ExitCode::from(2)
        }
    }
}

fn runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("building the tokio runtime")
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TOKENWATCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // colours only on a terminal: journald and log files get plain text
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).try_init();
}
