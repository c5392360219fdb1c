//! When capture windows open and what they attach.
use super::*;

fn inputs() -> WindowInputs {
    WindowInputs {
        started_at: t(0),
        last_tracked_connect: None,
        unsettled_connections: 0,
        hint: CaptureHint::default(),
    }
}

#[test]
fn capture_window_table() {
    let p = WindowPolicy::default(); // 30 s after connect, 120 s start, 60 s lead, 15 min overdue
    let a = CaptureMode::Adaptive;
    let connect = WindowInputs { last_tracked_connect: Some(t(100)), ..inputs() };
    let start = WindowInputs { unsettled_connections: 2, ..inputs() };
    let refresh = WindowInputs { hint: CaptureHint { next_refresh_at: Some(t(1000)), failing: false }, ..inputs() };
    let failing = WindowInputs { hint: CaptureHint { next_refresh_at: None, failing: true }, ..inputs() };
    let table: &[(&str, CaptureMode, &WindowInputs, u64, Option<Reason>)] = &[
        ("nothing going on", a, &inputs(), 500, None),
        ("off never captures", CaptureMode::Off, &failing, 500, None),
        ("always always does", CaptureMode::Always, &inputs(), 500, Some(Reason::Always)),
        ("at a connect", a, &connect, 100, Some(Reason::Connect)),
        ("29 s after", a, &connect, 129, Some(Reason::Connect)),
        ("30 s after: over", a, &connect, 130, None),
        ("clock stepped back before the connect", a, &connect, 90, Some(Reason::Connect)),
        ("start, connections unsettled", a, &start, 119, Some(Reason::Startup)),
        ("start window capped", a, &start, 120, None),
        ("start, all settled", a, &inputs(), 10, None),
        ("61 s before refresh_at", a, &refresh, 939, None),
        ("60 s before refresh_at", a, &refresh, 940, Some(Reason::Refresh)),
        ("at refresh_at", a, &refresh, 1000, Some(Reason::Refresh)),
        ("overdue 14:59", a, &refresh, 1899, Some(Reason::Refresh)),
        ("overdue 15:00: given up", a, &refresh, 1900, None),
        ("errors persist", a, &failing, 5000, Some(Reason::Failing)),
    ];
    for (what, mode, i, now, want) in table {
        assert_eq!(want_capture(*mode, t(*now), i, &p), *want, "{what}");
        if *mode == a {
            // `windows` opens exactly adaptive's windows; only what they attach differs
            assert_eq!(want_capture(CaptureMode::Windows, t(*now), i, &p), *want, "windows: {what}");
        }
    }
}

#[test]
fn connect_close_move_with_the_window_only_in_windows_mode_on_tracepoints() {
    use CaptureMode::*;
    let table = [
        (Windows, Kind::Tracepoint, true, true),
        // trampolines cost other syscalls nothing: attached for the whole run, as in adaptive
        (Windows, Kind::Trampoline, true, false),
        // no capture programs: no window would ever open, so no connect would ever be seen
        (Windows, Kind::Tracepoint, false, false),
        (Adaptive, Kind::Tracepoint, true, false),
        (Always, Kind::Tracepoint, true, false),
        (Off, Kind::Tracepoint, false, false),
    ];
    for (mode, kind, capture_loaded, want) in table {
        assert_eq!(
            connections_on_demand(mode, kind, capture_loaded),
            want,
            "{mode:?} {kind:?} capture {capture_loaded}"
        );
    }
}

#[test]
fn a_window_attaches_connect_close_and_rediscovers_before_capturing() {
    use Step::*;
    assert_eq!(steps(Transition::Attach, true), [AttachConnections, Rediscover, AttachCapture]);
    assert_eq!(steps(Transition::Detach, true), [DetachCapture, DetachConnections]);
    assert_eq!(steps(Transition::Attach, false), [AttachCapture]);
    assert_eq!(steps(Transition::Detach, false), [DetachCapture]);
}

#[test]
fn windows_mode_walks_idle_open_idle_with_connect_close_inside_the_window() {
    use Step::*;
    // the window follows a refresh hint; connect/close move with every transition
    let p = WindowPolicy { linger: Duration::from_secs(10), ..WindowPolicy::default() };
    let refresh = WindowInputs { hint: CaptureHint { next_refresh_at: Some(t(1000)), failing: false }, ..inputs() };
    let mut sw = Switch::default();
    let mut attached = Vec::new();
    let mut log = Vec::new();
    for (now, i) in [(500, inputs()), (940, refresh), (1000, refresh), (1001, inputs()), (1011, inputs())] {
        let want = want_capture(CaptureMode::Windows, t(now), &i, &p).is_some();
        if let Some(tr) = sw.step(t(now), want, p.linger) {
            for s in steps(tr, true) {
                match s {
                    AttachConnections | AttachCapture => attached.push(*s),
                    DetachCapture => assert_eq!(attached.pop(), Some(AttachCapture), "capture detached first"),
                    DetachConnections => assert_eq!(attached.pop(), Some(AttachConnections)),
                    Rediscover => {
                        assert_eq!(attached, [AttachConnections], "discovery with connect/close on, capture off")
                    }
                }
            }
            sw.set_attached(tr == Transition::Attach);
            log.push((now, tr));
        }
    }
    assert_eq!(log, [(940, Transition::Attach), (1011, Transition::Detach)]);
    assert!(attached.is_empty(), "between windows nothing is attached: {attached:?}");
}

#[test]
fn status_says_where_connect_close_are() {
    let on_demand = attach::Attachments::new(Ok(()), Kind::Tracepoint, true, "/s".into());
    assert_eq!(on_demand.detail("base"), "base; capture idle, connect/close detached");
    let adaptive = attach::Attachments::new(Ok(()), Kind::Tracepoint, false, "/s".into());
    assert_eq!(adaptive.detail("base"), "base; capture idle");
    let unloaded = attach::Attachments::new(Err("unavailable: x".into()), Kind::Tracepoint, false, "/s".into());
    assert_eq!(unloaded.detail("base"), "base; capture unavailable: x");
}

#[test]
fn switch_attaches_at_once_and_detaches_after_lingering() {
    let linger = Duration::from_secs(10);
    let mut s = Switch::default();
    assert_eq!(s.step(t(0), false, linger), None, "nothing to detach");
    assert_eq!(s.step(t(1), true, linger), Some(Transition::Attach));
    // the attach failed: asked again
    assert_eq!(s.step(t(2), true, linger), Some(Transition::Attach));
    s.set_attached(true);
    assert_eq!(s.step(t(3), true, linger), None);
    assert_eq!(s.step(t(12), false, linger), None, "9 s since last wanted");
    assert_eq!(s.step(t(13), false, linger), Some(Transition::Detach));
    s.set_attached(false);
    assert_eq!(s.step(t(14), false, linger), None);
    assert!(!s.attached());
}
