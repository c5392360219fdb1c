//! The probes: everything `diagnose` asks the host. Each returns plain
//! findings, or says what it could not check and why.
use std::{
    io,
    net::SocketAddr,
    path::Path,
    process::Stdio,
    time::{Duration, SystemTime},
};

use serde_json::Value;

use super::findings::{AgentStatus, ClientState, JournalFindings, Probe, ProcInfo, SocketState, UnitState};
use crate::redact::redact;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// `__SO_ACCEPTCON` in `/proc/net/unix`'s Flags column: a listening socket.
const SO_ACCEPTCON: u64 = 0x0001_0000;
/// How many compute-node journal lines are shown.
const JOURNAL_LINES: usize = 20;

/// Connects to token-agent's socket (and closes at once: no request is sent).
pub async fn socket(path: &Path) -> SocketState {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::metadata(path) {
        Ok(m) if !m.file_type().is_socket() => return SocketState::NotASocket,
        _ => {}
    }
    match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::UnixStream::connect(path)).await {
        Err(_) => SocketState::NotAccepting(format!("no accept within {CONNECT_TIMEOUT:?}")),
        Ok(Ok(_stream)) => SocketState::Accepting,
        Ok(Err(e)) => classify_connect_error(&e),
    }
}

fn classify_connect_error(e: &io::Error) -> SocketState {
    match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENOTDIR) => SocketState::Missing,
        Some(libc::ECONNREFUSED) => SocketState::Refused,
        Some(libc::ENOTSOCK) => SocketState::NotASocket,
        Some(libc::EAGAIN) => SocketState::NotAccepting("listen backlog full (EAGAIN)".into()),
        Some(libc::EACCES) | Some(libc::EPERM) => {
            SocketState::NoPermission(format!("{e} — diagnose may not connect; run it as root"))
        }
        _ => SocketState::Error(e.to_string()),
    }
}

/// Inodes of listening stream sockets bound to one of `paths`, from the text of `/proc/net/unix`.
pub fn listening_inodes(net_unix: &str, paths: &[String]) -> Vec<u64> {
    net_unix
        .lines()
        .skip(1)
        .filter_map(|line| {
            // Num RefCount Protocol Flags Type St Inode [Path]
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (flags, ty, inode) = (cols.get(3)?, cols.get(4)?, cols.get(6)?);
            let path = cols.get(7..).map(|p| p.join(" "))?;
            let listening = u64::from_str_radix(flags, 16).ok()? & SO_ACCEPTCON != 0;
            let stream = u32::from_str_radix(ty, 16).ok()? == libc::SOCK_STREAM as u32;
            (listening && stream && paths.contains(&path)).then(|| inode.parse().ok()).flatten()
        })
        .collect()
}

/// The spellings of `socket` a server may have bound: as configured and with
/// its directory resolved (`/var/run` is a symlink to `/run`).
fn socket_spellings(socket: &Path) -> Vec<String> {
    let mut out = vec![socket.to_string_lossy().into_owned()];
    if let (Some(dir), Some(name)) = (socket.parent(), socket.file_name()) {
        if let Ok(real) = std::fs::canonicalize(dir) {
            let p = real.join(name).to_string_lossy().into_owned();
            if !out.contains(&p) {
                out.push(p);
            }
        }
    }
    out
}

/// The process that owns the socket listening at `socket`: `Done(None)` when nothing listens.
pub fn listener(socket: &Path) -> Probe<Option<ProcInfo>> {
    listener_in(Path::new("/proc"), socket)
}

pub fn listener_in(proc_root: &Path, socket: &Path) -> Probe<Option<ProcInfo>> {
    let net_unix = match std::fs::read_to_string(proc_root.join("net/unix")) {
        Ok(t) => t,
        Err(e) => return Probe::Skipped(format!("cannot read /proc/net/unix: {e}")),
    };
    let inodes = listening_inodes(&net_unix, &socket_spellings(socket));
    if inodes.is_empty() {
        return Probe::Done(None);
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    let mut denied = 0;
    for pid in pids(proc_root) {
        let fds = match std::fs::read_dir(proc_root.join(pid.to_string()).join("fd")) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                denied += 1;
                continue;
            }
            Err(_) => continue,
        };
        for fd in fds.flatten() {
            let Ok(link) = std::fs::read_link(fd.path()) else { continue };
            if wanted.iter().any(|w| link.as_os_str() == w.as_str()) {
                return Probe::Done(Some(describe(proc_root, pid)));
            }
        }
    }
    if denied > 0 {
        Probe::Skipped(format!(
            "a socket listens at {} (inode {}), but /proc/PID/fd of {denied} processes was not readable: run diagnose as root to name the process",
            socket.display(),
            inodes[0]
        ))
    } else {
        Probe::Skipped(format!(
            "a socket listens at {} (inode {}) but no process holding it was found",
            socket.display(),
            inodes[0]
        ))
    }
}

/// Processes whose name looks like token-agent's (`token-agent`, `token_agent`).
pub fn lookalikes() -> Vec<ProcInfo> {
    let root = Path::new("/proc");
    let me = std::process::id();
    pids(root)
        .filter(|&pid| pid != me)
        .map(|pid| describe(root, pid))
        .filter(|p| {
            let exe_name = p.exe.as_deref().and_then(|e| e.rsplit('/').next()).unwrap_or("");
            [p.comm.as_str(), exe_name].iter().any(|n| n.contains("token-agent") || n.contains("token_agent"))
        })
        .collect()
}

fn pids(proc_root: &Path) -> impl Iterator<Item = u32> {
    std::fs::read_dir(proc_root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
}

fn describe(proc_root: &Path, pid: u32) -> ProcInfo {
    let comm = std::fs::read_to_string(proc_root.join(pid.to_string()).join("comm")).unwrap_or_default();
    let p = crate::sources::proc::describe_in(proc_root, pid, comm.trim());
    ProcInfo { pid, comm: p.comm, exe: p.exe, unit: p.unit }
}

/// Whether systemd is the init system (`sd_booted()`).
pub fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// `systemctl show` of `unit`.
pub async fn unit(unit: &str) -> Probe<UnitState> {
    if !systemd_running() {
        return Probe::Skipped(
            "systemd is not running on this host (no /run/systemd/system): unit state not checked".into(),
        );
    }
    let name = if unit.contains('.') { unit.to_string() } else { format!("{unit}.service") };
    let out = match command(
        "systemctl",
        &[
            "show",
            "--no-pager",
            "-p",
            "LoadState",
            "-p",
            "ActiveState",
            "-p",
            "SubState",
            "-p",
            "ActiveEnterTimestamp",
            &name,
        ],
    )
    .await
    {
        Ok((stdout, _)) => stdout,
        Err(e) => return Probe::Skipped(format!("systemctl show {name}: {e}")),
    };
    Probe::Done(parse_unit(&name, &out))
}

pub fn parse_unit(name: &str, show: &str) -> UnitState {
    let mut u = UnitState { name: name.to_string(), ..Default::default() };
    for line in show.lines() {
        match line.split_once('=') {
            Some(("LoadState", v)) => u.load = v.to_string(),
            Some(("ActiveState", v)) => u.active = v.to_string(),
            Some(("SubState", v)) => u.sub = v.to_string(),
            Some(("ActiveEnterTimestamp", v)) => u.since = v.to_string(),
            _ => {}
        }
    }
    u
}

/// compute-node's journal lines about tokens since `since` (`journalctl -u … | grep -i token`).
pub async fn journal(units: &[String], since: SystemTime) -> Probe<JournalFindings> {
    let epoch = since.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let since_arg = format!("@{epoch}");
    let mut args = vec!["--no-pager", "-o", "short-iso", "--since", &since_arg];
    for u in units {
        args.extend(["-u", u.as_str()]);
    }
    match command("journalctl", &args).await {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Probe::Skipped("journalctl not found: no journald on this host, compute-node's journal not checked".into())
        }
        Err(e) => Probe::Skipped(format!("journalctl: {e}")),
        Ok((_, stderr)) if stderr.contains("No journal files were found") => Probe::Skipped(
            "no journal files on this host (journald is not running): compute-node's journal not checked".into(),
        ),
        Ok((stdout, _)) => Probe::Done(JournalFindings { units: units.to_vec(), lines: token_lines(&stdout) }),
    }
}

/// The last lines that mention tokens, redacted.
pub fn token_lines(journal: &str) -> Vec<String> {
    let mut lines: Vec<String> = journal
        .lines()
        .filter(|l| !l.starts_with("-- ") && l.to_ascii_lowercase().contains("token"))
        .map(|l| redact(l).into_owned())
        .collect();
    let skip = lines.len().saturating_sub(JOURNAL_LINES);
    lines.drain(..skip);
    lines
}

/// Runs a command with a timeout; the error says how it failed (spawn errors keep their kind).
async fn command(program: &str, args: &[&str]) -> io::Result<(String, String)> {
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("SYSTEMD_PAGER", "")
        .kill_on_drop(true)
        .spawn()?;
    let out = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("no answer within {COMMAND_TIMEOUT:?}")))??;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() && stdout.trim().is_empty() {
        return Err(io::Error::other(format!("{}: {}", out.status, stderr.trim())));
    }
    Ok((stdout, stderr))
}

/// The base URL of the local agent from `[http] listen`; `None` when disabled.
pub fn agent_url(listen: &str) -> Option<String> {
    let listen = listen.trim();
    if listen.is_empty() {
        return None;
    }
    Some(match listen.parse::<SocketAddr>() {
        Ok(SocketAddr::V4(a)) if a.ip().is_unspecified() => format!("http://127.0.0.1:{}", a.port()),
        Ok(SocketAddr::V6(a)) if a.ip().is_unspecified() => format!("http://[::1]:{}", a.port()),
        Ok(a) => format!("http://{a}"),
        Err(_) => format!("http://{listen}"),
    })
}

/// The running agent's `/status`.
pub async fn agent(listen: &str) -> Probe<AgentStatus> {
    let Some(url) = agent_url(listen) else {
        return Probe::Skipped("[http] listen is empty: no running agent to ask".into());
    };
    match crate::client::fetch_status(&url).await {
        Ok(v) => Probe::Done(parse_status(&url, &v)),
        Err(e) => Probe::Skipped(format!("no tokenwatch agent answers ({e}): current state not checked")),
    }
}

pub fn parse_status(url: &str, v: &Value) -> AgentStatus {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let ta = &v["token_agent"];
    AgentStatus {
        url: url.to_string(),
        level: s(&v["level"]),
        summary: redact(&s(&v["summary"])).into_owned(),
        reasons: v["reasons"].as_array().into_iter().flatten().map(|r| redact(&s(r)).into_owned()).collect(),
        reachable: ta["reachable"].as_bool(),
        errors_in_window: ta["errors_in_window"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, n)| Some((k.clone(), n.as_u64()?)))
            .collect(),
        clients: v["clients"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| ClientState {
                client: c["client"]
                    .as_str()
                    .or(c["unit"].as_str())
                    .or(c["process"].as_str())
                    .unwrap_or("?")
                    .to_string(),
                process: s(&c["process"]),
                pid: c["pid"].as_u64().unwrap_or(0),
                level: s(&c["level"]),
                overdue_seconds: c["overdue_seconds"].as_f64().unwrap_or(0.0),
                expiry_remaining_seconds: c["expiry_remaining_seconds"].as_f64(),
                last_success: c["last_success"].as_str().map(str::to_string),
            })
            .collect(),
    }
}

/// The compute-node unit name the advice uses: the first of `[clients] units`, without `.service`.
pub fn compute_node_unit(units: &[String]) -> String {
    units.first().map(|u| u.trim_end_matches(".service").to_string()).unwrap_or_else(|| "yc-compute-node".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET_UNIX: &str = "Num       RefCount Protocol Flags    Type St Inode Path
0000000000000000: 00000002 00000000 00010000 0001 01 4242 /run/yc/token-agent/socket
0000000000000000: 00000003 00000000 00000000 0001 03 4243 /run/yc/token-agent/socket
0000000000000000: 00000002 00000000 00010000 0002 01 4244 /run/yc/token-agent/socket
0000000000000000: 00000002 00000000 00010000 0001 01 4245 /tmp/with space/sock
0000000000000000: 00000002 00000000 00010000 0001 01 4246
";

    #[test]
    fn finds_the_listening_stream_socket_by_path() {
        assert_eq!(listening_inodes(NET_UNIX, &["/run/yc/token-agent/socket".into()]), vec![4242]);
        assert_eq!(listening_inodes(NET_UNIX, &["/tmp/with space/sock".into()]), vec![4245]);
        assert!(listening_inodes(NET_UNIX, &["/nope".into()]).is_empty());
    }

    #[test]
    fn connect_errors_are_explained() {
        let e = |n| io::Error::from_raw_os_error(n);
        assert_eq!(classify_connect_error(&e(libc::ENOENT)), SocketState::Missing);
        assert_eq!(classify_connect_error(&e(libc::ECONNREFUSED)), SocketState::Refused);
        assert!(matches!(classify_connect_error(&e(libc::EAGAIN)), SocketState::NotAccepting(_)));
        assert!(matches!(classify_connect_error(&e(libc::EACCES)), SocketState::NoPermission(_)));
    }

    #[tokio::test]
    async fn probes_a_real_socket_and_names_its_listener() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sock");
        assert_eq!(socket(&path).await, SocketState::Missing);
        assert_eq!(listener(&path), Probe::Done(None));
        let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        assert_eq!(socket(&path).await, SocketState::Accepting);
        match listener(&path) {
            Probe::Done(Some(p)) => assert_eq!(p.pid, std::process::id()),
            // not root: other processes' fds may be unreadable, but our own are
            other => panic!("{other:?}"),
        }
        drop(l);
        assert_eq!(socket(&path).await, SocketState::Refused);
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert_eq!(socket(&file).await, SocketState::NotASocket);
    }

    #[test]
    fn unit_state_parses() {
        let u = parse_unit(
            "yc-token-agent.service",
            "LoadState=loaded\nActiveState=failed\nSubState=failed\nActiveEnterTimestamp=\n",
        );
        assert!(u.down() && u.installed());
        let u = parse_unit("x.service", "LoadState=not-found\nActiveState=inactive\nSubState=dead\n");
        assert!(!u.down() && !u.installed());
    }

    #[test]
    fn journal_lines_about_tokens_are_redacted() {
        let tok = format!("t1.{}.{}", "a".repeat(40), "b".repeat(86));
        let j = format!("-- Logs begin --\n2026-11-25T14:00:00+0000 h compute-node[1]: got IAM token {tok}\n2026-11-25T14:00:01+0000 h compute-node[1]: unrelated\n");
        let lines = token_lines(&j);
        assert_eq!(lines.len(), 1);
        assert!(lines[0].contains("<redacted>") && !lines[0].contains("bbbb"), "{lines:?}");
    }

    #[test]
    fn agent_url_from_listen() {
        assert_eq!(agent_url("127.0.0.1:9464").as_deref(), Some("http://127.0.0.1:9464"));
        assert_eq!(agent_url("0.0.0.0:9464").as_deref(), Some("http://127.0.0.1:9464"));
        assert_eq!(agent_url("[::]:9464").as_deref(), Some("http://[::1]:9464"));
        assert_eq!(agent_url("localhost:1").as_deref(), Some("http://localhost:1"));
        assert_eq!(agent_url(""), None);
    }

    #[test]
    fn status_document_parses() {
        let v = serde_json::json!({
            "level": "WARN", "summary": "late", "reasons": ["r"],
            "token_agent": {"socket": "/s", "reachable": true, "calls_in_window": 3, "errors_in_window": {"UNAVAILABLE": 2}},
            "clients": [{"pid": 7, "process": "compute-node", "client": "yc-compute-node.service", "level": "WARN",
                         "overdue_seconds": 130.5, "expiry_remaining_seconds": 100.0, "last_success": null}]
        });
        let s = parse_status("http://x", &v);
        assert_eq!(s.level, "WARN");
        assert_eq!(s.errors_in_window.get("UNAVAILABLE"), Some(&2));
        assert_eq!(s.clients[0].overdue_seconds, 130.5);
        assert_eq!(s.clients[0].client, "yc-compute-node.service");
        assert_eq!(compute_node_unit(&["yc-compute-node.service".into()]), "yc-compute-node");
    }
}
