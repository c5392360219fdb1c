//! Data capture on tracked connections: `write`, `writev`, `sendto`,
//! `sendmsg` (client → token-agent) and `read`, `readv`, `recvfrom`,
//! `recvmsg` (token-agent → client).
//!
//! Each `sys_enter_*` program checks `TRACKED_TGIDS` (the one lookup every
//! other process pays), then `TRACKED` for the fd, and remembers the
//! buffer(s) per thread. The one `io_exit` program, attached to all eight
//! `sys_exit_*` tracepoints, copies what the syscall actually moved (its
//! return value), walking iovecs, into `DataHeader` records of up to
//! `DATA_CHUNK` bytes, `MAX_CAPTURE` bytes per syscall at most.
//!
//! Where the kernel allows it, userspace attaches the `fexit_*` programs
//! instead: one per syscall wrapper (`__x64_sys_write`, …), which sees the
//! arguments and the return value at once, so needs no `IO_PENDING` entry,
//! and costs nothing to syscalls it is not attached to (a syscall tracepoint
//! slows every syscall of the host, see below).
//!
//! Why per-syscall tracepoints and not a raw tracepoint (BPF_PROG_TYPE_RAW_
//! TRACEPOINT) on `sys_enter`/`sys_exit`: the raw one runs on every syscall
//! of every process. Measured on this kernel (6.18, 2 vCPUs; min of 15 runs
//! of 300k iterations, one pinned thread; the same filter — one
//! `TRACKED_TGIDS` lookup — in both):
//!
//! | loop (ns/iteration)      | no probes | connect+close only | + these 16 | raw enter+exit instead |
//! |--------------------------|-----------|--------------------|------------|------------------------|
//! | 64-byte pipe `write`     | 302       | 366                | 634        | 633                    |
//! | `getppid` (not captured) | 248       | 273                | 290        | 569                    |
//!
//! Same cost on the captured syscalls, but the raw tracepoint also doubles
//! the cost of every other syscall. Note the second column: on this kernel
//! any enabled syscall tracepoint moves every syscall of the host to the
//! slow path (~+40 ns for an enter, ~+20 ns more for an exit tracepoint),
//! whichever syscall it is for — plain ftrace enabling `sys_enter_connect`
//! alone costs the same +39 ns per pipe write. Either way the cost here is
//! paid only while userspace keeps these programs attached (adaptive
//! capture, see `agent/src/sources/ebpf/window.rs`); they stay loaded while
//! detached. `cargo xtask bench` (groups `pipe_write_64`, `get_token`)
//! measures the same through the agent.
use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{bpf_get_current_pid_tgid, bpf_get_current_uid_gid, generated},
    macros::{fexit, map, tracepoint},
    maps::{LruHashMap, PerCpuArray},
    programs::{FExitContext, TracePointContext},
};
use tokenwatch_common::{
    counter, data_flags, direction, op, shape, DataHeader, EventKind, IoPending, TrackedKey, DATA_CHUNK,
    DATA_HEADER_LEN, MAX_CAPTURE, MAX_IOV,
};

use super::args::{Regs, SyscallArgs};
use crate::{bump, header, ktime_ns, tracked, EVENTS, TRACKED};

// Syscall arguments: write/read/sendto/recvfrom (fd, buf, len), writev/readv
// (fd, vec, vlen), sendmsg/recvmsg (fd, msg, flags) agree on the first
// three; recvfrom's flags come fourth.
const ARG_FD: usize = 0;
const ARG_BUF: usize = 1;
const ARG_LEN: usize = 2;
const ARG_RECVFROM_FLAGS: usize = 3;
/// `ret` in `syscalls/sys_exit_*`.
const EXIT_RET: usize = 16;
/// `__syscall_nr`, in both the enter and the exit records.
const SYSCALL_NR: usize = 8;
/// `offsetof(struct user_msghdr, msg_iov)`; `msg_iovlen` follows.
const MSGHDR_IOV: u64 = 16;
const MSG_PEEK: u64 = 2;
/// Pending data beyond which a data record wakes userspace (a quarter of the ring).
const WAKEUP_AT_BYTES: u64 = 128 * 1024;
/// Loop bound of the copy: one step per iovec plus one per full record.
const COPY_STEPS: usize = MAX_IOV + MAX_CAPTURE / DATA_CHUNK;

/// Keyed by `pid_tgid`; LRU so threads killed mid-syscall cannot fill it;
/// cleared by userspace after each detach.
#[map]
static IO_PENDING: LruHashMap<u64, IoPending> = LruHashMap::with_max_entries(4096, 0);

/// A record being assembled: header, then room for one chunk at any offset
/// below `DATA_CHUNK` (twice the chunk, so the verifier can prove
/// `offset + length` in bounds from the two separately bounded values).
#[repr(C)]
struct Scratch {
    head: DataHeader,
    data: [u8; 2 * DATA_CHUNK],
    /// The copy loop's variables. Kept in map memory and accessed with
    /// volatile reads so that the verifier sees unknown (bounded-by-check)
    /// scalars at each iteration and prunes equal states; kept in registers,
    /// their exact values differ on every path and it gives up after 1M
    /// instructions.
    st: CopyState,
}

#[repr(C)]
struct CopyState {
    /// Bytes of the syscall captured so far.
    copied: u64,
    /// Bytes in `data`.
    fill: u64,
    /// Current user buffer and bytes left in it.
    base: u64,
    left: u64,
    /// Index of the next iovec to read.
    next_iov: u64,
    /// Bytes to copy in this step (see `copy_step`).
    n: u64,
}

#[map]
static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

macro_rules! enter_probe {
    ($name:ident, $shape:expr, $dir:expr, $op:expr) => {
        #[tracepoint]
        pub fn $name(ctx: TracePointContext) -> u32 {
            let _ = try_enter(&ctx, $shape, $dir, $op);
            0
        }
    };
}

enter_probe!(io_enter_write, shape::BUF, direction::TX, op::WRITE);
enter_probe!(io_enter_writev, shape::IOV, direction::TX, op::WRITEV);
enter_probe!(io_enter_sendto, shape::BUF, direction::TX, op::SENDTO);
enter_probe!(io_enter_sendmsg, shape::IOV, direction::TX, op::SENDMSG);
enter_probe!(io_enter_read, shape::BUF, direction::RX, op::READ);
enter_probe!(io_enter_readv, shape::IOV, direction::RX, op::READV);
enter_probe!(io_enter_recvfrom, shape::BUF, direction::RX, op::RECVFROM);
enter_probe!(io_enter_recvmsg, shape::IOV, direction::RX, op::RECVMSG);

macro_rules! fexit_probe {
    ($name:ident, $func:literal, $shape:expr, $dir:expr, $op:expr) => {
        /// `long $func(const struct pt_regs *regs)`.
        #[fexit(function = $func)]
        pub fn $name(ctx: FExitContext) -> u32 {
            let _ = try_fexit(&ctx, $shape, $dir, $op);
            0
        }
    };
}

fexit_probe!(fexit_write, "__x64_sys_write", shape::BUF, direction::TX, op::WRITE);
fexit_probe!(fexit_writev, "__x64_sys_writev", shape::IOV, direction::TX, op::WRITEV);
fexit_probe!(fexit_sendto, "__x64_sys_sendto", shape::BUF, direction::TX, op::SENDTO);
fexit_probe!(fexit_sendmsg, "__x64_sys_sendmsg", shape::IOV, direction::TX, op::SENDMSG);
fexit_probe!(fexit_read, "__x64_sys_read", shape::BUF, direction::RX, op::READ);
fexit_probe!(fexit_readv, "__x64_sys_readv", shape::IOV, direction::RX, op::READV);
fexit_probe!(fexit_recvfrom, "__x64_sys_recvfrom", shape::BUF, direction::RX, op::RECVFROM);
fexit_probe!(fexit_recvmsg, "__x64_sys_recvmsg", shape::IOV, direction::RX, op::RECVMSG);

/// Attached to every `sys_exit_*` of the eight syscalls.
#[tracepoint]
pub fn io_exit(ctx: TracePointContext) -> u32 {
    let _ = try_exit(&ctx);
    0
}

/// Records the call in `IO_PENDING` for [`io_exit`] when it is on a tracked connection.
fn try_enter(ctx: &TracePointContext, shape: u8, dir: u8, op: u8) -> Result<(), i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !tracked::tgid_is_tracked((pid_tgid >> 32) as u32) {
        return Ok(());
    }
    let Some(mut pending) = on_tracked(ctx, pid_tgid, shape, dir, op)? else { return Ok(()) };
    // SAFETY: offset from the tracepoint's format file.
    pending.nr = unsafe { ctx.read_at::<i32>(SYSCALL_NR) }?;
    IO_PENDING.insert(&pid_tgid, &pending, 0)?;
    Ok(())
}

/// The call's buffers when its fd is a tracked connection and the bytes are
/// the stream's (not a `MSG_PEEK`); `nr` left 0.
#[inline(always)]
fn on_tracked<A: SyscallArgs>(args: &A, pid_tgid: u64, shape: u8, dir: u8, op: u8) -> Result<Option<IoPending>, i64> {
    let tgid = (pid_tgid >> 32) as u32;
    let fd = args.arg(ARG_FD)? as i32;
    if TRACKED.get_ptr(&TrackedKey { tgid, fd }).is_none() {
        return Ok(None);
    }
    let mut buf = args.arg(ARG_BUF)?;
    let mut count = args.arg(ARG_LEN)?;
    match op {
        op::RECVFROM => {
            if args.arg(ARG_RECVFROM_FLAGS)? & MSG_PEEK != 0 {
                return Ok(None); // the bytes stay queued and are read again
            }
        }
        op::SENDMSG | op::RECVMSG => {
            if op == op::RECVMSG && count & MSG_PEEK != 0 {
                return Ok(None);
            }
            // msg_iov and msg_iovlen of the caller's struct user_msghdr
            // SAFETY: the helper faults safely on bad user pointers.
            let iov = unsafe { aya_ebpf::helpers::bpf_probe_read_user((buf + MSGHDR_IOV) as *const [u64; 2]) }?;
            buf = iov[0];
            count = iov[1];
        }
        _ => {}
    }
    Ok(Some(IoPending { buf, count, fd, nr: 0, shape, direction: dir, op, _pad: [0; 5] }))
}

fn try_exit(ctx: &TracePointContext) -> Result<(), i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    // The one lookup of every other process.
    // SAFETY: copied out before the entry is removed.
    let p = match unsafe { IO_PENDING.get(&pid_tgid) } {
        Some(p) => *p,
        None => return Ok(()),
    };
    let _ = IO_PENDING.remove(&pid_tgid);
    // SAFETY (ctx reads): offsets from the tracepoint's format file.
    if unsafe { ctx.read_at::<i32>(SYSCALL_NR) }? != p.nr {
        return Ok(()); // not the syscall that entered (cannot happen while userspace clears the map)
    }
    let ret = unsafe { ctx.read_at::<i64>(EXIT_RET) }?;
    capture(pid_tgid, &p, ret);
    Ok(())
}

/// The fexit programs: arguments and result at once.
fn try_fexit(ctx: &FExitContext, shape: u8, dir: u8, op: u8) -> Result<(), i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    // The one lookup of every other process.
    if !tracked::tgid_is_tracked((pid_tgid >> 32) as u32) {
        return Ok(());
    }
    let Some(p) = on_tracked(&Regs(ctx.arg(0)), pid_tgid, shape, dir, op)? else { return Ok(()) };
    // The return value follows the wrapper's one argument.
    capture(pid_tgid, &p, ctx.arg::<i64>(1));
    Ok(())
}

/// Sends what a finished syscall moved on a tracked connection.
#[inline(always)]
fn capture(pid_tgid: u64, p: &IoPending, ret: i64) {
    if ret <= 0 {
        return; // error, EAGAIN or EOF: nothing moved
    }
    let tgid = (pid_tgid >> 32) as u32;
    // Closed by another thread meanwhile: the bytes are not ours to report.
    let Some(conn) = TRACKED.get_ptr_mut(&TrackedKey { tgid, fd: p.fd }) else { return };
    // SAFETY: a valid map value pointer; concurrent syscalls on one
    // connection in one direction (not done by gRPC clients) could race here.
    let stream_off = unsafe {
        let off = if p.direction == direction::TX { &mut (*conn).tx_off } else { &mut (*conn).rx_off };
        let start = *off;
        *off = start.wrapping_add(ret as u64);
        start
    };
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else { return };
    // SAFETY: the per-CPU scratch value is ours for this program's run
    // (tracing programs do not nest on one CPU).
    let scratch = unsafe { &mut *scratch };
    let uid = bpf_get_current_uid_gid() as u32;
    scratch.head = DataHeader {
        header: header(EventKind::Data, DATA_HEADER_LEN, pid_tgid, ktime_ns()),
        stream_off,
        fd: p.fd,
        uid,
        syscall_len: if ret > u32::MAX as i64 { u32::MAX } else { ret as u32 },
        chunk_off: 0,
        data_len: 0,
        direction: p.direction,
        op: p.op,
        flags: 0,
        _pad: 0,
    };
    copy_out(scratch, p, ret as u64);
}

/// Copies the first `min(ret, MAX_CAPTURE)` bytes the syscall moved into
/// records, flushing each full chunk and the rest at the end.
#[inline(always)]
fn copy_out(scratch: &mut Scratch, p: &IoPending, ret: u64) {
    let total = if ret > MAX_CAPTURE as u64 { MAX_CAPTURE as u64 } else { ret };
    let iov_count = if p.count > MAX_IOV as u64 { MAX_IOV as u64 } else { p.count };
    let st: *mut CopyState = &mut scratch.st;
    // SAFETY (all st accesses): a valid pointer into this CPU's scratch value.
    unsafe {
        let (base, left, next_iov) = match p.shape {
            shape::BUF => (p.buf, total, MAX_IOV as u64),
            _ => (0, 0, 0),
        };
        st.write_volatile(CopyState { copied: 0, fill: 0, base, left, next_iov, n: 0 });
    }
    for _ in 0..COPY_STEPS {
        if !copy_step(scratch, st, p, total, iov_count) {
            break;
        }
    }
    // SAFETY: as above.
    let (copied, fill) = unsafe { ((*st).copied, (*st).fill) };
    let truncated = copied < ret;
    if truncated {
        bump(counter::TRUNCATED);
    }
    if fill > DATA_CHUNK as u64 || copied < fill {
        return;
    }
    if fill > 0 || truncated {
        let flags = data_flags::LAST | if truncated { data_flags::TRUNCATED } else { 0 };
        flush(scratch, copied - fill, fill, flags);
    }
}

/// One step of the copy: next iovec if the current one is done, then as many
/// bytes as fit the chunk; a full chunk is flushed. `false`: stop.
#[inline(always)]
fn copy_step(scratch: &mut Scratch, st: *mut CopyState, p: &IoPending, total: u64, iov_count: u64) -> bool {
    // SAFETY (all st accesses): a valid pointer into this CPU's scratch value.
    let copied = unsafe { core::ptr::addr_of!((*st).copied).read_volatile() };
    if copied >= total {
        return false;
    }
    let mut base = unsafe { core::ptr::addr_of!((*st).base).read_volatile() };
    let mut left = unsafe { core::ptr::addr_of!((*st).left).read_volatile() };
    if left == 0 {
        let next_iov = unsafe { core::ptr::addr_of!((*st).next_iov).read_volatile() };
        if p.shape == shape::BUF || next_iov >= iov_count {
            return false;
        }
        // SAFETY: the helper faults safely on bad user pointers.
        let Ok(iov) = (unsafe { aya_ebpf::helpers::bpf_probe_read_user((p.buf + next_iov * 16) as *const [u64; 2]) })
        else {
            bump(counter::READ_FAULT);
            return false;
        };
        unsafe { core::ptr::addr_of_mut!((*st).next_iov).write_volatile(next_iov + 1) };
        base = iov[0];
        left = iov[1];
        if left == 0 {
            return true;
        }
    }
    let fill = unsafe { core::ptr::addr_of!((*st).fill).read_volatile() };
    if fill >= DATA_CHUNK as u64 || copied > total {
        return false;
    }
    let mut n = left;
    if n > DATA_CHUNK as u64 - fill {
        n = DATA_CHUNK as u64 - fill;
    }
    if n > total - copied {
        n = total - copied;
    }
    // `n` is the minimum of three values; verifiers before ~6.8 (5.10 and
    // 6.1 here) learn nothing from comparing two unknowns, so its bound must
    // come from a comparison with a constant — on a fresh load, or LLVM drops
    // the comparison as implied by the ones above.
    // SAFETY: a field of this CPU's scratch value.
    let n = unsafe {
        core::ptr::addr_of_mut!((*st).n).write_volatile(n);
        core::ptr::addr_of!((*st).n).read_volatile()
    };
    if n == 0 || n > DATA_CHUNK as u64 {
        return false;
    }
    let off = (fill & (DATA_CHUNK as u64 - 1)) as usize;
    // SAFETY: off < DATA_CHUNK and n <= DATA_CHUNK, inside the 2 × DATA_CHUNK
    // buffer; the helper faults safely on bad user pointers.
    let rc = unsafe {
        generated::bpf_probe_read_user(scratch.data.as_mut_ptr().add(off).cast(), n as u32, base as *const _)
    };
    if rc < 0 {
        bump(counter::READ_FAULT);
        return false;
    }
    let (fill, copied) = (fill + n, copied + n);
    unsafe {
        core::ptr::addr_of_mut!((*st).base).write_volatile(base + n);
        core::ptr::addr_of_mut!((*st).left).write_volatile(left - n);
        core::ptr::addr_of_mut!((*st).copied).write_volatile(copied);
    }
    if fill >= DATA_CHUNK as u64 && copied < total {
        flush(scratch, copied - fill, fill, 0);
        unsafe { core::ptr::addr_of_mut!((*st).fill).write_volatile(0) };
    } else {
        unsafe { core::ptr::addr_of_mut!((*st).fill).write_volatile(fill) };
    }
    true
}

/// Data records do not wake userspace (it drains them on a short timer while
/// capturing) unless the ring fills: a wakeup per record would cost every
/// call a scheduler round trip through the agent.
#[inline(always)]
fn data_wakeup() -> u64 {
    if EVENTS.query(BPF_RB_AVAIL_DATA as u64) >= WAKEUP_AT_BYTES {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

/// Sends the header and `len` bytes of payload as one record.
#[inline(always)]
fn flush(scratch: &mut Scratch, chunk_off: u64, len: u64, flags: u8) {
    if len > DATA_CHUNK as u64 {
        return;
    }
    scratch.head.chunk_off = chunk_off as u32;
    scratch.head.data_len = len as u32;
    scratch.head.flags = flags;
    // Bounded again on a fresh (volatile) load: LLVM folds the callers'
    // checks into one range test on a copy of the value, and verifiers
    // before ~6.13 do not carry such bounds back (6.12 rejected the record
    // size as possibly negative).
    // SAFETY: a field of this CPU's scratch value.
    let len = unsafe { core::ptr::addr_of!(scratch.head.data_len).read_volatile() } as usize;
    if len > DATA_CHUNK {
        return;
    }
    let size = DATA_HEADER_LEN + len;
    scratch.head.header.len = size as u32;
    // SAFETY: `size` <= size_of::<Scratch>(); the record is the header
    // followed by the first `len` payload bytes, contiguous in `Scratch`.
    let bytes = unsafe { core::slice::from_raw_parts((scratch as *const Scratch).cast::<u8>(), size) };
    match EVENTS.output::<[u8]>(bytes, data_wakeup()) {
        Ok(()) => bump(counter::SENT),
        Err(_) => bump(counter::LOST),
    }
}
