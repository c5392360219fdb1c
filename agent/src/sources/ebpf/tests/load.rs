//! The probe table, load-time config, hook choice, and error messages.
use super::*;

#[test]
fn probe_config_holds_the_path() {
    let c = probe_config(Path::new("/run/token-agent.sock"), 77).unwrap();
    assert_eq!(c.self_tgid, 77);
    assert_eq!(c.socket_path_len, 21);
    assert_eq!(&c.socket_path[..21], b"/run/token-agent.sock");
    assert!(c.socket_path[21..].iter().all(|&b| b == 0));
    let long = "/".repeat(SUN_PATH_MAX + 1);
    assert!(matches!(probe_config(Path::new(&long), 1), Err(EbpfError::SocketPath { .. })));
    assert!(probe_config(Path::new(&"/".repeat(SUN_PATH_MAX)), 1).is_ok());
    assert!(matches!(probe_config(Path::new(""), 1), Err(EbpfError::SocketPath { .. })));
}

#[test]
fn group_dead_is_detected_from_the_format_file() {
    let new = "\tfield:pid_t pid;\toffset:24;\tsize:4;\tsigned:1;\n\tfield:bool group_dead;\toffset:32;\tsize:1;\tsigned:0;\n";
    assert!(format_has_group_dead(new));
    assert!(!format_has_group_dead("\tfield:pid_t pid;\toffset:24;\tsize:4;\tsigned:1;\n"));
    assert!(!format_has_group_dead("\tfield:bool group_dead;\toffset:36;\tsize:1;\tsigned:0;\n"));
}

const CAPTURED: [&str; 8] = ["write", "writev", "sendto", "sendmsg", "read", "readv", "recvfrom", "recvmsg"];

#[test]
fn every_capture_syscall_has_an_enter_and_an_exit_tracepoint() {
    let capture = hooks::selected(Group::Capture, Kind::Tracepoint);
    for sc in CAPTURED {
        let (enter, exit) = (format!("syscalls/sys_enter_{sc}"), format!("syscalls/sys_exit_{sc}"));
        assert!(capture.iter().any(|p| p.label() == enter && p.program == format!("io_enter_{sc}")), "{sc}");
        assert!(capture.iter().any(|p| p.label() == exit && p.program == "io_exit"), "{sc}");
    }
    assert_eq!(capture.len(), 16);
    // exits attach first (and detach last): an enter seen always has its exit seen
    let order: Vec<_> = capture.iter().map(|p| p.program).collect();
    assert!(order[..8].iter().all(|p| *p == "io_exit") && order[8..].iter().all(|p| p.starts_with("io_enter_")), "{order:?}");
}

#[test]
fn every_capture_syscall_has_an_fexit_on_its_wrapper() {
    let capture = hooks::selected(Group::Capture, Kind::Trampoline);
    assert_eq!(capture.len(), 8);
    for sc in CAPTURED {
        let p = capture.iter().find(|p| p.program == format!("fexit_{sc}")).unwrap_or_else(|| panic!("{sc}"));
        assert_eq!(p.hook, Hook::Fexit(sc));
        assert_eq!(p.label(), format!("fexit/{}", hooks::wrapper(sc)));
    }
}

#[test]
fn connections_on_either_kind_cover_connect_enter_exit_and_close() {
    let labels = |kind| hooks::selected(Group::Connections, kind).iter().map(|p| p.label()).collect::<Vec<_>>();
    assert_eq!(
        labels(Kind::Tracepoint),
        ["syscalls/sys_exit_connect", "syscalls/sys_enter_connect", "syscalls/sys_enter_close"]
    );
    let (connect, close) = (hooks::wrapper("connect"), hooks::wrapper("close"));
    assert_eq!(labels(Kind::Trampoline), [format!("fexit/{connect}"), format!("fentry/{connect}"), format!("fentry/{close}")]);
    // the process probes exist once, whatever the kind
    for kind in [Kind::Tracepoint, Kind::Trampoline] {
        let process: Vec<_> = hooks::selected(Group::Process, kind).iter().map(|p| p.program).collect();
        assert_eq!(process, ["sched_process_exit", "sched_process_exec"]);
    }
}

#[test]
fn syscall_argument_offsets_come_from_pt_regs_members() {
    // x86_64's struct pt_regs: r15 … r8 (0–56), ax, cx, dx, si, di, orig_ax, …
    let names = ["r15", "r14", "r13", "r12", "bp", "bx", "r11", "r10", "r9", "r8", "ax", "cx", "dx", "si", "di"];
    let members: Vec<(String, u32)> = names.iter().enumerate().map(|(i, n)| (n.to_string(), i as u32 * 64)).collect();
    assert_eq!(hooks::arg_offsets(&members, ["di", "si", "dx", "r10"]), Ok([112, 104, 96, 56]));
    let e = hooks::arg_offsets(&members, ["di", "si", "dx", "x0"]).unwrap_err();
    assert!(e.contains("no member x0"), "{e}");
    let odd = vec![("di".to_string(), 36u32)];
    assert!(hooks::arg_offsets(&odd, ["di", "di", "di", "di"]).unwrap_err().contains("not 8-byte aligned"));
}

#[test]
fn configured_tracepoints_never_try_trampolines() {
    let why = hooks::trampolines(crate::config::HookPreference::Tracepoint).err().expect("refused");
    assert!(why.contains("hooks = \"tracepoint\""), "{why}");
}

#[test]
fn the_choice_reads_with_its_reason() {
    let t = hooks::Choice { kind: Kind::Trampoline, fallback: None };
    assert_eq!(t.describe("capture"), "capture via fentry/fexit");
    let f = hooks::Choice { kind: Kind::Tracepoint, fallback: Some("no kernel BTF".into()) };
    assert_eq!(f.describe("connect/close"), "connect/close via syscall tracepoints (fentry/fexit: no kernel BTF)");
}

#[test]
fn capability_hints_name_what_is_missing() {
    assert_eq!(capability_hint(Some(0)), "missing CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN)");
    assert_eq!(capability_hint(Some(1 << CAP_BPF)), "missing CAP_PERFMON (or CAP_SYS_ADMIN)");
    assert!(capability_hint(Some(1 << CAP_SYS_ADMIN)).contains("policy"));
    assert!(capability_hint(Some((1 << CAP_BPF) | (1 << CAP_PERFMON))).contains("policy"));
    assert!(capability_hint(None).contains("CAP_BPF"));
}

#[test]
fn verifier_complaint_skips_statistics() {
    let log = "0: (b7) r0 = 0\nR1 invalid mem access 'scalar'\nprocessed 12 insns (limit 1000000)\n\n";
    assert_eq!(verifier_complaint(log, &io::Error::from_raw_os_error(13)), "R1 invalid mem access 'scalar'");
    assert!(verifier_complaint("", &io::Error::from_raw_os_error(13)).contains("Permission denied"));
}

#[test]
fn error_messages_are_one_line() {
    let errs = [
        EbpfError::NotBuilt,
        kernel_error("x", &io::Error::from_raw_os_error(libc::EPERM)),
        kernel_error("y", &io::Error::other("a\nb")),
    ];
    for e in errs {
        assert!(!e.to_string().contains('\n'), "{e}");
    }
    assert!(EbpfError::NotBuilt.to_string().contains("cargo xtask build"));
    assert!(kernel_error("x", &io::Error::from_raw_os_error(libc::EPERM)).to_string().contains("EPERM"));
}

/// A BTF blob: header, types (ids from 1), strings.
struct BtfBuilder {
    types: Vec<u8>,
    strings: Vec<u8>,
}

impl BtfBuilder {
    fn new() -> Self {
        Self { types: Vec::new(), strings: vec![0] }
    }
    fn name(&mut self, s: &str) -> u32 {
        let off = self.strings.len() as u32;
        self.strings.extend(s.as_bytes());
        self.strings.push(0);
        off
    }
    /// One `btf_type` (kind, vlen, size-or-type) plus its trailing words.
    fn ty(&mut self, name: &str, kind: u32, vlen: u32, size_or_type: u32, extra: &[u32]) {
        let name = if name.is_empty() { 0 } else { self.name(name) };
        for w in [name, kind << 24 | vlen, size_or_type].iter().chain(extra) {
            self.types.extend(w.to_le_bytes());
        }
    }
    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(0xeb9f_u16.to_le_bytes());
        out.extend([1, 0]); // version, flags
        for w in [24, 0, self.types.len() as u32, self.types.len() as u32, self.strings.len() as u32] {
            out.extend(w.to_le_bytes());
        }
        out.extend(&self.types);
        out.extend(&self.strings);
        out
    }
}

#[test]
fn wrapper_argument_must_reach_a_complete_struct_through_modifiers() {
    const PTR: u32 = 2;
    const STRUCT: u32 = 4;
    const FWD: u32 = 7;
    const TYPEDEF: u32 = 8;
    const CONST: u32 = 10;
    const RESTRICT: u32 = 11;
    const FUNC: u32 = 12;
    const PROTO: u32 = 13;
    const TYPE_TAG: u32 = 18;
    let mut b = BtfBuilder::new();
    b.ty("pt_regs", STRUCT, 0, 168, &[]); // 1
    b.ty("", PTR, 0, 1, &[]); // 2
    let regs = b.name("regs");
    b.ty("", PROTO, 1, 0, &[regs, 2]); // 3: long (struct pt_regs *regs)
    b.ty("__x64_sys_plain", FUNC, 1, 3, &[]); // 4
    b.ty("pt_regs", FWD, 0, 0, &[]); // 5: 5.10's view
    b.ty("", PTR, 0, 5, &[]); // 6
    b.ty("", PROTO, 1, 0, &[regs, 6]); // 7
    b.ty("__x64_sys_fwd", FUNC, 1, 7, &[]); // 8
    b.ty("user", TYPE_TAG, 0, 1, &[]); // 9
    b.ty("", RESTRICT, 0, 9, &[]); // 10
    b.ty("regs_t", TYPEDEF, 0, 10, &[]); // 11
    b.ty("", CONST, 0, 11, &[]); // 12
    b.ty("", PTR, 0, 12, &[]); // 13
    b.ty("", PROTO, 1, 0, &[regs, 13]); // 14
    b.ty("__x64_sys_modified", FUNC, 1, 14, &[]); // 15
    b.ty("", PROTO, 0, 0, &[]); // 16: no argument
    b.ty("__x64_sys_none", FUNC, 1, 16, &[]); // 17
    let btf = btf_rs::Btf::from_bytes(&b.bytes()).expect("a valid BTF blob");

    assert_eq!(hooks::first_arg_is_struct(&btf, "__x64_sys_plain"), Ok(()));
    assert_eq!(hooks::first_arg_is_struct(&btf, "__x64_sys_modified"), Ok(()));
    for f in ["__x64_sys_fwd", "__x64_sys_none"] {
        let e = hooks::first_arg_is_struct(&btf, f).unwrap_err();
        assert!(e.contains("incomplete type") && e.contains(f), "{e}");
    }
    let e = hooks::first_arg_is_struct(&btf, "__x64_sys_absent").unwrap_err();
    assert_eq!(e, "kernel BTF has no function __x64_sys_absent");
}
