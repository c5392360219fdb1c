//! Reads the test output of one kernel (a VM's console or the host run) and
//! renders the matrix: one row per kernel.
//!
//! Hooks come from the tests themselves: a test that loaded the eBPF source
//! prints `HOOKS: <hook>, <hook>, …` on stdout (the binaries run with
//! `--nocapture`). The source's status detail works as it is
//! (`HOOKS: attached syscalls/sys_enter_connect, … (socket /tmp/…)`): a
//! leading "attached" and a trailing parenthesis are dropped, and the
//! capture hooks (attached only while capturing) are added from the
//! detail's `capture via …` part.
//!
//! The agent falls back to syscall tracepoints when the kernel refuses
//! fentry/fexit; a refusal *by the verifier* is a bug in our programs for
//! that kernel, so it fails the row even though the tests passed on the
//! fallback.
use std::fmt::Write as _;

/// What one kernel's test run said.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Every hook any test reported, in first-seen order.
    pub hooks: Vec<String>,
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
    /// Test binaries that printed a libtest summary.
    pub binaries: u64,
    /// Verifier rejections the source reported (and fell back from).
    pub rejected: Vec<String>,
}

pub const HOOKS_MARKER: &str = "HOOKS:";
const REJECTED: &str = "rejected by the verifier";
/// The detail's capture part, and how the matrix names each kind.
const CAPTURE_KINDS: [(&str, &str); 2] = [
    ("capture via fentry/fexit", "capture: fexit/__x64_sys_*"),
    ("capture via syscall tracepoints", "capture: syscalls/sys_{enter,exit}_*"),
];

pub fn parse(output: &str) -> Outcome {
    let mut o = Outcome::default();
    for line in output.lines() {
        if let Some(i) = line.find(HOOKS_MARKER) {
            let detail = &line[i + HOOKS_MARKER.len()..];
            let capture = CAPTURE_KINDS.iter().filter(|(k, _)| detail.contains(k)).map(|(_, name)| name.to_string());
            for hook in hooks(detail).into_iter().chain(capture) {
                if !o.hooks.contains(&hook) {
                    o.hooks.push(hook);
                }
            }
            for part in detail.split("; ").filter(|p| p.contains(REJECTED)) {
                if !o.rejected.iter().any(|r| r == part) {
                    o.rejected.push(part.to_string());
                }
            }
        } else if let Some(rest) = line.find("test result: ").map(|i| &line[i + "test result: ".len()..]) {
            o.binaries += 1;
            for part in rest.split(';') {
                let part = part.trim().trim_start_matches("ok. ").trim_start_matches("FAILED. ");
                let Some((n, word)) = part.split_once(' ') else { continue };
                let Ok(n) = n.parse::<u64>() else { continue };
                match word {
                    "passed" => o.passed += n,
                    "failed" => o.failed += n,
                    "ignored" => o.ignored += n,
                    _ => {}
                }
            }
        }
    }
    o
}

fn hooks(list: &str) -> Vec<String> {
    let list = list.trim();
    let list = list.strip_prefix("attached ").unwrap_or(list);
    // labels never contain " (": what follows is the socket and the rest of the detail
    let list = list.find(" (").map_or(list, |i| &list[..i]);
    list.split(',').map(str::trim).filter(|h| !h.is_empty()).map(str::to_string).collect()
}

/// One row of the matrix.
pub struct Row {
    /// `uname -r`, or the line's name when it never booted.
    pub kernel: String,
    /// Where it came from: a Debian suite, or "host".
    pub source: String,
    pub outcome: Outcome,
    pub verdict: Verdict,
    pub seconds: f64,
}

pub enum Verdict {
    Pass,
    Fail(String),
    /// Not run (no such kernel could be had); not a failure.
    Skipped(String),
}

/// The matrix as a Markdown table (it reads as plain text in a terminal too).
pub fn table(rows: &[Row]) -> String {
    let mut s = String::from("| Kernel | From | Hooks used | Tests | Result |\n|---|---|---|---|---|\n");
    for r in rows {
        let o = &r.outcome;
        let hooks = if o.hooks.is_empty() { "(none reported)".to_string() } else { o.hooks.join(", ") };
        let mut tests = format!("{} passed, {} failed", o.passed, o.failed);
        if o.ignored > 0 {
            let _ = write!(tests, ", {} ignored", o.ignored);
        }
        let result = match &r.verdict {
            Verdict::Pass => format!("pass ({:.0} s)", r.seconds),
            Verdict::Fail(why) => format!("**FAIL**: {why}"),
            Verdict::Skipped(why) => format!("skipped: {why}"),
        };
        let _ = writeln!(s, "| {} | {} | {hooks} | {tests} | {result} |", r.kernel, r.source);
    }
    s
}

/// Why a finished run failed even though the runner reported success: a test
/// binary that printed no summary, or none at all; a probe the verifier
/// rejected (the source fell back and the tests passed on the fallback).
pub fn missing_results(o: &Outcome, expected_binaries: usize) -> Option<String> {
    if let Some(r) = o.rejected.first() {
        return Some(format!("a probe failed to load: {r}"));
    }
    (o.binaries < expected_binaries as u64)
        .then(|| format!("{} of {expected_binaries} test binaries reported a result", o.binaries))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONSOLE: &str = "\
VMTEST_KERNEL=6.1.0-56-cloud-amd64
VMTEST_BINARY=ebpf_connect

running 2 tests
test connect_helper ... ok
test reports_connects_to_the_watched_socket_only ... HOOKS: attached syscalls/sys_enter_connect, syscalls/sys_exit_connect (socket /tmp/x/token-agent.sock)
ok

test result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 3.21s

VMTEST_BINARY=ebpf_calls
HOOKS: fexit/unix_stream_sendmsg, syscalls/sys_enter_connect
test result: FAILED. 3 passed; 1 failed; 2 ignored; 0 measured; 0 filtered out; finished in 1.00s

VMTEST_EXIT=1
";

    #[test]
    fn sums_results_and_collects_hooks() {
        let o = parse(CONSOLE);
        assert_eq!(o.hooks, ["syscalls/sys_enter_connect", "syscalls/sys_exit_connect", "fexit/unix_stream_sendmsg"]);
        assert_eq!((o.passed, o.failed, o.ignored, o.binaries), (5, 1, 2, 2));
        assert_eq!(missing_results(&o, 2), None);
        assert_eq!(missing_results(&parse(""), 1).unwrap(), "0 of 1 test binaries reported a result");
    }

    #[test]
    fn capture_hooks_and_verifier_rejections_come_from_the_detail() {
        let ok = "HOOKS: attached fexit/__x64_sys_connect, sched/sched_process_exit (socket /s); connect/close via fentry/fexit; capture via fentry/fexit; capture idle";
        let o = parse(ok);
        assert_eq!(o.hooks, ["fexit/__x64_sys_connect", "sched/sched_process_exit", "capture: fexit/__x64_sys_*"]);
        assert_eq!(missing_results(&o, 0), None);
        let bad = "HOOKS: attached syscalls/sys_exit_connect (socket /s); connect/close via fentry/fexit; capture via syscall tracepoints (fentry/fexit: loading program `fexit_write` (fexit/__x64_sys_write): rejected by the verifier: R1 invalid mem access (full log at debug level)); capture idle";
        let o = parse(bad);
        assert_eq!(o.hooks, ["syscalls/sys_exit_connect", "capture: syscalls/sys_{enter,exit}_*"]);
        let why = missing_results(&o, 0).expect("a rejection fails the row");
        assert!(why.starts_with("a probe failed to load: capture via syscall tracepoints") && why.contains("R1 invalid mem access"), "{why}");
        // refused by policy (the host): a fallback, not a failure
        let host = "HOOKS: attached syscalls/sys_exit_connect (socket /s); connect/close via syscall tracepoints (fentry/fexit: permission denied (EPERM)); capture idle";
        assert_eq!(missing_results(&parse(host), 0), None);
    }

    #[test]
    fn hook_lists_in_either_form() {
        assert_eq!(hooks(" tp/a, tp/b "), ["tp/a", "tp/b"]);
        assert_eq!(hooks("attached tp/a (socket /s (odd))"), ["tp/a"]);
        assert!(hooks("").is_empty());
    }

    #[test]
    fn one_row_per_kernel() {
        let rows = [
            Row {
                kernel: "6.1.0-56-cloud-amd64".into(),
                source: "bookworm".into(),
                outcome: parse(CONSOLE),
                verdict: Verdict::Pass,
                seconds: 8.4,
            },
            Row {
                kernel: "5.10".into(),
                source: "bullseye".into(),
                outcome: Outcome::default(),
                verdict: Verdict::Fail("the guest stopped without a result (crash or panic)".into()),
                seconds: 2.0,
            },
        ];
        let t = table(&rows);
        let lines: Vec<_> = t.lines().collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[2], "| 6.1.0-56-cloud-amd64 | bookworm | syscalls/sys_enter_connect, syscalls/sys_exit_connect, fexit/unix_stream_sendmsg | 5 passed, 1 failed, 2 ignored | pass (8 s) |");
        assert!(lines[3].starts_with("| 5.10 | bullseye | (none reported) | 0 passed, 0 failed | **FAIL**: the guest"));
    }
}
