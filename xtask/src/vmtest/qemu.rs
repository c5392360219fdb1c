//! Boots one kernel with the initramfs in qemu, under `timeout`, and reads the
//! test run's status from the serial console.
//!
//! TCG by default: the `/dev/kvm` of these machines is a paravirtual flavour
//! that cannot run stock kernels (qemu aborts or spins). KVM only when the CPU
//! exposes vmx/svm and `/dev/kvm` is writable.
use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};

use super::initramfs::EXIT_MARKER;

/// How a VM ended.
pub struct Run {
    /// The guest's serial console.
    pub console: String,
    /// qemu's own messages.
    pub stderr: String,
    /// What `/init` printed after the tests; None: the guest crashed, hung or
    /// was killed before it got there.
    pub exit: Option<i32>,
    pub timed_out: bool,
    pub elapsed: Duration,
}

impl Run {
    /// Why the run counts as failed, if it does.
    pub fn failure(&self, timeout: Duration) -> Option<String> {
        match self.exit {
            Some(0) => None,
            Some(rc) => Some(format!("tests exited {rc}")),
            None if self.timed_out => Some(format!("no result within {}s (hung)", timeout.as_secs())),
            None => Some("the guest stopped without a result (crash or panic)".into()),
        }
    }
}

/// The accelerator and CPU model: (`-accel`, `-cpu`).
pub fn accel() -> (&'static str, &'static str) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    if has_virt_flag(&cpu) && kvm_writable() {
        ("kvm", "host")
    } else {
        ("tcg", "max")
    }
}

fn has_virt_flag(cpuinfo: &str) -> bool {
    cpuinfo.lines().filter(|l| l.starts_with("flags")).any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"))
}

fn kvm_writable() -> bool {
    // SAFETY: access() with a NUL-terminated path.
    unsafe { libc::access(c"/dev/kvm".as_ptr(), libc::W_OK) == 0 }
}

/// Boots `vmlinuz` with `initrd` and waits for it to power off, at most `timeout`.
pub fn boot(vmlinuz: &Path, initrd: &Path, append: &str, timeout: Duration) -> Result<Run> {
    let (accel, cpu) = accel();
    let cmdline = format!("console=ttyS0 panic=-1 quiet {append}");
    let t = Instant::now();
    let out = Command::new("timeout")
        .args(["--kill-after=5", &timeout.as_secs().to_string(), "qemu-system-x86_64"])
        .args(["-accel", accel, "-cpu", cpu, "-m", "1G", "-smp", "1"])
        .args(["-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot", "-nic", "none"])
        .arg("-kernel")
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", cmdline.trim_end()])
        .stdin(Stdio::null())
        .output()
        .context("starting qemu-system-x86_64 (package qemu-system-x86; `cargo xtask setup` installs it)")?;
    let console = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    Ok(Run {
        exit: parse_exit(&console),
        // timeout(1) exits 124 when it had to stop qemu (137 after SIGKILL).
        timed_out: matches!(out.status.code(), Some(124 | 137)),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        console,
        elapsed: t.elapsed(),
    })
}

/// The status in the last `VMTEST_EXIT=<rc>` line. Kernel messages may share
/// the line, so the marker is looked for anywhere in it.
pub fn parse_exit(console: &str) -> Option<i32> {
    console.lines().rev().find_map(|l| {
        let rest = &l[l.find(EXIT_MARKER)? + EXIT_MARKER.len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_last_marker() {
        assert_eq!(parse_exit("boot\nVMTEST_EXIT=0\n[    5.1] reboot: Power down\n"), Some(0));
        assert_eq!(parse_exit("VMTEST_EXIT=0\nVMTEST_EXIT=1\n"), Some(1));
        assert_eq!(parse_exit("[    4.2] random: crng init done VMTEST_EXIT=101 \n"), Some(101));
    }

    #[test]
    fn no_marker_means_no_result() {
        assert_eq!(parse_exit(""), None);
        assert_eq!(parse_exit("Kernel panic - not syncing: Attempted to kill init!\n"), None);
        // the init script's own text is no result
        assert_eq!(parse_exit("echo \"VMTEST_EXIT=$rc\"\n"), None);
        assert_eq!(parse_exit("VMTEST_EXIT=\n"), None);
    }

    #[test]
    fn failure_reasons() {
        let run = |exit, timed_out| Run {
            console: String::new(),
            stderr: String::new(),
            exit,
            timed_out,
            elapsed: Duration::ZERO,
        };
        let t = Duration::from_secs(120);
        assert_eq!(run(Some(0), false).failure(t), None);
        assert_eq!(run(Some(1), false).failure(t).unwrap(), "tests exited 1");
        assert!(run(None, true).failure(t).unwrap().contains("hung"));
        assert!(run(None, false).failure(t).unwrap().contains("crash"));
    }

    #[test]
    fn kvm_only_with_hardware_virtualisation() {
        assert!(has_virt_flag("processor\t: 0\nflags\t\t: fpu vme vmx sse\n"));
        assert!(has_virt_flag("flags\t\t: fpu svm\n"));
        assert!(!has_virt_flag("flags\t\t: fpu vme hypervisor\nvmx flags\t: ept\n"));
    }
}
