//! The guest's root filesystem: a newc cpio archive, written without root
//! (device nodes and ownership are just header fields). Uncompressed: gzip
//! costs the host ~0.7 s for the ~40 MB of debug binaries and each guest
//! ~0.25 s to unpack, and saves nothing that matters (the file stays local).
//!
//! Contents: busybox, `/init`, the test binaries under `/tests`, the simulator
//! binaries under `/sim`, the shared libraries they link at the host's paths,
//! each kernel's `/boot/config-VER` (bpftool and libbpf-style loaders read it;
//! the cloud kernels have no IKCONFIG), and a `/dev/console` node, which the
//! kernel opens for init's stdio before anything is mounted (DEVTMPFS_MOUNT is off).
use std::{
    collections::BTreeSet,
    fs::File,
    io::{self, BufWriter, Write},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use flate2::{write::GzEncoder, Compression};

use super::{binaries, kernels::Kernel};

/// The line `/init` prints last; its number is the status of the test run.
pub const EXIT_MARKER: &str = "VMTEST_EXIT=";
/// Printed before each test binary runs (its file name follows).
pub const BINARY_MARKER: &str = "VMTEST_BINARY=";
/// Printed when `/init` starts: the guest's uptime (seconds), i.e. how long the kernel took to boot.
pub const BOOTED_MARKER: &str = "VMTEST_BOOTED=";

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFCHR: u32 = 0o020000;
const TRAILER: &str = "TRAILER!!!";

/// Writes a newc ("070701") cpio stream: entries in the order added, then the trailer.
pub struct CpioWriter<W: Write> {
    out: W,
    next_ino: u32,
}

impl<W: Write> CpioWriter<W> {
    pub fn new(out: W) -> Self {
        Self { out, next_ino: 1 }
    }

    pub fn dir(&mut self, path: &str) -> io::Result<()> {
        self.entry(path, S_IFDIR | 0o755, 2, (0, 0), &[])
    }

    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> io::Result<()> {
        self.entry(path, S_IFREG | mode, 1, (0, 0), data)
    }

    /// A character device node.
    pub fn char_dev(&mut self, path: &str, mode: u32, major: u32, minor: u32) -> io::Result<()> {
        self.entry(path, S_IFCHR | mode, 1, (major, minor), &[])
    }

    /// Writes the trailer and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.next_ino = 0;
        self.entry(TRAILER, 0, 1, (0, 0), &[])?;
        Ok(self.out)
    }

    fn entry(&mut self, path: &str, mode: u32, nlink: u32, rdev: (u32, u32), data: &[u8]) -> io::Result<()> {
        let name = path.trim_start_matches('/');
        let size = u32::try_from(data.len()).map_err(|_| io::Error::other(format!("{path}: over 4 GiB")))?;
        let ino = self.next_ino;
        self.next_ino += 1;
        // magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor,
        // rdevmajor, rdevminor, namesize (with its NUL), check
        let fields = [ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev.0, rdev.1, name.len() as u32 + 1, 0];
        let mut header = String::with_capacity(110);
        header.push_str("070701");
        for f in fields {
            header.push_str(&format!("{f:08x}"));
        }
        self.out.write_all(header.as_bytes())?;
        self.out.write_all(name.as_bytes())?;
        self.out.write_all(&[0])?;
        self.pad(110 + name.len() + 1)?;
        self.out.write_all(data)?;
        self.pad(data.len())
    }

    /// Pads to the next multiple of four bytes.
    fn pad(&mut self, len: usize) -> io::Result<()> {
        self.out.write_all(&[0; 3][..(4 - len % 4) % 4])
    }
}

/// What goes into the archive besides busybox and `/init`.
pub struct Contents<'a> {
    pub busybox: &'a Path,
    /// (file name under /tests, path on the host)
    pub tests: &'a [(String, PathBuf)],
    /// (file name under /sim, path on the host)
    pub sims: &'a [(String, PathBuf)],
    /// Shared libraries and the dynamic loader, each at its host path (symlinks followed).
    pub libs: &'a [PathBuf],
    /// Each kernel's config (`/boot/config-VER`) and modules (`/lib/modules/VER/`).
    pub kernels: &'a [Kernel],
    /// `tests` are criterion benches (run with `--bench`), not libtest tests.
    pub bench: bool,
}

/// Packs `tests` and `sims` (stripped copies under `work/`), the libraries
/// they link, busybox and `kernels`' modules into `out`.
pub fn pack(
    out: &Path,
    work: &Path,
    tests: &[(String, PathBuf)],
    sims: &[(String, PathBuf)],
    kernels: &[Kernel],
    bench: bool,
) -> Result<()> {
    let strip = |list: &[(String, PathBuf)], into: &str| -> Result<Vec<(String, PathBuf)>> {
        list.iter().map(|(n, p)| Ok((n.clone(), binaries::stripped(n, p, &work.join(into))?))).collect()
    };
    let (stripped, stripped_sims) = (strip(tests, "tests")?, strip(sims, "sim")?);
    let all: Vec<&Path> = tests.iter().chain(sims).map(|(_, p)| p.as_path()).collect();
    let libs = binaries::libraries(&all)?;
    let contents = Contents {
        busybox: Path::new(super::BUSYBOX),
        tests: &stripped,
        sims: &stripped_sims,
        libs: &libs,
        kernels,
        bench,
    };
    write(out, &contents)
}

/// The archive's name under `target/vm/`.
pub const FILE_NAME: &str = "initramfs.cpio";

/// Writes the initramfs to `out` (gzip-compressed when it ends in `.gz`).
pub fn write(out: &Path, contents: &Contents) -> Result<()> {
    let file = BufWriter::new(File::create(out).with_context(|| format!("creating {}", out.display()))?);
    if out.extension().is_some_and(|e| e == "gz") {
        let gz = write_to(GzEncoder::new(file, Compression::fast()), contents)?;
        gz.finish()?.flush()?;
    } else {
        write_to(file, contents)?.flush()?;
    }
    Ok(())
}

fn write_to<W: Write>(out: W, contents: &Contents) -> Result<W> {
    // (path in the guest, path on the host, mode)
    let mut files: Vec<(String, &Path, u32)> = vec![("/bin/busybox".into(), contents.busybox, 0o755)];
    for k in contents.kernels {
        files.push((format!("/boot/config-{}", k.release), &k.config, 0o644));
        for m in &k.modules {
            let name = m.file_name().and_then(|n| n.to_str()).context("module file name")?;
            files.push((format!("/lib/modules/{}/{name}", k.release), m, 0o644));
        }
    }
    files.extend(contents.tests.iter().map(|(n, p)| (format!("/tests/{n}"), p.as_path(), 0o755)));
    files.extend(contents.sims.iter().map(|(n, p)| (format!("/sim/{n}"), p.as_path(), 0o755)));
    for lib in contents.libs {
        let name = lib.to_str().with_context(|| format!("{}: not UTF-8", lib.display()))?;
        files.push((name.to_string(), lib, 0o755));
    }

    let mut cpio = CpioWriter::new(out);
    for dir in dirs(files.iter().map(|f| f.0.as_str())) {
        cpio.dir(&dir)?;
    }
    cpio.char_dev("/dev/console", 0o600, 5, 1)?;
    let args = if contents.bench { "--bench" } else { "--test-threads=1 --nocapture" };
    cpio.file("/init", 0o755, INIT.replace("@ARGS@", args).as_bytes())?;
    for (name, path, mode) in &files {
        cpio.file(name, *mode, &std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)?;
    }
    Ok(cpio.finish()?)
}

/// The directories of the archive, parents first: those `/init` mounts on
/// or needs, and every parent of `files`.
fn dirs<'a>(files: impl Iterator<Item = &'a str>) -> Vec<String> {
    const ALWAYS: [&str; 14] = [
        "/bin",
        "/sbin",
        "/usr",
        "/usr/bin",
        "/usr/sbin",
        "/dev",
        "/proc",
        "/sys",
        "/tmp",
        "/run",
        "/root",
        "/boot",
        "/tests",
        "/sim",
    ];
    let mut dirs: BTreeSet<String> = ALWAYS.iter().map(|d| d.to_string()).collect();
    for f in files {
        dirs.extend(
            Path::new(f).ancestors().skip(1).filter_map(|d| d.to_str()).filter(|d| d.len() > 1).map(str::to_string),
        );
    }
    // in BTreeSet order a parent comes before its children
    dirs.into_iter().collect()
}

/// PID 1 in the guest. Every test binary runs as root with the environment
/// the tests know: CI (a load failure fails instead of skipping),
/// TOKENWATCH_VM (only the test binaries, the simulator and their libraries
/// are there: no Python, no network) and TOKENWATCH_SIM_DIR.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s
mount -t proc proc /proc
echo "VMTEST_BOOTED=$(cut -d' ' -f1 /proc/uptime)"
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t tracefs tracefs /sys/kernel/tracing
mount -t bpf bpf /sys/fs/bpf
ip link set lo up 2>/dev/null
for m in /lib/modules/$(uname -r)/*.ko; do
  [ -e "$m" ] && insmod "$m"
done
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root TMPDIR=/tmp CI=true TOKENWATCH_VM=1 TOKENWATCH_SIM_DIR=/sim RUST_BACKTRACE=1
cd /tmp
echo "VMTEST_KERNEL=$(uname -r)"
rc=0
for t in /tests/*; do
  echo "VMTEST_BINARY=${t##*/}"
  "$t" @ARGS@ || rc=1
done
echo "VMTEST_EXIT=$rc"
poweroff -f
"#;

#[cfg(test)]
mod tests {
    use super::*;

    /// (name, mode, rdev, data) of each entry, the trailer excluded.
    type Entry = (String, u32, (u32, u32), Vec<u8>);

    /// Reads a newc archive back: the check on the writer.
    fn read_newc(mut b: &[u8]) -> Vec<Entry> {
        let hex = |s: &[u8]| u32::from_str_radix(std::str::from_utf8(s).unwrap(), 16).unwrap();
        let mut entries = Vec::new();
        let mut offset = 0;
        loop {
            assert_eq!(&b[..6], b"070701", "magic at offset {offset}");
            let field = |i: usize| hex(&b[6 + i * 8..14 + i * 8]);
            let (mode, size, rdev, namesize) = (field(1), field(6) as usize, (field(9), field(10)), field(11) as usize);
            let name = std::str::from_utf8(&b[110..110 + namesize - 1]).unwrap().to_string();
            assert_eq!(b[110 + namesize - 1], 0, "{name}: name not NUL-terminated");
            let data_start = (110 + namesize).next_multiple_of(4);
            let data = b[data_start..data_start + size].to_vec();
            let next = (data_start + size).next_multiple_of(4);
            assert!(b[data_start + size..next].iter().all(|&x| x == 0), "{name}: padding");
            offset += next;
            b = &b[next..];
            if name == TRAILER {
                assert!(b.is_empty(), "bytes after the trailer");
                return entries;
            }
            entries.push((name, mode, rdev, data));
        }
    }

    fn sample() -> Vec<u8> {
        let mut w = CpioWriter::new(Vec::new());
        w.dir("/dev").unwrap();
        w.char_dev("/dev/console", 0o600, 5, 1).unwrap();
        w.file("/init", 0o755, b"#!/bin/sh\n").unwrap();
        // lengths that exercise every padding remainder
        for n in 0..4 {
            w.file(&format!("/f{}", "x".repeat(n)), 0o644, &vec![b'a' + n as u8; n + 5]).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn newc_round_trip() {
        let e = read_newc(&sample());
        let names: Vec<_> = e.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(names, ["dev", "dev/console", "init", "f", "fx", "fxx", "fxxx"]);
        assert_eq!((e[0].1, e[1].1, e[1].2), (S_IFDIR | 0o755, S_IFCHR | 0o600, (5, 1)));
        assert_eq!((e[2].1, e[2].3.as_slice()), (S_IFREG | 0o755, &b"#!/bin/sh\n"[..]));
        assert_eq!(e[6].3, b"dddddddd");
    }

    /// busybox's cpio (the same code the kernel's format follows) lists it too.
    #[test]
    fn busybox_cpio_lists_the_archive() {
        let busybox = Path::new(super::super::BUSYBOX);
        if !busybox.exists() {
            eprintln!("SKIPPED: no {}", busybox.display());
            return;
        }
        let dir = std::env::temp_dir().join(format!("xtask-cpio-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let archive = dir.join("a.cpio");
        std::fs::write(&archive, sample()).unwrap();
        let out = std::process::Command::new(busybox).args(["cpio", "-t", "-F"]).arg(&archive).output().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let listed = String::from_utf8(out.stdout).unwrap();
        assert_eq!(listed.lines().collect::<Vec<_>>(), ["dev", "dev/console", "init", "f", "fx", "fxx", "fxxx"]);
    }

    #[test]
    fn directories_parents_first() {
        let files = [
            "/lib/x86_64-linux-gnu/libc.so.6",
            "/lib64/ld-linux-x86-64.so.2",
            "/lib/modules/6.1.0-56-cloud-amd64/unix_diag.ko",
            "/usr/lib/x/libz.so.1",
        ];
        let got = dirs(files.into_iter());
        let pos = |d: &str| got.iter().position(|x| x == d).unwrap_or_else(|| panic!("no {d} in {got:?}"));
        assert!(pos("/lib") < pos("/lib/x86_64-linux-gnu") && pos("/lib") < pos("/lib/modules"));
        assert!(pos("/lib/modules") < pos("/lib/modules/6.1.0-56-cloud-amd64") && pos("/usr") < pos("/usr/lib/x"));
        assert!(pos("/lib64") > 0 && pos("/tmp") > 0 && pos("/tests") > 0);
        assert_eq!(got.iter().filter(|d| *d == "/usr").count(), 1);
    }

    #[test]
    fn init_prints_the_markers_it_is_parsed_by() {
        assert!(INIT.contains(&format!("echo \"{EXIT_MARKER}$rc\"")));
        assert!(INIT.contains(&format!("echo \"{BINARY_MARKER}")));
        assert!(INIT.contains(&format!("echo \"{BOOTED_MARKER}")));
    }
}
