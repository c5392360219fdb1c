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
    macros::{map, tracepoint},
    maps::{LruHashMap, PerCpuArray},
    programs::TracePointContext,
};
use tokenwatch_common::{
    counter, data_flags, direction, op, shape, DataHeader, EventKind, IoPending, TrackedKey, DATA_CHUNK,
    DATA_HEADER_LEN, MAX_CAPTURE, MAX_IOV,
};

use crate::{bump, header, ktime_ns, tracked, EVENTS, TRACKED};

// Offsets in /sys/kernel/tracing/events/syscalls/sys_enter_*/format: every
// argument is widened to 8 bytes. write/read/sendto/recvfrom (fd, buf, len),
// writev/readv (fd, vec, vlen), sendmsg/recvmsg (fd, msg, flags) agree on
// the first three; recvfrom's flags come fourth.
const ARG_FD: usize = 16;
const ARG_BUF: usize = 24;
const ARG_LEN: usize = 32;
const ARG_RECVFROM_FLAGS: usize = 40;
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

/// Attached to every `sys_exit_*` of the eight syscalls.
#[tracepoint]
pub fn io_exit(ctx: TracePointContext) -> u32 {
    let _ = try_exit(&ctx);
    0
}

fn try_enter(ctx: &TracePointContext, shape: u8, dir: u8, op: u8) -> Result<(), i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if !tracked::tgid_is_tracked(tgid) {
        return Ok(());
    }
    // SAFETY (all ctx reads): offsets from the tracepoints' format files.
    let fd = unsafe { ctx.read_at::<u64>(ARG_FD) }? as i32;
    if TRACKED.get_ptr(&TrackedKey { tgid, fd }).is_none() {
        return Ok(());
    }
    let mut buf = unsafe { ctx.read_at::<u64>(ARG_BUF) }?;
    let mut count = unsafe { ctx.read_at::<u64>(ARG_LEN) }?;
    match op {
        op::RECVFROM => {
            if unsafe { ctx.read_at::<u64>(ARG_RECVFROM_FLAGS) }? & MSG_PEEK != 0 {
                return Ok(()); // the bytes stay queued and are read again
            }
        }
        op::SENDMSG | op::RECVMSG => {
            if op == op::RECVMSG && count & MSG_PEEK != 0 {
                return Ok(());
            }
            // msg_iov and msg_iovlen of the caller's struct user_msghdr
            // SAFETY: the helper faults safely on bad user pointers.
            let iov = unsafe { aya_ebpf::helpers::bpf_probe_read_user((buf + MSGHDR_IOV) as *const [u64; 2]) }?;
            buf = iov[0];
            count = iov[1];
        }
        _ => {}
    }
    let nr = unsafe { ctx.read_at::<i32>(SYSCALL_NR) }?;
    let pending = IoPending { buf, count, fd, nr, shape, direction: dir, op, _pad: [0; 5] };
    IO_PENDING.insert(&pid_tgid, &pending, 0)?;
    Ok(())
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
    if ret <= 0 {
        return Ok(()); // error, EAGAIN or EOF: nothing moved
    }
    let tgid = (pid_tgid >> 32) as u32;
    // Closed by another thread meanwhile: the bytes are not ours to report.
    let Some(conn) = TRACKED.get_ptr_mut(&TrackedKey { tgid, fd: p.fd }) else { return Ok(()) };
    // SAFETY: a valid map value pointer; concurrent syscalls on one
    // connection in one direction (not done by gRPC clients) could race here.
    let stream_off = unsafe {
        let off = if p.direction == direction::TX { &mut (*conn).tx_off } else { &mut (*conn).rx_off };
        let start = *off;
        *off = start.wrapping_add(ret as u64);
        start
    };
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else { return Ok(()) };
    // SAFETY: the per-CPU scratch value is ours for this program's run
    // (tracepoint programs do not nest on one CPU).
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
    copy_out(scratch, &p, ret as u64);
    Ok(())
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
        st.write_volatile(CopyState { copied: 0, fill: 0, base, left, next_iov });
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
    let size = DATA_HEADER_LEN + len as usize;
    scratch.head.header.len = size as u32;
    // SAFETY: `size` <= size_of::<Scratch>(); the record is the header
    // followed by the first `len` payload bytes, contiguous in `Scratch`.
    let bytes = unsafe { core::slice::from_raw_parts((scratch as *const Scratch).cast::<u8>(), size) };
    match EVENTS.output::<[u8]>(bytes, data_wakeup()) {
        Ok(()) => bump(counter::SENT),
        Err(_) => bump(counter::LOST),
    }
}
