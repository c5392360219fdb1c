//! `cargo xtask package`: the release build as a Debian package.
//!
//! The `.deb` is assembled from a staged tree with `dpkg-deb --build` rather
//! than with cargo-deb: dpkg-deb is on every Debian host already, while
//! cargo-deb would be one more tool to compile (minutes on a small builder) and
//! to keep in step; the package is small enough — a binary, a unit, a
//! conffile, three maintainer scripts — to describe here in full.
//!
//! Layout: `/usr/bin/tokenwatch`, `/etc/tokenwatch/config.toml` (conffile),
//! `/lib/systemd/system/tokenwatch.service`, docs and the Prometheus/Grafana
//! files under `/usr/share/doc/tokenwatch/examples`.
use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

use crate::{
    build, deploy_check,
    util::{self, output, root, target_dir},
};

pub const NAME: &str = "tokenwatch";
const MAINTAINER: &str = "tokenwatch developers <tokenwatch@users.noreply.github.com>";
const HOMEPAGE: &str = "https://github.com/tokenwatch/tokenwatch";
const CONFFILE: &str = "/etc/tokenwatch/config.toml";

/// `cargo xtask package`: builds, packages, prints the path.
pub fn run() -> Result<()> {
    let deb = build()?;
    println!("{}", deb.display());
    Ok(())
}

/// Builds the release binary (eBPF object embedded) and packages it.
pub fn build() -> Result<PathBuf> {
    let built = build::all(build::Profile::Release)?;
    package(&built.agent)
}

/// Packages `agent` (a built `tokenwatch` binary); returns the `.deb`'s path.
pub fn package(agent: &Path) -> Result<PathBuf> {
    for line in deploy_check::run()? {
        eprintln!("package: {line}");
    }
    let version = env!("CARGO_PKG_VERSION");
    let arch = output(Command::new("dpkg").arg("--print-architecture"))?.trim().to_string();
    let out_dir = target_dir().join("package");
    let stage = out_dir.join(format!("{NAME}_{version}_{arch}"));
    if stage.exists() {
        std::fs::remove_dir_all(&stage).with_context(|| format!("removing {}", stage.display()))?;
    }
    let deploy = root().join("deploy");
    let doc = format!("usr/share/doc/{NAME}");
    let files: Vec<(PathBuf, String, u32)> = vec![
        (agent.to_path_buf(), "usr/bin/tokenwatch".into(), 0o755),
        (deploy.join("config.toml"), CONFFILE.trim_start_matches('/').into(), 0o644),
        (deploy.join("systemd/tokenwatch.service"), "lib/systemd/system/tokenwatch.service".into(), 0o644),
        (deploy.join("debian/copyright"), format!("{doc}/copyright"), 0o644),
        (root().join("README.md"), format!("{doc}/README.md"), 0o644),
        (
            deploy.join("prometheus/tokenwatch-rules.yml"),
            format!("{doc}/examples/prometheus/tokenwatch-rules.yml"),
            0o644,
        ),
        (
            deploy.join("prometheus/tokenwatch-rules.test.yml"),
            format!("{doc}/examples/prometheus/tokenwatch-rules.test.yml"),
            0o644,
        ),
        (deploy.join("prometheus/scrape.yml"), format!("{doc}/examples/prometheus/scrape.yml"), 0o644),
        (deploy.join("grafana/tokenwatch.json"), format!("{doc}/examples/grafana/tokenwatch.json"), 0o644),
        (deploy.join("debian/postinst"), "DEBIAN/postinst".into(), 0o755),
        (deploy.join("debian/prerm"), "DEBIAN/prerm".into(), 0o755),
        (deploy.join("debian/postrm"), "DEBIAN/postrm".into(), 0o755),
    ];
    for (from, to, mode) in &files {
        install(from, &stage.join(to), *mode)?;
    }
    // The release profile keeps line tables (debug = 1) for profiling; on
    // every node they would be ~80 MB of the ~95: ship the symbols, not them.
    let staged_bin = stage.join("usr/bin/tokenwatch");
    match Command::new("strip").arg("--strip-debug").arg(&staged_bin).status() {
        Ok(s) if s.success() => {}
        Ok(s) => bail!("strip --strip-debug {}: {s}", staged_bin.display()),
        Err(e) => eprintln!("package: strip not available ({e}), packaging the binary with its debug info"),
    }
    let binary = std::fs::read(&staged_bin).with_context(|| format!("reading {}", staged_bin.display()))?;
    write(&stage.join("DEBIAN/conffiles"), &format!("{CONFFILE}\n"), 0o644)?;
    write(&stage.join("DEBIAN/control"), &control(version, &arch, &binary, installed_kib(&stage)?), 0o644)?;
    write(&stage.join("DEBIAN/md5sums"), &md5sums(&stage, &files)?, 0o644)?;

    let deb = out_dir.join(format!("{NAME}_{version}_{arch}.deb"));
    let _ = std::fs::remove_file(&deb);
    util::run(Command::new("dpkg-deb").args(["--root-owner-group", "-Zxz", "--build"]).arg(&stage).arg(&deb))
        .context("dpkg-deb --build")?;
    // read it back: what dpkg will see
    let info = output(Command::new("dpkg-deb").arg("--info").arg(&deb))?;
    for want in [format!("Package: {NAME}"), " conffiles".to_string(), " postinst".to_string()] {
        if !info.contains(&want) {
            bail!("{} lacks {want:?}:\n{info}", deb.display());
        }
    }
    Ok(deb)
}

fn install(from: &Path, to: &Path, mode: u32) -> Result<()> {
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::copy(from, to).with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn write(path: &Path, text: &str, mode: u32) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// The control file. `Depends` comes from the binary itself: the newest
/// glibc symbol version it links, and libgcc_s when it is needed.
fn control(version: &str, arch: &str, binary: &[u8], installed_kib: u64) -> String {
    let mut depends = vec![match max_glibc(binary) {
        Some((major, minor)) => format!("libc6 (>= {major}.{minor})"),
        None => "libc6".to_string(),
    }];
    if contains(binary, b"libgcc_s.so.1") {
        depends.push("libgcc-s1".into());
    }
    format!(
        "Package: {NAME}\n\
         Version: {version}\n\
         Architecture: {arch}\n\
         Maintainer: {MAINTAINER}\n\
         Installed-Size: {installed_kib}\n\
         Depends: {}\n\
         Section: admin\n\
         Priority: optional\n\
         Homepage: {HOMEPAGE}\n\
         Description: warns before a compute node loses its IAM token\n \
         tokenwatch watches the calls of local services to token-agent (eBPF\n \
         probes on its Unix socket) and token-agent's logs, derives token\n \
         refresh timing, error rates and a level (OK / WARN / CRIT), and exports\n \
         them as OTLP spans and metrics, on /metrics (Prometheus) and /status.\n \
         `tokenwatch diagnose` runs the on-call runbook on the host.\n",
        depends.join(", ")
    )
}

/// The newest `GLIBC_2.N` symbol version named in an ELF binary.
pub fn max_glibc(binary: &[u8]) -> Option<(u32, u32)> {
    let needle = b"GLIBC_";
    let mut best = None;
    let mut i = 0;
    while let Some(pos) = find(&binary[i..], needle) {
        let start = i + pos + needle.len();
        let end = binary[start..]
            .iter()
            .position(|b| !(b.is_ascii_digit() || *b == b'.'))
            .map_or(binary.len(), |n| start + n);
        let text = std::str::from_utf8(&binary[start..end]).unwrap_or("");
        let mut parts = text.split('.').map(|p| p.parse::<u32>());
        if let (Some(Ok(major)), Some(Ok(minor))) = (parts.next(), parts.next()) {
            best = best.max(Some((major, minor)));
        }
        i = start;
    }
    best
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    find(hay, needle).is_some()
}

/// Installed-Size: the staged payload in KiB, rounded up per file.
fn installed_kib(stage: &Path) -> Result<u64> {
    fn walk(dir: &Path, total: &mut u64) -> Result<()> {
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            let m = e.metadata()?;
            if e.file_name() == "DEBIAN" {
                continue;
            }
            if m.is_dir() {
                walk(&e.path(), total)?;
            } else {
                *total += m.len().div_ceil(1024);
            }
        }
        Ok(())
    }
    let mut total = 0;
    walk(stage, &mut total)?;
    Ok(total)
}

fn md5sums(stage: &Path, files: &[(PathBuf, String, u32)]) -> Result<String> {
    let payload: Vec<&str> = files.iter().map(|(_, to, _)| to.as_str()).filter(|p| !p.starts_with("DEBIAN/")).collect();
    output(Command::new("md5sum").current_dir(stage).arg("--").args(&payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_newest_glibc_version() {
        let bin = b"\0GLIBC_2.2.5\0GLIBC_2.34\0GLIBC_PRIVATE\0GLIBC_2.17\0";
        assert_eq!(max_glibc(bin), Some((2, 34)));
        assert_eq!(max_glibc(b"nothing"), None);
    }

    #[test]
    fn control_names_the_package_and_its_dependencies() {
        let c = control("0.1.0", "amd64", b"GLIBC_2.28\0libgcc_s.so.1\0", 4200);
        assert!(c.contains("Package: tokenwatch\nVersion: 0.1.0\nArchitecture: amd64\n"), "{c}");
        assert!(c.contains("Depends: libc6 (>= 2.28), libgcc-s1\n"), "{c}");
        assert!(c.contains("Installed-Size: 4200\n"));
        // every continuation line of the description starts with a space
        let desc = c.split("Description: ").nth(1).unwrap();
        assert!(desc.lines().skip(1).all(|l| l.starts_with(' ')), "{c}");
    }
}
