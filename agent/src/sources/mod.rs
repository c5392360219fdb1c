//! Sources of evidence: the eBPF probes, token-agent's logs, /proc.
//! Each reports its own health for `/status` through a [`Health`] handle.
pub mod app_log;
pub mod backlog;
pub mod ebpf;
pub mod log_events;
pub mod log_notes;
pub mod logs;
pub mod proc;

use std::sync::{Arc, Mutex};

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceState {
    Starting,
    Running,
    Disabled,
    Failed,
}

/// What `/status` shows of a source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceStatus {
    pub state: SourceState,
    pub detail: String,
    /// Events (eBPF records; log lines) taken in.
    pub events: u64,
    /// Dropped before they could be used (ring buffer full, undecodable records).
    pub lost: u64,
    /// Log lines: the same as `events`, under the name INTERFACE.md gives logs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lines: Option<u64>,
    /// Log lines that did not parse.
    pub unparsed: u64,
    /// Log sources only: damaged input the tailer coped with.
    #[serde(flatten)]
    pub damage: Option<LogDamage>,
}

/// What a log's tailer skipped or mended, in `/status` under the source
/// (an extension of INTERFACE.md): running totals of its [`logs::Counters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LogDamage {
    /// Lines longer than 64 KiB: cut, their first 64 KiB parsed.
    pub cut: u64,
    /// Lines with invalid UTF-8, decoded lossily.
    pub invalid_utf8: u64,
    /// NUL bytes skipped at line starts (a `copytruncate` hole).
    pub nul_bytes_skipped: u64,
    /// Checkpoints that matched no file: that log was read from its start.
    pub checkpoints_discarded: u64,
}

impl From<&logs::Counters> for LogDamage {
    fn from(c: &logs::Counters) -> Self {
        Self {
            cut: c.cut_lines,
            invalid_utf8: c.invalid_utf8_lines,
            nul_bytes_skipped: c.nul_bytes_skipped,
            checkpoints_discarded: c.checkpoints_discarded,
        }
    }
}

/// A shared, cheap-to-clone handle a source updates and exporters read.
#[derive(Debug, Clone)]
pub struct Health(Arc<Mutex<SourceStatus>>);

impl Health {
    pub fn new(state: SourceState, detail: impl Into<String>) -> Self {
        Self(Arc::new(Mutex::new(SourceStatus {
            state,
            detail: detail.into(),
            events: 0,
            lost: 0,
            lines: None,
            unparsed: 0,
            damage: None,
        })))
    }

    pub fn set(&self, state: SourceState, detail: impl Into<String>) {
        let mut s = self.lock();
        s.state = state;
        s.detail = detail.into();
    }

    pub fn add_events(&self, n: u64) {
        self.lock().events += n;
    }

    pub fn add_unparsed(&self, n: u64) {
        self.lock().unparsed += n;
    }

    /// A log's damage counts, from its tailer's running totals.
    pub fn set_tail_counters(&self, c: &logs::Counters) {
        self.lock().damage = Some(c.into());
    }

    /// Sets the lost count to the source's own running total.
    pub fn set_lost(&self, total: u64) {
        self.lock().lost = total;
    }

    pub fn get(&self) -> SourceStatus {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SourceStatus> {
        // A poisoned lock only means a panic elsewhere; the data is plain counters.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}
