//! The end of tracked connections: `close()` of a tracked fd, and the exit or
//! `exec` of a process holding tracked connections.
//!
//! The close probe (`sys_enter_close`, or fentry on `__x64_sys_close` where
//! the kernel allows it, see `connect`) stays attached while the I/O probes
//! come and go, so a closed fd is never mistaken for the connection when its
//! number is reused — except in `capture = "windows"` mode on tracepoints,
//! where connect/close come and go with the capture window and userspace
//! revalidates every tracked fd against /proc when a window opens.
//! Not followed (documented limits): `dup`/`dup2`/`dup3` (a duplicate is not
//! captured; a dup2 onto a tracked fd, like `close_range`, leaves a stale
//! entry that userspace's periodic revalidation against /proc removes), fds
//! passed to other processes (SCM_RIGHTS, fork: a child's I/O on an
//! inherited connection is not captured).
use aya_ebpf::{
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid},
    macros::{fentry, tracepoint},
    programs::{FEntryContext, TracePointContext},
};
use tokenwatch_common::{counter, CloseEvent, EventKind, ProcessEvent, COMM_LEN, EXIT_GROUP_DEAD_OFFSET};

use super::args::{Regs, SyscallArgs};
use crate::{bump, exit_has_group_dead, header, ktime_ns, tracked, EVENTS};

#[tracepoint]
pub fn sys_enter_close(ctx: TracePointContext) -> u32 {
    let _ = close_enter(&ctx);
    0
}

/// `long __x64_sys_close(const struct pt_regs *regs)`.
#[fentry(function = "__x64_sys_close")]
pub fn fentry_close(ctx: FEntryContext) -> u32 {
    let _ = close_enter(&Regs(ctx.arg(0)));
    0
}

#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    let _ = try_sched_process_exit(&ctx);
    0
}

#[tracepoint]
pub fn sched_process_exec(_ctx: TracePointContext) -> u32 {
    process_gone(EventKind::Exec);
    0
}

fn close_enter<A: SyscallArgs>(args: &A) -> Result<(), i32> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if !tracked::tgid_is_tracked(tgid) {
        return Ok(());
    }
    let fd = args.arg(0)? as i32;
    if !tracked::untrack(tgid, fd) {
        return Ok(());
    }
    let ev =
        CloseEvent { header: header(EventKind::Close, size_of::<CloseEvent>(), pid_tgid, ktime_ns()), fd, _pad: 0 };
    match EVENTS.output::<CloseEvent>(&ev, 0) {
        Ok(()) => bump(counter::SENT),
        Err(_) => bump(counter::LOST),
    }
    Ok(())
}

fn try_sched_process_exit(ctx: &TracePointContext) -> Result<(), i32> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let whole_process = if exit_has_group_dead() {
        // SAFETY: offset checked against the format file by userspace.
        unsafe { ctx.read_at::<u8>(EXIT_GROUP_DEAD_OFFSET)? != 0 }
    } else {
        // Older kernels: the leader's exit (exit_group ends every thread; a
        // leader that leaves alone with pthread_exit is taken for the process).
        (pid_tgid >> 32) as u32 == pid_tgid as u32
    };
    if whole_process {
        process_gone(EventKind::ProcessExit);
    }
    Ok(())
}

/// Forgets the current process and reports it, if it held tracked connections.
#[inline(always)]
fn process_gone(kind: EventKind) {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !tracked::forget_process((pid_tgid >> 32) as u32) {
        return;
    }
    let ev = ProcessEvent {
        header: header(kind, size_of::<ProcessEvent>(), pid_tgid, ktime_ns()),
        comm: bpf_get_current_comm().unwrap_or([0; COMM_LEN]),
    };
    match EVENTS.output::<ProcessEvent>(&ev, 0) {
        Ok(()) => bump(counter::SENT),
        Err(_) => bump(counter::LOST),
    }
}
