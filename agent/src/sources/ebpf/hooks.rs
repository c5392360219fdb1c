//! The table of probes — every program of the object, the hook it runs on,
//! and what that hook needs from the kernel — and the choice between the
//! two hook kinds, made at load from what the running kernel offers.
//!
//! | group       | preferred (needs)                                          | fallback                              |
//! |-------------|------------------------------------------------------------|---------------------------------------|
//! | connections | fentry+fexit `__x64_sys_connect`, fentry `__x64_sys_close` | `syscalls/sys_{enter,exit}_connect`, `sys_enter_close` |
//! | capture     | fexit on the 8 `__x64_sys_{write,…,recvmsg}` wrappers      | `syscalls/sys_enter_*` + `sys_exit_*` |
//! | process     | —                                                          | `sched/sched_process_{exit,exec}`     |
//!
//! Preferred hooks need: x86_64, kernel BTF at `/sys/kernel/btf/vmlinux`,
//! each wrapper in it, `struct pt_regs` in it (argument offsets are read
//! from there, never assumed), and a kernel that loads and attaches
//! BPF_PROG_TYPE_TRACING programs (some refuse them by policy: EPERM).
//! Why prefer them: any enabled syscall tracepoint moves every syscall of
//! every process to the kernel's slow path (measured in
//! `agent-ebpf/src/probes/io.rs`); a trampoline on one function costs the
//! callers of every other function nothing. sched tracepoints are not
//! syscall tracepoints and cost nothing between exits/execs.
//!
//! One difference in coverage: the trampolines hook the 64-bit wrappers only,
//! so a 32-bit (compat) client's syscalls (`__ia32_sys_*`) are seen on
//! tracepoints but not on trampolines. Clients of token-agent are 64-bit.
use std::path::Path;

use crate::config::HookPreference;

/// Where a program runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hook {
    /// `category/name` under tracefs `events/`.
    Tracepoint { category: &'static str, name: &'static str },
    /// fentry on the syscall wrapper for this syscall (`__x64_sys_<name>`).
    Fentry(&'static str),
    /// fexit on the syscall wrapper for this syscall.
    Fexit(&'static str),
}

/// Probes chosen and attached together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Group {
    /// connect/close: attached from load to stop.
    Connections,
    /// Exit/exec of processes: attached from load to stop, tracepoints only.
    Process,
    /// The data probes: attached only while capturing (see `window.rs`).
    Capture,
}

/// The two ways a group can be hooked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// fentry/fexit trampolines on syscall wrappers.
    Trampoline,
    Tracepoint,
}

/// A program of the object and where it runs.
#[derive(Debug, Clone, Copy)]
pub(super) struct Probe {
    pub program: &'static str,
    pub hook: Hook,
    pub group: Group,
}

impl Probe {
    pub fn kind(&self) -> Kind {
        match self.hook {
            Hook::Tracepoint { .. } => Kind::Tracepoint,
            Hook::Fentry(_) | Hook::Fexit(_) => Kind::Trampoline,
        }
    }

    /// How the hook reads in the status detail: `sched/sched_process_exit`,
    /// `fexit/__x64_sys_write`.
    pub fn label(&self) -> String {
        match self.hook {
            Hook::Tracepoint { category, name } => format!("{category}/{name}"),
            Hook::Fentry(sc) => format!("fentry/{}", wrapper(sc)),
            Hook::Fexit(sc) => format!("fexit/{}", wrapper(sc)),
        }
    }
}

const fn tp(program: &'static str, category: &'static str, name: &'static str, group: Group) -> Probe {
    Probe { program, hook: Hook::Tracepoint { category, name }, group }
}
const fn tramp(program: &'static str, hook: Hook, group: Group) -> Probe {
    Probe { program, hook, group }
}

use Group::{Capture, Connections, Process};

/// Every probe. `io_exit` is one program attached to the eight exits.
pub(super) const PROBES: &[Probe] = &[
    tramp("fentry_connect", Hook::Fentry("connect"), Connections),
    tramp("fexit_connect", Hook::Fexit("connect"), Connections),
    tramp("fentry_close", Hook::Fentry("close"), Connections),
    tp("sys_enter_connect", "syscalls", "sys_enter_connect", Connections),
    tp("sys_exit_connect", "syscalls", "sys_exit_connect", Connections),
    tp("sys_enter_close", "syscalls", "sys_enter_close", Connections),
    tp("sched_process_exit", "sched", "sched_process_exit", Process),
    tp("sched_process_exec", "sched", "sched_process_exec", Process),
    tramp("fexit_write", Hook::Fexit("write"), Capture),
    tramp("fexit_writev", Hook::Fexit("writev"), Capture),
    tramp("fexit_sendto", Hook::Fexit("sendto"), Capture),
    tramp("fexit_sendmsg", Hook::Fexit("sendmsg"), Capture),
    tramp("fexit_read", Hook::Fexit("read"), Capture),
    tramp("fexit_readv", Hook::Fexit("readv"), Capture),
    tramp("fexit_recvfrom", Hook::Fexit("recvfrom"), Capture),
    tramp("fexit_recvmsg", Hook::Fexit("recvmsg"), Capture),
    tp("io_enter_write", "syscalls", "sys_enter_write", Capture),
    tp("io_enter_writev", "syscalls", "sys_enter_writev", Capture),
    tp("io_enter_sendto", "syscalls", "sys_enter_sendto", Capture),
    tp("io_enter_sendmsg", "syscalls", "sys_enter_sendmsg", Capture),
    tp("io_enter_read", "syscalls", "sys_enter_read", Capture),
    tp("io_enter_readv", "syscalls", "sys_enter_readv", Capture),
    tp("io_enter_recvfrom", "syscalls", "sys_enter_recvfrom", Capture),
    tp("io_enter_recvmsg", "syscalls", "sys_enter_recvmsg", Capture),
    tp("io_exit", "syscalls", "sys_exit_write", Capture),
    tp("io_exit", "syscalls", "sys_exit_writev", Capture),
    tp("io_exit", "syscalls", "sys_exit_sendto", Capture),
    tp("io_exit", "syscalls", "sys_exit_sendmsg", Capture),
    tp("io_exit", "syscalls", "sys_exit_read", Capture),
    tp("io_exit", "syscalls", "sys_exit_readv", Capture),
    tp("io_exit", "syscalls", "sys_exit_recvfrom", Capture),
    tp("io_exit", "syscalls", "sys_exit_recvmsg", Capture),
];

/// The probes of `group` hooked by `kind` (process probes whatever the kind),
/// in attach order: exits before enters, so that every enter a probe sees has
/// its exit seen too (detach in reverse).
pub(super) fn selected(group: Group, kind: Kind) -> Vec<&'static Probe> {
    let chosen = PROBES.iter().filter(|p| p.group == group && (group == Group::Process || p.kind() == kind));
    let (exits, enters): (Vec<_>, Vec<_>) = chosen.partition(|p| match p.hook {
        Hook::Tracepoint { name, .. } => name.starts_with("sys_exit_"),
        Hook::Fexit(_) => true,
        Hook::Fentry(_) => false,
    });
    exits.into_iter().chain(enters).collect()
}

/// Syscall-wrapper prefix and the `struct pt_regs` members holding syscall
/// arguments 0..4, per architecture (the syscall ABI; the members' offsets
/// come from BTF).
#[cfg(target_arch = "x86_64")]
const ARCH: Option<(&str, [&str; 4])> = Some(("__x64_sys_", ["di", "si", "dx", "r10"]));
#[cfg(not(target_arch = "x86_64"))]
const ARCH: Option<(&str, [&str; 4])> = None;

/// The kernel function a trampoline probe hooks.
pub(super) fn wrapper(syscall: &str) -> String {
    format!("{}{syscall}", ARCH.map_or("__sys_", |a| a.0))
}

const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// What trampoline probes need, found in the running kernel.
pub(super) struct Trampolines {
    /// For aya's program loads (attach targets are looked up in it).
    pub btf: aya::Btf,
    /// `ProbeConfig::syscall_arg_offsets`.
    pub arg_offsets: [u16; 4],
}

/// Whether this kernel offers what the trampoline probes need (short of
/// loading them: a kernel may still refuse that); `Err` says why not.
pub(super) fn trampolines(pref: HookPreference) -> Result<Trampolines, String> {
    if pref == HookPreference::Tracepoint {
        return Err("[ebpf] hooks = \"tracepoint\"".into());
    }
    let Some((_, regs)) = ARCH else {
        return Err(format!("no syscall-wrapper hooks for {}", std::env::consts::ARCH));
    };
    if !Path::new(VMLINUX_BTF).exists() {
        return Err(format!("no kernel BTF ({VMLINUX_BTF})"));
    }
    let btf = btf_rs::Btf::from_file(VMLINUX_BTF).map_err(|e| format!("reading {VMLINUX_BTF}: {e}"))?;
    let arg_offsets = arg_offsets(&struct_members(&btf, "pt_regs")?, regs)?;
    // each wrapper once (fentry and fexit may share one)
    let wrappers: std::collections::BTreeSet<String> = PROBES
        .iter()
        .filter_map(|p| match p.hook {
            Hook::Fentry(sc) | Hook::Fexit(sc) => Some(wrapper(sc)),
            Hook::Tracepoint { .. } => None,
        })
        .collect();
    for f in &wrappers {
        first_arg_is_struct(&btf, f)?;
    }
    let btf = aya::Btf::from_sys_fs().map_err(|e| format!("reading {VMLINUX_BTF}: {e}"))?;
    Ok(Trampolines { btf, arg_offsets })
}

/// `func` is a function in the kernel's BTF whose argument is a pointer to
/// a complete struct. The program reads `regs->di` etc. through it; verifiers of
/// kernels whose BTF has `struct pt_regs` only forward-declared in the
/// wrapper's signature (5.10: "arg0 type FWD is not a struct") refuse any
/// access to it.
pub(super) fn first_arg_is_struct(btf: &btf_rs::Btf, func: &str) -> Result<(), String> {
    use btf_rs::Type;
    let fwd = || format!("kernel BTF declares {func}'s argument as a pointer to an incomplete type");
    let ids = btf.resolve_ids_by_name(func).unwrap_or_default();
    let Some(Type::Func(f)) = ids.into_iter().filter_map(|id| btf.resolve_type_by_id(id).ok()).find(|t| matches!(t, Type::Func(_)))
    else {
        return Err(format!("kernel BTF has no function {func}"));
    };
    let Ok(Type::FuncProto(proto)) = btf.resolve_chained_type(&f) else { return Err(fwd()) };
    let Some(arg) = proto.parameters.first() else { return Err(fwd()) };
    let mut t = btf.resolve_chained_type(arg).map_err(|_| fwd())?;
    // the pointer, then any modifiers the verifier skips too (typedef,
    // const, volatile, restrict, type tags), must end at a struct
    for _ in 0..8 {
        t = match &t {
            Type::Struct(_) => return Ok(()),
            Type::Ptr(p) => btf.resolve_chained_type(p),
            Type::Const(c) => btf.resolve_chained_type(c),
            Type::Volatile(v) | Type::Restrict(v) => btf.resolve_chained_type(v),
            Type::Typedef(d) => btf.resolve_chained_type(d),
            Type::TypeTag(tag) => btf.resolve_chained_type(tag),
            _ => return Err(fwd()),
        }
        .map_err(|_| fwd())?;
    }
    Err(fwd())
}

/// (name, bit offset) of each member of `struct name`.
fn struct_members(btf: &btf_rs::Btf, name: &str) -> Result<Vec<(String, u32)>, String> {
    let types = btf.resolve_types_by_name(name).map_err(|e| format!("struct {name} in kernel BTF: {e}"))?;
    let Some(btf_rs::Type::Struct(s)) = types.into_iter().find(|t| matches!(t, btf_rs::Type::Struct(_))) else {
        return Err(format!("kernel BTF has no struct {name}"));
    };
    Ok(s.members.iter().map(|m| (btf.resolve_name(m).unwrap_or_default(), m.bit_offset())).collect())
}

/// Byte offsets of the argument registers `regs` among `members`.
pub(super) fn arg_offsets(members: &[(String, u32)], regs: [&str; 4]) -> Result<[u16; 4], String> {
    let mut out = [0u16; 4];
    for (slot, reg) in out.iter_mut().zip(regs) {
        let Some((_, bits)) = members.iter().find(|(n, _)| n == reg) else {
            return Err(format!("struct pt_regs has no member {reg}"));
        };
        if bits % 64 != 0 {
            return Err(format!("struct pt_regs member {reg} is not 8-byte aligned (bit {bits})"));
        }
        *slot = u16::try_from(bits / 8).map_err(|_| format!("struct pt_regs member {reg} beyond 64 KiB"))?;
    }
    Ok(out)
}

/// What a group ended up on, and why not on the preferred kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Choice {
    pub kind: Kind,
    /// Why not trampolines, when `kind` is `Tracepoint`.
    pub fallback: Option<String>,
}

impl Choice {
    /// `connect/close via fentry/fexit`, `capture via syscall tracepoints
    /// (fentry/fexit: <why not>)` — what `/status` shows.
    pub fn describe(&self, what: &str) -> String {
        match (self.kind, &self.fallback) {
            (Kind::Trampoline, _) => format!("{what} via fentry/fexit"),
            (Kind::Tracepoint, None) => format!("{what} via syscall tracepoints"),
            (Kind::Tracepoint, Some(why)) => format!("{what} via syscall tracepoints (fentry/fexit: {why})"),
        }
    }
}
