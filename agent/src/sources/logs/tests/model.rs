//! Random write / rotate / copytruncate / delete / restart sequences:
//! every line arrives exactly once, in order.
use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone)]
enum Op {
    Write(u8),
    Partial,
    Rotate,
    CopyTruncate(u8),
    DeleteRecreate,
    Poll,
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u8..20).prop_map(Op::Write),
        1 => Just(Op::Partial),
        1 => Just(Op::Rotate),
        1 => (0u8..4).prop_map(Op::CopyTruncate),
        1 => Just(Op::DeleteRecreate),
        3 => Just(Op::Poll),
        1 => Just(Op::Restart),
    ]
}

struct World {
    p: PathBuf,
    next: u32,
    /// A line half written: its rest comes with the next write.
    partial: Option<String>,
    gens: u32,
    written: Vec<String>,
    got: Vec<String>,
    last: Option<crate::events::LogPosition>,
}

impl World {
    fn line(&mut self) -> String {
        self.next += 1;
        let l = format!("seq={:06} {}", self.next, "p".repeat(50));
        self.written.push(l.clone());
        l
    }
    fn write(&mut self, n: u8) {
        let mut s = self.partial.take().map(|rest| rest + "\n").unwrap_or_default();
        for _ in 0..n {
            s.push_str(&self.line());
            s.push('\n');
        }
        append(&self.p, s.as_bytes());
    }
    fn complete(&mut self) {
        if let Some(rest) = self.partial.take() {
            append(&self.p, format!("{rest}\n").as_bytes());
        }
    }
    fn shift(&mut self) {
        for g in (1..=self.gens).rev() {
            fs::rename(gen(&self.p, g), gen(&self.p, g + 1)).expect("shift");
        }
        self.gens += 1;
    }
    fn take(&mut self, t: &mut Tailer) {
        for l in t.poll() {
            self.got.push(l.text);
        }
        self.last = t.position().or(self.last.take());
    }
}

proptest! {
    #[test]
    fn every_line_exactly_once_in_order(ops in proptest::collection::vec(op(), 1..40)) {
        let (_d, p) = setup();
        let mut w = World { p: p.clone(), next: 0, partial: None, gens: 0, written: vec![], got: vec![], last: None };
        append(&p, b"");
        let mut t = tailer(&p, Start::Beginning);
        w.take(&mut t);
        for op in ops {
            match op {
                Op::Write(n) => w.write(n),
                Op::Partial => {
                    w.complete();
                    let l = w.line();
                    let (a, b) = l.split_at(10);
                    append(&p, a.as_bytes());
                    w.partial = Some(b.to_string());
                }
                Op::Rotate => {
                    w.complete();
                    w.shift();
                    fs::rename(&p, gen(&p, 1)).expect("rotate");
                    append(&p, b"");
                }
                Op::CopyTruncate(unread) => {
                    // A copy is recognised by content only when we have read
                    // a line of that generation (see `rotated`); then the
                    // lines we had not read yet come from the copy.
                    w.complete();
                    w.take(&mut t);
                    if t.position().is_some_and(|p| p.offset > 0) {
                        w.write(unread);
                    }
                    w.shift();
                    fs::copy(&p, gen(&p, 1)).expect("copy");
                    OpenOptions::new().write(true).open(&p).and_then(|f| f.set_len(0)).expect("truncate");
                }
                Op::DeleteRecreate => {
                    // A deleted file is found only through the handle we
                    // hold, so the tailer must have opened it, and must see
                    // the new file before that one is rotated away too
                    // (inotify wakes it in milliseconds).
                    w.take(&mut t);
                    w.complete();
                    fs::remove_file(&p).expect("delete");
                    append(&p, b"");
                    w.take(&mut t);
                }
                Op::Poll => w.take(&mut t),
                Op::Restart => {
                    if let Some(pos) = w.last.clone() {
                        t = tailer(&p, Start::Resume(pos));
                    }
                    w.take(&mut t);
                }
            }
        }
        w.complete();
        for _ in 0..3 {
            w.take(&mut t);
        }
        prop_assert_eq!(&w.got, &w.written);
    }
}
