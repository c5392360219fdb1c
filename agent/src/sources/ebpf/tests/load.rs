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
