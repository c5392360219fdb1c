//! Debian cloud kernels for the matrix, fetched with `apt-get download`
//! through a private sources list (the system's apt configuration and lists
//! are never touched), cached under `target/vm/`.
//!
//! Which ABI is newest changes every few weeks and old ones leave the mirror,
//! so each kernel line is resolved against the lists (`apt-cache search`),
//! newest first, falling back to older builds the mirror still has, then to
//! the newest one already cached; a line with none of these is skipped with a
//! warning.
use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, SystemTime},
};

use anyhow::{bail, Context, Result};

use crate::util;

/// One kernel line of the matrix: how its packages and releases are named.
/// A package is `package_prefix` + release + `package_suffix`; a release is
/// `release_prefix` + digits and dots + `release_suffix`.
pub struct Spec {
    /// What `--kernel` selects.
    pub name: &'static str,
    /// The Debian suite it comes from, for the report.
    pub suite: &'static str,
    package_prefix: &'static str,
    package_suffix: &'static str,
    release_prefix: &'static str,
    release_suffix: &'static str,
    /// The package holding the kernel's config, when it is not the image's
    /// (the new `linux-binary-*` packaging keeps it in `linux-base-*`).
    config_package_prefix: Option<&'static str>,
    /// The package holding the modules, when it is not the image's
    /// (`linux-modules-*` in the new packaging).
    modules_package_prefix: Option<&'static str>,
    /// Extra kernel command line.
    pub append: &'static str,
}

pub const SPECS: &[Spec] = &[
    Spec {
        name: "5.10",
        suite: "bullseye",
        package_prefix: "linux-image-",
        package_suffix: "-unsigned",
        release_prefix: "5.10.0-",
        release_suffix: "-cloud-amd64",
        config_package_prefix: None,
        modules_package_prefix: None,
        // 5.10 enables BPF-LSM only when asked; without it an LSM program attaches but never runs.
        append: "lsm=lockdown,capability,yama,apparmor,bpf",
    },
    Spec {
        name: "6.1",
        suite: "bookworm",
        package_prefix: "linux-image-",
        package_suffix: "",
        release_prefix: "6.1.0-",
        release_suffix: "-cloud-amd64",
        config_package_prefix: None,
        modules_package_prefix: None,
        append: "",
    },
    Spec {
        name: "6.12",
        suite: "bookworm",
        package_prefix: "linux-image-",
        package_suffix: "",
        release_prefix: "6.12.",
        release_suffix: "+deb12-cloud-amd64",
        config_package_prefix: None,
        modules_package_prefix: None,
        append: "",
    },
    Spec {
        name: "backports",
        suite: "trixie-backports",
        package_prefix: "linux-binary-",
        package_suffix: "",
        release_prefix: "",
        release_suffix: "+deb13-cloud-amd64",
        config_package_prefix: Some("linux-base-"),
        modules_package_prefix: Some("linux-modules-"),
        append: "",
    },
];

/// The private sources list: every suite the specs draw from, package indexes only.
const SOURCES: &str = "\
deb [target=Packages signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main
deb [target=Packages signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-updates main
deb [target=Packages signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security bookworm-security main
deb [target=Packages signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bullseye main
deb [target=Packages signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security bullseye-security main
deb [target=Packages signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie-backports main
";
/// Lists younger than this are used as they are (a warm run stays offline).
const LISTS_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// How many builds of one line to try before giving up on the mirror.
const MAX_TRIES: usize = 4;

/// Modules the tests need that the cloud kernels build as modules (paths
/// under `kernel/`, without `.ko`): `unix_diag` answers the sock_diag queries
/// for Unix sockets with which the eBPF source finds open connections. On a
/// host the kernel loads it on demand; the guest has no modprobe setup, so
/// `/init` inserts each one.
pub const MODULES: &[&str] = &["net/unix/unix_diag"];

/// A kernel ready to boot.
pub struct Kernel {
    pub spec: &'static Spec,
    /// `uname -r` in the guest.
    pub release: String,
    pub vmlinuz: PathBuf,
    pub config: PathBuf,
    /// [`MODULES`], uncompressed, in that order.
    pub modules: Vec<PathBuf>,
}

impl Spec {
    pub fn by_name(name: &str) -> Result<&'static Spec> {
        SPECS.iter().find(|s| s.name == name).with_context(|| {
            let names: Vec<_> = SPECS.iter().map(|s| s.name).collect();
            format!("unknown kernel {name:?}; known: {}", names.join(", "))
        })
    }

    fn package(&self, release: &str) -> String {
        format!("{}{release}{}", self.package_prefix, self.package_suffix)
    }

    /// The release a package of this line carries, or None for other packages
    /// (debug symbols, meta-packages, headers, unsigned twins).
    fn release_of(&self, package: &str) -> Option<String> {
        let release = package.strip_prefix(self.package_prefix)?.strip_suffix(self.package_suffix)?;
        self.is_release(release).then(|| release.to_string())
    }

    fn is_release(&self, release: &str) -> bool {
        release
            .strip_prefix(self.release_prefix)
            .and_then(|r| r.strip_suffix(self.release_suffix))
            .is_some_and(|mid| !mid.is_empty() && mid.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
    }

    /// The extended regex `apt-cache search --names-only` gets.
    fn search_regex(&self) -> String {
        let esc = |s: &str| s.replace('.', "\\.").replace('+', "\\+");
        format!(
            "^{}[0-9.]+{}$",
            esc(&format!("{}{}", self.package_prefix, self.release_prefix)),
            esc(&format!("{}{}", self.release_suffix, self.package_suffix))
        )
    }
}

/// The packages of `spec` in `apt-cache search` output, newest release first.
pub fn parse_search(spec: &Spec, output: &str) -> Vec<String> {
    let mut found: Vec<(Vec<u64>, String)> = output
        .lines()
        .filter_map(|l| l.split(" - ").next())
        .filter_map(|pkg| spec.release_of(pkg.trim()))
        .map(|r| (version_key(&r), r))
        .collect();
    found.sort();
    found.dedup();
    found.into_iter().rev().map(|(_, r)| r).collect()
}

/// Orders releases: every number in the string, in order
/// (`6.1.0-56-cloud-amd64` → [6, 1, 0, 56]; `7.3.4+deb13-…` → [7, 3, 4, 13, …]).
fn version_key(release: &str) -> Vec<u64> {
    release.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).map(|s| s.parse().unwrap_or(0)).collect()
}

/// apt with its state, lists and cache under `dir`.
struct Apt {
    dir: PathBuf,
    /// Serialises updates of the `unavailable` file (kernels are fetched in parallel).
    lock: std::sync::Mutex<()>,
}

impl Apt {
    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        let opt = |k: &str, v: &Path| format!("{k}={}", v.display());
        c.args(["-o", &opt("Dir::Etc::SourceList", &self.dir.join("sources.list"))])
            .args(["-o", "Dir::Etc::SourceParts=/nonexistent"])
            .args(["-o", &opt("Dir::State::Lists", &self.dir.join("lists"))])
            .args(["-o", &opt("Dir::Cache", &self.dir.join("cache"))])
            .args(["-o", "Acquire::Languages=none", "-o", "APT::Sandbox::User=root", "-q"])
            .env("LC_ALL", "C")
            .stdin(Stdio::null());
        c
    }

    fn stamp(&self) -> PathBuf {
        self.dir.join("updated")
    }

    /// Builds that 404'd on the mirror since the lists were last updated.
    fn unavailable_file(&self) -> PathBuf {
        self.dir.join("unavailable")
    }

    fn unavailable(&self) -> BTreeSet<String> {
        std::fs::read_to_string(self.unavailable_file()).unwrap_or_default().lines().map(str::to_string).collect()
    }

    fn mark_unavailable(&self, package: &str) {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut all = self.unavailable();
        all.insert(package.to_string());
        let _ = std::fs::write(self.unavailable_file(), all.into_iter().collect::<Vec<_>>().join("\n"));
    }

    /// Updates the private lists unless they are fresh. A failed update is a
    /// warning: older lists and cached kernels may still do.
    fn update(&self) -> Result<()> {
        for d in ["lists/partial", "cache/archives/partial"] {
            std::fs::create_dir_all(self.dir.join(d))?;
        }
        let list = self.dir.join("sources.list");
        let same_sources = std::fs::read_to_string(&list).is_ok_and(|s| s == SOURCES);
        let fresh = std::fs::metadata(self.stamp())
            .and_then(|m| m.modified())
            .is_ok_and(|t| SystemTime::now().duration_since(t).unwrap_or_default() < LISTS_MAX_AGE);
        if same_sources && fresh {
            return Ok(());
        }
        std::fs::write(&list, SOURCES)?;
        let _ = std::fs::remove_file(self.stamp());
        match util::output(self.cmd("apt-get").arg("update")) {
            Ok(_) => {
                let _ = std::fs::remove_file(self.unavailable_file());
                std::fs::write(self.stamp(), b"")?;
            }
            Err(e) => eprintln!("vm-test: warning: updating the kernel package lists failed: {e:#}"),
        }
        Ok(())
    }

    /// One `apt-cache search` for all of `specs` (each call reads every list: ~1 s).
    fn search(&self, specs: &[&Spec]) -> String {
        let regex: Vec<String> = specs.iter().map(|s| format!("({})", s.search_regex())).collect();
        util::output(self.cmd("apt-cache").args(["search", "--names-only", &regex.join("|")])).unwrap_or_else(|e| {
            eprintln!("vm-test: warning: apt-cache search: {e:#}");
            String::new()
        })
    }

    fn download(&self, packages: &[String], into: &Path) -> Result<()> {
        std::fs::create_dir_all(into)?;
        util::output(self.cmd("apt-get").arg("download").args(packages).current_dir(into)).map(|_| ())
    }
}

/// Resolves, downloads (when not cached) and extracts each kernel of `specs`,
/// all at once (unpacking a kernel package is a few seconds of xz). Kernels
/// that cannot be had are left out with a warning; the rest come in the
/// order of `specs`.
pub fn fetch(specs: &[&'static Spec], cache_dir: &Path) -> Result<Vec<Kernel>> {
    let apt = Apt { dir: cache_dir.join("apt"), lock: Default::default() };
    let t = std::time::Instant::now();
    apt.update()?;
    let found = apt.search(specs);
    eprintln!("vm-test: kernel package lists {:.1}s", t.elapsed().as_secs_f64());
    let cache = cache_dir.join("kernels");
    let fetched: Vec<Result<Option<Kernel>>> = std::thread::scope(|s| {
        let threads: Vec<_> = specs
            .iter()
            .map(|&spec| {
                let (apt, found, cache) = (&apt, &found, &cache);
                s.spawn(move || fetch_one(apt, spec, &parse_search(spec, found), cache))
            })
            .collect();
        threads.into_iter().map(|t| t.join().expect("kernel fetch panicked")).collect()
    });
    let mut kernels = Vec::new();
    for (spec, got) in specs.iter().zip(fetched) {
        match got {
            Ok(Some(k)) => kernels.push(k),
            Ok(None) => eprintln!("vm-test: warning: no {} kernel ({}) found; skipping it", spec.name, spec.suite),
            Err(e) => eprintln!("vm-test: warning: {} kernel ({}): {e:#}; skipping it", spec.name, spec.suite),
        }
    }
    Ok(kernels)
}

/// `candidates`: the releases the lists have, newest first.
fn fetch_one(apt: &Apt, spec: &'static Spec, candidates: &[String], cache: &Path) -> Result<Option<Kernel>> {
    let unavailable = apt.unavailable();
    for release in candidates.iter().filter(|r| !unavailable.contains(&spec.package(r))).take(MAX_TRIES) {
        if let Some(k) = cached(spec, cache, release) {
            return Ok(Some(k));
        }
        // one per line and process: lines are fetched in parallel, and another run may share the cache
        let debs = cache.join(format!("debs-{}-{}", spec.name, std::process::id()));
        let _ = std::fs::remove_dir_all(&debs);
        let mut packages = vec![spec.package(release)];
        packages.extend(spec.config_package_prefix.map(|p| format!("{p}{release}")));
        packages.extend(spec.modules_package_prefix.map(|p| format!("{p}{release}")));
        let t = std::time::Instant::now();
        if let Err(e) = apt.download(&packages, &debs) {
            let _ = std::fs::remove_dir_all(&debs);
            let msg = format!("{e:#}");
            let first = msg.lines().find(|l| l.starts_with("E:")).unwrap_or(&msg).to_string();
            eprintln!("vm-test: downloading {} failed ({first}); trying an older build", packages[0]);
            // Remember only what the mirror does not have, not a network outage.
            if msg.contains(" 404 ") {
                apt.mark_unavailable(&packages[0]);
            }
            continue;
        }
        let kernel = extract(spec, release, &debs, cache);
        std::fs::remove_dir_all(&debs)?;
        let kernel = kernel?;
        eprintln!("vm-test: fetched {} ({:.1}s)", packages.join(" "), t.elapsed().as_secs_f64());
        // Older builds of the same line are no longer wanted.
        for other in cached_releases(spec, cache).into_iter().filter(|r| r != release) {
            let _ = std::fs::remove_dir_all(cache.join(other));
        }
        return Ok(Some(kernel));
    }
    // Offline, or the mirror dropped every build the lists name: the newest cached one.
    let newest = cached_releases(spec, cache).into_iter().next();
    if let Some(k) = newest.and_then(|r| cached(spec, cache, &r)) {
        if candidates.first() != Some(&k.release) {
            eprintln!("vm-test: warning: using the cached {} kernel {}", spec.name, k.release);
        }
        return Ok(Some(k));
    }
    Ok(None)
}

fn cached(spec: &'static Spec, cache: &Path, release: &str) -> Option<Kernel> {
    let dir = cache.join(release);
    let (vmlinuz, config) = (dir.join("vmlinuz"), dir.join("config"));
    let modules: Vec<PathBuf> = MODULES.iter().map(|m| dir.join(module_file(m))).collect();
    (vmlinuz.is_file() && config.is_file() && modules.iter().all(|m| m.is_file())).then(|| Kernel {
        spec,
        release: release.to_string(),
        vmlinuz,
        config,
        modules,
    })
}

/// `net/unix/unix_diag` → `unix_diag.ko`.
fn module_file(module: &str) -> String {
    format!("{}.ko", module.rsplit('/').next().unwrap_or(module))
}

/// Releases of `spec` in the cache, newest first.
fn cached_releases(spec: &Spec, cache: &Path) -> Vec<String> {
    let mut found: Vec<(Vec<u64>, String)> = std::fs::read_dir(cache)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|r| spec.is_release(r))
        .map(|r| (version_key(&r), r))
        .collect();
    found.sort();
    found.into_iter().rev().map(|(_, r)| r).collect()
}

/// Takes vmlinuz and config out of the downloaded packages, wherever this
/// packaging keeps them (`boot/` or `usr/lib/modules/VER/`).
fn extract(spec: &'static Spec, release: &str, debs: &Path, cache: &Path) -> Result<Kernel> {
    let tmp = debs.join("x");
    std::fs::create_dir_all(&tmp)?;
    for deb in std::fs::read_dir(debs)?.filter_map(|e| e.ok().map(|e| e.path())) {
        if deb.extension().is_some_and(|e| e == "deb") {
            untar_deb(&deb, &tmp)?;
        }
    }
    let pick = |names: [String; 2]| names.into_iter().map(|n| tmp.join(n)).find(|p| p.is_file());
    let vmlinuz = pick([format!("boot/vmlinuz-{release}"), format!("usr/lib/modules/{release}/vmlinuz")])
        .with_context(|| format!("no vmlinuz for {release} in {}", debs.display()))?;
    let config = pick([format!("boot/config-{release}"), format!("usr/lib/modules/{release}/config")])
        .with_context(|| format!("no config for {release} in {}", debs.display()))?;
    let dir = cache.join(release);
    std::fs::create_dir_all(&dir)?;
    for module in MODULES {
        let found = ["lib", "usr/lib"]
            .iter()
            .flat_map(|l| ["", ".xz"].map(|ext| tmp.join(format!("{l}/modules/{release}/kernel/{module}.ko{ext}"))))
            .find(|p| p.is_file())
            .with_context(|| format!("no module {module} for {release} in {}", debs.display()))?;
        let out = dir.join(module_file(module));
        if found.extension().is_some_and(|e| e == "xz") {
            // busybox insmod hands the file to init_module as it is: unpack it here
            let data = std::process::Command::new("xz")
                .arg("-dc")
                .arg(&found)
                .output()
                .context("starting xz (package xz-utils)")?;
            if !data.status.success() {
                bail!("xz -d {}: {}", found.display(), String::from_utf8_lossy(&data.stderr));
            }
            std::fs::write(&out, data.stdout)?;
        } else {
            std::fs::rename(&found, &out)?;
        }
    }
    std::fs::rename(config, dir.join("config"))?;
    // vmlinuz last: its presence marks a complete entry.
    std::fs::rename(vmlinuz, dir.join("vmlinuz"))?;
    cached(spec, cache, release).context("kernel cache entry incomplete")
}

/// `dpkg-deb --fsys-tarfile DEB | tar -x` of the kernel image, config and [`MODULES`] only.
fn untar_deb(deb: &Path, into: &Path) -> Result<()> {
    let mut dpkg = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .spawn()
        .context("starting dpkg-deb")?;
    let tar = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(into)
        .args(["--wildcards", "./boot/vmlinuz-*", "./boot/config-*", "./usr/lib/modules/*/vmlinuz"])
        .arg("./usr/lib/modules/*/config")
        .args(MODULES.iter().flat_map(|m| ["./lib", "./usr/lib"].map(|l| format!("{l}/modules/*/kernel/{m}.ko*"))))
        .stdin(dpkg.stdout.take().context("dpkg-deb stdout")?)
        .stderr(Stdio::null())
        .status()
        .context("starting tar")?;
    let dpkg = dpkg.wait()?;
    // tar exits 2 when a pattern matched nothing, which is normal here (each
    // packaging has only one of the layouts); the caller checks what came out.
    if !dpkg.success() || !matches!(tar.code(), Some(0 | 2)) {
        bail!("unpacking {}: dpkg-deb {dpkg}, tar {tar}", deb.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real `apt-cache search` output (2026-11): meta-packages, debug symbols,
    /// headers and unsigned twins are listed next to the images.
    const SEARCH: &str = "\
linux-image-5.10.0-32-cloud-amd64-unsigned - Linux 5.10 for x86-64 cloud
linux-image-5.10.0-46-cloud-amd64-unsigned - Linux 5.10 for x86-64 cloud
linux-image-5.10.0-9-cloud-amd64-unsigned - Linux 5.10 for x86-64 cloud
linux-image-6.1.0-56-cloud-amd64 - Linux 6.1 for x86-64 cloud (signed)
linux-image-6.1.0-56-cloud-amd64-dbg - Linux 6.1 for x86-64 cloud (debug symbols)
linux-image-6.1.0-9-cloud-amd64 - Linux 6.1 for x86-64 cloud (signed)
linux-image-6.1-cloud-amd64 - Linux for x86-64 cloud (meta-package)
linux-image-6.12.117+deb12-cloud-amd64 - Linux 6.12 for x86-64 cloud (signed)
linux-image-6.12.99+deb12-cloud-amd64 - Linux 6.12 for x86-64 cloud (signed)
linux-headers-6.12.117+deb12-cloud-amd64 - Header files for Linux 6.12.117+deb12-cloud-amd64
linux-binary-unsigned-7.3.4+deb13-cloud-amd64 - Linux 7.3.4 for x86-64 cloud (unsigned kernel image)
linux-binary-7.2.12+deb13-cloud-amd64 - Linux 7.2.12 for x86-64 cloud (kernel image)
linux-binary-7.3.4+deb13-cloud-amd64 - Linux 7.3.4 for x86-64 cloud (kernel image)
linux-binary-7.10.1+deb13-cloud-amd64 - Linux 7.10.1 for x86-64 cloud (kernel image)
linux-image-cloud-amd64 - Linux for x86-64 cloud (meta-package)
";

    #[test]
    fn picks_each_lines_images_newest_first() {
        let got = |name| parse_search(Spec::by_name(name).unwrap(), SEARCH);
        assert_eq!(got("5.10"), ["5.10.0-46-cloud-amd64", "5.10.0-32-cloud-amd64", "5.10.0-9-cloud-amd64"]);
        assert_eq!(got("6.1"), ["6.1.0-56-cloud-amd64", "6.1.0-9-cloud-amd64"]);
        assert_eq!(got("6.12"), ["6.12.117+deb12-cloud-amd64", "6.12.99+deb12-cloud-amd64"]);
        assert_eq!(
            got("backports"),
            ["7.10.1+deb13-cloud-amd64", "7.3.4+deb13-cloud-amd64", "7.2.12+deb13-cloud-amd64"]
        );
        assert!(parse_search(Spec::by_name("6.1").unwrap(), "").is_empty());
    }

    #[test]
    fn packages_and_regexes_follow_each_packaging() {
        let s = Spec::by_name("5.10").unwrap();
        assert_eq!(s.package("5.10.0-46-cloud-amd64"), "linux-image-5.10.0-46-cloud-amd64-unsigned");
        assert_eq!(s.search_regex(), r"^linux-image-5\.10\.0-[0-9.]+-cloud-amd64-unsigned$");
        let b = Spec::by_name("backports").unwrap();
        assert_eq!(b.search_regex(), r"^linux-binary-[0-9.]+\+deb13-cloud-amd64$");
        assert!(b.is_release("7.3.4+deb13-cloud-amd64"));
        assert!(!b.is_release("6.12.117+deb12-cloud-amd64"));
        assert!(Spec::by_name("7.3").is_err());
    }
}
