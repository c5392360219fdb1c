//! `cargo xtask vm-test`: the eBPF tests on the Debian kernels a fleet runs.
//!
//! Kernels come from Debian with `apt-get download` ([`kernels`]); the eBPF
//! integration tests are built static ([`binaries`]) and packed with busybox
//! into one initramfs ([`initramfs`]); each kernel boots it in qemu under a
//! timeout ([`qemu`]); the same binaries run on the host too; [`report`]
//! prints one row per kernel. Recipe: `../shared/kernel-matrix.md`.
mod binaries;
mod initramfs;
mod kernels;
mod qemu;
mod report;

use std::{
    path::Path,
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
    let names = binaries::select(&util::root().join("agent/tests"))?;
    eprintln!("vm-test: test binaries: {}", names.join(", "));

    // Kernels (network, unpacking) while the tests build (CPU).
    let (fetched, built) = std::thread::scope(|s| {
        let fetch = s.spawn(|| timed(|| kernels::fetch(&specs, &vm_dir)));
        let built = timed(|| build::ebpf().and_then(|obj| binaries::build(&names, &obj)));
        (fetch.join().expect("kernel fetch panicked"), built)
    });
    let (kernels, fetch_time) = (fetched.0?, fetched.1);
    let (tests, build_time) = (built.0.context("building the test binaries")?, built.1);

    let t = Instant::now();
    let stripped: Vec<(String, std::path::PathBuf)> = tests
        .iter()
        .map(|(n, p)| Ok((n.clone(), binaries::stripped(n, p, &vm_dir.join("tests"))?)))
        .collect::<Result<_>>()?;
    let initrd = vm_dir.join("initramfs.cpio.gz");
    let configs: Vec<_> = kernels.iter().map(|k| (k.release.clone(), k.config.clone())).collect();
    initramfs::write(
        &initrd,
        &initramfs::Contents { busybox: Path::new(BUSYBOX), tests: &stripped, configs: &configs },
    )?;
    let pack_time = t.elapsed();

    let t = Instant::now();
    let logs = vm_dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let mut rows = vec![host_row(&tests, &logs)?];
    let host_time = t.elapsed();

    let t = Instant::now();
    let timeout = Duration::from_secs(args.timeout);
    let (accel, _) = qemu::accel();
    eprintln!("vm-test: booting {} kernel(s) ({accel}, {} at a time)", kernels.len(), args.jobs.max(1));
    let vm_rows = run_vms(&kernels, &initrd, timeout, args.jobs.max(1), names.len(), &logs);
    let vm_time = t.elapsed();
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
        "vm-test: kernels {:.1}s (in parallel with the build {:.1}s), initramfs {:.1}s, host {:.1}s, VMs {:.1}s; total {:.1}s",
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
fn host_row(tests: &[(String, std::path::PathBuf)], logs: &Path) -> Result<Row> {
    let t = Instant::now();
    let (mut log, mut failure) = (String::new(), None);
    for (name, bin) in tests {
        let mut cmd = if util::is_root() {
            Command::new(bin)
        } else {
            let mut c = Command::new("sudo");
            c.arg("env").arg("CI=true").arg("TOKENWATCH_VM=1").arg(bin);
            c
        };
        let out = cmd
            .args(["--test-threads=1", "--nocapture"])
            .env("CI", "true")
            .env("TOKENWATCH_VM", "1")
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
    match &failure {
        None => eprintln!("vm-test: {kernel} ({source}): pass, {} tests ({seconds:.1}s)", outcome.passed),
        Some(why) => eprintln!(
            "vm-test: {kernel} ({source}): FAIL: {why} ({seconds:.1}s)\n----- output of {kernel} -----\n{}\n----- end of {kernel} -----",
            log.trim_end()
        ),
    }
    let verdict = failure.map_or(report::Verdict::Pass, report::Verdict::Fail);
    Row { kernel, source, outcome, verdict, seconds }
}
