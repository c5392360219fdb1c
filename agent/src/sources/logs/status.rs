//! What a [`Tailer`](super::Tailer) is doing, for health and logs.
use std::path::Path;

/// What the tailer is doing, for health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TailStatus {
    Starting,
    Following {
        ino: u64,
    },
    /// Draining a rotated-away file before moving on.
    Draining {
        ino: u64,
    },
    FileMissing,
    DirMissing,
    NotAFile,
    /// Cannot open or read: errno (0 when unknown).
    Unreadable {
        errno: i32,
    },
}

impl TailStatus {
    /// A state worth a warning (counted in `errors`).
    pub fn is_error(&self) -> bool {
        matches!(self, TailStatus::NotAFile | TailStatus::Unreadable { .. })
    }

    pub fn describe(&self, path: &Path) -> String {
        let p = path.display();
        match self {
            TailStatus::Starting => format!("starting on {p}"),
            TailStatus::Following { ino } => format!("following {p} (inode {ino})"),
            TailStatus::Draining { ino } => format!("draining a rotated file of {p} (inode {ino})"),
            TailStatus::FileMissing => format!("waiting for {p}: file does not exist"),
            TailStatus::DirMissing => format!("waiting for {p}: directory does not exist"),
            TailStatus::NotAFile => format!("{p} is not a regular file"),
            TailStatus::Unreadable { errno } => {
                format!("cannot read {p}: {}", std::io::Error::from_raw_os_error(*errno))
            }
        }
    }
}
