//! `cargo xtask vm-test`: the eBPF tests on the Debian kernels a fleet runs.
//!
//! Kernels come from Debian with `apt-get download` ([`kernels`]); the eBPF
//! integration tests — the debug builds `cargo xtask test` made — and the
//! simulator ([`binaries`]) are packed with their shared libraries and
//! busybox into one initramfs ([`initramfs`]); each kernel boots it in qemu
//! under a timeout ([`qemu`]); the same binaries run on the host too;
//! [`report`] prints one row per kernel. Recipe: `../shared/kernel-matrix.md`.
//! With `--bench`, the capture cost benchmark runs in the guests instead ([`bench`]).
mod bench;
mod binaries;
mod initramfs;
mod kernels;
mod qemu;
mod report;

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use report::{Outcome, Row};

use crate::{build, setup, util};

/// From the package busybox-static.
pub const BUSYBOX: &str = "/bin/busybox";

#[derive(clap::Args)]
pub struct Args {
    /// A kernel line to boot (repeatable): 5.10, 6.1, 6.12 or backports. Default: all.
    #[arg(long = "kernel", value_name = "NAME")]
    kernels: Vec<String>,
    /// Seconds a VM may run before it counts as hung.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// VMs booted at once (each takes about one core under TCG).
    #[arg(long, default_value_t = 2)]
    jobs: usize,
    /// Run the capture cost benchmark (pipe writes, GetToken latency) in the
    /// guests instead of the tests: the fentry/fexit figures this host cannot
    /// measure. One VM at a time.
    #[arg(long)]
    bench: bool,
}

pub fn run(args: Args) -> Result<()> {
    let started = Instant::now();
    let specs: Vec<&'static kernels::Spec> = if args.kernels.is_empty() {
        kernels::SPECS.iter().collect()
    } else {
        args.kernels.iter().map(|n| kernels::Spec::by_name(n)).collect::<Result<_>>()?
    };
    setup::ensure()?;
    let vm_dir = util::target_dir().join("vm");
    let cache = cache_dir();
    if args.bench {
        let kernels = kernels::fetch(&specs, &cache)?;
        // a bench takes minutes under TCG
        return bench::run(&kernels, &vm_dir, Duration::from_secs(args.timeout.max(900)));
    }
    let names = binaries::select(&util::root().join("agent/tests"))?;
    eprintln!("vm-test: test binaries: {}", names.join(", "));

    // Kernels (network, unpacking) while the tests build (CPU; after
    // `cargo xtask test` only cargo's check that all is fresh).
    let (fetched, built) = std::thread::scope(|s| {
        let fetch = s.spawn(|| timed(|| kernels::fetch(&specs, &cache)));
        let built = timed(|| {
            let obj = build::all(build::Profile::Debug)?.ebpf_object;
            let tests = binaries::build(&names, &obj)?;
            let sims = binaries::sims(&util::target_dir().join("debug"))?;
            anyhow::Ok((tests, sims))
        });
        (fetch.join().expect("kernel fetch panicked"), built)
    });
    let (kernels, fetch_time) = (fetched.0?, fetched.1);
    let ((tests, sims), build_time) = (built.0.context("building the test binaries")?, built.1);
    eprintln!(
        "vm-test: kernels {:.1}s, build {:.1}s (in parallel)",
        fetch_time.as_secs_f64(),
        build_time.as_secs_f64()
    );

    let t = Instant::now();
    let initrd = vm_dir.join(initramfs::FILE_NAME);
    initramfs::pack(&initrd, &vm_dir, &tests, &sims, &kernels, false)?;
    let pack_time = t.elapsed();
    eprintln!(
        "vm-test: initramfs {:.1}s ({} MB)",
        pack_time.as_secs_f64(),
        std::fs::metadata(&initrd).map_or(0, |m| m.len() >> 20)
    );

    let logs = vm_dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let sim_dir = util::target_dir().join("debug");
    let timeout = Duration::from_secs(args.timeout);
    let (accel, _) = qemu::accel();
    let jobs = args.jobs.max(1);
    eprintln!("vm-test: booting {} kernel(s) ({accel}, {jobs} at a time) while the host runs the tests", kernels.len());
    // The host row beside the VMs: its tests mostly wait (capture windows, children).
    let ((host, host_time), (vm_rows, vm_time)) = std::thread::scope(|s| {
        let host = s.spawn(|| timed(|| host_row(&tests, &sim_dir, &logs)));
        let vms = timed(|| run_vms(&kernels, &initrd, timeout, jobs, names.len(), &logs));
        (host.join().expect("host run panicked"), vms)
    });
    let mut rows = vec![host?];
    rows.extend(vm_rows);
    for spec in specs.iter().filter(|s| !kernels.iter().any(|k| std::ptr::eq(k.spec, **s))) {
        rows.push(Row {
            kernel: spec.name.to_string(),
            source: spec.suite.to_string(),
            outcome: Outcome::default(),
            verdict: report::Verdict::Skipped("no build found on the mirror or in the cache".into()),
            seconds: 0.0,
        });
    }

    let table = report::table(&rows);
    std::fs::write(vm_dir.join("report.md"), &table)?;
    println!("\n{table}");
    println!(
        "vm-test: kernels {:.1}s (in parallel with the build {:.1}s), initramfs {:.1}s, host {:.1}s (in parallel with the VMs {:.1}s); total {:.1}s",
        fetch_time.as_secs_f64(),
        build_time.as_secs_f64(),
        pack_time.as_secs_f64(),
        host_time.as_secs_f64(),
        vm_time.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    let failed: Vec<_> =
        rows.iter().filter(|r| matches!(r.verdict, report::Verdict::Fail(_))).map(|r| r.kernel.as_str()).collect();
    if !failed.is_empty() {
        bail!("the eBPF tests failed on {}", failed.join(", "));
    }
    if kernels.is_empty() {
        bail!("no kernel could be fetched: nothing was tested in a VM");
    }
    Ok(())
}

/// Where a run's time went, from its output: `: boot 2.4s, ebpf_calls 15.4s, …`
/// (the guest's uptime when `/init` started, libtest's "finished in" per binary).
fn timings(log: &str) -> String {
    let mut parts = Vec::new();
    let mut binary = None;
    for line in log.lines() {
        if let Some(up) = line.split(initramfs::BOOTED_MARKER).nth(1) {
            parts.push(format!("boot {}s", up.split_whitespace().next().unwrap_or("?")));
        } else if let Some(name) = line.split(initramfs::BINARY_MARKER).nth(1) {
            binary = Some(name.trim().to_string());
        } else if let (Some(name), Some(t)) = (&binary, line.split("; finished in ").nth(1)) {
            if line.contains("test result: ") {
                parts.push(format!("{name} {}", t.trim()));
            }
        }
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(": {}", parts.join(", "))
    }
}

/// Where downloaded kernels and their package lists are kept: outside the
/// work tree, so that a fresh clone (CI) or `cargo clean` does not fetch and
/// unpack them again. `TOKENWATCH_VM_CACHE`, else the user's cache directory.
fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("TOKENWATCH_VM_CACHE") {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")));
    base.map_or_else(|| util::target_dir().join("vm"), |b| b.join("tokenwatch/vm"))
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    (f(), t.elapsed())
}

/// Boots the kernels `jobs` at a time; rows in the order of `kernels`.
fn run_vms(
    kernels: &[kernels::Kernel],
    initrd: &Path,
    timeout: Duration,
    jobs: usize,
    binaries: usize,
    logs: &Path,
) -> Vec<Row> {
    let next = AtomicUsize::new(0);
    let rows: Vec<Mutex<Option<Row>>> = kernels.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..jobs.min(kernels.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(k) = kernels.get(i) else { break };
                *rows[i].lock().unwrap() = Some(vm_row(k, initrd, timeout, binaries, logs));
            });
        }
    });
    rows.into_iter().filter_map(|r| r.into_inner().unwrap()).collect()
}

fn vm_row(k: &kernels::Kernel, initrd: &Path, timeout: Duration, binaries: usize, logs: &Path) -> Row {
    let (outcome, failure, seconds, log) = match qemu::boot(&k.vmlinuz, initrd, k.spec.append, timeout) {
        Ok(run) => {
            let outcome = report::parse(&run.console);
            let failure = run.failure(timeout).or_else(|| report::missing_results(&outcome, binaries));
            let log = format!("{}{}", run.console, run.stderr);
            (outcome, failure, run.elapsed.as_secs_f64(), log)
        }
        Err(e) => (Outcome::default(), Some(format!("{e:#}")), 0.0, String::new()),
    };
    finish_row(k.release.clone(), k.spec.suite.to_string(), outcome, failure, seconds, &log, logs)
}

/// The same binaries on the host, as root, in the environment the guest gives them.
fn host_row(tests: &[(String, PathBuf)], sim_dir: &Path, logs: &Path) -> Result<Row> {
    let t = Instant::now();
    let (mut log, mut failure) = (String::new(), None);
    let env =
        [("CI", "true".into()), ("TOKENWATCH_VM", "1".into()), ("TOKENWATCH_SIM_DIR", sim_dir.as_os_str().to_owned())];
    for (name, bin) in tests {
        let mut cmd = if util::is_root() {
            let mut c = Command::new(bin);
            c.envs(env.iter().map(|(k, v)| (k, v)));
            c
        } else {
            let mut c = Command::new("sudo");
            c.arg("env");
            for (k, v) in &env {
                let mut kv = std::ffi::OsString::from(format!("{k}="));
                kv.push(v);
                c.arg(kv);
            }
            c.arg(bin);
            c
        };
        let out = cmd
            .args(["--test-threads=1", "--nocapture"])
            .output()
            .with_context(|| format!("running {}", bin.display()))?;
        log.push_str(&format!("{}{name}\n", initramfs::BINARY_MARKER));
        log.push_str(&String::from_utf8_lossy(&out.stdout));
        log.push_str(&String::from_utf8_lossy(&out.stderr));
        if !out.status.success() && failure.is_none() {
            failure = Some(format!("{name} exited {}", out.status));
        }
    }
    let outcome = report::parse(&log);
    let failure = failure.or_else(|| report::missing_results(&outcome, tests.len()));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    Ok(finish_row(kernel, "host".into(), outcome, failure, t.elapsed().as_secs_f64(), &log, logs))
}

/// Keeps the run's output in `logs/KERNEL.log`, prints the verdict line, and
/// the whole output of a failed run (the verifier's message is in it), then
/// makes the row.
fn finish_row(
    kernel: String,
    source: String,
    outcome: Outcome,
    failure: Option<String>,
    seconds: f64,
    log: &str,
    logs: &Path,
) -> Row {
    let _ = std::fs::write(logs.join(format!("{kernel}.log")), log);
    let timing = timings(log);
    match &failure {
        None => eprintln!("vm-test: {kernel} ({source}): pass, {} tests ({seconds:.1}s{timing})", outcome.passed),
        Some(why) => eprintln!(
            "vm-test: {kernel} ({source}): FAIL: {why} ({seconds:.1}s{timing})\n----- output of {kernel} -----\n{}\n----- end of {kernel} -----",
            log.trim_end()
        ),
    }
    let verdict = failure.map_or(report::Verdict::Pass, report::Verdict::Fail);
    Row { kernel, source, outcome, verdict, seconds }
}

#[cfg(test)]
mod tests {
    use super::timings;

    #[test]
    fn timings_from_the_markers_and_libtest() {
        let console = "VMTEST_BOOTED=2.31\nVMTEST_KERNEL=6.1\nVMTEST_BINARY=ebpf_calls\n\
test result: ok. 2 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 15.40s\n\
VMTEST_BINARY=ebpf_connect\n[    9.1] random: VMTEST_BOOTED is not this\n\
test result: FAILED. 0 passed; 1 failed; 1 ignored; 0 measured; 0 filtered out; finished in 8.02s\nVMTEST_EXIT=1\n";
        assert_eq!(timings(console), ": boot 2.31s, ebpf_calls 15.40s, ebpf_connect 8.02s");
        assert_eq!(timings(""), "");
    }
}
