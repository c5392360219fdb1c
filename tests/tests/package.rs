//! The Debian package (`cargo xtask package`; `cargo xtask test` builds it and
//! sets TOKENWATCH_DEB): installs with dpkg, runs with the packaged config,
//! removes and purges cleanly. Needs root; skipped otherwise (failed under CI).
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

const BIN: &str = "/usr/bin/tokenwatch";
const CONFIG: &str = "/etc/tokenwatch/config.toml";
const UNIT: &str = "/lib/systemd/system/tokenwatch.service";
const DEFAULT_LISTEN: &str = "127.0.0.1:9464";

fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0")
}

fn skip(why: &str) {
    if in_ci() {
        panic!("{why} (CI is set: the package test must run)");
    }
    eprintln!("SKIPPED: {why}");
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{cmd:?} failed ({}):\n{text}", out.status);
    text
}

fn installed() -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", "tokenwatch"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

/// Purges the package when the test ends, passed or not.
struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "tokenwatch"]).stdout(Stdio::null()).status();
    }
}

/// `tokenwatch run` as a child, killed on drop.
struct Agent(std::process::Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(url: &str) -> Option<(u16, String)> {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(2)))
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut resp = agent.get(url).call().ok()?;
    let code = resp.status().as_u16();
    Some((code, resp.body_mut().read_to_string().unwrap_or_default()))
}

#[test]
fn installs_runs_and_removes() {
    let Some(deb) = std::env::var_os("TOKENWATCH_DEB").map(PathBuf::from) else {
        return skip("TOKENWATCH_DEB is not set (run through `cargo xtask test`, or `cargo xtask package` and set it)");
    };
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return skip("not root: dpkg -i needs root");
    }
    assert!(deb.is_file(), "TOKENWATCH_DEB={} is not a file", deb.display());
    if !installed() {
        if let Some(f) = [BIN, CONFIG].into_iter().find(|f| Path::new(f).exists()) {
            return skip(&format!(
                "{f} exists but not from the tokenwatch package: installing and purging would destroy it"
            ));
        }
    }
    let _purge = Purge;

    run(Command::new("dpkg").arg("-i").arg(&deb).env("DEBIAN_FRONTEND", "noninteractive"));
    assert!(installed());
    for f in [BIN, CONFIG, UNIT] {
        assert!(Path::new(f).is_file(), "{f} not installed");
    }
    let conffiles = run(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", "tokenwatch"]));
    assert!(conffiles.contains(CONFIG), "{CONFIG} is not a conffile: {conffiles}");

    let version = run(Command::new(BIN).arg("--version"));
    assert!(version.starts_with("tokenwatch "), "{version}");

    // systemd reads the installed unit without a complaint (where the tool exists)
    let have_analyze = Command::new("systemd-analyze").arg("--version").output().is_ok();
    assert!(have_analyze || !in_ci(), "systemd-analyze is missing (CI must verify the unit)");
    if have_analyze {
        let out = Command::new("systemd-analyze").args(["verify", UNIT]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && err.trim().is_empty(), "systemd-analyze verify {UNIT}:\n{err}");
    }

    // the packaged config, as packaged; only when its port is taken, a copy
    // that changes nothing but the listen address
    let dir = tempfile::tempdir().unwrap();
    let (config, listen) = if std::net::TcpListener::bind(DEFAULT_LISTEN).is_ok() {
        (PathBuf::from(CONFIG), DEFAULT_LISTEN.to_string())
    } else {
        let listen = format!("127.0.0.1:{}", tokenwatch_tests::agent_proc::free_port());
        let text = std::fs::read_to_string(CONFIG).unwrap();
        let changed = text.replace(&format!("# listen = \"{DEFAULT_LISTEN}\""), &format!("listen = \"{listen}\""));
        assert_ne!(text, changed, "no `# listen = ...` line in the packaged config");
        let copy = dir.path().join("config.toml");
        std::fs::write(&copy, changed).unwrap();
        (copy, listen)
    };
    let log = dir.path().join("agent.log");
    let started = Instant::now();
    let mut agent = Agent(
        Command::new(BIN)
            .args(["run", "-c"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    let healthz = format!("http://{listen}/healthz");
    loop {
        if let Some((200, _)) = get(&healthz) {
            break;
        }
        if let Some(code) = agent.0.try_wait().unwrap() {
            panic!("tokenwatch run exited with {code}:\n{}", log_text());
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no /healthz within 20 s:\n{}", log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    // a few seconds of running, still healthy, with a status document
    std::thread::sleep(Duration::from_secs(3).saturating_sub(started.elapsed()));
    assert!(agent.0.try_wait().unwrap().is_none(), "the agent stopped:\n{}", log_text());
    let (code, status) = get(&format!("http://{listen}/status")).expect("/status");
    assert_eq!(code, 200, "{status}");
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert!(status["level"].is_string(), "{status}");
    // SIGTERM: a clean stop
    // SAFETY: signalling our own, unreaped child.
    unsafe { libc::kill(agent.0.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(s) = agent.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "no stop within 10 s of SIGTERM:\n{}", log_text());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "exit {exit}:\n{}", log_text());

    // remove: the binary goes, the conffile stays; purge: the conffile and the state go
    run(Command::new("dpkg").args(["-r", "tokenwatch"]));
    assert!(!Path::new(BIN).exists(), "{BIN} still there after dpkg -r");
    assert!(!Path::new(UNIT).exists(), "{UNIT} still there after dpkg -r");
    assert!(Path::new(CONFIG).exists(), "dpkg -r must keep the conffile");
    // the agent may not have written state in its short run: purge must remove it all the same
    std::fs::create_dir_all("/var/lib/tokenwatch").unwrap();
    std::fs::write("/var/lib/tokenwatch/tokens.json", b"{}").unwrap();
    run(Command::new("dpkg").args(["--purge", "tokenwatch"]));
    assert!(!installed());
    assert!(!Path::new(CONFIG).exists(), "{CONFIG} still there after purge");
    assert!(!Path::new("/var/lib/tokenwatch").exists(), "state left after purge");
}
