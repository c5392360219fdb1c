//! `cargo xtask fuzz`: the libFuzzer targets of `agent/fuzz`, each run for a
//! bounded time from its committed seeds. `cargo xtask test` runs them too.
//!
//! Built the way cargo-fuzz builds them, without installing it: the stable
//! toolchain's SanitizerCoverage flags (no sanitizer: that would need a
//! nightly one), `--target` given so that build scripts and proc-macros stay
//! uninstrumented, and a target directory of their own. A crash or a failed
//! assertion fails the task and leaves the input under
//! `target/fuzz/artifacts/<target>/`; replay it with
//! `target/fuzz/<triple>/release/<target> <file>`.
use std::{path::PathBuf, process::Command, time::Instant};

use anyhow::{bail, Context, Result};

use crate::util::{self, root, target_dir};

/// Each target and the longest input it is given.
pub const TARGETS: &[(&str, usize)] = &[("log_line", 8 * 1024), ("capture_stream", 16 * 1024)];

/// Seconds per target when `cargo xtask test` runs them.
pub const TEST_SECONDS: u64 = 30;

/// SanitizerCoverage as cargo-fuzz configures it for libFuzzer.
const RUSTFLAGS: &[&str] = &[
    "-Cpasses=sancov-module",
    "-Cllvm-args=-sanitizer-coverage-level=4",
    "-Cllvm-args=-sanitizer-coverage-inline-8bit-counters",
    "-Cllvm-args=-sanitizer-coverage-pc-table",
    "-Cllvm-args=-sanitizer-coverage-trace-compares",
    "--cfg=fuzzing",
    "-Cdebug-assertions",
    "-Coverflow-checks",
];

#[derive(clap::Args)]
pub struct Args {
    /// Seconds per target.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Targets to run (default: all).
    pub targets: Vec<String>,
}

pub fn run(args: Args) -> Result<()> {
    let names: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
    if let Some(bad) = args.targets.iter().find(|t| !names.contains(&t.as_str())) {
        bail!("no fuzz target {bad:?} (there are: {})", names.join(", "));
    }
    let chosen: Vec<_> = TARGETS.iter().filter(|(n, _)| args.targets.is_empty() || args.targets.iter().any(|t| t == n)).collect();
    let bins = build()?;
    for (name, max_len) in chosen {
        fuzz(&bins.join(name), name, *max_len, args.seconds)?;
    }
    Ok(())
}

/// Builds every target; returns the directory of the binaries.
pub fn build() -> Result<PathBuf> {
    let t = Instant::now();
    let triple = host_triple()?;
    let dir = target_dir().join("fuzz");
    let mut cmd = util::host_cargo();
    cmd.args(["build", "--quiet", "--release", "-p", "tokenwatch-fuzz", "--bins", "--target", &triple])
        .arg("--target-dir")
        .arg(&dir)
        .env("CARGO_ENCODED_RUSTFLAGS", RUSTFLAGS.join("\x1f"))
        .env_remove("RUSTFLAGS");
    util::run(&mut cmd).context("building the fuzz targets")?;
    eprintln!("fuzz: targets built in {:.1}s", t.elapsed().as_secs_f64());
    Ok(dir.join(triple).join("release"))
}

fn host_triple() -> Result<String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    util::output(Command::new(rustc).arg("-vV"))?
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .context("rustc -vV names no host")
}

/// Runs one target for `seconds`; fails when libFuzzer found anything.
pub fn fuzz(bin: &std::path::Path, name: &str, max_len: usize, seconds: u64) -> Result<()> {
    // New inputs go to the first directory (kept between local runs); the
    // committed seeds are only read.
    let corpus = target_dir().join("fuzz/corpus").join(name);
    let seeds = root().join("agent/fuzz/corpus").join(name);
    let artifacts = target_dir().join("fuzz/artifacts").join(name);
    for d in [&corpus, &artifacts] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let t = Instant::now();
    let mut cmd = Command::new(bin);
    cmd.arg(format!("-max_total_time={seconds}"))
        .arg(format!("-max_len={max_len}"))
        .arg("-timeout=10")
        .arg("-rss_limit_mb=2048")
        .arg("-print_final_stats=1")
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg(&corpus)
        .arg(&seeds);
    let out = cmd.output().with_context(|| format!("starting {}", bin.display()))?;
    let log = String::from_utf8_lossy(&out.stderr);
    let stat = |key: &str| {
        log.lines().find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_owned())).unwrap_or_else(|| "?".into())
    };
    if !out.status.success() {
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        for l in tail.iter().rev() {
            eprintln!("{l}");
        }
        bail!("fuzz target {name} failed ({}); the input is in {}", out.status, artifacts.display());
    }
    println!(
        "fuzz: {name}: {} runs in {:.0}s, {} coverage points, corpus {} inputs, no failure",
        stat("stat::number_of_executed_units:"),
        t.elapsed().as_secs_f64(),
        log.lines().rev().find_map(|l| l.split("cov: ").nth(1)).and_then(|r| r.split_whitespace().next()).unwrap_or("?"),
        std::fs::read_dir(&corpus).map(|d| d.count()).unwrap_or(0),
    );
    Ok(())
}
