//! The test binaries the VMs run: which ones, where cargo put them, and what
//! they need in the guest.
//!
//! A binary runs in the VMs when it needs nothing but itself, the simulator
//! binaries ([`SIM_BINARIES`], packed under `/sim`, found through
//! `TOKENWATCH_SIM_DIR`) and the shared libraries they all link (packed at
//! the paths `ldd` names): `ebpf_connect`, and every `agent/tests/ebpf_*.rs`
//! that declares itself with the line [`VM_SAFE`]. Inside the VM (and in the
//! host row) `TOKENWATCH_VM=1` is set; a test that needs another peer (Python,
//! the network) checks it and returns early.
//!
//! The binaries are the debug ones `cargo xtask test` builds, asked for with
//! the same packages and environment so that cargo finds them fresh: after
//! `cargo xtask test` nothing is compiled again.
use std::{
    collections::BTreeSet,
    io::Read,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Context, Result};

use crate::{test, util};

/// Always in the matrix (it re-executes only itself).
const ALWAYS: &[&str] = &["ebpf_connect"];
/// The line a test file carries to be run in the VMs.
pub const VM_SAFE: &str = "//! vm-test: yes";
/// The simulator binaries (package tokenwatch-tests) packed for the tests.
pub const SIM_BINARIES: &[&str] = &["sim-token-agent"];

/// Names of the test targets to run, `ALWAYS` first, then the declared ones in name order.
pub fn select(tests_dir: &Path) -> Result<Vec<String>> {
    let mut names: Vec<String> = ALWAYS.iter().map(|s| s.to_string()).collect();
    let mut declared = Vec::new();
    for entry in std::fs::read_dir(tests_dir).with_context(|| format!("reading {}", tests_dir.display()))? {
        let path = entry?.path();
        let Some(name) = path.file_stem().and_then(|s| s.to_str()) else { continue };
        if !name.starts_with("ebpf_") || path.extension().is_none_or(|e| e != "rs") || names.iter().any(|n| n == name) {
            continue;
        }
        if declares_vm_safe(&std::fs::read_to_string(&path)?) {
            declared.push(name.to_string());
        }
    }
    declared.sort();
    names.extend(declared);
    Ok(names)
}

fn declares_vm_safe(source: &str) -> bool {
    source.lines().any(|l| l.trim() == VM_SAFE)
}

/// The test executables `names` with `obj` embedded, as `cargo xtask test`
/// builds them (a no-op after it); (name, path) each.
pub fn build(names: &[String], obj: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut cmd = util::host_cargo();
    cmd.args(["test", "--no-run", "--quiet", "--message-format=json-render-diagnostics"]);
    // The same packages as `cargo xtask test`: features are unified over the
    // packages asked for, and another set would be another build.
    for p in test::PACKAGES {
        cmd.args(["-p", p]);
    }
    for n in names {
        cmd.args(["--test", n]);
    }
    cmd.env("TOKENWATCH_EBPF_OBJ", obj).stdout(Stdio::piped());
    let mut child = cmd.spawn().context("starting cargo test --no-run")?;
    let mut json = String::new();
    child.stdout.take().context("cargo stdout")?.read_to_string(&mut json)?;
    let status = child.wait()?;
    if !status.success() {
        bail!("building the test binaries failed ({status})");
    }
    let found = parse_artifacts(&json, names);
    if found.len() != names.len() {
        bail!("cargo built {} of the test binaries {names:?}", found.len());
    }
    Ok(found)
}

/// The simulator binaries in `bin_dir` (built by `build::all`); (name, path) each.
pub fn sims(bin_dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    SIM_BINARIES
        .iter()
        .map(|n| {
            let p = bin_dir.join(n);
            if !p.is_file() {
                bail!("{} was not built", p.display());
            }
            Ok((n.to_string(), p))
        })
        .collect()
}

/// The test executables in cargo's JSON messages, in the order of `names`.
fn parse_artifacts(json: &str, names: &[String]) -> Vec<(String, PathBuf)> {
    let mut found: Vec<(String, PathBuf)> = json
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["profile"]["test"] == true)
        .filter(|m| m["target"]["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "test")))
        .filter_map(|m| Some((m["target"]["name"].as_str()?.to_string(), PathBuf::from(m["executable"].as_str()?))))
        .filter(|(n, _)| names.contains(n))
        .collect();
    found.sort_by_key(|(n, _)| names.iter().position(|x| x == n));
    found.dedup_by(|a, b| a.0 == b.0);
    found
}

/// A copy of `bin` without debug info (symbols stay, for backtraces): a
/// tenth of the size, so the guest unpacks its initramfs in a fraction of the time.
pub fn stripped(name: &str, bin: &Path, into: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(into)?;
    let out = into.join(name);
    util::run(Command::new("objcopy").arg("--strip-debug").arg(bin).arg(&out))?;
    Ok(out)
}

/// The shared libraries (and the dynamic loader) `bins` need, as `ldd` names
/// them: the guest gets each at the same path.
pub fn libraries(bins: &[&Path]) -> Result<Vec<PathBuf>> {
    let mut all = BTreeSet::new();
    for bin in bins {
        let out = util::output(Command::new("ldd").arg(bin))?;
        all.extend(parse_ldd(&out).with_context(|| format!("ldd {}", bin.display()))?);
    }
    Ok(all.into_iter().collect())
}

/// The paths in `ldd` output; the vDSO has none, a missing library is an error.
fn parse_ldd(out: &str) -> Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for line in out.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.contains("not found") {
            bail!("missing library: {line}");
        }
        if line.contains("statically linked") {
            continue;
        }
        // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)` or `/lib64/ld-linux-x86-64.so.2 (0x…)`
        let path = line.split_once("=>").map_or(line, |(_, p)| p.trim());
        let path = path.split(" (").next().unwrap_or(path).trim();
        if path.starts_with('/') {
            paths.push(PathBuf::from(path));
        }
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declaration_is_a_whole_line() {
        assert!(declares_vm_safe("//! Tests of X.\n//!\n//! vm-test: yes\nuse std;\n"));
        assert!(!declares_vm_safe("//! vm-test: no\n"));
        assert!(!declares_vm_safe("// see `//! vm-test: yes` in binaries.rs\n"));
    }

    #[test]
    fn takes_test_executables_from_cargo_json() {
        let json = r#"{"reason":"compiler-artifact","target":{"kind":["lib"],"name":"tokenwatch"},"profile":{"test":false},"executable":null}
{"reason":"compiler-artifact","target":{"kind":["test"],"name":"ebpf_calls"},"profile":{"test":true},"executable":"/t/ebpf_calls-1"}
{"reason":"compiler-artifact","target":{"kind":["bin"],"name":"tokenwatch"},"profile":{"test":true},"executable":"/t/tokenwatch-2"}
{"reason":"compiler-artifact","target":{"kind":["test"],"name":"ebpf_connect"},"profile":{"test":true},"executable":"/t/ebpf_connect-3"}
{"reason":"build-finished","success":true}
"#;
        let names = ["ebpf_connect".to_string(), "ebpf_calls".to_string()];
        let got = parse_artifacts(json, &names);
        assert_eq!(
            got,
            [
                ("ebpf_connect".into(), PathBuf::from("/t/ebpf_connect-3")),
                ("ebpf_calls".into(), PathBuf::from("/t/ebpf_calls-1"))
            ]
        );
        assert!(parse_artifacts(json, &["other".to_string()]).is_empty());
    }

    #[test]
    fn libraries_from_ldd() {
        let out = "\tlinux-vdso.so.1 (0x00007ffd5a3f2000)
\tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f1b2c9a1000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f1b2c7c0000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007f1b2c9d2000)
";
        assert_eq!(
            parse_ldd(out).unwrap(),
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2")
            ]
        );
        assert!(parse_ldd("\tstatically linked\n").unwrap().is_empty());
        assert!(parse_ldd("\tlibfoo.so.1 => not found\n").is_err());
    }

    #[test]
    fn ebpf_connect_is_always_selected() {
        let names = select(&util::root().join("agent/tests")).unwrap();
        assert_eq!(names[0], "ebpf_connect");
        assert_eq!(names.iter().filter(|n| *n == "ebpf_connect").count(), 1);
    }
}
