//! Loading `tokenwatch-ebpf` (embedded at build time) and attaching its
//! programs: the always-attached groups, and the groups attached and
//! detached at run time (loaded once, verified once, at load): capture, and
//! connect/close in `windows` mode on syscall tracepoints. Which hook each
//! group runs on is chosen here, from what the kernel allows (the table and
//! the rules: `hooks.rs`).
use std::{io, os::unix::ffi::OsStrExt, path::Path};

use aya::{
    maps::{HashMap, MapData, MapError, PerCpuArray, RingBuf},
    programs::{
        fentry::FEntryLinkId, fexit::FExitLinkId, trace_point::TracePointLinkId, FEntry, FExit, ProgramError,
        TracePoint,
    },
    Ebpf, EbpfLoader,
};
use tokenwatch_common::{
    config_flags, ProbeConfig, SUN_PATH_MAX,
};
use tracing::{debug, info, warn};

use super::{
    errors::{kernel_error, program_error, EbpfError},
    hooks::{self, Choice, Group, Hook, Kind, Probe},
    maps::TrackedMaps,
    window::connections_on_demand,
};
use crate::config::{CaptureMode, HookPreference};

/// The object built by `cargo xtask build`; empty when the agent was built
/// without it (see `agent/build.rs`).
pub(super) static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tokenwatch.bpf.o"));

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
    /// Label of each attached always-probe (`fentry/__x64_sys_connect`, `sched/sched_process_exit`).
    pub attached: Vec<String>,
    /// connect/close are loaded but attached only with the capture window
    /// (`windows` on syscall tracepoints, see `window::connections_on_demand`).
    pub connections_on_demand: bool,
    /// `Err(why)` when the capture programs did not load (`unavailable: …`)
    /// or were not asked for (`off …`).
    pub capture: Result<(), String>,
    /// What the connect/close and the capture probes run on.
    pub connections_hooks: Choice,
    pub capture_hooks: Choice,
}

/// Loads the object for `socket`, attaches the always-probes and, unless
/// `mode` is off, loads (does not attach) the capture programs — on
/// fentry/fexit where the kernel allows it and `pref` does not forbid it,
/// else on syscall tracepoints. In `windows` mode connect/close on syscall
/// tracepoints are loaded (verified: failing that fails the load, as an
/// attach does) and left detached.
pub(super) fn load(socket: &Path, mode: CaptureMode, pref: HookPreference) -> Result<Loaded, EbpfError> {
    let with_capture = mode != CaptureMode::Off;
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
    let tramps = hooks::trampolines(pref);
    if let Ok(t) = &tramps {
        config.syscall_arg_offsets = t.arg_offsets;
    }
    let btf = tramps.as_ref().ok().map(|t| &t.btf);
    let mut ebpf = EbpfLoader::new()
        .override_global(GLOBAL_CONFIG, &config, true)
        .load(OBJECT)
        .map_err(|e| kernel_error("loading the eBPF object (maps)", &e))?;

    let mut attached = Vec::new();
    let connections_hooks = prefer_trampolines(&tramps, |btf| {
        let links = attach_group(&mut ebpf, Group::Connections, Kind::Trampoline, Some(btf))?;
        attached.extend(links);
        Ok(())
    });
    // Decided for good once the capture programs loaded (or not); verified now either way.
    let maybe_on_demand = connections_on_demand(mode, connections_hooks.kind, true);
    if maybe_on_demand {
        load_group(&mut ebpf, Group::Connections, Kind::Tracepoint, None)?;
    } else if connections_hooks.kind == Kind::Tracepoint {
        attached.extend(attach_group(&mut ebpf, Group::Connections, Kind::Tracepoint, None)?);
    }
    attached.extend(attach_group(&mut ebpf, Group::Process, Kind::Tracepoint, None)?);

    let (capture, capture_hooks) = if with_capture {
        // attached once and detached again: a kernel that loads trampolines
        // but refuses to attach them falls back now, not at the first window
        let choice = prefer_trampolines(&tramps, |btf| {
            let links = attach_all(&mut ebpf, &hooks::selected(Group::Capture, Kind::Trampoline), Some(btf))?;
            detach(&mut ebpf, links);
            Ok(())
        });
        let loaded = match choice.kind {
            Kind::Trampoline => Ok(()),
            Kind::Tracepoint => load_group(&mut ebpf, Group::Capture, Kind::Tracepoint, btf),
        };
        (loaded.map_err(|e| format!("unavailable: {e}")), choice)
    } else {
        (Err("off ([ebpf] capture = \"off\")".to_string()), Choice { kind: Kind::Tracepoint, fallback: None })
    };
    let connections_on_demand = connections_on_demand(mode, connections_hooks.kind, capture.is_ok());
    if maybe_on_demand && !connections_on_demand {
        // no capture window will ever open: connect/close stay attached, as in `off`
        attached.extend(attach_group(&mut ebpf, Group::Connections, Kind::Tracepoint, None)?);
    }

    let events = take_map(&mut ebpf, MAP_EVENTS, RingBuf::try_from)?;
    let counters = take_map(&mut ebpf, MAP_COUNTERS, PerCpuArray::try_from)?;
    let tracked = take_map(&mut ebpf, MAP_TRACKED, HashMap::try_from)?;
    let tgids = take_map(&mut ebpf, MAP_TRACKED_TGIDS, HashMap::try_from)?;
    let pending = take_map(&mut ebpf, MAP_IO_PENDING, HashMap::try_from)?;
    Ok(Loaded {
        ebpf,
        events,
        counters,
        maps: TrackedMaps { tracked, tgids, pending },
        attached,
        connections_on_demand,
        capture,
        connections_hooks,
        capture_hooks,
    })
}

/// Runs `with` when trampolines are available; the choice says whether
/// they are used, and if not, why (what the kernel said, logged once here).
fn prefer_trampolines(
    tramps: &Result<hooks::Trampolines, String>,
    with: impl FnOnce(&aya::Btf) -> Result<(), EbpfError>,
) -> Choice {
    let tramp = Choice { kind: Kind::Trampoline, fallback: None };
    let fallback = |why: String| Choice { kind: Kind::Tracepoint, fallback: Some(why) };
    match tramps {
        Err(why) => {
            debug!(reason = %why, "fentry/fexit not available; using syscall tracepoints");
            fallback(why.clone())
        }
        Ok(t) => match with(&t.btf) {
            Ok(()) => tramp,
            Err(e) => {
                warn!(error = %e, "fentry/fexit probes refused; using syscall tracepoints");
                fallback(e.to_string())
            }
        },
    }
}

/// Loads every program of the group (a program attached twice is loaded once).
fn load_group(ebpf: &mut Ebpf, group: Group, kind: Kind, btf: Option<&aya::Btf>) -> Result<(), EbpfError> {
    hooks::selected(group, kind).into_iter().try_for_each(|p| load_probe(ebpf, p, btf))
}

/// Attaches every probe of the group, or none (what attached is detached
/// again); the labels of what attached.
fn attach_group(ebpf: &mut Ebpf, group: Group, kind: Kind, btf: Option<&aya::Btf>) -> Result<Vec<String>, EbpfError> {
    let links = attach_all(ebpf, &hooks::selected(group, kind), btf)?;
    Ok(links.iter().map(|(p, _)| p.label()).collect())
}

fn attach_all(ebpf: &mut Ebpf, probes: &[&'static Probe], btf: Option<&aya::Btf>) -> Result<Links, EbpfError> {
    let mut links = Vec::new();
    for p in probes {
        match load_probe(ebpf, p, btf).and_then(|()| attach_probe(ebpf, p)) {
            Ok(link) => links.push((*p, link)),
            Err(e) => {
                detach(ebpf, links);
                return Err(e);
            }
        }
    }
    Ok(links)
}

/// Loads `p`'s program unless loaded already.
fn load_probe(ebpf: &mut Ebpf, p: &Probe, btf: Option<&aya::Btf>) -> Result<(), EbpfError> {
    let name = p.program;
    let prog = ebpf.program_mut(name).ok_or_else(|| EbpfError::Missing(format!("program `{name}`")))?;
    let wrong_type = |e: ProgramError| kernel_error(&format!("program `{name}`"), &e);
    let stage = || format!("loading program `{name}` ({})", p.label());
    let no_btf = || EbpfError::Missing("kernel BTF for fentry/fexit".into());
    match p.hook {
        Hook::Tracepoint { .. } => {
            let tp: &mut TracePoint = prog.try_into().map_err(wrong_type)?;
            if tp.fd().is_err() {
                tp.load().map_err(|e| program_error(&stage(), e))?;
            }
        }
        Hook::Fentry(sc) => {
            let f: &mut FEntry = prog.try_into().map_err(wrong_type)?;
            if f.fd().is_err() {
                f.load(&hooks::wrapper(sc), btf.ok_or_else(no_btf)?).map_err(|e| program_error(&stage(), e))?;
            }
        }
        Hook::Fexit(sc) => {
            let f: &mut FExit = prog.try_into().map_err(wrong_type)?;
            if f.fd().is_err() {
                f.load(&hooks::wrapper(sc), btf.ok_or_else(no_btf)?).map_err(|e| program_error(&stage(), e))?;
            }
        }
    }
    Ok(())
}

/// A link of an attached probe, whichever kind.
pub(super) enum Link {
    Tracepoint(TracePointLinkId),
    Fentry(FEntryLinkId),
    Fexit(FExitLinkId),
}

/// Attaches `p`'s (loaded) program.
fn attach_probe(ebpf: &mut Ebpf, p: &Probe) -> Result<Link, EbpfError> {
    let name = p.program;
    let prog = ebpf.program_mut(name).ok_or_else(|| EbpfError::Missing(format!("program `{name}`")))?;
    let fail = |e: ProgramError| kernel_error(&format!("attaching `{name}` to {}", p.label()), &e);
    match p.hook {
        Hook::Tracepoint { category, name: tp_name } => {
            let tp: &mut TracePoint = prog.try_into().map_err(fail)?;
            tp.attach(category, tp_name).map(Link::Tracepoint).map_err(fail)
        }
        Hook::Fentry(_) => {
            let f: &mut FEntry = prog.try_into().map_err(fail)?;
            f.attach().map(Link::Fentry).map_err(fail)
        }
        Hook::Fexit(_) => {
            let f: &mut FExit = prog.try_into().map_err(fail)?;
            f.attach().map(Link::Fexit).map_err(fail)
        }
    }
}

fn take_map<T>(
    ebpf: &mut Ebpf,
    name: &str,
    conv: impl FnOnce(aya::maps::Map) -> Result<T, MapError>,
) -> Result<T, EbpfError> {
    let map = ebpf.take_map(name).ok_or_else(|| EbpfError::Missing(format!("map `{name}`")))?;
    conv(map).map_err(|e| kernel_error(&format!("map `{name}`"), &e))
}

/// Links of probes attached at run time, in attach order.
pub(super) type Links = Vec<(&'static Probe, Link)>;

/// Attaches every (loaded) probe of `group` on `kind`, or none.
pub(super) fn attach_links(ebpf: &mut Ebpf, group: Group, kind: Kind) -> Result<Links, EbpfError> {
    attach_all(ebpf, &hooks::selected(group, kind), None)
}

/// Detaches in the reverse order of attaching: enters first.
pub(super) fn detach(ebpf: &mut Ebpf, links: Links) {
    for (p, link) in links.into_iter().rev() {
        let Some(prog) = ebpf.program_mut(p.program) else { continue };
        let detached = match link {
            Link::Tracepoint(l) => <&mut TracePoint>::try_from(prog).and_then(|tp| tp.detach(l)),
            Link::Fentry(l) => <&mut FEntry>::try_from(prog).and_then(|f| f.detach(l)),
            Link::Fexit(l) => <&mut FExit>::try_from(prog).and_then(|f| f.detach(l)),
        };
        if let Err(e) = detached {
            debug!(program = p.program, error = %e, "detaching a probe");
        }
    }
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
