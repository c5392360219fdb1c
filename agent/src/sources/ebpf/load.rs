//! Loading `tokenwatch-ebpf` (embedded at build time) and attaching its
//! programs: the table of probes, the always-attached set, and the capture
//! set that is attached and detached at run time (loaded once, verified once).
use std::{io, os::unix::ffi::OsStrExt, path::Path};

use aya::{
    maps::{HashMap, MapData, MapError, PerCpuArray, RingBuf},
    programs::{trace_point::TracePointLinkId, ProgramError, TracePoint},
    Ebpf, EbpfLoader,
};
use tokenwatch_common::{
    config_flags, IoPending, ProbeConfig, TrackedConn, TrackedKey, MAX_TRACKED_PER_PROCESS, SUN_PATH_MAX,
};
use tracing::{debug, info};

use super::errors::{kernel_error, program_error, EbpfError};

/// The object built by `cargo xtask build`; empty when the agent was built
/// without it (see `agent/build.rs`).
pub(super) static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tokenwatch.bpf.o"));

/// When a probe is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    /// From load to stop; a failure to load or attach fails the source.
    Always,
    /// Only while capturing (see `window.rs`); failures disable capture only.
    Capture,
}

/// A program of the object and the tracepoint it is attached to.
#[derive(Debug, Clone, Copy)]
pub(super) struct Probe {
    pub program: &'static str,
    pub category: &'static str,
    pub tracepoint: &'static str,
    pub class: Class,
}

const fn probe(program: &'static str, category: &'static str, tracepoint: &'static str, class: Class) -> Probe {
    Probe { program, category, tracepoint, class }
}

/// Every probe. `io_exit` is one program attached to the eight exits.
pub(super) const PROBES: &[Probe] = &[
    probe("sys_enter_connect", "syscalls", "sys_enter_connect", Class::Always),
    probe("sys_exit_connect", "syscalls", "sys_exit_connect", Class::Always),
    probe("sys_enter_close", "syscalls", "sys_enter_close", Class::Always),
    probe("sched_process_exit", "sched", "sched_process_exit", Class::Always),
    probe("sched_process_exec", "sched", "sched_process_exec", Class::Always),
    probe("io_enter_write", "syscalls", "sys_enter_write", Class::Capture),
    probe("io_enter_writev", "syscalls", "sys_enter_writev", Class::Capture),
    probe("io_enter_sendto", "syscalls", "sys_enter_sendto", Class::Capture),
    probe("io_enter_sendmsg", "syscalls", "sys_enter_sendmsg", Class::Capture),
    probe("io_enter_read", "syscalls", "sys_enter_read", Class::Capture),
    probe("io_enter_readv", "syscalls", "sys_enter_readv", Class::Capture),
    probe("io_enter_recvfrom", "syscalls", "sys_enter_recvfrom", Class::Capture),
    probe("io_enter_recvmsg", "syscalls", "sys_enter_recvmsg", Class::Capture),
    probe("io_exit", "syscalls", "sys_exit_write", Class::Capture),
    probe("io_exit", "syscalls", "sys_exit_writev", Class::Capture),
    probe("io_exit", "syscalls", "sys_exit_sendto", Class::Capture),
    probe("io_exit", "syscalls", "sys_exit_sendmsg", Class::Capture),
    probe("io_exit", "syscalls", "sys_exit_read", Class::Capture),
    probe("io_exit", "syscalls", "sys_exit_readv", Class::Capture),
    probe("io_exit", "syscalls", "sys_exit_recvfrom", Class::Capture),
    probe("io_exit", "syscalls", "sys_exit_recvmsg", Class::Capture),
];

const MAP_EVENTS: &str = "EVENTS";
const MAP_COUNTERS: &str = "COUNTERS";
const MAP_TRACKED: &str = "TRACKED";
const MAP_TRACKED_TGIDS: &str = "TRACKED_TGIDS";
const MAP_IO_PENDING: &str = "IO_PENDING";
const GLOBAL_CONFIG: &str = "CONFIG";
/// Where tracefs is looked for (the order aya uses).
const TRACEFS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// The loaded object with the always-attached probes, and the maps userspace uses.
pub(super) struct Loaded {
    /// Owns the programs and their links: dropping it detaches everything.
    pub ebpf: Ebpf,
    pub events: RingBuf<MapData>,
    pub counters: PerCpuArray<MapData, u64>,
    pub maps: TrackedMaps,
    /// `category/name` of each attached always-probe.
    pub attached: Vec<String>,
    /// `Err(why)` when the capture programs did not load (`unavailable: …`)
    /// or were not asked for (`off …`).
    pub capture: Result<(), String>,
}

/// Loads the object for `socket`, attaches the always-probes and, when
/// `with_capture`, loads (does not attach) the capture programs.
pub(super) fn load(socket: &Path, with_capture: bool) -> Result<Loaded, EbpfError> {
    if OBJECT.is_empty() {
        return Err(EbpfError::NotBuilt);
    }
    let mut config = probe_config(socket, std::process::id())?;
    raise_memlock_rlimit();
    // aya caches the tracefs lookup for the life of the process, so it has
    // to be mounted before the first attach is even tried.
    let tracefs = ensure_tracefs()?;
    if exit_has_group_dead(tracefs) {
        config.flags |= config_flags::EXIT_HAS_GROUP_DEAD;
    }
    let mut ebpf = EbpfLoader::new()
        .override_global(GLOBAL_CONFIG, &config, true)
        .load(OBJECT)
        .map_err(|e| kernel_error("loading the eBPF object (maps)", &e))?;

    let mut attached = Vec::new();
    for p in PROBES.iter().filter(|p| p.class == Class::Always) {
        let tp = load_program(&mut ebpf, p.program)?;
        tp.attach(p.category, p.tracepoint)
            .map_err(|e| kernel_error(&format!("attaching `{}` to {}/{}", p.program, p.category, p.tracepoint), &e))?;
        attached.push(format!("{}/{}", p.category, p.tracepoint));
    }
    let capture = if with_capture {
        PROBES
            .iter()
            .filter(|p| p.class == Class::Capture)
            .try_for_each(|p| load_program(&mut ebpf, p.program).map(drop))
            .map_err(|e| format!("unavailable: {e}"))
    } else {
        Err("off ([ebpf] capture = \"off\")".to_string())
    };

    let events = take_map(&mut ebpf, MAP_EVENTS, RingBuf::try_from)?;
    let counters = take_map(&mut ebpf, MAP_COUNTERS, PerCpuArray::try_from)?;
    let tracked = take_map(&mut ebpf, MAP_TRACKED, HashMap::try_from)?;
    let tgids = take_map(&mut ebpf, MAP_TRACKED_TGIDS, HashMap::try_from)?;
    let pending = take_map(&mut ebpf, MAP_IO_PENDING, HashMap::try_from)?;
    Ok(Loaded { ebpf, events, counters, maps: TrackedMaps { tracked, tgids, pending }, attached, capture })
}

/// The program `name`, loaded (once: programs attached twice share it).
fn load_program<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut TracePoint, EbpfError> {
    let tp: &mut TracePoint = ebpf
        .program_mut(name)
        .ok_or_else(|| EbpfError::Missing(format!("program `{name}`")))?
        .try_into()
        .map_err(|e: ProgramError| kernel_error(&format!("program `{name}`"), &e))?;
    if tp.fd().is_err() {
        tp.load().map_err(|e| program_error(&format!("loading program `{name}`"), e))?;
    }
    Ok(tp)
}

fn take_map<T>(
    ebpf: &mut Ebpf,
    name: &str,
    conv: impl FnOnce(aya::maps::Map) -> Result<T, MapError>,
) -> Result<T, EbpfError> {
    let map = ebpf.take_map(name).ok_or_else(|| EbpfError::Missing(format!("map `{name}`")))?;
    conv(map).map_err(|e| kernel_error(&format!("map `{name}`"), &e))
}

/// Links of the attached capture probes.
pub(super) type CaptureLinks = Vec<(&'static str, TracePointLinkId)>;

/// Attaches every capture probe, or none (what attached is detached again).
/// Exits first and (in [`detach_capture`]) last, so that every enter the
/// probes see has its exit seen too.
pub(super) fn attach_capture(ebpf: &mut Ebpf) -> Result<CaptureLinks, EbpfError> {
    let mut links = Vec::new();
    for p in capture_attach_order() {
        let attached = load_program(ebpf, p.program).and_then(|tp| {
            tp.attach(p.category, p.tracepoint)
                .map_err(|e| kernel_error(&format!("attaching `{}` to {}/{}", p.program, p.category, p.tracepoint), &e))
        });
        match attached {
            Ok(link) => links.push((p.program, link)),
            Err(e) => {
                detach_capture(ebpf, links);
                return Err(e);
            }
        }
    }
    Ok(links)
}

/// The capture probes, exits first.
pub(super) fn capture_attach_order() -> Vec<&'static Probe> {
    let capture = PROBES.iter().filter(|p| p.class == Class::Capture);
    let (exits, enters): (Vec<&Probe>, Vec<&Probe>) = capture.partition(|p| p.tracepoint.starts_with("sys_exit_"));
    exits.into_iter().chain(enters).collect()
}

/// Detaches in the reverse order of [`attach_capture`]: enters first.
pub(super) fn detach_capture(ebpf: &mut Ebpf, links: CaptureLinks) {
    for (program, link) in links.into_iter().rev() {
        let detached =
            ebpf.program_mut(program).and_then(|p| <&mut TracePoint>::try_from(p).ok()).map(|tp| tp.detach(link));
        if let Some(Err(e)) = detached {
            debug!(program, error = %e, "detaching a capture probe");
        }
    }
}

/// The kernel's tracked-connection maps, for discovery and cleanup.
pub(super) struct TrackedMaps {
    tracked: HashMap<MapData, TrackedKey, TrackedConn>,
    tgids: HashMap<MapData, u32, u64>,
    pending: HashMap<MapData, u64, IoPending>,
}

const BPF_NOEXIST: u64 = 1;

impl TrackedMaps {
    /// Tracks a connection found by discovery. `Ok(false)`: already tracked
    /// (the connect probe was faster) or the process is at its limit.
    pub(super) fn seed(&mut self, tgid: u32, fd: i32) -> Result<bool, MapError> {
        let count = self.tgids.get(&tgid, 0).unwrap_or(0);
        if count >= u64::from(MAX_TRACKED_PER_PROCESS) {
            return Ok(false);
        }
        match self.tracked.insert(TrackedKey { tgid, fd }, TrackedConn::default(), BPF_NOEXIST) {
            Ok(()) => {}
            Err(e) if errno(&e) == Some(libc::EEXIST) => return Ok(false),
            Err(e) => return Err(e),
        }
        // Not atomic with the probes' updates of the same process; a connect
        // racing this seeding may leave the count one off until exit.
        let count = self.tgids.get(&tgid, 0).unwrap_or(0);
        self.tgids.insert(tgid, count + 1, 0)?;
        Ok(true)
    }

    /// Stops tracking a connection the kernel did not see close (revalidation).
    pub(super) fn untrack(&mut self, tgid: u32, fd: i32) {
        if self.tracked.remove(&TrackedKey { tgid, fd }).is_ok() {
            if let Ok(count) = self.tgids.get(&tgid, 0) {
                let _ = self.tgids.insert(tgid, count.saturating_sub(1), 0);
            }
        }
    }

    /// Forgets the syscalls in flight; call once the capture probes are
    /// detached (a syscall blocked across the detach left its entry).
    pub(super) fn clear_pending(&mut self) {
        let keys: Vec<u64> = self.pending.keys().filter_map(Result::ok).collect();
        for k in keys {
            let _ = self.pending.remove(&k);
        }
    }

    /// Removes the entries of a process that exited or exec'd (the probe
    /// already dropped its count).
    pub(super) fn forget(&mut self, tgid: u32, fds: impl IntoIterator<Item = i32>) {
        for fd in fds {
            let _ = self.tracked.remove(&TrackedKey { tgid, fd });
        }
    }
}

fn errno(e: &MapError) -> Option<i32> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            return io.raw_os_error();
        }
        cur = err.source();
    }
    None
}

/// The probes' load-time config for `socket`, excluding the agent (`self_tgid`).
pub(super) fn probe_config(socket: &Path, self_tgid: u32) -> Result<ProbeConfig, EbpfError> {
    let bytes = socket.as_os_str().as_bytes();
    let bad = |reason| Err(EbpfError::SocketPath { path: socket.to_path_buf(), reason });
    if bytes.is_empty() {
        return bad("empty path");
    }
    if bytes.len() > SUN_PATH_MAX {
        return bad("longer than sun_path (108 bytes)");
    }
    if bytes.contains(&0) {
        return bad("contains a NUL byte");
    }
    let mut config = ProbeConfig::empty();
    config.self_tgid = self_tgid;
    config.socket_path_len = bytes.len() as u32;
    config.socket_path[..bytes.len()].copy_from_slice(bytes);
    Ok(config)
}

/// Whether `sched_process_exit` has `group_dead` where the probe reads it.
fn exit_has_group_dead(tracefs: &Path) -> bool {
    let format = std::fs::read_to_string(tracefs.join("events/sched/sched_process_exit/format")).unwrap_or_default();
    format_has_group_dead(&format)
}

pub(super) fn format_has_group_dead(format: &str) -> bool {
    let want = format!("offset:{};", tokenwatch_common::EXIT_GROUP_DEAD_OFFSET);
    format.lines().any(|l| l.contains("group_dead;") && l.contains(&want) && l.contains("size:1;"))
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; newer ones use
/// memcg, so failing here (EPERM without CAP_SYS_RESOURCE) is usually harmless.
fn raise_memlock_rlimit() {
    let rlim = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: valid pointer to an rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) } != 0 {
        debug!(error = %io::Error::last_os_error(), "setrlimit(RLIMIT_MEMLOCK) failed (harmless on kernels >= 5.11)");
    }
}

/// Makes sure tracefs is mounted, mounting it at /sys/kernel/tracing if not
/// (systemd normally does; minimal hosts and containers may not). Returns it.
fn ensure_tracefs() -> Result<&'static Path, EbpfError> {
    let mounted = |p: &str| std::fs::read_dir(p).map(|mut d| d.next().is_some()).unwrap_or(false);
    if let Some(p) = TRACEFS.iter().find(|p| mounted(p)) {
        return Ok(Path::new(p));
    }
    let c = |s: &str| std::ffi::CString::new(s).expect("no NUL");
    let (src, target, fstype) = (c("tracefs"), c(TRACEFS[0]), c("tracefs"));
    // SAFETY: valid NUL-terminated strings, no data argument.
    let rc = unsafe { libc::mount(src.as_ptr(), target.as_ptr(), fstype.as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        return Err(EbpfError::Tracefs(io::Error::last_os_error()));
    }
    info!(path = TRACEFS[0], "mounted tracefs (it was not mounted)");
    Ok(Path::new(TRACEFS[0]))
}
