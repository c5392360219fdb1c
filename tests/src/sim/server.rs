//! The fake token-agent process: listener lifecycle per mode, and the stdin
//! control protocol (`mode <m>` → `mode=<m>` on stdout).

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::UnixListenerStream;

use super::agent::{Agent, TokenPolicy};
use super::logfile::{AppLog, LogFile};
use super::Mode;
use crate::proto::token_agent_server::TokenAgentServer;

/// Everything `sim-token-agent` is started with.
#[derive(Clone, Debug)]
pub struct ServerArgs {
    pub socket: PathBuf,
    pub access_log: PathBuf,
    pub app_log: PathBuf,
    pub policy: TokenPolicy,
    pub mode: Mode,
    /// Exit when stdin closes (the controlling process went away).
    pub exit_on_stdin_eof: bool,
}

/// A running listener.
struct Serving {
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Serving {
    fn start(socket: &Path, agent: Arc<Agent>) -> Result<Self> {
        remove_socket(socket)?;
        let listener = tokio::net::UnixListener::bind(socket)
            .with_context(|| format!("bind {}", socket.display()))?;
        let (shutdown, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(TokenAgentServer::from_arc(agent))
                .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async {
                    let _ = rx.await;
                }),
        );
        Ok(Serving { shutdown, task })
    }

    /// Closes the listener, then lets open connections drain (GOAWAY) for a
    /// short while before dropping them.
    async fn stop(mut self) {
        let _ = self.shutdown.send(());
        if tokio::time::timeout(Duration::from_secs(3), &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }
}

fn remove_socket(socket: &Path) -> Result<()> {
    if let Some(dir) = socket.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    match std::fs::remove_file(socket) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("remove {}", socket.display()))
        }
        _ => Ok(()),
    }
}

/// Leaves a socket file nobody listens on (connect → ECONNREFUSED).
fn stale_socket(socket: &Path) -> Result<()> {
    remove_socket(socket)?;
    drop(std::os::unix::net::UnixListener::bind(socket)?);
    Ok(())
}

struct Sim {
    args: ServerArgs,
    agent: Arc<Agent>,
    app: Arc<AppLog>,
    serving: Option<Serving>,
}

impl Sim {
    async fn switch(&mut self, mode: Mode) -> Result<()> {
        self.agent.set_mode(mode);
        if !mode.listening() {
            if let Some(s) = self.serving.take() {
                // Unlink first: new connects fail at once while old ones drain.
                remove_socket(&self.args.socket)?;
                s.stop().await;
                self.app.info("token-agent stopped serving");
            }
            match mode {
                Mode::Refused => stale_socket(&self.args.socket)?,
                _ => remove_socket(&self.args.socket)?,
            }
        } else if self.serving.is_none() {
            self.serving = Some(Serving::start(&self.args.socket, self.agent.clone())?);
            self.app.info(&format!(
                "token-agent listening on {}",
                self.args.socket.display()
            ));
        }
        self.app.info(&format!("mode switched to {mode}"));
        Ok(())
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|_| out.flush());
}

/// Stdin lines on a plain thread (a tokio stdin read can't be cancelled and
/// would hang runtime shutdown). `None` marks EOF.
fn stdin_lines() -> mpsc::UnboundedReceiver<Option<String>> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(Some(line)).is_err() {
                return;
            }
        }
        let _ = tx.send(None);
    });
    rx
}

/// Runs the fake token-agent until SIGINT/SIGTERM (or stdin EOF if asked).
pub async fn run(args: ServerArgs) -> Result<()> {
    let app = Arc::new(AppLog::open(&args.app_log)?);
    let access = LogFile::open(&args.access_log)?;
    let agent = Arc::new(Agent::new(
        args.policy.clone(),
        args.mode,
        access,
        app.clone(),
    ));
    app.info("token-agent started");
    let mut sim = Sim {
        args: args.clone(),
        agent,
        app: app.clone(),
        serving: None,
    };
    if let Err(e) = sim.switch(args.mode).await {
        app.error(&format!("start failed: {e:#}"));
        return Err(e);
    }
    say(&format!("ready socket={}", args.socket.display()));

    let mut lines = stdin_lines();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut stdin_open = true;
    loop {
        let line = tokio::select! {
            l = lines.recv(), if stdin_open => l.flatten(),
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        };
        let Some(line) = line else {
            stdin_open = false;
            if args.exit_on_stdin_eof {
                break;
            }
            continue;
        };
        match line
            .trim()
            .strip_prefix("mode ")
            .map(|m| m.trim().parse::<Mode>())
        {
            Some(Ok(mode)) => match sim.switch(mode).await {
                Ok(()) => say(&format!("mode={mode}")),
                Err(e) => {
                    app.error(&format!("switch to {mode} failed: {e:#}"));
                    say(&format!("error={e:#}"));
                }
            },
            Some(Err(e)) => say(&format!("error={e:#}")),
            None if line.trim().is_empty() => {}
            None => say(&format!("error=unknown command {:?}", line.trim())),
        }
    }
    if sim.agent.mode().listening() {
        sim.switch(Mode::Down).await?;
    }
    app.info("token-agent exited");
    Ok(())
}
