//! The rotel OpenTelemetry collector (PyPI `rotel`, installed into the test
//! venv by `cargo xtask setup`), run on loopback as a real collector between
//! the agent and a test [`Receiver`](crate::otlp::Receiver): agent → rotel
//! (OTLP gRPC) → receiver (OTLP gRPC).
use std::{
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::agent_proc::free_port;

/// The test venv: `TOKENWATCH_VENV` (set by `cargo xtask test`), else target/venv.
pub fn venv() -> PathBuf {
    std::env::var_os("TOKENWATCH_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/venv"))
}

fn rotel_agent() -> Result<PathBuf> {
    let py = venv().join("bin/python");
    let out = Command::new(&py)
        .args(["-c", "import rotel, os; print(os.path.dirname(rotel.__file__))"])
        .output()
        .with_context(|| format!("running {} (is `cargo xtask setup` done?)", py.display()))?;
    if !out.status.success() {
        bail!("rotel is not installed in {}: {}", venv().display(), String::from_utf8_lossy(&out.stderr));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("rotel-agent"))
}

pub struct Rotel {
    child: Child,
    /// Where the agent should send OTLP/gRPC.
    pub grpc_endpoint: String,
    grpc_port: u16,
    exports_to: String,
}

impl Rotel {
    /// Starts rotel receiving OTLP/gRPC on a free loopback port and exporting
    /// everything over OTLP/gRPC to `export_endpoint` (e.g. a test Receiver).
    pub fn start(export_endpoint: &str) -> Result<Self> {
        let port = free_port();
        let child = Self::spawn(port, export_endpoint)?;
        let mut r = Self { child, grpc_endpoint: format!("http://127.0.0.1:{port}"), grpc_port: port, exports_to: export_endpoint.into() };
        r.wait_listening()?;
        Ok(r)
    }

    fn spawn(port: u16, export_endpoint: &str) -> Result<Child> {
        Command::new(rotel_agent()?)
            .arg("start")
            .args(["--otlp-grpc-endpoint", &format!("127.0.0.1:{port}")])
            .args(["--otlp-http-endpoint", &format!("127.0.0.1:{}", free_port())])
            .args(["--exporter", "otlp", "--otlp-exporter-protocol", "grpc"])
            .args(["--otlp-exporter-endpoint", export_endpoint])
            .args(["--batch-timeout", "200ms"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting rotel-agent")
    }

    fn wait_listening(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.grpc_port)).is_err() {
            if let Some(s) = self.child.try_wait()? {
                bail!("rotel exited early: {s}");
            }
            if Instant::now() > deadline {
                bail!("rotel did not listen on 127.0.0.1:{} within 20 s", self.grpc_port);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Stops the collector (the backend goes away).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.child = Self::spawn(self.grpc_port, &self.exports_to)?;
        self.wait_listening()
    }
}

impl Drop for Rotel {
    fn drop(&mut self) {
        self.stop();
    }
}
