//! `cargo xtask setup`: everything a fresh machine of this kind lacks.
//! Idempotent: each step checks first and prints one line; a done setup takes
//! well under a second.
use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{bail, Context, Result};

use crate::util::{self, output, root, target_dir};

/// Debian packages the build and the tests need.
/// - rustc-web, cargo-web, libstd-rust-web-dev-bpf: a rustc with a prebuilt
///   `core` for bpfel-unknown-none (rustup's toolchains here have no rust-src)
/// - qemu-system-x86, busybox-static, kmod, xz-utils: `cargo xtask vm-test`
///   (the kernel matrix; xz unpacks the kernel modules it packs)
/// - prometheus: promtool, for the alert rules' unit tests (deploy/prometheus)
const APT_PACKAGES: &[&str] = &[
    "rustc-web",
    "cargo-web",
    "libstd-rust-web-dev-bpf",
    "logrotate",
    "qemu-system-x86",
    "busybox-static",
    "kmod",
    "xz-utils",
    "prometheus",
];
const BPF_LINKER_VERSION: &str = "0.13.0";
/// Debian's rustc, the one that can build for bpfel-unknown-none.
pub const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
pub const DEBIAN_CARGO: &str = "/usr/bin/cargo";

pub fn run() -> Result<()> {
    step("apt packages", apt)?;
    step("bpf-linker", bpf_linker)?;
    step("python test peers", python)?;
    Ok(())
}

/// True when `run` would do nothing: used by tasks to decide whether to call it.
pub fn is_done() -> bool {
    missing_apt().is_empty() && bpf_linker_ok().unwrap_or(false) && python_ok()
}

/// Runs setup when anything is missing.
pub fn ensure() -> Result<()> {
    if is_done() {
        return Ok(());
    }
    run()
}

fn step(name: &str, f: fn() -> Result<String>) -> Result<()> {
    let t = Instant::now();
    let what = f().with_context(|| format!("setup step {name:?}"))?;
    eprintln!("setup: {name:<18} {what} ({:.1}s)", t.elapsed().as_secs_f64());
    Ok(())
}

fn missing_apt() -> Vec<&'static str> {
    APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            !Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect()
}

fn apt() -> Result<String> {
    let missing = missing_apt();
    if missing.is_empty() {
        return Ok("present".into());
    }
    let sudo = |args: &[&str]| {
        let mut c = if util::is_root() { Command::new(args[0]) } else { Command::new("sudo") };
        if !util::is_root() {
            c.arg(args[0]);
        }
        c.args(&args[1..]).env("DEBIAN_FRONTEND", "noninteractive");
        c
    };
    util::run(sudo(&["apt-get", "-o", "DPkg::Lock::Timeout=600", "update", "-qq"]).stdout(std::process::Stdio::null()))?;
    let mut args = vec!["apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y", "-qq", "--no-install-recommends"];
    args.extend(&missing);
    util::run(sudo(&args).stdout(std::process::Stdio::null()))?;
    Ok(format!("installed {}", missing.join(" ")))
}

/// The LLVM major of Debian's rustc; bpf-linker must link the same one.
fn llvm_major() -> Result<u32> {
    let v = output(Command::new(DEBIAN_RUSTC).arg("-vV"))?;
    let line = v.lines().find_map(|l| l.strip_prefix("LLVM version: ")).context("no LLVM version in rustc -vV")?;
    line.split('.').next().unwrap_or("").trim().parse().with_context(|| format!("LLVM version {line:?}"))
}

fn cargo_bin(name: &str) -> PathBuf {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cargo"));
    home.join("bin").join(name)
}

pub fn bpf_linker_path() -> PathBuf {
    cargo_bin("bpf-linker")
}

fn bpf_linker_ok() -> Result<bool> {
    let bin = bpf_linker_path();
    if !bin.exists() || !Path::new(DEBIAN_RUSTC).exists() {
        return Ok(false);
    }
    let major = llvm_major()?;
    let ldd = output(Command::new("ldd").arg(&bin)).unwrap_or_default();
    Ok(ldd.contains(&format!("libLLVM.so.{major}")) || ldd.contains(&format!("libLLVM-{major}.so")))
}

fn bpf_linker() -> Result<String> {
    if bpf_linker_ok()? {
        return Ok("present".into());
    }
    let major = llvm_major()?;
    // bpf-linker's build wants LLVM_PREFIX/lib/libLLVM.so; Debian's rustc-web
    // brings the library itself, so a prefix with one symlink is enough
    // (llvm-N-dev would add ~600 MB).
    let lib = find_libllvm(major)?;
    let prefix = target_dir().join(format!("llvm-{major}-prefix"));
    std::fs::create_dir_all(prefix.join("lib"))?;
    let link = prefix.join("lib/libLLVM.so");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&lib, &link).with_context(|| format!("linking {}", link.display()))?;
    util::run(
        util::host_cargo()
            .args(["install", "bpf-linker", "--locked", "--version", BPF_LINKER_VERSION, "--no-default-features"])
            .arg("--features")
            .arg(format!("llvm-{major}"))
            .env("LLVM_PREFIX", &prefix)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("RUSTC_WRAPPER")
            .env_remove("CARGO_TARGET_DIR"),
    )?;
    if !bpf_linker_ok()? {
        bail!("bpf-linker installed but not linked against LLVM {major}");
    }
    Ok(format!("installed {BPF_LINKER_VERSION} (LLVM {major})"))
}

fn find_libllvm(major: u32) -> Result<PathBuf> {
    let dir = Path::new("/usr/lib/x86_64-linux-gnu");
    let prefix = format!("libLLVM.so.{major}");
    let alt = format!("libLLVM-{major}.so");
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&prefix) || n == alt))
        .collect();
    found.sort();
    found.pop().with_context(|| format!("no libLLVM {major} under {} (is rustc-web installed?)", dir.display()))
}

pub fn venv() -> PathBuf {
    target_dir().join("venv")
}

fn requirements() -> PathBuf {
    root().join("tests/requirements.txt")
}

fn python_ok() -> bool {
    let stamp = venv().join(".requirements");
    match (std::fs::read(requirements()), std::fs::read(&stamp)) {
        (Ok(want), Ok(have)) => want == have && venv().join("bin/python").exists(),
        _ => false,
    }
}

fn python() -> Result<String> {
    if python_ok() {
        return Ok("present".into());
    }
    let venv = venv();
    if !venv.join("bin/python").exists() {
        util::run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    }
    util::run(
        Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "--disable-pip-version-check", "-r"])
            .arg(requirements()),
    )?;
    std::fs::copy(requirements(), venv.join(".requirements"))?;
    Ok(format!("venv at {}", venv.display()))
}
