//! Tests of the synchronous core, driving the filesystem directly. Grace is
//! zero (or the time is injected) so nothing depends on timing.
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::*;
use crate::events::LogKind;

pub(super) fn opts() -> TailOptions {
    TailOptions { rotate_grace: Duration::ZERO, ..TailOptions::default() }
}

pub(super) fn tailer(path: &Path, start: Start) -> Tailer {
    Tailer::with_options(path, LogKind::AccessLog, start, opts())
}

pub(super) fn append(path: &Path, data: &[u8]) {
    let mut f = OpenOptions::new().create(true).append(true).open(path).expect("open for append");
    f.write_all(data).expect("append");
}

pub(super) fn texts(lines: &[Line]) -> Vec<String> {
    lines.iter().map(|l| l.text.clone()).collect()
}

fn setup() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("access.log");
    (dir, p)
}

fn gen(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

#[test]
fn follows_appends_and_a_partial_line_waits_for_its_newline() {
    let (_d, p) = setup();
    append(&p, b"one\ntw");
    let mut t = tailer(&p, Start::Beginning);
    let l = t.poll();
    assert_eq!(texts(&l), ["one"]);
    assert_eq!(l[0].end_offset, 4);
    assert_eq!(*t.status(), TailStatus::Following { ino: l[0].file.ino });
    assert!(t.poll().is_empty());
    append(&p, b"o\r\nthree\n");
    let l = t.poll();
    assert_eq!(texts(&l), ["two", "three"]);
    assert_eq!(l[1].end_offset, 15);
    let c = t.counters();
    assert_eq!((c.lines, c.bytes, c.errors), (3, 15, 0));
}

#[test]
fn rename_and_create_drains_the_old_file_first() {
    let (_d, p) = setup();
    append(&p, b"a1\n");
    let mut t = tailer(&p, Start::Beginning);
    assert_eq!(texts(&t.poll()), ["a1"]);
    let mut old = OpenOptions::new().append(true).open(&p).expect("writer");
    old.write_all(b"a2\n").expect("write");
    fs::rename(&p, gen(&p, 1)).expect("rename");
    append(&p, b"b1\n");
    old.write_all(b"a3\na-unterminated").expect("late write to the old file");
    assert_eq!(texts(&t.poll()), ["a2", "a3", "a-unterminated", "b1"]);
    let c = t.counters();
    assert_eq!((c.rotations, c.truncations, c.lines), (1, 0, 5));
}

#[test]
fn a_rotated_file_is_left_only_after_the_grace() {
    let (_d, p) = setup();
    append(&p, b"a1\n");
    let grace = Duration::from_secs(5);
    let o = TailOptions { rotate_grace: grace, ..TailOptions::default() };
    let mut t = Tailer::with_options(&p, LogKind::AccessLog, Start::Beginning, o);
    let t0 = Instant::now();
    assert_eq!(texts(&t.poll_at(t0)), ["a1"]);
    fs::rename(&p, gen(&p, 1)).expect("rename");
    append(&p, b"b1\n");
    append(&gen(&p, 1), b"a2\n");
    assert_eq!(texts(&t.poll_at(t0 + Duration::from_secs(1))), ["a2"]);
    assert!(matches!(t.status(), TailStatus::Draining { .. }));
    append(&gen(&p, 1), b"a3\n");
    assert_eq!(texts(&t.poll_at(t0 + Duration::from_secs(4))), ["a3"], "still draining: it grew");
    assert_eq!(texts(&t.poll_at(t0 + Duration::from_secs(10))), ["b1"]);
    assert!(matches!(t.status(), TailStatus::Following { .. }));
}

#[test]
fn delete_and_recreate() {
    let (_d, p) = setup();
    append(&p, b"a1\n");
    let mut t = tailer(&p, Start::Beginning);
    assert_eq!(texts(&t.poll()), ["a1"]);
    append(&p, b"a2\n");
    fs::remove_file(&p).expect("delete");
    append(&p, b"b1\n");
    assert_eq!(texts(&t.poll()), ["a2", "b1"]);
    assert_eq!(t.counters().rotations, 1);
}

#[test]
fn copytruncate_with_a_nul_gap_from_a_writer_without_o_append() {
    let (_d, p) = setup();
    let w = File::create(&p).expect("writer without O_APPEND");
    w.write_all_at(b"a1\na2\n", 0).expect("write");
    let mut t = tailer(&p, Start::Beginning);
    assert_eq!(texts(&t.poll()), ["a1", "a2"]);
    // logrotate: copy, then truncate; the writer goes on at its own offset.
    fs::copy(&p, gen(&p, 1)).expect("copy");
    w.set_len(0).expect("truncate");
    w.write_all_at(b"b1\n", 6).expect("write past the hole");
    assert_eq!(texts(&t.poll()), ["b1"]);
    let c = t.counters();
    assert_eq!((c.truncations, c.nul_bytes_skipped, c.rotations), (1, 6, 0));
}

#[test]
fn copytruncate_reads_unread_lines_from_the_copy_without_duplicates() {
    let (_d, p) = setup();
    let line = |i: u32| format!("line {i:04} {}\n", "x".repeat(60));
    append(&p, line(0).as_bytes());
    let mut t = tailer(&p, Start::Beginning);
    assert_eq!(t.poll().len(), 1);
    append(&p, format!("{}{}", line(1), line(2)).as_bytes());
    fs::copy(&p, gen(&p, 1)).expect("copy");
    fs::OpenOptions::new().write(true).open(&p).and_then(|f| f.set_len(0)).expect("truncate");
    append(&p, line(3).as_bytes());
    let got: Vec<String> = texts(&t.poll()).iter().map(|l| l[..9].to_string()).collect();
    assert_eq!(got, ["line 0001", "line 0002", "line 0003"]);
    assert_eq!(t.counters().truncations, 1);
    assert!(t.poll().is_empty());
}

#[test]
fn truncation_in_place_is_detected_by_size_and_by_fingerprint() {
    let (_d, p) = setup();
    append(&p, b"first generation line\n");
    let mut t = tailer(&p, Start::Beginning);
    assert_eq!(t.poll().len(), 1);
    fs::write(&p, b"short\n").expect("truncate + rewrite shorter");
    assert_eq!(texts(&t.poll()), ["short"]);
    fs::write(&p, b"third generation, longer than before: 0123456789\n").expect("truncate + rewrite longer");
    assert_eq!(texts(&t.poll()), ["third generation, longer than before: 0123456789"]);
    assert_eq!(t.counters().truncations, 2);
}

#[test]
fn missing_directory_and_file_are_waited_for_without_errors() {
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path().join("x/y/access.log");
    let mut t = tailer(&p, Start::End);
    assert!(t.poll().is_empty());
    assert_eq!(*t.status(), TailStatus::DirMissing);
    fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    assert!(t.poll().is_empty());
    assert_eq!(*t.status(), TailStatus::FileMissing);
    append(&p, b"hello\n");
    assert_eq!(texts(&t.poll()), ["hello"], "a file that appears later is read from its start");
    assert_eq!(t.counters().errors, 0);
}

#[test]
fn long_lines_are_cut_and_invalid_utf8_is_decoded_lossily() {
    let (_d, p) = setup();
    let mut data = vec![b'x'; 200 * 1024];
    data.extend_from_slice(b"\nok \xff\xfe\n");
    append(&p, &data);
    let mut t = tailer(&p, Start::Beginning);
    let l = t.poll();
    assert_eq!(l.len(), 2);
    assert_eq!(l[0].text.len(), 64 * 1024);
    assert_eq!(l[0].end_offset, 200 * 1024 + 1);
    assert_eq!(l[1].text, "ok \u{FFFD}\u{FFFD}");
    let c = t.counters();
    assert_eq!((c.cut_lines, c.invalid_utf8_lines), (1, 1));
}

#[test]
fn start_at_end_skips_what_exists_but_reads_a_partial_last_line_whole() {
    let (_d, p) = setup();
    append(&p, b"old1\nold2\nnew-");
    let mut t = tailer(&p, Start::End);
    assert!(t.poll().is_empty());
    append(&p, b"line\n");
    assert_eq!(texts(&t.poll()), ["new-line"]);
}

#[test]
fn backfill_starts_at_the_first_line_in_the_window() {
    let (_d, p) = setup();
    let mut s = String::new();
    for i in 0..5000u64 {
        s.push_str(&format!("ts={} n={i}\n", 1_000_000 + i * 10));
    }
    append(&p, s.as_bytes());
    let time_of: TimeOf = Arc::new(|l: &str| {
        let secs = l.strip_prefix("ts=")?.split(' ').next()?.parse::<u64>().ok()?;
        Some(UNIX_EPOCH + Duration::from_secs(secs))
    });
    let now = UNIX_EPOCH + Duration::from_secs(1_000_000 + 4990 * 10);
    let start = Start::Backfill { window: Duration::from_secs(100), now, time_of };
    let l = tailer(&p, start).poll();
    // cutoff = ts of line 4980: lines 4980..=4999
    assert_eq!(l.len(), 20);
    assert!(l[0].text.ends_with("n=4980"), "{}", l[0].text);
}

#[test]
fn resume_continues_after_the_checkpoint() {
    let (_d, p) = setup();
    append(&p, b"a\nb\nc\n");
    let l = tailer(&p, Start::Beginning).poll();
    let pos = l[1].position();
    append(&p, b"d\n");
    let mut t = tailer(&p, Start::Resume(pos));
    assert_eq!(texts(&t.poll()), ["c", "d"]);
    assert_eq!(t.counters().checkpoints_discarded, 0);
}

#[test]
fn resume_drains_the_rotated_file_then_newer_generations() {
    let (_d, p) = setup();
    append(&p, b"a1\na2\n");
    let pos = tailer(&p, Start::Beginning).poll()[0].position();
    append(&p, b"a3\n");
    fs::rename(&p, gen(&p, 1)).expect("rotate");
    append(&p, b"b1\n");
    let mut t = tailer(&p, Start::Resume(pos.clone()));
    assert_eq!(texts(&t.poll()), ["a2", "a3", "b1"]);
    // Twice rotated while we were down: .2 holds the checkpoint, .1 follows.
    fs::rename(gen(&p, 1), gen(&p, 2)).expect("rotate");
    fs::rename(&p, gen(&p, 1)).expect("rotate");
    append(&p, b"c1\n");
    let mut t = tailer(&p, Start::Resume(pos));
    assert_eq!(texts(&t.poll()), ["a2", "a3", "b1", "c1"]);
    assert_eq!(t.counters().checkpoints_discarded, 0);
}

#[test]
fn rotated_twice_between_polls_reads_the_generation_in_between() {
    let (_d, p) = setup();
    append(&p, b"a1\n");
    let mut t = tailer(&p, Start::Beginning);
    assert_eq!(t.poll().len(), 1);
    fs::rename(&p, gen(&p, 1)).expect("rotate");
    append(&p, b"b1\n");
    fs::rename(gen(&p, 1), gen(&p, 2)).expect("rotate");
    fs::rename(&p, gen(&p, 1)).expect("rotate");
    append(&p, b"c1\n");
    assert_eq!(texts(&t.poll()), ["b1", "c1"]);
}

#[test]
fn a_checkpoint_whose_fingerprint_does_not_match_is_discarded() {
    let (_d, p) = setup();
    append(&p, b"a1\na2\n");
    let mut pos = tailer(&p, Start::Beginning).poll()[0].position();
    pos.file.fingerprint ^= 1;
    let mut t = tailer(&p, Start::Resume(pos));
    assert_eq!(texts(&t.poll()), ["a1", "a2"]);
    assert_eq!(t.counters().checkpoints_discarded, 1);
}

#[test]
fn a_file_replaced_by_a_directory_is_counted_once_and_recovered_from() {
    let (_d, p) = setup();
    append(&p, b"a1\n");
    let mut t = tailer(&p, Start::Beginning);
    assert_eq!(t.poll().len(), 1);
    append(&p, b"a2\n");
    fs::remove_file(&p).expect("rm");
    fs::create_dir(&p).expect("mkdir");
    assert_eq!(texts(&t.poll()), ["a2"]);
    assert_eq!(*t.status(), TailStatus::NotAFile);
    for _ in 0..5 {
        assert!(t.poll().is_empty());
    }
    assert_eq!(t.counters().errors, 1, "counted once, not per poll");
    fs::remove_dir(&p).expect("rmdir");
    append(&p, b"b1\n");
    assert_eq!(texts(&t.poll()), ["b1"]);
    assert!(matches!(t.status(), TailStatus::Following { .. }));
}

#[test]
fn garbage_binary_and_empty_files() {
    let (_d, p) = setup();
    fs::write(&p, b"").expect("empty");
    let mut t = tailer(&p, Start::Beginning);
    assert!(t.poll().is_empty());
    let bin: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    append(&p, &bin);
    append(&p, b"\nafter\n");
    let l = t.poll();
    assert_eq!(l.last().map(|l| l.text.as_str()), Some("after"));
    assert_eq!(t.counters().errors, 0);
}

#[test]
fn a_small_budget_splits_the_read_and_says_there_is_more() {
    let (_d, p) = setup();
    append(&p, "line\n".repeat(1000).as_bytes());
    let o = TailOptions { max_batch_bytes: 1000, ..opts() };
    let mut t = Tailer::with_options(&p, LogKind::AppLog, Start::Beginning, o);
    let mut n = 0;
    loop {
        let l = t.poll();
        n += l.len();
        assert!(l.iter().all(|l| l.kind == LogKind::AppLog));
        if !t.has_more() {
            break;
        }
    }
    assert_eq!(n, 1000);
}

#[test]
fn resume_after_copytruncate_reads_the_rest_from_the_copy() {
    let (_d, p) = setup();
    let line = |i: u32| format!("line {i:04} {}\n", "x".repeat(60));
    append(&p, format!("{}{}", line(0), line(1)).as_bytes());
    let pos = tailer(&p, Start::Beginning).poll()[0].position();
    fs::copy(&p, gen(&p, 1)).expect("copy");
    OpenOptions::new().write(true).open(&p).and_then(|f| f.set_len(0)).expect("truncate");
    append(&p, line(2).as_bytes());
    let got: Vec<String> = texts(&tailer(&p, Start::Resume(pos)).poll()).iter().map(|l| l[..9].to_string()).collect();
    assert_eq!(got, ["line 0001", "line 0002"]);
}

mod generations;
mod model;

#[test]
fn wall_clock_helpers_do_not_panic_on_odd_input() {
    // A backfill window longer than the epoch is clamped, not a panic.
    let (_d, p) = setup();
    append(&p, b"x\n");
    let time_of: TimeOf = Arc::new(|_| None);
    let start = Start::Backfill { window: Duration::from_secs(u64::MAX / 4), now: SystemTime::now(), time_of };
    assert_eq!(texts(&tailer(&p, start).poll()), ["x"]);
}
