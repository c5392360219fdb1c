//! Why the eBPF source cannot run, as one line an operator can act on:
//! aya's error chains flattened, the verifier's complaint picked out of its
//! log, and for EPERM the capabilities this process lacks.
use std::{io, path::PathBuf};

use aya::programs::ProgramError;
use tracing::debug;

/// Why the eBPF source could not start. Each message is one line.
#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    #[error("eBPF object not built into this binary (build with `cargo xtask build`)")]
    NotBuilt,
    #[error("cannot watch socket path {path:?}: {reason}")]
    SocketPath { path: PathBuf, reason: &'static str },
    #[error("tracefs is not mounted at /sys/kernel/tracing and mounting it failed: {0}")]
    Tracefs(io::Error),
    /// EPERM from the kernel; `hint` names the missing capabilities.
    #[error("{stage}: permission denied (EPERM); {hint}")]
    PermissionDenied { stage: String, hint: String },
    #[error("{stage}: rejected by the verifier: {reason} (full log at debug level)")]
    Verifier { stage: String, reason: String },
    #[error("{stage}: {reason}")]
    Kernel { stage: String, reason: String },
    #[error("eBPF object is missing {0}")]
    Missing(String),
    #[error("watching the ring buffer: {0}")]
    Io(#[source] io::Error),
}

impl EbpfError {
    /// Errors that retrying cannot fix (the binary or the config must change).
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::NotBuilt | Self::SocketPath { .. } | Self::Missing(_))
    }
}

/// Program load errors carry the verifier log: keep it out of the one-line
/// message (logged at debug), but name the verifier's complaint.
pub(super) fn program_error(stage: &str, e: ProgramError) -> EbpfError {
    match e {
        ProgramError::LoadError { io_error, verifier_log } if io_error.raw_os_error() != Some(libc::EPERM) => {
            let log = verifier_log.to_string();
            debug!(stage, verifier_log = %log, "eBPF verifier log");
            EbpfError::Verifier { stage: stage.to_string(), reason: verifier_complaint(&log, &io_error) }
        }
        other => kernel_error(stage, &other),
    }
}

/// The verifier's own complaint: the last line that is not a statistic.
pub(super) fn verifier_complaint(log: &str, io_error: &io::Error) -> String {
    log.lines()
        .map(str::trim)
        .rfind(|l| {
            !l.is_empty()
                && !l.starts_with("processed ")
                && !l.starts_with("verification time")
                && !l.starts_with("stack depth")
                && !l.starts_with("mark_precise")
        })
        .map(str::to_string)
        .unwrap_or_else(|| io_error.to_string())
}

/// One line for an aya error: the stage, the error chain joined by ": ", and
/// for EPERM which capabilities are missing.
pub(super) fn kernel_error(stage: &str, e: &(dyn std::error::Error + 'static)) -> EbpfError {
    let mut parts: Vec<String> = Vec::new();
    let mut errno = None;
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            errno = errno.or(io.raw_os_error());
        }
        let line = err.to_string();
        let line = line.lines().next().unwrap_or_default().to_string();
        if !parts.iter().any(|p| p.contains(&line)) {
            parts.push(line);
        }
        cur = err.source();
    }
    if errno == Some(libc::EPERM) {
        return EbpfError::PermissionDenied { stage: stage.to_string(), hint: capability_hint(effective_caps()) };
    }
    EbpfError::Kernel { stage: stage.to_string(), reason: parts.join(": ") }
}

pub(super) const CAP_SYS_ADMIN: u32 = 21;
pub(super) const CAP_PERFMON: u32 = 38;
pub(super) const CAP_BPF: u32 = 39;

/// The effective capability set from /proc/self/status, if readable.
fn effective_caps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?.trim();
    u64::from_str_radix(hex, 16).ok()
}

/// Which capabilities loading needs and this process lacks.
pub(super) fn capability_hint(cap_eff: Option<u64>) -> String {
    let Some(caps) = cap_eff else {
        return "needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN)".to_string();
    };
    let has = |c: u32| caps & (1u64 << c) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        return "capabilities are present, so the kernel refused by policy (lockdown, a BPF LSM, seccomp?)".to_string();
    }
    let missing: Vec<&str> = [(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")]
        .into_iter()
        .filter(|&(c, _)| !has(c))
        .map(|(_, n)| n)
        .collect();
    format!("missing {} (or CAP_SYS_ADMIN)", missing.join(" and "))
}
