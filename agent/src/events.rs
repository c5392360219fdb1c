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
    /// The executable's file name, else `comm`.
    pub fn name(&self) -> &str {
        self.exe
            .as_deref()
            .and_then(|e| e.rsplit('/').next())
            .filter(|n| !n.is_empty())
            .unwrap_or(&self.comm)
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

/// Everything the state machine learns.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Connect(ConnectObserved),
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
