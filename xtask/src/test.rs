//! `cargo xtask test`: every test, with the eBPF object embedded and the
//! built binaries handed to the end-to-end tests, then (for the whole suite,
//! not a filtered run) each fuzz target for a bounded time; ends with one
//! summary line.
use std::{
    io::{BufRead, BufReader},
    process::Stdio,
};

use anyhow::{bail, Context, Result};

use crate::{build, fuzz, package, setup, util};

/// The packages whose tests run. `cargo xtask vm-test` asks cargo for its test
/// binaries with the same set, so that they are these very builds.
pub const PACKAGES: &[&str] = &["tokenwatch", "tokenwatch-tests", "tokenwatch-common", "xtask"];

pub fn run(extra: &[String]) -> Result<()> {
    let built = build::all(build::Profile::Debug)?;
    // the release package, for tests/tests/package.rs (installs it with dpkg)
    let deb = package::build()?;
    let bin_dir = util::target_dir().join("debug");
    let mut cmd = util::host_cargo();
    // --no-fail-fast: one failing test binary must not hide the others
    cmd.args(["test", "--no-fail-fast"]);
    for p in PACKAGES {
        cmd.args(["-p", p]);
    }
    cmd.args(extra)
        .env("TOKENWATCH_EBPF_OBJ", &built.ebpf_object)
        .env("TOKENWATCH_BIN", bin_dir.join("tokenwatch"))
        .env("TOKENWATCH_SIM_DIR", &bin_dir)
        .env("TOKENWATCH_VENV", setup::venv())
        .env("TOKENWATCH_DEB", &deb)
        .stdout(Stdio::piped());
    let mut child = cmd.spawn().context("starting cargo test")?;
    let (mut passed, mut failed, mut ignored) = (0u64, 0u64, 0u64);
    // cargo test prints a "test result:" line per test binary; echo everything, sum those.
    for line in BufReader::new(child.stdout.take().context("cargo test stdout")?).lines() {
        let line = line?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            passed += count(rest, "passed");
            failed += count(rest, "failed");
            ignored += count(rest, "ignored");
        }
    }
    let status = child.wait()?;
    // a filtered run is someone's inner loop: the fuzzers run with the whole
    // suite, once it passed
    let passed_all = status.success() && failed == 0;
    let fuzzed = if extra.is_empty() && passed_all { Some(fuzz_all()) } else { None };
    println!("{passed} passed, {failed} failed, {ignored} skipped");
    if !status.success() || failed > 0 {
        bail!("tests failed ({status})");
    }
    match fuzzed {
        Some(Err(e)) => Err(e),
        Some(Ok(())) => {
            println!("fuzz targets: {} × {}s, no failure", fuzz::TARGETS.len(), fuzz::TEST_SECONDS);
            Ok(())
        }
        None => Ok(()),
    }
}

/// Every fuzz target for [`fuzz::TEST_SECONDS`]; all run even when one fails.
fn fuzz_all() -> Result<()> {
    let bins = fuzz::build()?;
    let failed: Vec<&str> = fuzz::TARGETS
        .iter()
        .filter(|(name, max_len)| {
            fuzz::fuzz(&bins.join(name), name, *max_len, fuzz::TEST_SECONDS).map_err(|e| eprintln!("{e:#}")).is_err()
        })
        .map(|(name, _)| *name)
        .collect();
    if !failed.is_empty() {
        bail!("fuzz targets failed: {}", failed.join(", "));
    }
    Ok(())
}

/// The number before `word` in "ok. 22 passed; 0 failed; 1 ignored; …".
fn count(s: &str, word: &str) -> u64 {
    s.split(';')
        .find_map(|part| part.trim().trim_start_matches("ok. ").trim_start_matches("FAILED. ").strip_suffix(word))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn counts_cargo_result_lines() {
        let l = "ok. 22 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.00s";
        assert_eq!((count(l, "passed"), count(l, "failed"), count(l, "ignored")), (22, 0, 1));
        let l = "FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out";
        assert_eq!((count(l, "passed"), count(l, "failed")), (3, 2));
    }
}
