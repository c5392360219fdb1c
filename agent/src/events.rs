//! The one event type through which sources tell the state what they saw.
//!
//! Sources never touch state; they send [`Event`]s to the state owner.
use std::time::{Duration, SystemTime};

/// Who made a call: a process, labelled with its systemd unit and executable.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Process {
    pub pid: u32,
    /// The task's `comm` (kernel-truncated to 15 bytes).
    pub comm: String,
    /// Path of the executable (`/proc/PID/exe`), when the process was alive to ask.
    pub exe: Option<String>,
    /// The systemd unit from `/proc/PID/cgroup`, e.g. `yc-compute-node.service`.
    pub unit: Option<String>,
}

impl Process {
    /// The executable's file name, else `comm`, else `unknown` (a log line without a pid).
    pub fn name(&self) -> &str {
        self.exe
            .as_deref()
            .and_then(|e| e.rsplit('/').next())
            .filter(|n| !n.is_empty())
            .or(Some(self.comm.as_str()).filter(|c| !c.is_empty()))
            .unwrap_or("unknown")
    }

    /// The `client` label: the systemd unit when there is one, else the process name.
    pub fn client(&self) -> &str {
        self.unit.as_deref().unwrap_or_else(|| self.name())
    }
}

/// A `connect()` to token-agent's socket, seen by the eBPF probe.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectObserved {
    /// Wall-clock time the syscall returned.
    pub at: SystemTime,
    pub process: Process,
    pub tid: u32,
    pub uid: u32,
    pub gid: u32,
    pub fd: i32,
    /// `None` on success, else the errno (`ENOENT` = 2, `ECONNREFUSED` = 111, …).
    pub errno: Option<i32>,
    pub latency: Duration,
}

/// A gRPC status code. Unknown codes stay representable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GrpcStatus(pub u32);

impl GrpcStatus {
    pub const OK: Self = Self(0);
    pub const CANCELLED: Self = Self(1);
    pub const UNKNOWN: Self = Self(2);
    pub const DEADLINE_EXCEEDED: Self = Self(4);
    pub const PERMISSION_DENIED: Self = Self(7);
    pub const RESOURCE_EXHAUSTED: Self = Self(8);
    pub const INTERNAL: Self = Self(13);
    pub const UNAVAILABLE: Self = Self(14);
    pub const UNAUTHENTICATED: Self = Self(16);

    const NAMES: [&'static str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];

    /// `UNAVAILABLE`, or `CODE_<n>` for a code outside the standard set.
    pub fn name(self) -> String {
        match Self::NAMES.get(self.0 as usize) {
            Some(n) => (*n).to_string(),
            None => format!("CODE_{}", self.0),
        }
    }

    /// Parses a code name in any case and with `_`/`-`/camel-case spelling
    /// (`UNAVAILABLE`, `Unavailable`, `DeadlineExceeded`) or a number of a
    /// standard code (`0`–`16`). Other numbers are not a gRPC status (an
    /// HTTP `200` in a `status` field): `None`, so that a log record's next
    /// status alias may fill the field. Only logs are parsed here: the eBPF
    /// path builds `GrpcStatus(n)` from the wire's `grpc-status` directly,
    /// where an unknown code stays representable.
    /// Allocation-free: it runs once per access-log line.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        // The usual two, each a single integer compare.
        match s {
            "OK" => return Some(Self::OK),
            "UNAVAILABLE" => return Some(Self::UNAVAILABLE),
            _ => {}
        }
        if let Ok(n) = s.parse::<u32>() {
            return Some(Self(n)).filter(|s| s.is_standard());
        }
        let letters = |x: &'static str| x.bytes().filter(|b| *b != b'_');
        let given = || s.bytes().filter(u8::is_ascii_alphanumeric).map(|b| b.to_ascii_uppercase());
        Self::NAMES.iter().position(|n| letters(n).eq(given())).map(|i| Self(i as u32))
    }

    /// One of gRPC's codes 0–16 (others are any number a peer sent).
    pub fn is_standard(self) -> bool {
        (self.0 as usize) < Self::NAMES.len()
    }

    pub fn is_ok(self) -> bool {
        self == Self::OK
    }
}

/// Which source saw a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CallSource {
    Ebpf,
    AccessLog,
}

impl CallSource {
    pub fn as_str(self) -> &'static str {
        match self {
            CallSource::Ebpf => "ebpf",
            CallSource::AccessLog => "access_log",
        }
    }
}

/// One GetToken (or other) call to token-agent, seen by the client-side
/// probe or in token-agent's access log. Never holds the token.
#[derive(Debug, Clone, PartialEq)]
pub struct CallObserved {
    pub source: CallSource,
    /// When the call ended (response or trailers received / logged).
    pub at: SystemTime,
    pub duration: Option<Duration>,
    /// The caller; `pid` 0 when the source did not say.
    pub process: Process,
    pub uid: Option<u32>,
    /// Full gRPC method (`/pkg.Service/Method`), when known.
    pub method: Option<String>,
    /// `None` when the status could not be decoded (an error of unknown code
    /// is `Some(GrpcStatus::UNKNOWN)` only when the wire or log said so).
    pub status: Option<GrpcStatus>,
    /// `expires_at` of the token the call returned, when decoded.
    pub expires_at: Option<SystemTime>,
    pub request_id: Option<String>,
    /// An error message, already redacted.
    pub error: Option<String>,
}

/// token-agent's application log reported an error.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentError {
    pub at: SystemTime,
    /// The message, already redacted.
    pub message: String,
}

/// Everything the state machine learns.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Connect(ConnectObserved),
    Call(CallObserved),
    AgentError(AgentError),
    /// A process exited (or exec'd into something else): its cached token is gone.
    ProcessExit { pid: u32, at: SystemTime },
    /// A log source applied everything up to this position: persisted with the
    /// state, so a restart resumes exactly after the last applied line.
    LogPosition(LogPosition),
}

/// Which of token-agent's logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogKind {
    AccessLog,
    AppLog,
}

impl LogKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LogKind::AccessLog => "access_log",
            LogKind::AppLog => "app_log",
        }
    }
}

/// Identity of a log file: device + inode and a fingerprint of its first bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
    /// Hash of the first bytes (up to a fixed length), and how many bytes it covers.
    pub fingerprint: u64,
    pub fingerprint_len: u32,
}

/// "Everything of `file` before `offset` has been applied."
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogPosition {
    pub kind: LogKind,
    pub file: FileId,
    pub offset: u64,
}

/// The symbolic name of an errno (`ENOENT`), or `E<n>` for an unknown one.
pub fn errno_name(errno: i32) -> String {
    let name = match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EINTR => "EINTR",
        libc::EACCES => "EACCES",
        libc::EAGAIN => "EAGAIN",
        libc::EBADF => "EBADF",
        libc::EFAULT => "EFAULT",
        libc::EINVAL => "EINVAL",
        libc::ENOTDIR => "ENOTDIR",
        libc::EMFILE => "EMFILE",
        libc::ENFILE => "ENFILE",
        libc::ENOTSOCK => "ENOTSOCK",
        libc::EPROTOTYPE => "EPROTOTYPE",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::EISCONN => "EISCONN",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ECONNRESET => "ECONNRESET",
        libc::EALREADY => "EALREADY",
        libc::EINPROGRESS => "EINPROGRESS",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ELOOP => "ELOOP",
        _ => return format!("E{errno}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_names() {
        assert_eq!(errno_name(2), "ENOENT");
        assert_eq!(errno_name(111), "ECONNREFUSED");
        assert_eq!(errno_name(11), "EAGAIN");
        assert_eq!(errno_name(4242), "E4242");
    }

    #[test]
    fn grpc_status_names_and_parsing() {
        assert_eq!(GrpcStatus::UNAVAILABLE.name(), "UNAVAILABLE");
        assert_eq!(GrpcStatus(99).name(), "CODE_99");
        for s in ["UNAVAILABLE", "Unavailable", "unavailable", "14"] {
            assert_eq!(GrpcStatus::parse(s), Some(GrpcStatus::UNAVAILABLE), "{s}");
        }
        assert_eq!(GrpcStatus::parse("DeadlineExceeded"), Some(GrpcStatus::DEADLINE_EXCEEDED));
        assert_eq!(GrpcStatus::parse("deadline_exceeded"), Some(GrpcStatus::DEADLINE_EXCEEDED));
        assert_eq!(GrpcStatus::parse("ok"), Some(GrpcStatus::OK));
        assert_eq!(GrpcStatus::parse("bogus"), None);
        // numbers are gRPC codes only within 0..=16: an HTTP status is none
        assert_eq!(GrpcStatus::parse("16"), Some(GrpcStatus::UNAUTHENTICATED));
        for s in ["17", "200", "503", "4294967295", "CODE_99", "-1"] {
            assert_eq!(GrpcStatus::parse(s), None, "{s}");
        }
        for i in 0..17 {
            assert_eq!(GrpcStatus::parse(&GrpcStatus(i).name()), Some(GrpcStatus(i)));
        }
    }

    #[test]
    fn client_label_prefers_unit_then_exe_then_comm() {
        let mut p = Process { pid: 1, comm: "compute-nod".into(), ..Default::default() };
        assert_eq!(p.client(), "compute-nod");
        p.exe = Some("/usr/bin/compute-node".into());
        assert_eq!(p.client(), "compute-node");
        assert_eq!(p.name(), "compute-node");
        p.unit = Some("yc-compute-node.service".into());
        assert_eq!(p.client(), "yc-compute-node.service");
        assert_eq!(p.name(), "compute-node");
    }
}
