//! Small helpers: the workspace root, running commands with context.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"))
}

/// The cargo that runs us (rustup's stable), for host builds.
pub fn host_cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(root());
    c
}

/// Runs `cmd`, failing with its description when it does not exit 0.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// Runs `cmd` and returns its stdout; stderr passes through.
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Asks a child to stop (SIGTERM), so it can flush; the caller waits.
pub fn terminate(child: &std::process::Child) {
    // SAFETY: kill with a pid we spawned and have not yet reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
}

/// Runs the built agent with `args`, as root (through sudo when we are not).
pub fn run_agent(built: &crate::build::Built, args: &[String]) -> Result<()> {
    let mut cmd = if is_root() {
        Command::new(&built.agent)
    } else {
        let mut c = Command::new("sudo");
        c.arg(&built.agent);
        c
    };
    let args: Vec<String> = if args.is_empty() { vec!["run".into()] } else { args.to_vec() };
    run(cmd.args(&args))
}
