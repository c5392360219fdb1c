//! `connect()` on AF_UNIX sockets to the watched path.
//!
//! The enter half filters (not the agent, AF_UNIX, path equals the
//! configured one) and remembers start time and fd per thread; the exit half
//! turns a remembered call into a [`ConnectEvent`] and, when it succeeded,
//! starts tracking (tgid, fd) so the I/O probes capture the connection from
//! its first byte (when they are attached). Other paths and abstract sockets
//! never leave the kernel.
//!
//! Two hook kinds run the same halves: the syscall tracepoints
//! `sys_{enter,exit}_connect`, and fentry/fexit on the syscall wrapper
//! (`__x64_sys_connect`), which userspace prefers where the kernel allows it:
//! an enabled syscall tracepoint moves every syscall of the host to the slow
//! path, a trampoline on one function costs nothing to any other.
use aya_ebpf::{
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid, bpf_probe_read_user, generated,
    },
    macros::{fentry, fexit, map, tracepoint},
    maps::LruHashMap,
    programs::{FEntryContext, FExitContext, TracePointContext},
};
use tokenwatch_common::{connect_flags, counter, ConnectEvent, EventKind, COMM_LEN, SUN_PATH_MAX};

use super::args::{Regs, SyscallArgs};
use crate::{bump, config_path_byte, config_path_len, config_self_tgid, header, ktime_ns, tracked, EVENTS};

const AF_UNIX: u16 = 1;
/// `offsetof(struct sockaddr_un, sun_path)`.
const SUN_PATH_OFFSET: usize = 2;
/// `ret` in `syscalls/sys_exit_connect`.
const EXIT_RET: usize = 16;

/// A `connect()` in flight to the watched path, by thread.
#[repr(C)]
#[derive(Clone, Copy)]
struct Pending {
    start_ns: u64,
    fd: i32,
    _pad: u32,
}

/// Keyed by `pid_tgid`. LRU, so threads killed inside `connect()` (no exit
/// event) cannot fill it.
#[map]
static CONNECT_PENDING: LruHashMap<u64, Pending> = LruHashMap::with_max_entries(4096, 0);

#[tracepoint]
pub fn sys_enter_connect(ctx: TracePointContext) -> u32 {
    let _ = connect_enter(&ctx);
    0
}

#[tracepoint]
pub fn sys_exit_connect(ctx: TracePointContext) -> u32 {
    // SAFETY: offset from the tracepoint's format file.
    if let Ok(ret) = unsafe { ctx.read_at::<i64>(EXIT_RET) } {
        let _ = connect_exit(ret);
    }
    0
}

/// `long __x64_sys_connect(const struct pt_regs *regs)`.
#[fentry(function = "__x64_sys_connect")]
pub fn fentry_connect(ctx: FEntryContext) -> u32 {
    let _ = connect_enter(&Regs(ctx.arg(0)));
    0
}

/// The return value follows the wrapper's one argument.
#[fexit(function = "__x64_sys_connect")]
pub fn fexit_connect(ctx: FExitContext) -> u32 {
    let _ = connect_exit(ctx.arg::<i64>(1));
    0
}

/// `Err` carries a helper's (negative) error code; `Ok` also covers "not ours".
fn connect_enter<A: SyscallArgs>(args: &A) -> Result<(), i32> {
    let pid_tgid = bpf_get_current_pid_tgid();
    if (pid_tgid >> 32) as u32 == config_self_tgid() {
        return Ok(());
    }
    let want = config_path_len();
    if want == 0 || want > SUN_PATH_MAX {
        return Ok(());
    }
    let (fd, addr, addrlen) = (args.arg(0)? as i64, args.arg(1)?, args.arg(2)? as i64);
    // The kernel reads at most sizeof(sockaddr_un) bytes and treats sun_path
    // as NUL-terminated: addrlen may count a trailing NUL (Go does) or the
    // whole struct (C code passing sizeof), so the path may be shorter than
    // addrlen − 2 as long as a NUL follows it.
    let path_len = (addrlen as usize).wrapping_sub(SUN_PATH_OFFSET);
    if addrlen < SUN_PATH_OFFSET as i64 + 1 || path_len < want {
        return Ok(());
    }
    // SAFETY: reads user memory through the helper, which faults safely.
    let family = unsafe { bpf_probe_read_user(addr as *const u16)? };
    if family != AF_UNIX {
        return Ok(());
    }
    // The configured path plus, when the caller's is longer, its terminator.
    let mut n = if path_len > want { want + 1 } else { want };
    if n > SUN_PATH_MAX {
        n = SUN_PATH_MAX;
    }
    let mut buf = [0u8; SUN_PATH_MAX];
    // SAFETY: 1 ≤ n ≤ SUN_PATH_MAX = buf.len(); the helper faults safely.
    let rc = unsafe {
        generated::bpf_probe_read_user(buf.as_mut_ptr().cast(), n as u32, (addr as usize + SUN_PATH_OFFSET) as *const _)
    };
    if rc < 0 {
        return Err(rc as i32);
    }
    // Abstract sockets (sun_path[0] == 0) never match a configured path.
    if buf[0] == 0 {
        return Ok(());
    }
    let mut i = 0;
    while i < SUN_PATH_MAX {
        if i >= want {
            break;
        }
        if buf[i] != config_path_byte(i) {
            return Ok(());
        }
        i += 1;
    }
    if n > want && want < SUN_PATH_MAX && buf[want] != 0 {
        return Ok(());
    }
    let pending = Pending { start_ns: ktime_ns(), fd: fd as i32, _pad: 0 };
    CONNECT_PENDING.insert(&pid_tgid, &pending, 0)?;
    Ok(())
}

fn connect_exit(ret: i64) -> Result<(), i32> {
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: the value is copied out before the entry is removed.
    let pending = match unsafe { CONNECT_PENDING.get(&pid_tgid) } {
        Some(p) => *p,
        None => return Ok(()),
    };
    let _ = CONNECT_PENDING.remove(&pid_tgid);
    let now = ktime_ns();
    let tgid = (pid_tgid >> 32) as u32;
    // Track before the record goes out: the client writes right after
    // connect() returns, and userspace learns of the connection later.
    let flags = if ret == 0 {
        match tracked::track(tgid, pending.fd) {
            Ok(()) => connect_flags::TRACKED,
            Err(tracked::TrackError::Full) => {
                bump(counter::TRACK_FULL);
                connect_flags::TRACK_FULL
            }
        }
    } else {
        0
    };

    let Some(mut entry) = EVENTS.reserve::<ConnectEvent>(0) else {
        bump(counter::LOST);
        return Ok(());
    };
    let uid_gid = bpf_get_current_uid_gid();
    let comm = bpf_get_current_comm().unwrap_or([0; COMM_LEN]);
    entry.write(ConnectEvent {
        header: header(EventKind::Connect, size_of::<ConnectEvent>(), pid_tgid, now),
        uid: uid_gid as u32,
        gid: (uid_gid >> 32) as u32,
        fd: pending.fd,
        ret: ret as i32,
        latency_ns: now.saturating_sub(pending.start_ns),
        comm,
        flags,
        _pad: 0,
    });
    entry.submit(0);
    bump(counter::SENT);
    Ok(())
}
