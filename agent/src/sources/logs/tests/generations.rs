//! Rotated generations under dated names, checkpoints whose file cannot be
//! looked at yet, and the grace a quiet file gets after it is rotated.
use super::*;

/// logrotate's `dateext` name for day `d`.
fn dated(path: &Path, d: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!("-202511{d:02}"));
    PathBuf::from(s)
}

/// Rotates under a dated name and starts a new file with `first`.
fn rotate_dated(p: &Path, d: u32, first: &[u8]) {
    fs::rename(p, dated(p, d)).expect("rotate");
    append(p, first);
}

#[test]
fn dated_generations_are_read_in_order_live_and_on_resume() {
    let (_d, p) = setup();
    append(&p, b"a1\na2\n");
    let pos = tailer(&p, Start::Beginning).poll()[0].position();
    let mut live = tailer(&p, Start::Beginning);
    assert_eq!(texts(&live.poll()), ["a1", "a2"]);
    append(&p, b"a3\n");
    // two rotations between two looks (and while the other tailer is down);
    // a stale numbered file beside them is not part of the sequence
    rotate_dated(&p, 24, b"b1\n");
    rotate_dated(&p, 25, b"c1\n");
    append(&gen(&p, 7), b"stale\n");
    assert_eq!(texts(&live.poll()), ["a3", "b1", "c1"]);
    let mut resumed = tailer(&p, Start::Resume(pos));
    assert_eq!(texts(&resumed.poll()), ["a2", "a3", "b1", "c1"]);
    assert_eq!(resumed.counters().checkpoints_discarded, 0);
}

#[test]
fn a_date_with_a_dot_is_not_a_generation_number() {
    // `dateformat .%Y%m%d`: a "generation" of 20 million must not be walked
    // down one number at a time (it was: minutes per rotation).
    let (_d, p) = setup();
    append(&p, b"a1\n");
    let mut t = tailer(&p, Start::Beginning);
    assert_eq!(texts(&t.poll()), ["a1"]);
    let mut s = p.as_os_str().to_owned();
    s.push(".20251124");
    fs::rename(&p, &s).expect("rotate");
    append(&p, b"b1\n");
    let started = Instant::now();
    assert_eq!(texts(&t.poll()), ["b1"]);
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}

#[test]
fn a_checkpoint_waits_while_its_directory_is_missing() {
    let d = tempfile::tempdir().expect("tempdir");
    let (dir, away) = (d.path().join("logs"), d.path().join("elsewhere"));
    fs::create_dir(&dir).expect("mkdir");
    let p = dir.join("access.log");
    append(&p, b"a1\na2\n");
    let pos = tailer(&p, Start::Beginning).poll()[0].position();
    // the agent starts before the log's filesystem is mounted
    fs::rename(&dir, &away).expect("unmount");
    let mut t = tailer(&p, Start::Resume(pos));
    assert!(t.poll().is_empty());
    assert_eq!(*t.status(), TailStatus::DirMissing);
    fs::rename(&away, &dir).expect("mount");
    assert_eq!(texts(&t.poll()), ["a2"], "resumed, not read again from the start");
    assert_eq!(t.counters().checkpoints_discarded, 0);
}

#[test]
fn a_checkpoint_is_discarded_only_once_a_file_is_there_to_compare() {
    let (_d, p) = setup();
    append(&p, b"a1\na2\n");
    let pos = tailer(&p, Start::Beginning).poll()[0].position();
    fs::remove_file(&p).expect("delete");
    let mut t = tailer(&p, Start::Resume(pos));
    assert!(t.poll().is_empty());
    assert_eq!((t.status().clone(), t.counters().checkpoints_discarded), (TailStatus::FileMissing, 0));
    append(&p, b"b1\n");
    assert_eq!(texts(&t.poll()), ["b1"]);
    assert_eq!(t.counters().checkpoints_discarded, 1);
}

#[test]
fn a_quiet_file_gets_the_whole_grace_after_it_is_rotated() {
    let (_d, p) = setup();
    append(&p, b"a1\n");
    let grace = Duration::from_secs(5);
    let o = TailOptions { rotate_grace: grace, ..TailOptions::default() };
    let mut t = Tailer::with_options(&p, LogKind::AccessLog, Start::Beginning, o);
    let t0 = Instant::now();
    assert_eq!(texts(&t.poll_at(t0)), ["a1"]);
    // an hour without a line, then logrotate renames it
    let t1 = t0 + Duration::from_secs(3600);
    assert!(t.poll_at(t1).is_empty());
    fs::rename(&p, gen(&p, 1)).expect("rotate");
    append(&p, b"b1\n");
    assert!(t.poll_at(t1 + Duration::from_secs(1)).is_empty(), "kept: rotated a second ago, though quiet for an hour");
    // the writer's last line before it reopens the path (postrotate HUP)
    append(&gen(&p, 1), b"a2\n");
    assert_eq!(texts(&t.poll_at(t1 + Duration::from_secs(3))), ["a2"]);
    assert_eq!(texts(&t.poll_at(t1 + Duration::from_secs(9))), ["b1"]);
}

#[test]
fn backfill_reaches_into_the_generations_the_window_begins_in() {
    let (_d, p) = setup();
    let lines = |from: u64, to: u64| (from..to).map(|s| format!("ts={s}\n")).collect::<String>();
    append(&gen(&p, 3), lines(700, 800).as_bytes());
    append(&gen(&p, 2), lines(800, 900).as_bytes());
    append(&gen(&p, 1), lines(900, 1000).as_bytes());
    append(&p, lines(1000, 1010).as_bytes());
    let time_of: TimeOf =
        Arc::new(|l: &str| Some(UNIX_EPOCH + Duration::from_secs(l.strip_prefix("ts=")?.parse().ok()?)));
    let backfill = |window: u64| Start::Backfill {
        window: Duration::from_secs(window),
        now: UNIX_EPOCH + Duration::from_secs(1010),
        time_of: time_of.clone(),
    };
    let got = |start| texts(&tailer(&p, start).poll());
    // the window begins in .2: .3 is not read, .2 from its middle on
    let want: Vec<String> = (850..1010).map(|s| format!("ts={s}")).collect();
    assert_eq!(got(backfill(160)), want);
    // within the current file: nothing rotated is read
    assert_eq!(got(backfill(5)), ["ts=1005", "ts=1006", "ts=1007", "ts=1008", "ts=1009"]);
    // just rotated: the new file is empty, the window is in .1
    fs::rename(gen(&p, 1), gen(&p, 4)).expect("rotate");
    fs::rename(&p, gen(&p, 1)).expect("rotate");
    File::create(&p).expect("create");
    assert_eq!(got(backfill(3)), ["ts=1007", "ts=1008", "ts=1009"]);
}
