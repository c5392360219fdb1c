//! Syscall arguments, read the same way whichever hook fired: from a
//! syscall tracepoint's record, or from the `struct pt_regs` a syscall
//! wrapper (`__x64_sys_*`) receives when the fentry/fexit programs run.
//!
//! The two hook kinds run the same program bodies (`connect`, `io`,
//! `process`); only where the arguments come from differs.
use aya_ebpf::{helpers::bpf_probe_read_kernel, programs::TracePointContext};

use crate::config_syscall_arg_offset;

/// Where a program reads syscall argument `n` (0..4) from.
pub trait SyscallArgs {
    fn arg(&self, n: usize) -> Result<u64, i32>;
}

/// `/sys/kernel/tracing/events/syscalls/sys_enter_*/format`: `__syscall_nr`
/// at 8, then every argument widened to 8 bytes from offset 16.
const TP_FIRST_ARG: usize = 16;

impl SyscallArgs for TracePointContext {
    #[inline(always)]
    fn arg(&self, n: usize) -> Result<u64, i32> {
        // SAFETY: offsets from the tracepoints' format files (stable ABI).
        unsafe { self.read_at::<u64>(TP_FIRST_ARG + 8 * n) }
    }
}

/// The user registers saved at syscall entry, as passed to the syscall
/// wrapper. Argument offsets come from the running kernel's BTF
/// (`ProbeConfig::syscall_arg_offsets`), never from constants.
pub struct Regs(pub *const u8);

impl SyscallArgs for Regs {
    #[inline(always)]
    fn arg(&self, n: usize) -> Result<u64, i32> {
        let off = config_syscall_arg_offset(n);
        // SAFETY: a kernel pointer the hook was given; the helper faults safely.
        unsafe { bpf_probe_read_kernel(self.0.wrapping_add(off).cast::<u64>()) }
    }
}
