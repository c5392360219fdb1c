//! `cargo xtask build`: the eBPF object with Debian's toolchain, then the
//! agent with the object embedded (agent/build.rs reads TOKENWATCH_EBPF_OBJ).
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::{
    setup,
    util::{self, root, target_dir},
};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Debug,
    Release,
}

impl Profile {
    pub fn dir(self) -> &'static str {
        match self {
            Profile::Debug => "debug",
            Profile::Release => "release",
        }
    }
}

pub struct Built {
    pub ebpf_object: PathBuf,
    pub agent: PathBuf,
}

/// Builds the eBPF object (always release: the verifier wants optimised code).
pub fn ebpf() -> Result<PathBuf> {
    setup::ensure()?;
    let mut cmd = std::process::Command::new(setup::DEBIAN_CARGO);
    cmd.current_dir(root())
        // aya-build (a build dependency of aya-ebpf) declares a newer rust-version than
        // Debian's rustc; it builds fine with it.
        .args(["build", "--quiet", "-p", "tokenwatch-ebpf", "--release", "--target", "bpfel-unknown-none", "--ignore-rust-version"])
        // Debian's rustc is the one with a `core` for bpfel-unknown-none; keep
        // rustup's choices and wrappers away from it.
        .env("RUSTC", setup::DEBIAN_RUSTC)
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_ENCODED_RUSTFLAGS", "-Cdebuginfo=2\x1f-Clink-arg=--btf")
        .env("PATH", path_with_cargo_bin())
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTDOC");
    util::run(&mut cmd).context("building the eBPF programs")?;
    Ok(target_dir().join("bpfel-unknown-none/release/tokenwatch"))
}

/// bpf-linker lives in ~/.cargo/bin, which a non-login shell may not have on PATH.
fn path_with_cargo_bin() -> std::ffi::OsString {
    let bin = setup::bpf_linker_path();
    let dir = bin.parent().map(|d| d.to_path_buf()).unwrap_or_default();
    let mut parts = vec![dir];
    if let Some(p) = std::env::var_os("PATH") {
        parts.extend(std::env::split_paths(&p));
    }
    std::env::join_paths(parts).unwrap_or_default()
}

/// Builds everything: the eBPF object, the agent and the simulator binaries.
pub fn all(profile: Profile) -> Result<Built> {
    let obj = ebpf()?;
    let mut cmd = util::host_cargo();
    cmd.args(["build", "--quiet", "-p", "tokenwatch", "-p", "tokenwatch-tests", "--bins"]);
    if profile == Profile::Release {
        cmd.arg("--release");
    }
    util::run(cmd.env("TOKENWATCH_EBPF_OBJ", &obj)).context("building the agent")?;
    Ok(Built { ebpf_object: obj, agent: target_dir().join(profile.dir()).join("tokenwatch") })
}
