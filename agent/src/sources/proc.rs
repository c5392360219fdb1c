//! Process attribution from /proc: executable and systemd unit of a pid.
use std::path::Path;

use crate::events::Process;

/// Describes `pid`, reading `/proc` under `root` (normally `/proc`).
/// A process that has already exited keeps only its pid and `comm`.
pub fn describe(pid: u32, comm: &str) -> Process {
    describe_in(Path::new("/proc"), pid, comm)
}

pub fn describe_in(root: &Path, pid: u32, comm: &str) -> Process {
    let dir = root.join(pid.to_string());
    let exe = std::fs::read_link(dir.join("exe"))
        .ok()
        .map(|p| p.to_string_lossy().trim_end_matches(" (deleted)").to_string());
    let unit = std::fs::read_to_string(dir.join("cgroup")).ok().and_then(|c| unit_from_cgroup(&c));
    // a log record names only the pid: ask the kernel for the comm
    let comm = match comm {
        "" => std::fs::read_to_string(dir.join("comm")).map(|c| c.trim_end().to_string()).unwrap_or_default(),
        c => c.to_string(),
    };
    Process { pid, comm, exe, unit }
}

/// Whether `pid` still runs `exe` (when known). A process that exited, or
/// exec'd into another program, has lost the token it held in memory.
pub fn same_process(pid: u32, exe: Option<&str>) -> bool {
    same_process_in(Path::new("/proc"), pid, exe)
}

pub fn same_process_in(root: &Path, pid: u32, exe: Option<&str>) -> bool {
    let dir = root.join(pid.to_string());
    match std::fs::read_link(dir.join("exe")) {
        Ok(now) => exe.is_none_or(|e| now.to_string_lossy().trim_end_matches(" (deleted)") == e),
        // exe unreadable (permissions, kernel thread): alive if the folder is there
        Err(_) => dir.exists(),
    }
}

/// The systemd unit (`*.service`) a process belongs to, from the text of
/// `/proc/PID/cgroup` (cgroup v2 `0::/system.slice/x.service`, or the
/// `name=systemd` line of v1). User sessions and scopes are not units we label.
pub fn unit_from_cgroup(text: &str) -> Option<String> {
    let path = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .or_else(|| text.lines().find_map(|l| l.split_once(":name=systemd:").map(|(_, p)| p)))?;
    path.split('/')
        .rev()
        .find(|seg| seg.ends_with(".service") && !seg.starts_with("user@"))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_from_cgroup_v2_and_v1() {
        assert_eq!(
            unit_from_cgroup("0::/system.slice/yc-compute-node.service\n").as_deref(),
            Some("yc-compute-node.service")
        );
        assert_eq!(
            unit_from_cgroup("12:pids:/x\n1:name=systemd:/system.slice/yc-token-agent.service\n").as_deref(),
            Some("yc-token-agent.service")
        );
        // a nested cgroup below a service still belongs to it
        assert_eq!(
            unit_from_cgroup("0::/system.slice/yc-compute-node.service/worker\n").as_deref(),
            Some("yc-compute-node.service")
        );
        assert_eq!(unit_from_cgroup("0::/user.slice/user-0.slice/session-3.scope\n"), None);
        assert_eq!(unit_from_cgroup("0::/\n"), None);
        assert_eq!(unit_from_cgroup(""), None);
    }

    #[test]
    fn describes_this_process() {
        let me = std::process::id();
        let p = describe(me, "self");
        assert_eq!(p.pid, me);
        assert_eq!(p.comm, "self");
        let from_kernel = describe(me, "");
        assert!(!from_kernel.comm.is_empty());
        assert_eq!(p.exe.as_deref(), std::env::current_exe().ok().map(|e| e.to_string_lossy().to_string()).as_deref());
    }

    #[test]
    fn same_process_follows_exit_and_exec() {
        let me = std::process::id();
        let exe = std::env::current_exe().unwrap().to_string_lossy().to_string();
        assert!(same_process(me, Some(&exe)));
        assert!(same_process(me, None));
        assert!(!same_process(me, Some("/usr/bin/something-else")), "an exec into another program");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!same_process(pid, None), "an exited (reaped) process");
    }

    #[test]
    fn exited_process_keeps_pid_and_comm() {
        let p = describe_in(Path::new("/nonexistent"), 42, "gone");
        assert_eq!(p, Process { pid: 42, comm: "gone".into(), exe: None, unit: None });
    }
}
