//! `cargo xtask vm-test --bench`: the capture cost benchmark (`agent/benches/
//! capture.rs`) inside the guests, where fentry/fexit load — this host
//! refuses them, so `cargo xtask bench` can only measure the tracepoint
//! hooks. Prints the same ratios as `cargo xtask bench`, per kernel, each
//! against the baseline measured in the same guest in the same run.
//!
//! Under TCG every instruction, the kernel's included, is emulated: absolute
//! times mean nothing and even ratios only indicate (emulation does not
//! weigh every instruction as hardware does). KVM is used when available.
use std::{
    io::Read,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{bail, Context, Result};

use super::{binaries, initramfs, kernels, qemu};
use crate::{build, util};

const BENCH: &str = "capture";
/// The figures of `cargo xtask bench` this bench produces.
const GROUPS: [&str; 2] = ["pipe_write_64", "get_token"];

pub fn run(kernels: &[kernels::Kernel], vm_dir: &Path, timeout: Duration) -> Result<()> {
    // release simulator, as `cargo xtask bench` uses
    let built = build::all(build::Profile::Release)?;
    let sims_dir = built.agent.parent().context("agent path")?.to_path_buf();
    let bench = build_bench(&built.ebpf_object)?;
    let sims = binaries::sims(&sims_dir)?;
    let initrd = vm_dir.join("initramfs-bench.cpio");
    initramfs::pack(&initrd, &vm_dir.join("bench"), &[(BENCH.to_string(), bench)], &sims, kernels, true)?;
    let (accel, _) = qemu::accel();
    let logs = vm_dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    // one VM at a time: two would share the cores and disturb each other
    for k in kernels {
        eprintln!("vm-test --bench: {} ({accel}) …", k.release);
        let run = qemu::boot(&k.vmlinuz, &initrd, k.spec.append, timeout)?;
        let log = format!("{}{}", run.console, run.stderr);
        std::fs::write(logs.join(format!("{}-bench.log", k.release)), &log)?;
        println!("\n{} ({}, {accel}, {:.0} s):", k.release, k.spec.suite, run.elapsed.as_secs_f64());
        if let Some(why) = run.failure(timeout) {
            println!("  failed: {why} (log: {})", logs.join(format!("{}-bench.log", k.release)).display());
            continue;
        }
        print_ratios(&estimates(&run.console), &not_measured(&run.console));
    }
    Ok(())
}

/// Builds the bench executable with the eBPF object in it; its path.
fn build_bench(obj: &Path) -> Result<PathBuf> {
    let mut cmd = util::host_cargo();
    cmd.args(["bench", "--no-run", "--quiet", "--message-format=json-render-diagnostics", "-p", "tokenwatch"])
        .args(["--bench", BENCH])
        .env("TOKENWATCH_EBPF_OBJ", obj)
        .stdout(Stdio::piped());
    let mut child = cmd.spawn().context("starting cargo bench --no-run")?;
    let mut json = String::new();
    child.stdout.take().context("cargo stdout")?.read_to_string(&mut json)?;
    if !child.wait()?.success() {
        bail!("building the {BENCH} bench failed");
    }
    json.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == BENCH)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .with_context(|| format!("cargo built no {BENCH} executable"))
}

/// (group/id, mean ns) of every benchmark criterion reported on `console`:
/// `pipe_write_64/agent_off  time:   [301.2 ns 303.4 ns 305.6 ns]`, the name
/// maybe on a line (or progress line) before; colours and progress redraws
/// (the guest console counts as a terminal) are stripped first.
pub fn estimates(console: &str) -> Vec<(String, f64)> {
    let plain = strip_ansi(console);
    let mut out = Vec::new();
    let mut last_name: Option<String> = None;
    for piece in plain.split(['\n', '\r']) {
        for word in piece.split_whitespace() {
            let word = word.trim_end_matches(':');
            if GROUPS.iter().any(|g| word.starts_with(&format!("{g}/"))) {
                last_name = Some(word.to_string());
            }
        }
        let (Some((_, time)), Some(name)) = (piece.split_once("time:"), &last_name) else { continue };
        // [low unit mean unit high unit]
        let parts: Vec<&str> = time.trim().trim_start_matches('[').trim_end_matches(']').split_whitespace().collect();
        if let [_, _, mean, unit, ..] = parts[..] {
            if let (Ok(v), Some(scale)) = (mean.parse::<f64>(), unit_ns(unit)) {
                if !out.iter().any(|(n, _)| n == name) {
                    out.push((name.clone(), v * scale));
                }
                last_name = None;
            }
        }
    }
    out
}

/// `s` without ANSI escape sequences (ESC '[' parameters final-byte).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn unit_ns(unit: &str) -> Option<f64> {
    Some(match unit {
        "ps" => 1e-3,
        "ns" => 1.0,
        "µs" | "us" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        _ => return None,
    })
}

/// The bench's own "… not measured: why" lines (modes that could not run).
fn not_measured(console: &str) -> Vec<String> {
    console.lines().filter(|l| l.contains(" not measured: ")).map(|l| l.trim().to_string()).collect()
}

fn print_ratios(estimates: &[(String, f64)], skipped: &[String]) {
    let get = |group: &str, id: &str| {
        let key = format!("{group}/{id}");
        estimates.iter().find(|(n, _)| *n == key).map(|(_, v)| *v)
    };
    for (group, base, measured, what) in crate::bench::RATIOS.iter().filter(|r| GROUPS.contains(&r.0)) {
        match (get(group, base), get(group, measured)) {
            (Some(b), Some(m)) => println!("  {what:<62} {b:>10.1} ns {m:>10.1} ns {:>7.3}x", m / b),
            _ => println!("  {what:<62} not measured"),
        }
    }
    for s in skipped {
        println!("  ({s})");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_criterion_estimates_in_both_layouts() {
        let console = "\
Benchmarking pipe_write_64/agent_off: Analyzing
pipe_write_64/agent_off time:   [301.20 ns 303.40 ns 305.60 ns]
                        change: [-1.0% +0.5% +2.0%] (p = 0.50 > 0.05)
pipe_write_64/fentry_active
                        time:   [1.2000 µs 1.2500 µs 1.3000 µs]
get_token/agent_off     time:   [95.000 µs 96.000 µs 97.000 µs]
fentry_idle not measured: fentry/fexit not in use: …
Benchmarking pipe_write_64/capture_idle\x1b[2K\rBenchmarking pipe_write_64/capture_idle: Analyzing\r\x1b[38;5;2m\x1b[0m                        time:   [\x1b[2m2.6757 µs\x1b[0m \x1b[1m2.7044 µs\x1b[0m \x1b[2m2.7369 µs\x1b[0m]
";
        let e = estimates(console);
        assert_eq!(e.len(), 4, "{e:?}");
        assert_eq!(e[0], ("pipe_write_64/agent_off".to_string(), 303.4));
        assert_eq!(e[1].0, "pipe_write_64/fentry_active");
        assert!((e[1].1 - 1250.0).abs() < 1e-6);
        assert!((e[2].1 - 96_000.0).abs() < 1e-6);
        assert_eq!(e[3].0, "pipe_write_64/capture_idle");
        assert!((e[3].1 - 2704.4).abs() < 1e-6, "{e:?}");
        assert_eq!(not_measured(console), ["fentry_idle not measured: fentry/fexit not in use: …"]);
    }
}
