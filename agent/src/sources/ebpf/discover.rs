//! Client connections to token-agent that were open before the probes were:
//! found once at start, then tracked like connects the probe saw (late join).
//!
//! A client's end of an AF_UNIX stream has no name; only the server's
//! sockets carry the bound path. So: dump every AF_UNIX stream socket with
//! its name and peer through sock_diag (NETLINK_SOCK_DIAG, `UDIAG_SHOW_NAME |
//! UDIAG_SHOW_PEER`); token-agent's accepted sockets are those named with the
//! watched path that are not listening; their peers are the client sockets;
//! `/proc/PID/fd/N → socket:[inode]` says which process holds each.
use std::{
    collections::HashSet,
    io,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::Path,
};

/// A client socket connected to token-agent, held by `pid` as `fd`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct Found {
    pub pid: u32,
    pub fd: i32,
    pub inode: u64,
}

/// One AF_UNIX stream socket as sock_diag reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct UnixSock {
    pub inode: u32,
    pub state: u8,
    /// Bound path (trailing NULs stripped); `None` when unbound.
    pub name: Option<Vec<u8>>,
    pub peer: Option<u32>,
}

/// `TCP_LISTEN`, the state of a listening AF_UNIX socket.
const STATE_LISTEN: u8 = 10;

/// The client sockets connected to the socket bound at `socket` (by inode),
/// held by processes other than `self_pid`.
pub(super) fn discover(socket: &Path, self_pid: u32) -> io::Result<Vec<Found>> {
    let socks = unix_stream_sockets()?;
    let canonical = std::fs::canonicalize(socket).ok();
    let ours = |name: &[u8]| {
        name == socket.as_os_str().as_bytes()
            || canonical
                .as_deref()
                .is_some_and(|c| std::fs::canonicalize(std::ffi::OsStr::from_bytes(name)).is_ok_and(|n| n == c))
    };
    let clients = client_inodes(&socks, ours);
    if clients.is_empty() {
        return Ok(Vec::new());
    }
    Ok(scan_proc(Path::new("/proc"), &clients, self_pid))
}

/// Peers of the non-listening sockets named by `ours`. Pure.
pub(super) fn client_inodes(socks: &[UnixSock], ours: impl Fn(&[u8]) -> bool) -> HashSet<u64> {
    socks
        .iter()
        .filter(|s| s.state != STATE_LISTEN && s.name.as_deref().is_some_and(&ours))
        .filter_map(|s| s.peer.filter(|&p| p != 0).map(u64::from))
        .collect()
}

/// Which (pid, fd) hold the sockets `inodes`, reading `root` (normally /proc).
pub(super) fn scan_proc(root: &Path, inodes: &HashSet<u64>, self_pid: u32) -> Vec<Found> {
    let mut found = Vec::new();
    let Ok(procs) = std::fs::read_dir(root) else { return found };
    for entry in procs.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        if pid == self_pid {
            continue;
        }
        // A process may exit meanwhile, or forbid reading: skip it.
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else { continue };
        for fd in fds.flatten() {
            let Some(n) = fd.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
            if let Some(inode) = std::fs::read_link(fd.path()).ok().and_then(|t| socket_inode(t.as_os_str().as_bytes()))
            {
                if inodes.contains(&inode) {
                    found.push(Found { pid, fd: n, inode });
                }
            }
        }
    }
    found.sort();
    found
}

/// The inode of a `/proc/PID/fd` link text `socket:[12345]`.
pub(super) fn socket_inode(link: &[u8]) -> Option<u64> {
    std::str::from_utf8(link.strip_prefix(b"socket:[")?.strip_suffix(b"]")?).ok()?.parse().ok()
}

// sock_diag ABI (linux/netlink.h, linux/sock_diag.h, linux/unix_diag.h).
const NETLINK_SOCK_DIAG: i32 = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const UDIAG_SHOW_NAME: u32 = 1;
const UDIAG_SHOW_PEER: u32 = 4;
const UNIX_DIAG_NAME: u16 = 0;
const UNIX_DIAG_PEER: u16 = 2;
const NLMSG_HDR: usize = 16;
const UNIX_DIAG_MSG: usize = 16;

/// Every AF_UNIX stream socket of the host (its network namespace), with name and peer.
pub(super) fn unix_stream_sockets() -> io::Result<Vec<UnixSock>> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, NETLINK_SOCK_DIAG) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, valid descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut req = Vec::with_capacity(NLMSG_HDR + 24);
    req.extend_from_slice(&((NLMSG_HDR + 24) as u32).to_ne_bytes());
    req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes()); // seq
    req.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel
    req.push(libc::AF_UNIX as u8); // sdiag_family
    req.push(0); // sdiag_protocol
    req.extend_from_slice(&0u16.to_ne_bytes());
    req.extend_from_slice(&u32::MAX.to_ne_bytes()); // udiag_states: all
    req.extend_from_slice(&0u32.to_ne_bytes()); // udiag_ino
    req.extend_from_slice(&(UDIAG_SHOW_NAME | UDIAG_SHOW_PEER).to_ne_bytes());
    req.extend_from_slice(&[0xff; 8]); // udiag_cookie: none
                                       // SAFETY: sending an initialised buffer of the stated length.
    if unsafe { libc::send(sock.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut socks = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: receiving into a buffer of the stated length.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if parse_dump(&buf[..n as usize], &mut socks)? {
            return Ok(socks);
        }
    }
}

/// Parses one datagram of a sock_diag dump into `out`; `Ok(true)` at the
/// end of the dump. Only stream sockets are kept. Pure.
pub(super) fn parse_dump(mut buf: &[u8], out: &mut Vec<UnixSock>) -> io::Result<bool> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed sock_diag reply");
    while buf.len() >= NLMSG_HDR {
        let len = u32::from_ne_bytes(buf[0..4].try_into().unwrap()) as usize;
        let kind = u16::from_ne_bytes(buf[4..6].try_into().unwrap());
        if len < NLMSG_HDR || len > buf.len() {
            return Err(bad());
        }
        let body = &buf[NLMSG_HDR..len];
        match kind {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let errno = body.get(0..4).map(|b| i32::from_ne_bytes(b.try_into().unwrap())).unwrap_or(0);
                return Err(if errno < 0 { io::Error::from_raw_os_error(-errno) } else { bad() });
            }
            SOCK_DIAG_BY_FAMILY if body.len() >= UNIX_DIAG_MSG => {
                let (kind, state) = (body[1], body[2]);
                let inode = u32::from_ne_bytes(body[4..8].try_into().unwrap());
                let mut sock = UnixSock { inode, state, name: None, peer: None };
                let mut attrs = &body[UNIX_DIAG_MSG..];
                while attrs.len() >= 4 {
                    let alen = u16::from_ne_bytes(attrs[0..2].try_into().unwrap()) as usize;
                    let atype = u16::from_ne_bytes(attrs[2..4].try_into().unwrap());
                    if alen < 4 || alen > attrs.len() {
                        return Err(bad());
                    }
                    let data = &attrs[4..alen];
                    match atype {
                        UNIX_DIAG_NAME => {
                            let end = data.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
                            sock.name = Some(data[..end].to_vec());
                        }
                        UNIX_DIAG_PEER if data.len() >= 4 => {
                            sock.peer = Some(u32::from_ne_bytes(data[0..4].try_into().unwrap()));
                        }
                        _ => {}
                    }
                    attrs = attrs.get((alen + 3) & !3..).unwrap_or_default();
                }
                if kind == libc::SOCK_STREAM as u8 {
                    out.push(sock);
                }
            }
            _ => {}
        }
        let next = (len + 3) & !3;
        buf = buf.get(next..).unwrap_or_default();
    }
    Ok(false)
}
