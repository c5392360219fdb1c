//! inotify wakeups (via `notify`) on the log's directory.
//!
//! We watch the *directory*, not the file: renames, creations and deletions
//! of the log show up there, and so do writes to it. While the directory is
//! missing we watch its nearest existing ancestor and move down as the path
//! appears. A wakeup only means "poll now"; the driver also polls on a slow
//! timer, so a lost event (queue overflow, a watch that failed) never stalls
//! the tail.
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::Notify;

pub struct DirWatch {
    watcher: Option<RecommendedWatcher>,
    /// The directory watched and its device+inode (a recreated directory
    /// needs a new watch).
    watched: Option<(PathBuf, u64, u64)>,
    wake: Arc<Notify>,
    failure_logged: bool,
}

impl DirWatch {
    pub fn new(wake: Arc<Notify>) -> Self {
        Self { watcher: None, watched: None, wake, failure_logged: false }
    }

    /// The directory watched now, if any.
    pub fn watched(&self) -> Option<&Path> {
        self.watched.as_ref().map(|w| w.0.as_path())
    }

    /// Makes sure the nearest existing directory above `file` is watched.
    /// Cheap when nothing changed (a `stat` or two); call before each wait.
    pub fn ensure(&mut self, file: &Path) {
        let Some(target) = nearest_dir(file) else { return };
        if self.watched.as_ref() == Some(&target) {
            return;
        }
        if self.watcher.is_none() {
            let wake = self.wake.clone();
            let handler = move |ev: notify::Result<notify::Event>| match ev {
                // Our own opens and reads show up as access events: ignore them.
                Ok(e) if matches!(e.kind, EventKind::Access(_)) => {}
                _ => wake.notify_one(),
            };
            match notify::recommended_watcher(handler) {
                Ok(w) => self.watcher = Some(w),
                Err(e) => return self.failed(&target.0, &e),
            }
        }
        let Some(w) = self.watcher.as_mut() else { return };
        if let Some((old, ..)) = self.watched.take() {
            let _ = w.unwatch(&old);
        }
        match w.watch(&target.0, RecursiveMode::NonRecursive) {
            Ok(()) => {
                tracing::debug!(dir = %target.0.display(), "log: watching directory");
                self.watched = Some(target);
                // Something may have happened before the watch was in place.
                self.wake.notify_one();
            }
            Err(e) => self.failed(&target.0, &e),
        }
    }

    fn failed(&mut self, dir: &Path, e: &notify::Error) {
        if !std::mem::replace(&mut self.failure_logged, true) {
            tracing::warn!(dir = %dir.display(), error = %e, "log: cannot watch directory; polling only");
        }
    }
}

/// The file's directory if it exists, else its nearest existing ancestor.
fn nearest_dir(file: &Path) -> Option<(PathBuf, u64, u64)> {
    file.ancestors().skip(1).find_map(|d| {
        let d = if d.as_os_str().is_empty() { Path::new(".") } else { d };
        let m = std::fs::metadata(d).ok().filter(|m| m.is_dir())?;
        Some((d.to_path_buf(), m.dev(), m.ino()))
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn wakes_on_writes_and_moves_down_as_the_directory_appears() {
        let root = tempfile::tempdir().expect("tempdir");
        let file = root.path().join("a/b/access.log");
        let wake = Arc::new(Notify::new());
        let mut w = DirWatch::new(wake.clone());
        w.ensure(&file);
        assert_eq!(w.watched(), Some(root.path()));
        wake.notified().await; // the initial "poll now"
        std::fs::create_dir(root.path().join("a")).expect("mkdir");
        tokio::time::timeout(Duration::from_secs(5), wake.notified()).await.expect("wakeup on mkdir");
        std::fs::create_dir_all(root.path().join("a/b")).expect("mkdir");
        w.ensure(&file);
        assert_eq!(w.watched(), Some(root.path().join("a/b").as_path()));
        wake.notified().await;
        std::fs::write(&file, b"x\n").expect("write");
        tokio::time::timeout(Duration::from_secs(5), wake.notified()).await.expect("wakeup on write");
    }
}
