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

/// When the process now running as `pid` started (`/proc/PID/stat` field
/// 22, in clock ticks since boot, plus the boot time from `/proc/stat`,
/// read once); `None` when there is none or it cannot be read.
pub fn started_at(pid: u32) -> Option<std::time::SystemTime> {
    static BOOT: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    let btime = (*BOOT.get_or_init(|| boot_time_in(Path::new("/proc"))))?;
    since_boot(start_ticks_in(Path::new("/proc"), pid)?, btime)
}

pub fn started_at_in(root: &Path, pid: u32) -> Option<std::time::SystemTime> {
    since_boot(start_ticks_in(root, pid)?, boot_time_in(root)?)
}

fn start_ticks_in(root: &Path, pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(root.join(pid.to_string()).join("stat")).ok()?;
    // the comm in parentheses may hold spaces and parentheses: fields follow the last ')'
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

fn boot_time_in(root: &Path) -> Option<u64> {
    let stat = std::fs::read_to_string(root.join("stat")).ok()?;
    stat.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse().ok()
}

fn since_boot(ticks: u64, btime: u64) -> Option<std::time::SystemTime> {
    // SAFETY: sysconf has no preconditions.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).ok().filter(|&h| h > 0)?;
    let since = std::time::Duration::from_millis(ticks.checked_mul(1000)? / hz);
    Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(btime) + since)
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
    fn start_time_of_this_process_and_of_none() {
        let me = started_at(std::process::id()).expect("our own start time");
        let now = std::time::SystemTime::now();
        // btime has a resolution of a second
        assert!(me <= now + std::time::Duration::from_secs(1), "{me:?} after {now:?}");
        assert!(now.duration_since(me).is_ok_and(|age| age < std::time::Duration::from_secs(24 * 3600)), "{me:?}");
        assert_eq!(started_at(u32::MAX), None);
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("7")).expect("mkdir");
        std::fs::write(dir.path().join("7/stat"), "7 (a) b (c)) S 1 7 7 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 250 0 0").expect("stat");
        std::fs::write(dir.path().join("stat"), "cpu 1 2 3\nbtime 1795600000\n").expect("stat");
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        let want = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_795_600_000) + std::time::Duration::from_millis(250_000 / hz);
        assert_eq!(started_at_in(dir.path(), 7), Some(want));
    }

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
