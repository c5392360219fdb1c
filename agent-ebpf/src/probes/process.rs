//! The end of tracked connections: `close()` of a tracked fd, and the exit or
//! `exec` of a process holding tracked connections.
//!
//! `sys_enter_close` stays attached while the I/O probes come and go, so a
//! closed fd is never mistaken for the connection when its number is reused.
//! Not followed (documented limits): `dup`/`dup2`/`dup3` (a duplicate is not
//! captured; a dup2 onto a tracked fd, like `close_range`, leaves a stale
//! entry that userspace's periodic revalidation against /proc removes), fds
//! passed to other processes (SCM_RIGHTS, fork: a child's I/O on an
//! inherited connection is not captured).
use aya_ebpf::{
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid},
    macros::tracepoint,
    programs::TracePointContext,
};
use tokenwatch_common::{counter, CloseEvent, EventKind, ProcessEvent, COMM_LEN, EXIT_GROUP_DEAD_OFFSET};

use crate::{bump, exit_has_group_dead, header, ktime_ns, tracked, EVENTS};

/// `fd` in `syscalls/sys_enter_close`.
const CLOSE_FD: usize = 16;

#[tracepoint]
pub fn sys_enter_close(ctx: TracePointContext) -> u32 {
    let _ = try_sys_enter_close(&ctx);
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

fn try_sys_enter_close(ctx: &TracePointContext) -> Result<(), i32> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if !tracked::tgid_is_tracked(tgid) {
        return Ok(());
    }
    // SAFETY: offset from the tracepoint's format file.
    let fd = unsafe { ctx.read_at::<u64>(CLOSE_FD)? } as i32;
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
